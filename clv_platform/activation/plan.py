"""Planning: which values each destination should receive, from `marts.customer_scores` vs sync state.

`marts.customer_scores` is read by column name. A value that turned null since it was sent (a
next purchase date withdrawn because the purchase became unlikely) is planned as a clear
(`new_value` null): the destination must not keep showing it. A column that is absent, or whose
model scored no customer (null for everyone, and for the date its P(30 d) null too: a store whose
next-purchase model never trained), is left out of the plan: nothing is cleared on the strength
of a missing model. Every date withdrawn at once while P(30 d) is there is cleared.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pandas as pd

from clv_platform.activation.fields import FIELDS, REQUIRED_COLUMNS, TAG_PREFIX, TAGS, sql_render
from clv_platform.resources.storage import read_sql, run_script, table_exists

SQL_PACKAGE = "clv_platform.activation"
SCORES = "marts.customer_scores"
DESTINATIONS = ("klaviyo", "shopify")
TARGET_COLUMN = {"klaviyo": "klaviyo_profile_id", "shopify": "shopify_customer_id"}


class ActivationInputError(RuntimeError):
    """The scores or customers needed to plan are missing."""


def ensure_tables(conn: duckdb.DuckDBPyConnection) -> None:
    run_script(conn, read_sql(SQL_PACKAGE, "sql/state_tables.sql"))


def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    schema, name = table.split(".")
    rows = conn.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
        [schema, name],
    ).fetchall()
    return {r[0] for r in rows}


def build_values_view(conn: duckdb.DuckDBPyConnection, destination: str, shopify_tags: bool) -> list[str]:
    """Create `_activation_values` for one destination; returns the optional score columns left out
    (absent from the mart, or not scored for any customer)."""
    for table in (SCORES, "staging.customers"):
        if not table_exists(conn, table):
            raise ActivationInputError(f"{table} does not exist: materialize the marts before activation")
    present = _columns(conn, SCORES)
    missing_required = REQUIRED_COLUMNS - present
    if missing_required:
        raise ActivationInputError(f"{SCORES} lacks required columns {sorted(missing_required)}")
    absent = [spec.column for spec in FIELDS if spec.column not in present]
    select = ["s.customer_id::varchar as customer_id", f"c.{TARGET_COLUMN[destination]}::varchar as target_id"]
    fields = [spec for spec in FIELDS if spec.column in present]
    # whether the column's model scored anyone: the column itself, or the one that is always set
    # beside it (a next purchase date is null by design when the purchase is unlikely)
    evidence = [spec.scored_with if spec.scored_with in present else spec.column for spec in fields]
    counts = conn.execute(
        "select count(*), " + ", ".join(f'count(s."{column}")' for column in evidence) + f" from {SCORES} as s"
    ).fetchone()
    for spec, known in zip(fields, counts[1:]):
        if counts[0] and not known:
            absent.append(spec.column)  # not scored for any customer: not a value to clear everywhere
            continue
        typed = f'cast(s."{spec.column}" as {spec.column_type})'
        select.append(f'{sql_render(spec, typed)} as "{spec.name}"')
    if destination == "shopify" and shopify_tags:
        for tag, (column, rule) in TAGS.items():
            if column not in present:
                absent.append(column)
                continue
            select.append(f"case when {rule} then 'true' else 'false' end as \"{TAG_PREFIX}{tag}\"")
    conn.execute(
        "create or replace temp view _activation_values as select "
        + ", ".join(select)
        + f" from {SCORES} as s join staging.customers as c on c.customer_id = s.customer_id"
    )
    return absent


@dataclass
class Plan:
    """One destination's planned changes, kept in DuckDB (the temp table `_activation_changes` of
    `conn`, until the next plan on that connection) and read a block of targets at a time: a
    store-wide plan (about 7 million values a night at 1M customers) never sits in Python whole.

    The counts are the dry run's metadata and the sync report's plan totals.
    """

    conn: duckdb.DuckDBPyConnection
    customers: int
    values: int
    by_field: dict[str, int]
    new_customers: int
    clears: int

    def blocks(self, targets: int) -> Iterator[tuple[int, int, dict[str, dict]]]:
        """`(first, last, {target_id: {"customer_id": ..., "fields": {field: new_value}}})` for
        `targets` targets at a time in target order: the block's range of `seq` (which other tables
        of the same connection can be joined on) and its targets (each block one range query)."""
        for first in range(1, self.customers + 1, targets):
            last = first + targets - 1
            rows = self.conn.execute(
                "select customer_id, target_id, field, new_value from _activation_changes "
                "where seq between ? and ? order by seq, field",
                [first, last],
            ).fetchall()
            block: dict[str, dict] = {}
            for customer_id, target_id, name, value in rows:
                block.setdefault(target_id, {"customer_id": customer_id, "fields": {}})["fields"][name] = value
            yield first, last, block

    def frame(self, limit: int | None = None) -> pd.DataFrame:
        """The plan (or its first `limit` rows) as a frame: customer_id, target_id, field, new_value,
        old_value, in target order. For previews and small stores."""
        return self.conn.execute(
            "select customer_id, target_id, field, new_value, old_value from _activation_changes "
            "order by seq, field" + (f" limit {int(limit)}" if limit is not None else "")
        ).df()


def plan_changes(
    conn: duckdb.DuckDBPyConnection,
    destination: str,
    *,
    run_id: str,
    mode: str,
    now: datetime,
    shopify_tags: bool = False,
) -> tuple[Plan, list[str]]:
    """Write this destination's plan to `activation.planned_changes`; returns it (read from DuckDB
    on demand: `Plan.blocks`, `Plan.frame`) and the score columns left out.

    Rows: customer_id, target_id, field, new_value (null: clear the value upstream), old_value
    (null: never sent before).
    """
    if destination not in DESTINATIONS:
        raise ValueError(f"unknown destination {destination!r}")
    ensure_tables(conn)
    absent = build_values_view(conn, destination, shopify_tags)
    run_script(
        conn,
        read_sql(SQL_PACKAGE, "sql/plan.sql"),
        {"destination": destination, "run_id": run_id, "mode": mode, "now": now},
    )
    customers, values, new_customers, clears = conn.execute(
        "select count(distinct target_id), count(*), count(distinct target_id) filter (where old_value is null), "
        "count(*) filter (where new_value is null) from _activation_changes"
    ).fetchone()
    by_field = dict(conn.execute("select field, count(*) from _activation_changes group by field order by field"
                                 ).fetchall())
    return Plan(conn, int(customers), int(values), {k: int(v) for k, v in by_field.items()}, int(new_customers),
                int(clears)), absent
