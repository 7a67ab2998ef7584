"""Live Shopify client: orders from the GraphQL Admin API, paged or through a bulk operation.

Both paths yield order nodes in exactly the shape of `data_contracts.md` (the same keys in
the same order, `lineItems` as `{"nodes": [...]}` with every line item), so raw storage and
staging cannot tell them apart. Faults are handled by the shared loop in `http.py`; this
module adds what is Shopify-specific:

- cost-based throttling: it paces on `extensions.cost.throttleStatus` before each request,
  and on a GraphQL `THROTTLED` error (HTTP 200 or 429) waits for the bucket to refill and
  retries the same page;
- `MAX_COST_EXCEEDED`: the page size shrinks until one query fits the single-query limit
  (an order page with `lineItems(first:50)` costs far more than 1000 points at 250 orders);
- orders with more than one page of line items get follow-up `order(id:)` queries;
- an order version repeated on two adjacent pages is yielded once;
- the bulk result is downloaded to a temporary file first (retried whole), so a broken
  download can never yield half a file twice; it is fetched without the access token,
  because the signed result URL lives on another host;
- credentials: a Dev Dashboard app's client credentials grant (token fetched when needed,
  renewed before it expires and once after an unexpected 401) or a legacy static token;
- the API version Shopify served (`X-Shopify-API-Version`) is compared with the requested one;
- the query asks for each field by its meaning (shop vs presentment currency, tax and shipping,
  currentQuantity, refunded lines); `data_contracts.md` documents the node.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import IO, Any

import dagster as dg
import duckdb
import requests
from pydantic import Field, PrivateAttr

from clv_platform.core.scratch import scratch_dir
from clv_platform.resources import http
from clv_platform.resources.http import (
    AuthenticationError,
    ConnectorError,
    HttpClient,
    HttpConnectorResource,
    PermissionDeniedError,
    RateLimited,
    RecentKeys,
    RequestRejectedError,
    TransientBodyError,
    make_session,
    utc_iso,
)
from clv_platform.resources.redaction import excerpt
from clv_platform.resources.shopify_acquisition import ACQUISITION_FIELDS, ACQUISITION_KEYS
from clv_platform.resources.storage import duckdb_config

_MONEY = "shopMoney{amount currencyCode}"
# A bulk result is copied to its spool file in blocks of this size (requests' iter_lines reads 512 bytes at a time).
_DOWNLOAD_BLOCK = 1 << 20
# Lines of a bulk result fetched from DuckDB at a time while orders are rebuilt.
_REBUILD_ROWS = 10_000
_NO_KEY = object()  # before the first group of lines (an order id may be null)
# The newest stable Admin API version (versions are quarterly, YYYY-01/04/07/10, each supported
# for 12 months; Shopify silently serves the oldest supported one for an expired version).
DEFAULT_API_VERSION = "2026-10"
# LineItem.isGiftCard: "Whether the line item represents the purchase of a gift card" (on LineItem since
# 2024-04, shopify.dev changelog "Field isGiftCard on all line item types"): a gift card sold is not
# a product sale (Shopify books it as a liability; it is revenue when redeemed), so staging leaves it
# out of net sales. A refund line names its line item's isGiftCard too (RefundLineItem.lineItem: LineItem!).
LINE_ITEM_FIELDS = (
    f"id quantity currentQuantity sku title isGiftCard product{{id productType}} "
    f"originalUnitPriceSet{{{_MONEY}}} totalDiscountSet{{{_MONEY}}}"
)
# Field meanings (shopify.dev, Order object): currencyCode is the *shop* currency,
# presentmentCurrencyCode the customer's; totalPriceSet includes tax, shipping and duties;
# subtotalPriceSet is the line items after discounts, before returns (tax included only when
# taxesIncluded); totalDiscountsSet holds order- and line-level discounts before returns.
# Customer.email is deprecated since 2025-04: defaultEmailAddress{emailAddress} replaces it.
_ORDER_HEAD = (
    "id name createdAt processedAt updatedAt cancelledAt currencyCode presentmentCurrencyCode test email "
    "displayFinancialStatus displayFulfillmentStatus taxesIncluded "
    f"totalPriceSet{{{_MONEY} presentmentMoney{{amount currencyCode}}}} "
    f"subtotalPriceSet{{{_MONEY}}} currentTotalPriceSet{{{_MONEY}}} totalDiscountsSet{{{_MONEY}}} "
    f"totalTaxSet{{{_MONEY}}} totalShippingPriceSet{{{_MONEY}}} "
    "customer{id defaultEmailAddress{emailAddress}} "
    f"{ACQUISITION_FIELDS}"
)
REFUND_LINE_FIELDS = f"lineItem{{id isGiftCard}} quantity subtotalSet{{{_MONEY}}}"
# Refund.refundShippingLines (a RefundShippingLineConnection): the shipping a refund gave back,
# subtotalAmountSet and taxAmountSet each; staging does not count it as products returned.
REFUND_SHIPPING_LINE_FIELDS = f"subtotalAmountSet{{{_MONEY}}} taxAmountSet{{{_MONEY}}}"
_REFUND_HEAD = f"id createdAt totalRefundedSet{{{_MONEY}}}"
# Both connections of a refund page by $refundLinesFirst (10 on an orders page, 250 when one
# order's refunds are re-read); the bulk query cannot nest them inside the `refunds` list.
_REFUND_CONNECTIONS = ("refundLineItems", "refundShippingLines")
_REFUNDS = (
    f"refunds{{{_REFUND_HEAD} refundLineItems(first: $refundLinesFirst) {{ "
    f"pageInfo {{ hasNextPage endCursor }} nodes {{ {REFUND_LINE_FIELDS} }} }} "
    f"refundShippingLines(first: $refundLinesFirst) {{ "
    f"pageInfo {{ hasNextPage endCursor }} nodes {{ {REFUND_SHIPPING_LINE_FIELDS} }} }} }}"
)

# Top-level keys of an order node and of a line item, in contract order.
ORDER_KEYS = (
    "id", "name", "createdAt", "processedAt", "updatedAt", "cancelledAt", "currencyCode",
    "presentmentCurrencyCode", "test", "email", "displayFinancialStatus", "displayFulfillmentStatus",
    "taxesIncluded", "totalPriceSet", "subtotalPriceSet", "currentTotalPriceSet", "totalDiscountsSet",
    "totalTaxSet", "totalShippingPriceSet", "customer", "lineItems", "refunds",
) + ACQUISITION_KEYS
LINE_ITEM_KEYS = (
    "id", "quantity", "currentQuantity", "sku", "title", "isGiftCard", "product", "originalUnitPriceSet",
    "totalDiscountSet",
)
REFUND_KEYS = ("id", "createdAt", "totalRefundedSet", "refundLineItems", "refundShippingLines")
REFUND_LINE_KEYS = ("lineItem", "quantity", "subtotalSet")
REFUND_SHIPPING_LINE_KEYS = ("subtotalAmountSet", "taxAmountSet")

ORDERS_PAGE_QUERY = (
    "query ClvOrders($first: Int!, $after: String, $query: String, $lineItemsFirst: Int!, "
    "$refundLinesFirst: Int!) { "
    "orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) { "
    "pageInfo { hasNextPage endCursor } "
    f"nodes {{ {_ORDER_HEAD} "
    f"lineItems(first: $lineItemsFirst) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {LINE_ITEM_FIELDS} }} }} "
    f"{_REFUNDS} }} }} }}"
)
LINE_ITEMS_QUERY = (
    "query ClvOrderLineItems($id: ID!, $first: Int!, $after: String) { "
    "order(id: $id) { lineItems(first: $first, after: $after) { "
    f"pageInfo {{ hasNextPage endCursor }} nodes {{ {LINE_ITEM_FIELDS} }} }} }} }}"
)
# An order's refunds with all their refunded lines and shipping: for the bulk path (a connection
# inside the `refunds` list is not part of the bulk query) and for a refund with more lines (or
# shipping lines) than one page.
REFUNDS_QUERY = (
    "query ClvOrderRefunds($id: ID!, $refundLinesFirst: Int!) { order(id: $id) { "
    f"{_REFUNDS} }} }}"
)
SHOP_QUERY = "query ClvShop { shop { ianaTimezone currencyCode } }"
BULK_RUN_MUTATION = (
    "mutation ClvBulkOrders($query: String!) { bulkOperationRunQuery(query: $query) { "
    "bulkOperation { id status createdAt } userErrors { code field message } } }"
)
BULK_POLL_QUERY = (
    "query ClvBulkStatus($id: ID!) { node(id: $id) { ... on BulkOperation { "
    "id status errorCode createdAt completedAt objectCount fileSize url partialDataUrl } } }"
)
_BULK_TERMINAL_FAILURES = {"FAILED", "CANCELED", "CANCELLED", "EXPIRED"}
# Added to every computed bucket wait: Shopify rounds the levels it reports.
_SAFETY_SECONDS = 0.05
_COST_IN_MESSAGE = re.compile(r"Query cost is (\d+), which exceeds the single query max cost limit \((\d+)\)")


def bulk_orders_query(updated_min: datetime) -> str:
    """The bulk form of the orders query: connections as edges/node with `__typename`, no `first`.

    Refunds come without their refund line items and refunded shipping lines (connections inside
    the `refunds` list); `bulk_orders` fetches those per refunded order afterwards.
    """
    return (
        f"{{ orders(query: \"updated_at:>='{utc_iso(updated_min)}'\", sortKey: UPDATED_AT) {{ edges {{ node {{ "
        f"__typename {_ORDER_HEAD} "
        f"lineItems {{ edges {{ node {{ __typename {LINE_ITEM_FIELDS} }} }} }} "
        f"refunds{{{_REFUND_HEAD}}} }} }} }} }}"
    )


def _shape_refund(refund: dict) -> dict:
    lines = (refund.get("refundLineItems") or {}).get("nodes") or []
    shipping = (refund.get("refundShippingLines") or {}).get("nodes") or []
    shaped = {k: refund.get(k) for k in REFUND_KEYS if k not in _REFUND_CONNECTIONS}
    shaped["refundLineItems"] = {"nodes": [{k: line.get(k) for k in REFUND_LINE_KEYS} for line in lines]}
    shaped["refundShippingLines"] = {"nodes": [{k: s.get(k) for k in REFUND_SHIPPING_LINE_KEYS} for s in shipping]}
    return shaped


def _refund_has_more(refund: dict | None) -> str | None:
    """The first connection of the refund with another page (refunded lines or shipping), if any."""
    return next((name for name in _REFUND_CONNECTIONS
                 if (((refund or {}).get(name) or {}).get("pageInfo") or {}).get("hasNextPage")), None)


def shape_order(order: dict, line_items: list[dict]) -> dict:
    """An order node in contract shape and key order, whichever path fetched it."""
    shaped = {}
    for key in ORDER_KEYS:
        if key == "lineItems":
            shaped[key] = {"nodes": [{k: item.get(k) for k in LINE_ITEM_KEYS} for item in line_items]}
        elif key == "refunds":
            shaped[key] = [_shape_refund(r) for r in order.get(key) or []]
        else:
            shaped[key] = order.get(key)
    return shaped


def shopify_credentials(client_credentials: bool) -> dict[str, Any]:
    """The credential fields of a ShopifyResource, bound with EnvVar to the configured kind.

    A Dev Dashboard app (SHOPIFY_CLIENT_ID + SHOPIFY_CLIENT_SECRET, client credentials grant)
    wins over a legacy SHOPIFY_ACCESS_TOKEN (`Settings.shopify_uses_client_credentials`); the
    values are read at run time only.
    """
    if client_credentials:
        return {"client_id": dg.EnvVar("SHOPIFY_CLIENT_ID"), "client_secret": dg.EnvVar("SHOPIFY_CLIENT_SECRET")}
    return {"access_token": dg.EnvVar("SHOPIFY_ACCESS_TOKEN")}


class _QueryTooExpensive(Exception):
    """The query's requested cost is above the single-query limit; a smaller page is needed."""

    def __init__(self, cost: float, max_cost: float):
        super().__init__(f"query cost {cost} exceeds the single query limit {max_cost}")
        self.cost = cost
        self.max_cost = max_cost


