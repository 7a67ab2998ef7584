"""Canary secrets through every error path, then a grep of everything the platform wrote (issue 17).

The fake servers echo the credential in each kind of error a real (or misbehaving) API can
return: GraphQL errors at HTTP 200 (ACCESS_DENIED and generic), 401/403/404 bodies with the
credential straddling character 300 (where cut-then-redact used to leak its start), 5xx
bodies retried until exhausted, for Shopify and Klaviyo. The runs go through Dagster with
an on-disk instance, and the run-failure sensor records each failure. Afterwards no 8
character piece of either canary may appear in DAGSTER_HOME, the data folder, or the
captured stdout/stderr and log records.
"""


import logging
import traceback
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest
from dagster_duckdb import DuckDBResource

from clv_platform.automation.monitoring_sensors import record_run_failure_sensor
from clv_platform.ingestion.assets import raw_klaviyo_profiles, raw_shopify_orders
from clv_platform.resources import http
from clv_platform.resources.klaviyo import KlaviyoResource
from clv_platform.resources.shopify import ShopifyResource
from clv_platform_tests.fake_api import KLAVIYO, SHOPIFY, FakeApi, make_order_nodes, make_profiles

# No recognisable prefix and dashes inside: only exact-value redaction can catch these,
# so the test does not pass merely because a pattern happens to match.
SHOPIFY_CANARY = "cnry-Shop-7Q2w9XkL-m4Pz8RtV-3bN6yH1d"
KLAVIYO_CANARY = "cnry-Klav-5Tg8Wq2Z-j6Hs0PcV-9xLe4MuR"
FAST = {"connect_timeout_seconds": 2.0, "timeout_seconds": 5.0, "max_retries": 2,
        "backoff_base_seconds": 0.0, "backoff_max_seconds": 0.0}
RANGE = {"dagster/asset_partition_range_start": "2025-01-01", "dagster/asset_partition_range_end": "2025-01-31"}


def pieces(secret: str, size: int = 8) -> set[str]:
    return {secret[i:i + size] for i in range(len(secret) - size + 1)}


CANARY_PIECES = pieces(SHOPIFY_CANARY) | pieces(KLAVIYO_CANARY)


def leaks_in(data: bytes) -> set[str]:
    return {p for p in CANARY_PIECES if p.encode() in data}


@pytest.fixture
def env(tmp_path, monkeypatch):
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    data.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("CLV_DATA_DIR", str(data))
    monkeypatch.setenv("CLV_DUCKDB_PATH", str(data / "clv.duckdb"))
    monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", SHOPIFY_CANARY)
    monkeypatch.setenv("KLAVIYO_API_KEY", KLAVIYO_CANARY)
    monkeypatch.setattr(http, "sleep", lambda seconds: None)
    return home, data


# (route, fault params) of each error path; every one ends in a failed run.
SHOPIFY_PATHS = {
    "graphql_access_denied_200": dict(code="ACCESS_DENIED", straddle=300),
    "graphql_generic_error_200": dict(code="SOMETHING_ELSE", straddle=300),
    "graphql_internal_error_200_retried": dict(code="INTERNAL_SERVER_ERROR", straddle=300),
    "http_401": dict(http_status=401, straddle=300),
    "http_403": dict(http_status=403, straddle=300),
    "http_404": dict(http_status=404, straddle=300),
    "http_503_retried": dict(http_status=503, straddle=300),
    "http_400": dict(http_status=400, straddle=300),
}
KLAVIYO_PATHS = {
    "http_401": dict(http_status=401, straddle=300),
    "http_403": dict(http_status=403, straddle=300),
    "http_404": dict(http_status=404, straddle=300),
    "http_503_retried": dict(http_status=503, straddle=300),
}


@dg.op
def fetch_orders_without_step_retries(context: dg.OpExecutionContext, shopify: ShopifyResource) -> None:
    """The retried (5xx) paths, run as a plain op: the asset's RetryPolicy would wait 30 s + 90 s."""
    list(shopify.iter_orders(datetime(2025, 1, 1), datetime(2025, 2, 1), context.log))


@dg.op
def fetch_profiles_without_step_retries(context: dg.OpExecutionContext, klaviyo: KlaviyoResource) -> None:
    list(klaviyo.iter_profiles(None, context.log))


def _record_failure(instance: dg.DagsterInstance, result, duckdb_resource: DuckDBResource) -> None:
    context = dg.build_run_status_sensor_context(
        sensor_name="record_run_failures",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={"duckdb": duckdb_resource},
    ).for_run_failure()
    record_run_failure_sensor(context)


