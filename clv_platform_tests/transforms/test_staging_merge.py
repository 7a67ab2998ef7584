"""A merge of new raw rows gives exactly the tables a full rebuild gives.

The same raw records reach two databases: one is built once from everything, the other is built
from a first load and then merged load by load (later versions of old orders: edits, refunds,
cancellations; new customers; Klaviyo profile updates; awkward identity changes). Every staging
table must then be equal row for row (EXCEPT ALL both ways), ignoring only the bookkeeping
columns named in `LOAD_BOOKKEEPING_COLUMNS` (when a row was rejected).
"""

import copy
from datetime import date, datetime

import duckdb
import pytest

from clv_platform.ingestion.demo_store import DemoStoreParams, generate
from clv_platform.ingestion.raw_tables import ensure_raw_tables
from clv_platform.transforms.staging import LOAD_BOOKKEEPING_COLUMNS, STAGING_TABLES, build_staging
from clv_platform_tests.transforms.test_staging import load, order, profile

RAW = ("shopify_orders", "klaviyo_profiles")


def assert_same_staging(merged: duckdb.DuckDBPyConnection, full_path: str) -> None:
    merged.execute(f"attach '{full_path}' as full_db (read_only)")
    try:
        for table in STAGING_TABLES:
            ignored = LOAD_BOOKKEEPING_COLUMNS.get(table, ())
            cols = ", ".join(c for (c,) in merged.execute(
                "select column_name from information_schema.columns where table_catalog = current_database() "
                "and table_schema = 'staging' and table_name = ? order by ordinal_position", [table]).fetchall()
                if c not in ignored)
            full_cols = ", ".join(c for (c,) in merged.execute(
                "select column_name from information_schema.columns where table_catalog = 'full_db' "
                "and table_schema = 'staging' and table_name = ? order by ordinal_position", [table]).fetchall()
                if c not in ignored)
            assert cols == full_cols, table
            only_merged = merged.execute(
                f"select {cols} from staging.{table} except all select {cols} from full_db.staging.{table}").fetchall()
            only_full = merged.execute(
                f"select {cols} from full_db.staging.{table} except all select {cols} from staging.{table}").fetchall()
            assert not only_merged and not only_full, (table, only_merged[:3], only_full[:3])
    finally:
        merged.execute("detach full_db")


def copy_rows(source: duckdb.DuckDBPyConnection, target: duckdb.DuckDBPyConnection, where: dict[str, str]) -> int:
    """Insert the source's raw rows matching `where[table]` into the target, in their stored order."""
    n = 0
    for table in RAW:
        frame = source.execute(f"select * from raw.{table} where {where[table]} order by rowid").df()
        target.register("_rows", frame)
        target.execute(f"insert into raw.{table} select * from _rows")
        target.unregister("_rows")
        n += len(frame)
    return n


def write_demo_raw(tmp_path_factory, seed: int) -> str:
    """A small demo store's raw tables (its later order versions are edits, refunds, cancellations)."""
    path = str(tmp_path_factory.mktemp("demo") / "demo_store.duckdb")
    store = generate(DemoStoreParams(n_customers=250, seed=seed, start_date=date(2024, 11, 1),
                                     end_date=date(2025, 10, 31)))
    with duckdb.connect(path) as conn:
        store.write_raw_tables(conn, datetime(2025, 11, 1, 6))
    return path


@pytest.fixture(scope="module")
def demo_raw(tmp_path_factory):
    return write_demo_raw(tmp_path_factory, seed=7)


