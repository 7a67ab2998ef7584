"""A raw/shopify_orders run killed mid-way, then run again, ends with exactly the rows of one clean run."""

import json
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from clv_platform.ingestion.assets import raw_shopify_orders
from clv_platform.resources.shopify import ShopifyResource
from clv_platform_tests.fake_api import FakeApi, make_order_nodes

RANGE = {"dagster/asset_partition_range_start": "2025-01-01", "dagster/asset_partition_range_end": "2025-03-31"}
FAST = {"connect_timeout_seconds": 2.0, "timeout_seconds": 5.0, "max_retries": 3,
        "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05}

RUNNER = textwrap.dedent(
    """
    import sys
    import dagster as dg
    from dagster_duckdb import DuckDBResource
    from clv_platform.ingestion.assets import raw_shopify_orders
    from clv_platform.resources.shopify import ShopifyResource

    base_url, token, database = sys.argv[1:4]
    dg.materialize(
        [raw_shopify_orders],
        resources={
            "duckdb": DuckDBResource(database=database),
            "shopify": ShopifyResource(shop_domain=base_url, access_token=token, page_size=3, max_retries=3),
        },
        tags={"dagster/asset_partition_range_start": "2025-01-01",
              "dagster/asset_partition_range_end": "2025-03-31"},
    )
    """
)


def _load(server: FakeApi, database: str) -> None:
    resources = {
        "duckdb": DuckDBResource(database=database),
        "shopify": ShopifyResource(shop_domain=server.base_url, access_token=server.shopify_token, page_size=3, **FAST),
    }
    assert dg.materialize([raw_shopify_orders], resources=resources, tags=RANGE).success


def _rows(database: str) -> list[tuple]:
    with duckdb.connect(database, read_only=True) as conn:
        return conn.execute(
            "select order_id, updated_at, partition_date, payload::varchar from raw.shopify_orders order by all"
        ).fetchall()


def test_killed_run_then_rerun_equals_clean_run(tmp_path):
    source = make_order_nodes(
        120, start=datetime(2025, 1, 1, tzinfo=timezone.utc), span_days=85, big_order_every=0
    )
    clean_db, crashed_db = str(tmp_path / "clean.duckdb"), str(tmp_path / "crashed.duckdb")
    with FakeApi(source) as server:
        _load(server, clean_db)
        clean_requests = len(server.requests)

        # Every response is slow, so the killed run is caught between its chunk commits.
        server.fault("shopify_graphql", "slow", times=None, delay=0.15)
        script = tmp_path / "runner.py"
        script.write_text(RUNNER)
        proc = subprocess.Popen([sys.executable, str(script), server.base_url, server.shopify_token, crashed_db],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        start_count = len(server.requests)
        while len(server.requests) - start_count < clean_requests // 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        partial = _rows(crashed_db)
        server.faults.clear()

        _load(server, crashed_db)

    clean = _rows(clean_db)
    assert 0 < len(partial) < len(clean), "the kill must land mid-run for this test to mean anything"
    assert _rows(crashed_db) == clean
    assert len(clean) == len({(r[0], r[1]) for r in clean}) == len(source)
    assert {json.loads(r[3])["id"] for r in clean} == {n["id"] for n in source}
