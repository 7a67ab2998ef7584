"""Drift detection, segment shares, realized performance, and the monitoring assets on a tmp DuckDB."""

import dataclasses
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource

from clv_platform.monitoring import assets as monitoring_assets
from clv_platform.monitoring.assets import MONITORING_ASSETS
from clv_platform.monitoring.drift import (
    DriftSettings,
    detect_drift,
    load_config,
    save_report,
    segment_share_changes,
)
from clv_platform.monitoring.performance import evaluate, matured, next_maturity, realized_outcomes, snapshot_heads

SETTINGS = load_config().drift


def customers(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Customer features drawn from one distribution; ``shift`` > 0 moves most of them."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"c{seed}_{i}" for i in range(n)],
            "days_since_last_order": rng.exponential(120 * (1 + shift), n),
            "frequency": rng.poisson(1.5 + 3 * shift, n),
            "monetary": rng.gamma(2.0, 40 * (1 + shift), n),
            "T_days": rng.uniform(0, 700, n),
            "refund_rate": np.where(rng.random(n) < 0.1, rng.uniform(0, 1, n), 0.0),
            "mean_interpurchase_days": np.where(rng.random(n) < 0.5, np.nan, rng.gamma(2, 30, n)),
            "country": rng.choice(["US", "DE", "FR"], n, p=[0.2, 0.3, 0.5] if shift else [0.6, 0.3, 0.1]),
        }
    )


FEATURES = ["days_since_last_order", "frequency", "monetary", "T_days", "refund_rate", "mean_interpurchase_days", "country"]


def test_clean_sample_of_the_same_distribution_is_not_drift():
    result = detect_drift(customers(2000, 1), customers(2000, 2), FEATURES, SETTINGS)
    assert not result.drift_detected
    assert result.share_drifted < SETTINGS.drift_share_threshold
    frame = result.to_frame()
    assert list(frame["column"]) == FEATURES
    assert set(frame["method"]) == {"wasserstein", "jensenshannon"}
    assert frame["score"].between(0, 1).all()


def test_drifted_frame_raises_the_flag():
    result = detect_drift(customers(2000, 1), customers(2000, 3, shift=1.0), FEATURES, SETTINGS)
    assert result.drift_detected
    assert {"days_since_last_order", "frequency", "monetary", "country"} <= set(result.drifted_columns)
    assert "T_days" not in result.drifted_columns
    assert result.share_drifted == pytest.approx(len(result.drifted_columns) / len(FEATURES))


def test_threshold_decides_the_overall_flag():
    lenient = DriftSettings(drift_share_threshold=0.9)
    result = detect_drift(customers(1000, 1), customers(1000, 3, shift=1.0), FEATURES, lenient)
    assert 0 < result.share_drifted < 0.9 and not result.drift_detected


def test_prediction_drift_is_measured_apart_from_the_feature_share():
    rng = np.random.default_rng(5)
    same = detect_drift(customers(500, 1), customers(500, 2), FEATURES, SETTINGS,
                        reference_predictions=pd.Series(rng.gamma(2, 50, 800)),
                        current_predictions=pd.Series(rng.gamma(2, 50, 600)))
    assert same.prediction is not None and not same.prediction.drifted
    moved = detect_drift(customers(500, 1), customers(500, 2), FEATURES, SETTINGS,
                         reference_predictions=pd.Series(rng.gamma(2, 50, 800)),
                         current_predictions=pd.Series(rng.gamma(2, 120, 600)))
    assert moved.prediction.drifted and moved.prediction.column == SETTINGS.prediction_column
    assert moved.share_drifted == same.share_drifted  # features unchanged
    assert moved.to_frame()["is_prediction"].sum() == 1