class _CostPacer:
    """Tracks Shopify's leaky bucket from `extensions.cost` and waits before an unaffordable query.

    The expected cost of the next query is the requested cost last seen for the same kind of
    query; the bucket level is projected forward by the restore rate since it was reported.
    """

    def __init__(self, client: HttpClient, bucket_size: float, restore_rate: float):
        self.client = client
        self.maximum = bucket_size
        self.available = bucket_size
        self.restore_rate = restore_rate
        self.reported_at = http.clock()
        self.expected_cost: dict[str, float] = {}

    def observe(self, kind: str, body: Any) -> None:
        cost = ((body or {}).get("extensions") or {}).get("cost") or {}
        requested = cost.get("requestedQueryCost")
        if isinstance(requested, (int, float)):
            self.expected_cost[kind] = float(requested)
        status = cost.get("throttleStatus") or {}
        if isinstance(status.get("currentlyAvailable"), (int, float)):
            self.available = float(status["currentlyAvailable"])
            self.reported_at = http.clock()
        if isinstance(status.get("maximumAvailable"), (int, float)):
            self.maximum = float(status["maximumAvailable"])
        if isinstance(status.get("restoreRate"), (int, float)) and status["restoreRate"] > 0:
            self.restore_rate = float(status["restoreRate"])

    def refill_delay(self, needed: float) -> float:
        projected = min(self.maximum, self.available + self.restore_rate * (http.clock() - self.reported_at))
        return max(0.0, (min(needed, self.maximum) - projected) / self.restore_rate)

    def before(self, kind: str) -> None:
        needed = self.expected_cost.get(kind)
        if needed is None:
            return
        delay = self.refill_delay(needed)
        if delay > 0:
            delay += _SAFETY_SECONDS
            self.client.wait(
                delay,
                f"pacing to Shopify's cost bucket: ~{self.available:.0f}/{self.maximum:.0f} points available, "
                f"next query needs {needed:.0f}, restore {self.restore_rate:.0f}/s",
            )


