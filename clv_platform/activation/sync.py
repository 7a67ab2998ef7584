"""Sending a plan: batches recorded before and after every write, so a killed sync resumes safely.

The design that makes a rerun send nothing twice:

1. every write request is first recorded in `activation.sync_batches` as `sending` (with its
   items), and only after the destination confirmed it are `activation.sync_state` and the
   batch status (`done`) updated, in one DuckDB transaction;
2. before anything is sent, the customers' current values are read back from the destination;
   values already there are confirmed without sending. So a batch whose confirmation was lost
   in a crash (`sending` left behind) is found upstream by the next run and not sent again;
   the read-back is also how deleted or erased customers are found and skipped;
3. a Klaviyo job or a Shopify bulk operation whose id was recorded (`submitted`) is polled to
   its end by the next run and settled by its result instead of being resubmitted; when a crash
   lost the id, the next run first waits until the destination has nothing unfinished (Klaviyo
   import jobs, a Shopify bulk mutation), so its read-back sees their result.

A large Shopify plan (`shopify_bulk_min_customers`) is read back with one bulk query and sent as
bulk mutations over staged JSONL files (`_BulkSender`), outside the cost bucket; a smaller one
call by call (`_CallSender`). Both send the same calls' variables.

A value planned as null is cleared upstream (Klaviyo: the profile is updated on its own with
`patch_properties.unset`, which the bulk import cannot do; Shopify: `metafieldsDelete`), and its
state becomes null, so it is not cleared again. Read back as absent, it is already cleared.

Failures (rejected values, userErrors, import errors) are recorded per customer in
`activation.sync_failures`; the caller fails the run when they pass the threshold.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pandas as pd

from clv_platform.core.sql import transaction
from clv_platform.activation.fields import BY_NAME, TAG_PREFIX, canonical, klaviyo_value
from clv_platform.activation.plan import Plan
from clv_platform.resources.klaviyo_write import KlaviyoWriter, pack_jobs
from clv_platform.resources.shopify_write import BULK_MUTATIONS, MAX_METAFIELDS_PER_CALL, NAMESPACE, ShopifyWriter

DELETED = "deleted or erased upstream: not found by id"
PLAN_BLOCK = 5_000  # targets read from the plan (and, in bulk mode, from the read-back) at a time
PROFILE_UPDATE = "profile-update"  # the batch kind of one Klaviyo Update Profile request


def checkpoint(event: str) -> None:
    """Called right after a write was sent and before it is recorded; crash tests raise here."""


@dataclass(frozen=True)
class SyncOptions:
    """Batch sizes and waits of one sync, clamped to the destinations' limits.

    Built by `ActivationResource.options()` (activation/settings.py), which holds the one set of
    defaults and their descriptions; tests build it the same way with their own small values.
    """

    klaviyo_max_profiles_per_job: int
    klaviyo_max_job_bytes: int
    klaviyo_poll_seconds: float
    klaviyo_job_timeout_seconds: float
    shopify_read_chunk: int
    shopify_bulk_min_customers: int = 5_000
    shopify_bulk_max_file_bytes: int = 20_000_000
    shopify_bulk_concurrency: int = 5
    shopify_metafields_per_call: int = MAX_METAFIELDS_PER_CALL
    batch_items_keep_days: int = 14


@dataclass
class SyncReport:
    destination: str
    planned_customers: int = 0
    planned_values: int = 0
    sent_customers: int = 0
    sent_values: int = 0
    write_requests: int = 0
    already_upstream_values: int = 0
    skipped_customers: int = 0
    failed_customers: int = 0
    resumed_batches: int = 0
    abandoned_batches: int = 0
    bulk_operations: int = 0
    cleared_batch_items: int = 0
    failures: list[dict] = field(default_factory=list)

    def as_metadata(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Ledger:
    """The DuckDB side of a sync: batch records, confirmed state and failures."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, destination: str, run_id: str):
        self.conn = conn
        self.destination = destination
        self.run_id = run_id
        self.sequence = 0

    def _transaction(self, work: Callable[[], None]) -> None:
        with transaction(self.conn):
            work()

    def start_batch(self, kind: str, items: list[dict], job_id: str | None = None) -> str:
        self.sequence += 1
        batch_id = f"{self.destination}:{self.run_id}:{self.sequence:06d}"
        now = _now()
        self.conn.execute(
            "insert into activation.sync_batches values (?, ?, ?, ?, 'sending', ?, ?, ?, ?, ?, null)",
            [batch_id, self.destination, self.run_id, kind, len(items), json.dumps(items), job_id, now, now],
        )
        return batch_id

    def set_status(self, batch_id: str, status: str, job_id: str | None = None, detail: str | None = None) -> None:
        self.conn.execute(
            "update activation.sync_batches set status = ?, job_id = coalesce(?, job_id), "
            "detail = coalesce(?, detail), updated_at = ? where batch_id = ?",
            [status, job_id, detail, _now(), batch_id],
        )

    def clear_settled_items(self, keep_days: int) -> int:
        """Empty the items of this destination's batches settled more than `keep_days` ago (0: keep
        them all); returns how many. A batch's items are what a resume needs while it is open; once
        settled, `sync_state` holds what was confirmed and `sync_failures` what was not, and the
        items are only the night's log: about 2 million values a night at 1M customers, which kept
        whole would grow the store by every night's write-back. The batch row (kind, status,
        item_count, job_id, times, detail) stays; an open batch is never touched."""
        if keep_days <= 0:
            return 0
        (cleared,) = self.conn.execute(
            "update activation.sync_batches set items = null where destination = ? and items is not null "
            "and status not in ('sending', 'submitted') and updated_at < ?",
            [self.destination, _now() - timedelta(days=keep_days)],
        ).fetchone()
        return int(cleared)

    def batch_items(self, batch_id: str) -> list[dict]:
        (items,) = self.conn.execute("select items from activation.sync_batches where batch_id = ?",
                                     [batch_id]).fetchone()
        return json.loads(items)

    def open_batches(self) -> list[dict]:
        rows = self.conn.execute(
            "select batch_id, kind, status, items, job_id, created_at from activation.sync_batches "
            "where destination = ? and status in ('sending', 'submitted') order by created_at, batch_id",
            [self.destination],
        ).fetchall()
        return [
            {"batch_id": r[0], "kind": r[1], "status": r[2], "items": json.loads(r[3]), "job_id": r[4],
             "created_at": r[5]}
            for r in rows
        ]

    def settle(
        self,
        confirmed: list[dict],
        failures: list[dict] | None = None,
        batch_id: str | None = None,
        status: str = "done",
        detail: str | None = None,
    ) -> None:
        """In one transaction: confirmed items into sync_state, failures recorded, batch closed."""
        failures = failures or []

        def work() -> None:
            now = _now()
            if confirmed:
                frame = pd.DataFrame(
                    [(self.destination, i["target_id"], i["field"], i["customer_id"], i["value"], now, self.run_id)
                     for i in {(i["target_id"], i["field"]): i for i in confirmed}.values()],
                    columns=["destination", "target_id", "field", "customer_id", "value", "synced_at", "run_id"],
                )
                self.conn.register("_confirmed", frame)
                try:
                    self.conn.execute(
                        "insert into activation.sync_state select * from _confirmed "
                        "on conflict (destination, target_id, field) do update set "
                        "customer_id = excluded.customer_id, value = excluded.value, "
                        "synced_at = excluded.synced_at, run_id = excluded.run_id"
                    )
                finally:
                    self.conn.unregister("_confirmed")
            for f in failures:
                self.conn.execute(
                    "insert into activation.sync_failures values (?, ?, ?, ?, ?, ?, ?, ?)",
                    [self.destination, self.run_id, f.get("customer_id"), f.get("target_id"), f.get("field"),
                     f.get("kind", "failed"), f["reason"], now],
                )
            if batch_id is not None:
                self.set_status(batch_id, status, detail=detail)

        self._transaction(work)


