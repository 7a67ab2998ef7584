"""Monitoring sensors: one retrain per flagged drift run, graceful skips, failed runs recorded without secrets."""

import subprocess
import sys
from datetime import datetime

import dagster as dg
import duckdb
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource

from clv_platform.automation.jobs import retrain_models_job
from clv_platform.automation.monitoring_sensors import (
    MONITORING_SENSORS,
    drift_retrain_sensor,
    record_failure,
    record_run_failure_sensor,
    scrub_secrets,
)
from clv_platform.monitoring.assets import drift_row, write_drift_run
from clv_platform.monitoring.drift import ColumnDrift, DriftResult
from clv_platform.resources.storage import duckdb_path


def add_drift_run(path, run_id: str, run_at: datetime, flagged: bool) -> None:
    columns = [ColumnDrift("days_since_last_order", "num", "wasserstein", 0.1, 0.5 if flagged else 0.01, flagged)]
    result = DriftResult(columns, float(flagged), flagged, 0.3)
    row = drift_row(run_id, run_at, "v1", run_at.date(), run_at.date(), "test", 10, 10, result, {}, None)
    with duckdb.connect(str(path)) as conn:
        write_drift_run(conn, row, result.to_frame())


def tick(instance, cursor=None):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"duckdb": DuckDBResource(database=str(duckdb_path()))}
    )
    return drift_retrain_sensor(context), context.cursor


def test_flagged_drift_run_requests_exactly_one_retrain(data_env):
    db = data_env / "clv.duckdb"
    instance = dg.DagsterInstance.ephemeral()

    result, cursor = tick(instance)
    assert isinstance(result, dg.SkipReason)  # no database yet

    add_drift_run(db, "run-a", datetime(2025, 3, 1), flagged=True)
    result, cursor = tick(instance, cursor)
    assert isinstance(result, dg.RunRequest)
    assert result.run_key == "run-a" and result.tags["clv/drift_run_id"] == "run-a"
    assert cursor == "run-a"

    result, cursor = tick(instance, cursor)
    assert isinstance(result, dg.SkipReason) and "already handled" in result.skip_message

    add_drift_run(db, "run-b", datetime(2025, 3, 2), flagged=False)
    result, cursor = tick(instance, cursor)
    assert isinstance(result, dg.SkipReason) and cursor == "run-b"

    # re-running drift run b with the flag set replaces its row, but b was handled: no retrain loop
    add_drift_run(db, "run-b", datetime(2025, 3, 2), flagged=True)
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("select count(*) from monitoring.drift_runs where drift_run_id = 'run-b'").fetchone()[0] == 1
    result, cursor = tick(instance, cursor)
    assert isinstance(result, dg.SkipReason)


def test_drift_sensor_skips_while_another_process_holds_the_lock(data_env):
    db = data_env / "clv.duckdb"
    add_drift_run(db, "run-a", datetime(2025, 3, 1), flagged=True)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb, sys, time; c = duckdb.connect({str(db)!r}); print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        result, cursor = tick(dg.DagsterInstance.ephemeral())
        assert isinstance(result, dg.SkipReason) and "busy" in result.skip_message
        assert cursor is None
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    result, _ = tick(dg.DagsterInstance.ephemeral())
    assert isinstance(result, dg.RunRequest)


def test_retrain_job_selects_features_models_scores_and_marts_only():
    @dg.asset(key=["features", "f"], group_name="features")
    def f() -> None: ...

    @dg.asset(key=["ml", "m"], group_name="ml", deps=[f])
    def m() -> None: ...

    @dg.asset(key=["scores", "s"], group_name="scores", deps=[m])
    def s() -> None: ...

    @dg.asset(key=["marts", "t"], group_name="marts", deps=[s])
    def t() -> None: ...

    @dg.asset(key=["monitoring", "d"], group_name="monitoring", deps=[s])
    def d() -> None: ...

    defs = dg.Definitions(assets=[f, m, s, t, d], jobs=[retrain_models_job], sensors=MONITORING_SENSORS)
    job = defs.resolve_job_def(retrain_models_job.name)
    assert set(job.asset_layer.executable_asset_keys) == {f.key, m.key, s.key, t.key}


SECRET_TOKEN = "shpat_0123456789abcdef0123456789abcdef"
SECRET_ENV_VALUE = "klaviyo-env-value-XYZ"


