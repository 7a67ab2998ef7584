"""ShopifyResource with a Dev Dashboard app: the client credentials grant against the fake, over real HTTP.

The token is obtained on first use, renewed before `expires_in` runs out (also in the middle of
a bulk operation), renewed once after an unexpected 401, and then the run fails naming the
settings. No client secret or granted token appears in logs, errors, asset metadata, tables or
Dagster's run storage. The served API version is compared with the requested one.
"""

from __future__ import annotations

import json
from datetime import datetime

import dagster as dg
import duckdb
import pytest

from clv_platform.resources.http import AuthenticationError, ConnectorError
from clv_platform.resources.shopify import DEFAULT_API_VERSION, ShopifyResource, shopify_credentials
from clv_platform_tests.fake_api import SHOPIFY, SHOPIFY_TOKEN, FakeApi, checksum, make_order_nodes

START = datetime(2024, 12, 1)
END = datetime(2025, 3, 1)


def _granted(fake: FakeApi, fast: dict, **changes) -> ShopifyResource:
    settings = dict(shop_domain=fake.base_url, client_id=fake.client_id, client_secret=fake.client_secret,
                    page_size=6, bulk_poll_interval_seconds=2.0, **fast)
    return ShopifyResource(**{**settings, **changes})


def _assert_exact(got: list[dict], expected: list[dict]) -> None:
    assert checksum(got) == checksum(expected)


def test_token_is_obtained_with_the_client_credentials_grant(fake, order_nodes, fast, log, assert_secret_absent):
    resource = _granted(fake, fast)

    _assert_exact(list(resource.iter_orders(START, END, log)), order_nodes)

    grants = fake.requests_for(SHOPIFY_TOKEN)
    assert len(grants) == 1
    grant = grants[0]
    assert grant.method == "POST" and grant.path == "/admin/oauth/access_token"
    assert grant.headers["content-type"] == "application/x-www-form-urlencoded"
    assert grant.body == {"grant_type": "client_credentials", "client_id": fake.client_id,
                          "client_secret": fake.client_secret}
    (token,) = fake.granted_tokens
    calls = fake.requests_for(SHOPIFY)
    assert len(calls) > 10 and all(r.headers["x-shopify-access-token"] == token for r in calls)
    assert all(r.path == f"/admin/api/{DEFAULT_API_VERSION}/graphql.json" for r in calls)
    assert_secret_absent(fake.client_secret)
    assert_secret_absent(token)
    assert fake.client_secret not in repr(resource)


def test_token_is_renewed_before_it_expires_in_the_middle_of_a_bulk_operation(fake, order_nodes, fast, clock, log):
    fake.token_lifetime = 5  # seconds of the fake clock; the bulk polls wait 2 s each
    fake.bulk_polls_to_complete = 6
    resource = _granted(fake, fast, token_refresh_margin_seconds=1.0)

    _assert_exact(list(resource.bulk_orders(START, log)), order_nodes)

    assert sum(clock.sleeps) >= 10
    grants = fake.requests_for(SHOPIFY_TOKEN)
    assert len(grants) >= 3 and len(fake.granted_tokens) == len(grants)
    # renewed in time: Shopify never had to reject an expired token
    assert {r.status for r in fake.requests_for(SHOPIFY)} == {200}
    used = {r.headers["x-shopify-access-token"] for r in fake.requests_for(SHOPIFY)}
    assert used == set(fake.granted_tokens)


def test_unexpected_401_renews_the_token_once_and_carries_on(fake, order_nodes, fast, log, caplog):
    fake.fault(SHOPIFY, "revoke_tokens", at={3})  # the app was reinstalled, say, mid-run

    _assert_exact(list(_granted(fake, fast).iter_orders(START, END, log)), order_nodes)

    assert len(fake.requests_for(SHOPIFY_TOKEN)) == 2
    assert [r.status for r in fake.requests_for(SHOPIFY)].count(401) == 1
    assert "renewing the access token once" in caplog.text


def test_401_again_after_renewal_fails_naming_the_settings(fake, fast, clock, log, assert_secret_absent):
    fake.accept_granted_tokens = False

    with pytest.raises(AuthenticationError) as info:
        list(_granted(fake, fast).iter_orders(START, END, log))

    message = str(info.value)
    assert "SHOPIFY_CLIENT_ID" in message and "SHOPIFY_CLIENT_SECRET" in message and "401" in message
    assert len(fake.requests_for(SHOPIFY_TOKEN)) == 2  # the first token and exactly one renewal
    assert len(fake.requests_for(SHOPIFY)) == 2 and clock.sleeps == []
    for secret in (fake.client_secret, *fake.granted_tokens):
        assert_secret_absent(secret, info.value)


def test_wrong_client_secret_fails_fast_naming_the_setting(fake, fast, clock, log, assert_secret_absent):
    wrong = "shpss_wrong_but_still_secret_424242"

    with pytest.raises(ConnectorError) as info:
        list(_granted(fake, fast, client_secret=wrong).iter_orders(START, END, log))

    assert "SHOPIFY_CLIENT_SECRET" in str(info.value) and "installed" in str(info.value)
    assert fake.requests_for(SHOPIFY) == [] and clock.sleeps == []
    assert_secret_absent(wrong, info.value)


def test_credentials_are_bound_with_env_vars():
    app = shopify_credentials(True)
    assert app == {"client_id": dg.EnvVar("SHOPIFY_CLIENT_ID"), "client_secret": dg.EnvVar("SHOPIFY_CLIENT_SECRET")}
    assert shopify_credentials(False) == {"access_token": dg.EnvVar("SHOPIFY_ACCESS_TOKEN")}