class _AccessToken:
    """The Admin API token of one run: a static legacy token, or one from the client credentials grant.

    A granted token is fetched when first needed and fetched again `refresh_margin` seconds
    before its `expires_in` runs out, so a backfill or bulk operation longer than the token's
    24 hours keeps going. Every token is added to the client's redaction list.
    """

    def __init__(self, resource: ShopifyResource, client: HttpClient):
        self.resource = resource
        self.client = client
        self.value: str | None = resource.access_token or None
        self.expires_at: float | None = None
        self.grants = 0

    @property
    def granted(self) -> bool:
        return not self.resource.access_token

    def get(self) -> str:
        if self.granted and (self.value is None or http.clock() >= (self.expires_at or 0)):
            self.renew("expired" if self.value else "first request")
        assert self.value is not None
        return self.value

    def renew(self, reason: str) -> None:
        """Fetch a new token with the client credentials grant (form-encoded, as Shopify documents)."""
        resource = self.resource
        url = f"{resource._base_url()}/admin/oauth/access_token"

        def consume(response: requests.Response) -> dict:
            body = http.parse_json(response)
            if not isinstance(body, dict) or not body.get("access_token"):
                raise ConnectorError(
                    "Shopify's token endpoint answered without an access_token: check SHOPIFY_CLIENT_ID / "
                    "SHOPIFY_CLIENT_SECRET"
                )
            return body

        hint = (
            f"Shopify refused the client credentials grant (HTTP {{status}}) for {resource.shop_domain}: check "
            "SHOPIFY_CLIENT_ID and SHOPIFY_CLIENT_SECRET (Dev Dashboard > app > Settings) and that the app is "
            "installed on this store"
        )
        body = self.client.request(
            "POST",
            url,
            what="access token (client credentials grant)",
            consume=consume,
            data={
                "grant_type": "client_credentials",
                "client_id": resource.client_id,
                "client_secret": resource.client_secret,
            },
            fatal_hints={status: hint.format(status=status) for status in (400, 401, 403, 404)},
        )
        token = str(body["access_token"])
        self.client.secrets = (*self.client.secrets, token)
        lifetime = float(body.get("expires_in") or 86_400)
        margin = min(resource.token_refresh_margin_seconds, lifetime / 2)
        self.value = token
        self.expires_at = http.clock() + lifetime - margin
        self.grants += 1
        self.client.info(
            f"Shopify: access token obtained with the client credentials grant ({reason}); valid {lifetime:.0f}s, "
            f"renewed after {lifetime - margin:.0f}s; scope {body.get('scope')}"
        )


