"""The BTYD interval table kept per stored fit (models/interval_cache.py).

A night that reuses the fit must draw only its new interval keys and give every cached key exactly
the values it had; a refit or a changed draw setting must redraw every key; a cache drawn without
the mixture columns must not serve a night that needs them; re-running a night must not add rows.
"""

import shutil
from datetime import timedelta

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource

from clv_platform.models import btyd, btyd_intervals, clv, interval_cache
from clv_platform.models.clv_assets import BTYD_FIT_COLUMNS, btyd_scores, write_btyd_scores
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform.transforms.features import FEATURE_TABLE
from clv_platform_tests.dagster_events import materialization_metadata
from clv_platform_tests.demo_cache import demo_database

RATIOS = ["spend_p10_ratio", "spend_p50_ratio", "spend_p90_ratio"]
CACHED = ["p10_ratio", "p50_ratio", "p90_ratio", "p_buy", "p_buy_label", *interval_cache.POSITIVE]
"""The drawn columns of the cache (the label window is shorter than the horizon in clv.toml)."""


@pytest.fixture(scope="module")
def features_db(tmp_path_factory):
    """Staging and features of a 1,500-customer demo store (built once)."""
    return demo_database(tmp_path_factory.mktemp("cache") / "cache.duckdb", 1500, features=True)


@pytest.fixture(scope="module")
def model(features_db):
    with duckdb.connect(str(features_db), read_only=True) as conn:
        frame = conn.execute(f"select {BTYD_FIT_COLUMNS} from {FEATURE_TABLE} order by customer_id").df()
    return btyd.fit_btyd(clv.btyd_summary(frame), btyd.MBGNBD)


@pytest.fixture
def store(features_db, tmp_path):
    database = tmp_path / "night.duckdb"
    shutil.copy(features_db, database)
    with duckdb.connect(str(database)) as conn:
        yield conn


def _night(conn, model, cutoff, fit="fit-1", chunk=100, mixture=True, config=None) -> tuple[dict, pd.DataFrame]:
    totals = write_btyd_scores(conn, model, config or clv.load_config(), cutoff, batch=10**9, chunk=chunk,
                               mixture=mixture, fit=fit)
    return totals["interval_cache"], conn.execute("select * from ml.btyd_scores order by customer_id").df()


def _keys(conn) -> pd.DataFrame:
    return conn.execute(f"select customer_id, {btyd_intervals.KEY_SQL} as code from {FEATURE_TABLE} "
                        "order by customer_id").df()


def _cache(conn) -> pd.DataFrame:
    return conn.execute(f"select * from {interval_cache.TABLE} order by code").df()


def _next_day(conn) -> None:
    """The feature table one cutoff day later for customers without news: every T one day longer."""
    conn.execute(f"update {FEATURE_TABLE} set T_days = T_days + 1, observed_T_days = observed_T_days + 1")