def test_raw_asset_keeps_secrets_out_of_logs_metadata_tables_and_run_storage(
    data_env, clock, fast, monkeypatch, caplog
):
    """A whole run of `raw/shopify_orders` with client credentials and an expired API version."""
    from dagster_duckdb import DuckDBResource

    from clv_platform.ingestion.assets import raw_shopify_orders

    source = make_order_nodes(14, start=datetime(2025, 1, 1), span_days=1, big_order_every=0)
    database = data_env / "clv.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    with FakeApi(source, clock=clock.now) as server:
        monkeypatch.setenv("SHOPIFY_CLIENT_ID", server.client_id)
        monkeypatch.setenv("SHOPIFY_CLIENT_SECRET", server.client_secret)
        resources = {
            "duckdb": DuckDBResource(database=str(database)),
            "shopify": ShopifyResource(shop_domain=server.base_url, **shopify_credentials(True),
                                       api_version="2025-10", page_size=4, **fast),
        }
        result = dg.materialize([raw_shopify_orders], resources=resources, partition_key="2025-01-01",
                                instance=instance)
        secrets = [server.client_secret, *server.granted_tokens]
    assert result.success and len(secrets) == 2

    (materialization,) = result.asset_materializations_for_node("raw__shopify_orders")
    metadata = materialization.metadata
    # Shopify fell forward from the expired 2025-10 to its oldest supported version, and said so
    assert metadata["shopify_api_version_requested"].value == "2025-10"
    assert metadata["shopify_api_version_served"].value == "2026-01"
    records = instance.all_logs(result.run_id)
    warnings = [r.user_message for r in records if r.level == 30]  # logging.WARNING, in the run log
    assert any("served Admin API version 2026-01 instead of the requested 2025-10" in w for w in warnings)
    assert metadata["shop_timezone"].value == "America/Los_Angeles"

    stored = [repr(record) for record in records]
    stored.append(repr(instance.get_run_by_id(result.run_id)))
    stored.append(json.dumps({k: repr(v) for k, v in metadata.items()}))
    with duckdb.connect(str(database)) as conn:
        for (schema, table) in conn.execute(
            "select table_schema, table_name from information_schema.tables"
        ).fetchall():
            stored.extend(str(row) for row in conn.execute(f'select * from "{schema}"."{table}"').fetchall())
        assert conn.execute("select iana_timezone, currency_code from raw.shopify_shop").fetchall() == [
            ("America/Los_Angeles", "USD")]
        assert conn.execute("select count(*) from raw.shopify_orders").fetchone()[0] == len(source)
    text = "\n".join(stored) + caplog.text
    assert "shopify_api_version_served" in text and "access token obtained" in text  # the run's events are in it
    for secret in secrets:
        assert secret not in text


def _assert_refunds_read_whole_in_one_follow_up(nodes, node, clock, fast, log):
    """Read `nodes` with two refund lines per page: every node comes back exact, and only `node`'s
    refunds needed the one follow-up query that reads them whole."""
    with FakeApi(nodes, clock=clock.now) as server:
        resource = ShopifyResource(shop_domain=server.base_url, access_token=server.shopify_token,
                                   refund_lines_page_size=2, **fast)
        got = list(resource.iter_orders(datetime(2024, 12, 1), datetime(2025, 2, 1), log))
        follow_ups = server.requests_for(SHOPIFY, op="refunds")
    _assert_exact(got, nodes)
    assert len(follow_ups) == 1 and follow_ups[0].body["variables"]["id"] == node["id"]


def test_refund_with_more_lines_than_one_page_is_fetched_whole(clock, fast, log):
    """A refund returning more lines than `refund_lines_page_size` is re-read with all its lines."""
    nodes = make_order_nodes(8, start=datetime(2025, 1, 1), span_days=2, big_order_every=0)
    node = nodes[3]
    node["lineItems"]["nodes"] = [dict(node["lineItems"]["nodes"][0], id=f"gid://shopify/LineItem/77{k}")
                                  for k in range(3)]
    node["refunds"] = [{
        "id": "gid://shopify/Refund/7700", "createdAt": node["updatedAt"],
        "totalRefundedSet": {"shopMoney": {"amount": "30.00", "currencyCode": "USD"}},
        "refundLineItems": {"nodes": [{"lineItem": {"id": f"gid://shopify/LineItem/77{k}", "isGiftCard": False},
                                       "quantity": 1,
                                       "subtotalSet": {"shopMoney": {"amount": "10.00", "currencyCode": "USD"}}}
                                      for k in range(3)]},
        "refundShippingLines": {"nodes": []},
    }]
    _assert_refunds_read_whole_in_one_follow_up(nodes, node, clock, fast, log)


def test_refund_with_more_shipping_lines_than_one_page_is_fetched_whole(clock, fast, log):
    """Refunded shipping (`refundShippingLines`) pages like the refunded lines: a refund with more
    shipping lines than `refund_lines_page_size` is re-read whole, not stored with part of them."""
    nodes = make_order_nodes(8, start=datetime(2025, 1, 1), span_days=2, big_order_every=0)
    node = nodes[3]
    node["refunds"] = [{
        "id": "gid://shopify/Refund/7800", "createdAt": node["updatedAt"],
        "totalRefundedSet": {"shopMoney": {"amount": "9.00", "currencyCode": "USD"}},
        "refundLineItems": {"nodes": []},
        "refundShippingLines": {"nodes": [
            {"subtotalAmountSet": {"shopMoney": {"amount": "3.00", "currencyCode": "USD"}},
             "taxAmountSet": {"shopMoney": {"amount": "0.00", "currencyCode": "USD"}}} for _ in range(3)]},
    }]
    _assert_refunds_read_whole_in_one_follow_up(nodes, node, clock, fast, log)