class ShopifyResource(HttpConnectorResource):
    """Shopify GraphQL Admin API client for orders (paged by `updatedAt`, or one bulk operation).

    Credentials, either:
    - a Dev Dashboard app (every app created since 2026-01-01): `client_id=dg.EnvVar("SHOPIFY_CLIENT_ID")`,
      `client_secret=dg.EnvVar("SHOPIFY_CLIENT_SECRET")`; the client credentials grant gives a token
      valid 24 hours, renewed by the client before it expires and once after an unexpected 401;
    - a legacy custom-app token: `access_token=dg.EnvVar("SHOPIFY_ACCESS_TOKEN")`.
    `shop_domain` is `mystore.myshopify.com` (or a full base URL such as `http://127.0.0.1:8080` for a fake).
    """

    shop_domain: str = Field(description="mystore.myshopify.com, or a full base URL (tests, proxies).")
    access_token: str = Field(
        default="", repr=False,
        description="Legacy Admin API access token; bind with EnvVar('SHOPIFY_ACCESS_TOKEN'). Empty when the app "
        "uses client credentials.",
    )
    client_id: str = Field(default="", repr=False, description="Dev Dashboard app client ID; EnvVar('SHOPIFY_CLIENT_ID').")
    client_secret: str = Field(
        default="", repr=False, description="Dev Dashboard app client secret; EnvVar('SHOPIFY_CLIENT_SECRET')."
    )
    token_refresh_margin_seconds: float = Field(
        default=600.0, description="Renew a granted token this long before its expires_in runs out."
    )
    api_version: str = Field(
        default=DEFAULT_API_VERSION,
        description="Admin API version (YYYY-MM, quarterly; each supported 12 months). A run warns when Shopify "
        "serves another version.",
    )
    page_size: int = Field(
        default=15,
        description="Orders per page (max 250). With lineItems(first: 50) each order costs ~52 points, so 15 stays under the 1000-point single-query limit; shrinks further if Shopify says a query costs too much.",
    )
    line_items_page_size: int = Field(default=50, description="Line items fetched with each order page.")
    refund_lines_page_size: int = Field(default=10, description="Refunded lines (and refunded shipping lines) fetched with each refund.")
    bucket_size: float = Field(default=2000.0, description="Cost bucket size assumed until Shopify reports it.")
    restore_rate: float = Field(default=100.0, description="Bucket restore rate (points/s) assumed until reported.")
    bulk_poll_interval_seconds: float = Field(default=3.0, description="Wait between bulk operation polls.")
    bulk_timeout_seconds: float = Field(default=6 * 3600.0, description="Give up on a bulk operation after this.")
    bulk_max_restarts: int = Field(default=1, description="Restarts of a FAILED/CANCELED/EXPIRED bulk operation.")
    bulk_busy_wait_seconds: float = Field(default=30.0, description="Wait when another bulk query is running.")
    bulk_busy_max_waits: int = Field(default=20, description="How often to wait for another bulk query.")

    # Per-run state, not configuration: the versions Shopify answered with, and the token.
    _served_versions: set = PrivateAttr(default_factory=set)
    _token: Any = PrivateAttr(default=None)

    def served_api_versions(self) -> dict[str, str]:
        """{"requested": ..., "served": ...} as seen in `X-Shopify-API-Version` so far in this run."""
        return {"requested": self.api_version, "served": ", ".join(sorted(self._served_versions)) or "unknown"}

    def _base_url(self) -> str:
        domain = self.shop_domain.strip().rstrip("/")
        if not domain:
            raise ConnectorError("SHOPIFY_SHOP_DOMAIN is empty: set it to mystore.myshopify.com")
        if domain.startswith(("http://", "https://")):
            return domain
        if "." not in domain:
            domain = f"{domain}.myshopify.com"
        return f"https://{domain}"

    def graphql_url(self) -> str:
        return f"{self._base_url()}/admin/api/{self.api_version}/graphql.json"

    def _setting(self) -> str:
        return "SHOPIFY_ACCESS_TOKEN" if self.access_token else "SHOPIFY_CLIENT_ID / SHOPIFY_CLIENT_SECRET"

    def _client(self, log: Any) -> HttpClient:
        if not self.access_token and not (self.client_id and self.client_secret):
            raise ConnectorError(
                "Shopify credentials are missing: set SHOPIFY_CLIENT_ID and SHOPIFY_CLIENT_SECRET (Dev Dashboard "
                "app, client credentials grant) or the legacy SHOPIFY_ACCESS_TOKEN"
            )
        setting = self._setting()
        client = self._http_client(
            service="Shopify",
            headers={},  # requests sets the JSON / form Content-Type per request
            fatal_hints={
                401: f"Shopify rejected the access token (HTTP 401): check {setting} and that the app "
                "has read_orders scope",
                403: f"Shopify refused access (HTTP 403): the app behind {setting} needs the read_orders "
                "scope (read_all_orders for orders older than 60 days)",
                404: f"Shopify returned HTTP 404 for {self.graphql_url()}: check SHOPIFY_SHOP_DOMAIN "
                f"({self.shop_domain}) and SHOPIFY_API_VERSION ({self.api_version})",
            },
            secrets=tuple(s for s in (self.access_token, self.client_secret, self.client_id) if s),
            log=log,
        )
        # One token per run: the chunks of a backfill share it until it is due for renewal.
        token = self._token
        if token is None or token.resource is not self:
            token = _AccessToken(self, client)
            self._token = token
        else:
            token.client = client
            client.secrets = (*client.secrets, *(v for v in (token.value,) if v))
        return client

    def _graphql(
        self,
        client: HttpClient,
        pacer: _CostPacer,
        kind: str,
        query: str,
        variables: dict,
        validate: Any = None,
    ) -> dict:
        """One GraphQL call, paced, with THROTTLED retried in place; returns `data`.

        `validate(data)` checks the shape the caller relies on and raises `TransientBodyError`
        when it is missing, so a malformed HTTP-200 answer is retried like any other bad body
        and, if it persists, fails the fetch instead of being read as "no more data".

        A 401 with a granted token renews it once and repeats the call; a second 401 fails.
        """

        def consume(response: requests.Response) -> Any:
            self._check_version(response, client)
            body = http.parse_json(response)
            pacer.observe(kind, body)
            self._check_errors(body, pacer)
            if validate is not None:
                validate(body["data"])
            return body

        def delay_from_body(body: Any) -> float | None:
            pacer.observe(kind, body)
            return self._throttle_delay(body, pacer)

        token = self._token
        for attempt in (1, 2):
            pacer.before(kind)
            try:
                body = client.request(
                    "POST",
                    self.graphql_url(),
                    what=f"GraphQL {kind}",
                    json_body={"query": query, "variables": variables},
                    headers={"X-Shopify-Access-Token": token.get()},
                    consume=consume,
                    rate_limit_delay=delay_from_body,
                )
                return body["data"]
            except AuthenticationError:
                if not token.granted:
                    raise
                if attempt == 2:
                    raise AuthenticationError(
                        "Shopify rejected a freshly granted access token (HTTP 401) twice in a row: check "
                        "SHOPIFY_CLIENT_ID / SHOPIFY_CLIENT_SECRET, that the app is still installed on "
                        f"{self.shop_domain} and that it has the read_orders scope"
                    ) from None
                client.warning(f"Shopify answered HTTP 401 to GraphQL {kind}; renewing the access token once")
                token.renew("HTTP 401")
        raise AssertionError("unreachable")

    def _check_version(self, response: requests.Response, client: HttpClient) -> None:
        served = response.headers.get("X-Shopify-API-Version")
        if not served or served in self._served_versions:
            return
        self._served_versions.add(served)
        if served != self.api_version:
            client.warning(
                f"Shopify served Admin API version {served} instead of the requested {self.api_version}: "
                f"{self.api_version} is unsupported or unknown; set SHOPIFY_API_VERSION to a supported version"
            )

    def shop_info(self, log: Any = None) -> dict:
        """`shop { ianaTimezone currencyCode }`: the time zone of order days and the shop currency."""
        client = self._client(log)
        pacer = _CostPacer(client, self.bucket_size, self.restore_rate)
        try:
            shop = self._graphql(client, pacer, "shop", SHOP_QUERY, {}).get("shop") or {}
        finally:
            client.session.close()
        if not shop.get("ianaTimezone") or not shop.get("currencyCode"):
            raise ConnectorError(f"Shopify shop query returned no ianaTimezone/currencyCode: {shop}")
        return {"ianaTimezone": shop["ianaTimezone"], "currencyCode": shop["currencyCode"]}

    def _throttle_delay(self, body: Any, pacer: _CostPacer) -> float:
        cost = ((body or {}).get("extensions") or {}).get("cost") or {}
        requested = cost.get("requestedQueryCost")
        if not isinstance(requested, (int, float)):
            return max(1.0, pacer.maximum / 10 / pacer.restore_rate)
        return pacer.refill_delay(float(requested)) + _SAFETY_SECONDS

    def raise_if_throttled(self, body: Any, pacer: _CostPacer) -> tuple[list[dict], list[str | None]]:
        """The body's GraphQL errors and their codes, after raising `RateLimited` on THROTTLED.

        Shared by the reads here and the writes of `shopify_write.py`; a body that is not a JSON
        object is a transient error (a proxy page, a cut connection).
        """
        if not isinstance(body, dict):
            raise TransientBodyError("GraphQL response is not a JSON object")
        errors = body.get("errors") or []
        if isinstance(errors, str):
            errors = [{"message": errors}]
        codes = [((e or {}).get("extensions") or {}).get("code") for e in errors]
        if "THROTTLED" in codes:
            raise RateLimited(self._throttle_delay(body, pacer), "GraphQL THROTTLED: waiting for the cost bucket")
        return errors, codes

    def _check_errors(self, body: Any, pacer: _CostPacer) -> None:
        errors, codes = self.raise_if_throttled(body, pacer)
        for error, code in zip(errors, codes):
            message = str((error or {}).get("message", ""))
            if code == "MAX_COST_EXCEEDED" or _COST_IN_MESSAGE.search(message):
                ext = (error or {}).get("extensions") or {}
                found = _COST_IN_MESSAGE.search(message)
                cost = ext.get("cost") or (found and found.group(1)) or 0
                max_cost = ext.get("maxCost") or (found and found.group(2)) or 1000
                raise _QueryTooExpensive(float(cost), float(max_cost))
            if code == "ACCESS_DENIED":
                # The message may echo request headers: redact before it goes anywhere.
                raise PermissionDeniedError(
                    "Shopify denied access: the app behind SHOPIFY_ACCESS_TOKEN needs the read_orders scope "
                    "(and read_customers / read_products for customer and product fields). Shopify said: "
                    + excerpt(message, 500, pacer.client.secrets)
                )
        if codes and any(code in {"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT"} for code in codes):
            first = str((errors[0] or {}).get("message"))
            raise TransientBodyError(f"GraphQL error {codes}: {excerpt(first, 500, pacer.client.secrets)}")
        if errors:
            # Any other GraphQL error (invalid field, argument, query) repeats on retry.
            raise RequestRejectedError(
                f"Shopify GraphQL error: {excerpt(json.dumps(errors), 500, pacer.client.secrets)}"
            )
        if not isinstance(body.get("data"), dict):
            raise TransientBodyError("GraphQL response has no data")

    def iter_orders(self, updated_min: datetime, updated_max: datetime, log: Any = None) -> Iterator[dict]:
        """Every order version with `updated_min <= updatedAt < updated_max`, oldest update first."""
        client = self._client(log)
        pacer = _CostPacer(client, self.bucket_size, self.restore_rate)
        search = f"updated_at:>='{utc_iso(updated_min)}' AND updated_at:<'{utc_iso(updated_max)}'"
        first = max(1, min(self.page_size, 250))
        after: str | None = None
        recent = RecentKeys()
        pages = yielded = repeats = 0
        try:
            while True:
                variables = {"first": first, "after": after, "query": search,
                             "lineItemsFirst": self.line_items_page_size,
                             "refundLinesFirst": self.refund_lines_page_size}
                try:
                    data = self._graphql(client, pacer, "orders page", ORDERS_PAGE_QUERY, variables,
                                         validate=_valid_orders_page)
                except _QueryTooExpensive as exc:
                    first = self._smaller_page(first, exc, client)
                    continue
                connection = data["orders"]
                pages += 1
                recent.new_page()
                for node in connection["nodes"]:
                    if not recent.first_time((node.get("id"), node.get("updatedAt"))):
                        repeats += 1
                        continue
                    if any(_refund_has_more(r) for r in node.get("refunds") or []):
                        node = {**node, "refunds": self._all_refunds(client, pacer, node["id"])}
                    yield shape_order(node, self._all_line_items(client, pacer, node))
                    yielded += 1
                info = connection["pageInfo"]
                client.info(f"Shopify orders: page {pages} done, {yielded} orders so far ({search})")
                if not info.get("hasNextPage"):
                    break
                if not info.get("endCursor"):
                    raise ConnectorError("Shopify said hasNextPage but sent no endCursor; cannot continue safely")
                after = info["endCursor"]
        finally:
            client.session.close()
        client.info(
            f"Shopify orders: {yielded} order versions in {pages} pages, {repeats} repeated records dropped, "
            f"{client.rate_limit_waits} rate-limit waits, {client.waited_seconds:.1f}s waited"
        )

    def _smaller_page(self, first: int, exc: _QueryTooExpensive, client: HttpClient) -> int:
        if first <= 1:
            raise ConnectorError(
                f"Shopify: one order costs more than the single query limit ({exc}); lower line_items_page_size"
            ) from None
        smaller = max(1, min(first - 1, int(first * exc.max_cost / max(exc.cost, 1.0) * 0.9)))
        client.warning(f"Shopify: {exc}; page size {first} -> {smaller}")
        return smaller

    def _all_line_items(self, client: HttpClient, pacer: _CostPacer, node: dict) -> list[dict]:
        """The order's line items, following `lineItems.pageInfo` past the first page."""
        connection = node.get("lineItems") or {}
        items = list(connection.get("nodes") or [])
        info = connection.get("pageInfo") or {}
        while info.get("hasNextPage"):
            variables = {"id": node["id"], "first": self.line_items_page_size, "after": info.get("endCursor")}
            data = self._graphql(client, pacer, "order line items", LINE_ITEMS_QUERY, variables,
                                 validate=_valid_line_items_page)
            more = data["order"]["lineItems"]
            items.extend(more["nodes"])
            info = more["pageInfo"]
            if info["hasNextPage"] and not info.get("endCursor"):
                raise ConnectorError(f"Shopify said hasNextPage for the line items of {node['id']} but sent no "
                                     "endCursor; cannot continue safely")
        return items

    def _all_refunds(self, client: HttpClient, pacer: _CostPacer, order_id: str) -> list[dict]:
        """The order's refunds with all their refunded lines and shipping lines (one query; 250 is the page limit)."""
        data = self._graphql(client, pacer, "order refunds", REFUNDS_QUERY,
                             {"id": order_id, "refundLinesFirst": 250})
        refunds = (data.get("order") or {}).get("refunds")
        if refunds is None:
            raise ConnectorError(f"Shopify returned no refunds for order {order_id} that has refunds")
        for refund in refunds:
            more = _refund_has_more(refund)
            if more:
                raise ConnectorError(
                    f"Shopify refund {refund.get('id')} of order {order_id} has more than 250 {more} nodes; "
                    "the connector does not page them and will not store a partial refund"
                )
        return refunds

    def bulk_orders(self, updated_min: datetime, log: Any = None) -> Iterator[dict]:
        """Every order version with `updatedAt >= updated_min`, through one bulk operation.

        Yields the same node shape as `iter_orders`.
        """
        client = self._client(log)
        pacer = _CostPacer(client, self.bucket_size, self.restore_rate)
        query = bulk_orders_query(updated_min)
        try:
            operation = self._completed_bulk_operation(client, pacer, query)
            url = operation.get("url")
            count = _object_count(operation)
            if not url:
                if count == 0:
                    client.info("Shopify bulk operation completed with no objects: no orders to load")
                    return
                raise ConnectorError(f"Shopify bulk operation {operation.get('id')} completed with {count} "
                                     "objects but no result URL")
            with self._downloaded(client, url, count, "bulk-orders") as path:
                for order in self._rebuild_orders(path, client):
                    if order.get("refunds"):
                        # The bulk query cannot carry the refunds' line items: fetch them per refunded
                        # order, keeping only the refunds this order version has (a refund made since
                        # the bulk snapshot belongs to a later version).
                        known = {r.get("id") for r in order["refunds"]}
                        refunds = [r for r in self._all_refunds(client, pacer, order["id"]) if r.get("id") in known]
                        order = shape_order({**order, "refunds": refunds}, order["lineItems"]["nodes"])
                    yield order
        finally:
            client.session.close()

    def _completed_bulk_operation(self, client: HttpClient, pacer: _CostPacer, query: str) -> dict:
        restarts = 0
        while True:
            operation_id = self._start_bulk(client, pacer, query)
            operation = self._poll_bulk(client, pacer, operation_id)
            if operation.get("status") == "COMPLETED" and not operation.get("partialDataUrl"):
                return operation
            partial = " with only a partial result (partialDataUrl; never loaded)" if operation.get(
                "partialDataUrl") else ""
            if restarts >= self.bulk_max_restarts:
                raise ConnectorError(
                    f"Shopify bulk operation {operation_id} ended {operation.get('status')}{partial} "
                    f"(errorCode {operation.get('errorCode')}) after {restarts} restart(s); rerun later or "
                    "use the paged path"
                )
            restarts += 1
            client.warning(
                f"Shopify bulk operation {operation_id} ended {operation.get('status')}{partial} "
                f"(errorCode {operation.get('errorCode')}); restarting ({restarts}/{self.bulk_max_restarts})"
            )

    def _start_bulk(self, client: HttpClient, pacer: _CostPacer, query: str) -> str:
        def attempt() -> dict:
            data = self._graphql(client, pacer, "bulk start", BULK_RUN_MUTATION, {"query": query})
            return data.get("bulkOperationRunQuery") or {}

        return self.start_when_free(client, attempt, "bulk query",
                                    lambda errors: "already in progress" in _messages(errors).lower())

    def start_when_free(self, client: HttpClient, attempt: Any, what: str, busy: Any) -> str:
        """Start a bulk operation: `attempt()` sends the start mutation and returns its payload
        ({bulkOperation, userErrors}); while `busy(userErrors)` says another operation runs, wait
        `bulk_busy_wait_seconds` and try again, at most `bulk_busy_max_waits` times."""
        for _ in range(self.bulk_busy_max_waits + 1):
            result = attempt()
            errors = result.get("userErrors") or []
            if not errors:
                operation = result.get("bulkOperation") or {}
                if not operation.get("id"):
                    raise ConnectorError(f"Shopify returned no operation id for the {what}")
                client.info(f"Shopify {what} {operation['id']} started")
                return operation["id"]
            if not busy(errors):
                raise ConnectorError(f"Shopify refused the {what}: {_messages(errors)}")
            client.wait(self.bulk_busy_wait_seconds, f"another {what} is running ({_messages(errors)})")
        raise ConnectorError(
            f"Shopify: another {what} kept running for {self.bulk_busy_max_waits} waits of "
            f"{self.bulk_busy_wait_seconds:.0f}s; cancel it or retry later"
        )

    def _poll_bulk(self, client: HttpClient, pacer: _CostPacer, operation_id: str) -> dict:
        waited = 0.0
        while True:
            data = self._graphql(client, pacer, "bulk poll", BULK_POLL_QUERY, {"id": operation_id},
                                 validate=_valid_bulk_node)
            operation = data["node"]
            status = operation.get("status")
            if status == "COMPLETED" or status in _BULK_TERMINAL_FAILURES:
                client.info(f"Shopify bulk operation {operation_id}: {status}, {operation.get('objectCount')} objects")
                return operation
            if waited >= self.bulk_timeout_seconds:
                raise ConnectorError(
                    f"Shopify bulk operation {operation_id} still {status} after {waited:.0f}s "
                    "(bulk_timeout_seconds)"
                )
            client.wait(self.bulk_poll_interval_seconds, f"bulk operation {operation_id} is {status}")
            waited += self.bulk_poll_interval_seconds

    @contextmanager
    def _downloaded(self, client: HttpClient, url: str, expected: int | None, purpose: str) -> Iterator[Path]:
        """The bulk result at `url` downloaded (`_download`) to a file of a scratch folder, for a
        reader that opens it by path (DuckDB); the folder is removed afterwards."""
        with scratch_dir(purpose) as folder, open(folder / "result.jsonl", "w+b") as spool:
            self._download(client, url, spool, expected)
            yield folder / "result.jsonl"

    def _download(self, client: HttpClient, url: str, spool: IO[bytes], expected: int | None) -> None:
        """Download the JSONL result to `spool`, checking that it is whole; a broken download is redone whole.

        The body is copied in blocks of a megabyte and its lines counted; no line is parsed here
        (every reader parses each line anyway: a million customers' read-back is 7.6 million
        lines, and parsing each one twice and splitting the body into lines in Python cost more
        CPU than the whole comparison it feeds). A body cut short is told by its last line, which
        is then a prefix of a JSON object and does not parse, or, cut at a line boundary and
        served without `Content-Length`, by the count: it must equal the operation's `objectCount`
        (every object, parents and children, is one line). A bulk mutation's result is checked by
        its caller instead (`expected` None): every input line must come back under its
        `__lineNumber`.
        """

        def consume(response: requests.Response) -> int:
            spool.seek(0)
            spool.truncate()
            for block in response.iter_content(chunk_size=_DOWNLOAD_BLOCK):
                spool.write(block)
            spool.flush()
            spool.seek(0)
            lines, last = 0, b""
            for line in spool:  # C-speed iteration; blank lines are no objects
                if line.strip():
                    lines, last = lines + 1, line
            if last:
                try:
                    json.loads(last)
                except ValueError:
                    raise TransientBodyError(f"the bulk result's last line (line {lines}) is not JSON: "
                                             "download cut short") from None
            if expected is not None and lines != expected:
                raise TransientBodyError(
                    f"bulk result has {lines} JSONL lines but the operation reported objectCount {expected} "
                    "(download cut short or inconsistent)"
                )
            return lines

        plain = make_session()
        try:
            lines = client.request(
                "GET",
                url,
                what="bulk result download",
                consume=consume,
                stream=True,
                session=plain,
                fatal_hints={
                    status: f"Shopify bulk result URL answered HTTP {status} (expired or not accessible); "
                    "rerun to start a new bulk operation"
                    for status in (401, 403, 404)
                },
            )
        finally:
            plain.close()
        client.info(f"Shopify bulk result downloaded: {lines} JSONL objects")
        spool.seek(0)

    def _rebuild_orders(self, path: Path, client: HttpClient) -> Iterator[dict]:
        """Group JSONL children under their `__parentId` order and yield contract-shaped nodes.

        From API 2026-01 `bulkOperationRunQuery(groupObjects:)` defaults to false: the JSONL is
        not grouped, so a line item may come anywhere in the file, before its order as well as
        after it. DuckDB reads the file into a scratch database (on disk, within the platform's
        memory limit) and hands the lines back sorted by order, each order's lines in file
        order, so an order is complete when the next one begins: holding every order and line
        item of a store's first full load in Python dicts took tens of gigabytes for millions of
        orders. The first line of an order id is its order (a repeat is dropped); a child whose
        order is nowhere in the file is an error, raised before any order is yielded.
        """
        with scratch_dir("bulk-lines") as scratch, duckdb.connect(
                str(scratch / "lines.duckdb"), config={**duckdb_config(), "temp_directory": str(scratch)}) as conn:
            conn.execute(
                "create table lines as select ordinality as n, json->>'__parentId' as parent, json->>'id' as id, "
                "json::varchar as line from read_ndjson_objects(?) with ordinality", [str(path)])
            orphans, example = conn.execute(
                "select count(distinct parent), min(parent) from lines where parent is not null "
                "and parent not in (select id from lines where parent is null and id is not null)").fetchone()
            if orphans:
                raise ConnectorError(
                    f"Shopify bulk result has line items of {orphans} order(s) missing from the file (e.g. {example})"
                )
            cursor = conn.execute("select coalesce(parent, id), parent is not null, line from lines "
                                  "order by 1, 2, n")
            rebuilt, key, order, items = 0, _NO_KEY, None, []
            while rows := cursor.fetchmany(_REBUILD_ROWS):
                for group, child, line in rows:
                    if group != key:
                        if order is not None:
                            rebuilt += 1
                            yield shape_order(order, items)
                        key, order, items = group, None, []
                    if child:
                        items.append(json.loads(line))
                    elif order is None:
                        order = json.loads(line)
            if order is not None:
                rebuilt += 1
                yield shape_order(order, items)
        client.info(f"Shopify bulk: {rebuilt} orders rebuilt")