def test_a_second_night_draws_only_its_new_keys_and_keeps_the_cached_values(store, model):
    conn = store
    cutoff = scoring_cutoff(conn)
    first_keys = _keys(conn)
    first, night1 = _night(conn, model, cutoff)
    cache1 = _cache(conn)
    n1 = first_keys["code"].nunique()
    assert first == {"interval_keys": n1, "interval_keys_reused": 0, "interval_keys_drawn": n1,
                     "interval_cache": "drawn: no cache of this fit yet"}
    assert len(cache1) == n1 and cache1[CACHED].notna().all().all()

    _next_day(conn)
    second_keys = _keys(conn)
    new = np.setdiff1d(second_keys["code"].unique(), first_keys["code"].unique())
    n2 = second_keys["code"].nunique()
    assert 0 < new.size < n2  # some customers moved to a T week no one had: those keys are new
    second, night2 = _night(conn, model, cutoff + timedelta(days=1))
    assert second == {"interval_keys": n2, "interval_keys_reused": n2 - new.size, "interval_keys_drawn": new.size,
                      "interval_cache": f"reused the cache of this fit, drew {new.size} new keys"}
    cache2 = _cache(conn)
    assert len(cache2) == n1 + new.size and cache2["code"].is_unique  # appended, nothing redrawn
    # every key drawn the first night keeps its values exactly
    kept = cache2[cache2["code"].isin(cache1["code"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, cache1)
    # the new keys: drawn alone, chunk k seeded by [k, the night's cutoff day number, rows held before]
    drawn = btyd_intervals.interval_table(model, new, clv.load_config().horizon_days / btyd.DAYS_PER_WEEK,
                                          chunk=100, label_weeks=clv.load_config().label_horizon_days / btyd.DAYS_PER_WEEK,
                                          stream=((cutoff + timedelta(days=1)).toordinal(), n1))
    added = cache2[cache2["code"].isin(new)]
    np.testing.assert_array_equal(added["p90_ratio"].to_numpy(), drawn.p90_ratio)
    np.testing.assert_array_equal(added["p_buy_label"].to_numpy(), drawn.p_buy_label)
    assert (added["drawn_cutoff"] == pd.Timestamp(cutoff + timedelta(days=1))).all()

    # customers whose key did not change keep their interval to the last digit ...
    same = first_keys["code"].to_numpy() == second_keys["code"].to_numpy()
    assert same.sum() > len(same) / 2
    pd.testing.assert_frame_equal(night2.loc[same, RATIOS], night1.loc[same, RATIOS])
    # ... where a full draw of tonight's keys (no cache) moves them by their Monte Carlo error
    _, uncached = _night(conn, model, cutoff + timedelta(days=1), fit=None)
    assert (uncached.loc[same, "spend_p90_ratio"] != night1.loc[same, "spend_p90_ratio"]).mean() > 0.5


def test_rerunning_a_night_reads_the_cache_and_adds_no_rows(store, model):
    conn = store
    cutoff = scoring_cutoff(conn)
    _, once = _night(conn, model, cutoff)
    cache = _cache(conn)
    again, twice = _night(conn, model, cutoff)
    assert again["interval_keys_drawn"] == 0 and again["interval_keys_reused"] == again["interval_keys"] == len(cache)
    pd.testing.assert_frame_equal(_cache(conn), cache)
    pd.testing.assert_frame_equal(twice, once)


@pytest.mark.parametrize("change", ["fit", "chunk", "horizon"])
def test_a_refit_or_a_changed_setting_redraws_every_key(store, model, change):
    import dataclasses

    conn = store
    cutoff = scoring_cutoff(conn)
    config = clv.load_config()
    _night(conn, model, cutoff, config=config)
    _next_day(conn)
    night = {"fit": "fit-2" if change == "fit" else "fit-1", "chunk": 50 if change == "chunk" else 100,
             "config": dataclasses.replace(config, horizon_days=config.horizon_days + 7) if change == "horizon" else config}
    counts, scores = _night(conn, model, cutoff + timedelta(days=1), **night)
    assert counts["interval_keys_drawn"] == counts["interval_keys"] > 0 and counts["interval_keys_reused"] == 0
    assert counts["interval_cache"] == "redrawn: the cache was of another fit or other draw settings"
    cache = _cache(conn)
    assert cache["cache_key"].nunique() == 1 and len(cache) == counts["interval_keys"]  # the old rows are gone
    # a full draw: the values of the same night drawn without any cache
    _, uncached = _night(conn, model, cutoff + timedelta(days=1), fit=None, chunk=night["chunk"],
                         config=night["config"])
    pd.testing.assert_frame_equal(scores, uncached)


def test_a_cache_without_the_mixture_columns_is_redrawn_for_a_night_that_needs_them(store, model):
    conn = store
    cutoff = scoring_cutoff(conn)
    lean_counts, lean = _night(conn, model, cutoff, mixture=False)
    assert _cache(conn)[interval_cache.POSITIVE].isna().all().all()
    counts, full = _night(conn, model, cutoff, mixture=True)
    assert counts["interval_keys_drawn"] == counts["interval_keys"] == lean_counts["interval_keys"]
    assert counts["interval_cache"] == "redrawn: the cache lacked the mixture columns this night needs"
    mixture_columns = [clv.P_BUY_LABEL, *clv.POSITIVE_COLUMNS]
    assert full[mixture_columns].notna().all().all() and lean[mixture_columns].isna().all().all()
    # the same seeds: the intervals do not move
    pd.testing.assert_frame_equal(full[RATIOS], lean[RATIOS])
    # a cache with the mixture columns serves a night without them (nulls there, as before) and
    # keeps drawing them for its new keys
    _next_day(conn)
    later, lean_again = _night(conn, model, cutoff + timedelta(days=1), mixture=False)
    assert later["interval_keys_reused"] > 0 and later["interval_keys_drawn"] > 0
    assert lean_again[mixture_columns].isna().all().all()
    assert _cache(conn)[interval_cache.POSITIVE].notna().all().all()


def test_btyd_scores_metadata_counts_the_reused_and_drawn_keys(features_db, data_env):
    database = data_env / "cache_asset.duckdb"
    shutil.copy(features_db, database)
    resources = {"duckdb": DuckDBResource(database=str(database))}
    with duckdb.connect(str(database), read_only=True) as conn:
        keys = int(conn.execute(f"select count(distinct {btyd_intervals.KEY_SQL}) from {FEATURE_TABLE}").fetchone()[0])

    def run(**config):
        result = dg.materialize([btyd_scores], resources=resources,
                                run_config={"ops": {"ml__btyd_scores": {"config": config}}} if config else None)
        return materialization_metadata(result, ("ml", "btyd_scores"))

    first, second, refit = run(), run(), run(refit=True)
    assert (first["interval_keys"], first["interval_keys_reused"], first["interval_keys_drawn"]) == (keys, 0, keys)
    assert second["fit"] == "reused" and (second["interval_keys_reused"], second["interval_keys_drawn"]) == (keys, 0)
    assert second["interval_cache"] == "reused the cache of this fit"
    # the cache is keyed by the fitted parameters: a refit draws every key again, unless its optimizer
    # lands on the very parameters already cached (a warm start that cannot improve falls back to the
    # fixed starts of the first fit), and then reusing is right and the metadata says so
    assert refit["fit"] == "refitted"
    assert (refit["interval_keys_reused"], refit["interval_keys_drawn"]) in ((0, keys), (keys, 0))
    if refit["interval_keys_reused"]:
        assert refit["interval_cache"] == "reused the cache of this fit"
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute(f"select count(*), count(distinct code), count(distinct cache_key) "
                            f"from {interval_cache.TABLE}").fetchone() == (keys, keys, 1)
