"""The rebuild after an import: one per import, unless a waiting rebuild already covers it."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from clv_platform.automation.sensors import rebuild_after_import_sensor
from clv_platform.definitions import build_definitions
from clv_platform_tests.inbox import import_file

CSV = """\
    customer_id,order_id,order_date,amount
    c1,o1,2024-03-01,10.00
    """


def test_three_files_dropped_together_queue_one_rebuild_that_covers_them(data_env, monkeypatch):
    """Each import's success asked for a full rebuild, so three files dropped together built the
    same store three times in a row. A rebuild queued and not started yet reads the store after the
    import, so a later import's success is skipped with the run that covers it; a waiting rebuild
    that does not train does not cover one that must (the store's first import trains)."""
    monkeypatch.setenv("CLV_SOURCE", "files")
    monkeypatch.setenv("CLV_FILE_CURRENCY", "GBP")
    db = data_env / "clv.duckdb"
    defs = build_definitions(database=str(db))
    instance = dg.DagsterInstance.ephemeral()
    imported, _ = import_file(data_env, "a.csv", CSV)
    assert imported.success

    def evaluate():
        context = dg.build_run_status_sensor_context(
            sensor_name="rebuild_after_import_sensor", dagster_instance=instance, dagster_run=imported.dagster_run,
            dagster_event=imported.get_run_success_event(), resources={"duckdb": DuckDBResource(database=str(db))})
        return rebuild_after_import_sensor(context)

    first = evaluate()  # nothing waiting, no model yet: a rebuild that trains
    assert isinstance(first, dg.RunRequest) and first.job_name == "rebuild_and_train"
    assert first.run_key == imported.run_id
    plain = instance.create_run_for_job(defs.resolve_job_def("rebuild_from_staging"),
                                        status=dg.DagsterRunStatus.NOT_STARTED)
    second = evaluate()  # a waiting rebuild without training does not cover the training one
    assert isinstance(second, dg.RunRequest) and second.job_name == "rebuild_and_train"
    queued = instance.create_run_for_job(defs.resolve_job_def("rebuild_and_train"), status=dg.DagsterRunStatus.NOT_STARTED)
    third = evaluate()
    assert isinstance(third, dg.SkipReason)
    assert third.skip_message == (f"import run {imported.run_id} is covered by rebuild_and_train run {queued.run_id}, "
                                  "queued and not started yet: it reads the store after this import")
    instance.report_run_canceled(queued)  # no longer waiting: the import asks for its own rebuild again
    assert isinstance(evaluate(), dg.RunRequest)
