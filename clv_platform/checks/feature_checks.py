"""Asset checks of features/customer_features, all blocking: models must not train on bad features.

Ranges and null-share limits come from `monitoring.toml` (`[checks.feature_ranges]`,
`[checks.null_share_limits]`), so a new nullable feature is a config change, not a code change.
A configured column missing from the table fails the range check: a renamed feature must not
silently lose its guard.
"""

import dagster as dg

from clv_platform.checks.common import (
    columns_of, count, monitoring_config, one_row_per_customer_check, problems,
    result, table_check,
)
from clv_platform.core.thresholds import CheckSettings
from clv_platform.transforms.features import FEATURE_COLUMNS, FEATURE_TABLE
from clv_platform.transforms.features_assets import CUSTOMER_FEATURES

FEATURES = CUSTOMER_FEATURES


features_one_row_per_customer = one_row_per_customer_check(
    FEATURES, FEATURE_TABLE, name="features_one_row_per_customer",
    description="Exactly one row per customer, no null customer_id.",
    failed="{dupes} customers with more than one feature row (e.g. {examples}), {nulls} null ids",
    duplicates_key="duplicate_customers",
)


def range_violations(conn, table: str, settings: CheckSettings) -> tuple[dict[str, int], list[str]]:
    """Out-of-range row counts per column, and configured columns missing from the table."""
    present = set(columns_of(conn, table))
    rules = [(c, f'"{c}" < 0') for c in settings.non_negative] + [
        (c, f'("{c}" < 0 or "{c}" > 1)') for c in settings.unit_interval
    ]
    missing = sorted({c for c, _ in rules if c not in present})
    violations = {}
    for column, condition in rules:
        if column in present:
            n = count(conn, f"select count(*) from {table} where {condition}")
            if n:
                violations[column] = n
    return violations, missing


@table_check(
    FEATURES, FEATURE_TABLE,
    description="Counts, days and spend are >= 0 and shares lie in [0, 1] (columns from monitoring.toml).",
)
def features_value_ranges(conn) -> dg.AssetCheckResult:
    settings = monitoring_config().checks
    violations, missing = range_violations(conn, FEATURE_TABLE, settings)
    found = problems(
        (violations, f"rows out of range per column: {violations}"),
        (missing, f"configured columns missing from the table: {missing}"),
    )
    return result(
        not found,
        f"{len(settings.non_negative)} non-negative and {len(settings.unit_interval)} [0, 1] columns in range",
        "; ".join(found),
        violations=dg.MetadataValue.json(violations),
        missing_columns=", ".join(missing),
    )


def null_shares(conn, table: str, columns: list[str], defined_when: dict[str, str] | None = None) -> dict[str, float]:
    """Share of nulls per column; for a column of ``defined_when`` only over the rows where the
    condition holds (0 when there are none)."""
    if not columns:
        return {}
    defined_when = defined_when or {}
    select = ", ".join(
        f'avg(case when "{c}" is null then 1.0 else 0.0 end)'
        + (f" filter (where {defined_when[c]})" if c in defined_when else "") + f' as "{c}"'
        for c in columns)
    row = conn.execute(f"select {select} from {table}").fetchone()
    return {c: float(v or 0.0) for c, v in zip(columns, row)}


def null_share_breaches(shares: dict[str, float], settings: CheckSettings) -> dict[str, dict[str, float]]:
    """Columns whose null share exceeds their limit (the column's own, else `default`)."""
    out = {}
    for column, share in shares.items():
        limit = settings.null_share_limits.get(column, settings.null_share_default)
        if share > limit + 1e-12:
            out[column] = {"null_share": round(share, 4), "limit": limit}
    return out


@table_check(
    FEATURES, FEATURE_TABLE, description="The null share of every model feature is within its configured limit."
)
def features_null_shares(conn) -> dg.AssetCheckResult:
    settings = monitoring_config().checks
    present = set(columns_of(conn, FEATURE_TABLE))
    columns = [c for c in FEATURE_COLUMNS if c in present]
    shares = null_shares(conn, FEATURE_TABLE, columns, settings.null_share_defined_when)
    breaches = null_share_breaches(shares, settings)
    missing = [c for c in FEATURE_COLUMNS if c not in present]
    found = problems((breaches, f"null share above limit: {breaches}"), (missing, f"feature columns missing: {missing}"))
    return result(
        not found,
        f"null shares of {len(columns)} features within limits",
        "; ".join(found),
        null_shares=dg.MetadataValue.json({c: round(v, 4) for c, v in shares.items()}),
    )


FEATURE_CHECKS = [features_one_row_per_customer, features_value_ranges, features_null_shares]
