"""The Shopify write-back through bulk operations, against the loopback fake.

A plan of at least `shopify_bulk_min_customers` customers is read back with one bulk query and
written with bulk mutations over staged JSONL files: it must deliver exactly what the paced
calls deliver, settle every line by its `__lineNumber`, and survive a kill at each step
without sending a value twice.
"""

from __future__ import annotations

import duckdb
import pytest

from clv_platform.activation import sync as sync_module
from clv_platform.activation.settings import ActivationResource
from clv_platform.resources.shopify_write import ShopifyWriter
from clv_platform_tests.activation.conftest import resources_for
from clv_platform_tests.activation.test_activation_sync import (
    SHOPIFY_TARGETS,
    SimulatedKill,
    query,
    reference,  # noqa: F401 (fixture)
    sync_once,
)
from clv_platform_tests.fake_api import BULK_DOWNLOAD, SHOPIFY, STAGED_UPLOAD

BULK = ActivationResource(shopify_bulk_min_customers=0, shopify_read_chunk=10).options()
PER_CALL_OPS = {"customer_read", "metafields_set", "metafields_delete", "tags_add", "tags_remove"}


def shopify_ops(fake) -> list[str]:
    return [r.op for r in fake.requests if r.route == SHOPIFY]


def test_bulk_delivers_what_the_calls_deliver_outside_the_cost_bucket(base, fake, clock, reference):
    report = sync_once(base, fake, "shopify", tags=True, options=BULK)
    assert {d: fake.received_checksum(d) for d in ("shopify", "shopify_tags")} == {
        d: reference[d] for d in ("shopify", "shopify_tags")}
    ops = shopify_ops(fake)
    assert not PER_CALL_OPS & set(ops)  # neither read back nor written by calls
    assert ops.count("bulk_start") == 1  # the read-back: one bulk query of the customers
    assert ops.count("bulk_mutation_start") == report.bulk_operations == report.write_requests == 2  # set, tagsAdd
    assert report.failed_customers == 0 and report.sent_customers == len(SHOPIFY_TARGETS)
    uploads = [r for r in fake.requests if r.route == STAGED_UPLOAD]
    assert len(uploads) == 2 and all("x-shopify-access-token" not in r.headers for r in uploads)
    assert query(base, "select kind, status, count(*) from activation.sync_batches group by all order by 1") == [
        ("bulk metafieldsSet", "done", 1), ("bulk tagsAdd", "done", 1)]
    # every planned value is in the state, and the next night has nothing to send
    planned = query(base, "select count(*) from activation.sync_state where destination = 'shopify'")[0][0]
    assert planned == report.planned_values
    again = sync_once(base, fake, "shopify", tags=True, options=BULK)
    assert again.planned_values == 0 and again.write_requests == 0


def test_bulk_starts_at_the_threshold(base, fake, clock):
    n = len(SHOPIFY_TARGETS)
    below = ActivationResource(shopify_bulk_min_customers=n + 1, shopify_read_chunk=10).options()
    sync_once(base, fake, "shopify", options=below)
    assert "bulk_mutation_start" not in shopify_ops(fake) and "metafields_set" in shopify_ops(fake)
    duckdb.connect(base).execute("update marts.customer_scores set clv_tier = 'Top 1%'").close()
    before = len(fake.requests)
    at = ActivationResource(shopify_bulk_min_customers=n, shopify_read_chunk=10).options()
    report = sync_once(base, fake, "shopify", options=at)
    assert report.planned_customers == n and report.bulk_operations == 1
    assert not PER_CALL_OPS & {r.op for r in fake.requests[before:] if r.route == SHOPIFY}
    assert {fake.customers[r["shopify_customer_id"]]["metafields"][("clv", "tier")]["value"]
            for r in SHOPIFY_TARGETS} == {"Top 1%"}


def test_files_split_at_the_size_limit_and_lines_settle_in_any_order(base, fake, clock, reference):
    small = ActivationResource(shopify_bulk_min_customers=0, shopify_bulk_max_file_bytes=10_000).options()
    report = sync_once(base, fake, "shopify", tags=True, options=small)
    uploads = [r.body["file"] for r in fake.requests if r.route == STAGED_UPLOAD]
    assert len(uploads) == report.bulk_operations >= 4
    assert max(map(len, uploads)) <= 10_000
    assert fake.received_checksum("shopify") == reference["shopify"]
    assert report.failed_customers == 0


