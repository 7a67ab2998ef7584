"""raw/* assets under the faults of issue 17: nothing already loaded is lost with a green run.

- a mid-chunk `{"data":{"orders":null}}` page and a bulk file cut at a line boundary give,
  once they go away on retry, exactly the rows of a fault-free load (count + checksum), and
  while they persist fail the run and keep the rows already stored;
- a clean fetch that lost most of a window is refused unless the run sets `allow_shrink`;
- auth / permission / version errors fail at once, without the asset's retries;
- Klaviyo profiles whose predictive_analytics failed are re-requested on later runs.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import dagster as dg
import duckdb
import pytest
from dagster_duckdb import DuckDBResource

from clv_platform.ingestion.assets import RawOrdersConfig, raw_klaviyo_profiles, raw_shopify_orders
from clv_platform.resources import http
from clv_platform.resources.klaviyo import KlaviyoResource
from clv_platform.resources.shopify import ShopifyResource
from clv_platform_tests.fake_api import (
    BULK_DOWNLOAD,
    KLAVIYO,
    SHOPIFY,
    FakeApi,
    make_order_nodes,
    make_profiles,
)

FAST = {"connect_timeout_seconds": 2.0, "timeout_seconds": 5.0, "max_retries": 2,
        "backoff_base_seconds": 0.0, "backoff_max_seconds": 0.0}
PAGED = ("2025-01-01", "2025-03-31")  # 90 days: paged, three chunks
BULK = ("2024-12-01", "2025-03-31")  # over 90 days: one bulk operation


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(http, "sleep", lambda seconds: None)


@pytest.fixture(scope="module")
def source() -> list[dict]:
    return make_order_nodes(120, start=datetime(2025, 1, 1, tzinfo=timezone.utc), span_days=85, big_order_every=0)


def _resources(server: FakeApi, database: str) -> dict:
    return {
        "duckdb": DuckDBResource(database=database),
        "shopify": ShopifyResource(shop_domain=server.base_url, access_token=server.shopify_token, page_size=3,
                                   bulk_poll_interval_seconds=0.01, **FAST),
    }


# The asset's own body without its step RetryPolicy, whose 30 s / 90 s waits would only slow
# these tests down (that permanent errors skip it is tested below on the real asset).
orders_without_step_retries = dg.asset(
    key=raw_shopify_orders.key,
    partitions_def=raw_shopify_orders.partitions_def,
    backfill_policy=raw_shopify_orders.backfill_policy,
)(raw_shopify_orders.op.compute_fn.decorated_fn)


def _run(server: FakeApi, database: str, window: tuple[str, str], **config) -> dg.ExecuteInProcessResult:
    """One run over the partition range `window`; raises the step's error if it fails."""
    result = dg.materialize(
        [orders_without_step_retries],
        resources=_resources(server, database),
        tags={"dagster/asset_partition_range_start": window[0], "dagster/asset_partition_range_end": window[1]},
        run_config={"ops": {"raw__shopify_orders": {"config": RawOrdersConfig(**config).model_dump()}}},
        raise_on_error=False,
    )
    if not result.success:
        error = _step_error(result)
        raise StepFailed(f"{error.cls_name}: {error.message}", error)
    return result


class StepFailed(Exception):
    def __init__(self, message: str, error):
        super().__init__(message)
        self.error = error


def _step_error(result):
    event = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    error = event.step_failure_data.error
    while error.cause is not None and error.cls_name in {"DagsterExecutionStepExecutionError"}:
        error = error.cause
    return error


def _rows(database: str) -> list[tuple]:
    # not read_only: a failed run's traceback may still hold the run's connection open,
    # and DuckDB opens a file a second time in one process only with the same settings
    with duckdb.connect(database) as conn:
        return conn.execute(
            "select order_id, updated_at, partition_date, payload::varchar from raw.shopify_orders order by all"
        ).fetchall()