def test_per_column_drift_equals_evidentlys_data_drift_preset():
    """detect_drift runs one ValueDrift per column instead of DataDriftPreset (which measured every
    column three times): each column's method, threshold, score and drifted flag, and so the share
    and the overall flag, must be the ones the preset computes on the same frames."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from clv_platform.monitoring.drift import _column_results, _prepare

    settings = dataclasses.replace(SETTINGS, per_column_threshold={"monetary": 0.02, "country": 0.3},
                                   drift_share_threshold=0.3)
    reference, current = customers(1500, 1), customers(1500, 4, shift=0.3)
    result = detect_drift(reference, current, FEATURES, settings)

    kinds = {c: ("cat" if c == "country" else "num") for c in FEATURES}
    definition = DataDefinition(numerical_columns=[c for c in FEATURES if kinds[c] == "num"],
                                categorical_columns=["country"])
    preset = DataDriftPreset(columns=FEATURES, drift_share=settings.drift_share_threshold,
                             num_method=settings.num_method, num_threshold=settings.num_threshold,
                             cat_method=settings.cat_method, cat_threshold=settings.cat_threshold,
                             per_column_threshold=settings.per_column_threshold)
    snapshot = Report([preset], include_tests=True).run(
        current_data=Dataset.from_pandas(_prepare(current, FEATURES, kinds), data_definition=definition),
        reference_data=Dataset.from_pandas(_prepare(reference, FEATURES, kinds), data_definition=definition))
    expected = _column_results(snapshot.dict(), kinds)
    assert [c.column for c in result.columns] == FEATURES
    for column in result.columns:
        assert column == expected[column.column]
    by_name = {c.column: c for c in result.columns}
    assert by_name["monetary"].threshold == 0.02 and by_name["country"].threshold == 0.3
    assert by_name["country"].method == "jensenshannon" and by_name["T_days"].method == "wasserstein"
    # the per-column overrides make both outcomes occur, so the comparison is not of all-False flags
    assert 0 < len(result.drifted_columns) < len(FEATURES)
    share = sum(c.drifted for c in expected.values()) / len(FEATURES)
    assert result.share_drifted == pytest.approx(share)
    assert result.drift_detected == (share >= settings.drift_share_threshold)


def test_sparse_columns_are_skipped_not_measured():
    reference = customers(500, 1).assign(profile_age_days=np.nan)
    result = detect_drift(reference, customers(500, 2).assign(profile_age_days=1.0), ["days_since_last_order", "profile_age_days"])
    assert "profile_age_days" in result.skipped
    assert [c.column for c in result.columns] == ["days_since_last_order"]


def test_segment_share_changes_on_a_hand_example():
    reference = pd.Series(["A", "A", "B", "C"])
    current = pd.Series(["A", "B", "B", None])
    table = segment_share_changes(reference, current).set_index("segment")
    assert table.loc["A"].tolist() == pytest.approx([0.5, 0.25, -0.25])
    assert table.loc["B"].tolist() == pytest.approx([0.25, 0.5, 0.25])
    assert table.loc["C"].tolist() == pytest.approx([0.25, 0.0, -0.25])
    assert table.loc["(missing)", "current_share"] == pytest.approx(0.25)


def test_report_is_written_as_html(data_env):
    result = detect_drift(customers(200, 1), customers(200, 2), ["days_since_last_order"], SETTINGS)
    path = save_report(result, when=datetime(2025, 3, 1, 12, 30, 5))
    assert path == data_env / "reports" / "drift_20250301T123005.html"
    assert path.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    # titled in memory: the page Evidently's save_html writes, with the title and heading added
    title = r"Feature drift at 2025-03-01 vs C:\ref <v1>"
    titled = save_report(result, when=datetime(2025, 3, 1, 12, 30, 6), title=title)
    plain = data_env / "plain.html"
    result.snapshot.save_html(str(plain))
    page, expected = titled.read_text(encoding="utf-8"), plain.read_text(encoding="utf-8")
    escaped = "Feature drift at 2025-03-01 vs C:\\ref &lt;v1&gt;"
    heading = f'<h1 style="font-family:sans-serif;font-size:20px;margin:16px">{escaped}</h1>'
    assert f"<title>{escaped}</title>" in page and heading in page
    ids = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|metric_[0-9a-f]{32}")
    assert ids.sub("id", page.replace(heading, "").replace(f"<title>{escaped}</title>", "")) == \
        ids.sub("id", re.sub(r"<title>.*?</title>", "", expected, count=1, flags=re.S))  # ids are drawn per render


# ----------------------------------------------------------------------------- realized performance


def hand_orders() -> pd.DataFrame:
    return pd.DataFrame(
        [
            ("a", date(2025, 1, 1), 20.0),   # on the cutoff day: before the window
            ("a", date(2025, 1, 11), 80.0),
            ("a", date(2025, 2, 15), 40.0),  # after the 30-day horizon
            ("b", date(2025, 1, 5), 0.0),    # cancelled: no revenue
            ("c", date(2025, 1, 31), 30.0),  # last day of the window
            ("z", date(2025, 1, 20), 99.0),  # not in the snapshot
        ],
        columns=["customer_id", "order_date", "net_revenue"],
    )


def hand_snapshots() -> pd.DataFrame:
    rows = []
    for snapshot_id, scored_at, cutoff, predictions in (
        ("v1@early", datetime(2025, 1, 2, 6), date(2025, 1, 1), (1.0, 1.0, 1.0)),   # replaced by the later one that day
        ("v1@late", datetime(2025, 1, 2, 9), date(2025, 1, 1), (100.0, 50.0, 0.0)),
        ("v2@pending", datetime(2025, 1, 16, 9), date(2025, 1, 15), (10.0, 10.0, 10.0)),
    ):
        for customer, p in zip("abc", predictions):
            rows.append((snapshot_id, scored_at, cutoff, 30, snapshot_id.split("@")[0], customer, p))
    return pd.DataFrame(
        rows, columns=["snapshot_id", "scored_at", "cutoff", "horizon_days", "model_version", "customer_id", "predicted_clv"]
    )


def _hand_store():
    conn = duckdb.connect()
    conn.execute("create schema monitoring; create schema staging")
    for table, frame in (("monitoring.score_history", hand_snapshots()), ("staging.orders", hand_orders())):
        conn.register("_f", frame)
        conn.execute(f"create table {table} as select * from _f")
        conn.unregister("_f")
    return conn


def test_realized_performance_on_a_hand_example():
    conn = _hand_store()
    heads = snapshot_heads(conn)
    assert heads["snapshot_id"].tolist() == ["v1@early", "v1@late", "v2@pending"]
    assert heads["customers"].tolist() == [3, 3, 3]
    table = evaluate(conn, matured(heads, date(2025, 1, 31)))
    assert len(table) == 1  # the 2025-01-15 scoring's window runs to 2025-02-14: not evaluated yet
    row = table.iloc[0]
    assert row["snapshot_id"] == "v1@late" and row["scoring_date"] == date(2025, 1, 2)
    assert row["actual_total"] == pytest.approx(110.0)  # a 80 + b 0 + c 30
    assert row["predicted_total"] == pytest.approx(150.0)
    assert row["mae"] == pytest.approx((20 + 50 + 30) / 3)
    # ordered by prediction a, b, c → captured 80, 80, 110 of 110; perfect order a, c, b → 80, 110, 110
    assert row["normalized_gini"] == pytest.approx((2 * (80 + 80 + 110) / 330 - 1) / (2 * (80 + 110 + 110) / 330 - 1))
    assert row["horizon_end"] == date(2025, 1, 31)
    assert next_maturity(heads, date(2025, 1, 31)) == date(2025, 2, 14)
    # a scoring already evaluated is not evaluated again
    assert evaluate(conn, matured(heads, date(2025, 1, 31)), done={"v1@late"}).empty
    # once the data reach 2025-02-14 the second scoring matures too
    later = evaluate(conn, matured(heads, date(2025, 2, 14)), done={"v1@late"})
    assert later["snapshot_id"].tolist() == ["v2@pending"]
    # (2025-01-15, 2025-02-14]: c's 30 on 01-31; a's 40 on 02-15 is after it, z's 99 was not scored
    assert later.iloc[0]["actual_total"] == pytest.approx(30.0)


def test_realized_spend_is_discounted_to_the_cutoff():
    conn = _hand_store()
    actual, predicted = realized_outcomes(conn, "v1@late", date(2025, 1, 1), 30, annual_discount_rate=0.10)
    # the snapshot's customers a, b, c (z bought but was not scored)
    assert sorted(predicted.tolist()) == [0.0, 50.0, 100.0]
    spend = dict(zip(predicted.tolist(), actual.tolist()))
    assert spend[100.0] == pytest.approx(80 * 1.1 ** (-10 / 365))  # a
    assert spend[50.0] == 0  # b: a cancelled order
    assert spend[0.0] == pytest.approx(30 * 1.1 ** (-30 / 365))  # c, on the window's last day


# ----------------------------------------------------------------------------- assets


def _write(conn, table: str, frame: pd.DataFrame) -> None:
    conn.execute(f"create schema if not exists {table.split('.')[0]}")
    conn.register("_f", frame)
    conn.execute(f"create or replace table {table} as select * from _f")
    conn.unregister("_f")


def test_monitoring_assets_snapshot_detect_drift_and_evaluate(data_env, monkeypatch):
    """Two scorings of shifted customers: snapshots kept, drift flagged, performance table written."""
    db = data_env / "clv.duckdb"
    resource = DuckDBResource(database=str(db))
    current = customers(600, 3, shift=1.0).assign(customer_id=[f"c{i}" for i in range(600)],
                                                  feature_cutoff=date(2025, 6, 30))
    monkeypatch.setattr(monitoring_assets, "reference_features", lambda conn, cutoff, max_rows: (customers(600, 1), 600))
    rng = np.random.default_rng(0)
    with duckdb.connect(str(db)) as conn:
        _write(conn, "features.customer_features", current)
        _write(conn, "staging.orders", pd.DataFrame({
            "customer_id": ["c1", "c2"], "order_date": [date(2025, 7, 3), date(2025, 7, 9)], "net_revenue": [10.0, 5.0],
        }))
    # two nightly scorings: the second a day later (a scoring of the same cutoff and model replaces
    # its snapshot, see test_score_history_rerun_of_a_day_replaces_its_snapshot)
    for scored_at, scale in ((datetime(2025, 6, 30, 8), 50), (datetime(2025, 7, 1, 8), 150)):
        with duckdb.connect(str(db)) as conn:
            _write(conn, "features.customer_features",
                   current.assign(feature_cutoff=scored_at.date()))
            _write(conn, "scores.customer_clv", pd.DataFrame({
                "customer_id": current["customer_id"], "predicted_clv": rng.gamma(2, scale, 600),
                "p_alive": rng.uniform(0, 1, 600), "expected_purchases": rng.uniform(0, 3, 600),
                "clv_tier": rng.choice(["Top 10%", "Rest"], 600, p=[0.1, 0.9] if scale == 50 else [0.5, 0.5]),
                "model_version": "v1", "scored_at": scored_at,
            }))
        result = dg.materialize(MONITORING_ASSETS, resources={"duckdb": resource})
        assert result.success

    with duckdb.connect(str(db), read_only=True) as conn:
        snapshots = conn.execute(
            "select snapshot_id, count(*) from monitoring.score_history group by 1 order by 1").fetchall()
        runs = conn.execute("select * from monitoring.drift_runs order by run_at").df()
        columns = conn.execute("select * from monitoring.drift_columns").df()
        performance = conn.execute("select * from monitoring.model_performance").df()
        first_cutoff = pd.Timestamp(conn.execute("select min(cutoff) from monitoring.score_history").fetchone()[0]).date()
    assert [n for _, n in snapshots] == [600, 600]
    assert len(runs) == 2
    newest = runs.iloc[-1]
    assert newest["drift_detected"] and newest["share_drifted"] >= SETTINGS.drift_share_threshold
    assert newest["prediction_drifted"]
    assert newest["max_segment_share_change"] == pytest.approx(0.4, abs=0.1)
    assert newest["reference_kind"] == "90 days earlier" and pd.Timestamp(newest["reference_cutoff"]).date() == date(2025, 4, 2)
    drift_events = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "drift_runs"]
    assert "vs the reference features at 2025-04-02 (90 days earlier)" in \
        drift_events[0].materialization.metadata["report_title"].value
    assert (data_env / "reports").joinpath(newest["report_path"].split("/")[-1]).exists()
    assert set(columns["drift_run_id"]) == set(runs["drift_run_id"])
    # monitoring.drift_columns is an asset of its own, materialized with each drift run
    column_events = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "drift_columns"]
    assert len(column_events) == 1
    assert column_events[0].materialization.metadata["dagster/row_count"].value == len(columns)
    assert column_events[0].materialization.metadata["columns_this_run"].value == (columns["drift_run_id"] == newest["drift_run_id"]).sum()
    # a 365-day horizon has not passed yet: nothing to evaluate, and the asset says when it will be
    assert performance.empty and {"mae", "normalized_gini", "horizon_end"} <= set(performance.columns)
    perf_events = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "model_performance"]
    meta = perf_events[0].materialization.metadata
    assert meta["data_through"].value == "2025-07-09"
    assert meta["dagster/row_count"].value == 0
    assert meta["next_evaluation_possible"].value == str(first_cutoff + timedelta(days=365))


def test_score_history_rerun_of_a_day_replaces_its_snapshot(data_env):
    """Re-scoring the same cutoff with the same model replaces that day's snapshot (same rows and
    values, new scored_at); a new cutoff or a new model version adds a snapshot."""
    db = data_env / "clv.duckdb"
    resource = DuckDBResource(database=str(db))
    ids = [f"c{i}" for i in range(50)]
    with duckdb.connect(str(db)) as conn:
        _write(conn, "features.customer_features", pd.DataFrame({"customer_id": ids,
                                                                  "feature_cutoff": date(2025, 6, 30)}))
        _write(conn, "scores.customer_segments", pd.DataFrame({
            "customer_id": ids[:40], "rfm_segment": "Loyal", "lifecycle_stage": "active"}))

    def score(scored_at, version="v1"):
        with duckdb.connect(str(db)) as conn:
            _write(conn, "scores.customer_clv", pd.DataFrame({
                "customer_id": ids, "predicted_clv": np.arange(50, dtype=float), "p_alive": 0.5,
                "expected_purchases": 1.0, "clv_tier": "Rest", "model_version": version, "scored_at": scored_at}))
        assert dg.materialize([monitoring_assets.score_history], resources={"duckdb": resource}).success
        with duckdb.connect(str(db), read_only=True) as conn:
            return conn.execute("select * from monitoring.score_history order by snapshot_id, customer_id").df()

    first = score(datetime(2025, 7, 1, 2))
    again = score(datetime(2025, 7, 1, 5))  # the same night run again
    assert len(first) == len(again) == 50 and again["snapshot_id"].nunique() == 1
    assert again["snapshot_id"].iloc[0] == "v1@2025-07-01T05:00:00"
    drop = ["snapshot_id", "scored_at", "snapshotted_at"]
    pd.testing.assert_frame_equal(again.drop(columns=drop), first.drop(columns=drop))
    assert again["predicted_clv"].sum() == sum(range(50)) and again["rfm_segment"].isna().sum() == 10
    assert (pd.to_datetime(again["cutoff"]).dt.date == date(2025, 6, 30)).all()
    other_model = score(datetime(2025, 7, 1, 6), version="v2")
    assert other_model["snapshot_id"].nunique() == 2 and len(other_model) == 100


def test_large_sides_are_measured_on_a_deterministic_sample():
    from clv_platform.monitoring.drift import sample_rows

    reference, current = customers(6000, seed=1), customers(6000, seed=2)
    small = customers(100, seed=3)
    assert sample_rows(small, 500) is small
    picked = sample_rows(current, 2000)
    assert len(picked) == 2000 and picked.index.is_monotonic_increasing
    assert picked.equals(sample_rows(current.sample(frac=1.0, random_state=4).sort_index(), 2000))
    series = sample_rows(current["monetary"], 2000)
    assert len(series) == 2000 and series.equals(sample_rows(current["monetary"], 2000))
    full = detect_drift(reference, current, FEATURES, SETTINGS)
    capped = detect_drift(reference, current, FEATURES, dataclasses.replace(SETTINGS, max_rows=3000))
    assert not capped.drift_detected and not full.drift_detected
    for a, b in zip(full.columns, capped.columns):
        assert a.column == b.column and b.score == pytest.approx(a.score, abs=0.05)
    drifted = detect_drift(reference, customers(6000, seed=2, shift=1.0), FEATURES,
                           dataclasses.replace(SETTINGS, max_rows=3000))
    assert drifted.drift_detected


def _registered_model(conn, cutoff: date) -> None:
    conn.execute("create schema if not exists ml")
    conn.execute(
        "create or replace table ml.model_runs (model_name varchar, model_version varchar, trained_at timestamp, "
        "cutoff date, horizon_days integer, objective varchar, n_train bigint, metrics json, path varchar, "
        "is_registered boolean)"
    )
    conn.execute(
        "insert into ml.model_runs values ('clv_xgb', 'v9', timestamp '2025-06-30 09:00', ?, 365, 'tweedie', "
        "100, '{}', 'p', true)", [cutoff],
    )


def _with_copies(frame: pd.DataFrame) -> pd.DataFrame:
    """The feature table's exact affine copies (customer_features.sql) beside their originals."""
    return frame.assign(purchase_days=frame["frequency"] + 1, first_to_last_order_days=frame["T_days"] / 2,
                        T_weeks=frame["T_days"] / 7, recency_weeks=frame["T_days"] / 14)