def _chunks(values: list, size: int) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _upstream_or_skipped(chunk: list[str], targets: dict, current: dict) -> tuple[list[str], list[dict]]:
    """The chunk's targets still found upstream, and skip records for the deleted or erased ones:
    both destinations read back before writing and must not recreate a customer removed there."""
    present = [t for t in chunk if t in current]
    skipped = [
        {"customer_id": targets[t]["customer_id"], "target_id": t, "kind": "skipped", "reason": DELETED}
        for t in chunk if t not in current
    ]
    return present, skipped


def _items(target: str, customer_id: str, fields: dict[str, str]) -> list[dict]:
    return [{"customer_id": customer_id, "target_id": target, "field": f, "value": v} for f, v in fields.items()]


def _split(upstream: dict[str, str | None], wanted: dict[str, str]) -> tuple[dict, dict]:
    """(values to send, values already upstream). Nothing is sent when only companions differ."""
    differ = {f: v for f, v in wanted.items() if upstream.get(f) != v}
    same = {f: v for f, v in wanted.items() if f not in differ}
    if not any(BY_NAME[f].trigger if f in BY_NAME else True for f in differ):
        return {}, same  # a differing companion alone is not sent, nor recorded as sent
    return differ, same


# ------------------------------------------------------------------------------------ Klaviyo