def _count_and_checksum(rows: list[tuple]) -> tuple[int, str]:
    return len(rows), hashlib.sha256(json.dumps([r[0:1] + r[3:] for r in rows]).encode()).hexdigest()


def _orders_pages(server: FakeApi) -> int:
    return len(server.requests_for(SHOPIFY, op="orders"))


@pytest.mark.parametrize("window", [PAGED, BULK], ids=["paged", "bulk"])
def test_fault_free_load_is_the_reference(tmp_path, source, window):
    with FakeApi(source) as server:
        _run(server, str(tmp_path / "a.duckdb"), window)
    rows = _rows(str(tmp_path / "a.duckdb"))
    assert len(rows) == len(source) and {json.loads(r[3])["id"] for r in rows} == {n["id"] for n in source}


@pytest.mark.parametrize("window", [PAGED, BULK], ids=["paged", "bulk"])
def test_a_load_in_small_batches_equals_a_load_in_one(tmp_path, source, window, monkeypatch):
    """The fetched nodes wait in a scratch file, a batch at a time, and the bulk result's lines
    come back from DuckDB a few at a time, so an order's lines can span two fetches: the stored
    rows are the same, byte for byte, as with one batch of everything."""
    from clv_platform.ingestion import assets as ingestion_assets
    from clv_platform.resources import shopify as shopify_module

    with FakeApi(source) as server:
        _run(server, str(tmp_path / "one.duckdb"), window)
        monkeypatch.setattr(ingestion_assets, "ORDER_BATCH", 7)
        monkeypatch.setattr(shopify_module, "_REBUILD_ROWS", 3)
        _run(server, str(tmp_path / "small.duckdb"), window)
    one, small = _rows(str(tmp_path / "one.duckdb")), _rows(str(tmp_path / "small.duckdb"))
    assert len(one) == len(source) > 7 * 3 and small == one


def test_orders_null_mid_chunk_page_once_equals_a_fault_free_load(tmp_path, source):
    clean, faulty = str(tmp_path / "clean.duckdb"), str(tmp_path / "faulty.duckdb")
    with FakeApi(source) as server:
        _run(server, clean, PAGED)
        _run(server, faulty, PAGED)  # a full load first, as in the issue
        fault_at = _orders_pages(server) + 5  # the second run's 5th page, mid first chunk
        server.fault(SHOPIFY, "null_connection", op="orders", at=[fault_at])
        _run(server, faulty, PAGED)
        assert server.faults[-1].fired == 1
    assert _count_and_checksum(_rows(faulty)) == _count_and_checksum(_rows(clean))


def test_orders_null_page_that_persists_fails_and_deletes_nothing(tmp_path, source):
    db = str(tmp_path / "a.duckdb")
    with FakeApi(source) as server:
        _run(server, db, PAGED)
        before = _rows(db)
        first = _orders_pages(server) + 5
        server.fault(SHOPIFY, "null_connection", op="orders", at=range(first, first + 100))
        with pytest.raises(StepFailed, match="RetriesExhaustedError.*malformed response"):
            _run(server, db, PAGED)
    assert _rows(db) == before


def test_cut_bulk_download_once_equals_a_fault_free_load(tmp_path, source):
    clean, faulty = str(tmp_path / "clean.duckdb"), str(tmp_path / "faulty.duckdb")
    with FakeApi(source) as server:
        _run(server, clean, BULK)
        server.fault(BULK_DOWNLOAD, "truncated", times=1, mode="cut_lines", fraction=0.6)
        _run(server, faulty, BULK)
        assert server.faults[-1].fired == 1
    assert _count_and_checksum(_rows(faulty)) == _count_and_checksum(_rows(clean))


def test_cut_bulk_download_that_persists_fails_and_keeps_the_stored_rows(tmp_path, source):
    db = str(tmp_path / "a.duckdb")
    with FakeApi(source) as server:
        _run(server, db, BULK)
        before = _rows(db)
        server.fault(BULK_DOWNLOAD, "truncated", times=None, mode="cut_lines", fraction=0.6)
        with pytest.raises(StepFailed, match="RetriesExhaustedError.*objectCount"):
            _run(server, db, BULK)
    assert _rows(db) == before