def test_drift_measures_each_feature_once_not_its_affine_copies(data_env, monkeypatch):
    """T_days and T_weeks (and frequency / purchase_days, first_to_last_order_days / recency_weeks)
    drift together by construction: measured both, one change counted twice in the drifted share."""
    db = data_env / "clv.duckdb"
    older = customers(300, 3).assign(T_days=lambda f: f["T_days"] + 400)  # the same customers, older
    current = _with_copies(older).assign(feature_cutoff=date(2025, 7, 31))
    monkeypatch.setattr(monitoring_assets, "reference_features",
                        lambda conn, cutoff, max_rows: (_with_copies(customers(300, 1)), 300))
    with duckdb.connect(str(db)) as conn:
        _write(conn, "features.customer_features", current)
        _registered_model(conn, date(2025, 6, 30))
    result = dg.materialize([monitoring_assets.drift_runs], resources={"duckdb": DuckDBResource(database=str(db))})
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    with duckdb.connect(str(db), read_only=True) as conn:
        measured = [c for (c,) in conn.execute("select \"column\" from monitoring.drift_columns").fetchall()]
        n_columns, n_drifted = conn.execute("select n_columns, n_drifted from monitoring.drift_runs").fetchone()
    assert {"T_days", "frequency", "first_to_last_order_days"} <= set(measured)
    assert not {"T_weeks", "purchase_days", "recency_weeks"} & set(measured)
    # the age shift drifts T_days and first_to_last_order_days, each counted once
    assert {"T_days", "first_to_last_order_days"} <= set(metadata["drifted_columns"].value.split(", "))
    assert n_columns == len(measured) and n_drifted == len(metadata["drifted_columns"].value.split(", "))
    assert "T_weeks = T_days / 7" in metadata["copies_not_measured"].value