def test_merging_daily_loads_of_the_demo_store_equals_a_full_build(demo_raw, tmp_path):
    cuts = ["2025-09-01", "2025-09-15", "2025-10-01", "2025-10-20", "2100-01-01"]
    with duckdb.connect(demo_raw, read_only=True) as source:
        # the loads must hold what the merge has to get right, or the test proves little
        later = source.execute(
            """
            select count(*) filter (where o.updated_at > ? and first.updated_at <= ?),
                   count(*) filter (where o.updated_at > ? and json_array_length(o.payload -> '$.refunds') > 0),
                   count(*) filter (where o.updated_at > ? and o.payload ->> '$.cancelledAt' is not null)
            from raw.shopify_orders as o
            join (select order_id, min(updated_at) as updated_at from raw.shopify_orders group by order_id) as first
              using (order_id)
            """, [cuts[0], cuts[0], cuts[0], cuts[0]]).fetchone()
        assert all(n > 0 for n in later), later  # versions of old orders, refunds, cancellations after the first load
        new_profiles = source.execute("select count(*) from raw.klaviyo_profiles where updated_at > ?",
                                      [cuts[0]]).fetchone()[0]
        assert new_profiles > 0

        full_path = str(tmp_path / "full.duckdb")
        with duckdb.connect(full_path) as full:
            ensure_raw_tables(full)
            copy_rows(source, full, dict.fromkeys(RAW, "true"))
            assert build_staging(full).mode == "full"

        with duckdb.connect(str(tmp_path / "merged.duckdb")) as merged:
            ensure_raw_tables(merged)
            previous = "1900-01-01"
            modes = []
            for cut in cuts:
                window = f"coalesce(updated_at, timestamp '1900-01-02') > '{previous}' " \
                         f"and coalesce(updated_at, timestamp '1900-01-02') <= '{cut}'"
                assert copy_rows(source, merged, dict.fromkeys(RAW, window)) > 0
                result = build_staging(merged)
                modes.append(result.mode)
                if result.mode == "merge":
                    assert all(r.balanced and r.rows_in > 0 for r in result.load_reconciliation[:1])
                    assert result.merged["orders"] > 0
                previous = cut
            assert modes == ["full"] + ["merge"] * (len(cuts) - 1)
            assert_same_staging(merged, full_path)


def awkward_loads():
    """Loads whose merge changes who a customer is, not only what they bought."""
    no_id = order(20, updated="2025-01-06T00:00:00Z")
    no_id.pop("id")
    return [
        # 1: a guest order of bo, ana's order, a profile for cy, a test order
        ([order(1, customer=None, email="bo@example.com"), order(2, customer=7, email="ana@example.com"),
          order(3, test=True)],
         [profile("P1", "cy@example.com")]),
        # 2: bo becomes a Shopify customer (their guest order must move to them); ana's order is refunded;
        #    cy's profile changes email to ana's (cy's person disappears, ana gains the profile)
        ([order(4, customer=9, email="BO@example.com", updated="2025-01-06T00:00:00Z"),
          order(2, customer=7, email="ana@example.com", updated="2025-01-07T00:00:00Z", refunds=["10.00"])],
         [profile("P1", "ana@example.com", updated="2025-02-02T00:00:00+00:00")]),
        # 3: the same version again (a duplicate), an unusable newer version (the old one must stay),
        #    an order without id, a profile without email, a second Shopify customer sharing bo's email
        ([order(2, customer=7, email="ana@example.com", updated="2025-01-07T00:00:00Z", refunds=["10.00"]),
          order(4, customer=9, email="bo@example.com", updated="2025-01-09T00:00:00Z", total="oops"),
          no_id, order(5, customer=2, email="bo@example.com", updated="2025-01-10T00:00:00Z")],
         [profile("P2", None, updated="2025-02-03T00:00:00+00:00")]),
        # 4: ana's order is cancelled; a new product on a new customer's order
        ([order(2, customer=7, email="ana@example.com", updated="2025-01-12T00:00:00Z", refunds=["10.00"],
                cancelled="2025-01-11T00:00:00Z"),
          {**order(6, customer=11, email="dee@example.com", updated="2025-01-12T00:00:00Z"),
           "lineItems": {"nodes": [{**order(6)["lineItems"]["nodes"][0],
                                    "product": {"id": "gid://shopify/Product/2", "productType": "Shoes"}}]}}],
         [profile("P3", "dee@example.com", updated="2025-02-04T00:00:00+00:00")]),
    ]


def test_merges_that_change_identities_equal_a_full_build(tmp_path):
    loads = awkward_loads()
    full_path = str(tmp_path / "full.duckdb")
    with duckdb.connect(full_path) as full:
        for orders, profiles in loads:
            load(full, copy.deepcopy(orders), profiles)
        build_staging(full, shop_currency="USD")
    with duckdb.connect(str(tmp_path / "merged.duckdb")) as merged:
        for i, (orders, profiles) in enumerate(loads):
            load(merged, copy.deepcopy(orders), profiles)
            result = build_staging(merged, shop_currency="USD")
            assert result.mode == ("full" if i == 0 else "merge"), (i, result.full_reason)
        # bo's guest order now belongs to the lowest gid sharing bo's email
        assert merged.execute("select customer_id from staging.orders where order_id = 'gid://shopify/Order/1'"
                              ).fetchone()[0] == "gid://shopify/Customer/2"
        assert_same_staging(merged, full_path)


