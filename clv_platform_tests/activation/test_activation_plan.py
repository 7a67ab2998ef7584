"""Activation planning and packing rules, without any server."""

from __future__ import annotations

import json

import duckdb
import pytest

from clv_platform.activation.fields import FIELDS, canonical
from clv_platform.activation.plan import ActivationInputError, plan_changes
from clv_platform.activation.settings import ActivationResource, load_settings
from clv_platform.activation.sync import failure_limit, now_utc
from clv_platform.resources.klaviyo_write import KlaviyoWriter, pack_jobs
from clv_platform_tests.activation.conftest import customer_rows, write_base


def plan(path, destination="klaviyo", tags=False):
    conn = duckdb.connect(path)
    try:
        planned, absent = plan_changes(conn, destination, run_id="r1", mode="dry_run", now=now_utc(),
                                       shopify_tags=tags)
        return planned.frame(), absent
    finally:
        conn.close()


def test_absent_optional_score_columns_are_tolerated_and_never_sent(tmp_path):
    path = str(tmp_path / "a.duckdb")
    write_base(path, customer_rows(10))
    conn = duckdb.connect(path)
    conn.execute("alter table marts.customer_scores drop column p_purchase_30d")
    conn.execute("alter table marts.customer_scores drop column predicted_next_purchase_date")
    conn.execute("alter table marts.customer_scores add column p_purchase_30d_lower double")  # i19 may add more
    conn.close()
    changes, absent = plan(path)
    assert set(absent) == {"p_purchase_30d", "predicted_next_purchase_date"}
    assert not {"clv_p_purchase_30d", "clv_next_purchase_date"} & set(changes["field"])
    assert changes.groupby("target_id").size().eq(7).all()


def test_missing_scores_fail_clearly(tmp_path):
    path = str(tmp_path / "b.duckdb")
    duckdb.connect(path).close()
    with pytest.raises(ActivationInputError, match="marts.customer_scores does not exist"):
        plan(path)


def test_values_are_canonical_and_tags_only_when_meaningful(tmp_path):
    path = str(tmp_path / "c.duckdb")
    rows = customer_rows(12)
    write_base(path, rows)
    changes, _ = plan(path, "shopify", tags=True)
    by = {(r.target_id, r.field): r.new_value for r in changes.itertuples()}
    first = rows[0]["shopify_customer_id"]
    assert by[(first, "clv_predicted_12m")] == "10.00"
    assert by[(first, "clv_p_alive")] == "0.0500"
    assert by[(first, "clv_scored_at")] == "2026-11-30T04:00:00Z"
    assert by[(first, "tag:clv:at-risk")] == "true"  # i = 0 is at risk
    # a tag that was never set is not planned as a removal
    assert (rows[1]["shopify_customer_id"], "tag:clv:at-risk") not in by
    assert by[(rows[-2]["shopify_customer_id"], "tag:clv:top-5")] == "true"  # i = 10: tier 1-5%
    # Klaviyo-only people have no Shopify target
    assert all(t.startswith("gid://shopify/Customer/") for t in changes["target_id"])


def test_canonical_reads_back_what_destinations_hold():
    assert canonical("decimal2", 12.3) == "12.30"
    assert canonical("decimal2", "12.345") == canonical("decimal2", 12.345)
    assert canonical("decimal4", "0.1") == "0.1000"
    assert canonical("datetime", "2026-11-30T04:00:00+00:00") == "2026-11-30T04:00:00Z"
    assert canonical("date", "2026-12-01") == "2026-12-01"
    assert canonical("decimal2", "not a number") is None and canonical("text", "") is None
    assert all(2 <= len(f.shopify_key) <= 64 for f in FIELDS)


def test_pack_jobs_respects_count_and_size_limits():
    profiles = [{"id": f"P{i:05d}", "properties": {"clv_tier": "x" * (i % 50)}} for i in range(1000)]
    jobs = list(pack_jobs(profiles, max_profiles=300, max_bytes=10**9))
    assert [len(j) for j in jobs] == [300, 300, 300, 100]
    limit = 20_000
    jobs = list(pack_jobs(profiles, max_profiles=10_000, max_bytes=limit))
    assert sum(len(j) for j in jobs) == 1000 and [p for j in jobs for p in j] == profiles
    assert all(len(json.dumps(KlaviyoWriter.job_body(j)).encode()) <= limit for j in jobs)
    assert len(jobs) > 1


def test_failure_limit():
    assert failure_limit(1000, 0.02, 5) == 20
    assert failure_limit(10, 0.02, 5) == 5


def test_packaged_settings_keep_activation_off_and_in_dry_run():
    settings = load_settings()
    resource = ActivationResource(**settings)
    assert not resource.klaviyo_enabled and not resource.shopify_enabled and resource.mode == "dry_run"


def test_unknown_setting_is_an_error(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text("klaviyo_enable = true\n")
    with pytest.raises(ValueError, match="klaviyo_enable"):
        load_settings(path)


def test_jobs_run_activation_after_the_snapshot():
    import dagster as dg

    from clv_platform.definitions import defs

    activation = {dg.AssetKey(["activation", "klaviyo_profiles"]), dg.AssetKey(["activation", "shopify_customers"])}
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    for key in activation:
        assert dg.AssetKey(["marts", "analytics_snapshot"]) in {dep.asset_key for dep in specs[key].deps}
    for name in ("full_refresh", "activate_now"):
        job = defs.resolve_job_def(name)
        assert activation <= set(job.asset_layer.executable_asset_keys), name
    assert set(defs.resolve_job_def("activate_now").asset_layer.executable_asset_keys) == activation
