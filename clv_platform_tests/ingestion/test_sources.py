"""One store per database: the source is recorded, a mismatched run fails without touching raw rows,
missing live credentials are an error (never a switch to the demo), and each source has its own file."""

import hashlib
import os
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import duckdb
import pytest

from clv_platform.automation.sensors import content_hash, inbox_file_sensor
from clv_platform.definitions import build_definitions
from clv_platform.ingestion.assets import raw_shopify_orders
from clv_platform.ingestion.raw_tables import ensure_raw_tables
from clv_platform.ingestion.store_source import recorded_source
from clv_platform.ingestion.source_resources import DemoStoreResource
from clv_platform.resources.storage import StorageResource
from clv_platform.settings import SettingsError, load_settings


def _seed_live_rows(db, with_meta: bool) -> tuple[int, str]:
    with duckdb.connect(str(db)) as conn:
        ensure_raw_tables(conn)
        for i in range(50):
            conn.execute(
                "insert into raw.shopify_orders values (?, ?, ?, ?::json, 'shopify', ?)",
                [f"gid://shopify/Order/{i}", datetime(2025, 1, 1) + timedelta(hours=i), date(2025, 1, 1),
                 f'{{"id": "gid://shopify/Order/{i}", "n": {i}}}', datetime(2025, 1, 3)],
            )
        conn.execute(
            "insert into raw.klaviyo_profiles values ('p1', '2025-01-01', '{\"id\": \"p1\"}'::json, 'klaviyo', '2025-01-03')"
        )
        if with_meta:
            conn.execute("create schema meta")
            conn.execute("create table meta.platform (source varchar, created_at timestamp, shop_timezone varchar)")
            conn.execute("insert into meta.platform values ('shopify', '2025-01-03', null)")
    return _fingerprint(db)


def _fingerprint(db) -> tuple[int, str]:
    """Row count + checksum of every raw row (payload included)."""
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(
            """
            select 'o', order_id, updated_at::varchar, payload::varchar, source from raw.shopify_orders
            union all select 'p', profile_id, updated_at::varchar, payload::varchar, source from raw.klaviyo_profiles
            order by 1, 2
            """
        ).fetchall()
    return len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()


def _run_day(defs, day: str):
    job = defs.resolve_job_def("full_refresh")
    return job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), partition_key=day, raise_on_error=False)


def _failure_messages(result) -> str:
    return "\n".join(
        e.step_failure_data.error.message + (e.step_failure_data.user_failure_data.description or "")
        if e.step_failure_data.user_failure_data else e.step_failure_data.error.message
        for e in result.all_events if e.is_step_failure
    )


@pytest.mark.parametrize("with_meta", [True, False])
def test_live_database_with_secrets_unset_fails_and_keeps_every_raw_row(data_env, monkeypatch, with_meta):
    db = data_env / "clv.duckdb"
    before = _seed_live_rows(db, with_meta)
    yesterday = (datetime.now(timezone.utc).date() - timedelta(days=1)).isoformat()

    # The nightly host lost its environment: CLV_SOURCE is unset (so: demo) and no secrets.
    result = _run_day(build_definitions(database=str(db)), yesterday)
    assert not result.success
    message = _failure_messages(result)
    assert "holds the 'shopify' store, but CLV_SOURCE=demo" in message
    assert _fingerprint(db) == before
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("select count(*) from raw.shopify_orders where source = 'demo'").fetchone()[0] == 0

    # CLV_SOURCE=shopify is kept but the secrets are gone: an error naming them, not the demo store.
    monkeypatch.setenv("CLV_SOURCE", "shopify")
    defs = build_definitions(database=str(db))
    assert type(defs.resources["shopify"]).__name__ == "MissingCredentialsResource"
    result = _run_day(defs, yesterday)
    assert not result.success
    message = _failure_messages(result)
    assert "SHOPIFY_SHOP_DOMAIN and SHOPIFY_CLIENT_ID / SHOPIFY_CLIENT_SECRET (or SHOPIFY_ACCESS_TOKEN) not set" in message
    assert _fingerprint(db) == before
    with duckdb.connect(str(db), read_only=True) as conn:
        assert recorded_source(conn) == "shopify"


