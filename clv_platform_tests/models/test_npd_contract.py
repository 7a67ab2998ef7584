"""Next purchase that reads consistently, on the demo store: the served date agrees with the
7/30/90-day probabilities, and the cookbook's "next week" query returns the likely buyers."""

import re
import shutil
from datetime import datetime
from importlib import resources

import duckdb
import numpy as np
import pandas as pd
import pytest

from clv_platform.models.npd import NPDModel, next_purchase_contract
from clv_platform.models.npd_assets import date_settings, npd_scores, write_npd_scores
from clv_platform.models.frames import usable_features
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform.transforms.features import FEATURE_COLUMNS, build_training_frame
from clv_platform_tests.demo_cache import demo_database


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    """A 1,500-customer demo store with features, its AFT model (fixed shape: fast), cutoff, features."""
    path = demo_database(tmp_path_factory.mktemp("npd") / "demo.duckdb", 1500, features=True)
    with duckdb.connect(str(path)) as conn:
        cutoff = scoring_cutoff(conn)
        training = build_training_frame(conn, cutoff, 90)
        features = conn.execute("select * from features.customer_features order by customer_id").df()
    columns = usable_features(training, FEATURE_COLUMNS)
    model = NPDModel(distribution="logistic", scale=1.0, n_threads=1, max_rounds=300).fit(training, columns)
    return path, model, cutoff, features


@pytest.fixture(scope="module")
def demo_scores(demo_model):
    """scores.customer_npd rows of the demo store, scored from the whole feature frame."""
    _, model, cutoff, features = demo_model
    return npd_scores(model, features, cutoff), cutoff


