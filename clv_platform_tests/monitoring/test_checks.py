"""Asset checks of every layer: each blocking check fails on a crafted bad input and passes on good input.

The checks are invoked directly with a DuckDBResource on a tmp_path database; one test also runs a
check through `dg.materialize` to show that a failing blocking check stops the assets downstream.
"""

import json
from datetime import date, datetime, timedelta

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource

from clv_platform.checks import ALL_CHECKS, checks_for
from clv_platform.checks.feature_checks import (
    features_null_shares,
    features_one_row_per_customer,
    features_value_ranges,
)
from clv_platform.checks.model_checks import clv_model_not_worse_than_registered, metric_value
from clv_platform.checks.score_checks import (
    ADVISORY_SCORE_CHECKS,
    clv_every_customer_scored_once,
    clv_horizon_within_history,
    clv_scores_finite,
    clv_scores_non_negative,
    clv_scores_probabilities,
)
from clv_platform.checks.staging_checks import (
    customers_hold_plausible_order_shares,
    orders_cover_their_span,
    orders_have_plausible_amounts,
    orders_keys_not_null,
    orders_net_revenue_non_negative,
    orders_no_future_timestamps,
    order_history_matches_orders,
    order_lines_keys,
    orders_unique_order_id,
    staging_rows_reconcile,
)
from clv_platform.transforms.features import FEATURE_COLUMNS


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "checks.duckdb"
    return path, DuckDBResource(database=str(path))


def write(path, table: str, frame: pd.DataFrame) -> None:
    with duckdb.connect(str(path)) as conn:
        conn.execute(f"create schema if not exists {table.split('.')[0]}")
        conn.register("_f", frame)
        conn.execute(f"create or replace table {table} as select * from _f")


def sql(path, statement: str, params=None) -> None:
    with duckdb.connect(str(path)) as conn:
        conn.execute(statement, params or [])


def orders(n: int = 4) -> pd.DataFrame:
    created = datetime(2025, 3, 1, 12)
    return pd.DataFrame(
        {
            "order_id": [f"gid://shopify/Order/{i}" for i in range(n)],
            "source": "demo",
            "customer_id": [f"c{i % 2}" for i in range(n)],
            "created_at": [created + timedelta(days=i) for i in range(n)],
            "updated_at": [created + timedelta(days=i, hours=1) for i in range(n)],
            "order_date": [(created + timedelta(days=i)).date() for i in range(n)],
            "is_cancelled": False,
            "cancelled_at": pd.Series([None] * n, dtype="datetime64[ns]"),
            "net_revenue": [10.0 * (i + 1) for i in range(n)],
        }
    )


def staging_with_reconciliation(path, raw_rows: int, accepted: int, rejected: int) -> None:
    write(path, "staging.orders", orders(accepted))
    write(path, "raw.shopify_orders", pd.DataFrame({"order_id": [f"o{i}" for i in range(raw_rows)]}))
    write(
        path,
        "staging.rejected_rows",
        pd.DataFrame({"source": "demo", "source_table": ["raw.shopify_orders"] * rejected, "reason": "test order"}),
    )


# ----------------------------------------------------------------------------- staging


def test_staging_checks_pass_on_good_orders(db):
    path, resource = db
    staging_with_reconciliation(path, raw_rows=6, accepted=4, rejected=2)
    for check in (orders_unique_order_id, orders_keys_not_null, orders_no_future_timestamps,
                  orders_net_revenue_non_negative, staging_rows_reconcile):
        result = check(duckdb=resource)
        assert result.passed, (check.check_key.name, result.description)


def test_duplicate_order_id_fails(db):
    path, resource = db
    frame = orders()
    frame.loc[3, "order_id"] = frame.loc[0, "order_id"]
    write(path, "staging.orders", frame)
    result = orders_unique_order_id(duckdb=resource)
    assert not result.passed
    assert "gid://shopify/Order/0" in result.description


