"""Peak memory of a Shopify first full load through a bulk operation, on the platform's side.

    .venv/bin/python -m benchmarks.bulk_orders_memory --orders 200000 [--jsonl result.jsonl]

Writes (in a child process, so that its memory is not counted) a bulk result of N synthetic
orders (`make_order_nodes`, the fakes' contract-shaped orders) in the ungrouped layout of API
2026-01 (every line item before the orders, the arrangement the fake serves), then does what
`raw/shopify_orders` does with a downloaded result: rebuilds the orders from the JSONL
(`ShopifyResource._rebuild_orders`) and replaces the window of a fresh store with them
(`ingestion.assets._replace_window`). Prints the orders and lines, the wall time and this
process's peak RSS. The refunds' line items (fetched per refunded order by `bulk_orders`) and
the download are left out: the same for any way of holding the result.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


def write_result(path: str, orders: int) -> int:
    """The ungrouped JSONL of `orders` synthetic orders; returns its line count."""
    from clv_platform_tests.fake_api import make_order_nodes

    nodes = make_order_nodes(orders, start=datetime(2024, 1, 1, tzinfo=timezone.utc), span_days=700,
                             big_order_every=0)
    lines = 0
    with open(path, "w") as out:
        for node in nodes:  # children first, then (below) every order
            for item in node["lineItems"]["nodes"]:
                out.write(json.dumps({"__typename": "LineItem", **item, "__parentId": node["id"]}) + "\n")
                lines += 1
        for node in nodes:
            out.write(json.dumps({"__typename": "Order", **{k: v for k, v in node.items() if k != "lineItems"}}) + "\n")
            lines += 1
    return lines


def _write(path: str, orders: int, pipe) -> None:
    pipe.send(write_result(path, orders))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--jsonl", type=Path, default=None, help="reuse (or keep) the generated result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = args.jsonl or Path(folder) / "result.jsonl"
        lines = None
        if not path.exists():
            ours, theirs = multiprocessing.Pipe()
            child = multiprocessing.get_context("fork").Process(target=_write, args=(str(path), args.orders, theirs))
            child.start()
            lines = ours.recv()
            child.join()
        from dagster_duckdb import DuckDBResource

        from clv_platform.ingestion.assets import _replace_window
        from clv_platform.ingestion.raw_tables import ensure_raw_tables
        from clv_platform.resources.http import HttpClient, RetryPolicy, make_session
        from clv_platform.resources.shopify import ShopifyResource

        store = str(Path(folder) / "store.duckdb")
        duckdb = DuckDBResource(database=store)
        with duckdb.get_connection() as conn:
            ensure_raw_tables(conn)
        started = time.perf_counter()
        client = HttpClient("Shopify", make_session(), (1.0, 1.0), RetryPolicy(), {})
        shopify = ShopifyResource(shop_domain="bench.myshopify.com", access_token="unused")
        nodes = shopify._rebuild_orders(path, client)
        rows = _replace_window(duckdb, datetime(2020, 1, 1), datetime(2030, 1, 1), nodes, "shopify",
                               datetime(2026, 12, 5))
        print(json.dumps({
            "orders": rows, "jsonl_lines": lines, "jsonl_mb": round(path.stat().st_size / 1e6, 1),
            "seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }))


if __name__ == "__main__":
    main()
