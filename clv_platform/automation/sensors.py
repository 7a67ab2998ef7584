"""Sensors: new transaction exports in data/inbox."""

import dagster as dg

from clv_platform.automation.jobs import import_file_job, rebuild_from_staging_job
from clv_platform.ingestion.file_assets import inbox_file_partitions
from clv_platform.ingestion.file_import import SUPPORTED_SUFFIXES
from clv_platform.resources.storage import inbox_dir


@dg.sensor(job=import_file_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def inbox_file_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """Launch one import per new (or changed) file in the inbox.

    The run key is name + size + modification time, so each version of a file is
    imported exactly once however often the sensor ticks.
    """
    folder = inbox_dir()
    if not folder.is_dir():
        return dg.SkipReason(f"inbox folder {folder} does not exist")
    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES and not p.name.startswith(".")
    )
    known = set(context.instance.get_dynamic_partitions(inbox_file_partitions.name))
    new_names = [p.name for p in files if p.name not in known]
    requests = []
    for path in files:
        stat = path.stat()
        requests.append(
            dg.RunRequest(
                run_key=f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}",
                partition_key=path.name,
                tags={"clv/inbox_file": path.name},
            )
        )
    if not requests:
        return dg.SkipReason(f"no importable files in {folder}")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[inbox_file_partitions.build_add_request(new_names)] if new_names else [],
    )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[import_file_job],
    request_job=rebuild_from_staging_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def rebuild_after_import_sensor(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    """After a file import succeeds, rebuild staging and everything below it, once per import run."""
    return dg.RunRequest(run_key=context.dagster_run.run_id)
