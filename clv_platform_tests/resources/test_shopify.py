"""ShopifyResource against the fake Shopify over real HTTP: paging, faults, throttling, bulk, auth.

Every fault test loads the window again under the fault and requires the exact records of
the source (count + sha256 of canonical JSON), with no duplicates.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import dagster as dg
import pytest

from clv_platform.resources.http import (
    AuthenticationError,
    ConnectorError,
    NotFoundError,
    PermissionDeniedError,
    RetriesExhaustedError,
)
from clv_platform.resources.shopify import ORDER_KEYS, ShopifyResource
from clv_platform_tests.fake_api import BULK_DOWNLOAD, SHOPIFY, FakeApi, checksum, make_order_nodes

START = datetime(2024, 12, 1)
END = datetime(2025, 3, 1)


def _in_window(nodes: list[dict], start: datetime, end: datetime) -> list[dict]:
    lo, hi = start.replace(tzinfo=timezone.utc), end.replace(tzinfo=timezone.utc)
    return [n for n in nodes if lo <= datetime.fromisoformat(n["updatedAt"].replace("Z", "+00:00")) < hi]


def _assert_exact(got: list[dict], expected: list[dict]) -> None:
    assert checksum(got) == checksum(expected)
    assert len({(n["id"], n["updatedAt"]) for n in got}) == len(got)


def _copy(resource: ShopifyResource, **changes) -> ShopifyResource:
    return ShopifyResource(**{**resource.model_dump(), **changes})


def test_paged_orders_match_source_across_many_pages(fake, shopify, order_nodes, log):
    got = list(shopify.iter_orders(START, END, log))

    _assert_exact(got, order_nodes)
    assert all(tuple(n) == ORDER_KEYS for n in got)
    pages = fake.requests_for(SHOPIFY, op="orders")
    assert len(pages) == -(-len(order_nodes) // shopify.page_size) >= 10
    big = [n for n in order_nodes if len(n["lineItems"]["nodes"]) > 50]
    assert big and len(fake.requests_for(SHOPIFY, op="line_items")) == sum(
        -(-len(n["lineItems"]["nodes"]) // 50) - 1 for n in big
    )
    first = pages[0]
    assert first.path == "/admin/api/2026-10/graphql.json"
    assert first.headers["x-shopify-access-token"] == fake.shopify_token
    variables = first.body["variables"]
    assert variables["query"] == "updated_at:>='2024-12-01T00:00:00Z' AND updated_at:<'2025-03-01T00:00:00Z'"
    assert variables["first"] == shopify.page_size and variables["after"] is None
    assert "sortKey: UPDATED_AT" in first.body["query"]
    cursors = [p.body["variables"]["after"] for p in pages[1:]]
    assert all(cursors) and len(set(cursors)) == len(cursors)


def test_window_bounds_are_half_open(fake, shopify, order_nodes):
    ordered = sorted(order_nodes, key=lambda n: n["updatedAt"])
    lo = datetime.fromisoformat(ordered[10]["updatedAt"].replace("Z", "+00:00")).replace(tzinfo=None)
    hi = datetime.fromisoformat(ordered[40]["updatedAt"].replace("Z", "+00:00")).replace(tzinfo=None)

    got = list(shopify.iter_orders(lo, hi))

    _assert_exact(got, _in_window(order_nodes, lo, hi))
    assert all(n["updatedAt"] != ordered[40]["updatedAt"] for n in got)
    assert any(n["updatedAt"] == ordered[10]["updatedAt"] for n in got)


FAULTS = {
    "429 with Retry-After": dict(kind="status", at={2, 4}, status=429, retry_after=2),
    "500 twice": dict(kind="status", times=2, status=500),
    "502": dict(kind="status", at={3}, status=502),
    "503 on line-item follow-ups": dict(kind="status", times=2, op="line_items", status=503),
    "THROTTLED with HTTP 200": dict(kind="throttled", at={2}),
    "THROTTLED with HTTP 429": dict(kind="throttled", at={3}, http_status=429),
    "slower than the read timeout": dict(kind="slow", at={2}, delay=5.0),
    "truncated JSON body": dict(kind="truncated", at={2}),
    "body shorter than Content-Length": dict(kind="truncated", at={3}, mode="short_read"),
    "connection reset": dict(kind="reset", at={2, 5}),
    "record repeated on adjacent pages": dict(kind="duplicate", at={2, 3, 4}),
    "cost bucket nearly empty": dict(kind="bucket_low", at={2}, available=10),
}


@pytest.mark.parametrize("name", FAULTS)
def test_paged_orders_exact_under_fault(fake, shopify, order_nodes, clock, log, name):
    spec = dict(FAULTS[name])
    fault = fake.fault(SHOPIFY, spec.pop("kind"), **spec)

    got = list(shopify.iter_orders(START, END, log))

    _assert_exact(got, order_nodes)
    assert fault.fired >= 1


def test_repeated_records_are_dropped(fake, shopify, order_nodes, log, caplog):
    fake.fault(SHOPIFY, "duplicate", at={1, 2, 3}, op="orders")

    _assert_exact(list(shopify.iter_orders(START, END, log)), order_nodes)

    assert "3 repeated records dropped" in caplog.text


def test_retry_after_is_slept_and_capped(fake, shopify, order_nodes, clock):
    fake.fault(SHOPIFY, "status", at={2}, status=429, retry_after=2)
    fake.fault(SHOPIFY, "status", at={4}, status=429, retry_after=3600)

    got = list(_copy(shopify, retry_after_cap_seconds=7).iter_orders(START, END))

    _assert_exact(got, order_nodes)
    assert 2 in clock.sleeps and 7 in clock.sleeps and 3600 not in clock.sleeps


@pytest.mark.parametrize("http_status", [200, 429])
def test_throttled_waits_for_refill_and_retries_same_page(fake, shopify, order_nodes, clock, http_status):
    fake.fault(SHOPIFY, "throttled", at={2}, op="orders", available=0, http_status=http_status)
    fake.fault(SHOPIFY, "throttled", at={5}, op="orders", available=0, http_status=http_status)

    got = list(shopify.iter_orders(START, END))

    _assert_exact(got, order_nodes)
    calls = fake.requests_for(SHOPIFY)
    throttled = [r for r in calls if "throttled" in r.faults]
    assert len(throttled) == 2
    for request in throttled:
        retry = calls[calls.index(request) + 1]
        assert retry.body == request.body
    # A page requests 2 + page_size * (2 + 50) points; with 0 available at 100/s that is the wait.
    refill = (2 + shopify.page_size * 52) / 100
    assert sum(1 for s in clock.sleeps if refill <= s <= refill + 0.1) == 2
    assert fake.throttled_responses == 2


def test_paces_to_the_cost_bucket_and_never_gets_throttled(fake, shopify, order_nodes, clock, log, caplog):
    fake.bucket_maximum, fake.bucket_restore, fake._bucket_available = 1000.0, 50.0, 1000.0

    got = list(shopify.iter_orders(START, END, log))

    _assert_exact(got, order_nodes)
    assert fake.throttled_responses == 0
    assert sum(clock.sleeps) > 1.0
    assert "pacing to Shopify's cost bucket" in caplog.text


def test_query_over_max_cost_shrinks_the_page(fake, shopify, order_nodes, caplog, log):
    got = list(_copy(shopify, page_size=250).iter_orders(START, END, log))

    _assert_exact(got, order_nodes)
    sizes = [r.body["variables"]["first"] for r in fake.requests_for(SHOPIFY, op="orders")]
    assert sizes[0] == 250 and 1 <= sizes[1] < 250 and 2 + sizes[1] * 52 <= 1000
    assert "page size 250 ->" in caplog.text


def test_transient_faults_outlasting_retries_raise(fake, shopify, clock, log, assert_secret_absent):
    fake.fault(SHOPIFY, "status", times=None, status=503)

    with pytest.raises(RetriesExhaustedError) as info:
        list(shopify.iter_orders(START, END, log))

    assert len(fake.requests_for(SHOPIFY)) == shopify.max_retries + 1
    assert "HTTP 503" in str(info.value) and info.value.status == 503
    assert_secret_absent(fake.shopify_token, info.value)


@pytest.mark.parametrize(
    "case, error, setting",
    [
        ("wrong token", AuthenticationError, "SHOPIFY_ACCESS_TOKEN"),
        ("missing scope", PermissionDeniedError, "read_orders"),
        ("wrong api version", NotFoundError, "SHOPIFY_API_VERSION"),
        ("graphql access denied", PermissionDeniedError, "read_orders"),
    ],
)
def test_auth_errors_fail_fast_naming_the_setting(
    fake, shopify, clock, log, assert_secret_absent, case, error, setting
):
    secret = fake.shopify_token
    resource = shopify
    if case == "wrong token":
        secret = "shpat_wrong_but_still_secret_987654"
        resource = _copy(shopify, access_token=secret)
    elif case == "missing scope":
        fake.shopify_forbidden = True
    elif case == "wrong api version":
        resource = _copy(shopify, api_version="2026-02")  # not a release: 404
    else:
        fake.fault(SHOPIFY, "access_denied", times=None)

    with pytest.raises(error) as info:
        list(resource.iter_orders(START, END, log))

    assert setting in str(info.value)
    assert len(fake.requests) == 1 and clock.sleeps == []
    assert_secret_absent(secret, info.value)
    assert secret not in repr(resource)


def test_empty_token_is_a_clear_error(shopify):
    with pytest.raises(ConnectorError, match="SHOPIFY_CLIENT_ID and SHOPIFY_CLIENT_SECRET .* or the legacy SHOPIFY_ACCESS_TOKEN"):
        list(_copy(shopify, access_token="").iter_orders(START, END))


def test_token_bound_with_envvar(fake, shopify, order_nodes, monkeypatch, fast):
    monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", fake.shopify_token)
    resource = ShopifyResource(
        shop_domain=fake.base_url, access_token=dg.EnvVar("SHOPIFY_ACCESS_TOKEN"), page_size=15, **fast
    )
    with dg.build_resources({"shopify": resource}) as resources:
        got = list(resources.shopify.iter_orders(START, END))
    _assert_exact(got, order_nodes)


# ------------------------------------------------------------------ bulk operations


def test_bulk_yields_the_same_nodes_as_paging(fake, shopify, order_nodes, clock, log):
    paged = list(shopify.iter_orders(START, END, log))
    bulk = list(shopify.bulk_orders(START, log))

    _assert_exact(bulk, order_nodes)
    assert checksum(bulk) == checksum(paged)
    assert all(tuple(n) == ORDER_KEYS for n in bulk)
    download = fake.requests_for(BULK_DOWNLOAD)
    assert len(download) == 1
    assert "x-shopify-access-token" not in download[0].headers
    assert 2.0 in clock.sleeps  # polled at the configured interval
    start = fake.requests_for(SHOPIFY, op="bulk_start")[0]
    assert "updated_at:>='2024-12-01T00:00:00Z'" in start.body["variables"]["query"]
    assert "__typename" in start.body["variables"]["query"]


def test_bulk_children_not_next_to_their_parent(fake, shopify, order_nodes):
    fake.bulk_jsonl_grouped = False
    _assert_exact(list(shopify.bulk_orders(START)), order_nodes)


def test_bulk_ungrouped_by_default_children_before_their_orders(fake, shopify, order_nodes):
    """API 2026-01+: groupObjects defaults to false, so the JSONL promises no parent-child order."""
    got = list(shopify.bulk_orders(START))

    _assert_exact(got, order_nodes)
    start = fake.requests_for(SHOPIFY, op="bulk_start")[0]
    assert "groupObjects" not in start.body["query"]  # the default (ungrouped) output is read as it is
    (data,) = fake._files.values()
    lines = [json.loads(line) for line in data.decode().splitlines()]
    first_order = next(i for i, r in enumerate(lines) if "__parentId" not in r)
    assert first_order > 0 and "__parentId" in lines[0]  # a line item came before any order
    by_id = {n["id"]: n for n in got}
    some = next(n for n in order_nodes if len(n["lineItems"]["nodes"]) > 1)
    assert [i["id"] for i in by_id[some["id"]]["lineItems"]["nodes"]] == [i["id"] for i in some["lineItems"]["nodes"]]


def _bulk_client():
    from clv_platform.resources.http import HttpClient, RetryPolicy, make_session

    return HttpClient("Shopify", make_session(), (1.0, 1.0), RetryPolicy(), {})


def test_bulk_child_of_an_order_missing_from_the_file_is_an_error(shopify, tmp_path):
    path = tmp_path / "result.jsonl"
    path.write_bytes(
        b'{"__typename":"LineItem","id":"gid://shopify/LineItem/1","__parentId":"gid://shopify/Order/9"}\n'
        b'{"__typename":"Order","id":"gid://shopify/Order/1","updatedAt":"2025-01-01T00:00:00Z"}\n'
    )
    rebuilt = shopify._rebuild_orders(path, _bulk_client())
    with pytest.raises(ConnectorError, match="line items of 1 order.*gid://shopify/Order/9"):
        next(rebuilt)  # before any order is yielded


def test_bulk_lines_are_grouped_by_order_in_file_order(shopify, tmp_path):
    """Children before, between and after their orders, a repeated order line and a blank line:
    each order once (its first line), its line items in file order."""
    lines = [
        {"id": "L3", "__parentId": "O2", "title": "c"},
        {"id": "O1", "updatedAt": "2025-01-01T00:00:00Z", "name": "first"},
        {"id": "L1", "__parentId": "O1", "title": "a"},
        {"id": "O2", "updatedAt": "2025-01-02T00:00:00Z", "name": "second"},
        {"id": "L4", "__parentId": "O2", "title": "d"},
        {"id": "O1", "updatedAt": "2025-01-01T00:00:00Z", "name": "repeat"},
        {"id": "L2", "__parentId": "O1", "title": "b"},
    ]
    path = tmp_path / "result.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines[:3]) + "\n\n"
                    + "\n".join(json.dumps(line) for line in lines[3:]) + "\n")
    got = {o["id"]: o for o in shopify._rebuild_orders(path, _bulk_client())}
    assert sorted(got) == ["O1", "O2"] and got["O1"]["name"] == "first"
    assert [i["title"] for i in got["O1"]["lineItems"]["nodes"]] == ["a", "b"]
    assert [i["title"] for i in got["O2"]["lineItems"]["nodes"]] == ["c", "d"]
    assert all(tuple(o) == ORDER_KEYS for o in got.values())


def test_bulk_failed_once_is_restarted(fake, shopify, order_nodes, caplog, log):
    fake.fault(SHOPIFY, "bulk_failed", times=1)

    _assert_exact(list(shopify.bulk_orders(START, log)), order_nodes)

    assert len(fake.requests_for(SHOPIFY, op="bulk_start")) == 2
    assert "restarting (1/1)" in caplog.text


def test_bulk_failing_again_gives_a_clear_error(fake, shopify):
    fake.fault(SHOPIFY, "bulk_failed", times=2)

    with pytest.raises(ConnectorError, match="ended FAILED.*INTERNAL_SERVER_ERROR"):
        list(shopify.bulk_orders(START))


def test_bulk_already_in_progress_waits_and_retries(fake, shopify, order_nodes, clock):
    fake.fault(SHOPIFY, "bulk_busy", times=2)

    _assert_exact(list(shopify.bulk_orders(START)), order_nodes)

    assert clock.sleeps.count(5.0) == 2
    assert len(fake.requests_for(SHOPIFY, op="bulk_start")) == 3


def test_bulk_busy_for_too_long_gives_a_clear_error(fake, shopify):
    fake.fault(SHOPIFY, "bulk_busy", times=None)

    with pytest.raises(ConnectorError, match="another bulk query kept running"):
        list(_copy(shopify, bulk_busy_max_waits=2).bulk_orders(START))


def test_bulk_with_no_objects_yields_nothing(fake, shopify):
    assert list(shopify.bulk_orders(datetime(2030, 1, 1))) == []
    assert fake.requests_for(BULK_DOWNLOAD) == []


@pytest.mark.parametrize(
    "spec",
    [
        dict(kind="status", times=2, status=500),
        dict(kind="truncated", times=1),
        dict(kind="truncated", times=1, mode="short_read"),
        dict(kind="reset", times=1),
        dict(kind="slow", times=1, delay=5.0),
    ],
    ids=["500", "truncated", "short_read", "reset", "slow"],
)
def test_bulk_download_faults_redo_the_whole_file(fake, shopify, order_nodes, spec):
    spec = dict(spec)
    fault = fake.fault(BULK_DOWNLOAD, spec.pop("kind"), **spec)

    _assert_exact(list(shopify.bulk_orders(START)), order_nodes)

    assert fault.fired >= 1 and len(fake.requests_for(BULK_DOWNLOAD)) >= 2


def test_bulk_poll_faults_are_retried(fake, shopify, order_nodes):
    fake.fault(SHOPIFY, "status", times=2, op="bulk_poll", status=502)
    fake.fault(SHOPIFY, "throttled", times=1, op="bulk_start")

    _assert_exact(list(shopify.bulk_orders(START)), order_nodes)


# ------------------------------------------------------------------ the platform's demo store


def test_demo_store_orders_round_trip_paged_and_bulk(clock, fast):
    demo_store = pytest.importorskip("clv_platform.ingestion.demo_store")
    store = demo_store.generate(demo_store.DemoStoreParams(n_customers=150, seed=3))
    source = list(store.order_nodes())
    with FakeApi(source, clock=clock.now) as server:
        expected = server.orders  # the latest version of each order, as a live store serves it
        resource = ShopifyResource(shop_domain=server.base_url, access_token=server.shopify_token, page_size=15,
                                   bulk_poll_interval_seconds=1.0, **fast)
        server.fault(SHOPIFY, "status", at={3}, status=503)
        server.fault(SHOPIFY, "duplicate", at={4})
        paged = list(resource.iter_orders(datetime(2024, 1, 1), datetime(2027, 1, 1)))
        bulk = list(resource.bulk_orders(datetime(2024, 1, 1)))
    _assert_exact(paged, expected)
    _assert_exact(bulk, expected)


# ------------------------------------------------------------------ through the real raw asset


def test_raw_asset_loads_exact_rows_under_faults(data_env, clock, fast):
    """The live resource behind `raw/shopify_orders`: DuckDB holds exactly the source versions."""
    import duckdb
    from dagster_duckdb import DuckDBResource

    from clv_platform.ingestion.assets import raw_shopify_orders

    source = make_order_nodes(30, start=datetime(2025, 1, 1), span_days=2, big_order_every=5)
    assert {n["updatedAt"][:10] for n in source} == {"2025-01-01", "2025-01-02"}
    with FakeApi(source, clock=clock.now) as server:
        server.fault(SHOPIFY, "status", at={2}, status=503)
        server.fault(SHOPIFY, "truncated", at={4})
        server.fault(SHOPIFY, "duplicate", at={2}, op="orders")
        resources = {
            "duckdb": DuckDBResource(database=str(data_env / "clv.duckdb")),
            "shopify": ShopifyResource(shop_domain=server.base_url, access_token=server.shopify_token,
                                       page_size=4, **fast),
        }
        for day in ("2025-01-01", "2025-01-02"):
            assert dg.materialize([raw_shopify_orders], resources=resources, partition_key=day).success
    with duckdb.connect(str(data_env / "clv.duckdb")) as conn:
        rows = conn.execute("select payload::varchar from raw.shopify_orders").fetchall()
    payloads = [json.loads(payload) for (payload,) in rows]
    _assert_exact(payloads, source)