def _klaviyo_finish(ledger: Ledger, writer: KlaviyoWriter, batch_id: str, job_id: str, items: list[dict],
                    options: SyncOptions, report: SyncReport) -> None:
    job = writer.wait_for_job(job_id, options.klaviyo_poll_seconds, options.klaviyo_job_timeout_seconds)
    if job.get("status") == "cancelled":
        failures = [{**i, "reason": f"Klaviyo import job {job_id} was cancelled"} for i in items]
        _count_failures(report, failures)
        ledger.settle([], failures, batch_id, status="failed", detail="job cancelled")
        return
    rejected: dict[str, str] = {}
    unattributed: list[str] = []
    if job.get("failed_count"):
        for error in writer.import_errors(job_id):
            if error.profile_id:
                rejected[error.profile_id] = error.reason
            else:
                unattributed.append(error.reason)
    if unattributed:
        # Which profiles failed is unknown: confirm none; the next run's read-back sorts it out.
        failures = [{"reason": f"Klaviyo import job {job_id}: {r}"} for r in unattributed]
        report.failures.extend(failures)
        ledger.settle([], failures, batch_id, status="failed", detail=f"{len(unattributed)} unattributed errors")
        return
    confirmed = [i for i in items if i["target_id"] not in rejected]
    failures = []
    for target, reason in rejected.items():
        customer = next((i["customer_id"] for i in items if i["target_id"] == target), None)
        failures.append({"customer_id": customer, "target_id": target, "reason": f"Klaviyo import error: {reason}"})
    _count_failures(report, failures)
    ledger.settle(confirmed, failures, batch_id, detail=f"job {job_id}: {job.get('completed_count')} completed, "
                  f"{job.get('failed_count')} failed")


def _count_failures(report: SyncReport, failures: list[dict]) -> None:
    report.failures.extend(failures)
    report.failed_customers += len({(f.get("target_id"), f.get("customer_id")) for f in failures})


def _abandon(ledger: Ledger, batch: dict, report: SyncReport) -> None:
    """A batch in doubt after a crash: closed unsettled; the read-back finds what the destination saved."""
    report.abandoned_batches += 1
    ledger.settle([], [], batch["batch_id"], status="abandoned", detail="in doubt after a crash; re-read")


def _wait_while(busy: Callable[[], bool], client, poll: float, timeout: float, why: str, gave_up: str) -> None:
    """Before an in-doubt batch is abandoned: wait (polling every `poll` s) until the destination has
    nothing unfinished, so the read-back sees its result; raise `gave_up` after `timeout` s."""
    waited = 0.0
    while busy():
        if waited >= timeout:
            raise RuntimeError(gave_up)
        client.wait(poll, why)
        waited += poll


def resume_klaviyo(ledger: Ledger, writer: KlaviyoWriter, options: SyncOptions, report: SyncReport) -> None:
    for batch in ledger.open_batches():
        report.resumed_batches += 1
        if batch["kind"] == PROFILE_UPDATE:  # synchronous: the read-back finds what was saved
            _abandon(ledger, batch, report)
            continue
        if batch["status"] == "submitted" and batch["job_id"]:
            writer.client.info(f"Klaviyo: resuming import job {batch['job_id']} of an interrupted sync")
            _klaviyo_finish(ledger, writer, batch["batch_id"], batch["job_id"], batch["items"], options, report)
            continue
        # Sent or not, we cannot tell: let Klaviyo finish whatever it has, then the read-back decides.
        _wait_while(writer.unfinished_jobs, writer.client, options.klaviyo_poll_seconds,
                    options.klaviyo_job_timeout_seconds, "an interrupted sync may have a job in Klaviyo",
                    "Klaviyo import jobs stayed unfinished; rerun activation later")
        _abandon(ledger, batch, report)


def _klaviyo_update(ledger: Ledger, writer: KlaviyoWriter, profile: dict, report: SyncReport) -> None:
    """One profile's changes, removals included, in one Update Profile request."""
    items = profile["items"]
    batch_id = ledger.start_batch(PROFILE_UPDATE, items)
    refused = writer.update_profile(profile["id"], profile["properties"], profile["unset"])
    checkpoint("klaviyo_profile_updated")
    report.write_requests += 1
    if refused is None:
        report.sent_customers += 1
        report.sent_values += len(items)
        ledger.settle(items, [], batch_id)
        return
    record = {"customer_id": items[0]["customer_id"], "target_id": profile["id"]}
    if refused.status == 404:  # deleted since the read-back: skipped like the ones it found gone
        report.skipped_customers += 1
        ledger.settle([], [{**record, "kind": "skipped", "reason": DELETED}], batch_id, status="failed",
                      detail="profile not found")
        return
    failure = {**record, "reason": f"Klaviyo profile update refused: {refused}"}
    _count_failures(report, [failure])
    ledger.settle([], [failure], batch_id, status="failed")