def test_no_piece_of_a_canary_secret_reaches_disk_or_output(env, capfd, caplog):
    home, data = env
    caplog.set_level(logging.DEBUG)
    failures: list[BaseException] = []
    runs = 0
    with dg.DagsterInstance.get() as instance, FakeApi(
        make_order_nodes(20, start=datetime(2025, 1, 2), span_days=20, big_order_every=0),
        make_profiles(30),
        shopify_token=SHOPIFY_CANARY,
        klaviyo_key=KLAVIYO_CANARY,
    ) as server:
        shopify = ShopifyResource(shop_domain=server.base_url, access_token=dg.EnvVar("SHOPIFY_ACCESS_TOKEN"),
                                  page_size=5, **FAST)
        klaviyo = KlaviyoResource(api_key=dg.EnvVar("KLAVIYO_API_KEY"), base_url=server.base_url, page_size=10,
                                  **FAST)
        duckdb_resource = DuckDBResource(database=str(data / "clv.duckdb"))

        def run(route: str, params: dict, job) -> None:
            nonlocal runs
            server.faults.clear()
            server.fault(route, "echo_headers", times=None, **params)
            result = job()
            runs += 1
            assert not result.success
            # 4xx-type errors fail at once: no step retry (the 5xx paths run without a policy)
            assert "STEP_UP_FOR_RETRY" not in {e.event_type_value for e in result.all_events}
            _record_failure(instance, result, duckdb_resource)
            for event in result.all_events:
                if event.event_type_value == "STEP_FAILURE":
                    failures.append(event)

        for name, params in SHOPIFY_PATHS.items():
            if name.endswith("_retried"):
                job = dg.GraphDefinition(name="g", node_defs=[fetch_orders_without_step_retries]).to_job(
                    name=f"shopify_{name}", resource_defs={"shopify": shopify})
                run(SHOPIFY, params, lambda job=job: job.execute_in_process(instance=instance, raise_on_error=False))
            else:
                run(SHOPIFY, params, lambda: dg.materialize(
                    [raw_shopify_orders], instance=instance, tags=RANGE, raise_on_error=False,
                    resources={"duckdb": duckdb_resource, "shopify": shopify}))
        for name, params in KLAVIYO_PATHS.items():
            if name.endswith("_retried"):
                job = dg.GraphDefinition(name="g", node_defs=[fetch_profiles_without_step_retries]).to_job(
                    name=f"klaviyo_{name}", resource_defs={"klaviyo": klaviyo})
                run(KLAVIYO, params, lambda job=job: job.execute_in_process(instance=instance, raise_on_error=False))
            else:
                run(KLAVIYO, params, lambda: dg.materialize(
                    [raw_klaviyo_profiles], instance=instance, raise_on_error=False,
                    resources={"duckdb": duckdb_resource, "klaviyo": klaviyo}))
        echoed = [r for r in server.requests if r.faults.get("echo_headers")]

    # The faults really put the canaries in front of the platform, straddling character 300.
    assert runs == len(SHOPIFY_PATHS) + len(KLAVIYO_PATHS) and len(echoed) >= runs
    assert len(failures) == runs

    leaks: dict[str, set[str]] = {}
    files = [p for root in (home, data) for p in Path(root).rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files) and (data / "clv.duckdb").exists()
    for path in files:
        found = leaks_in(path.read_bytes())
        if found:
            leaks[str(path)] = found
    captured = capfd.readouterr()
    for name, text in (("stdout", captured.out), ("stderr", captured.err), ("log records", caplog.text)):
        found = leaks_in(text.encode())
        if found:
            leaks[name] = found
    for event in failures:
        found = leaks_in(str(event.step_failure_data.error.to_string()).encode())
        if found:
            leaks[f"failure of {event.step_key}"] = found
    assert leaks == {}


def test_redaction_happens_before_truncation():
    from clv_platform.resources.redaction import excerpt

    secret = "cnry-Cut-7Q2w9XkL-m4Pz8RtV-3bN6yH1d"
    body = "x" * 290 + secret + " trailing"
    cut = excerpt(body, 300, [secret])
    assert not leaks_in_text(cut, secret) and cut.endswith("…") and "***" in cut


def leaks_in_text(text: str, secret: str) -> bool:
    return any(p in text for p in pieces(secret))


def test_every_connector_exception_text_is_redacted(env):
    """The exception objects themselves (what Dagster serialises) carry no canary."""
    _, _ = env
    with FakeApi(make_order_nodes(5, start=datetime(2025, 1, 2), span_days=5, big_order_every=0),
                 shopify_token=SHOPIFY_CANARY) as server:
        shopify = ShopifyResource(shop_domain=server.base_url, access_token=SHOPIFY_CANARY, **FAST)
        for params in SHOPIFY_PATHS.values():
            server.faults.clear()
            server.fault(SHOPIFY, "echo_headers", times=None, **params)
            with pytest.raises(http.ConnectorError) as raised:
                list(shopify.iter_orders(datetime(2025, 1, 1), datetime(2025, 2, 1)))
            text = "".join(traceback.format_exception(raised.value)) + repr(raised.value)
            assert not leaks_in_text(text, SHOPIFY_CANARY), params