def test_a_clean_fetch_that_lost_most_of_a_window_is_refused_unless_allowed(tmp_path, source):
    db = str(tmp_path / "a.duckdb")
    with FakeApi(source) as server:
        _run(server, db, PAGED)
        before = _rows(db)
        server.orders = server.orders[::3]  # two thirds of the orders gone from Shopify
        with pytest.raises(StepFailed, match="ReplacementRefused.*allow_shrink") as refused:
            _run(server, db, PAGED)
        assert refused.value.error.cls_name == "Failure"  # raised with allow_retries=False
        assert _rows(db) == before

        _run(server, db, PAGED, allow_shrink=True)
        kept = {n["id"] for n in server.orders}
    assert len(kept) == 40 and {json.loads(r[3])["id"] for r in _rows(db)} == kept


def test_orders_updated_since_do_not_count_as_lost(tmp_path, source):
    db = str(tmp_path / "a.duckdb")
    with FakeApi(source) as server:
        _run(server, db, PAGED)
        # 80 % of the orders are updated after the window: a later window holds them now.
        moved = []
        for i, node in enumerate(server.orders):
            if i % 5:
                node = {**node, "updatedAt": "2025-04-02T10:00:00Z"}
            moved.append(node)
        server.orders = sorted(moved, key=lambda o: (o["updatedAt"], o["id"]))
        _run(server, db, ("2025-04-01", "2025-04-05"))
        _run(server, db, PAGED)  # the re-fetch lacks them, but it has not lost them
        current = {(n["id"], n["updatedAt"]) for n in server.orders}
    rows = _rows(db)
    assert len(rows) == len(source)
    assert {(json.loads(r[3])["id"], json.loads(r[3])["updatedAt"]) for r in rows} == current


@pytest.mark.parametrize(
    ("switch", "setting"),
    [("shopify_token", "SHOPIFY_ACCESS_TOKEN"), ("shopify_forbidden", "read_orders"),
     ("shopify_api_versions", "SHOPIFY_API_VERSION")],
)
def test_auth_permission_and_version_errors_are_not_retried(tmp_path, source, switch, setting):
    with FakeApi(source) as server:
        resources = _resources(server, str(tmp_path / "a.duckdb"))
        # a version Shopify does not know at all (newer than any it serves) answers 404; an expired
        # one would be served forward instead (test_shopify_auth)
        value = {"shopify_token": "another-token", "shopify_forbidden": True, "shopify_api_versions": {"2024-01"}}
        setattr(server, switch, value[switch])
        result = dg.materialize(
            [raw_shopify_orders],
            resources=resources,
            tags={"dagster/asset_partition_range_start": PAGED[0], "dagster/asset_partition_range_end": PAGED[1]},
            raise_on_error=False,
        )
        graphql_requests = len(server.requests_for(SHOPIFY))
    assert not result.success
    assert graphql_requests == 1  # no connector retry, and no step retry
    types = [e.event_type_value for e in result.all_events]
    assert "STEP_UP_FOR_RETRY" not in types and "STEP_RESTARTED" not in types
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert setting in failure.step_failure_data.error.message


