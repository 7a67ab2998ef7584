"""The benchmark (benchmarks/, outside the package) on tiny stores: its figures are about real data.

Nothing here is timed: the tests check that the bench's pandas references compute the same
features as the SQL (its like-for-like claim), that a hand-made store gives the hand-computed
features, and that the bench builds its settings without touching the environment.
"""

import os
import time
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.bench import bench_settings, format_report, run_bench
from benchmarks.references import agreement, pandas_features, pandas_features_per_customer


def test_bench_references_agree_with_the_sql_features():
    result = run_bench(400, source="synthetic", repeats=1, stages=[])

    assert result["orders"] > 400 and result["order_lines"] > result["orders"]
    assert 0 < result["feature_rows"] <= 400
    assert result["agreement"]["ok"], result["agreement"]
    assert result["agreement"]["customers_sql"] == result["agreement"]["customers_pandas"] == result["feature_rows"]
    assert result["agreement"]["max_abs_diff"] < 1e-6
    assert result["agreement_per_customer"]["ok"], result["agreement_per_customer"]
    stages = [s["stage"] for s in result["stages"]]
    assert stages == ["synthetic staging", "order history", "features"]
    # the refresh figures cover staging + features, not the set-up or the references
    assert result["refresh_seconds"] == pytest.approx(sum(s["seconds"] for s in result["stages"]))
    report = format_report([result])
    assert "full refresh" in report and "duckdb features / bare scan" in report


def _orders(rows):
    frame = pd.DataFrame(rows, columns=["customer_id", "order_date", "is_cancelled", "cancelled_at",
                                        "gross_revenue", "refunded_amount"])
    frame["order_date"] = pd.to_datetime(frame["order_date"])
    frame["cancelled_at"] = pd.to_datetime(frame["cancelled_at"])
    return frame


def test_pandas_references_give_the_hand_computed_features():
    cutoff = date(2024, 6, 30)
    orders = _orders([
        # a: three purchase days (two orders on the second), one refund, one order after the cutoff
        ("a", "2024-01-01", False, None, 100.0, 0.0),
        ("a", "2024-03-01", False, None, 50.0, 10.0),
        ("a", "2024-03-01", False, None, 30.0, 0.0),
        ("a", "2024-06-20", False, None, 20.0, 0.0),
        ("a", "2024-07-05", False, None, 999.0, 0.0),
        # b: one purchase, and an order cancelled by the cutoff (not a purchase)
        ("b", "2024-05-31", False, None, 40.0, 0.0),
        ("b", "2024-06-10", True, "2024-06-11", 70.0, 0.0),
        # c: an order cancelled only after the cutoff still counts as of the cutoff
        ("c", "2024-06-01", True, "2024-07-02", 25.0, 0.0),
    ])
    for reference in (pandas_features, pandas_features_per_customer):
        out = reference(orders, cutoff)
        assert sorted(out.index) == ["a", "b", "c"]
        a, b, c = out.loc["a"], out.loc["b"], out.loc["c"]
        assert a["frequency"] == 2 and a["order_count"] == 4
        assert a["days_since_last_order"] == 10 and a["T_days"] == 181
        assert a["total_net_spend"] == pytest.approx(190.0)
        assert a["monetary"] == pytest.approx((70.0 + 20.0) / 2)  # repeat days only
        assert a["mean_interpurchase_days"] == pytest.approx((60 + 111) / 2)
        assert a["orders_last_30d"] == 1 and a["orders_last_90d"] == 1 and a["orders_last_365d"] == 4
        assert a["spend_last_90d"] == pytest.approx(20.0) and a["spend_prev_90d"] == pytest.approx(70.0)  # 1 January is 181 days old
        assert b["frequency"] == 0 and b["order_count"] == 1 and b["monetary"] == 0.0
        assert b["total_net_spend"] == pytest.approx(40.0) and b["days_since_last_order"] == 30
        assert pd.isna(b["mean_interpurchase_days"])
        assert c["order_count"] == 1 and c["total_net_spend"] == pytest.approx(25.0)


def test_agreement_reports_a_differing_customer():
    cutoff = date(2024, 6, 30)
    orders = _orders([("a", "2024-01-01", False, None, 100.0, 0.0), ("b", "2024-02-01", False, None, 5.0, 0.0)])
    reference = pandas_features(orders, cutoff)
    sql_like = reference.reset_index()
    assert agreement(sql_like, reference)["ok"]
    sql_like.loc[sql_like["customer_id"] == "b", "total_net_spend"] = 6.0
    verdict = agreement(sql_like, reference)
    assert not verdict["ok"] and verdict["max_abs_diff"] == pytest.approx(1.0)
    assert not agreement(sql_like[sql_like["customer_id"] == "a"], reference)["ok"]  # a customer missing


