"""Monitoring automation: retrain on drift, and keep a record of failed runs in DuckDB.

* ``drift_retrain_sensor`` reads the newest ``monitoring.drift_runs`` row. When its drift flag is
  set it requests one ``retrain_models`` run (features → ml → scores → marts; the weekly schedule's
  job too, see ``jobs.py``) with ``run_key`` = the drift run id, and moves its cursor to that id,
  so a drift run triggers exactly one retrain however often the sensor ticks. The retrain job does not select the monitoring group, so a retrain
  never produces a new drift run by itself: there is no loop.
* ``record_run_failure_sensor`` writes every failed run to ``monitoring.run_failures`` with an
  error summary scrubbed of secrets (tokens, keys, the values of the credential env vars).

DuckDB allows one writing process per file. The drift sensor only reads (``read_only=True``) and
answers a ``SkipReason`` while a run holds the lock; the failure sensor retries briefly and, if
the file stays locked, spools the row to ``<data>/monitoring/run_failures_pending.jsonl`` to be
written with the next failure, because a run-status sensor handles each event only once.
"""

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from clv_platform.automation.jobs import retrain_models_job
from clv_platform.core.assets import side_table_spec
from clv_platform.core.sql import transaction
from clv_platform.resources.redaction import REDACTED, SECRET_ENV_VARS, env_secrets, redact  # noqa: F401 (re-exported)
from clv_platform.resources.storage import settings_of, table_exists
from clv_platform.settings import secret_values

RUN_FAILURES_TABLE = "monitoring.run_failures"
RUN_FAILURES = dg.AssetKey(["monitoring", "run_failures"])  # a sensor writes it: runless materializations
RUN_FAILURES_SPEC = side_table_spec(RUN_FAILURES, "One row per failed run (id, job, time, scrubbed error summary), "
                                    "written by the record_run_failures sensor (automation/monitoring_sensors.py).")
MAX_SUMMARY_CHARS = 2000
# What DuckDB raises while another process holds the write lock. (Inside the sensors the name
# `duckdb` is the resource parameter Dagster matches by name, not the module.)
_LOCKED = (duckdb.IOException, duckdb.ConnectionException)


# ----------------------------------------------------------------------------- drift → retrain


def newest_drift_run(path: Path) -> dict | None:
    """The newest monitoring.drift_runs row (id, time, flag, share), read without taking the write lock."""
    with duckdb.connect(str(path), read_only=True) as conn:
        if not table_exists(conn, "monitoring.drift_runs"):
            return None
        row = conn.execute(
            "select drift_run_id, run_at, drift_detected, share_drifted, model_version "
            "from monitoring.drift_runs order by run_at desc, drift_run_id desc limit 1"
        ).fetchone()
    if row is None:
        return None
    return dict(zip(("drift_run_id", "run_at", "drift_detected", "share_drifted", "model_version"), row))


@dg.sensor(
    job=retrain_models_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Retrain (features → ml → scores) once for each drift run whose drift flag is set.",
)
def drift_retrain_sensor(context: dg.SensorEvaluationContext, duckdb: DuckDBResource) -> dg.RunRequest | dg.SkipReason:
    # The file of the code location's `duckdb` resource, opened read-only (never the write lock).
    path = Path(duckdb.database)
    if not path.exists():
        return dg.SkipReason(f"no DuckDB file at {path} yet")
    try:
        newest = newest_drift_run(path)
    except _LOCKED as error:
        # Another process (a run) holds the write lock: try again on the next tick.
        return dg.SkipReason(f"DuckDB is busy, retrying next tick: {str(error).splitlines()[0]}")
    if newest is None:
        return dg.SkipReason("no drift run recorded yet")
    run_id = str(newest["drift_run_id"])
    if run_id == context.cursor:
        return dg.SkipReason(f"newest drift run {run_id} already handled")
    context.update_cursor(run_id)
    if newest["share_drifted"] is None:
        return dg.SkipReason(f"drift run {run_id}: no comparison yet (features are the model's training reference)")
    if not newest["drift_detected"]:
        return dg.SkipReason(f"drift run {run_id}: {newest['share_drifted']:.0%} of columns drifted, below threshold")
    return dg.RunRequest(
        run_key=run_id,
        tags={
            "clv/trigger": "drift",
            "clv/drift_run_id": run_id,
            "clv/share_drifted": f"{newest['share_drifted']:.3f}",
        },
    )


# ----------------------------------------------------------------------------- run failures