def _history(path, sequences: dict[str, list[int]]) -> None:
    """staging.orders and a staging.order_history whose purchase_seq per customer are ``sequences``."""
    rows = [(f"{c}-o{i}", c, seq) for c, seqs in sequences.items() for i, seq in enumerate(seqs)]
    frame = pd.DataFrame(rows, columns=["order_id", "customer_id", "purchase_seq"])
    write(path, "staging.orders", frame[["order_id", "customer_id"]])
    write(path, "staging.order_history", frame)


@pytest.mark.parametrize("broken, why", [
    ({"a": [1, 2, 3], "b": [1, 3, 4]}, "a gap"),
    ({"a": [1, 2, 3], "b": [1, 2, 2]}, "a repeat"),
    ({"a": [1, 2, 3], "b": [2, 3, 4]}, "no first purchase"),
    ({"a": [1, 2, 3], "b": [0, 2, 3]}, "a sequence from 0 (n values, max n, all distinct)"),
    ({"a": [1, 2, 3], "b": [1, 1, 3]}, "a repeat hidden by max = n"),
    ({"a": [1, 2, 3], "b": [1, 3, 3, 3, 5]}, "repeats with the sum of 1..n"),
])
def test_a_broken_purchase_sequence_fails_the_history_check(db, broken, why):
    path, resource = db
    _history(path, {"a": [1, 2, 3], "c": [1]})
    assert order_history_matches_orders(duckdb=resource).passed
    _history(path, {**broken, "c": [1]})
    result = order_history_matches_orders(duckdb=resource)
    assert not result.passed, why
    assert result.metadata["broken_customers"].value == 1 and "e.g. b" in result.description


def test_repeated_or_missing_line_keys_fail_the_line_check(db):
    path, resource = db
    lines = pd.DataFrame({"order_id": ["o1", "o1", "o2", "o3"], "line_number": [1, 2, 1, 1]})
    write(path, "staging.order_lines", lines)
    assert order_lines_keys(duckdb=resource).passed
    write(path, "staging.order_lines", pd.concat([lines, lines.iloc[[1, 3, 3]]]))
    result = order_lines_keys(duckdb=resource)
    assert not result.passed and result.metadata["duplicate_keys"].value == 2
    write(path, "staging.order_lines", lines.assign(order_id=["o1", "o1", None, None]))
    result = order_lines_keys(duckdb=resource)
    assert not result.passed
    assert result.metadata["null_keys"].value == 2 and result.metadata["duplicate_keys"].value == 1


def test_repeated_keys_counts_exactly_what_a_grouping_counts():
    """The hash pre-count of ``checks.common.repeated_keys`` never hides a repeat and never invents
    one: on random keys with repeats, nulls and none, it equals grouping the keys themselves."""
    from clv_platform.checks.common import repeated_keys

    rng = np.random.default_rng(7)
    for repeats in (0, 1, 25):
        conn = duckdb.connect()
        ids = [f"o{i}" for i in range(2000)] + [f"o{int(i)}" for i in rng.integers(0, 2000, repeats)]
        frame = pd.DataFrame({"a": ids, "b": 1})
        frame.loc[::97, "a"] = None
        conn.register("t", frame)
        exact = conn.execute("select count(*) from (select a, b from t group by all having count(*) > 1)").fetchone()[0]
        assert repeated_keys(conn, "t", "a, b") == exact
        assert (exact > 0) == bool(repeats or frame["a"].isna().sum() > 1)


def test_null_key_fails(db):
    path, resource = db
    frame = orders()
    frame.loc[1, "order_date"] = None
    write(path, "staging.orders", frame)
    result = orders_keys_not_null(duckdb=resource)
    assert not result.passed and "order_date" in result.description