def test_bench_settings_keep_every_file_under_the_bench_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CLV_DATA_DIR", "/somewhere/live")
    monkeypatch.setenv("CLV_MODELS_DIR", "/somewhere/live/models")
    monkeypatch.setenv("CLV_SOURCE", "shopify")
    before = dict(os.environ)
    settings = bench_settings(tmp_path, tmp_path / "bench.duckdb", "2GB")
    assert dict(os.environ) == before
    assert settings.source == "demo" and settings.memory_limit == "2GB"
    assert settings.duckdb_path == (tmp_path / "bench.duckdb").resolve()
    for path in (settings.data_dir, settings.models_dir, settings.reports_dir, settings.inbox_dir,
                 settings.export_dir, settings.analytics_path):
        assert Path(path).resolve().is_relative_to(tmp_path.resolve()), path


def test_nightly_day_appends_the_expected_rows_and_merges_like_a_full_build(tmp_path):
    import duckdb

    from benchmarks.nightly import append_day
    from clv_platform.ingestion.demo_store import DemoStoreParams, generate
    from clv_platform.transforms.staging import build_staging
    from clv_platform_tests.transforms.test_staging_merge import assert_same_staging

    path = tmp_path / "store.duckdb"
    with duckdb.connect(str(path)) as conn:
        generate(DemoStoreParams(n_customers=400, seed=3)).write_raw_tables(conn, datetime(2026, 11, 1, 6))
        build_staging(conn)
        orders_before = conn.execute("select count(*) from staging.orders").fetchone()[0]
        raw_before = conn.execute("select (select count(*) from raw.shopify_orders), "
                                  "(select count(*) from raw.klaviyo_profiles)").fetchone()
        day = append_day(conn, fraction=0.01)
        raw_after = conn.execute("select (select count(*) from raw.shopify_orders), "
                                 "(select count(*) from raw.klaviyo_profiles)").fetchone()
        assert day.new_orders == -(-day.history_orders // 100)  # ceil of 1 % of the history's orders
        assert day.refunds == day.new_orders // 5 and day.cancellations == max(1, day.new_orders // 20)
        assert day.edits == max(1, day.new_orders // 20)
        assert raw_after[0] - raw_before[0] == day.order_rows
        assert raw_after[1] - raw_before[1] == day.profile_rows and day.new_profiles == day.new_customers

        merged = build_staging(conn)
        assert merged.mode == "merge"
        assert merged.merged["orders"] == day.order_rows  # every appended version is its own order
        new_day = conn.execute("select count(*) from staging.orders where order_date = ?", [date.fromisoformat(
            day.day)]).fetchone()[0]
        assert conn.execute("select count(*) from staging.orders").fetchone()[0] == orders_before + day.new_orders
        assert new_day >= day.new_orders
        assert conn.execute("select count(*) from staging.customers where email like 'nightly-%'").fetchone()[0] \
            == day.new_customers
        refunded = conn.execute("select count(*) from staging.refunds where refunded_on = ?",
                                [date.fromisoformat(day.day)]).fetchone()[0]
        assert refunded == day.refunds
    full_path = tmp_path / "full.duckdb"
    with duckdb.connect(str(full_path)) as full:
        full.execute(f"attach '{path}' as src (read_only)")
        full.execute("create schema raw")
        for table in ("shopify_orders", "klaviyo_profiles", "file_transactions", "shopify_shop"):
            full.execute(f"create table raw.{table} as select * from src.raw.{table}")
        full.execute("detach src")
        assert build_staging(full).mode == "full"
    with duckdb.connect(str(path)) as conn:
        assert_same_staging(conn, str(full_path))


def test_bench_runs_see_the_bench_settings_in_every_module(tmp_path, monkeypatch):
    """Modules that ask `load_settings()` for a path get the bench's folder inside `using_settings`."""
    from clv_platform.marts.publish import analytics_path
    from clv_platform.models.registry import models_dir
    from clv_platform.resources.storage import reports_dir
    from clv_platform.settings import load_settings, using_settings

    monkeypatch.setenv("CLV_DATA_DIR", str(tmp_path / "live"))
    settings = bench_settings(tmp_path / "bench", tmp_path / "bench" / "bench.duckdb")
    with using_settings(settings):
        assert load_settings() is settings
        for path in (analytics_path(), models_dir(), reports_dir()):
            assert Path(path).is_relative_to(tmp_path / "bench"), path
    assert load_settings().data_dir == (tmp_path / "live").resolve()  # and only inside the block


def test_step_peak_and_cpu_come_from_the_samples_inside_each_step():
    """A step's peak RSS is the highest sample taken while it ran (not the run's), and its CPU
    seconds are the process CPU between the samples around it."""
    from benchmarks.nightly import _RssSampler

    sampler = _RssSampler()
    sampler.samples = [(0.0, 100.0, 1.0), (1.0, 900.0, 2.0), (2.0, 300.0, 4.0), (3.0, 250.0, 7.5), (4.0, 120.0, 8.0)]
    assert sampler.during(1.5, 3.0) == (300.0, 5.5)   # samples at 2 and 3 inside; CPU 7.5 - 2.0 (at 3 and at 1)
    assert sampler.during(0.0, 1.0) == (900.0, 1.0)
    assert sampler.during(3.5, 9.0) == (120.0, None)   # no sample after the end: no CPU figure
    assert sampler.during(3.2, 3.4) == (None, 0.5)   # no sample inside: no peak


def test_a_bench_run_reports_each_steps_peak_rss_and_cpu(tmp_path):
    import dagster as dg

    from benchmarks.nightly import _RssSampler, _step_windows

    @dg.asset
    def holds_memory():
        block = bytearray(200 * 1024 * 1024)  # 200 MiB, touched so that it is resident
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(0.6)
        return len(block)

    @dg.asset
    def small(holds_memory):
        time.sleep(0.6)
        return holds_memory

    instance = dg.DagsterInstance.ephemeral()
    sampler = _RssSampler(every=0.05)
    sampler.start()
    result = dg.materialize([holds_memory, small], instance=instance)
    sampler.stop()
    windows = _step_windows(instance, result.run_id)
    assert set(windows) == {"holds_memory", "small"}
    peak_big, cpu_big = sampler.during(*windows["holds_memory"])
    peak_small, _ = sampler.during(*windows["small"])
    assert peak_big is not None and peak_small is not None and cpu_big is not None and cpu_big >= 0
    assert peak_big > peak_small + 150  # the 200 MiB block was resident only in its own step


def test_releasing_the_buffer_cache_drops_cached_blocks_and_keeps_the_limit(tmp_path):
    """What a step's own connection does when it closes: the blocks read before are no longer
    held, and the configured memory limit is exactly what it was (not a rounded "3.7 GiB")."""
    import duckdb

    from benchmarks.bench import release_buffer_cache

    conn = duckdb.connect(str(tmp_path / "cache.duckdb"))
    conn.execute("set memory_limit = '1GB'")
    conn.execute("create table t as select i, md5(i::varchar) || md5((i + 1)::varchar) || md5((i * 7)::varchar) as h "
                 "from range(2000000) as r(i)")
    conn.execute("checkpoint")
    conn.execute("select count(distinct h) from t").fetchall()
    limit = conn.execute("select current_setting('memory_limit')").fetchone()[0]
    held = conn.execute("select sum(memory_usage_bytes) from duckdb_memory()").fetchone()[0]
    release_buffer_cache(conn, "1GB")
    after = conn.execute("select sum(memory_usage_bytes) from duckdb_memory()").fetchone()[0]
    assert held > 64 * 2**20 and after <= 32 * 2**20, (held, after)
    assert conn.execute("select current_setting('memory_limit')").fetchone()[0] == limit
    assert conn.execute("select count(*), max(i) from t").fetchone() == (2000000, 1999999)  # re-read from the file
    conn.close()


def test_a_second_appended_day_brings_new_orders_customers_and_profiles(tmp_path):
    """Day two's new orders, customers and profiles are numbered after day one's: its merge sees
    them as new (each appended version is its own order), not as edits of day one's orders."""
    import duckdb

    from benchmarks.nightly import append_day
    from clv_platform.ingestion.demo_store import DemoStoreParams, generate
    from clv_platform.transforms.staging import build_staging

    with duckdb.connect(str(tmp_path / "store.duckdb")) as conn:
        generate(DemoStoreParams(n_customers=300, seed=5)).write_raw_tables(conn, datetime(2026, 11, 1, 6))
        build_staging(conn)
        first = append_day(conn, fraction=0.01)
        build_staging(conn)
        customers = conn.execute("select count(*) from staging.customers where email like 'nightly-%'").fetchone()[0]
        second = append_day(conn, fraction=0.01)
        merged = build_staging(conn)
        assert merged.mode == "merge" and merged.merged["orders"] == second.order_rows
        assert conn.execute("select count(*) from staging.customers where email like 'nightly-%'").fetchone()[0] \
            == customers + second.new_customers == first.new_customers + second.new_customers
        assert conn.execute("select count(*) from raw.klaviyo_profiles where profile_id like 'NIGHTLY%'"
                            ).fetchone()[0] == first.new_profiles + second.new_profiles
        assert conn.execute("select count(distinct profile_id) from raw.klaviyo_profiles "
                            "where profile_id like 'NIGHTLY%'").fetchone()[0] == first.new_profiles + second.new_profiles