def test_a_repeat_buyers_new_order_re_resolves_only_what_changed(tmp_path):
    """A new order of a known person re-resolves that order, not the person's history; a new
    Shopify customer sharing a guest's email re-resolves the guest orders that move to them."""
    history = [order(n, customer=7, email="ana@example.com") for n in range(1, 5)]
    history += [order(n, customer=None, email="bo@example.com") for n in (5, 6)]
    later = [order(7, customer=7, email="ana@example.com", updated="2025-01-08T00:00:00Z")]
    bo_joins = [order(8, customer=9, email="bo@example.com", updated="2025-01-09T00:00:00Z")]
    moved = profile("P1", "ana@example.com", updated="2025-02-05T00:00:00+00:00")
    moved["attributes"]["location"] = {"country": "Portugal"}
    full_path = str(tmp_path / "full.duckdb")
    with duckdb.connect(full_path) as full:
        load(full, history + later + bo_joins, [profile("P1", "ana@example.com"), moved])
        build_staging(full, shop_currency="USD")
    with duckdb.connect(str(tmp_path / "merged.duckdb")) as merged:
        load(merged, history, [profile("P1", "ana@example.com")])
        build_staging(merged, shop_currency="USD")
        load(merged, later)
        repeat = build_staging(merged, shop_currency="USD")
        # ana's four earlier orders keep their rows; her customer row and history are rebuilt
        assert repeat.mode == "merge"
        assert repeat.merged["orders"] == 1 and repeat.merged["orders_resolved"] == 1
        assert repeat.merged["customers"] >= 1 and repeat.merged["history_customers"] == 1
        # her first purchase is the same order as before: her acquisition row is not re-read
        assert repeat.merged["acquisition_customers"] == 0
        load(merged, bo_joins)
        joined = build_staging(merged, shop_currency="USD")
        # bo's two guest orders move to the new Shopify customer, with bo's new order
        assert joined.merged["orders_resolved"] == 3
        assert merged.execute("select count(*) from staging.orders where customer_id = 'gid://shopify/Customer/9'"
                              ).fetchone()[0] == 3
        assert joined.merged["history_customers"] == 1  # the guest orders had no customer before
        assert joined.merged["acquisition_customers"] == 1  # and so no first purchase
        assert merged.execute("select first_order_id from staging.customer_acquisition "
                              "where customer_id = 'gid://shopify/Customer/9'").fetchone()[0] == "gid://shopify/Order/5"
        # a profile update changes ana's customer row, not her purchase history
        load(merged, profiles=[moved])
        updated = build_staging(merged, shop_currency="USD")
        assert updated.merged["orders_resolved"] == 0 and updated.merged["history_customers"] == 0
        # only her row changed (its country): the other rows the profile reached stay where they are
        assert updated.merged["customer_rows_replaced"] == 1
        assert merged.execute("select country from staging.customers where email = 'ana@example.com'"
                              ).fetchone()[0] == "Portugal"
        assert_same_staging(merged, full_path)


def test_a_deleted_raw_row_forces_a_full_build(conn=None):
    with duckdb.connect() as conn:
        load(conn, [order(1), order(2, updated="2025-01-06T00:00:00Z")])
        assert build_staging(conn, shop_currency="USD").mode == "full"
        load(conn, [order(3, updated="2025-01-07T00:00:00Z")])
        assert build_staging(conn, shop_currency="USD").mode == "merge"
        # a re-fetched partition deletes and re-inserts raw rows the last build already read
        conn.execute("delete from raw.shopify_orders where order_id = 'gid://shopify/Order/2'")
        load(conn, [order(2, updated="2025-01-06T00:00:00Z")])
        again = build_staging(conn, shop_currency="USD")
        assert again.mode == "full" and "deleted or re-inserted" in again.full_reason
        assert conn.execute("select count(*) from staging.orders").fetchone()[0] == 3
        # a changed setting rebuilds too, and full_rebuild always does
        assert build_staging(conn, shop_currency="USD", basis="total_price").full_reason.startswith("revenue_basis")
        forced = build_staging(conn, shop_currency="USD", basis="total_price", full_rebuild=True)
        assert forced.mode == "full" and forced.full_reason is None


