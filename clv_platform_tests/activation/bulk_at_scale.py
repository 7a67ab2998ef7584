"""The Shopify bulk write-back of N customers against the loopback fake: what the platform's side costs.

    .venv/bin/python -m clv_platform_tests.activation.bulk_at_scale --customers 100000

Writes N scored customers (the activation tests' synthetic base; 3 in 4 have a Shopify customer)
to a DuckDB file in a child process, starts the fake Shopify with those customers in another
(so that their memory, threads and share of the interpreter lock stay out of the figures), and
runs the live Shopify sync twice through bulk operations on a connection with the platform's
DuckDB settings (`duckdb_config`: the 4 GB memory limit): the first night (every value new) and
the next (p_alive, the CLV and scored_at moved for everyone, as a real night moves them). Prints
per night the planned and sent values, the bulk operations and GraphQL requests, the wall time
(the fake's work included: it runs an operation while it is polled), the CPU time of the thread
that runs the sync (DuckDB's own threads not counted), this process's peak RSS, and what the
night leaves in the store: the batch records still holding their items, the size of those items
as JSON, and the DuckDB file's size.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import duckdb

from clv_platform.activation.plan import plan_changes
from clv_platform.activation.settings import ActivationResource
from clv_platform.activation.sync import new_run_id, now_utc, sync_shopify
from clv_platform.resources.shopify import ShopifyResource
from clv_platform.resources.storage import duckdb_config
from clv_platform.resources.shopify_write import ShopifyWriter
from clv_platform_tests.activation.conftest import customer_rows, write_base
from clv_platform_tests.fake_api import SHOPIFY, FakeApi


def _serve(n: int, pipe) -> None:
    """The fake in its own process: sends (base_url, token), then answers "requests" until "stop"."""
    with FakeApi() as fake:
        fake.add_customers(r["shopify_customer_id"] for r in customer_rows(n) if r["shopify_customer_id"])
        fake.bulk_polls_to_complete = 1
        pipe.send((fake.base_url, fake.shopify_token))
        while (command := pipe.recv()) != "stop":
            pipe.send(sum(r.route == SHOPIFY for r in fake.requests) if command == "requests" else None)


def _night(db: str, pipe, shopify: ShopifyResource, label: str) -> dict:
    pipe.send("requests")
    requests = pipe.recv()
    started, cpu = time.perf_counter(), time.thread_time()
    conn = duckdb.connect(db, config=duckdb_config())  # the platform's memory limit and settings
    writer = ShopifyWriter(shopify)
    try:
        run_id = new_run_id()
        plan, _ = plan_changes(conn, "shopify", run_id=run_id, mode="live", now=now_utc(), shopify_tags=True)
        planned = time.perf_counter() - started
        report = sync_shopify(conn, writer, plan, run_id, ActivationResource(shopify_bulk_min_customers=0).options())
    finally:
        writer.close()
        conn.close()
    seconds, cpu = time.perf_counter() - started, time.thread_time() - cpu
    with duckdb.connect(db) as conn:  # what the night leaves in the store (not timed)
        log_rows, log_bytes = conn.execute("select count(*), coalesce(sum(strlen(items::varchar)), 0) "
                                           "from activation.sync_batches where items is not null").fetchone()
    return {
        "night": label, "planned_customers": report.planned_customers, "planned_values": report.planned_values,
        "sent_values": report.sent_values, "failed_customers": report.failed_customers,
        "bulk_operations": report.bulk_operations,
        "graphql_requests": _requests(pipe) - requests,
        "seconds": round(seconds, 1), "plan_seconds": round(planned, 1), "platform_cpu_seconds": round(cpu, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "batch_log_rows": log_rows, "batch_log_json_mb": round(log_bytes / 1e6, 1),
        "store_file_mb": round(Path(db).stat().st_size / 1e6, 1),
    }


def _write_base(db: str, n: int) -> None:
    write_base(db, customer_rows(n))


def _requests(pipe) -> int:
    pipe.send("requests")
    return pipe.recv()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()
    fork = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory() as folder:
        db = str(Path(folder) / "clv.duckdb")
        writer = fork.Process(target=_write_base, args=(db, args.customers))  # its memory is not ours
        writer.start()
        writer.join()
        ours, theirs = multiprocessing.Pipe()
        server = fork.Process(target=_serve, args=(args.customers, theirs))
        server.start()
        try:
            base_url, token = ours.recv()
            shopify = ShopifyResource(shop_domain=base_url, access_token=token, bulk_poll_interval_seconds=0.05)
            print(json.dumps(_night(db, ours, shopify, "first")))
            conn = duckdb.connect(db)
            conn.execute("update marts.customer_scores set p_alive = p_alive * 0.99, predicted_clv = predicted_clv "
                         "* 1.01, scored_at = scored_at + interval 1 day")
            conn.close()
            print(json.dumps(_night(db, ours, shopify, "next")))
        finally:
            ours.send("stop")
            server.join()


if __name__ == "__main__":
    main()