def test_a_customer_holding_a_large_share_of_the_orders_is_warned_of(db):
    """A B2B-like store (100 customers, 50 orders each: 1 % apiece) passes; a shop of mostly
    one-order customers whose guests' orders all carry customer '0' (WooCommerce's guest id) warns
    and names it, and so would a heavy wholesale account (a warning, never blocking)."""
    path, resource = db
    frame = orders(5000)
    frame["customer_id"] = [f"c{i % 100}" for i in range(5000)]
    write(path, "staging.orders", frame)
    result = customers_hold_plausible_order_shares(duckdb=resource)
    assert result.passed and result.metadata["order_floor"].value == 1000.0  # 20 x the median of 50
    frame["customer_id"] = [f"c{i}" for i in range(5000)]
    frame.loc[:899, "customer_id"] = "0"
    frame.loc[900:929, "customer_id"] = "c-wholesale"  # 30 orders: below the 50-order floor
    write(path, "staging.orders", frame)
    result = customers_hold_plausible_order_shares(duckdb=resource)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["examples"].value == [["0", 900]] and result.metadata["order_floor"].value == 50.0
    assert "0 (900 orders, 18.0%)" in result.description and "[files.columns]" in result.description


def test_rows_not_reconciling_fail(db):
    path, resource = db
    staging_with_reconciliation(path, raw_rows=7, accepted=4, rejected=2)
    result = staging_rows_reconcile(duckdb=resource)
    assert not result.passed
    assert "raw.shopify_orders: 7 in != 4 accepted + 2 rejected" in result.description


def test_file_rows_reconcile_through_lines_returns_and_rejects(db):
    path, resource = db
    staging_with_reconciliation(path, raw_rows=6, accepted=4, rejected=2)
    write(path, "raw.file_transactions", pd.DataFrame({"row_number": range(5)}))
    write(path, "staging.order_lines", pd.DataFrame({"order_id": ["import:1", "import:1", "import:2"]}))
    write(path, "staging.returns", pd.DataFrame({"return_id": ["import:C3"]}))
    assert not staging_rows_reconcile(duckdb=resource).passed
    sql(path, "insert into staging.rejected_rows values ('file:a.csv', 'raw.file_transactions', 'duplicate row')")
    assert staging_rows_reconcile(duckdb=resource).passed


def test_future_timestamp_fails(db):
    path, resource = db
    frame = orders()
    frame.loc[2, "created_at"] = datetime.now() + timedelta(days=3)
    write(path, "staging.orders", frame)
    result = orders_no_future_timestamps(duckdb=resource)
    assert not result.passed and "created_at" in result.description


def test_negative_net_revenue_fails(db):
    path, resource = db
    frame = orders()
    frame.loc[1, "net_revenue"] = -5.0
    write(path, "staging.orders", frame)
    result = orders_net_revenue_non_negative(duckdb=resource)
    assert not result.passed and "gid://shopify/Order/1" in result.description


# ----------------------------------------------------------------------------- features


def features(n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)]})
    for column in FEATURE_COLUMNS:
        frame[column] = rng.uniform(0, 1, n)
    return frame


def test_feature_checks_pass_on_good_features(db):
    path, resource = db
    write(path, "features.customer_features", features())
    for check in (features_one_row_per_customer, features_value_ranges, features_null_shares):
        result = check(duckdb=resource)
        assert result.passed, (check.check_key.name, result.description)


@pytest.mark.parametrize(
    "mutate, check, message",
    [
        (lambda f: f.assign(customer_id=["c0", *f["customer_id"][1:-1], "c0"]), features_one_row_per_customer, "c0"),
        (lambda f: f.assign(days_since_last_order=-f["days_since_last_order"]), features_value_ranges, "days_since_last_order"),
        (lambda f: f.assign(discount_share=f["discount_share"] + 1.5), features_value_ranges, "discount_share"),
        (lambda f: f.assign(frequency=np.where(f.index < 5, np.nan, f["frequency"])), features_null_shares, "frequency"),
        (lambda f: f.drop(columns=["monetary"]), features_value_ranges, "monetary"),
    ],
    ids=["duplicate_customer", "negative_recency", "share_above_one", "null_share", "missing_column"],
)
def test_feature_checks_fail_on_bad_features(db, mutate, check, message):
    path, resource = db
    write(path, "features.customer_features", mutate(features()))
    result = check(duckdb=resource)
    assert not result.passed
    assert message in result.description


