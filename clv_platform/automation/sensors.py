"""Sensors: new transaction exports in data/inbox, and the rebuild after each import.

Both only act for a files-only store (`CLV_SOURCE=files`): a demo or live database never takes
rows from the inbox, so an export cannot be mixed into another store.
"""

from pathlib import Path

import dagster as dg
import duckdb as duckdb_lib
from dagster_duckdb import DuckDBResource

from clv_platform.automation.jobs import import_file_job, rebuild_and_train_job, rebuild_from_staging_job
from clv_platform.ingestion.file_assets import inbox_file_partitions
from clv_platform.ingestion.file_import import content_hash, inbox_listing
from clv_platform.resources.storage import settings_of

@dg.sensor(job=import_file_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def inbox_file_sensor(context: dg.SensorEvaluationContext, duckdb: DuckDBResource) -> dg.SensorResult | dg.SkipReason:
    """Launch one import per new (or changed) file in the inbox.

    The run key is name + SHA-256 of the content, so each version of a file is imported exactly
    once however often the sensor ticks.
    """
    settings = settings_of(duckdb)
    if settings.source != "files":
        return dg.SkipReason(f"CLV_SOURCE={settings.source}: the inbox is read only by a files-only store")
    folder = settings.inbox_dir
    if not folder.is_dir():
        return dg.SkipReason(f"inbox folder {folder} does not exist")
    files, others = inbox_listing(folder)
    known = set(context.instance.get_dynamic_partitions(inbox_file_partitions.name))
    new_names = [p.name for p in files if p.name not in known]
    requests = []
    for path in files:
        digest = content_hash(path)
        requests.append(
            dg.RunRequest(
                run_key=f"{path.name}:{digest}",
                partition_key=path.name,
                tags={"clv/inbox_file": path.name, "clv/content_sha256": digest},
            )
        )
    if not requests:
        return dg.SkipReason(f"no importable files in {folder}" + (
            f" (not a supported type, not imported: {', '.join(p.name for p in others)})" if others else ""))
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[inbox_file_partitions.build_add_request(new_names)] if new_names else [],
    )


WAITING_STATUSES = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING]
"""A run in these states has not started a step: it has not read the store yet."""


def needs_training(database: Path, models_dir: Path) -> bool:
    """True when the store has no registered CLV model or no next-purchase model yet, or when a
    served one is only the BTYD stand-in for a history too short to train
    (``registry.short_history_stand_in``): the import that lengthens the history tries to train,
    instead of the stand-in being served until the weekly retrain.

    Read-only; a database that cannot be opened (locked by a run) counts as needing training,
    because a needless retrain costs minutes while a rebuild without models fails. A sidecar that
    cannot be read counts as a stand-in for the same reason.
    """
    from clv_platform.models import registry
    from clv_platform.models.npd_assets import MODEL_PREFIX

    if not any(models_dir.glob(f"{MODEL_PREFIX}*.json")):
        return True
    if not database.exists():
        return True
    try:
        with duckdb_lib.connect(str(database), read_only=True) as conn:
            exists = conn.execute(
                "select count(*) from information_schema.tables where table_schema = 'ml' and table_name = 'model_runs'"
            ).fetchone()[0]
            if not exists:
                return True
            served = registry.registered_paths(conn)
    except (duckdb_lib.IOException, duckdb_lib.ConnectionException):
        return True
    if registry.DEFAULT_MODEL_NAME not in served or registry.NPD_MODEL_NAME not in served:
        return True  # a model file without its registry row is never served (npd_assets.load_latest_npd_model)
    for path in served.values():
        try:
            if registry.short_history_stand_in(registry.read_sidecar(path)):
                return True
        except (OSError, TypeError, ValueError):
            return True
    return False


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[import_file_job],
    request_jobs=[rebuild_from_staging_job, rebuild_and_train_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def rebuild_after_import_sensor(context: dg.RunStatusSensorContext,
                                duckdb: DuckDBResource) -> dg.RunRequest | dg.SkipReason:
    """After a file import succeeds, rebuild staging and everything below it, once per import run,
    unless a rebuild that has not started yet is waiting in the queue: it reads raw when it starts,
    after this import, so it covers it (three files dropped together gave three full rebuilds one
    after another, each building the same store).

    When the store has no trained models yet (its first import), the rebuild trains and registers
    them too instead of failing on "no registered model".
    """
    settings = settings_of(duckdb)
    train = needs_training(Path(duckdb.database), settings.models_dir)
    job = rebuild_and_train_job if train else rebuild_from_staging_job
    # a waiting rebuild that trains covers a rebuild; one that does not cover a rebuild that must train
    covering = [rebuild_and_train_job.name] if train else [rebuild_and_train_job.name, rebuild_from_staging_job.name]
    waiting = context.instance.get_run_records(dg.RunsFilter(job_name=None, statuses=WAITING_STATUSES))
    waiting = [r.dagster_run for r in waiting if r.dagster_run.job_name in covering]
    if waiting:
        return dg.SkipReason(f"import run {context.dagster_run.run_id} is covered by {waiting[0].job_name} run "
                             f"{waiting[0].run_id}, queued and not started yet: it reads the store after this import")
    return dg.RunRequest(run_key=context.dagster_run.run_id, job_name=job.name,
                         tags={"clv/trigger": "inbox import", "clv/trains_models": str(train).lower()})