def test_scrub_secrets_removes_tokens_keys_and_env_values():
    text = (
        f"401 for https://shop.myshopify.com/admin?access_token={SECRET_TOKEN} "
        f"headers={{'X-Shopify-Access-Token': '{SECRET_TOKEN}', 'Authorization': 'Klaviyo-API-Key pk_abcdef0123456789abcd'}} "
        f"Bearer eyJhbGciOi.payload.sig password=hunter2 {SECRET_ENV_VALUE} https://user:pw123@host/x "
        "run 5e0f8a4c-3b1d-4c0e-9f61-2d7a1c9b8e10"
    )
    scrubbed = scrub_secrets(text, env={"KLAVIYO_API_KEY": SECRET_ENV_VALUE})
    for secret in (SECRET_TOKEN, "pk_abcdef0123456789abcd", "eyJhbGciOi", "hunter2", SECRET_ENV_VALUE, "pw123"):
        assert secret not in scrubbed
    assert "5e0f8a4c-3b1d-4c0e-9f61-2d7a1c9b8e10" in scrubbed  # run ids stay readable


def test_run_failure_sensor_records_the_failure_without_secrets(data_env, monkeypatch):
    monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", "plain-env-secret-value")

    @dg.op
    def call_shopify() -> None:
        raise RuntimeError(
            f"Shopify said 401 to token {SECRET_TOKEN} (configured plain-env-secret-value); api_key=abc123xyz"
        )

    @dg.job
    def flaky_ingest():
        call_shopify()

    instance = dg.DagsterInstance.ephemeral()
    run = flaky_ingest.execute_in_process(instance=instance, raise_on_error=False)
    assert not run.success
    context = dg.build_run_status_sensor_context(
        sensor_name="record_run_failures",
        dagster_instance=instance,
        dagster_run=run.dagster_run,
        dagster_event=run.get_run_failure_event(),
        resources={"duckdb": DuckDBResource(database=str(data_env / "clv.duckdb"))},
    ).for_run_failure()
    record_run_failure_sensor(context)

    with duckdb.connect(str(data_env / "clv.duckdb"), read_only=True) as conn:
        rows = conn.execute("select * from monitoring.run_failures").df()
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["run_id"] == run.run_id and row["job_name"] == "flaky_ingest"
    assert "call_shopify" in row["failed_steps"] and "RuntimeError" in row["error_summary"]
    text = " ".join(str(v) for v in row.to_numpy())
    for secret in (SECRET_TOKEN, "plain-env-secret-value", "abc123xyz"):
        assert secret not in text
    # the write shows in the catalog as a materialization of monitoring/run_failures, without a run
    event = instance.get_latest_materialization_event(dg.AssetKey(["monitoring", "run_failures"]))
    assert event is not None and event.run_id == ""
    assert event.asset_materialization.metadata["run_id"].value == run.run_id


def test_run_failure_sensor_records_a_failures_sentence_not_its_cause(data_env):
    """A step that fails with a `dg.Failure` (here raised from DuckDB's CatalogException: features
    before staging) is recorded with the Failure's sentence, not the inner error nor Dagster's class path."""
    from clv_platform.definitions import build_definitions

    instance = dg.DagsterInstance.ephemeral()
    db = data_env / "clv.duckdb"
    run = build_definitions(database=str(db)).resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[dg.AssetKey(["features", "customer_features"])], instance=instance, raise_on_error=False)
    assert not run.success
    context = dg.build_run_status_sensor_context(
        sensor_name="record_run_failures", dagster_instance=instance, dagster_run=run.dagster_run,
        dagster_event=run.get_run_failure_event(),
        resources={"duckdb": DuckDBResource(database=str(db))},
    ).for_run_failure()
    record_run_failure_sensor(context)
    with duckdb.connect(str(db), read_only=True) as conn:
        summary = conn.execute("select error_summary from monitoring.run_failures").fetchone()[0]
    assert summary.splitlines()[1] == (
        f"step features__customer_features: features/customer_features reads staging.orders, which is not in {db} "
        "yet: materialize staging/orders first (or select features/customer_features with everything upstream of "
        "it, e.g. the refresh_everything job), then run it again.")
    assert "CatalogException" not in summary and "dagster._core" not in summary


def test_locked_database_spools_failures_and_writes_them_later(data_env):
    db = data_env / "clv.duckdb"
    row = {"run_id": "r1", "job_name": "j", "failed_at": "2025-03-01T00:00:00", "failed_steps": "", "error_summary": "x"}
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb, sys; c = duckdb.connect({str(db)!r}); print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert record_failure(row, db, attempts=2, wait_seconds=0.01) is False
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert record_failure({**row, "run_id": "r2"}, db) is True
    with duckdb.connect(str(db), read_only=True) as conn:
        ids = [r for (r,) in conn.execute("select run_id from monitoring.run_failures order by 1").fetchall()]
    assert ids == ["r1", "r2"]
    assert not (data_env / "monitoring" / "run_failures_pending.jsonl").exists()