def test_nullable_feature_within_its_limit_passes(db):
    path, resource = db
    write(path, "features.customer_features",
          features().assign(std_interpurchase_days=lambda f: np.where(f.index < 40, np.nan, 1.0)))
    assert features_null_shares(duckdb=resource).passed


# ----------------------------------------------------------------------------- models


def model_runs(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"model_name": "clv_xgb", "model_version": version, "trained_at": datetime(2025, 1, day),
             "cutoff": date(2025, 1, day), "horizon_days": 365, "objective": "tweedie", "n_train": 100,
             "metrics": json.dumps(metrics), "path": f"/m/{version}.ubj", "is_registered": registered}
            for version, day, metrics, registered in rows
        ]
    )


def test_model_check_passes_without_a_registered_model(db):
    _, resource = db
    result = clv_model_not_worse_than_registered(duckdb=resource)
    assert result.passed and "nothing to compare" in result.description


def test_worse_new_model_fails_and_says_why(db):
    path, resource = db
    write(path, "ml.model_runs", model_runs([
        ("v1", 1, {"normalized_gini": 0.60, "mae": 100.0}, True),
        ("v2", 2, {"normalized_gini": 0.50, "mae": 101.0}, True),
    ]))
    result = clv_model_not_worse_than_registered(duckdb=resource)
    assert not result.passed
    assert "normalized_gini" in result.description and "v2" in result.description and "v1" in result.description
    assert "mae" not in result.description  # within its margin


def test_new_model_within_margin_passes(db):
    path, resource = db
    write(path, "ml.model_runs", model_runs([
        ("v1", 1, {"normalized_gini": 0.60, "mae": 100.0}, True),
        ("v0", 3, {"normalized_gini": 0.20, "mae": 900.0}, False),  # unregistered runs are no baseline
        ("v2", 4, {"normalized_gini": 0.58, "mae": 110.0}, True),
    ]))
    result = clv_model_not_worse_than_registered(duckdb=resource)
    assert result.passed, result.description


def test_metric_value_reads_nested_or_top_level():
    assert metric_value('{"validation": {"mae": 3}}', "mae", "validation") == 3.0
    assert metric_value('{"mae": 4}', "mae", "validation") == 4.0
    assert metric_value('{"mae": "NaN"}', "mae") is None


# ----------------------------------------------------------------------------- scores


def scores(n: int = 10) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "predicted_clv": np.linspace(0, 500, n),
            "p_alive": np.linspace(0.1, 1.0, n),
            "expected_purchases": np.linspace(0, 3, n),
            "clv_tier": "Rest",
            "model_version": "v1",
            "scored_at": datetime(2025, 3, 1),
        }
    )


SCORE_CHECKS = (clv_scores_finite, clv_scores_non_negative, clv_scores_probabilities, clv_every_customer_scored_once)


def test_score_checks_pass_on_good_scores(db):
    path, resource = db
    write(path, "features.customer_features", features(10))
    write(path, "scores.customer_clv", scores())
    for check in SCORE_CHECKS:
        result = check(duckdb=resource)
        assert result.passed, (check.check_key.name, result.description)


def test_the_scored_once_counts_name_each_defect(db):
    """Duplicates, customers without a score, scores of nobody and null ids are each counted, with
    the feature table and without it."""
    from clv_platform.checks.score_checks import scored_once_counts

    path, resource = db
    bad = pd.concat([scores().iloc[2:], scores().iloc[[4, 4, 5]]])  # c0, c1 missing; c4 x3, c5 x2
    bad = pd.concat([bad, scores().iloc[[6]].assign(customer_id="stranger"),
                     scores().iloc[[7, 8]].assign(customer_id=None)])  # two null ids: one group of 2
    write(path, "scores.customer_clv", bad)
    with duckdb.connect(str(path)) as conn:
        assert scored_once_counts(conn, "scores.customer_clv") == {"rows": 14, "null_ids": 2, "duplicated_ids": 3}
    write(path, "features.customer_features", features(10))
    with duckdb.connect(str(path)) as conn:
        assert scored_once_counts(conn, "scores.customer_clv") == {
            "rows": 14, "null_ids": 2, "duplicated_ids": 3, "missing_customers": 2, "unknown_customers": 1}
    result = clv_every_customer_scored_once(duckdb=resource)
    assert not result.passed and "'missing_customers': 2" in result.description and "e.g. " in result.description