def _klaviyo_jobs(ledger: Ledger, writer: KlaviyoWriter, pending: list[dict], options: SyncOptions,
                  report: SyncReport, *, keep_last: bool) -> list[dict]:
    """Send the pending profiles in import jobs; with `keep_last`, the last (perhaps part-full) job's
    profiles are returned unsent, to be topped up by the next block of the plan."""
    jobs = list(pack_jobs(pending, options.klaviyo_max_profiles_per_job, options.klaviyo_max_job_bytes))
    held = jobs.pop() if keep_last and jobs else []
    for job in jobs:
        items = [i for p in job for i in p["items"]]
        batch_id = ledger.start_batch("profile-import-job", items)
        job_id = writer.submit_job([{"id": p["id"], "properties": p["properties"]} for p in job])
        checkpoint("klaviyo_job_submitted")
        ledger.set_status(batch_id, "submitted", job_id=job_id)
        report.write_requests += 1
        report.sent_customers += len(job)
        report.sent_values += len(items)
        _klaviyo_finish(ledger, writer, batch_id, job_id, items, options, report)
    return held


def sync_klaviyo(conn: duckdb.DuckDBPyConnection, writer: KlaviyoWriter, plan: Plan, run_id: str,
                 options: SyncOptions) -> SyncReport:
    ledger = Ledger(conn, "klaviyo", run_id)
    report = SyncReport("klaviyo")
    resume_klaviyo(ledger, writer, options, report)
    report.cleared_batch_items = ledger.clear_settled_items(options.batch_items_keep_days)
    report.planned_customers, report.planned_values = plan.customers, plan.values
    pending: list[dict] = []
    for _, _, targets in plan.blocks(PLAN_BLOCK):
        clearing: list[dict] = []  # profiles with a value to remove: one update request each
        for chunk in _chunks(list(targets), 100):
            current = writer.current_properties(chunk)
            already: list[dict] = []
            present, skipped = _upstream_or_skipped(chunk, targets, current)
            for target in present:
                entry = targets[target]
                upstream = {f: canonical(BY_NAME[f].kind, current[target].get(f)) for f in entry["fields"]}
                send, same = _split(upstream, entry["fields"])
                already += _items(target, entry["customer_id"], same)
                if send:
                    (clearing if None in send.values() else pending).append({
                        "id": target,
                        "properties": {f: klaviyo_value(BY_NAME[f], v) for f, v in send.items() if v is not None},
                        "unset": [f for f, v in send.items() if v is None],
                        "items": _items(target, entry["customer_id"], send),
                    })
            report.already_upstream_values += len(already)
            report.skipped_customers += len(skipped)
            ledger.settle(already, skipped)
        for profile in clearing:
            _klaviyo_update(ledger, writer, profile, report)
        pending = _klaviyo_jobs(ledger, writer, pending, options, report, keep_last=True)
    _klaviyo_jobs(ledger, writer, pending, options, report, keep_last=False)
    _log_summary(writer.client, report)
    return report


# ------------------------------------------------------------------------------------ Shopify

BULK_KIND = "bulk "  # batch kind prefix of a bulk operation: "bulk metafieldsSet", "bulk tagsAdd", ...


def _metafield_input(item: dict) -> dict:
    spec = BY_NAME[item["field"]]
    return {"ownerId": item["target_id"], "namespace": NAMESPACE, "key": spec.shopify_key,
            "type": spec.shopify_type, "value": item["value"]}


def _metafield_variables(items: list[dict]) -> dict:
    """One metafieldsSet call's variables, or metafieldsDelete's when the values are null (cleared)."""
    if items[0]["value"] is None:
        return {"metafields": [{"ownerId": i["target_id"], "namespace": NAMESPACE,
                                "key": BY_NAME[i["field"]].shopify_key} for i in items]}
    return {"metafields": [_metafield_input(i) for i in items]}


def _tag_variables(items: list[dict]) -> dict:
    return {"id": items[0]["target_id"], "tags": [i["field"].removeprefix(TAG_PREFIX) for i in items]}


def _error_reasons(mutation: str, errors: list[dict], items: list[dict]) -> str:
    reasons = []
    for error in errors:
        index = error.get("elementIndex")
        where = items[index]["field"] if isinstance(index, int) and 0 <= index < len(items) else None
        reasons.append(f"{where or error.get('field')}: {error.get('code') or ''} {error.get('message')}".strip())
    return f"Shopify {mutation} userErrors: " + "; ".join(reasons)