def test_demo_database_refuses_a_files_run_and_files_database_refuses_demo(data_env, monkeypatch):
    db = data_env / "clv.duckdb"
    demo = DemoStoreResource(n_customers=30, seed=1, end_date="2025-01-31")
    day = "2025-01-10"
    result = dg.materialize(
        [raw_shopify_orders],
        resources={"duckdb": StorageResource.from_settings(load_settings()), "shopify": demo},
        partition_key=day,
    )
    assert result.success
    with duckdb.connect(str(db), read_only=True) as conn:
        assert recorded_source(conn) == "demo"
        demo_rows = conn.execute("select count(*) from raw.shopify_orders").fetchone()[0]
    monkeypatch.setenv("CLV_SOURCE", "files")
    result = _run_day(build_definitions(database=str(db)), day)
    assert not result.success
    assert "holds the 'demo' store, but CLV_SOURCE=files" in _failure_messages(result)
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("select count(*) from raw.shopify_orders").fetchone()[0] == demo_rows


def test_a_run_without_a_raw_step_refuses_another_store_too(data_env, monkeypatch):
    """The scoring job, the retrain job and one asset launched alone have no raw or staging step, which
    guard the store: with another CLV_SOURCE each step fails with the same sentence, writing nothing."""
    db = data_env / "clv.duckdb"
    with duckdb.connect(str(db)) as conn:
        conn.execute("create schema meta")
        conn.execute("create table meta.platform (source varchar, created_at timestamp, shop_timezone varchar)")
        conn.execute("insert into meta.platform values ('demo', '2025-01-03', null)")
        conn.execute("create schema staging")
        conn.execute("create table staging.orders as select 1 as order_id, date '2025-01-02' as order_date, 'demo' as source")
    monkeypatch.setenv("CLV_SOURCE", "files")
    defs = build_definitions(database=str(db))
    expected = (f"{db} holds the 'demo' store, but CLV_SOURCE=files. Nothing was read or written (no raw row is ever "
                "deleted to switch stores). Run with CLV_SOURCE=demo to use this database, or point CLV_DUCKDB_PATH "
                "at another file (by default each source has its own: demo.duckdb, clv.duckdb for shopify, "
                "files.duckdb).")
    for job in (defs.resolve_job_def("daily_scoring"), defs.resolve_job_def("retrain_models")):
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        failures = [e.step_failure_data.user_failure_data for e in result.all_events if e.is_step_failure]
        assert failures and {f.description for f in failures} == {expected}, job.name
    single = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[dg.AssetKey(["marts", "seasonality"])], instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False)
    assert [e.step_failure_data.user_failure_data.description for e in single.all_events if e.is_step_failure] == [
        expected]
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("select schema_name from duckdb_schemas() where not internal and schema_name "
                            "not in ('main', 'meta', 'staging') order by 1").fetchall() == []
    assert not (data_env / "models").exists() and not (data_env / "exports").exists()


def test_each_source_has_its_own_database_by_default(tmp_path):
    env = {"CLV_DATA_DIR": str(tmp_path)}
    assert load_settings(env).duckdb_path == tmp_path / "demo.duckdb"
    assert load_settings({**env, "CLV_SOURCE": "shopify"}).duckdb_path == tmp_path / "clv.duckdb"
    assert load_settings({**env, "CLV_SOURCE": "files"}).duckdb_path == tmp_path / "files.duckdb"
    assert load_settings({**env, "CLV_SOURCE": "files"}).models_dir == tmp_path / "models" / "files"
    assert load_settings({**env, "CLV_SOURCE": "shopify"}).models_dir == tmp_path / "models"
    with pytest.raises(SettingsError, match="CLV_SOURCE='live' is not one of demo, shopify, files"):
        load_settings({**env, "CLV_SOURCE": "live"})
    with pytest.raises(SettingsError, match="CLV_AS_OF"):
        load_settings({**env, "CLV_AS_OF": "yesterday"})
    with pytest.raises(SettingsError, match="file_currency"):
        load_settings({**env, "CLV_FILE_CURRENCY": "pounds"})