def test_a_history_far_shorter_than_the_horizon_is_warned_of(db):
    """A 5-day export scored over 365 days: the BTYD stand-ins projected five days of buying over a
    year (CLVs of 60x the spend) with no word. A history of a quarter of the horizon passes."""
    path, resource = db
    write(path, "scores.customer_clv", scores())
    write(path, "features.customer_features", features(10).assign(T_days=[4.0] * 9 + [5.0]))
    result = clv_horizon_within_history(duckdb=resource)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["history_days"].value == 5.0 and result.metadata["horizon_to_history"].value == 73.0
    assert "spans 5 days and the CLV horizon is 365 days (73x the history)" in result.description
    write(path, "features.customer_features", features(10).assign(T_days=[30.0] * 9 + [91.25]))
    assert clv_horizon_within_history(duckdb=resource).passed


@pytest.mark.parametrize(
    "mutate, check",
    [
        (lambda s: s.assign(predicted_clv=s["predicted_clv"].where(s.index != 3, np.nan)), clv_scores_finite),
        (lambda s: s.assign(predicted_clv=s["predicted_clv"].where(s.index != 3, -1.0)), clv_scores_non_negative),
        (lambda s: s.assign(p_alive=s["p_alive"].where(s.index != 3, 1.2)), clv_scores_probabilities),
        (lambda s: pd.concat([s, s.iloc[[2]]]), clv_every_customer_scored_once),
        (lambda s: s.iloc[1:], clv_every_customer_scored_once),
    ],
    ids=["nan_score", "negative_clv", "probability_above_one", "duplicate_customer", "missing_customer"],
)
def test_score_checks_fail_on_bad_scores(db, mutate, check):
    path, resource = db
    write(path, "features.customer_features", features(10))
    write(path, "scores.customer_clv", mutate(scores()))
    assert not check(duckdb=resource).passed


def test_an_order_of_an_implausible_amount_is_warned_of(db):
    """A store of $20-$40 orders passes, with a wholesale order of 100x the median; a typo of 1e9
    (the spend model would trust it as a repeat order) warns and names the order, never blocking."""
    path, resource = db
    frame = orders(200).assign(gross_revenue=[20.0 + i % 21 for i in range(200)])  # median 30
    frame.loc[7, "gross_revenue"] = 3000.0
    write(path, "staging.orders", frame)
    result = orders_have_plausible_amounts(duckdb=resource)
    assert result.passed and result.metadata["amount_floor"].value == 30000.0
    frame.loc[3, "gross_revenue"] = 1e9
    write(path, "staging.orders", frame)
    result = orders_have_plausible_amounts(duckdb=resource)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["large_orders"].value == 1
    assert result.metadata["examples"].value == [["gid://shopify/Order/3", "c1", 1e9]]
    assert "gid://shopify/Order/3 of customer c1 (1,000,000,000.00)" in result.description