def test_a_bulk_mutation_already_running_is_waited_for(base, fake, clock, reference):
    fake.bulk_mutation_concurrency = 1  # one at a time, as before API 2026-01
    other = fake.start_other_bulk_mutation()
    report = sync_once(base, fake, "shopify", options=BULK)
    starts = [r for r in fake.requests if r.op == "bulk_mutation_start"]
    # refused (OPERATION_IN_PROGRESS) while the other ran, which ends after two looks; started the third time
    assert len(starts) == 3 and report.bulk_operations == 1
    assert clock.sleeps.count(resources_for(fake)[1].bulk_busy_wait_seconds) == 2
    assert fake._bulk[other].status == "COMPLETED"
    assert report.failed_customers == 0 and fake.received_checksum("shopify") == reference["shopify"]


@pytest.mark.parametrize("api_version,most", [("2026-10", 5), ("2025-10", 1)])
def test_up_to_five_bulk_mutations_run_at_once_from_api_2026_01(base, fake, clock, reference, api_version, most):
    """Shopify runs five bulk mutations at once from API 2026-01, one before: the files are
    started up to that many ahead of the oldest one's settlement, and delivered the same."""
    small = ActivationResource(shopify_bulk_min_customers=0, shopify_bulk_max_file_bytes=10_000).options()
    report = sync_once(base, fake, "shopify", tags=True, options=small, shopify_api_version=api_version)
    assert report.bulk_operations >= 6 and fake.most_running_mutations == most
    assert report.failed_customers == 0
    assert {d: fake.received_checksum(d) for d in ("shopify", "shopify_tags")} == {
        d: reference[d] for d in ("shopify", "shopify_tags")}
    assert query(base, "select count(*) from activation.sync_batches where status <> 'done'") == [(0,)]


def test_a_rejected_line_is_sent_again_one_customer_per_line(base, fake, clock):
    bad = SHOPIFY_TARGETS[2]["shopify_customer_id"]
    neighbour = SHOPIFY_TARGETS[3]["shopify_customer_id"]  # packed in the same metafieldsSet line
    fake.shopify_invalid_owners.add(bad)
    report = sync_once(base, fake, "shopify", options=BULK)
    assert report.failed_customers == 1 and report.bulk_operations == 2  # the file, then the line's customers
    assert ("clv", "tier") in fake.customers[neighbour]["metafields"]
    assert fake.customers[bad]["metafields"] == {}
    (reason,) = [r for (r,) in query(base, "select reason from activation.sync_failures where target_id = ?", [bad])]
    assert "INVALID_VALUE" in reason and "metafieldsSet" in reason
    assert query(base, "select count(*) from activation.sync_state where target_id = ?", [bad]) == [(0,)]
    fake.shopify_invalid_owners.clear()
    retry = sync_once(base, fake, "shopify", options=BULK)
    assert retry.sent_customers == 1 and retry.failed_customers == 0


def test_deleted_customers_are_skipped(base, fake, clock):
    gone = SHOPIFY_TARGETS[8]["shopify_customer_id"]
    del fake.customers[gone]
    report = sync_once(base, fake, "shopify", options=BULK)
    assert report.skipped_customers == 1 and report.failed_customers == 0
    assert gone not in {r.get("ownerId") for r in fake.received}
    assert query(base, "select kind from activation.sync_failures where target_id = ?", [gone]) == [("skipped",)]


def test_a_withdrawn_value_is_deleted_by_a_bulk_metafields_delete(base, fake, clock):
    sync_once(base, fake, "shopify", options=BULK)
    dated = next(r for r in SHOPIFY_TARGETS if r["predicted_next_purchase_date"] is not None)
    gid = dated["shopify_customer_id"]
    assert ("clv", "next_purchase_date") in fake.customers[gid]["metafields"]
    conn = duckdb.connect(base)
    conn.execute("update marts.customer_scores set predicted_next_purchase_date = null where customer_id = ?", [gid])
    conn.close()
    report = sync_once(base, fake, "shopify", options=BULK)
    assert ("clv", "next_purchase_date") not in fake.customers[gid]["metafields"]
    assert "bulk_mutation_start" in shopify_ops(fake) and "metafields_delete" not in shopify_ops(fake)
    assert report.failed_customers == 0
    assert query(base, "select value from activation.sync_state where target_id = ? and field = "
                 "'clv_next_purchase_date'", [gid]) == [(None,)]


def test_a_failed_operation_settles_its_returned_lines_and_the_rerun_sends_the_rest(base, fake, clock, reference):
    fake.fault(SHOPIFY, "bulk_partial")  # the mutation stops after half its lines: FAILED, partialDataUrl
    first = sync_once(base, fake, "shopify", tags=True, options=BULK)
    assert 0 < first.failed_customers < len(SHOPIFY_TARGETS)
    reasons = {r for (r,) in query(base, "select distinct reason from activation.sync_failures")}
    assert len(reasons) == 1 and "ended FAILED" in reasons.pop()
    second = sync_once(base, fake, "shopify", tags=True, options=BULK)
    assert second.failed_customers == 0 and second.sent_customers == first.failed_customers
    assert fake.received_checksum("shopify") == reference["shopify"]  # nothing sent twice


