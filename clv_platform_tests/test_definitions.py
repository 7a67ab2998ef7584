"""The code location loads, and the whole graph materializes in process on a small demo store."""

import dagster as dg
import duckdb
import pytest

from clv_platform.definitions import build_definitions
from clv_platform.ingestion.assets import shopify_daily_partitions
from clv_platform_tests.cheap_config import cheap_clv_config, use_clv_config

LAYERS = {"raw", "staging", "features", "ml", "scores", "monitoring", "marts", "activation"}


def test_code_location_loads_and_keys_name_their_layer(data_env):
    defs = build_definitions(database=str(data_env / "clv.duckdb"))
    dg.Definitions.validate_loadable(defs)
    keys = {spec.key for spec in defs.resolve_all_asset_specs()}
    assert {tuple(k.path) for k in keys} >= {
        ("raw", "shopify_orders"), ("raw", "klaviyo_profiles"), ("raw", "file_transactions"),
        ("staging", "orders"), ("staging", "order_lines"), ("staging", "customers"),
        ("staging", "products"), ("staging", "rejected_rows"),
    }
    for key in keys:
        assert key.path[0] in LAYERS and len(key.path) == 2, key
    for spec in defs.resolve_all_asset_specs():
        assert spec.group_name == spec.key.path[0], spec.key
        # what the UI shows beside every asset: who owns it, what it is, where it lives
        assert spec.description and spec.owners and spec.kinds, spec.key
    for name in ("full_refresh", "import_inbox_file", "rebuild_from_staging", "full_rebuild"):
        defs.resolve_job_def(name)


def test_live_mode_binds_secrets_through_env_vars(data_env, monkeypatch):
    monkeypatch.setenv("CLV_SOURCE", "shopify")
    monkeypatch.setenv("SHOPIFY_SHOP_DOMAIN", "example.myshopify.com")
    monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", "shpat_secret_value")
    defs = build_definitions(database=str(data_env / "clv.duckdb"))
    shopify = defs.resources["shopify"]
    assert type(shopify).__name__ == "ShopifyResource"
    assert "shpat_secret_value" not in repr(shopify)
    assert type(defs.resources["klaviyo"]).__name__ == "NoProfilesResource"


def _step_failures(result) -> dict[str, object]:
    """step key -> the failure's user data (description, metadata) or None for an uncaught error."""
    return {e.step_key: e.step_failure_data.user_failure_data for e in result.all_events if e.is_step_failure}