def test_a_month_missing_from_the_orders_is_warned_of(db):
    """One order a day: a 30-day hole (a monthly file left out) warns with its dates, never blocking."""
    path, resource = db
    frame = orders(120)
    write(path, "staging.orders", frame)
    result = orders_cover_their_span(duckdb=resource)
    assert result.passed and result.metadata["gaps"].value == 0
    write(path, "staging.orders", frame[(frame.index < 30) | (frame.index >= 60)])
    result = orders_cover_their_span(duckdb=resource)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["empty_days"].value == 30
    assert result.metadata["examples"].value == [
        {"start": "2025-03-31", "end": "2025-04-29", "days": 30, "orders_per_day_around": 1.0, "orders_after": 60,
         "description": "no orders from 2025-03-31 to 2025-04-29 (30 days) where the store had 1.0 a day around it"}]
    assert "no orders from 2025-03-31 to 2025-04-29 (30 days)" in result.description
    assert "may also be a season" not in result.description  # a month: a missing file, not a season


def test_orders_on_monthly_invoicing_days_pass_as_the_stores_rhythm(db):
    """Ten orders on each of the first two days of a month, for a year: eleven empty runs of 26-29
    days, each implausible alone, recur monthly and pass, named in the metadata."""
    path, resource = db
    days = [datetime(2025, m, d, 12) for m in range(1, 13) for d in (1, 2) for _ in range(10)]
    frame = orders(len(days))
    frame["created_at"] = days
    frame["updated_at"] = days
    frame["order_date"] = [d.date() for d in days]
    write(path, "staging.orders", frame)
    result = orders_cover_their_span(duckdb=resource)
    assert result.passed and result.metadata["gaps"].value == 0
    assert result.metadata["rhythm_runs"].value == 11
    assert result.metadata["rhythm"].value.startswith("11 runs of 26-29 days without orders recur from 2025-01-03 "
                                                      "to 2025-11-30, one every 28-31 days")


def _orders_on(days: list) -> pd.DataFrame:
    """Orders at noon on each of ``days`` (dates, repeated for several a day)."""
    frame = orders(len(days))
    stamps = [datetime(d.year, d.month, d.day, 12) for d in days]
    frame["created_at"], frame["updated_at"], frame["order_date"] = stamps, stamps, list(days)
    return frame


def test_a_silence_up_to_the_as_of_date_is_warned_of(db, monkeypatch):
    """Three orders a day to 31 March, then none to the as-of date of 30 May: a feed that stopped (or a
    store that closed), whose days the models leave out of every customer's time; the history has no
    hole, so only the tail warns. As of 5 April the five quiet days are no news."""
    path, resource = db
    days = [d.date() for d in pd.date_range("2025-01-01", "2025-03-31") for _ in range(3)]
    write(path, "staging.orders", _orders_on(days))
    monkeypatch.setenv("CLV_AS_OF", "2025-05-30")
    result = orders_cover_their_span(duckdb=resource)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["gaps"].value == 0 and result.metadata["silent_days_before_as_of"].value == 60
    assert result.description == (
        "no orders from 2025-04-01 to the as-of date 2025-05-30 (60 days) where the store had 3.0 a day before: the "
        "models read these days as unobserved, as a missing part of the export, so the scores stand where they were "
        "when the orders stopped. If orders stopped arriving (a connector, an export cut short), fetch or add them")
    monkeypatch.setenv("CLV_AS_OF", "2025-04-05")
    result = orders_cover_their_span(duckdb=resource)
    assert result.passed and result.metadata["silent_days_before_as_of"].value == 0


