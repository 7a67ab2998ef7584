"""Activation against the loopback fakes: dry run, exactly-once sends, faults, kills and skips."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import dagster as dg
import duckdb
import pytest
from dagster_duckdb import DuckDBResource

from clv_platform.activation import sync as sync_module
from clv_platform.activation.assets import klaviyo_profiles, shopify_customers
from clv_platform.activation.plan import plan_changes
from clv_platform.activation.settings import ActivationResource
from clv_platform.activation.sync import Ledger, new_run_id, now_utc, sync_klaviyo, sync_shopify
from clv_platform.resources.http import AuthenticationError
from clv_platform.resources.klaviyo import KlaviyoResource
from clv_platform.resources.klaviyo_write import KlaviyoWriter
from clv_platform.resources.shopify import ShopifyResource
from clv_platform.resources.shopify_write import ShopifyWriter
from clv_platform.resources import http
from clv_platform_tests.activation.conftest import (
    FAST,
    FakeClock,
    customer_rows,
    make_fake,
    resources_for,
    write_base,
)
from clv_platform_tests.fake_api import KLAVIYO, KLAVIYO_IMPORT, KLAVIYO_PROFILE, SHOPIFY

ROWS = customer_rows()
KLAVIYO_TARGETS = [r for r in ROWS if r["klaviyo_profile_id"]]
SHOPIFY_TARGETS = [r for r in ROWS if r["shopify_customer_id"]]
# Small jobs and calls so one sync is many batches (and a kill lands in the middle).
SMALL = ActivationResource(klaviyo_max_profiles_per_job=20, klaviyo_poll_seconds=1.0, shopify_read_chunk=10).options()


class SimulatedKill(BaseException):
    """Stands for the process dying: nothing in the sync may catch it."""


def sync_once(path, fake, destination, *, tags=False, options=SMALL, klaviyo_key=None, shopify_api_version=None):
    klaviyo, shopify = resources_for(fake)
    if klaviyo_key is not None:
        klaviyo = KlaviyoResource(api_key=klaviyo_key, base_url=fake.base_url, **FAST)
    if shopify_api_version is not None:
        shopify = ShopifyResource(shop_domain=fake.base_url, access_token=fake.shopify_token,
                                  api_version=shopify_api_version, **FAST)
    run_id = new_run_id()
    conn = duckdb.connect(path)
    writer = KlaviyoWriter(klaviyo) if destination == "klaviyo" else ShopifyWriter(shopify)
    try:
        planned, _ = plan_changes(conn, destination, run_id=run_id, mode="live", now=now_utc(), shopify_tags=tags)
        run = sync_klaviyo if destination == "klaviyo" else sync_shopify
        return run(conn, writer, planned, run_id, options)
    finally:
        writer.close()
        conn.close()


def query(path, sql, params=None):
    conn = duckdb.connect(path)
    try:
        return conn.execute(sql, params or []).fetchall()
    finally:
        conn.close()


def writes(fake, route=None):
    return [r for r in fake.requests if r.route == KLAVIYO_IMPORT or (r.route == SHOPIFY and r.op in {
        "metafields_set", "tags_add", "tags_remove"})]


def expected_klaviyo_properties(row: dict) -> dict:
    props = {
        "clv_predicted_12m": float(f"{row['predicted_clv']:.2f}"),
        "clv_tier": row["clv_tier"],
        "clv_p_alive": float(f"{row['p_alive']:.4f}"),
        "clv_p_purchase_30d": float(f"{row['p_purchase_30d']:.4f}"),
        "clv_rfm_segment": row["rfm_segment"],
        "clv_lifecycle_stage": row["lifecycle_stage"],
        "clv_model_version": row["model_version"],
        "clv_scored_at": row["scored_at"].strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if row["predicted_next_purchase_date"] is not None:
        props["clv_next_purchase_date"] = row["predicted_next_purchase_date"].isoformat()
    return props


def materialize(path, fake, activation: ActivationResource, raise_on_error=True):
    klaviyo, shopify = resources_for(fake)
    return dg.materialize(
        [klaviyo_profiles, shopify_customers],
        resources={"duckdb": DuckDBResource(database=path), "activation": activation,
                   "klaviyo": klaviyo, "shopify": shopify},
        raise_on_error=raise_on_error,
    )


def metadata_of(result, name):
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == name)
    return {k: v.value for k, v in event.materialization.metadata.items()}


# ------------------------------------------------------------------------------- dry run / off


def test_off_by_default_touches_nothing(base, fake):
    result = materialize(base, fake, ActivationResource())
    assert metadata_of(result, "klaviyo_profiles")["status"] == "off"
    assert fake.requests == []
    assert query(base, "select count(*) from information_schema.tables where table_schema = 'activation'") == [(0,)]


def test_dry_run_plans_the_right_changes_and_sends_nothing(base, fake):
    result = materialize(base, fake, ActivationResource(klaviyo_enabled=True, shopify_enabled=True))
    assert fake.requests == []  # not even a read
    meta = metadata_of(result, "klaviyo_profiles")
    assert meta["status"] == "dry_run"
    assert meta["planned_customers"] == len(KLAVIYO_TARGETS)
    nulls = sum(1 for r in KLAVIYO_TARGETS if r["predicted_next_purchase_date"] is None)
    assert meta["planned_values"] == 9 * len(KLAVIYO_TARGETS) - nulls
    assert metadata_of(result, "shopify_customers")["planned_customers"] == len(SHOPIFY_TARGETS)
    row = KLAVIYO_TARGETS[7]
    planned = dict(query(
        base,
        "select field, new_value from activation.planned_changes where destination = 'klaviyo' and target_id = ?",
        [row["klaviyo_profile_id"]],
    ))
    assert planned == {k: (f"{v:.2f}" if k == "clv_predicted_12m" else f"{v:.4f}" if isinstance(v, float) else v)
                       for k, v in expected_klaviyo_properties(row).items()}
    shop = dict(query(
        base,
        "select field, new_value from activation.planned_changes where destination = 'shopify' and target_id = ?",
        [SHOPIFY_TARGETS[0]["shopify_customer_id"]],
    ))
    assert shop["clv_predicted_12m"] == "10.00" and "clv_next_purchase_date" not in shop  # i=0: date is null
    assert query(base, "select count(*) from activation.sync_state") == [(0,)]


# ------------------------------------------------------------------------------- live, exactly once


def test_live_run_sends_each_value_once_and_unchanged_customers_are_not_resent(base, fake, clock):
    report = sync_once(base, fake, "klaviyo")
    assert report.sent_customers == len(KLAVIYO_TARGETS) and report.failed_customers == 0
    received = [r for r in fake.received if r["dest"] == "klaviyo"]
    assert len(received) == len(KLAVIYO_TARGETS)
    assert len({r["id"] for r in received}) == len(received)
    for row in KLAVIYO_TARGETS[:10]:
        assert fake.klaviyo_properties[row["klaviyo_profile_id"]] == expected_klaviyo_properties(row)
    # Each job stayed within the limit and was polled to completion.
    assert all(len(j["profiles"]) <= SMALL.klaviyo_max_profiles_per_job for j in fake.klaviyo_jobs.values())
    assert {j["status"] for j in fake.klaviyo_jobs.values()} == {"complete"}

    shop = sync_once(base, fake, "shopify")
    metafields = [r for r in fake.received if r["dest"] == "shopify"]
    assert shop.sent_customers == len(SHOPIFY_TARGETS)
    assert len(metafields) == len({(r["ownerId"], r["key"]) for r in metafields}) == shop.sent_values
    gid = SHOPIFY_TARGETS[3]["shopify_customer_id"]
    assert fake.customers[gid]["metafields"][("clv", "rfm_segment")] == {
        "value": SHOPIFY_TARGETS[3]["rfm_segment"], "type": "single_line_text_field"}
    assert fake.customers[gid]["metafields"][("clv", "predicted_12m")]["type"] == "number_decimal"

    # Next night: every customer is re-scored (new scored_at), three change value.
    before = len(fake.received)
    conn = duckdb.connect(base)
    conn.execute("update marts.customer_scores set scored_at = scored_at + interval 1 day")
    changed = [KLAVIYO_TARGETS[i]["customer_id"] for i in (1, 2, 3)]
    conn.execute("update marts.customer_scores set p_alive = 0.0123 where customer_id in (?, ?, ?)", changed)
    conn.close()
    again = sync_once(base, fake, "klaviyo")
    new = fake.received[before:]
    assert again.planned_customers == 3 and again.sent_customers == 3
    assert sorted(r["id"] for r in new) == sorted(KLAVIYO_TARGETS[i]["klaviyo_profile_id"] for i in (1, 2, 3))
    # only the changed value plus its companion timestamp
    assert all(set(r["properties"]) == {"clv_p_alive", "clv_scored_at"} for r in new)
    assert all(r["properties"]["clv_p_alive"] == 0.0123 for r in new)

    # Nothing changed: nothing sent, not even a read.
    requests = len(fake.requests)
    last = sync_once(base, fake, "klaviyo")
    assert last.planned_customers == 0 and len(fake.requests) == requests


def test_a_withdrawn_value_is_cleared_upstream_once(base, fake, clock):
    """A next purchase date the platform withdrew (P(buy within 90 days) fell below its threshold)
    is removed from the Klaviyo profile (Update Profile with patch_properties.unset: the bulk import
    ignores a null) and from the Shopify customer (metafieldsDelete), not left there stale."""
    sync_once(base, fake, "klaviyo")
    sync_once(base, fake, "shopify")
    withdrawn = [r for r in ROWS[:12] if r["predicted_next_purchase_date"] is not None
                 and r["klaviyo_profile_id"] and r["shopify_customer_id"]][:2]
    conn = duckdb.connect(base)
    conn.execute("update marts.customer_scores set scored_at = scored_at + interval 1 day")
    conn.execute("update marts.customer_scores set predicted_next_purchase_date = null where customer_id in (?, ?)",
                 [r["customer_id"] for r in withdrawn])
    conn.close()
    before, writes_before = len(fake.received), len(writes(fake))

    report = sync_once(base, fake, "klaviyo")
    planned = query(base, "select target_id, old_value, new_value from activation.planned_changes "
                          "where destination = 'klaviyo' and field = 'clv_next_purchase_date' order by 1")
    assert planned == sorted((r["klaviyo_profile_id"], r["predicted_next_purchase_date"].isoformat(), None)
                             for r in withdrawn)
    assert report.planned_customers == report.sent_customers == 2 and report.failed_customers == 0
    patches = [r for r in fake.requests if r.route == KLAVIYO_PROFILE]
    assert len(patches) == 2 and len(writes(fake)) == writes_before  # no import job: it cannot clear
    scored_at = (withdrawn[0]["scored_at"] + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for request in patches:
        assert request.method == "PATCH"
        assert request.body["data"]["meta"] == {"patch_properties": {"unset": ["clv_next_purchase_date"]}}
        assert request.body["data"]["attributes"]["properties"] == {"clv_scored_at": scored_at}
    for row in withdrawn:
        expected = {**expected_klaviyo_properties(row), "clv_scored_at": scored_at}
        del expected["clv_next_purchase_date"]
        assert fake.klaviyo_properties[row["klaviyo_profile_id"]] == expected

    shop = sync_once(base, fake, "shopify")
    assert shop.planned_customers == shop.sent_customers == 2 and shop.failed_customers == 0
    deletes = [r for r in fake.received[before:] if r["dest"] == "shopify_delete"]
    assert sorted(r["ownerId"] for r in deletes) == sorted(r["shopify_customer_id"] for r in withdrawn)
    assert {(r["namespace"], r["key"]) for r in deletes} == {("clv", "next_purchase_date")}
    for row in withdrawn:
        metafields = fake.customers[row["shopify_customer_id"]]["metafields"]
        assert ("clv", "next_purchase_date") not in metafields
        assert metafields[("clv", "scored_at")]["value"] == scored_at
        assert ("clv", "predicted_12m") in metafields  # the rest stays
    assert sorted(query(base, "select destination, value from activation.sync_state "
                              "where field = 'clv_next_purchase_date' and customer_id in (?, ?)",
                        [r["customer_id"] for r in withdrawn])) == [("klaviyo", None)] * 2 + [("shopify", None)] * 2

    # Cleared once: the next night plans nothing for them and sends nothing at all.
    requests = len(fake.requests)
    assert sync_once(base, fake, "klaviyo").planned_customers == 0
    assert sync_once(base, fake, "shopify").planned_customers == 0
    assert len(fake.requests) == requests


@pytest.mark.parametrize("destination,event", [("klaviyo", "klaviyo_profile_updated"),
                                               ("shopify", "shopify_metafields_sent")])
def test_kill_after_a_clear_then_rerun_clears_nothing_twice(base, fake, clock, monkeypatch, destination, event):
    sync_once(base, fake, destination)
    withdrawn = [r for r in (KLAVIYO_TARGETS if destination == "klaviyo" else SHOPIFY_TARGETS)[:12]
                 if r["predicted_next_purchase_date"] is not None][:3]
    conn = duckdb.connect(base)
    conn.execute("update marts.customer_scores set predicted_next_purchase_date = null where customer_id in (?, ?, ?)",
                 [r["customer_id"] for r in withdrawn])
    conn.close()
    before = len(fake.received)

    def die(name):
        if name == event:
            raise SimulatedKill(name)

    monkeypatch.setattr(sync_module, "checkpoint", die)
    with pytest.raises(SimulatedKill):  # the first clear reached the destination, its record did not
        sync_once(base, fake, destination)
    monkeypatch.setattr(sync_module, "checkpoint", lambda name: None)
    report = sync_once(base, fake, destination)
    assert report.abandoned_batches == 1 and report.failed_customers == 0
    assert report.already_upstream_values >= 1  # the cleared value was read back as gone
    clears = [r for r in fake.received[before:] if r["dest"] == "shopify_delete" or r.get("unset")]
    targets = [r.get("ownerId") or r.get("id") for r in clears]
    assert len(targets) == len(set(targets))  # each cleared exactly once
    assert sorted(set(targets)) == sorted(r["klaviyo_profile_id" if destination == "klaviyo" else
                                             "shopify_customer_id"] for r in withdrawn)
    assert query(base, "select count(*) from activation.sync_state where field = 'clv_next_purchase_date' "
                       "and destination = ? and value is null", [destination]) == [(3,)]


def test_a_score_missing_for_every_customer_is_not_cleared(base, fake, clock):
    """A column null for every customer (its model not scored) is no withdrawal: nothing is cleared."""
    sync_once(base, fake, "klaviyo")
    conn = duckdb.connect(base)
    conn.execute("update marts.customer_scores set scored_at = scored_at + interval 1 day, "
                 "predicted_next_purchase_date = null, p_purchase_30d = null")
    planned, absent = plan_changes(conn, "klaviyo", run_id="r2", mode="dry_run", now=now_utc())
    changes = planned.frame()
    conn.close()
    assert set(absent) == {"predicted_next_purchase_date", "p_purchase_30d"}
    assert len(changes) == 0  # scored_at alone changed: a companion is never sent on its own


def test_every_date_withdrawn_at_once_is_still_cleared(base, fake, clock):
    """Null for every customer while P(30 d) is there: the model scored them and withdrew every
    date (a new, less confident model), which must reach the destinations."""
    sync_once(base, fake, "shopify")
    conn = duckdb.connect(base)
    conn.execute("update marts.customer_scores set predicted_next_purchase_date = null")
    planned, absent = plan_changes(conn, "shopify", run_id="r2", mode="dry_run", now=now_utc())
    changes = planned.frame()
    conn.close()
    dated = [r for r in SHOPIFY_TARGETS if r["predicted_next_purchase_date"] is not None]
    assert absent == []
    dates = changes[changes["field"] == "clv_next_purchase_date"]
    assert sorted(dates["target_id"]) == sorted(r["shopify_customer_id"] for r in dated)
    assert dates["new_value"].isna().all()
    assert set(changes["field"]) == {"clv_next_purchase_date", "clv_scored_at"}  # the companion rides along


def test_a_profile_deleted_before_its_update_is_refused_by_id(fake, clock):
    klaviyo, _ = resources_for(fake)
    writer = KlaviyoWriter(klaviyo)
    try:
        gone, kept = KLAVIYO_TARGETS[0]["klaviyo_profile_id"], KLAVIYO_TARGETS[1]["klaviyo_profile_id"]
        fake.klaviyo_deleted.add(gone)
        refused = writer.update_profile(gone, {}, ["clv_next_purchase_date"])
        assert refused is not None and refused.status == 404
        assert writer.update_profile(kept, {"clv_tier": "Rest"}, ["clv_p_alive"]) is None
        assert fake.klaviyo_properties[kept]["clv_tier"] == "Rest" and "clv_p_alive" not in fake.klaviyo_properties[kept]
    finally:
        writer.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """What a fault-free run delivers, from a fresh database and a fresh fake."""
    fake_clock = FakeClock()
    patch = pytest.MonkeyPatch()
    patch.setattr(http, "sleep", fake_clock.sleep)
    patch.setattr(http, "clock", fake_clock.now)
    path = str(tmp_path_factory.mktemp("reference") / "ref.duckdb")
    write_base(path, customer_rows())
    try:
        with make_fake(fake_clock) as clean:
            sync_once(path, clean, "klaviyo")
            sync_once(path, clean, "shopify", tags=True)
            return {d: clean.received_checksum(d) for d in ("klaviyo", "shopify", "shopify_tags")}
    finally:
        patch.undo()


def test_faults_do_not_change_what_is_delivered(base, fake, clock, reference):
    fake.fault(KLAVIYO_IMPORT, "status", status=429, retry_after=3, at=[1])
    fake.fault(KLAVIYO_IMPORT, "status", status=503, at=[2, 6])
    fake.fault(KLAVIYO, "status", status=429, retry_after=2, at=[1])
    fake.fault(KLAVIYO_IMPORT, "reset", at=[9])
    fake.fault(KLAVIYO_IMPORT, "slow", delay=2.5, at=[4])  # a job status poll beyond the 2 s read timeout
    fake.fault(SHOPIFY, "throttled", op="metafields_set", at=[2, 5])
    fake.fault(SHOPIFY, "status", status=502, op="metafields_set", at=[3])
    fake.fault(SHOPIFY, "status", status=429, retry_after=1, op="customer_read", at=[2])
    fake.fault(SHOPIFY, "throttled", http_status=429, op="tags_add", at=[1])
    sync_once(base, fake, "klaviyo")
    sync_once(base, fake, "shopify", tags=True)
    assert {d: fake.received_checksum(d) for d in reference} == reference
    assert 3.0 in clock.sleeps and 2.0 in clock.sleeps  # Retry-After honoured
    assert fake.throttled_responses >= 3


@pytest.mark.parametrize("destination,event,after", [
    ("klaviyo", "klaviyo_job_submitted", 2),   # job sent, its id not yet recorded: in doubt
    ("shopify", "shopify_metafields_sent", 4),  # call saved upstream, not yet recorded
])
def test_kill_mid_sync_then_rerun_sends_nothing_twice(base, fake, clock, reference, monkeypatch, destination, event,
                                                      after):
    calls = {"n": 0}

    def die(name):
        if name == event:
            calls["n"] += 1
            if calls["n"] == after:
                raise SimulatedKill(name)

    monkeypatch.setattr(sync_module, "checkpoint", die)
    with pytest.raises(SimulatedKill):
        sync_once(base, fake, destination, tags=True)
    assert query(base, "select count(*) from activation.sync_batches where status = 'sending'") == [(1,)]
    monkeypatch.setattr(sync_module, "checkpoint", lambda name: None)
    report = sync_once(base, fake, destination, tags=True)
    assert report.abandoned_batches == 1 and report.failed_customers == 0
    assert report.already_upstream_values > 0  # the in-doubt batch was found upstream, not resent
    assert fake.received_checksum(destination) == reference[destination]
    assert query(base, "select count(*) from activation.sync_batches where status in ('sending', 'submitted')") == [(0,)]


def test_klaviyo_job_interrupted_while_polling_is_resumed_not_resubmitted(base, fake, clock, reference, monkeypatch):
    original = KlaviyoWriter.wait_for_job
    state = {"n": 0}

    def interrupted(self, job_id, poll, timeout):
        state["n"] += 1
        if state["n"] == 3:
            raise SimulatedKill("killed while polling")
        return original(self, job_id, poll, timeout)

    monkeypatch.setattr(KlaviyoWriter, "wait_for_job", interrupted)
    with pytest.raises(SimulatedKill):
        sync_once(base, fake, "klaviyo")
    assert query(base, "select count(*) from activation.sync_batches where status = 'submitted'") == [(1,)]
    jobs_before = len(fake.klaviyo_jobs)
    report = sync_once(base, fake, "klaviyo")
    assert report.resumed_batches == 1 and report.abandoned_batches == 0
    assert len(fake.klaviyo_jobs) == jobs_before + report.write_requests
    assert fake.received_checksum("klaviyo") == reference["klaviyo"]


# ------------------------------------------------------------------------------- skips and failures


def test_deleted_customers_are_skipped_and_recorded(base, fake, clock):
    gone_profile = KLAVIYO_TARGETS[5]["klaviyo_profile_id"]
    gone_customer = SHOPIFY_TARGETS[8]["shopify_customer_id"]
    fake.klaviyo_deleted.add(gone_profile)
    del fake.customers[gone_customer]
    k = sync_once(base, fake, "klaviyo")
    s = sync_once(base, fake, "shopify")
    assert k.skipped_customers == 1 and s.skipped_customers == 1
    assert gone_profile not in {r.get("id") for r in fake.received}
    assert gone_customer not in {r.get("ownerId") for r in fake.received}
    skipped = query(base, "select destination, target_id, kind, reason from activation.sync_failures order by 1")
    assert skipped == [("klaviyo", gone_profile, "skipped", sync_module.DELETED),
                       ("shopify", gone_customer, "skipped", sync_module.DELETED)]


def test_rejected_values_are_recorded_per_customer_and_others_still_written(base, fake, clock):
    bad_owner = SHOPIFY_TARGETS[2]["shopify_customer_id"]
    bad_profile = KLAVIYO_TARGETS[4]["klaviyo_profile_id"]
    fake.shopify_invalid_owners.add(bad_owner)
    fake.klaviyo_reject_ids.add(bad_profile)
    s = sync_once(base, fake, "shopify")
    k = sync_once(base, fake, "klaviyo")
    assert s.failed_customers == 1 and k.failed_customers == 1
    # the bad customer's call neighbours were retried alone and saved
    neighbour = SHOPIFY_TARGETS[3]["shopify_customer_id"]  # same metafieldsSet call as the bad one
    assert ("clv", "tier") in fake.customers[neighbour]["metafields"]
    assert fake.customers[bad_owner]["metafields"] == {}
    failures = dict(query(base, "select target_id, reason from activation.sync_failures where kind = 'failed'"))
    assert "INVALID_VALUE" in failures[bad_owner] and "Invalid property value" in failures[bad_profile]
    # failed values are not in the state, so the next run tries them again
    assert query(base, "select count(*) from activation.sync_state where target_id in (?, ?)",
                 [bad_owner, bad_profile]) == [(0,)]
    fake.shopify_invalid_owners.clear()
    retry = sync_once(base, fake, "shopify")
    assert retry.sent_customers == 1 and retry.failed_customers == 0


def test_failures_above_the_threshold_fail_the_run(base, fake, clock):
    fake.shopify_invalid_owners.update(r["shopify_customer_id"] for r in SHOPIFY_TARGETS[:3])
    activation = ActivationResource(shopify_enabled=True, mode="live", failure_count_floor=2,
                                    failure_ratio_threshold=0.0)
    result = materialize(base, fake, activation, raise_on_error=False)
    assert not result.success
    assert query(base, "select count(*) from activation.sync_failures where kind = 'failed'") == [(3,)]
    # under the threshold failures are recorded but the run succeeds: the three are retried, one fails again
    fake.shopify_invalid_owners = {SHOPIFY_TARGETS[0]["shopify_customer_id"]}
    ok = materialize(base, fake, ActivationResource(shopify_enabled=True, mode="live"))
    assert ok.success
    assert metadata_of(ok, "shopify_customers")["failed_customers"] == 1


def test_tags_follow_the_scores(base, fake, clock):
    sync_once(base, fake, "shopify", tags=True)
    top = SHOPIFY_TARGETS[-1]["shopify_customer_id"]
    at_risk = SHOPIFY_TARGETS[0]["shopify_customer_id"]  # i = 0: lifecycle at_risk
    assert fake.customers[top]["tags"] == {"clv:top-5"}
    assert fake.customers[at_risk]["tags"] == {"clv:at-risk"}
    conn = duckdb.connect(base)
    conn.execute("update marts.customer_scores set lifecycle_stage = 'active' where customer_id = ?", [at_risk])
    conn.close()
    before = len(fake.received)
    report = sync_once(base, fake, "shopify", tags=True)
    assert fake.customers[at_risk]["tags"] == set()
    sent = fake.received[before:]
    assert {(r["dest"], r.get("op"), r.get("tag"), r.get("key")) for r in sent} == {
        ("shopify_tags", "remove", "clv:at-risk", None),
        ("shopify", None, None, "lifecycle_stage"),  # scored_at is unchanged upstream: not resent
    }
    assert report.sent_customers == 1


def test_live_mode_without_credentials_fails_loudly(base):
    from clv_platform.ingestion.source_resources import DemoStoreResource

    demo = DemoStoreResource(n_customers=10)
    result = dg.materialize(
        [klaviyo_profiles],
        resources={"duckdb": DuckDBResource(database=base), "klaviyo": demo,
                   "activation": ActivationResource(klaviyo_enabled=True, mode="live")},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "KLAVIYO_API_KEY" in str(failure.event_specific_data.error)


def test_no_secret_in_logs_or_errors(base, fake, clock, caplog):
    caplog.set_level(logging.DEBUG)
    fake.fault(KLAVIYO_IMPORT, "status", status=503, at=[1])
    sync_once(base, fake, "klaviyo")
    assert "retry 1/" in caplog.text  # the 503 was retried and logged
    conn = duckdb.connect(base)
    conn.execute("update marts.customer_scores set p_alive = 0.999 where customer_id = ?",
                 [KLAVIYO_TARGETS[0]["customer_id"]])
    conn.close()
    real_key = fake.klaviyo_key
    fake.klaviyo_key = "pk_rotated_key_999999"  # the key we send is now wrong
    with pytest.raises(AuthenticationError) as raised:
        sync_once(base, fake, "klaviyo", klaviyo_key=real_key)
    assert "KLAVIYO_API_KEY" in str(raised.value)
    assert real_key not in caplog.text + str(raised.value)


CHILD = """
import sys, duckdb
from clv_platform.activation.plan import plan_changes
from clv_platform.activation.settings import ActivationResource
from clv_platform.activation.sync import new_run_id, now_utc, sync_klaviyo, sync_shopify
from clv_platform.resources.klaviyo import KlaviyoResource
from clv_platform.resources.klaviyo_write import KlaviyoWriter
from clv_platform.resources.shopify import ShopifyResource
from clv_platform.resources.shopify_write import ShopifyWriter
path, destination, base_url, key, token = sys.argv[1:6]
conn = duckdb.connect(path)
run_id = new_run_id()
planned, _ = plan_changes(conn, destination, run_id=run_id, mode="live", now=now_utc())
options = ActivationResource(klaviyo_max_profiles_per_job=20, klaviyo_poll_seconds=0.05, shopify_read_chunk=10).options()
if destination == "klaviyo":
    sync_klaviyo(conn, KlaviyoWriter(KlaviyoResource(api_key=key, base_url=base_url, timeout_seconds=30)),
                 planned, run_id, options)
