"""Background warm-ups (`core.warmup`): started once per process, only for runs that select their
assets, never failing a run; and the drift step's own warm-up renders a real Evidently report."""

import threading
import uuid

import dagster as dg

from clv_platform.core import warmup
from clv_platform.resources.storage import StorageResource


def _name() -> str:
    return f"test_{uuid.uuid4().hex[:8]}"


def test_a_warm_up_starts_once_and_only_for_runs_that_select_its_assets():
    name, calls = _name(), []
    key = f"monitoring__{name}"
    warmup.register(name, [key], lambda: calls.append(threading.current_thread().name))

    assert name not in warmup.start_for_run(None)  # steps unknown: nothing
    assert name not in warmup.start_for_run({"marts__other"})
    assert warmup.start_for_run({key, "marts__other"}) == [name]
    assert warmup.wait(name, timeout=10)
    assert calls == [f"warm-{name}"]  # in its own thread, not the caller's
    assert warmup.start_for_run({key}) == []  # once per process
    assert warmup.wait(name, timeout=1) and calls == [f"warm-{name}"]


def test_a_failing_warm_up_is_logged_and_does_not_raise(caplog):
    name = _name()
    key = f"monitoring__{name}"

    def broken():
        raise ImportError("no such library")

    warmup.register(name, [key], broken)
    assert warmup.start_for_run([key]) == [name]
    assert warmup.wait(name, timeout=10)
    assert any(name in r.getMessage() and r.exc_info for r in caplog.records)


def test_the_storage_resource_starts_the_warm_ups_of_the_run_selection(tmp_path):
    selected, other = _name(), _name()
    ran: list[str] = []
    warmup.register(selected, [f"ml__{selected}"], lambda: ran.append(selected))
    warmup.register(other, [f"ml__{other}"], lambda: ran.append(other))

    @dg.asset(key=["ml", selected])
    def needs_it(duckdb: StorageResource) -> None:
        return None

    @dg.asset(key=["ml", other])
    def not_selected(duckdb: StorageResource) -> None:
        return None

    result = dg.materialize([needs_it, not_selected], selection=[dg.AssetKey(["ml", selected])],
                            resources={"duckdb": StorageResource(database=str(tmp_path / "w.duckdb"))})
    assert result.success
    assert warmup.wait(selected, timeout=10)
    assert ran == [selected]


def test_a_job_run_warms_for_the_steps_of_its_plan(tmp_path):
    """A scheduled run of a whole job may carry no step selection: the plan's steps count."""
    name = _name()
    ran: list[str] = []
    warmup.register(name, [f"ml__{name}"], lambda: ran.append(name))

    @dg.asset(key=["ml", name])
    def late_step(duckdb: StorageResource) -> None:
        return None

    job = dg.define_asset_job("warm_job", selection="*")
    defs = dg.Definitions(assets=[late_step], jobs=[job],
                          resources={"duckdb": StorageResource(database=str(tmp_path / "w.duckdb"))})
    with dg.instance_for_test() as instance:
        assert defs.resolve_job_def("warm_job").execute_in_process(instance=instance).success
    assert warmup.wait(name, timeout=10) and ran == [name]


def test_the_drift_step_registers_its_warm_up_under_its_step_key():
    from clv_platform.monitoring.assets import drift_runs

    keys, warm = warmup._warmups["evidently"]
    assert keys == {drift_runs.node_def.name} == {"drift_runs"}
    assert warm.__name__ == "warm_up"


def test_the_drift_warm_up_renders_a_report_off_the_main_thread():
    from clv_platform.monitoring.drift import warm_up

    errors: list[BaseException] = []

    def run():
        try:
            warm_up()
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(120)
    assert not thread.is_alive() and errors == []
    import sys

    # what the drift step's widgets validate is loaded: the scatter traces of each ValueDrift
    assert "plotly.graph_objs._scatter" in sys.modules and "evidently.metrics" in sys.modules


def test_a_run_without_a_step_selection_warms_for_every_step_of_its_plan(tmp_path):
    """A run the daemon launches for a whole job may carry no step keys: the run's stored
    execution plan gives them."""
    from types import SimpleNamespace

    from clv_platform.resources.storage import _run_step_keys

    first, second = _name(), _name()

    @dg.asset(key=["ml", first])
    def upstream(duckdb: StorageResource) -> None:
        return None

    @dg.asset(key=["ml", second], deps=[upstream])
    def downstream(duckdb: StorageResource) -> None:
        return None

    job = dg.define_asset_job("plan_job", selection="*")
    defs = dg.Definitions(assets=[upstream, downstream], jobs=[job],
                          resources={"duckdb": StorageResource(database=str(tmp_path / "w.duckdb"))})
    with dg.instance_for_test() as instance:
        run = instance.get_run_by_id(defs.resolve_job_def("plan_job").execute_in_process(instance=instance).run_id)
        whole_job = run._replace(step_keys_to_execute=None)
        assert _run_step_keys(SimpleNamespace(run=whole_job, instance=instance)) == {f"ml__{first}", f"ml__{second}"}
        assert _run_step_keys(SimpleNamespace(run=whole_job, instance=None)) is None
    assert _run_step_keys(SimpleNamespace(run=None, instance=None)) is None