def test_a_silence_where_the_store_was_closed_a_year_before_names_the_closed_season(db, monkeypatch):
    """A shop open October to January: as of 30 June its silence since 1 February began a year after
    last year's closure began, so it is that season again (session 54), and the check passes naming
    both closures. Had the orders stopped on 30 November instead, two months before the season's end,
    the silence warns and names last year's closure as a possible season."""
    path, resource = db
    days = [d.date() for d in pd.date_range("2023-10-01", "2025-01-31") if d.month in (10, 11, 12, 1) for _ in range(4)]
    write(path, "staging.orders", _orders_on(days))
    monkeypatch.setenv("CLV_AS_OF", "2025-06-30")
    result = orders_cover_their_span(duckdb=resource)
    assert result.passed and result.metadata["silent_days_before_as_of"].value == 0
    assert result.metadata["gaps"].value == 0 and result.metadata["rhythm_runs"].value == 1
    assert result.description == (
        "no stretch without orders looks like missing records; no orders from 2024-02-01 to 2024-09-30 (243 days), "
        "and none since 2025-02-01 (150 days to 2025-06-30), a year after that closure began: a season the store "
        "closes for, not missing records; its days are no customer's time, and the forecasts count only the open "
        "days of the cycle ahead (the closure's days of the year, as last year's)")
    write(path, "staging.orders", _orders_on([d for d in days if d < date(2024, 12, 1)]))
    result = orders_cover_their_span(duckdb=resource)
    assert not result.passed and result.metadata["silent_days_before_as_of"].value == 212
    assert ("the store had none from 2024-02-01 to 2024-09-30 a year before either: if it closes for a season, the "
            "forecasts count the closed days ahead as days to buy on") in result.description
    # the named stretch of 2024 is as long as a season: what the forecasts get wrong if it is one
    assert ("a stretch of 243 days may also be a season the store closes for: if it closes then every year, the "
            "forecasts count those days of the coming year as days to buy on and are too high") in result.description


# ----------------------------------------------------------------------------- wiring


def test_every_data_check_is_blocking_and_names_are_unique():
    """Bad staging, features or scores must not flow on; raw only warns (staging rejects bad rows) and
    the model check only reports (a regressed model is not registered, scoring keeps the old one)."""
    from clv_platform.checks.staging_checks import ADVISORY_CHECKS as STAGING_ADVISORY

    ADVISORY_CHECKS = STAGING_ADVISORY | ADVISORY_SCORE_CHECKS

    keys = [key for check in ALL_CHECKS for key in check.check_keys]
    assert len(keys) == len(set(keys))
    advisory = set()
    for check in ALL_CHECKS:
        for spec in check.check_specs:
            layer = spec.asset_key.path[0]
            if spec.name in ADVISORY_CHECKS:
                advisory.add(spec.name)
                assert not spec.blocking, spec.key
            else:
                assert spec.blocking == (layer not in ("raw", "ml")), spec.key
    assert advisory == ADVISORY_CHECKS == {"customers_hold_plausible_order_shares", "orders_have_plausible_amounts",
                                           "orders_cover_their_span", "clv_horizon_within_history"}


def test_checks_for_returns_every_check_when_every_target_is_defined():
    from clv_platform.definitions import ASSETS

    assert checks_for(ASSETS) == ALL_CHECKS


def test_checks_for_raises_on_a_check_whose_asset_is_not_defined():
    """A typo in a check's key (or a renamed asset) must not silently drop the check."""
    from clv_platform.checks import UnknownCheckTarget
    from clv_platform.definitions import ASSETS

    without_orders = [a for a in ASSETS if dg.AssetKey(["staging", "orders"]) not in a.keys]
    assert len(without_orders) == len(ASSETS) - 1  # the staging multi-asset is the one left out
    with pytest.raises(UnknownCheckTarget, match=r"orders_unique_order_id on staging/orders") as raised:
        checks_for(without_orders)
    assert "features/customer_features" not in str(raised.value)


def test_failing_blocking_check_stops_downstream_assets(db):
    path, resource = db
    bad = orders()
    bad.loc[3, "order_id"] = bad.loc[0, "order_id"]

    @dg.asset(key=["staging", "orders"])
    def staging_orders(duckdb: DuckDBResource) -> None:
        with duckdb.get_connection() as conn:
            conn.execute("create schema if not exists staging")
            conn.register("_f", bad)
            conn.execute("create or replace table staging.orders as select * from _f")

    @dg.asset(key=["features", "downstream"], deps=[staging_orders])
    def downstream() -> None:
        return None

    result = dg.materialize(
        [staging_orders, downstream, orders_unique_order_id],
        resources={"duckdb": resource},
        raise_on_error=False,
    )
    evaluations = result.get_asset_check_evaluations()
    assert [e.passed for e in evaluations] == [False]
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey(["features", "downstream"]) not in materialized