def _failure(items: list[dict], reason: str) -> dict:
    return {"customer_id": items[0]["customer_id"], "target_id": items[0]["target_id"], "reason": reason}


def _calls(customers: list[list[dict]], per_call: int) -> Iterator[list[list[dict]]]:
    """Customers' items packed into calls of at most `per_call` values (a customer is never split)."""
    call: list[list[dict]] = []
    for customer in customers:
        if call and sum(map(len, call)) + len(customer) > per_call:
            yield call
            call = []
        call.append(customer)
    if call:
        yield call


def _send_metafields(ledger: Ledger, writer: ShopifyWriter, customers: list[list[dict]], report: SyncReport) -> None:
    """One metafieldsSet call for these customers' items (metafieldsDelete when their values are
    null: cleared); on userErrors (metafieldsSet is atomic: nothing saved) each customer is
    retried alone so one bad value does not block the others."""
    items = [i for customer in customers for i in customer]
    mutation = "metafieldsDelete" if items[0]["value"] is None else "metafieldsSet"
    batch_id = ledger.start_batch(mutation, items)
    variables = _metafield_variables(items)["metafields"]
    if mutation == "metafieldsDelete":
        errors = writer.delete_metafields(variables)
    else:
        errors = writer.set_metafields(variables)
    checkpoint("shopify_metafields_sent")
    report.write_requests += 1
    if not errors:
        ledger.settle(items, [], batch_id)
        return
    if len(customers) > 1:
        ledger.settle([], [], batch_id, status="failed", detail="userErrors; retrying customers one by one")
        for customer in customers:
            _send_metafields(ledger, writer, [customer], report)
        return
    failure = _failure(items, _error_reasons(mutation, errors, items))
    _count_failures(report, [failure])
    ledger.settle([], [failure], batch_id, status="failed")


def _send_tags(ledger: Ledger, writer: ShopifyWriter, items: list[dict], report: SyncReport) -> None:
    add = [i["field"].removeprefix(TAG_PREFIX) for i in items if i["value"] == "true"]
    remove = [i["field"].removeprefix(TAG_PREFIX) for i in items if i["value"] != "true"]
    batch_id = ledger.start_batch("tags", items)
    errors = writer.change_tags(items[0]["target_id"], add, remove)
    checkpoint("shopify_tags_sent")
    report.write_requests += 1
    if errors:
        failure = _failure(items, "Shopify tags userErrors: " + "; ".join(str(e.get("message")) for e in errors))
        _count_failures(report, [failure])
        ledger.settle([], [failure], batch_id, status="failed")
    else:
        ledger.settle(items, [], batch_id)


class _CallSender:
    """Sends each chunk's changes at once, one GraphQL call per 25 values (tags: per customer)."""

    def __init__(self, ledger: Ledger, writer: ShopifyWriter, options: SyncOptions, report: SyncReport):
        self.ledger, self.writer, self.options, self.report = ledger, writer, options, report

    def send(self, metafields: list[list[dict]], cleared: list[list[dict]], tags: list[list[dict]]) -> None:
        for customers in (metafields, cleared):
            for call in _calls(customers, self.options.shopify_metafields_per_call):
                _send_metafields(self.ledger, self.writer, call, self.report)
        for items in tags:
            _send_tags(self.ledger, self.writer, items, self.report)

    def flush(self) -> None:
        """Nothing is held back."""