def test_changed_staging_rules_force_one_full_build(monkeypatch):
    """After an upgrade that changed a staging script, rows a merge would not touch must follow the
    new rules too: the first build rebuilds everything, the next merges again."""
    from clv_platform.transforms import staging

    with duckdb.connect() as conn:
        load(conn, [order(1)])
        assert build_staging(conn, shop_currency="USD").mode == "full"
        load(conn, [order(2, updated="2025-01-06T00:00:00Z")])
        assert build_staging(conn, shop_currency="USD").mode == "merge"
        previous = staging.RULES_VERSION
        monkeypatch.setattr(staging, "RULES_VERSION", "0123456789abcdef")
        load(conn, [order(3, updated="2025-01-07T00:00:00Z")])
        upgraded = build_staging(conn, shop_currency="USD")
        assert upgraded.mode == "full"
        assert upgraded.full_reason == (f"the staging rules changed (scripts version {previous} → 0123456789abcdef): "
                                        "every raw row is parsed again with them")
        assert conn.execute("select count(*) from staging.orders").fetchone()[0] == 3
        load(conn, [order(4, updated="2025-01-08T00:00:00Z")])
        assert build_staging(conn, shop_currency="USD").mode == "merge"


def test_the_staging_asset_merges_by_default_and_the_full_rebuild_job_rebuilds(tmp_path):
    import dagster as dg
    from dagster_duckdb import DuckDBResource

    from clv_platform.automation.jobs import full_rebuild_job
    from clv_platform.transforms.staging_assets import staging_tables

    db = str(tmp_path / "clv.duckdb")
    with duckdb.connect(db) as conn:
        load(conn, [order(1)])

    def run(run_config=None):
        result = dg.materialize([staging_tables], resources={"duckdb": DuckDBResource(database=db)},
                                run_config=run_config, instance=dg.DagsterInstance.ephemeral())
        mats = {tuple(m.asset_key.path): m.metadata for m in result.asset_materializations_for_node("staging_tables")}
        return mats[("staging", "orders")]

    first = run()
    assert first["build_mode"].value == "full" and first["full_build_reason"].value == "no previous build"
    with duckdb.connect(db) as conn:
        load(conn, [order(2, updated="2025-01-06T00:00:00Z")])
    second = run()
    assert second["build_mode"].value == "merge" and second["merged_keys"].value["orders"] == 1
    assert second["dagster/row_count"].value == 2
    job_config = full_rebuild_job.config
    forced = run(job_config)
    assert forced["build_mode"].value == "full" and "full_build_reason" not in forced


def test_replace_changed_rows_keeps_identical_rows_in_place():
    """Only rows that differ are deleted and inserted (NULLs equal, duplicates counted), and the
    table ends up holding exactly the delta for the replaced keys."""
    from clv_platform.transforms.staging import _replace_changed_rows

    with duckdb.connect() as conn:
        conn.execute("create table t (k varchar, v integer, w varchar)")
        conn.execute("insert into t values ('a', 1, null), ('a', 2, 'x'), ('b', 3, 'y'), ('b', 3, 'y'), "
                     "('c', 9, 'keep')")
        conn.execute("create temp table keys as select * from (values ('a'), ('b')) as s(k)")
        # a: (1, null) unchanged, (2, 'x') becomes (2, 'z'); b: one of two duplicates goes, a new row comes
        conn.execute("create temp table delta as select * from (values ('a', 1, null), ('a', 2, 'z'), "
                     "('b', 3, 'y'), ('b', 4, null)) as s(k, v, w)")
        before = dict(conn.execute("select v, rowid from t where k = 'a' and v = 1").fetchall())
        deleted = _replace_changed_rows(conn, "t", "k", "keys", "delta")
        assert deleted == 2
        assert sorted(conn.execute("select * from t").fetchall(), key=str) == sorted(
            [("a", 1, None), ("a", 2, "z"), ("b", 3, "y"), ("b", 4, None), ("c", 9, "keep")], key=str)
        # the unchanged row was not deleted and re-inserted: it keeps its row id
        assert dict(conn.execute("select v, rowid from t where k = 'a' and v = 1").fetchall()) == before


def on_day(node: dict, day: str, title: str | None = None) -> dict:
    """An order node placed on `day` (its product line optionally under another title)."""
    node = {**node, "createdAt": f"{day}T10:00:00Z", "processedAt": f"{day}T10:00:00Z"}
    if title:
        node["lineItems"] = {"nodes": [{**node["lineItems"]["nodes"][0], "title": title}]}
    return node