def test_a_store_of_one_time_buyers_passes_the_null_share_check(db):
    """Cadence statistics are null by definition without a repeat purchase: a store where nobody ever
    bought twice (every cadence column 100 % null) failed this blocking check and stopped the whole
    files build. They are judged on the customers with enough purchase days; a null there still fails."""
    path, resource = db
    one_time = features().assign(
        purchase_days=1.0, frequency=0.0, mean_interpurchase_days=np.nan, median_interpurchase_days=np.nan,
        std_interpurchase_days=np.nan, recency_to_interval_ratio=np.nan)
    write(path, "features.customer_features", one_time)
    result = features_null_shares(duckdb=resource)
    assert result.passed, result.description
    assert result.metadata["null_shares"].data["mean_interpurchase_days"] == 0.0
    # ten repeat buyers among them, one of them without a mean interval: 10 % null where defined
    repeat = one_time.assign(
        purchase_days=np.where(one_time.index < 10, 2.0, 1.0),
        mean_interpurchase_days=np.where((one_time.index >= 1) & (one_time.index < 10), 30.0, np.nan),
        median_interpurchase_days=np.where(one_time.index < 10, 30.0, np.nan),
        recency_to_interval_ratio=np.where(one_time.index < 10, 1.0, np.nan))
    write(path, "features.customer_features", repeat)
    result = features_null_shares(duckdb=resource)
    assert result.metadata["null_shares"].data["mean_interpurchase_days"] == pytest.approx(0.1)
    assert result.passed  # 10 % is within the 95 % limit


def test_a_store_without_spend_in_its_last_180_days_passes_the_null_share_check(db):
    """The spend trend is null by definition without spend in the last 180 days: a dormant store whose
    history ends with five orders in 2022 after nothing since 2019 (199 of 200 customers without a
    trend, 99.5 % > the 99 % limit) failed this blocking check and stopped the whole files build.
    It is judged on the customers with spend in those 180 days; a null there still fails."""
    path, resource = db
    frame = features(200)
    recent = frame.index < 1
    dormant = frame.assign(spend_last_90d=np.where(recent, 40.0, 0.0), spend_prev_90d=0.0,
                           spend_trend_90d=np.where(recent, 1.0, np.nan))
    write(path, "features.customer_features", dormant)
    result = features_null_shares(duckdb=resource)
    assert result.passed, result.description
    assert result.metadata["null_shares"].data["spend_trend_90d"] == 0.0
    write(path, "features.customer_features", dormant.assign(spend_trend_90d=np.nan))
    result = features_null_shares(duckdb=resource)
    assert not result.passed and "spend_trend_90d" in result.description
    assert result.metadata["null_shares"].data["spend_trend_90d"] == 1.0


def test_a_store_of_free_orders_passes_the_null_share_check(db):
    """Refund rate and discount share divide by gross spend, which a customer whose every order was
    free (a sample campaign) does not have: 30 % such customers (over the 20 % limit) failed this
    blocking check and stopped the build. They are judged where there is net spend; a null there
    (a customer who spent but has no rate) still fails."""
    path, resource = db
    frame = features(200)
    free = frame.index < 60
    store = frame.assign(total_net_spend=np.where(free, 0.0, 50.0),
                         refund_rate=np.where(free, np.nan, 0.1), discount_share=np.where(free, np.nan, 0.2))
    write(path, "features.customer_features", store)
    result = features_null_shares(duckdb=resource)
    assert result.passed, result.description
    assert result.metadata["null_shares"].data["refund_rate"] == 0.0
    assert result.metadata["null_shares"].data["discount_share"] == 0.0
    write(path, "features.customer_features", store.assign(refund_rate=np.where(frame.index < 100, np.nan, 0.1)))
    result = features_null_shares(duckdb=resource)
    assert not result.passed and "refund_rate" in result.description
    assert result.metadata["null_shares"].data["refund_rate"] == round(40 / 140, 4)  # shown to 4 places
