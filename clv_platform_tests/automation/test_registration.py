"""The code location registers everything the package declares: every asset check, schedule and
sensor (found by scanning the package's modules, so a new one that is not wired fails here), under
the names the UI, the README and the runbooks use."""

import importlib
import pkgutil

import dagster as dg
import pytest

import clv_platform
from clv_platform.automation.jobs import full_refresh_job
from clv_platform.definitions import build_definitions

CHECKS = {
    ("features/customer_features", "features_null_shares"),
    ("features/customer_features", "features_one_row_per_customer"),
    ("features/customer_features", "features_value_ranges"),
    ("marts/customer_scores", "customer_scores_one_row_per_customer"),
    ("ml/clv_model", "clv_model_not_worse_than_registered"),
    ("raw/klaviyo_profiles", "raw_profiles_no_future_updates"),
    ("raw/shopify_orders", "raw_orders_have_ids"),
    ("raw/shopify_orders", "raw_orders_no_future_updates"),
    ("scores/customer_clv", "clv_every_customer_scored_once"),
    ("scores/customer_clv", "clv_scores_finite"),
    ("scores/customer_clv", "clv_horizon_within_history"),
    ("scores/customer_clv", "clv_scores_non_negative"),
    ("scores/customer_clv", "clv_scores_probabilities"),
    ("scores/customer_segments", "segments_every_customer_once"),
    ("staging/customers", "customers_unique_id"),
    ("staging/orders", "customers_hold_plausible_order_shares"),
    ("staging/orders", "orders_have_plausible_amounts"),
    ("staging/orders", "orders_cover_their_span"),
    ("staging/order_history", "order_history_matches_orders"),
    ("staging/order_lines", "order_lines_keys"),
    ("staging/orders", "orders_keys_not_null"),
    ("staging/orders", "orders_net_revenue_non_negative"),
    ("staging/orders", "orders_no_future_timestamps"),
    ("staging/orders", "orders_unique_order_id"),
    ("staging/rejected_rows", "staging_rows_reconcile"),
}
SCHEDULES = {"nightly_refresh": "full_refresh", "weekly_retrain": "retrain_models", "daily_scoring": "daily_scoring"}
SENSORS = {"drift_retrain_sensor", "inbox_file_sensor", "rebuild_after_import_sensor", "record_run_failures"}
JOBS = {"activate_now", "daily_scoring", "full_rebuild", "full_refresh", "import_inbox_file", "rebuild_and_train",
        "rebuild_from_staging", "refresh_everything", "retrain_models"}


@pytest.fixture(scope="module")
def defs():
    definitions = build_definitions()
    dg.Definitions.validate_loadable(definitions)
    return definitions


def declared(kind) -> dict[str, object]:
    """Every object of `kind` bound to a module-level name (or inside a module-level list) in the package."""
    found = {}
    for info in pkgutil.walk_packages(clv_platform.__path__, "clv_platform."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            for item in value if type(value) in (list, tuple) else [value]:
                if isinstance(item, kind):
                    found[f"{info.name}:{getattr(item, 'name', item)}"] = item
    return found


def test_every_check_is_registered_under_its_real_name(defs):
    registered = {(k.asset_key.to_user_string(), k.name) for k in defs.get_repository_def().asset_checks_defs_by_key}
    assert registered == CHECKS
    declared_keys = {(k.asset_key.to_user_string(), k.name)
                     for check in declared(dg.AssetChecksDefinition).values() for k in check.check_keys}
    assert declared_keys <= registered, declared_keys - registered


def test_every_schedule_is_registered_and_targets_its_job(defs):
    registered = {s.name: s.job_name for s in defs.schedules}
    assert registered == SCHEDULES
    assert {s.name for s in declared(dg.ScheduleDefinition).values()} <= set(registered)
    for job in SCHEDULES.values():
        assert defs.resolve_job_def(job).name == job


def test_every_sensor_is_registered(defs):
    registered = {s.name for s in defs.sensors}
    assert registered == SENSORS
    assert {s.name for s in declared(dg.SensorDefinition).values()} <= registered


def test_every_job_is_registered(defs):
    assert {j.name for j in defs.jobs} == JOBS
    # define_asset_job's class is not public API: take it from a job we know
    assert {j.name for j in declared(type(full_refresh_job)).values()} <= JOBS


def test_the_weekly_schedule_and_the_drift_sensor_launch_one_retrain_job(defs):
    schedule = next(s for s in defs.schedules if s.name == "weekly_retrain")
    sensor = next(s for s in defs.sensors if s.name == "drift_retrain_sensor")
    assert schedule.job_name == sensor.job_name == "retrain_models"
    # the one job selects features, models, scores and marts: no monitoring, so no retrain loop
    layers = {key.path[0] for key in defs.resolve_job_def("retrain_models").asset_layer.executable_asset_keys}
    assert layers == {"features", "ml", "scores", "marts"}
