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
  because the signed result URL lives on another host.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

import requests
from pydantic import Field

from clv_platform.resources import http
from clv_platform.resources.http import (
    ConnectorError,
    HttpClient,
    HttpConnectorResource,
    PermissionDeniedError,
    RateLimited,
    RecentKeys,
    TransientBodyError,
    make_session,
    utc_iso,
)
from clv_platform.resources.shopify_acquisition import ACQUISITION_FIELDS, ACQUISITION_KEYS

_MONEY = "shopMoney{amount currencyCode}"
LINE_ITEM_FIELDS = (
    f"id quantity sku title product{{id productType}} "
    f"originalUnitPriceSet{{{_MONEY}}} totalDiscountSet{{{_MONEY}}}"
)
_ORDER_HEAD = (
    "id name createdAt processedAt updatedAt cancelledAt currencyCode test email "
    "displayFinancialStatus displayFulfillmentStatus "
    f"totalPriceSet{{{_MONEY} presentmentMoney{{amount currencyCode}}}} "
    f"currentTotalPriceSet{{{_MONEY}}} totalDiscountsSet{{{_MONEY}}} "
    "customer{id email} "
    f"{ACQUISITION_FIELDS}"
)
_REFUNDS = f"refunds{{id createdAt totalRefundedSet{{{_MONEY}}}}}"

# Top-level keys of an order node and of a line item, in contract order.
ORDER_KEYS = (
    "id", "name", "createdAt", "processedAt", "updatedAt", "cancelledAt", "currencyCode", "test", "email",
    "displayFinancialStatus", "displayFulfillmentStatus", "totalPriceSet", "currentTotalPriceSet",
    "totalDiscountsSet", "customer", "lineItems", "refunds",
) + ACQUISITION_KEYS
LINE_ITEM_KEYS = ("id", "quantity", "sku", "title", "product", "originalUnitPriceSet", "totalDiscountSet")