def test_store_toml_in_the_data_folder_overrides_the_packaged_defaults(tmp_path):
    (tmp_path / "store.toml").write_text('[store]\ntimezone = "Europe/London"\nfile_currency = "gbp"\n')
    settings = load_settings({"CLV_DATA_DIR": str(tmp_path)})
    assert settings.store_timezone == "Europe/London" and settings.file_currency == "GBP"
    assert settings.demo_customers == 5000  # untouched keys keep the packaged default
    # Last complete day in the store's zone: 00:30 on 2 March in London is still 1 March in UTC-5.
    now = datetime(2025, 3, 2, 0, 30, tzinfo=timezone.utc)
    assert settings.last_complete_day(now) == date(2025, 3, 1)
    assert settings.last_complete_day(now, "America/New_York") == date(2025, 2, 28)


def test_demo_store_history_ends_the_day_before_the_run(tmp_path):
    settings = load_settings({"CLV_DATA_DIR": str(tmp_path), "CLV_AS_OF": "2027-03-15"})
    assert settings.demo_end_date() == date(2027, 3, 14)
    assert load_settings({"CLV_DATA_DIR": str(tmp_path)}).demo_end_date(date(2026, 12, 1)) == date(2026, 11, 30)
    store = DemoStoreResource(n_customers=200, seed=7, end_date="2027-03-14").store()
    created = [n["createdAt"][:10] for n in store.order_nodes(datetime(2000, 1, 1), datetime(2100, 1, 1))
               if isinstance(n.get("createdAt"), str)]
    assert max(created) <= "2027-03-14" and max(created) >= "2027-03-07"
    again = DemoStoreResource(n_customers=200, seed=7, end_date="2027-03-14").store()
    assert [n.get("id") for n in again.order_nodes(datetime(2000, 1, 1), datetime(2100, 1, 1))] == \
        [n.get("id") for n in store.order_nodes(datetime(2000, 1, 1), datetime(2100, 1, 1))]


def test_inbox_sensor_keys_files_by_content_and_ignores_the_inbox_outside_files_mode(data_env):
    inbox = data_env / "inbox"
    path = inbox / "export.csv"
    path.write_text("customer_id,order_id,order_date,amount\nc1,o1,2025-01-01,10.00\n")
    instance = dg.DagsterInstance.ephemeral()

    def tick(source: str):
        settings = load_settings({**os.environ, "CLV_SOURCE": source})
        context = dg.build_sensor_context(instance=instance, resources={"duckdb": StorageResource.from_settings(settings)})
        return inbox_file_sensor(context)

    skipped = tick("demo")
    assert isinstance(skipped, dg.SkipReason) and "CLV_SOURCE=demo" in skipped.skip_message
    first = tick("files").run_requests[0].run_key
    assert first == f"export.csv:{content_hash(path)}"
    stat = path.stat()
    os.utime(path, (stat.st_atime + 100, stat.st_mtime + 100))  # touched, same bytes: same version
    assert tick("files").run_requests[0].run_key == first
    path.write_text("customer_id,order_id,order_date,amount\nc1,o1,2025-01-01,99.00\n")  # same size, corrected
    os.utime(path, (stat.st_atime, stat.st_mtime))
    assert path.stat().st_size == stat.st_size
    assert tick("files").run_requests[0].run_key != first