class _BulkSender:
    """Collects the calls as lines of one JSONL file per mutation and starts a bulk operation over a
    file when it is full (`shopify_bulk_max_file_bytes`) and over each file at the end, with at most
    `concurrency` operations running: before starting one more, the oldest is waited for and settled.
    """

    def __init__(self, ledger: Ledger, writer: ShopifyWriter, options: SyncOptions, report: SyncReport,
                 concurrency: int = 1):
        self.ledger, self.writer, self.options, self.report = ledger, writer, options, report
        self.lines: dict[str, list[tuple[str, list[dict]]]] = {m: [] for m in BULK_MUTATIONS}
        self.size = dict.fromkeys(BULK_MUTATIONS, 0)
        self.concurrency = max(1, concurrency)
        # mutation, batch id, operation id: the items wait in the batch record, not in memory
        self.running: list[tuple[str, str, str]] = []

    def add(self, mutation: str, variables: dict, items: list[dict]) -> None:
        text = json.dumps(variables, separators=(",", ":"))
        if self.lines[mutation] and self.size[mutation] + len(text) + 1 > self.options.shopify_bulk_max_file_bytes:
            self.run(mutation)
        self.lines[mutation].append((text, items))
        self.size[mutation] += len(text) + 1

    def send(self, metafields: list[list[dict]], cleared: list[list[dict]], tags: list[list[dict]]) -> None:
        for mutation, customers in (("metafieldsSet", metafields), ("metafieldsDelete", cleared)):
            for call in _calls(customers, self.options.shopify_metafields_per_call):
                items = [i for customer in call for i in customer]
                self.add(mutation, _metafield_variables(items), items)
        for items in tags:
            for mutation, part in (("tagsAdd", [i for i in items if i["value"] == "true"]),
                                   ("tagsRemove", [i for i in items if i["value"] != "true"])):
                if part:
                    self.add(mutation, _tag_variables(part), part)

    def run(self, mutation: str) -> None:
        lines, self.lines[mutation], self.size[mutation] = self.lines[mutation], [], 0
        while len(self.running) >= self.concurrency:
            self.settle_oldest()
        batch_id, operation_id, _ = _bulk_start(self.ledger, self.writer, mutation, lines, self.report)
        self.running.append((mutation, batch_id, operation_id))

    def settle_oldest(self) -> None:
        mutation, batch_id, operation_id = self.running.pop(0)
        items = self.ledger.batch_items(batch_id)
        _bulk_settle(self.ledger, self.writer, batch_id, operation_id, mutation, items, self.report)

    def flush(self) -> None:
        for mutation in BULK_MUTATIONS:
            if self.lines[mutation]:
                self.run(mutation)
        while self.running:
            self.settle_oldest()


def _bulk_operation(ledger: Ledger, writer: ShopifyWriter, mutation: str, lines: list[tuple[str, list[dict]]],
                    report: SyncReport) -> None:
    """Start a bulk operation over these lines, then wait for it and settle every line by its result."""
    batch_id, operation_id, items = _bulk_start(ledger, writer, mutation, lines, report)
    _bulk_settle(ledger, writer, batch_id, operation_id, mutation, items, report)


def _bulk_start(ledger: Ledger, writer: ShopifyWriter, mutation: str, lines: list[tuple[str, list[dict]]],
                report: SyncReport) -> tuple[str, str, list[dict]]:
    """Record the file's items (each with its line number), upload the file, start the operation
    and record its id; returns (batch id, operation id, items)."""
    items = [{**i, "line": number} for number, (_, line_items) in enumerate(lines) for i in line_items]
    batch_id = ledger.start_batch(BULK_KIND + mutation, items)
    path = writer.stage_upload(("\n".join(text for text, _ in lines) + "\n").encode(), f"clv-{mutation}.jsonl")
    operation_id = writer.start_bulk_mutation(mutation, path, client_identifier=batch_id)
    checkpoint("shopify_bulk_started")
    ledger.set_status(batch_id, "submitted", job_id=operation_id)
    report.write_requests += 1
    report.bulk_operations += 1
    return batch_id, operation_id, items


def _bulk_settle(ledger: Ledger, writer: ShopifyWriter, batch_id: str, operation_id: str, mutation: str,
                 items: list[dict], report: SyncReport) -> None:
    """Confirm the lines that succeeded; a line with errors is a failure of its customer, except a
    metafieldsSet of several customers (atomic per line), whose customers are sent again one per
    line so one bad value does not block the others. A line without a result (an operation that
    failed part-way) is a failure too: its values stay out of the state, and the next run's
    read-back finds whether Shopify saved them."""
    operation, results = writer.finished_bulk_mutation(operation_id)
    by_line: dict[int, list[dict]] = {}
    for item in items:
        by_line.setdefault(item["line"], []).append({k: v for k, v in item.items() if k != "line"})
    confirmed: list[dict] = []
    failures: list[dict] = []
    again: list[tuple[str, list[dict]]] = []
    for number, line_items in sorted(by_line.items()):
        record = results.get(number)
        if record is None:
            reason = (f"Shopify bulk {mutation} {operation_id} ended {operation.get('status')} "
                      f"(errorCode {operation.get('errorCode')}) without a result for this call")
            failures += [_failure(c, reason) for c in _by_customer(line_items)]
            continue
        errors = record.get("errors") or (((record.get("data") or {}).get(mutation) or {}).get("userErrors")) or []
        if not errors:
            confirmed += line_items
            continue
        customers = _by_customer(line_items)
        if mutation == "metafieldsSet" and len(customers) > 1:
            again += [(json.dumps(_metafield_variables(c), separators=(",", ":")), c) for c in customers]
            continue
        reason = _error_reasons(mutation, errors, line_items)
        failures += [_failure(c, reason) for c in customers]
    _count_failures(report, failures)
    ledger.settle(confirmed, failures, batch_id, status="done" if len(confirmed) == len(items) else "failed",
                  detail=f"operation {operation_id} {operation.get('status')}: {len(results)} of {len(by_line)} "
                  f"calls returned, {len(again)} customers sent again alone")
    if again:
        _bulk_operation(ledger, writer, mutation, again, report)