def test_first_drift_run_after_training_reports_no_comparison_yet(data_env, monkeypatch):
    """Right after training the reference features ARE the current ones: not a drift of 0."""
    db = data_env / "clv.duckdb"
    current = customers(300, 3, shift=1.0).assign(feature_cutoff=date(2025, 6, 30))
    built = []
    monkeypatch.setattr(monitoring_assets, "reference_features",
                        lambda conn, cutoff, max_rows: (built.append(cutoff) or customers(300, 1), 300))
    with duckdb.connect(str(db)) as conn:
        _write(conn, "features.customer_features", current)
        _registered_model(conn, date(2025, 6, 30))
    result = dg.materialize([monitoring_assets.drift_runs], resources={"duckdb": DuckDBResource(database=str(db))})
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["status"].value == "no comparison yet"
    assert "share_drifted" not in metadata
    assert "No feature comparison yet" in metadata["report_title"].value
    with duckdb.connect(str(db), read_only=True) as conn:
        row = conn.execute("select n_columns, share_drifted, drift_detected, reference_kind from monitoring.drift_runs").fetchone()
    assert row == (0, None, False, "registered model v9")
    note = Path(metadata["report"].value).read_text(encoding="utf-8")  # the link opens a page saying why
    assert "No feature comparison yet" in note and "training cutoff" in note

    # after the data moved on, the same model's training features are the reference, and the
    # report's title says which windows and which model are compared
    current = current.assign(feature_cutoff=date(2025, 7, 31))
    with duckdb.connect(str(db)) as conn:
        _write(conn, "features.customer_features", current)
    result = dg.materialize([monitoring_assets.drift_runs], resources={"duckdb": DuckDBResource(database=str(db))})
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    # the training reference was computed once, by the first run, and kept for this one
    assert built == [date(2025, 6, 30)] and metadata["reference_reused"].value is True
    assert metadata["drift_detected"].value is True and metadata["share_drifted"].value > 0.3
    title = metadata["report_title"].value
    assert "features at 2025-07-31 vs the training reference at 2025-06-30 (registered model v9)" in title
    report = metadata["report"].value
    html = Path(report).read_text(encoding="utf-8")
    assert f"<title>{title}</title>" in html and title in html.split("<body", 1)[1]
    assert metadata["report_url"].value.endswith("/" + report.split("/")[-1])
    with duckdb.connect(str(db), read_only=True) as conn:
        kept = conn.execute("select * exclude (reference_key, reference_population) from monitoring.drift_reference "
                            "order by customer_id").df()
        key, population = conn.execute("select any_value(reference_key), any_value(reference_population) "
                                       "from monitoring.drift_reference").fetchone()
    expected = customers(300, 1)
    pd.testing.assert_frame_equal(kept, expected.sort_values("customer_id").reset_index(drop=True), check_dtype=False)
    assert key.startswith("registered model v9|2025-06-30|") and population == 300

    # a newly registered model has another training reference: computed again, and the only one kept
    with duckdb.connect(str(db)) as conn:
        conn.execute("update ml.model_runs set model_version = 'v10', cutoff = date '2025-07-15'")
    result = dg.materialize([monitoring_assets.drift_runs], resources={"duckdb": DuckDBResource(database=str(db))})
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert built == [date(2025, 6, 30), date(2025, 7, 15)] and metadata["reference_reused"].value is False
    with duckdb.connect(str(db), read_only=True) as conn:
        keys = conn.execute("select distinct reference_key from monitoring.drift_reference").fetchall()
    assert len(keys) == 1 and keys[0][0].startswith("registered model v10|2025-07-15|")


