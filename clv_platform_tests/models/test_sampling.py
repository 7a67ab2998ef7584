"""Customer samples drawn in SQL (``models.sampling``): the rows ``cap_rows`` keeps, before ``.df()``."""

import dataclasses
from datetime import timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest

from clv_platform.models import clv, sampling
from clv_platform.models.npd_assets import npd_fetch_rows
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform.transforms.features import build_training_frame
from clv_platform_tests.demo_cache import demo_database


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A 2,000-customer demo store with staging (read-only from the tests)."""
    return demo_database(tmp_path_factory.mktemp("sampling") / "demo.duckdb", 2000, features=True)


@pytest.fixture(autouse=True)
def sample_in_sql(monkeypatch):
    """The 2,000-customer store is small: sample every cap below it in SQL (the 1M store's case)."""
    monkeypatch.setattr(sampling, "PUSH_DOWN_SHARE", 1)


def test_a_cap_near_the_store_size_reads_the_whole_window_and_caps_it(store, monkeypatch):
    monkeypatch.setattr(sampling, "PUSH_DOWN_SHARE", 4)   # the default: 700 * 4 > 2,000 customers
    with duckdb.connect(str(store), read_only=True) as conn:
        cutoff = scoring_cutoff(conn)
        whole = build_training_frame(conn, cutoff, 180)
        frames = sampling.TrainingFrames(conn)
        got = frames.get(cutoff, 180, 700)
        assert frames.fetched == [(cutoff, 180, 700, len(whole))] and frames.pushed_down == 0
        frames.close()
    assert got.rows == len(whole) and len(got.frame) == 700
    pd.testing.assert_frame_equal(got.frame, clv.cap_rows(whole, 700))


def test_a_window_above_the_cap_is_sampled_in_sql_to_cap_rows_rows(store):
    with duckdb.connect(str(store), read_only=True) as conn:
        cutoff = scoring_cutoff(conn)
        whole = build_training_frame(conn, cutoff, 180)
        assert len(whole) > 700
        draws = []
        for _ in range(2):
            frames = sampling.TrainingFrames(conn)
            got = frames.get(cutoff, 180, 700)
            # went through the SQL sample (700 rows fetched), not a whole fetch capped in pandas
            assert frames.fetched == [(cutoff, 180, 700, 700)] and frames.pushed_down == 1
            frames.close()
            draws.append(got)
    for got in draws:
        assert len(got.frame) == 700 and not got.complete
        assert got.rows == len(whole) and got.has_repeat == bool(whole["frequency"].sum() > 0)
        pd.testing.assert_frame_equal(got.frame, clv.cap_rows(whole, 700))
    # deterministic: the same customers on a second run
    assert draws[0].frame["customer_id"].tolist() == draws[1].frame["customer_id"].tolist()
    # the smallest keys of the whole window
    keys = sampling.customer_keys(whole["customer_id"])
    assert set(draws[0].frame["customer_id"]) == set(whole["customer_id"][keys <= np.sort(keys)[699]])


def test_the_sample_without_the_pushed_down_candidates_is_the_same(store, monkeypatch):
    """The fallback (every customer's features, sampled after) gives the same rows and totals."""
    with duckdb.connect(str(store), read_only=True) as conn:
        cutoff = scoring_cutoff(conn)
        frames = sampling.TrainingFrames(conn)
        pushed = frames.get(cutoff, 180, 700)
        frames.close()
        monkeypatch.setattr(sampling.TrainingFrames, "_fetch_pushed_down", lambda *args: None)
        frames = sampling.TrainingFrames(conn)
        after = frames.get(cutoff, 180, 700)
        assert frames.pushed_down == 0
        frames.close()
    assert (after.rows, after.has_repeat) == (pushed.rows, pushed.has_repeat)
    pd.testing.assert_frame_equal(after.frame, pushed.frame)


def test_a_window_at_or_below_the_cap_is_the_whole_frame(store):
    with duckdb.connect(str(store), read_only=True) as conn:
        cutoff = scoring_cutoff(conn)
        whole = build_training_frame(conn, cutoff, 180)
        frames = sampling.TrainingFrames(conn)
        exact = frames.get(cutoff, 180, len(whole))   # the store is larger: SQL path, every row kept
        frames.close()
        small = sampling.TrainingFrames(conn)
        above = small.get(cutoff, 180, 10_000)         # the store is smaller: the unchanged query
        assert small.fetched == [(cutoff, 180, 10_000, len(whole))]
        small.close()
    for got in (exact, above):
        assert got.complete and got.rows == len(whole)
        pd.testing.assert_frame_equal(got.frame, whole)


def test_each_frame_is_read_once_with_the_largest_cap_announced(store):
    with duckdb.connect(str(store), read_only=True) as conn:
        cutoff = scoring_cutoff(conn)
        whole = build_training_frame(conn, cutoff, 180)
        frames = sampling.TrainingFrames(conn)
        frames.want(cutoff, 180, 300)
        frames.want(cutoff, 180, 900)
        small = frames.get(cutoff, 180, 300)
        large = frames.get(cutoff, 180, 900)
        assert frames.fetched == [(cutoff, 180, 900, 900)]
        # a larger cap than what is held needs a new read
        frames.get(cutoff, 180, 1000)
        assert len(frames.fetched) == 2
        frames.close()
    pd.testing.assert_frame_equal(small.frame, clv.cap_rows(whole, 300))
    pd.testing.assert_frame_equal(large.frame, clv.cap_rows(whole, 900))


def _capped_config(**caps):
    base = clv.load_config()
    return dataclasses.replace(
        base,
        objectives=({"name": "tweedie", "objective": "reg:tweedie", "variance_powers": [1.5]},),
        xgboost={**base.xgboost, "num_boost_round": 150, "nthread": 1},
        btyd_model="mbgnbd",
        **caps,
    )


def test_training_on_sql_samples_equals_training_on_whole_frames_capped(store, monkeypatch):
    """The CLV model of a store above every cap is the one the whole frames + ``cap_rows`` gave."""
    config = _capped_config(max_selection_rows=500, max_training_rows=1200, max_btyd_fit_customers=400,
                            max_extension_rows=600)
    with duckdb.connect(str(store), read_only=True) as conn:
        cutoff = scoring_cutoff(conn)
        sampled = clv.train_clv(conn, cutoff, config)
        fetched = []
        original = sampling.TrainingFrames._fetch

        def whole(self, end, horizon_days, max_rows):
            # the previous behaviour: every window read whole, capped in pandas afterwards
            got = original(self, end, horizon_days, None)
            fetched.append(max_rows)
            return got

        monkeypatch.setattr(sampling.TrainingFrames, "_fetch", whole)
        before = clv.train_clv(conn, cutoff, config)
        frame = clv.add_derived_features(build_training_frame(conn, cutoff, config.label_horizon_days))
    assert any(fetched), "the run asked for capped frames"
    assert sampled.n_train == before.n_train <= 1200
    # equal up to the order DuckDB's threads summed the labels in (a last-digit difference was seen
    # in the totals, the level and the RMSE): floats to 1e-12, everything else exactly
    assert len(sampled.selection.comparison) == len(before.selection.comparison)
    for got, want in zip(sampled.selection.comparison, before.selection.comparison):
        assert got.keys() == want.keys()
        floats = [k for k, v in want.items() if isinstance(v, float)]
        assert {k: got[k] for k in floats} == pytest.approx({k: want[k] for k in floats}, rel=1e-12, abs=1e-12)
        assert {k: v for k, v in got.items() if k not in floats} == {k: v for k, v in want.items() if k not in floats}
    assert sampled.validation_metrics == pytest.approx(before.validation_metrics, rel=1e-12, abs=1e-12)
    assert sampled.serving["extension"] == before.serving["extension"]
    assert sampled.serving["extension"]["customers"] == 600
    pd.testing.assert_frame_equal(sampled.validation_frame, before.validation_frame)
    np.testing.assert_array_equal(sampled.model.booster.predict(_matrix(sampled, frame)),
                                  before.model.booster.predict(_matrix(before, frame)))


def _matrix(trained, frame):
    import xgboost as xgb

    columns = [c for c in trained.model.features if c in frame]
    return xgb.DMatrix(frame[columns].astype(float).reindex(columns=trained.model.features))


def test_npd_fetches_the_larger_cap_or_the_whole_window():
    assert npd_fetch_rows({"max_selection_rows": 150_000, "max_training_rows": 400_000}) == 400_000
    assert npd_fetch_rows({"max_selection_rows": 0, "max_training_rows": 400_000}) is None
    assert npd_fetch_rows({"max_selection_rows": 150_000, "max_training_rows": 0}) is None


def test_the_extension_frames_hold_the_same_customers(store):
    config = _capped_config(max_btyd_fit_customers=300, max_extension_rows=500)
    with duckdb.connect(str(store), read_only=True) as conn:
        cutoff = scoring_cutoff(conn)
        h = config.label_horizon_days
        frames = sampling.TrainingFrames(conn)
        extension = clv.btyd_extension_factor(conn, cutoff, config, frames=frames)
        assert {(end, horizon) for end, horizon, _, _ in frames.fetched} == {(cutoff - timedelta(days=h), h),
                                                                            (cutoff, 2 * h)}
        frames.close()
        uncapped = clv.btyd_extension_factor(conn, cutoff, dataclasses.replace(config, max_extension_rows=0))
    assert extension["customers"] == 500 < extension["window_customers"] == uncapped["customers"]
    assert 0.5 <= extension["factor"] <= 2.0


def test_the_extension_corrects_the_btyds_growth_not_its_level(store, monkeypatch):
    """The hybrid's forecast over h is level-calibrated, so the extension factor measures only the
    BTYD's error on the growth beyond h: a BTYD three times too high in both windows one window
    back has the same factor as the BTYD itself (the factor before 6 December 2026, actual / expected
    beyond h, fell to a third)."""
    from clv_platform.models.clv import train

    config = _capped_config(max_btyd_fit_customers=300, max_extension_rows=500)
    real = train.btyd_features_horizons
    with duckdb.connect(str(store), read_only=True) as conn:
        cutoff = scoring_cutoff(conn)
        measured = clv.btyd_extension_factor(conn, cutoff, config)

        def three_times(*args, **kwargs):
            return [part.assign(btyd_expected_spend=3.0 * part["btyd_expected_spend"]) for part in real(*args, **kwargs)]

        monkeypatch.setattr(train, "btyd_features_horizons", three_times)
        high = clv.btyd_extension_factor(conn, cutoff, config)
    growth = (measured["actual"] / measured["within_actual"]) / (measured["btyd_expected"] / measured["within_btyd_expected"])
    assert measured["factor"] == pytest.approx(min(max(growth, 0.5), 2.0), rel=1e-12)
    assert high["btyd_expected"] == pytest.approx(3.0 * measured["btyd_expected"], rel=1e-9)
    assert high["factor"] == pytest.approx(measured["factor"], rel=1e-9)
    assert measured["within_actual"] > 0 and 0.5 < measured["factor"] < 2.0
