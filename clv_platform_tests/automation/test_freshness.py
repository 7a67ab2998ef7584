"""Freshness policies: named, attached from the schedule config, and kept in step with the jobs."""

import shutil
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from clv_platform.automation import freshness
from clv_platform.automation.schedules import load_config
from clv_platform.definitions import ASSETS, build_definitions

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def defs():
    return build_definitions()


def specs(definitions) -> dict[dg.AssetKey, dg.AssetSpec]:
    return {spec.key: spec for spec in definitions.resolve_all_asset_specs()}


def test_policies_follow_the_jobs_that_refresh_the_assets(defs):
    nightly = set(defs.resolve_job_def("full_refresh").asset_layer.executable_asset_keys)
    weekly = set(defs.resolve_job_def("retrain_models").asset_layer.executable_asset_keys)
    by_key = specs(defs)
    named = {key: spec.freshness_policy for key, spec in by_key.items() if spec.freshness_policy}
    assert {k for k, p in named.items() if p == freshness.WEEKLY} == {
        dg.AssetKey(["ml", "clv_model"]), dg.AssetKey(["ml", "npd_model"]),
        dg.AssetKey(["ml", "clv_feature_importance"]), dg.AssetKey(["ml", "clv_feature_interactions"])}
    for key, policy in named.items():
        # an expectation only where a scheduled job really refreshes the asset
        assert key in (weekly if policy == freshness.WEEKLY else nightly), key.to_user_string()
    assert by_key[dg.AssetKey(["scores", "customer_clv"])].freshness_policy == freshness.NIGHTLY
    assert by_key[dg.AssetKey(["marts", "analytics_snapshot"])].freshness_policy == freshness.NIGHTLY
    assert all(by_key[k].freshness_policy is None for k in by_key if k.path[0] in ("raw", "activation"))
    assert freshness.NIGHTLY.fail_window.to_timedelta() == timedelta(hours=30)
    assert freshness.WEEKLY.fail_window.to_timedelta() == timedelta(days=8)


def test_a_stopped_schedule_sets_no_expectation():
    config = load_config()
    stopped = {**config, "weekly_retrain": {**config["weekly_retrain"], "running": False},
               "nightly_refresh": {**config["nightly_refresh"], "running": False}}
    mapped = freshness.with_freshness(ASSETS, stopped)
    assert [spec.key for a in mapped for spec in a.specs if spec.freshness_policy] == []


def test_policies_keep_code_versions_and_checks(defs):
    by_key = specs(defs)
    assert by_key[dg.AssetKey(["marts", "revenue_monthly"])].code_version
    assert by_key[dg.AssetKey(["staging", "orders"])].code_version
    checked = {k.asset_key for k in defs.get_repository_def().asset_checks_defs_by_key}
    assert dg.AssetKey(["scores", "customer_clv"]) in checked


def test_the_shipped_instance_config_enables_freshness(tmp_path, monkeypatch):
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        assert instance.get_settings("freshness") == {"enabled": True}