def test_the_scores_asset_reads_only_the_model_features_in_batches_and_writes_the_same_rows(demo_model, tmp_path):
    path, model, cutoff, features = demo_model
    database = tmp_path / "copy.duckdb"
    shutil.copy(path, database)
    settings = date_settings()
    scored_at = datetime(2026, 11, 2, 3)
    with duckdb.connect(str(database)) as conn:
        written = write_npd_scores(conn, model, cutoff, settings, "v1", scored_at, batch=400)
        table = conn.execute("select * exclude (model_version, scored_at, cutoff) from scores.customer_npd "
                             "order by customer_id").df()
        # version, time and cutoff are SQL constants of the writer, the date a timestamp cast in SQL: same schema
        stamped = conn.execute("select distinct model_version, scored_at, cutoff from scores.customer_npd").fetchall()
        types = dict(conn.execute("select column_name, column_type from (describe scores.customer_npd)").fetchall())
    assert stamped == [("v1", scored_at, pd.Timestamp(cutoff).date())]
    assert (types["model_version"], types["scored_at"], types["predicted_next_purchase_date"]) == (
        "VARCHAR", "TIMESTAMP", "DATE")
    # the model reads fewer columns than the feature row has: the batches read only those
    assert len(model.feature_cols_) + 1 < features.shape[1]
    assert written["batches"] == -(-len(features) // 400) and written["rows"] == len(features)
    expected = npd_scores(model, features, cutoff, **settings)
    for frame in (table, expected):  # DuckDB gives the date column back as timestamps
        frame["predicted_next_purchase_date"] = pd.to_datetime(frame["predicted_next_purchase_date"]).astype("datetime64[ns]")
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    assert table["p_purchase_30d"].between(0, 1).all() and table["p_purchase_30d"].std() > 0


def _cookbook_query(name: str) -> str:
    text = resources.files("clv_platform.marts").joinpath("cookbook.sql").read_text(encoding="utf-8")
    blocks = re.split(r"^-- name: ", text, flags=re.MULTILINE)
    block = next(b for b in blocks if b.startswith(name))
    return block.split("\n", 1)[1]


def test_next_purchase_columns_agree(demo_scores):
    scores, cutoff = demo_scores
    p7, p30, p90 = (scores[f"p_purchase_{h}d"].to_numpy() for h in (7, 30, 90))
    assert ((0 <= p7) & (p7 <= p30) & (p30 <= p90) & (p90 <= 1)).all()
    dated = scores["predicted_next_purchase_date"].notna().to_numpy()
    # a date is shown exactly when a purchase within 90 days has P >= 0.25
    assert (dated == (p90 >= 0.25)).all()
    assert dated.any() and (~dated).any()
    days = scores["days_to_next_purchase"].to_numpy()
    assert np.isnan(days[~dated]).all()
    assert ((days[dated] > 0) & (days[dated] <= 90)).all()
    dates = pd.to_datetime(scores.loc[dated, "predicted_next_purchase_date"])
    whole = (dates - pd.Timestamp(cutoff)).dt.days.to_numpy()
    np.testing.assert_array_equal(whole, np.ceil(days[dated]))
    # the date is the median given a purchase within 90 days: within 7 days <=> P(7d) >= P(90d) / 2
    in_week = days[dated] <= 7
    half = p7[dated] >= p90[dated] / 2
    assert (in_week == half).all()
    # and the probabilities add up to buyers the dates can show: someone is expected within a week
    assert p7.sum() >= 1.0


def test_next_week_cookbook_query_returns_the_expected_buyers(demo_scores):
    scores, cutoff = demo_scores
    table = scores.assign(email="x@example.com", predicted_clv=1.0, rfm_segment="Loyal",
                          as_of_date=pd.Timestamp(cutoff).date())
    with duckdb.connect() as conn:
        conn.execute("create schema marts")
        conn.register("frame", table)
        conn.execute("create table marts.customer_scores as select * from frame")
        result = conn.execute(_cookbook_query("customers_expected_to_buy_next_week"))
        columns = [d[0] for d in result.description]
        rows = pd.DataFrame(result.fetchall(), columns=columns)
    expected_buyers = scores["p_purchase_7d"].sum()
    assert len(rows) >= int(np.ceil(expected_buyers))
    top = scores.sort_values("p_purchase_7d", ascending=False).head(int(np.ceil(expected_buyers)))
    assert set(top["customer_id"]) <= set(rows["customer_id"])
    week = scores["days_to_next_purchase"] <= 7
    assert set(scores.loc[week, "customer_id"]) <= set(rows["customer_id"])


def test_contract_hides_the_date_of_unlikely_buyers():
    predictions = pd.DataFrame({
        "customer_id": ["a", "b", "c"],
        "p_purchase_7d": [0.5, 0.05, 0.01],
        "p_purchase_30d": [0.8, 0.2, 0.05],
        "p_purchase_90d": [0.95, 0.3, 0.1],
        "days_to_next_given_purchase": [6.2, 30.0, 40.0],
    })
    out = next_purchase_contract(predictions, "2026-10-31")
    assert list(out["predicted_next_purchase_date"].dt.strftime("%Y-%m-%d").fillna("")) == [
        "2026-11-07", "2026-11-30", ""]
    assert np.isnan(out["days_to_next_purchase"].iloc[2])
    with pytest.raises(ValueError, match="within_days"):
        next_purchase_contract(predictions.drop(columns="days_to_next_given_purchase"), "2026-10-31")


def test_whole_days_are_the_timedeltas_pandas_gives():
    """The dates' day offsets are built in numpy (``npd._whole_days``), not value by value by
    ``pd.to_timedelta``: the same timedeltas and NaT for every count, including none, 0 and the
    century cap, and an infinite count or one beyond nanoseconds still raises."""
    from clv_platform.models.npd import MAX_DATE_DAYS, _whole_days

    days = np.array([0.0, 1.0, 7.0, np.nan, 365.0, float(MAX_DATE_DAYS), np.nan, 42.0])
    expected = pd.to_timedelta(days, unit="D").to_numpy()
    got = _whole_days(days)
    assert got.dtype == np.dtype("m8[ns]")
    assert list(got.astype("int64")) == list(expected.astype("int64"))
    assert list(pd.isna(got)) == [False, False, False, True, False, False, True, False]
    assert got[2] == np.timedelta64(7, "D")
    for beyond in (1e9, np.inf):
        with pytest.raises((OverflowError, ValueError)):
            _whole_days(np.array([1.0, beyond]))
