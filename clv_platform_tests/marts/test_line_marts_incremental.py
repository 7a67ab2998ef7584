"""The order marts updated from staging merges (product and category performance, revenue per month,
cohorts) equal a rebuild, row for row."""

import copy
import shutil

import duckdb
import pandas as pd
import pytest

from clv_platform.ingestion.raw_tables import ensure_raw_tables
from clv_platform.marts.incremental import APPLIED_TABLE, LINE_MARTS, build_line_mart
from clv_platform.transforms.staging import CHANGE_LOG, build_staging
from clv_platform_tests.transforms.test_staging_merge import RAW, awkward_loads, copy_rows, load, write_demo_raw

MARTS = list(LINE_MARTS)


def mart_frames(conn) -> dict[str, pd.DataFrame]:
    return {name: conn.execute(f"select * from marts.{name}").df() for name in MARTS}


def rebuilt_marts(path: str, tmp_path, label: str) -> dict[str, pd.DataFrame]:
    """The marts of a copy of ``path`` built from scratch (no state, no change log)."""
    copy_path = str(tmp_path / f"rebuilt_{label}.duckdb")
    shutil.copy(path, copy_path)
    with duckdb.connect(copy_path) as conn:
        conn.execute("drop schema if exists marts_build cascade")
        conn.execute(f"drop table if exists {CHANGE_LOG}")
        updates = [build_line_mart(conn, name) for name in MARTS]
        assert {u["update"] for u in updates} == {"full"}
        return mart_frames(conn)


def assert_same(merged: dict[str, pd.DataFrame], rebuilt: dict[str, pd.DataFrame]) -> None:
    for name in MARTS:
        assert len(merged[name]) > 0, name
        pd.testing.assert_frame_equal(merged[name], rebuilt[name], check_exact=True, obj=name)


@pytest.fixture(scope="module")
def demo_raw(tmp_path_factory):
    return write_demo_raw(tmp_path_factory, seed=11)


def test_daily_merges_of_the_demo_store_update_the_line_marts_as_a_rebuild_would(demo_raw, tmp_path):
    cuts = ["2025-09-01", "2025-09-15", "2025-10-01", "2025-10-20", "2100-01-01"]
    merged_path = str(tmp_path / "merged.duckdb")
    with duckdb.connect(demo_raw, read_only=True) as source, duckdb.connect(merged_path) as merged:
        # the later loads hold edits and refunds of orders placed before them, or this proves little
        old_edits = source.execute(
            """select count(*) filter (where json_array_length(o.payload -> '$.refunds') > 0), count(*)
               from raw.shopify_orders o
               join (select order_id, min(updated_at) as first from raw.shopify_orders group by 1) f using (order_id)
               where o.updated_at > ? and f.first <= ?""", [cuts[0], cuts[0]]).fetchone()
        assert old_edits[0] > 0 and old_edits[1] > old_edits[0], old_edits
        ensure_raw_tables(merged)
        previous, updates = "1900-01-01", []
        for i, cut in enumerate(cuts):
            window = (f"coalesce(updated_at, timestamp '1900-01-02') > '{previous}' "
                      f"and coalesce(updated_at, timestamp '1900-01-02') <= '{cut}'")
            assert copy_rows(source, merged, dict.fromkeys(RAW, window)) > 0
            build_staging(merged)
            updates.append([build_line_mart(merged, name) for name in MARTS])
            previous = cut
            merged.execute("checkpoint")
            assert_same(mart_frames(merged), rebuilt_marts(merged_path, tmp_path, str(i)))
        modes = [[u["update"] for u in step] for step in updates]
        assert modes == [["full"] * len(MARTS)] + [["incremental"] * len(MARTS)] * (len(cuts) - 1), modes
        assert all(step[0]["changed_customers"] > 0 for step in updates[1:])
        # each state's row count is its source's (the check that would force a rebuild)
        lines = merged.execute("select count(*) from staging.order_lines where not is_cancelled").fetchone()[0]
        orders = merged.execute("select count(*) from staging.orders where not is_cancelled").fetchone()[0]
        applied = dict(merged.execute(f"select mart, lines from {APPLIED_TABLE}").fetchall())
        assert applied == {"product_performance": lines, "category_performance": lines,
                           "revenue_monthly": orders, "cohort_retention": orders - merged.execute(
                               "select count(*) from staging.orders where not is_cancelled and customer_id is null"
                           ).fetchone()[0]}


def test_identity_merges_move_guest_orders_between_buyers_in_the_line_marts(tmp_path):
    """A guest order that moves to a new Shopify customer, a refund and a cancellation of an old
    order, a new product: each merged state equals a rebuild."""
    path = str(tmp_path / "merged.duckdb")
    with duckdb.connect(path) as merged:
        for i, (orders, profiles) in enumerate(awkward_loads()):
            load(merged, copy.deepcopy(orders), profiles)
            build_staging(merged, shop_currency="USD")
            updates = [build_line_mart(merged, name) for name in MARTS]
            assert {u["update"] for u in updates} == {"full" if i == 0 else "incremental"}
            merged.execute("checkpoint")
            assert_same(mart_frames(merged), rebuilt_marts(path, tmp_path, str(i)))
            if i == 1:
                # bo's guest order moved to a customer: the guest row went, bo became a buyer
                assert updates[0]["changed_guest_orders"] >= 1
        products = merged.execute("select count(*) from marts.product_performance").fetchone()[0]
        assert products == 2  # the new product of load 4


def test_a_full_staging_build_or_other_state_sql_rebuilds_the_state(demo_raw, tmp_path):
    path = str(tmp_path / "store.duckdb")
    with duckdb.connect(demo_raw, read_only=True) as source, duckdb.connect(path) as conn:
        ensure_raw_tables(conn)
        copy_rows(source, conn, dict.fromkeys(RAW, "true"))
        build_staging(conn)
        assert build_line_mart(conn, "product_performance")["update"] == "full"
        full = conn.execute("select * from marts.product_performance").df()
        rerun = build_line_mart(conn, "product_performance")  # nothing new: no rebuild, no changed lines to select
        assert (rerun["update"], rerun["update_reason"]) == ("incremental", "no staging merge since seq 1")
        assert (rerun["changed_customers"], rerun["changed_guest_orders"]) == (0, 0)
        assert conn.execute("select count(*) from duckdb_views() "
                            "where view_name = '_product_performance_changed_lines'").fetchone()[0] == 0
        pd.testing.assert_frame_equal(conn.execute("select * from marts.product_performance").df(), full,
                                      check_exact=True)
        build_staging(conn, full_rebuild=True)
        update = build_line_mart(conn, "product_performance")
        assert (update["update"], update["update_reason"]) == ("full", "staging was rebuilt")
        conn.execute(f"update {APPLIED_TABLE} set state_version = 'older'")
        assert build_line_mart(conn, "product_performance")["update_reason"] == "the state SQL changed"
        # staging written by something else than build_staging: the line count gives it away, on a
        # night with no merge too (the rerun path selects no changed lines but still counts)
        conn.execute("delete from staging.order_lines where rowid in (select min(rowid) from staging.order_lines "
                     "where not is_cancelled)")
        update = build_line_mart(conn, "product_performance")
        assert update["update"] == "full" and "rebuilt" in update["update_reason"]