def test_a_merge_adjusts_products_by_the_replaced_lines_and_recounts_when_it_cannot(tmp_path):
    """staging.products after a merge equals the full build's, whether a touched product was adjusted
    (stored row - replaced lines + new lines) or aggregated again from all its lines."""
    history = [on_day(order(n, customer=7, email="ana@example.com"), day)
               for n, day in ((1, "2025-01-02"), (2, "2025-01-03"), (3, "2025-01-04"))]
    loads = [
        (history, 0, None),
        # a refund of an old order, a cancellation, a new order on a later day: adjusted in place
        ([on_day(order(2, updated="2025-01-10T00:00:00Z", refunds=["10.00"]), "2025-01-03"),
          on_day(order(3, updated="2025-01-10T00:00:00Z", cancelled="2025-01-09T00:00:00Z"), "2025-01-04"),
          on_day(order(4, updated="2025-01-10T00:00:00Z"), "2025-01-09")],
         0, (6, "180.00", "2025-01-02", "2025-01-09")),
        # the first day's only order becomes a test order: its line goes, so the product is recounted
        ([on_day(order(1, updated="2025-01-11T00:00:00Z", test=True), "2025-01-02")],
         1, (4, "120.00", "2025-01-03", "2025-01-09")),
        # a line under another title: the title's mode may move, so the product is recounted
        ([on_day(order(5, updated="2025-01-12T00:00:00Z"), "2025-01-12", title="Tee (new)")],
         1, (6, "180.00", "2025-01-03", "2025-01-12")),
    ]
    full_path = str(tmp_path / "full.duckdb")
    with duckdb.connect(full_path) as full:
        for orders, _, _ in loads:
            load(full, copy.deepcopy(orders))
        build_staging(full, shop_currency="USD")
    with duckdb.connect(str(tmp_path / "merged.duckdb")) as merged:
        for i, (orders, recounted, expected) in enumerate(loads):
            load(merged, copy.deepcopy(orders))
            result = build_staging(merged, shop_currency="USD")
            if i == 0:
                continue
            assert result.mode == "merge" and result.merged["products"] == 1
            assert result.merged["products_recounted"] == recounted, i
            units, revenue, first, last = merged.execute(
                "select units_sold, revenue, first_sold_at, last_sold_at from staging.products").fetchone()
            assert (units, str(revenue), str(first), str(last)) == expected, i
        assert merged.execute("select title from staging.products").fetchone()[0] == "Tee"
        assert_same_staging(merged, full_path)


def test_a_merge_keeps_an_imported_files_refunded_amounts_as_a_full_build_does(tmp_path):
    """An order-level file's refunded-amount column is one staging.refunds row per order (as
    Shopify's export's Refunded Amount): a merge of later Shopify loads leaves them, and every other
    table, exactly as a full build of the same raw rows writes them."""
    from clv_platform.ingestion.file_import import RAW_COLUMNS, parse_export

    export = tmp_path / "payments.csv"
    export.write_text("customer_id,order_id,order_date,amount,currency,Amount Refunded\n"
                      "c1,p1,2025-01-02,50.00,USD,20.00\nc1,p2,2025-01-03,30.00,USD,45.00\n"
                      "c2,p3,2025-01-04,10.00,USD,\n")
    frame = parse_export(export, datetime(2025, 1, 5))

    def add_file(conn):
        ensure_raw_tables(conn)
        conn.register("_file_batch", frame)
        values = ", ".join(f"{c}::json" if c in ("payload", "layout_fields") else c for c in RAW_COLUMNS)
        conn.execute(f"insert into raw.file_transactions ({', '.join(RAW_COLUMNS)}) select {values} from _file_batch")
        conn.unregister("_file_batch")

    loads = [[order(1, updated="2025-01-03T10:00:00Z")],
             [order(1, updated="2025-01-06T08:00:00Z", refunds=["10.00"]),
              order(2, customer=8, email="bo@example.com", updated="2025-01-06T09:00:00Z")]]
    full_path = str(tmp_path / "full.duckdb")
    with duckdb.connect(full_path) as full:
        add_file(full)
        for orders in loads:
            load(full, copy.deepcopy(orders))
        build_staging(full, shop_currency="USD")
    with duckdb.connect(str(tmp_path / "merged.duckdb")) as merged:
        add_file(merged)
        for i, orders in enumerate(loads):
            load(merged, copy.deepcopy(orders))
            result = build_staging(merged, shop_currency="USD")
            assert result.mode == ("full" if i == 0 else "merge"), (i, result.full_reason)
        assert merged.execute("select order_id, amount::double from staging.refunds where order_id like 'import:%' "
                              "order by 1").fetchall() == [("import:p1", 20.0), ("import:p2", 45.0)]
        assert_same_staging(merged, full_path)