def test_rebuild_after_the_first_import_trains_the_models(data_env):
    import json

    from clv_platform.automation.sensors import needs_training
    from clv_platform.models import registry
    from clv_platform.models.npd_assets import MODEL_PREFIX

    db, models = data_env / "clv.duckdb", data_env / "models"
    assert needs_training(db, models)  # fresh store: nothing registered, no file yet
    models.mkdir(exist_ok=True)
    npd_sidecar, clv_sidecar = models / f"{MODEL_PREFIX}20250101T000000000000Z.json", models / "clv_xgb_1.json"
    npd_sidecar.write_text(json.dumps({"serves": "xgboost"}))
    clv_sidecar.write_text(json.dumps({"serving": {"served": "hybrid"}}))
    with duckdb.connect(str(db)) as conn:
        conn.execute("create schema ml")
        registry.ensure_model_runs(conn)
        conn.execute("insert into ml.model_runs (model_name, model_version, trained_at, path, is_registered) values "
                     "('clv_xgb', '1', timestamp '2025-01-01', ?, false), "
                     "('npd_aft', '1', timestamp '2025-01-01', ?, true)", [str(clv_sidecar), str(npd_sidecar)])
    assert needs_training(db, models)  # trained once but never registered
    with duckdb.connect(str(db)) as conn:
        conn.execute("update ml.model_runs set is_registered = true")
    assert not needs_training(db, models)

    # the served CLV model is the BTYD stand-in of a history too short to train: try again
    clv_sidecar.write_text(json.dumps({"serving": {"served": "btyd", "history_too_short": True}}))
    assert needs_training(db, models)
    # a BTYD served because the trained hybrid lost to it is not a stand-in: the weekly retrain decides
    clv_sidecar.write_text(json.dumps({"serving": {"served": "btyd", "reason": "hybrid does not beat BTYD"}}))
    assert not needs_training(db, models)
    # the newest registered next-purchase model is the short-history fallback
    short_npd = models / f"{MODEL_PREFIX}20250201T000000000000Z.json"
    short_npd.write_text(json.dumps({"serves": "btyd", "history_too_short": True}))
    with duckdb.connect(str(db)) as conn:
        conn.execute("insert into ml.model_runs (model_name, model_version, trained_at, path, is_registered) values "
                     "('npd_aft', '2', timestamp '2025-02-01', ?, true)", [str(short_npd)])
    assert needs_training(db, models)
    with duckdb.connect(str(db)) as conn:  # rolled back to the trained one
        conn.execute("update ml.model_runs set is_registered = false where model_version = '2'")
    assert not needs_training(db, models)
    npd_sidecar.unlink()
    short_npd.unlink()
    assert needs_training(db, models)  # the next-purchase model is missing


def test_as_of_date_belongs_to_the_store(data_env):
    from clv_platform.transforms.cutoff import cutoff_and_rule

    db = data_env / "clv.duckdb"
    with duckdb.connect(str(db)) as conn:
        conn.execute("create schema staging")
        conn.execute(
            "create table staging.orders as select * from (values ('file', date '2011-12-09'), "
            "('demo', date '2026-11-30')) as t(source, order_date)"
        )
        conn.execute("create schema meta")
        conn.execute("create table meta.platform (source varchar, created_at timestamp, shop_timezone varchar)")
        conn.execute("insert into meta.platform values ('files', now(), null)")
        settings = load_settings({"CLV_DATA_DIR": str(data_env), "CLV_SOURCE": "files"})
        assert cutoff_and_rule(conn, settings) == (date(2011, 12, 9), "last order date of the store's imported files")
        conn.execute("update meta.platform set source = 'shopify', shop_timezone = 'Asia/Tokyo'")
        now = datetime(2025, 3, 1, 16, 0, tzinfo=timezone.utc)  # already 2 March 01:00 in Tokyo
        assert cutoff_and_rule(conn, settings, now) == (
            date(2025, 3, 1), "last complete day in the shop's time zone (Asia/Tokyo)")
        pinned = load_settings({"CLV_DATA_DIR": str(data_env), "CLV_AS_OF": "2024-05-05"})
        assert cutoff_and_rule(conn, pinned, now)[0] == date(2024, 5, 5)


def test_the_rebuild_after_an_import_asks_for_training_on_a_fresh_files_store(data_env, monkeypatch):
    from clv_platform.automation.sensors import rebuild_after_import_sensor

    monkeypatch.setenv("CLV_SOURCE", "files")
    monkeypatch.setenv("CLV_FILE_CURRENCY", "GBP")
    (data_env / "inbox" / "shop.csv").write_text("customer_id,order_id,order_date,amount\nc1,o1,2025-01-01,10.00\n")
    defs = build_definitions(database=str(data_env / "clv.duckdb"))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("inbox_files", ["shop.csv"])
    run = defs.resolve_job_def("import_inbox_file").execute_in_process(instance=instance, partition_key="shop.csv")
    assert run.success
    context = dg.build_run_status_sensor_context(
        sensor_name="rebuild_after_import_sensor", dagster_instance=instance, dagster_run=run.dagster_run,
        dagster_event=run.get_run_success_event(),
        resources={"duckdb": defs.resources["duckdb"]},
    )
    request = rebuild_after_import_sensor(context)
    assert request.job_name == "rebuild_and_train" and request.run_key == run.run_id
    assert request.tags["clv/trains_models"] == "true"