else:
    sync_shopify(conn, ShopifyWriter(ShopifyResource(shop_domain=base_url, access_token=token, timeout_seconds=30)),
                 planned, run_id, options)
"""


@pytest.mark.parametrize("destination,route,op,at", [
    ("klaviyo", KLAVIYO_IMPORT, None, 4),        # the POST of the second import job (after POST, 2 polls)
    ("shopify", SHOPIFY, "metafields_set", 3),   # the third metafieldsSet call
])
def test_sigkill_during_a_write_then_rerun_sends_nothing_twice(base, fake, clock, reference, destination, route,
                                                               op, at):
    """A real kill: the sync runs in a child process that is SIGKILLed while the fake is still
    answering one of its writes (the write is saved upstream, the child never learns it)."""
    import signal
    import subprocess
    import sys
    import time

    fake.fault(route, "slow", delay=1.0, op=op, at=[at])
    child = subprocess.Popen([sys.executable, "-c", CHILD, base, destination, fake.base_url, fake.klaviyo_key,
                              fake.shopify_token], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not any(f.kind == "slow" and f.fired for f in fake.faults):
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the child never reached the slow write"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        child.stderr.close()
    while any(r.status is None and r.route != "unknown" for r in list(fake.requests)):
        time.sleep(0.02)  # let the fake finish saving the write the child died waiting for
    assert query(base, "select count(*) from activation.sync_batches where status = 'sending'") == [(1,)]
    report = sync_once(base, fake, destination)
    assert report.abandoned_batches == 1 and report.failed_customers == 0
    assert fake.received_checksum(destination) == reference[destination]


def test_a_plan_read_in_small_blocks_delivers_the_same(base, fake, clock, reference, monkeypatch):
    """The sync reads the plan a block of targets at a time (PLAN_BLOCK; Klaviyo profiles left
    over from one block are topped up by the next before a job is sent): blocks far smaller
    than a job, a read chunk or the plan deliver what one block does."""
    monkeypatch.setattr(sync_module, "PLAN_BLOCK", 7)
    k = sync_once(base, fake, "klaviyo")
    s = sync_once(base, fake, "shopify", tags=True)
    assert {d: fake.received_checksum(d) for d in reference} == reference
    assert k.planned_customers == k.sent_customers == len(KLAVIYO_TARGETS)
    assert s.planned_customers == s.sent_customers == len(SHOPIFY_TARGETS)
    jobs = [r for r in fake.requests if r.route == KLAVIYO_IMPORT and r.method == "POST"]
    assert [len(j.body["data"]["attributes"]["profiles"]["data"]) for j in jobs] == [20] * 4 + [16]  # full jobs


@pytest.mark.parametrize("destination", ["klaviyo", "shopify"])
def test_settled_batch_items_are_emptied_after_the_kept_days(base, fake, clock, destination):
    """The items of a settled batch are the night's log (sync_state keeps what was confirmed):
    emptied `batch_items_keep_days` after it settled, its row kept; a batch a killed run left
    open is resumed first and keeps its items; 0 keeps them all."""
    first = sync_once(base, fake, destination)
    count, values = query(base, "select count(*), sum(item_count) from activation.sync_batches")[0]
    assert first.cleared_batch_items == 0 and count > 1 and values == first.sent_values

    def age_batches(days: int) -> None:
        conn = duckdb.connect(base)
        conn.execute(f"update activation.sync_batches set updated_at = updated_at - interval {days} day")
        conn.close()

    age_batches(15)
    keep_all = ActivationResource(klaviyo_max_profiles_per_job=20, klaviyo_poll_seconds=1.0, shopify_read_chunk=10,
                                  batch_items_keep_days=0).options()
    assert sync_once(base, fake, destination, options=keep_all).cleared_batch_items == 0
    assert query(base, "select count(*) from activation.sync_batches where items is null") == [(0,)]

    conn = duckdb.connect(base)
    # the newest batch left 'sending' 15 days ago by a killed run; and a night with values to send
    conn.execute("update activation.sync_batches set status = 'sending' where batch_id = "
                 "(select max(batch_id) from activation.sync_batches)")
    conn.execute("update marts.customer_scores set p_alive = 0.0123")
    conn.close()
    night = sync_once(base, fake, destination)  # keeps 14 days, the default
    assert night.resumed_batches == 1 and night.sent_values > 0
    assert night.cleared_batch_items == count - 1  # the resumed batch settled just now: kept
    emptied = query(base, "select count(*), sum(item_count) from activation.sync_batches where items is null")
    assert emptied == [(count - 1, values - query(base, "select item_count from activation.sync_batches where "
                                                        "status = 'abandoned'")[0][0])]
    # every row is still there; this night's batches and the resumed one keep their items
    kept = query(base, "select count(*), sum(item_count) filter (where status <> 'abandoned') "
                       "from activation.sync_batches where items is not null")[0]
    assert kept[1] == night.sent_values and query(base, "select count(*) from activation.sync_batches") == [
        (count - 1 + kept[0],)]
    items = query(base, "select items from activation.sync_batches where status = 'abandoned'")[0][0]
    assert json.loads(items)[0]["target_id"]
    # a batch still open (a job submitted, not yet settled) is never emptied, however old
    conn = duckdb.connect(base)
    conn.execute("update activation.sync_batches set status = 'submitted', updated_at = updated_at - interval 30 day "
                 "where status = 'abandoned'")
    assert Ledger(conn, destination, "later").clear_settled_items(14) == 0
    conn.close()
    assert query(base, "select items is not null from activation.sync_batches where status = 'submitted'") == [(True,)]
