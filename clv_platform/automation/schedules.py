"""Schedules: nightly refresh, weekly retrain, daily scoring in between.

Times and the timezone live in `config.toml` next to this module, so operations can move a
run without touching code. Every run executes in one process and the instance runs one at a
time (DuckDB allows a single writer), so runs whose ticks overlap queue rather than collide.

* `nightly_refresh` (02:00): the `full_refresh` job for the previous day's Shopify partition,
  i.e. the newest day whose `updatedAt` window has fully ended in UTC, plus Klaviyo profiles
  and everything downstream.
* `weekly_retrain` (Sunday 04:00): the `retrain_models` job (features → model training (`ml`) →
  scores → marts), the same job the drift sensor launches.
* `daily_scoring` (04:00 the other days): scores with the registered models → marts.

To refresh everything by hand, launch the `full_refresh` job over all partitions from the UI
(or "Materialize all" on the asset graph); `raw/shopify_orders` loads a partition range in one
run.
"""

import tomllib
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg

from clv_platform.automation.jobs import full_refresh_job, retrain_models_job
from clv_platform.ingestion.assets import shopify_daily_partitions

DEFAULT_TIMEZONE = "UTC"

daily_scoring_job = dg.define_asset_job(
    name="daily_scoring",
    # ml/cluster_summary is written by scores/customer_segments' multi-asset: it comes along
    selection=dg.AssetSelection.groups("scores", "marts").required_multi_asset_neighbors(),
    description="Score customers with the registered models, rebuild the marts, exports and the snapshot.",
)

JOBS = [daily_scoring_job]  # `retrain_models` (the weekly schedule's job) is in jobs.py: the drift sensor launches it too


def load_config(path: str | Path | None = None) -> dict:
    """The automation config (`config.toml` shipped with this package unless a path is given).

    The timezone is checked here, so a typo fails at load time rather than at the first tick.
    """
    if path is None:
        text = resources.files("clv_platform.automation").joinpath("config.toml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    config = tomllib.loads(text)
    config.setdefault("timezone", DEFAULT_TIMEZONE)
    ZoneInfo(config["timezone"])
    for name in ("nightly_refresh", "weekly_retrain", "daily_scoring"):
        if "cron" not in config.get(name, {}):
            raise ValueError(f"automation config: [{name}] needs a `cron` string")
    return config


def previous_day_partition(scheduled_time: datetime | None) -> str | None:
    """The newest Shopify daily partition that has fully ended at `scheduled_time`.

    Partitions are UTC days of `updatedAt`; at 02:00 in a timezone east of UTC the previous
    local day may not be over in UTC yet, so the latest *complete* partition is the one before.
    """
    current = (scheduled_time or datetime.now(timezone.utc)).astimezone(timezone.utc)
    keys = shopify_daily_partitions.get_partition_keys(current_time=current)
    return keys[-1] if keys else None


def _status(section: dict) -> dg.DefaultScheduleStatus:
    return dg.DefaultScheduleStatus.RUNNING if section.get("running", True) else dg.DefaultScheduleStatus.STOPPED


def build_schedules(config: dict | None = None) -> list[dg.ScheduleDefinition]:
    config = config or load_config()
    tz = config["timezone"]
    nightly = config["nightly_refresh"]

    @dg.schedule(
        name="nightly_refresh",
        cron_schedule=nightly["cron"],
        job=full_refresh_job,
        execution_timezone=tz,
        default_status=_status(nightly),
        description="Ingest the previous day's Shopify partition and Klaviyo profiles, rebuild everything downstream.",
    )
    def nightly_refresh(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        key = previous_day_partition(context.scheduled_execution_time)
        if key is None:
            return dg.SkipReason("no complete Shopify partition yet")
        return dg.RunRequest(
            run_key=f"nightly_refresh:{key}",
            partition_key=key,
            tags={"clv/trigger": "nightly_refresh"},
        )

    def cron_schedule(name: str, job) -> dg.ScheduleDefinition:
        """A cron schedule set by its own table of the schedule config, tagged with its name as the trigger."""
        settings = config[name]
        return dg.ScheduleDefinition(
            name=name,
            cron_schedule=settings["cron"],
            job=job,
            execution_timezone=tz,
            default_status=_status(settings),
            tags={"clv/trigger": name},
        )

    return [
        nightly_refresh,
        cron_schedule("weekly_retrain", retrain_models_job),
        cron_schedule("daily_scoring", daily_scoring_job),
    ]


SCHEDULES = build_schedules()