def _by_customer(items: list[dict]) -> list[list[dict]]:
    customers: dict[str, list[dict]] = {}
    for item in items:
        customers.setdefault(item["target_id"], []).append(item)
    return list(customers.values())


def resume_shopify(ledger: Ledger, writer: ShopifyWriter, report: SyncReport) -> None:
    """Finish what a killed sync left open. A bulk operation whose id was recorded is waited for
    and settled by its result; one started without its id recorded is let finish (no bulk mutation
    running any more), then abandoned like the synchronous calls: the read-back finds what was saved."""
    for batch in ledger.open_batches():
        report.resumed_batches += 1
        if batch["kind"].startswith(BULK_KIND):
            mutation = batch["kind"].removeprefix(BULK_KIND)
            if batch["status"] == "submitted" and batch["job_id"]:
                writer.client.info(f"Shopify: resuming bulk {mutation} {batch['job_id']} of an interrupted sync")
                _bulk_settle(ledger, writer, batch["batch_id"], batch["job_id"], mutation, batch["items"], report)
                continue
            _wait_while(writer.bulk_mutation_running, writer.client, writer.resource.bulk_poll_interval_seconds,
                        writer.resource.bulk_timeout_seconds,
                        "an interrupted sync may have a bulk mutation running in Shopify",
                        "a Shopify bulk mutation stayed running; rerun activation later")
        _abandon(ledger, batch, report)


def _load_upstream(conn: duckdb.DuckDBPyConnection, path: Path | None) -> None:
    """The bulk read-back's JSONL into temp tables, the planned customers only: customer lines
    (id, tags) and metafield lines (their customer in `__parentId`), each row with its target's
    `seq` in the plan and stored in that order, so a block of the plan reads its range of them
    (a semi-join on the block's ids scanned both tables whole for every block: 150 blocks a night
    at 1M customers). DuckDB reads the file, so a million customers' values never become Python
    objects at once."""
    conn.execute("create or replace temp table _shopify_upstream_customers (seq bigint, id varchar, tags varchar[])")
    conn.execute("create or replace temp table _shopify_upstream_metafields (seq bigint, parent varchar, "
                 "key varchar, value varchar)")
    if path is None:
        return
    conn.execute(
        "create or replace temp table _shopify_upstream_lines as select * from read_json(?, "
        "format = 'newline_delimited', columns = {id: 'varchar', tags: 'varchar[]', key: 'varchar', "
        "value: 'varchar', __parentId: 'varchar'})", [str(path)])
    conn.execute("create or replace temp table _shopify_planned_targets as "
                 "select distinct seq, target_id from _activation_changes")
    conn.execute("insert into _shopify_upstream_customers select p.seq, l.id, coalesce(l.tags, []) "
                 "from _shopify_upstream_lines as l join _shopify_planned_targets as p on p.target_id = l.id "
                 "where l.__parentId is null order by p.seq")
    conn.execute("insert into _shopify_upstream_metafields select p.seq, l.__parentId, l.key, l.value "
                 "from _shopify_upstream_lines as l join _shopify_planned_targets as p on p.target_id = l.__parentId "
                 "where l.key is not null order by p.seq")
    conn.execute("drop table _shopify_upstream_lines")
    conn.execute("drop table _shopify_planned_targets")


def _upstream_block(conn: duckdb.DuckDBPyConnection, first: int, last: int) -> dict[str, dict]:
    """`current` (as `ShopifyWriter.current` gives it) of the plan's targets `first`..`last` (seq)."""
    found = {gid: {"metafields": {}, "tags": set(tags)} for gid, tags in conn.execute(
        "select id, tags from _shopify_upstream_customers where seq between ? and ?", [first, last]).fetchall()}
    for parent, key, value in conn.execute(
            "select parent, key, value from _shopify_upstream_metafields where seq between ? and ?",
            [first, last]).fetchall():
        if parent in found:
            found[parent]["metafields"][key] = value
    return found