def scrub_secrets(text: str, env: dict[str, str] | None = None) -> str:
    """Remove anything that looks like a credential, and the values of the credential env vars.

    The values come from `settings.secret_values()` (or from `env`, a test's mapping). Delegates to
    the platform's one redaction function (`resources/redaction.py`).
    """
    return redact(text, secret_values() if env is None else env_secrets(env))


def _root_cause(error):
    """Dagster wraps user errors (DagsterExecutionStepExecutionError); the cause says what went wrong."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return error


def error_summary(context: dg.RunFailureSensorContext) -> str:
    """The run's failure message plus each failed step's reason, scrubbed and capped: the sentence of a
    `dg.Failure` (also one raised from a DuckDB error), else the root error's class and message."""
    parts = [context.failure_event.message or "run failed"]
    for event in context.get_step_failure_events():
        data = event.event_specific_data
        user = getattr(data, "user_failure_data", None)
        error = _root_cause(getattr(data, "error", None))
        if user is not None and user.description:
            detail = user.description
        elif error is None:
            detail = event.message or ""
        else:
            message = error.message.strip()
            detail = message if message.startswith(str(error.cls_name)) else f"{error.cls_name}: {message}"
        parts.append(f"step {event.step_key}: {detail}")
    summary = scrub_secrets("\n".join(parts))
    return summary if len(summary) <= MAX_SUMMARY_CHARS else summary[: MAX_SUMMARY_CHARS - 1] + "…"


def failure_row(context: dg.RunFailureSensorContext) -> dict:
    run = context.dagster_run
    return {
        "run_id": run.run_id,
        "job_name": run.job_name,
        "failed_at": datetime.now(timezone.utc).replace(tzinfo=None).isoformat(),
        "failed_steps": ", ".join(sorted({e.step_key for e in context.get_step_failure_events() if e.step_key})),
        "error_summary": error_summary(context),
    }


def _pending_path(path: Path) -> Path:
    """The spool in the database's folder (`<data>/monitoring/`)."""
    return Path(path).resolve().parent / "monitoring" / "run_failures_pending.jsonl"


def write_failures(path: Path, rows: list[dict]) -> None:
    """Insert (or replace, by run id) failure rows into monitoring.run_failures."""
    with duckdb.connect(str(path)) as conn:
        conn.execute("create schema if not exists monitoring")
        conn.execute(
            f"create table if not exists {RUN_FAILURES_TABLE} ("
            "run_id varchar, job_name varchar, failed_at timestamp, failed_steps varchar, error_summary varchar)"
        )
        with transaction(conn):
            for row in rows:
                conn.execute(f"delete from {RUN_FAILURES_TABLE} where run_id = ?", [row["run_id"]])
                conn.execute(
                    f"insert into {RUN_FAILURES_TABLE} values (?, ?, ?, ?, ?)",
                    [row["run_id"], row["job_name"], row["failed_at"], row["failed_steps"], row["error_summary"]],
                )


def record_failure(row: dict, path: Path | None = None, attempts: int = 5, wait_seconds: float = 0.5) -> bool:
    """Write ``row`` plus any spooled rows; spool it instead if DuckDB stays locked. True if written."""
    path = path or settings_of().duckdb_path
    spool = _pending_path(path)
    pending = [json.loads(line) for line in spool.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if spool.exists() else []
    for attempt in range(attempts):
        try:
            write_failures(path, [*pending, row])
        except (duckdb.IOException, duckdb.ConnectionException):
            time.sleep(wait_seconds * 2**attempt)
            continue
        spool.unlink(missing_ok=True)
        return True
    spool.parent.mkdir(parents=True, exist_ok=True)
    with spool.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
    return False


@dg.run_failure_sensor(
    name="record_run_failures",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Record every failed run (id, job, time, scrubbed error summary) in monitoring.run_failures.",
)
def record_run_failure_sensor(context: dg.RunFailureSensorContext, duckdb: DuckDBResource) -> None:
    row = failure_row(context)
    path = Path(duckdb.database)
    if record_failure(row, path):
        context.instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=RUN_FAILURES, metadata={"run_id": row["run_id"], "job_name": row["job_name"]}))
        context.log.info(f"recorded failed run {row['run_id']} of {row['job_name']}")
    else:
        context.log.warning(f"DuckDB locked: failed run {row['run_id']} spooled to {_pending_path(path)}")


MONITORING_SENSORS = [drift_retrain_sensor, record_run_failure_sensor]
MONITORING_TABLE_SPECS = [RUN_FAILURES_SPEC]