@pytest.mark.parametrize("where", ["started", "polling"])
def test_kill_during_a_bulk_mutation_then_rerun_sends_nothing_twice(base, fake, clock, reference, monkeypatch,
                                                                    where):
    """Killed after the operation started, before its id was recorded (in doubt: the rerun waits
    until no bulk mutation runs, then the read-back finds the values); or killed while waiting for
    it (its id recorded: the rerun waits for it and settles its lines by the result)."""
    original = ShopifyWriter.finished_bulk_mutation
    if where == "started":
        def die(name):
            if name == "shopify_bulk_started":
                raise SimulatedKill(name)

        monkeypatch.setattr(sync_module, "checkpoint", die)
    else:
        def killed(self, operation_id):
            raise SimulatedKill("killed while polling")

        monkeypatch.setattr(ShopifyWriter, "finished_bulk_mutation", killed)
    with pytest.raises(SimulatedKill):
        sync_once(base, fake, "shopify", options=BULK)
    status = "sending" if where == "started" else "submitted"
    assert query(base, "select status, count(*) from activation.sync_batches group by 1") == [(status, 1)]
    monkeypatch.setattr(sync_module, "checkpoint", lambda name: None)
    monkeypatch.setattr(ShopifyWriter, "finished_bulk_mutation", original)
    report = sync_once(base, fake, "shopify", options=BULK)
    assert report.resumed_batches == 1 and report.failed_customers == 0
    assert report.abandoned_batches == (1 if where == "started" else 0)
    assert report.bulk_operations == 0  # every value was saved by the first operation: nothing started again
    assert fake.received_checksum("shopify") == reference["shopify"]
    assert query(base, "select count(*) from activation.sync_batches where status in ('sending', 'submitted')") == [
        (0,)]
    assert query(base, "select count(*) from activation.sync_state where destination = 'shopify'") == [
        (report.planned_values,)]


def test_bulk_over_small_plan_blocks_delivers_the_same(base, fake, clock, reference, monkeypatch):
    monkeypatch.setattr(sync_module, "PLAN_BLOCK", 7)
    report = sync_once(base, fake, "shopify", tags=True, options=BULK)
    assert {d: fake.received_checksum(d) for d in ("shopify", "shopify_tags")} == {
        d: reference[d] for d in ("shopify", "shopify_tags")}
    assert report.bulk_operations == 2 and report.sent_customers == len(SHOPIFY_TARGETS)
    # the read-back held in DuckDB: every planned customer found in it
    assert report.skipped_customers == 0


@pytest.mark.parametrize("mode", ["invalid_json", "cut_lines"])
def test_a_result_download_cut_short_is_downloaded_again(base, fake, clock, reference, mode):
    """The mutation's result file is cut (mid-line with a consistent Content-Length, or after 60 %
    of its lines without one) on its first download. A cut mid-line is told by the last line,
    which does not parse, and the file is fetched again; a cut at a line boundary cannot be told
    from a complete file (a mutation result has no objectCount): its missing lines are failures
    of their customers, whose values the next run sends. Nothing is confirmed that Shopify's
    result does not say."""
    fake.fault(BULK_DOWNLOAD, "truncated", at={2}, mode=mode, fraction=0.6)  # 1: the read-back, 2: the result
    report = sync_once(base, fake, "shopify", options=BULK)
    downloads = [r for r in fake.requests if r.route == BULK_DOWNLOAD]
    if mode == "invalid_json":
        assert len(downloads) == 3 and report.failed_customers == 0
        assert fake.received_checksum("shopify") == reference["shopify"]
    else:
        assert len(downloads) == 2 and 0 < report.failed_customers < len(SHOPIFY_TARGETS)
        confirmed = query(base, "select count(distinct target_id) from activation.sync_state "
                                "where destination = 'shopify'")[0][0]
        assert confirmed == len(SHOPIFY_TARGETS) - report.failed_customers
        rerun = sync_once(base, fake, "shopify", options=BULK)
        assert rerun.failed_customers == 0 and rerun.sent_customers == 0  # the values were saved: read back
        assert query(base, "select count(distinct target_id) from activation.sync_state "
                           "where destination = 'shopify'")[0][0] == len(SHOPIFY_TARGETS)