def test_an_asset_run_before_its_upstream_names_what_to_materialize_first(data_env):
    """Materializing one asset whose upstream table was never built fails with a sentence naming the
    asset to materialize, not DuckDB's CatalogException: a table a helper reads beside its direct
    parents (the as-of date reads staging.orders), a missing schema, and inside a named job."""
    db = data_env / "clv.duckdb"
    defs = build_definitions(database=str(db))
    implicit = defs.resolve_implicit_global_asset_job_def()

    features = implicit.execute_in_process(asset_selection=[dg.AssetKey(["features", "customer_features"])],
                                           instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    failure = _step_failures(features)["features__customer_features"]
    assert failure.description == (
        f"features/customer_features reads staging.orders, which is not in {db} yet: materialize staging/orders "
        "first (or select features/customer_features with everything upstream of it, e.g. the refresh_everything "
        "job), then run it again.")
    assert failure.metadata["materialize_first"].value == "staging/orders"

    with duckdb.connect(str(db)) as conn:  # staging built, the marts never
        conn.execute("create schema staging")
        conn.execute("create table staging.orders as select 1 as order_id")
    summary = implicit.execute_in_process(asset_selection=[dg.AssetKey(["marts", "segment_summary"])],
                                          instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert _step_failures(summary)["marts__segment_summary"].metadata["materialize_first"].value == (
        "marts/customer_scores")

    scoring = defs.resolve_job_def("daily_scoring").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    failures = _step_failures(scoring)
    assert failures["marts__product_performance"].description.startswith(
        "marts/product_performance reads staging.order_lines, which is not in ")
    # a missing upstream is no transient error: the step is not retried
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in scoring.all_events)


def test_a_database_another_process_holds_fails_with_a_sentence_naming_it(data_env, monkeypatch):
    """A run started while another process writes the database (a CLI run beside the UI's queue):
    the step says who holds the file and what to do, not DuckDB's IOException."""
    import subprocess
    import sys

    import dagster_duckdb.resource

    db = data_env / "clv.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time\n"
                               f"conn = duckdb.connect({str(db)!r}); print('held', flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        # DuckDBResource retries a locked file for ~100 s: once is enough here
        monkeypatch.setattr(dagster_duckdb.resource, "backoff", lambda fn, retry_on, kwargs, max_retries: fn(**kwargs))
        result = build_definitions(database=str(db)).resolve_implicit_global_asset_job_def().execute_in_process(
            asset_selection=[dg.AssetKey(["marts", "seasonality"])], instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False)
    finally:
        holder.kill()
        holder.wait()
    failure = _step_failures(result)["marts__seasonality"]
    assert failure.description.startswith(
        f"{db} is in use by process {holder.pid} (python"), failure.description
    assert "DuckDB lets one process write a database at a time" in failure.description
    assert "clv-platform demo / files, dagster asset materialize" in failure.description
    assert failure.metadata["locked_by_pid"].value == holder.pid


def test_a_missing_table_outside_an_asset_step_stays_duckdbs_error(tmp_path):
    from clv_platform.resources.storage import StorageResource

    with pytest.raises(duckdb.CatalogException, match="staging.orders"):
        with StorageResource(database=str(tmp_path / "x.duckdb")).get_connection() as conn:
            conn.execute("select * from staging.orders")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One full refresh of a 400-customer demo store, shared by the invariant tests.

    The models train on the cheaper clv.toml of cheap_config.py: these tests check that every
    asset materializes and what the tables hold, not the models' accuracy (test_clv.py does).
    """
    tmp = tmp_path_factory.mktemp("demo")
    mp = pytest.MonkeyPatch()
    use_clv_config(mp, cheap_clv_config(tmp))
    for var in ("SHOPIFY_ACCESS_TOKEN", "SHOPIFY_SHOP_DOMAIN", "KLAVIYO_API_KEY"):
        mp.delenv(var, raising=False)
    mp.setenv("CLV_DEMO_CUSTOMERS", "400")
    mp.setenv("CLV_DATA_DIR", str(tmp))
    db = tmp / "clv.duckdb"
    defs = build_definitions(database=str(db))
    keys = shopify_daily_partitions.get_partition_keys()
    result = defs.resolve_job_def("refresh_everything").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
    )
    yield result, db, defs
    mp.undo()


def test_refresh_everything_materializes_every_asset(demo_run):
    result, db, defs = demo_run
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    every_asset = {spec.key for spec in defs.resolve_all_asset_specs()}
    # no inbox file in the demo; run failures are written by a sensor, not by a run
    assert materialized == every_asset - {dg.AssetKey(["raw", "file_transactions"]),
                                          dg.AssetKey(["monitoring", "run_failures"])}
    failed = [c for c in result.get_asset_check_evaluations()
              if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
    assert failed == []
    with duckdb.connect(str(db), read_only=True) as conn:
        customers = conn.execute("select count(*) from features.customer_features").fetchone()[0]
        for table in ("scores.customer_clv", "scores.customer_npd", "scores.customer_segments",
                      "marts.customer_scores"):
            assert conn.execute(f"select count(*), count(distinct customer_id) from {table}").fetchone() == (
                customers, customers
            ), table


def test_staging_invariants_on_demo_store(demo_run):
    _, db, _ = demo_run
    with duckdb.connect(str(db), read_only=True) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        assert one("select count(*) from staging.orders") > 1000
        assert one("select count(*) - count(distinct order_id) from staging.orders") == 0
        assert one("select count(*) - count(distinct customer_id) from staging.customers") == 0
        assert one("select count(*) from staging.orders where net_revenue < 0") == 0
        assert one("select count(*) from staging.orders where is_cancelled and net_revenue <> 0") == 0
        assert one("select count(*) from staging.orders where order_id is null or order_date is null") == 0
        # every raw order version is accepted or rejected, never both, never neither
        raw = one("select count(*) from raw.shopify_orders")
        accepted = one("select count(*) from staging.orders where source = 'demo'")
        rejected = one("select count(*) from staging.rejected_rows where source_table = 'raw.shopify_orders'")
        assert raw == accepted + rejected
        reasons = {r for (r,) in conn.execute("select distinct reason from staging.rejected_rows").fetchall()}
        assert {"test order", "superseded by a newer version of the order"} <= reasons
        # guests are kept; those whose email matches a known person are tied to them
        assert one("select count(*) from staging.orders where is_guest and customer_id is not null") > 0
        assert one("select count(*) from staging.orders where is_guest and customer_id is null") > 0
        # emails are normalized
        assert one("select count(*) from staging.customers where email <> lower(trim(email))") == 0
        # a second presentment currency, money always in the shop currency
        assert one("select count(distinct presentment_currency) from staging.orders") == 2
        assert one("select count(distinct shop_currency) from staging.orders") == 1
        # order lines belong to accepted orders
        assert one("select count(*) from staging.order_lines l anti join staging.orders o using (order_id)") == 0


def test_rerunning_a_partition_replaces_its_rows(demo_run):
    result, db, defs = demo_run
    with duckdb.connect(str(db), read_only=True) as conn:
        day, before = conn.execute(
            "select partition_date, count(*) from raw.shopify_orders group by 1 order by 2 desc limit 1"
        ).fetchone()
    # the nightly job: ingest one partition, score with the registered models trained above
    job = defs.resolve_job_def("full_refresh")
    again = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), partition_key=day.isoformat())
    assert again.success
    with duckdb.connect(str(db), read_only=True) as conn:
        after = conn.execute("select count(*) from raw.shopify_orders where partition_date = ?", [day]).fetchone()[0]
        dupes = conn.execute(
            "select count(*) from (select order_id, updated_at from raw.shopify_orders group by all having count(*) > 1)"
        ).fetchone()[0]
    assert after == before
    assert dupes == 0


def test_the_column_contract_matches_the_tables_of_a_full_refresh(demo_run):
    """No description outlives its column, and the analysts' schemas (scores, marts) have none
    missing: the contract is what the UI's column schemas and the DuckDB comments show."""
    _, db, _ = demo_run
    from clv_platform import contract

    with duckdb.connect(str(db), read_only=True) as conn:
        tables = {f"{s}.{t}" for s, t in conn.execute("select schema_name, table_name from duckdb_tables()").fetchall()}
        described = {t: c for t, c in contract.load_contract().items() if t in tables}
        assert {"scores.customer_clv", "scores.customer_segments", "marts.customer_scores"} <= set(described)
        stale = {t: sorted(set(c.columns) - {name for name, _ in contract.table_columns(conn, t)})
                 for t, c in described.items()}
        assert {t: cols for t, cols in stale.items() if cols} == {}
        missing = {t: contract.undescribed(conn, t) for t in tables if t.split(".")[0] in ("scores", "marts")}
        assert {t: cols for t, cols in missing.items() if cols} == {}