ORDERS_PAGE_QUERY = (
    "query ClvOrders($first: Int!, $after: String, $query: String, $lineItemsFirst: Int!) { "
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
    """The bulk form of the orders query: connections as edges/node with `__typename`, no `first`."""
    return (
        f"{{ orders(query: \"updated_at:>='{utc_iso(updated_min)}'\", sortKey: UPDATED_AT) {{ edges {{ node {{ "
        f"__typename {_ORDER_HEAD} "
        f"lineItems {{ edges {{ node {{ __typename {LINE_ITEM_FIELDS} }} }} }} "
        f"{_REFUNDS} }} }} }} }}"
    )


def shape_order(order: dict, line_items: list[dict]) -> dict:
    """An order node in contract shape and key order, whichever path fetched it."""
    shaped = {}
    for key in ORDER_KEYS:
        if key == "lineItems":
            shaped[key] = {"nodes": [{k: item.get(k) for k in LINE_ITEM_KEYS} for item in line_items]}
        else:
            shaped[key] = order.get(key)
    return shaped


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


class ShopifyResource(HttpConnectorResource):
    """Shopify GraphQL Admin API client for orders (paged by `updatedAt`, or one bulk operation).

    Bind the secret with `access_token=dg.EnvVar("SHOPIFY_ACCESS_TOKEN")`. `shop_domain` is
    `mystore.myshopify.com` (or a full base URL such as `http://127.0.0.1:8080` for a fake).
    """

    shop_domain: str = Field(description="mystore.myshopify.com, or a full base URL (tests, proxies).")
    access_token: str = Field(
        repr=False, description="Admin API access token; bind with EnvVar('SHOPIFY_ACCESS_TOKEN')."
    )
    api_version: str = Field(default="2025-01", description="Admin API version, e.g. 2025-01.")
    page_size: int = Field(
        default=15,
        description="Orders per page (max 250). With lineItems(first: 50) each order costs ~52 points, so 15 stays under the 1000-point single-query limit; shrinks further if Shopify says a query costs too much.",
    )
    line_items_page_size: int = Field(default=50, description="Line items fetched with each order page.")
    bucket_size: float = Field(default=2000.0, description="Cost bucket size assumed until Shopify reports it.")
    restore_rate: float = Field(default=100.0, description="Bucket restore rate (points/s) assumed until reported.")
    bulk_poll_interval_seconds: float = Field(default=3.0, description="Wait between bulk operation polls.")
    bulk_timeout_seconds: float = Field(default=6 * 3600.0, description="Give up on a bulk operation after this.")
    bulk_max_restarts: int = Field(default=1, description="Restarts of a FAILED/CANCELED/EXPIRED bulk operation.")
    bulk_busy_wait_seconds: float = Field(default=30.0, description="Wait when another bulk query is running.")
    bulk_busy_max_waits: int = Field(default=20, description="How often to wait for another bulk query.")

    @property
    def source_name(self) -> str:
        return "shopify"

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

    def _client(self, log: Any) -> HttpClient:
        if not self.access_token:
            raise ConnectorError("SHOPIFY_ACCESS_TOKEN is empty: set it to the app's Admin API access token")
        return self._http_client(
            service="Shopify",
            headers={"X-Shopify-Access-Token": self.access_token, "Content-Type": "application/json"},
            fatal_hints={
                401: "Shopify rejected the access token (HTTP 401): check SHOPIFY_ACCESS_TOKEN and that the app "
                "has read_orders scope",
                403: "Shopify refused access (HTTP 403): the app behind SHOPIFY_ACCESS_TOKEN needs the read_orders "
                "scope (read_all_orders for orders older than 60 days)",
                404: f"Shopify returned HTTP 404 for {self.graphql_url()}: check SHOPIFY_SHOP_DOMAIN "
                f"({self.shop_domain}) and SHOPIFY_API_VERSION ({self.api_version})",
            },
            secrets=(self.access_token,),
            log=log,
        )

    def _graphql(self, client: HttpClient, pacer: _CostPacer, kind: str, query: str, variables: dict) -> dict:
        """One GraphQL call, paced, with THROTTLED retried in place; returns `data`."""

        def inspect(body: Any) -> None:
            pacer.observe(kind, body)
            self._check_errors(body, pacer)

        def delay_from_body(body: Any) -> float | None:
            pacer.observe(kind, body)
            return self._throttle_delay(body, pacer)

        pacer.before(kind)
        body = client.request_json(
            "POST",
            self.graphql_url(),
            what=f"GraphQL {kind}",
            json_body={"query": query, "variables": variables},
            inspect=inspect,
            rate_limit_delay=delay_from_body,
        )
        return body["data"]

    def _throttle_delay(self, body: Any, pacer: _CostPacer) -> float:
        cost = ((body or {}).get("extensions") or {}).get("cost") or {}
        requested = cost.get("requestedQueryCost")
        if not isinstance(requested, (int, float)):
            return max(1.0, pacer.maximum / 10 / pacer.restore_rate)
        return pacer.refill_delay(float(requested)) + _SAFETY_SECONDS

    def _check_errors(self, body: Any, pacer: _CostPacer) -> None:
        if not isinstance(body, dict):
            raise TransientBodyError("GraphQL response is not a JSON object")
        errors = body.get("errors") or []
        if isinstance(errors, str):
            errors = [{"message": errors}]
        codes = [((e or {}).get("extensions") or {}).get("code") for e in errors]
        if "THROTTLED" in codes:
            raise RateLimited(self._throttle_delay(body, pacer), "GraphQL THROTTLED: waiting for the cost bucket")
        for error, code in zip(errors, codes):
            message = str((error or {}).get("message", ""))
            if code == "MAX_COST_EXCEEDED" or _COST_IN_MESSAGE.search(message):
                ext = (error or {}).get("extensions") or {}
                found = _COST_IN_MESSAGE.search(message)
                cost = ext.get("cost") or (found and found.group(1)) or 0
                max_cost = ext.get("maxCost") or (found and found.group(2)) or 1000
                raise _QueryTooExpensive(float(cost), float(max_cost))
            if code == "ACCESS_DENIED":
                raise PermissionDeniedError(
                    "Shopify denied access: the app behind SHOPIFY_ACCESS_TOKEN needs the read_orders scope "
                    f"(and read_customers / read_products for customer and product fields). Shopify said: {message}"
                )
        if codes and any(code in {"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT"} for code in codes):
            raise TransientBodyError(f"GraphQL error {codes}: {errors[0].get('message')}")
        if errors:
            raise ConnectorError(f"Shopify GraphQL error: {json.dumps(errors)[:500]}")
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
                             "lineItemsFirst": self.line_items_page_size}
                try:
                    data = self._graphql(client, pacer, "orders page", ORDERS_PAGE_QUERY, variables)
                except _QueryTooExpensive as exc:
                    first = self._smaller_page(first, exc, client)
                    continue
                connection = data.get("orders") or {}
                pages += 1
                recent.new_page()
                for node in connection.get("nodes") or []:
                    if not recent.first_time((node.get("id"), node.get("updatedAt"))):
                        repeats += 1
                        continue
                    yield shape_order(node, self._all_line_items(client, pacer, node))
                    yielded += 1
                info = connection.get("pageInfo") or {}
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
            data = self._graphql(client, pacer, "order line items", LINE_ITEMS_QUERY, variables)
            more = ((data.get("order") or {}).get("lineItems")) or {}
            items.extend(more.get("nodes") or [])
            info = more.get("pageInfo") or {}
        return items

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
            count = int(operation.get("objectCount") or 0)
            if not url:
                if count == 0:
                    client.info("Shopify bulk operation completed with no objects: no orders to load")
                    return
                raise ConnectorError(f"Shopify bulk operation {operation.get('id')} completed with {count} "
                                     "objects but no result URL")
            with tempfile.TemporaryFile(mode="w+b") as spool:
                self._download(client, url, spool)
                yield from self._rebuild_orders(spool, client)
        finally:
            client.session.close()

    def _completed_bulk_operation(self, client: HttpClient, pacer: _CostPacer, query: str) -> dict:
        restarts = 0
        while True:
            operation_id = self._start_bulk(client, pacer, query)
            operation = self._poll_bulk(client, pacer, operation_id)
            if operation.get("status") == "COMPLETED":
                return operation
            if restarts >= self.bulk_max_restarts:
                raise ConnectorError(
                    f"Shopify bulk operation {operation_id} ended {operation.get('status')} "
                    f"(errorCode {operation.get('errorCode')}) after {restarts} restart(s); rerun later or "
                    "use the paged path"
                )
            restarts += 1
            client.warning(
                f"Shopify bulk operation {operation_id} ended {operation.get('status')} "
                f"(errorCode {operation.get('errorCode')}); restarting ({restarts}/{self.bulk_max_restarts})"
            )

    def _start_bulk(self, client: HttpClient, pacer: _CostPacer, query: str) -> str:
        for _ in range(self.bulk_busy_max_waits + 1):
            data = self._graphql(client, pacer, "bulk start", BULK_RUN_MUTATION, {"query": query})
            result = data.get("bulkOperationRunQuery") or {}
            errors = result.get("userErrors") or []
            if not errors:
                operation = result.get("bulkOperation") or {}
                if not operation.get("id"):
                    raise ConnectorError("Shopify bulkOperationRunQuery returned no operation id")
                client.info(f"Shopify bulk operation {operation['id']} started")
                return operation["id"]
            messages = "; ".join(str(e.get("message")) for e in errors)
            if "already in progress" not in messages.lower():
                raise ConnectorError(f"Shopify refused the bulk query: {messages}")
            client.wait(self.bulk_busy_wait_seconds, f"another bulk query is running ({messages})")
        raise ConnectorError(
            f"Shopify: another bulk query kept running for {self.bulk_busy_max_waits} waits of "
            f"{self.bulk_busy_wait_seconds:.0f}s; cancel it or retry later"
        )

    def _poll_bulk(self, client: HttpClient, pacer: _CostPacer, operation_id: str) -> dict:
        waited = 0.0
        while True:
            data = self._graphql(client, pacer, "bulk poll", BULK_POLL_QUERY, {"id": operation_id})
            operation = data.get("node") or {}
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

    def _download(self, client: HttpClient, url: str, spool: IO[bytes]) -> None:
        """Download the JSONL result to `spool`, checking every line; a broken download is redone whole."""

        def consume(response: requests.Response) -> int:
            spool.seek(0)
            spool.truncate()
            lines = 0
            for line in response.iter_lines():
                if not line.strip():
                    continue
                try:
                    json.loads(line)
                except ValueError:
                    raise TransientBodyError(f"invalid JSONL line {lines + 1} in the bulk result") from None
                spool.write(line + b"\n")
                lines += 1
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

    def _rebuild_orders(self, spool: IO[bytes], client: HttpClient) -> Iterator[dict]:
        """Group JSONL children under their `__parentId` order and yield contract-shaped nodes."""
        orders: dict[str, dict] = {}
        items: dict[str, list[dict]] = {}
        for raw in spool:
            record = json.loads(raw)
            parent = record.get("__parentId")
            if parent is None:
                orders.setdefault(record["id"], record)
                items.setdefault(record["id"], [])
            elif parent in items:
                items[parent].append(record)
            else:
                raise ConnectorError(f"Shopify bulk result has a child of unknown order {parent}")
        seen = set()
        for order_id, order in orders.items():
            key = (order_id, order.get("updatedAt"))
            if key in seen:
                continue
            seen.add(key)
            yield shape_order(order, items[order_id])
        client.info(f"Shopify bulk: {len(seen)} orders rebuilt")