def test_a_reference_that_moves_nightly_is_not_kept(data_env, monkeypatch):
    """Without a registered model the reference is the features reference_offset_days earlier, a new
    cutoff every night: computed each run, nothing kept."""
    db = data_env / "clv.duckdb"
    built = []
    monkeypatch.setattr(monitoring_assets, "reference_features",
                        lambda conn, cutoff, max_rows: (built.append(cutoff) or customers(300, 1), 300))
    for day in (date(2025, 6, 30), date(2025, 7, 1)):
        with duckdb.connect(str(db)) as conn:
            _write(conn, "features.customer_features", customers(300, 3).assign(feature_cutoff=day))
        result = dg.materialize([monitoring_assets.drift_runs], resources={"duckdb": DuckDBResource(database=str(db))})
        assert result.get_asset_materialization_events()[0].materialization.metadata["reference_reused"].value is False
    assert built == [date(2025, 4, 1), date(2025, 4, 2)]
    with duckdb.connect(str(db), read_only=True) as conn:
        assert not conn.execute("select count(*) from duckdb_tables() where table_name = 'drift_reference'").fetchone()[0]


def test_drift_inputs_leave_duckdb_sampled_and_segment_shares_match_pandas(data_env):
    """Only max_rows customers (the smallest id hashes, the same on both sides) leave DuckDB, the
    counts are of every row, and the SQL segment-share changes equal segment_changes on whole frames."""
    db = data_env / "clv.duckdb"
    rng = np.random.default_rng(3)
    n = 900
    frame = customers(n, 2).assign(customer_id=[f"c{i:04d}" for i in range(n)])
    with duckdb.connect(str(db)) as conn:
        monitoring_assets.ensure_monitoring_tables(conn)
        _write(conn, "features.customer_features", frame)
        sample, total = monitoring_assets.sampled_rows(conn, "select * from features.customer_features", {}, 200)
        again, _ = monitoring_assets.sampled_rows(
            conn, "select * from features.customer_features where customer_id <> 'nobody'", {}, 200)
        whole, _ = monitoring_assets.sampled_rows(conn, "select * from features.customer_features", {}, 0)
        assert total == n and len(sample) == 200 and len(whole) == n
        assert sample["customer_id"].is_monotonic_increasing and sample.equals(again)
        # the current side reads the stored table in place: the same customers as the query path
        in_place, counted = monitoring_assets.sampled_table(conn, "features.customer_features", 200)
        assert counted == n and in_place.equals(sample)
        # ... which are the 200 smallest (hash, id), picked here by a full sort
        hashes = conn.execute("select customer_id, hash(customer_id) as h from features.customer_features").df()
        smallest = hashes.sort_values(["h", "customer_id"]).head(200)["customer_id"].sort_values().tolist()
        assert sample["customer_id"].tolist() == smallest
        assert monitoring_assets.sampled_table(conn, "features.customer_features", 0)[0].equals(whole)
        for snapshot, (day, p) in enumerate(((datetime(2025, 6, 1), [0.6, 0.3, 0.1]), (datetime(2025, 6, 2), [0.2, 0.5, 0.3]))):
            history = pd.DataFrame({
                "snapshot_id": f"v1@{day:%Y-%m-%d}", "scored_at": day, "cutoff": day.date(), "horizon_days": 365,
                "model_version": "v1", "customer_id": frame["customer_id"], "predicted_clv": rng.gamma(2, 50 * (1 + snapshot), n),
                "p_alive": 0.5, "expected_purchases": 1.0, "clv_tier": "Rest",
                "rfm_segment": pd.Series(rng.choice(["Loyal", "New", None], n, p=p), dtype=object),
                "lifecycle_stage": None, "snapshotted_at": day})
            conn.register("_h", history)
            conn.execute("insert into monitoring.score_history by name select * from _h")
            conn.unregister("_h")
        inputs = monitoring_assets.snapshot_inputs(conn, "predicted_clv", ["rfm_segment", "lifecycle_stage"], 300)
        latest = conn.execute("select * from monitoring.score_history where snapshot_id = 'v1@2025-06-02'").df()
        previous = conn.execute("select * from monitoring.score_history where snapshot_id = 'v1@2025-06-01'").df()
    assert inputs["latest_model_version"] == "v1"
    assert len(inputs["latest_predictions"]) == len(inputs["previous_predictions"]) == 300
    assert inputs["latest_predictions"].mean() > inputs["previous_predictions"].mean()
    expected = monitoring_assets.segment_changes(latest, previous, ["rfm_segment", "lifecycle_stage"])
    assert set(inputs["segment_changes"]) == set(expected) == {"rfm_segment"}  # lifecycle all null: skipped
    got = pd.DataFrame(inputs["segment_changes"]["rfm_segment"])
    want = pd.DataFrame(expected["rfm_segment"])
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)
    assert set(got["segment"]) == {"Loyal", "New", "(missing)"} and abs(got["share_change"].sum()) < 1e-12