def sync_shopify(conn: duckdb.DuckDBPyConnection, writer: ShopifyWriter, plan: Plan, run_id: str,
                 options: SyncOptions) -> SyncReport:
    """Read back, compare and send, a block of the plan at a time. A plan of at least
    `shopify_bulk_min_customers` customers is read with one bulk query and written with bulk
    mutations (outside the cost bucket, which a nightly of a large store would exhaust for
    hours); a smaller one with paced calls."""
    ledger = Ledger(conn, "shopify", run_id)
    report = SyncReport("shopify")
    resume_shopify(ledger, writer, report)
    report.cleared_batch_items = ledger.clear_settled_items(options.batch_items_keep_days)
    report.planned_customers, report.planned_values = plan.customers, plan.values
    bulk = plan.customers > 0 and 0 <= options.shopify_bulk_min_customers <= plan.customers
    sender: _CallSender | _BulkSender
    if bulk:
        with writer.bulk_customers_file() as path:
            _load_upstream(plan.conn, path)
        # five bulk mutations may run at once from API 2026-01, one before (shopify.dev, bulk imports)
        concurrent = options.shopify_bulk_concurrency if writer.resource.api_version >= "2026-01" else 1
        sender = _BulkSender(ledger, writer, options, report, concurrent)
    else:
        sender = _CallSender(ledger, writer, options, report)
    for first, last, targets in plan.blocks(PLAN_BLOCK):
        if bulk:
            chunks, upstream = [list(targets)], _upstream_block(plan.conn, first, last)
        else:
            chunks, upstream = list(_chunks(list(targets), options.shopify_read_chunk)), None
        for chunk in chunks:
            current = upstream if upstream is not None else writer.current(chunk)
            _shopify_chunk(ledger, sender, chunk, targets, current, report)
    sender.flush()
    _log_summary(writer.client, report)
    return report


def _shopify_chunk(ledger: Ledger, sender: _CallSender | _BulkSender, chunk: list[str], targets: dict,
                   current: dict, report: SyncReport) -> None:
    """Compare one chunk's planned values with what Shopify holds; record what is already there and
    who is gone, and hand the rest to the sender."""
    already, to_send, to_delete, tag_sends = [], [], [], []
    present, skipped = _upstream_or_skipped(chunk, targets, current)
    for target in present:
        entry = targets[target]
        upstream: dict[str, str | None] = {}
        for f in entry["fields"]:
            if f.startswith(TAG_PREFIX):
                upstream[f] = "true" if f.removeprefix(TAG_PREFIX) in current[target]["tags"] else "false"
            else:
                upstream[f] = canonical(BY_NAME[f].kind, current[target]["metafields"].get(BY_NAME[f].shopify_key))
        send, same = _split(upstream, entry["fields"])
        already += _items(target, entry["customer_id"], same)
        metafields = {f: v for f, v in send.items() if not f.startswith(TAG_PREFIX) and v is not None}
        cleared = {f: v for f, v in send.items() if not f.startswith(TAG_PREFIX) and v is None}
        tags = {f: v for f, v in send.items() if f.startswith(TAG_PREFIX)}
        if metafields:
            to_send.append(_items(target, entry["customer_id"], metafields))
        if cleared:
            to_delete.append(_items(target, entry["customer_id"], cleared))
        if tags:
            tag_sends.append(_items(target, entry["customer_id"], tags))
    report.already_upstream_values += len(already)
    report.skipped_customers += len(skipped)
    ledger.settle(already, skipped)
    sender.send(to_send, to_delete, tag_sends)
    sent = [*to_send, *to_delete, *tag_sends]
    report.sent_customers += len({items[0]["target_id"] for items in sent})
    report.sent_values += sum(map(len, sent))


def _log_summary(client, report: SyncReport) -> None:
    client.info(
        f"activation to {report.destination}: {report.planned_customers} customers planned, "
        f"{report.sent_customers} sent ({report.sent_values} values, {report.write_requests} write requests), "
        f"{report.already_upstream_values} values already upstream, {report.skipped_customers} skipped "
        f"(deleted upstream), {report.failed_customers} failed, {report.resumed_batches} batches resumed"
    )


def failure_limit(attempted: int, ratio: float, floor: int) -> float:
    """Failures allowed before the run fails: max(floor, ratio * customers attempted)."""
    return max(float(floor), ratio * attempted)


def failures_exceeded(report: SyncReport, ratio: float, floor: int) -> bool:
    attempted = report.planned_customers - report.skipped_customers
    return report.failed_customers > failure_limit(attempted, ratio, floor)


def now_utc() -> datetime:
    return _now()


def new_run_id(tag: str | None = None) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return f"{stamp}-{tag}" if tag else stamp


def preview(frame: pd.DataFrame, rows: int = 10) -> str:
    if frame.empty:
        return "(nothing to change)"
    return frame.head(rows).to_markdown(index=False)