def _invalid(what: str, detail: str) -> TransientBodyError:
    return TransientBodyError(f"Shopify {what}: malformed response ({detail})")


def _check_connection(connection: Any, what: str) -> None:
    """A connection must carry a `nodes` list of objects and a `pageInfo` with a boolean `hasNextPage`."""
    if not isinstance(connection, dict):
        raise _invalid(what, f"connection is {json.dumps(connection)[:20]}, not an object")
    nodes, info = connection.get("nodes"), connection.get("pageInfo")
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        raise _invalid(what, "no `nodes` list")
    if not isinstance(info, dict) or not isinstance(info.get("hasNextPage"), bool):
        raise _invalid(what, "no `pageInfo.hasNextPage`")


def _valid_orders_page(data: dict) -> None:
    """`data.orders` is a full connection whose nodes each have an id and a line-item connection."""
    _check_connection(data.get("orders"), "orders page")
    for node in data["orders"]["nodes"]:
        if not node.get("id"):
            raise _invalid("orders page", "an order node without id")
        _check_connection(node.get("lineItems"), f"line items of {node['id']}")


def _valid_line_items_page(data: dict) -> None:
    order = data.get("order")
    if not isinstance(order, dict):
        raise _invalid("order line items", "`order` is missing")
    _check_connection(order.get("lineItems"), "order line items")


def _valid_bulk_node(data: dict) -> None:
    node = data.get("node")
    if not isinstance(node, dict) or not isinstance(node.get("status"), str):
        raise _invalid("bulk poll", "`node` has no status")


def _messages(errors: list[dict]) -> str:
    return "; ".join(f"{e.get('message')}" + (f" ({e['code']})" if e.get("code") else "") for e in errors)


def _object_count(operation: dict) -> int:
    """`objectCount` (an UnsignedInt64, sent as a string); without it the download cannot be checked."""
    try:
        return int(operation.get("objectCount"))
    except (TypeError, ValueError):
        raise ConnectorError(
            f"Shopify bulk operation {operation.get('id')} reported no usable objectCount "
            f"({operation.get('objectCount')!r}); its result cannot be checked for completeness"
        ) from None