@pytest.mark.parametrize("margin", [0.0, monitoring_assets.REFERENCE_CANDIDATE_MARGIN])
def test_reference_features_of_the_candidates_equal_the_sample_of_the_whole_query(tmp_path, monkeypatch, margin):
    """The reference side computed on the candidates' order history only gives the rows (and the
    count) of the old path, the whole store's features sampled, at cutoffs that fall between orders
    and their cancellations and between two refunds; with no head room (margin 0) the candidates
    without a purchase leave too few rows and the whole query runs instead."""
    from clv_platform.transforms.features import feature_query
    from clv_platform_tests.transforms.test_features import build_staging, messy_orders

    monkeypatch.setattr(monitoring_assets, "REFERENCE_CANDIDATE_MARGIN", margin)
    orders = messy_orders(300, seed=7)
    paths = {"candidates": 0, "whole": 0}
    with duckdb.connect(str(tmp_path / "store.duckdb")) as conn:
        build_staging(conn, orders)
        cancels = sorted({o.cancelled_at for o in orders if o.cancelled_at})
        for cutoff in [date(2023, 2, 15), cancels[len(cancels) // 2], date(2023, 12, 31), date(2024, 6, 1)]:
            sql, params = feature_query(cutoff)
            expected, n = monitoring_assets.sampled_rows(conn, sql, params, 60)
            assert monitoring_assets.reference_population(conn, cutoff) == n > 60
            got, counted = monitoring_assets.reference_features(conn, cutoff, 60)
            assert counted == n and len(got) == 60
            pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)
            whole, _ = monitoring_assets.reference_features(conn, cutoff, 0)
            assert len(whole) == n
            # which path ran: the candidates hold customers without a purchase at the cutoff
            drawn = 60 + int(60 * margin)
            purchasing = conn.execute(
                f"""select count(*) from (select customer_id from (select distinct customer_id
                    from staging.order_history where order_date <= $cutoff::date)
                    order by hash(customer_id::varchar), customer_id limit {drawn})
                    where customer_id in (select customer_id from ({sql}))""", params).fetchone()[0]
            paths["candidates" if purchasing >= 60 else "whole"] += 1
        assert not conn.execute("select * from duckdb_tables() where temporary").fetchall()
        assert not conn.execute("select * from duckdb_views() where temporary and view_name like '_drift%'").fetchall()
    assert paths["candidates"] >= 1 if margin else paths["whole"] >= 1


def test_current_side_reads_only_the_compared_columns(data_env):
    """The current features leave DuckDB with customer_id and the asked columns only, same rows."""
    db = data_env / "clv.duckdb"
    frame = customers(500, 4).assign(customer_id=[f"c{i:04d}" for i in range(500)], country="DE")
    with duckdb.connect(str(db)) as conn:
        _write(conn, "features.customer_features", frame)
        whole, n = monitoring_assets.sampled_table(conn, "features.customer_features", 100)
        narrow, m = monitoring_assets.sampled_table(
            conn, "features.customer_features", 100, ["frequency", "monetary", "absent"])
    assert n == m == 500
    assert list(narrow.columns) == ["customer_id", "frequency", "monetary"]
    assert narrow.equals(whole[["customer_id", "frequency", "monetary"]])


def test_model_performance_evaluates_each_scoring_once_and_keeps_its_row(data_env):
    """Run after run the asset evaluates only scorings that matured since; a row stays as evaluated
    (its evaluated_at unchanged) and is dropped when its snapshot is no longer the day's scoring."""
    db = data_env / "clv.duckdb"
    resource = DuckDBResource(database=str(db))
    with duckdb.connect(str(db)) as conn:
        monitoring_assets.ensure_monitoring_tables(conn)
        conn.register("_f", hand_snapshots())
        conn.execute("insert into monitoring.score_history by name select * from _f")
        conn.unregister("_f")
        orders = hand_orders()
        _write(conn, "staging.orders", orders[orders["order_date"] <= date(2025, 1, 31)])

    def run(reevaluate: bool = False):
        result = dg.materialize([monitoring_assets.model_performance], resources={"duckdb": resource},
                                run_config={"ops": {"monitoring__model_performance": {"config": {"reevaluate": reevaluate}}}})
        assert result.success
        metadata = result.get_asset_materialization_events()[0].materialization.metadata
        with duckdb.connect(str(db), read_only=True) as conn:
            table = conn.execute("select * from monitoring.model_performance order by scoring_date").df()
        return metadata, table

    metadata, first = run()
    assert metadata["evaluated_now"].value == 1 and first["snapshot_id"].tolist() == ["v1@late"]
    # discounted at monitoring.toml's 10 % a year: a's 80 ten days after the cutoff, c's 30 thirty days after
    assert first.iloc[0]["actual_total"] == pytest.approx(80 * 1.1 ** (-10 / 365) + 30 * 1.1 ** (-30 / 365))
    metadata, again = run()
    assert metadata["evaluated_now"].value == 0
    assert again["evaluated_at"].tolist() == first["evaluated_at"].tolist()
    # the data reach the second scoring's horizon end: only it is evaluated
    with duckdb.connect(str(db)) as conn:
        conn.execute("insert into staging.orders values ('a', date '2025-02-15', 40.0)")
    metadata, later = run()
    assert metadata["evaluated_now"].value == 1
    assert later["snapshot_id"].tolist() == ["v1@late", "v2@pending"]
    assert later.iloc[0]["evaluated_at"] == first.iloc[0]["evaluated_at"]
    # the day's scoring replaced by another snapshot: the old row goes, the new one is evaluated
    with duckdb.connect(str(db)) as conn:
        conn.execute("update monitoring.score_history set snapshot_id = 'v1@rerun', predicted_clv = 80 "
                     "where snapshot_id = 'v1@late'")
    metadata, rerun = run()
    assert metadata["evaluated_now"].value == 1 and metadata["rows_dropped"].value == 1
    assert rerun["snapshot_id"].tolist() == ["v1@rerun", "v2@pending"]
    assert rerun.iloc[0]["predicted_total"] == pytest.approx(240.0)
    # a late refund of an order inside an evaluated window changes nothing until asked to re-evaluate
    with duckdb.connect(str(db)) as conn:
        conn.execute("update staging.orders set net_revenue = 0 where customer_id = 'c'")
    assert run()[1]["actual_total"].tolist() == rerun["actual_total"].tolist()
    metadata, fresh = run(reevaluate=True)
    assert metadata["evaluated_now"].value == 2
    assert fresh["actual_total"].tolist() == pytest.approx([80 * 1.1 ** (-10 / 365), 0.0])
    assert (fresh["evaluated_at"] > rerun["evaluated_at"]).all()
