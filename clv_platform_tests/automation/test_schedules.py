"""Schedules: times come from config.toml, the nightly tick targets the last complete day."""

from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
import pytest

from clv_platform.automation import schedules
from clv_platform.definitions import build_definitions


def by_name(schedule_list) -> dict[str, dg.ScheduleDefinition]:
    return {s.name: s for s in schedule_list}


def write_config(tmp_path, tz: str | None, nightly: str = "0 2 * * *") -> str:
    lines = [f'timezone = "{tz}"'] if tz else []
    lines += [
        "[nightly_refresh]", f'cron = "{nightly}"',
        "[weekly_retrain]", 'cron = "30 5 * * 6"', "running = false",
        "[daily_scoring]", 'cron = "30 5 * * 0-5"',
    ]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_shipped_schedules_follow_the_config():
    config = schedules.load_config()
    assert config["timezone"] == "UTC"
    found = by_name(schedules.SCHEDULES)
    assert set(found) == {"nightly_refresh", "weekly_retrain", "daily_scoring"}
    for name, schedule in found.items():
        assert schedule.cron_schedule == config[name]["cron"]
        assert schedule.execution_timezone == config["timezone"]
    assert found["nightly_refresh"].cron_schedule == "0 2 * * *"
    assert found["nightly_refresh"].job_name == "full_refresh"
    assert found["weekly_retrain"].job_name == "retrain_models"
    assert found["daily_scoring"].job_name == "daily_scoring"
    assert {j.name for j in schedules.JOBS} == {"daily_scoring"}


def test_config_file_sets_timezone_cron_and_status(tmp_path):
    config = schedules.load_config(write_config(tmp_path, "Europe/Berlin", nightly="15 1 * * *"))
    found = by_name(schedules.build_schedules(config))
    assert found["nightly_refresh"].cron_schedule == "15 1 * * *"
    assert {s.execution_timezone for s in found.values()} == {"Europe/Berlin"}
    assert found["weekly_retrain"].cron_schedule == "30 5 * * 6"
    assert found["weekly_retrain"].default_status == dg.DefaultScheduleStatus.STOPPED
    assert found["daily_scoring"].default_status == dg.DefaultScheduleStatus.RUNNING


def test_timezone_defaults_to_utc_and_typos_fail_at_load(tmp_path):
    assert schedules.load_config(write_config(tmp_path, None))["timezone"] == "UTC"
    with pytest.raises(ZoneInfoNotFoundError, match="Mars/Olympus_Mons"):
        schedules.load_config(write_config(tmp_path, "Mars/Olympus_Mons"))


@pytest.mark.parametrize(
    ("tz", "local_tick", "expected"),
    [
        ("UTC", datetime(2026, 1, 10, 2, 0), "2026-01-09"),
        ("UTC", datetime(2025, 3, 1, 2, 0), "2025-02-28"),
        # 02:00 in New York is 07:00 UTC: the previous UTC day is complete
        ("America/New_York", datetime(2026, 1, 10, 2, 0), "2026-01-09"),
        # 02:00 in Tokyo is 17:00 UTC the day before: that UTC day is not over yet
        ("Asia/Tokyo", datetime(2026, 1, 10, 2, 0), "2026-01-08"),
    ],
)
def test_nightly_tick_targets_the_previous_complete_day(tmp_path, tz, local_tick, expected):
    config = schedules.load_config(write_config(tmp_path, tz))
    nightly = by_name(schedules.build_schedules(config))["nightly_refresh"]
    context = dg.build_schedule_context(scheduled_execution_time=local_tick.replace(tzinfo=ZoneInfo(tz)))
    request = nightly(context)
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == expected
    assert request.run_key == f"nightly_refresh:{expected}"
    assert request.tags["clv/trigger"] == "nightly_refresh"
    assert nightly.job_name == "full_refresh"


def test_nightly_tick_before_the_first_partition_skips():
    nightly = by_name(schedules.SCHEDULES)["nightly_refresh"]
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2020, 1, 1, 2, tzinfo=timezone.utc))
    assert isinstance(nightly(context), dg.SkipReason)


def test_jobs_and_schedules_load_with_the_code_location(data_env):
    """The code location as shipped: every job resolves and selects the layers it promises."""
    defs = build_definitions(database=str(data_env / "clv.duckdb"))
    dg.Definitions.validate_loadable(defs)
    assert {s.name for s in defs.schedules} == {s.name for s in schedules.SCHEDULES}
    retrain = {tuple(k.path) for k in defs.resolve_job_def("retrain_models").asset_layer.executable_asset_keys}
    scoring = {tuple(k.path) for k in defs.resolve_job_def("daily_scoring").asset_layer.executable_asset_keys}
    refresh = {tuple(k.path) for k in defs.resolve_job_def("full_refresh").asset_layer.executable_asset_keys}
    assert ("features", "customer_features") in retrain and ("marts", "analytics_snapshot") in retrain
    # scoring never retrains; the one ml table it writes is the segments' cluster summary
    assert {layer for layer, _ in scoring} == {"scores", "marts", "ml"}
    assert {key for key in scoring if key[0] == "ml"} == {("ml", "cluster_summary")}
    assert ("ml", "clv_model") not in refresh and ("ml", "clv_model") in retrain  # nightly scores, weekly trains
    assert ("marts", "revenue_monthly") in refresh and ("marts", "analytics_snapshot") in refresh
    partitions = defs.resolve_job_def("full_refresh").partitions_def
    key = schedules.previous_day_partition(datetime(2025, 6, 2, 2, tzinfo=timezone.utc))
    assert key == "2025-06-01" and partitions.has_partition_key(key)