def test_klaviyo_predictions_that_failed_are_fetched_on_the_next_run(tmp_path):
    profiles = make_profiles(240)
    db = str(tmp_path / "a.duckdb")
    with FakeApi((), profiles) as server:
        resources = {
            "duckdb": DuckDBResource(database=db),
            "klaviyo": KlaviyoResource(api_key=server.klaviyo_key, base_url=server.base_url, page_size=50, **FAST),
        }
        # From page 2 on, every request with predictive_analytics fails (the re-request of
        # this same run too): the sync goes on without it.
        server.fault(KLAVIYO, "predictive_503", at=range(2, 10_000))
        first = dg.materialize([raw_klaviyo_profiles], resources=resources)
        server.faults.clear()
        missing_after_first = first.asset_materializations_for_node("raw__klaviyo_profiles")[0].metadata[
            "profiles_missing_predictions"].value
        with duckdb.connect(db, read_only=True) as conn:
            lacking = conn.execute(
                "select count(*) from raw.klaviyo_profiles "
                "where not json_exists(payload, '$.attributes.predictive_analytics')"
            ).fetchone()[0]
        # The second, healthy run: nothing new was updated, yet the predictions come back.
        second = dg.materialize([raw_klaviyo_profiles], resources=resources)
        by_id = [r for r in server.requests_for(KLAVIYO) if r.query.get("filter", "").startswith("any(id,")]
    assert lacking == 240 - 50 == missing_after_first
    meta = second.asset_materializations_for_node("raw__klaviyo_profiles")[0].metadata
    # The incremental sync re-reads only the newest second (one profile); the rest come by id.
    refetched = meta["refetched_for_predictions"].value
    assert 180 <= refetched <= 190 and meta["profiles_missing_predictions"].value == 0
    assert len([r for r in by_id if r.status == 200]) == -(-refetched // 50)
    with duckdb.connect(db, read_only=True) as conn:
        stored = {
            pid: json.loads(payload)["attributes"]["predictive_analytics"]
            for pid, payload in conn.execute(
                "select profile_id, payload::varchar from raw.klaviyo_profiles").fetchall()
        }
        versions = conn.execute("select count(*), count(distinct profile_id) from raw.klaviyo_profiles").fetchone()
    assert versions == (240, 240)  # the re-fetched version replaced the one without predictions
    assert stored == {p["id"]: p["attributes"]["predictive_analytics"] for p in profiles}


def test_klaviyo_predictions_still_failing_stay_on_the_list(tmp_path):
    profiles = make_profiles(120)
    db = str(tmp_path / "a.duckdb")
    with FakeApi((), profiles) as server:
        resources = {
            "duckdb": DuckDBResource(database=db),
            "klaviyo": KlaviyoResource(api_key=server.klaviyo_key, base_url=server.base_url, page_size=50, **FAST),
        }
        server.fault(KLAVIYO, "predictive_503", times=None)
        first = dg.materialize([raw_klaviyo_profiles], resources=resources)
        second = dg.materialize([raw_klaviyo_profiles], resources=resources)
        server.faults.clear()
        third = dg.materialize([raw_klaviyo_profiles], resources=resources)

    def meta(result, key):
        return result.asset_materializations_for_node("raw__klaviyo_profiles")[0].metadata[key].value

    assert first.success and second.success and third.success
    assert meta(first, "profiles_missing_predictions") == 120
    assert meta(second, "profiles_missing_predictions") == 120
    assert meta(third, "profiles_missing_predictions") == 0


def test_klaviyo_refetch_is_capped_per_run_and_resumes(tmp_path):
    profiles = make_profiles(120)
    db = str(tmp_path / "a.duckdb")
    with FakeApi((), profiles) as server:
        klaviyo = KlaviyoResource(api_key=server.klaviyo_key, base_url=server.base_url, page_size=50,
                                  predictive_refetch_max_profiles=70, **FAST)
        resources = {"duckdb": DuckDBResource(database=db), "klaviyo": klaviyo}
        server.fault(KLAVIYO, "predictive_503", times=None)
        dg.materialize([raw_klaviyo_profiles], resources=resources)  # all 120 without predictions
        server.faults.clear()
        second = dg.materialize([raw_klaviyo_profiles], resources=resources)
        third = dg.materialize([raw_klaviyo_profiles], resources=resources)

    def meta(result, key):
        return result.asset_materializations_for_node("raw__klaviyo_profiles")[0].metadata[key].value

    assert meta(second, "refetched_for_predictions") == 70
    assert meta(second, "profiles_missing_predictions") == 120 - 70 - 1  # the sync re-read the newest one
    assert meta(third, "refetched_for_predictions") == 49
    assert meta(third, "profiles_missing_predictions") == 0
