"""A local fake of the Shopify GraphQL Admin API and Klaviyo's profiles API, over real HTTP.

`FakeApi` runs a `ThreadingHTTPServer` on 127.0.0.1 (port 0) in a thread and serves a list
of order nodes and profile objects the way `../shared/api-contracts.md` describes:

- Shopify: `POST /admin/api/{version}/graphql.json` with `X-Shopify-Access-Token`; the
  `orders` connection (updated_at filter, `sortKey: UPDATED_AT`, cursors, `first` ≤ 250),
  `lineItems(first:, after:)` paging inside the page and through `order(id:)`, an emulated
  cost bucket reported in `extensions.cost` (THROTTLED when a query is unaffordable,
  MAX_COST_EXCEEDED above `max_query_cost`), bulk operations (run, `node(id:)` poll, JSONL
  result at a URL this server serves) and the 60-day window without `read_all_orders`.
  Each node is projected onto the fields the query selects, and an unknown field is a
  GraphQL error, so a client that forgets a contract field fails loudly.
- Klaviyo: `GET /api/profiles/` with `Authorization: Klaviyo-API-Key …` and `revision`;
  `filter=greater-than(updated,…)`, `sort`, `page[size]` ≤ 100, `links.next` with a cursor,
  `additional-fields[profile]` (attributes not asked for are left out).

- Activation writes (issue 23): Shopify `nodes(ids:)` on customers (null for a deleted one),
  `metafieldsSet` (≤ 25, atomic, typed values validated, userErrors with elementIndex),
  `metafieldsDelete` (a metafield that does not exist comes back null), `tagsAdd`/`tagsRemove`;
  Klaviyo `/api/profile-bulk-import-jobs/` (POST ≤ 10,000 profiles and 5 MB, 202 + job; job polled
  queued → processing → complete; `import-errors`; job list; a null property value is ignored,
  as Klaviyo's import does), `PATCH /api/profiles/{id}/` (properties set, `meta.patch_properties.unset`
  keys removed; 404 for a deleted profile) and `filter=any(id,[…])` on profiles. Bulk write-back:
  `stagedUploadsCreate` (BULK_MUTATION_VARIABLES) and the multipart POST of the JSONL to the
  target it names, `bulkOperationRunMutation` (`bulk_mutation_concurrency` at a time, 5 as from
  API 2026-01; `most_running_mutations` records the most seen; each line run through the same
  mutation handlers, free of the cost bucket; the result JSONL keyed by `__lineNumber`, written
  in reverse line order), `currentBulkOperation(type: MUTATION)`, and a bulk query of `customers`
  with their metafields as child lines. Every value a write carried is logged in `fake.received`
  (`received_checksum()`); switches `customers`, `shopify_invalid_owners`, `klaviyo_deleted`,
  `klaviyo_reject_ids`, `klaviyo_job_polls_to_complete`.

Faults are switched on per test with `fake.fault(route, kind, times=…, at=…, **params)`;
see `FakeApi.fault`. Every request is recorded (`fake.requests`) for assertions.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

SHOPIFY = "shopify_graphql"
SHOPIFY_TOKEN = "shopify_token"
BULK_DOWNLOAD = "bulk_download"
KLAVIYO = "klaviyo_profiles"
ROUTES = (SHOPIFY, SHOPIFY_TOKEN, BULK_DOWNLOAD, KLAVIYO)
# Activation writes (issue 23): Klaviyo bulk profile import jobs.
KLAVIYO_IMPORT = "klaviyo_import"
KLAVIYO_PROFILE = "klaviyo_profile"  # PATCH /api/profiles/{id}/
STAGED_UPLOAD = "staged_upload"  # POST of a bulk mutation's JSONL to the URL stagedUploadsCreate gave
ROUTES = (*ROUTES, KLAVIYO_IMPORT, KLAVIYO_PROFILE, STAGED_UPLOAD)
# Shopify's staged upload refuses a bulk mutation file above 20 MiB (EntityTooLarge).
STAGED_UPLOAD_MAX_BYTES = 20 * 1024 * 1024

# Faults checked on every request of a route; the others fire at an event (see FakeApi.fault).
REQUEST_KINDS = {"status", "throttled", "slow", "truncated", "reset", "duplicate", "bucket_low",
                 "access_denied", "predictive_503", "revoke_tokens", "null_connection", "echo_headers"}
EVENT_KINDS = {"bulk_failed": SHOPIFY, "bulk_busy": SHOPIFY, "bulk_partial": SHOPIFY}


# ---------------------------------------------------------------- test data factories


def _money(amount: float, currency: str) -> dict:
    return {"amount": f"{amount:.2f}", "currencyCode": currency}


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_order_nodes(
    n: int,
    *,
    start: datetime = datetime(2025, 1, 1, tzinfo=timezone.utc),
    span_days: float = 30,
    seed: int = 7,
    big_order_every: int = 9,
    big_order_lines: int = 120,
) -> list[dict]:
    """`n` order nodes in the contract shape (data_contracts.md), spread over `span_days`.

    Every `big_order_every`-th order has `big_order_lines` line items (more than one
    `lineItems(first:50)` page); some are guest orders, some sold a gift card (isGiftCard), some edited
    (currentQuantity), some with
    a returned line (refundLineItems), some with only their shipping refunded (refundShippingLines,
    no refunded lines), some paid in EUR (presentmentCurrencyCode; the shop
    currency stays USD), all with tax and shipping inside totalPriceSet, and a few share an
    `updatedAt` second with their neighbour.
    """
    rng = random.Random(seed)
    start = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
    nodes = []
    for i in range(n):
        created = start + timedelta(seconds=rng.uniform(0, span_days * 86400 * 0.8))
        updated = created + timedelta(seconds=rng.uniform(0, span_days * 86400 * 0.2))
        if i % 11 == 5 and nodes:
            updated = datetime.fromisoformat(nodes[-1]["updatedAt"].replace("Z", "+00:00"))
            created = min(created, updated)
        is_big = big_order_every and i % big_order_every == big_order_every - 1
        line_count = big_order_lines if is_big else rng.randint(1, 4)
        lines = []
        for j in range(line_count):
            price = rng.choice([9.99, 19.5, 29.99, 45.0])
            product = rng.randint(1, 40)
            lines.append({
                "id": f"gid://shopify/LineItem/{i * 1000 + j + 1}",
                "quantity": rng.randint(1, 3),
                "sku": f"SKU-{product:03d}",
                "title": f"Product {product}",
                "isGiftCard": False,
                "product": {"id": f"gid://shopify/Product/{product}",
                            "productType": rng.choice(["Tees", "Mugs", "Caps"])},
                "originalUnitPriceSet": {"shopMoney": _money(price, "USD")},
                "totalDiscountSet": {"shopMoney": _money(rng.choice([0, 0, 1.5]), "USD")},
            })
        # A gift card sold (LineItem.isGiftCard, shopify.dev admin-graphql LineItem): every 10th order's
        # first line is a gift card product, undiscounted (Shopify discounts never apply to gift cards);
        # it is in the order's subtotal and total like any line.
        if i % 10 == 6:
            lines[0].update(sku=None, title="Gift Card", isGiftCard=True,
                            product={"id": "gid://shopify/Product/990", "productType": "Gift Cards"},
                            totalDiscountSet={"shopMoney": _money(0, "USD")})
        # Real field meanings: an edited order (every 6th) had one unit of its first line removed
        # (currentQuantity < quantity, and the order's totals are the edited ones); totalPriceSet
        # holds the lines after discounts plus tax and shipping.
        edited = i % 6 == 1 and lines[0]["quantity"] > 1
        for li in lines:
            li["currentQuantity"] = li["quantity"] - (1 if edited and li is lines[0] else 0)
        sold = [(float(li["originalUnitPriceSet"]["shopMoney"]["amount"]), li["currentQuantity"], li)
                for li in lines]
        discount = sum(float(li["totalDiscountSet"]["shopMoney"]["amount"]) for li in lines)
        subtotal = round(sum(price * qty for price, qty, _ in sold) - discount, 2)
        gift_cards = sum(price * qty for price, qty, li in sold if li["isGiftCard"])
        tax = round((subtotal - gift_cards) * 0.08, 2)  # a gift card is not taxed
        shipping = 0.0 if subtotal >= 100 else 5.0
        total = round(subtotal + tax + shipping, 2)
        guest = i % 13 == 3
        email = f"buyer{i}@example.com" if guest else f"buyer{i % 97}@example.com"
        refunded_line = i % 7 == 2  # one unit of the last line returned, with its tax
        refunded_shipping = i % 7 == 4 and shipping > 0  # "we refunded your shipping" (untaxed here)
        presentment = "EUR" if i % 5 == 4 else "USD"
        rate = 0.9 if presentment == "EUR" else 1.0
        refunds = []
        if refunded_line:
            price, _, li = sold[-1]
            line_discount = float(li["totalDiscountSet"]["shopMoney"]["amount"]) / li["quantity"]
            value = round(price - line_discount, 2)
            li["currentQuantity"] -= 1
            refunds.append({
                "id": f"gid://shopify/Refund/{900 + i}", "createdAt": _iso(updated),
                "totalRefundedSet": {"shopMoney": _money(round(value * 1.08, 2), "USD")},
                "refundLineItems": {"nodes": [{"lineItem": {"id": li["id"], "isGiftCard": li["isGiftCard"]},
                                               "quantity": 1,
                                               "subtotalSet": {"shopMoney": _money(value, "USD")}}]},
                "refundShippingLines": {"nodes": []},
            })
        if refunded_shipping:
            refunds.append({
                "id": f"gid://shopify/Refund/{900 + i}", "createdAt": _iso(updated),
                "totalRefundedSet": {"shopMoney": _money(shipping, "USD")},
                "refundLineItems": {"nodes": []},
                "refundShippingLines": {"nodes": [{"subtotalAmountSet": {"shopMoney": _money(shipping, "USD")},
                                                   "taxAmountSet": {"shopMoney": _money(0, "USD")}}]},
            })
        refunded = sum(float(r["totalRefundedSet"]["shopMoney"]["amount"]) for r in refunds)
        nodes.append({
            "id": f"gid://shopify/Order/{5_000_000 + i}",
            "name": f"#{1001 + i}",
            "createdAt": _iso(created),
            "processedAt": _iso(created),
            "updatedAt": _iso(updated),
            "cancelledAt": _iso(updated) if i % 17 == 8 else None,
            "currencyCode": "USD",
            "presentmentCurrencyCode": presentment,
            "test": i % 23 == 0,
            "email": email,
            "displayFinancialStatus": "PARTIALLY_REFUNDED" if refunds else ("PENDING" if i % 19 == 7 else "PAID"),
            "displayFulfillmentStatus": "FULFILLED",
            "taxesIncluded": False,
            "totalPriceSet": {"shopMoney": _money(total, "USD"), "presentmentMoney": _money(total * rate, presentment)},
            "subtotalPriceSet": {"shopMoney": _money(subtotal, "USD")},
            "currentTotalPriceSet": {"shopMoney": _money(total - refunded, "USD")},
            "totalDiscountsSet": {"shopMoney": _money(discount, "USD")},
            "totalTaxSet": {"shopMoney": _money(tax, "USD")},
            "totalShippingPriceSet": {"shopMoney": _money(shipping, "USD")},
            "customer": None if guest else {"id": f"gid://shopify/Customer/{7_000 + i % 97}",
                                            "defaultEmailAddress": {"emailAddress": email}},
            "lineItems": {"nodes": lines},
            "refunds": refunds,
            **_acquisition(i),
        })
    return nodes


def _acquisition(i: int) -> dict:
    """sourceName, discountCodes and customerJourneySummary as the Admin API returns them:
    web orders with a first/last visit (direct, google search, a Klaviyo e-mail), a POS order
    without a journey, and now and then a discount code."""
    if i % 19 == 7:
        return {"sourceName": "pos", "discountCodes": [], "customerJourneySummary": None}
    visits = [
        {"source": "direct", "sourceType": None, "landingPage": "https://shop.example.com/", "referrerUrl": None,
         "utmParameters": None},
        {"source": "google", "sourceType": "SEO", "landingPage": "https://shop.example.com/products/tee",
         "referrerUrl": "https://www.google.com/", "utmParameters": None},
        {"source": "email", "sourceType": "NEWSLETTER", "landingPage": "https://shop.example.com/?utm_source=klaviyo",
         "referrerUrl": None, "utmParameters": {"source": "klaviyo", "medium": "email", "campaign": "welcome_series",
                                                 "content": None, "term": None}},
    ]
    first = visits[i % 3]
    return {
        "sourceName": "web",
        "discountCodes": ["WELCOME10"] if i % 4 == 1 else [],
        "customerJourneySummary": {"customerOrderIndex": 1 + i % 3, "daysToConversion": i % 5,
                                   "firstVisit": first, "lastVisit": visits[0] if i % 2 else first},
    }


def make_profiles(
    n: int, *, start: datetime = datetime(2024, 6, 1, tzinfo=timezone.utc), seed: int = 11
) -> list[dict]:
    """`n` JSON:API profile objects with subscriptions and predictive_analytics attributes."""
    rng = random.Random(seed)
    start = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
    profiles = []
    for i in range(n):
        created = start + timedelta(hours=rng.uniform(0, 24 * 200))
        updated = created + timedelta(hours=rng.uniform(0, 24 * 30))
        profile_id = f"01P{i:023d}"
        profiles.append({
            "type": "profile",
            "id": profile_id,
            "attributes": {
                "email": f"buyer{i}@example.com",
                "phone_number": None,
                "external_id": str(7_000 + i),
                "first_name": f"First{i}",
                "last_name": f"Last{i}",
                "organization": None,
                "location": {"city": "Berlin", "country": rng.choice(["Germany", "United States"]),
                             "region": None, "zip": None, "timezone": "Europe/Berlin"},
                "created": created.isoformat(),
                "updated": updated.isoformat(),
                "last_event_date": None,
                "properties": {},
                "subscriptions": {"email": {"marketing": {"can_receive_email_marketing": i % 3 != 0,
                                                          "consent": "SUBSCRIBED" if i % 3 else "NEVER_SUBSCRIBED"}}},
                "predictive_analytics": {
                    "historic_clv": round(rng.uniform(0, 300), 2), "predicted_clv": round(rng.uniform(0, 200), 2),
                    "total_clv": None, "historic_number_of_orders": rng.randint(0, 6),
                    "predicted_number_of_orders": 0.5, "average_days_between_orders": None,
                    "average_order_value": 40.0, "churn_probability": round(rng.random(), 2),
                    "expected_date_of_next_order": None, "ranked_channel_affinity": ["email"],
                },
            },
            "links": {"self": f"https://a.klaviyo.com/api/profiles/{profile_id}/"},
        })
    return profiles


def checksum(records: Iterable[dict]) -> tuple[int, str]:
    """(count, sha256 of the sorted canonical JSON of every record): equal iff the same records."""
    lines = sorted(json.dumps(r, sort_keys=True, separators=(",", ":")) for r in records)
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _latest(records: Iterable[dict], updated: Callable[[dict], str]) -> list[dict]:
    """Only the newest version of each id: a live API serves an object's current state."""
    newest: dict[str, dict] = {}
    for record in records:
        current = newest.get(record["id"])
        if current is None or _parse_time(updated(record)) > _parse_time(updated(current)):
            newest[record["id"]] = record
    return list(newest.values())


# ---------------------------------------------------------------- a tiny GraphQL reader


@dataclass
class Selection:
    args: dict[str, Any]
    fields: dict[str, Selection] | None


_TOKEN = re.compile(
    r'(?P<skip>\s+|,|#[^\n]*)|(?P<block>"""[\s\S]*?""")|(?P<str>"(?:\\.|[^"\\])*")|(?P<spread>\.\.\.)'
    r"|(?P<punct>[{}()\[\]:!=@$])|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[_A-Za-z][_0-9A-Za-z]*)"
)


@functools.lru_cache(maxsize=64)
def _tokens(text: str) -> tuple[tuple[str, str], ...]:
    tokens = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"GraphQL syntax error at {pos}: {text[pos:pos + 20]!r}")
        pos = match.end()
        if match.lastgroup != "skip":
            tokens.append((match.lastgroup, match.group()))
    return tuple(tokens)


def parse_graphql(text: str, variables: dict | None = None) -> dict[str, Selection]:
    """The root selection of a query or mutation: field → (resolved args, sub-selection).

    Enough GraphQL for the fake: operation header, variables, arguments, nested selections
    and inline fragments (flattened). Aliases are read as the field name.
    """
    tokens = _tokens(text)
    variables = variables or {}
    i = 0

    def peek() -> str:
        return tokens[i][1] if i < len(tokens) else ""

    def take(expected: str | None = None) -> tuple[str, str]:
        nonlocal i
        if i >= len(tokens) or (expected is not None and tokens[i][1] != expected):
            raise ValueError(f"GraphQL syntax error: expected {expected!r} at token {i}")
        i += 1
        return tokens[i - 1]

    def value() -> Any:
        kind, tok = take()
        if tok == "$":
            return variables.get(take()[1])
        if kind == "str":
            return json.loads(tok)
        if kind == "block":
            return tok[3:-3]
        if kind == "num":
            return float(tok) if "." in tok else int(tok)
        return {"true": True, "false": False, "null": None}.get(tok, tok)

    def arguments() -> dict[str, Any]:
        take("(")
        args = {}
        while peek() != ")":
            name = take()[1]
            take(":")
            args[name] = value()
        take(")")
        return args

    def selection_set() -> dict[str, Selection]:
        take("{")
        fields: dict[str, Selection] = {}
        while peek() != "}":
            if peek() == "...":
                take()
                if peek() == "on":
                    take()
                    take()
                fields.update(selection_set())
                continue
            name = take()[1]
            if peek() == ":":
                take()
                name = take()[1]
            args = arguments() if peek() == "(" else {}
            sub = selection_set() if peek() == "{" else None
            fields[name] = Selection(args, sub)
        take("}")
        return fields

    depth = 0
    while peek() != "{" or depth:
        depth += {"(": 1, ")": -1}.get(peek(), 0)
        take()
    return selection_set()


class UnknownField(Exception):
    pass


def project(value: Any, fields: dict[str, Selection] | None) -> Any:
    """`value` cut down to the selected fields (lists element-wise); unknown fields raise."""
    if fields is None or value is None:
        return value
    if isinstance(value, list):
        return [project(v, fields) for v in value]
    out = {}
    for name, sel in fields.items():
        if name not in value:
            raise UnknownField(name)
        out[name] = value[name] if sel.fields is None else project(value[name], sel.fields)
    return out


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    return int(base64.urlsafe_b64decode(cursor.encode()).decode().split(":", 1)[1])


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


# ---------------------------------------------------------------- faults and records


@dataclass
class Fault:
    """One injected fault. It fires at the route's request numbers in `at` (1-based), else
    on the next `times` matching requests (`times=None`: always)."""

    route: str
    kind: str
    times: int | None = 1
    at: frozenset[int] | None = None
    op: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    fired: int = 0

    def matches(self, number: int, op: str | None, request: Recorded | None) -> bool:
        if self.op is not None and op != self.op:
            return False
        if self.kind == "predictive_503" and request is not None:
            if "predictive_analytics" not in request.query.get("additional-fields[profile]", ""):
                return False
        if self.at is not None:
            counted = request.op_number if self.op is not None and request is not None else number
            return counted in self.at
        return self.times is None or self.fired < self.times


@dataclass
class Recorded:
    route: str
    number: int
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    op: str | None = None
    op_number: int = 0
    root: dict[str, Selection] | None = None
    status: int | None = None
    faults: dict[str, Fault] = field(default_factory=dict)


@dataclass
class _BulkOperation:
    id: str
    query: str
    status: str = "CREATED"
    polls: int = 0
    error_code: str | None = None
    url: str | None = None
    object_count: int = 0
    file_size: int = 0
    created_at: str = field(default_factory=lambda: _iso(datetime.now(timezone.utc)))
    completed_at: str | None = None
    partial_url: str | None = None
    group_objects: bool = False
    kind: str = "QUERY"  # or "MUTATION" (bulkOperationRunMutation: `query` is the mutation)
    staged_path: str | None = None


class _Response(Exception):
    """Raised inside the handler to send a ready response."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}


# ---------------------------------------------------------------- the fake server


class FakeApi:
    """Fake Shopify + Klaviyo on 127.0.0.1. Use as a context manager; see module docstring.

    Switches (plain attributes, change them any time): `shopify_token`, `klaviyo_key`,
    `shopify_api_versions`, `shopify_forbidden`, `klaviyo_forbidden`, `read_all_orders`,
    `now`, `max_query_cost`, `bucket_maximum`, `bucket_restore`, `throttle_http_status`,
    `bulk_polls_to_complete`, `bulk_jsonl_grouped`, `max_page_size`, `klaviyo_max_page_size`.
    """

    def __init__(
        self,
        orders: Iterable[dict] = (),
        profiles: Iterable[dict] = (),
        *,
        shopify_token: str = "shpat_fake_token_0123456789",
        klaviyo_key: str = "pk_fake_key_0123456789",
        clock: Callable[[], float] = time.monotonic,
    ):
        self.orders = sorted(_latest(orders, lambda o: o["updatedAt"]), key=lambda o: (o["updatedAt"], o["id"]))
        self.profiles = _latest(profiles, lambda p: p["attributes"]["updated"])
        self.shopify_token = shopify_token
        self.klaviyo_key = klaviyo_key
        self.clock = clock
        # Supported versions; an older YYYY-MM one is served as the oldest supported (Shopify
        # "falls forward"), which the X-Shopify-API-Version response header reveals.
        self.shopify_api_versions = {"2026-01", "2026-04", "2026-07", "2026-10"}
        # Dev Dashboard app credentials for the client credentials grant; granted tokens expire
        # `token_lifetime` seconds (fake clock) after they are issued.
        self.client_id = "fake_client_id_0123456789"
        self.client_secret = "shpss_fake_client_secret_0123456789"
        self.token_lifetime = 86_399
        self.granted_tokens: dict[str, float] = {}
        self.accept_granted_tokens = True  # False: the grant works but Shopify rejects its tokens (401)
        self.shop = {"ianaTimezone": "America/Los_Angeles", "currencyCode": "USD"}
        self.shopify_forbidden = False
        self.klaviyo_forbidden = False
        self.read_all_orders = True
        self.now = datetime.now(timezone.utc)
        self.max_query_cost: float | None = 1000.0
        self.bucket_maximum = 2000.0
        self.bucket_restore = 100.0
        self.throttle_http_status = 200
        self.bulk_polls_to_complete = 2
        # None: as the mutation's `groupObjects` argument says, false when omitted (its default
        # since API 2026-01); True / False force grouped / ungrouped output.
        self.bulk_jsonl_grouped: bool | None = None
        self.max_page_size = 250
        self.klaviyo_max_page_size = 100
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.throttled_responses = 0
        self._bucket_available = self.bucket_maximum
        self._bucket_at = clock()
        self._forced_throttle: Fault | None = None
        self._counters = {route: 0 for route in ROUTES}
        self._bulk: dict[str, _BulkOperation] = {}
        self._files: dict[str, bytes] = {}
        self._staged: dict[str, bytes] = {}  # staged upload key -> the JSONL posted to it
        self._free = False  # True while a bulk mutation runs its lines: bulk work is outside the bucket
        # Bulk mutations that may run at once: 5 from API 2026-01 (the versions served here), 1 before.
        self.bulk_mutation_concurrency = 5
        self.most_running_mutations = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._init_activation()

    # -- lifecycle

    def start(self) -> FakeApi:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeApi:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- test API

    def fault(
        self,
        route: str,
        kind: str,
        *,
        times: int | None = 1,
        at: Iterable[int] | None = None,
        op: str | None = None,
        **params: Any,
    ) -> Fault:
        """Switch a fault on. Routes: "shopify_graphql", "bulk_download", "klaviyo_profiles".

        Kinds checked on every request of the route (`at` counts that route's requests):
        - "status": answer HTTP `status` (429/500/502/503/…) with `retry_after` header if given;
        - "throttled": GraphQL THROTTLED body (HTTP `http_status`, default the fake's
          `throttle_http_status`=200), bucket reported and set to `available` (default 0);
        - "slow": wait `delay` seconds before answering normally (beyond a client timeout);
        - "truncated": cut the body in half; `mode="invalid_json"` (consistent
          Content-Length, default) or `"short_read"` (promises the full length, then closes);
        - "reset": close the connection without answering;
        - "duplicate": the page's last record is repeated as the first of the next page;
        - "bucket_low": after this query, the cost bucket holds only `available` points;
        - "access_denied": GraphQL ACCESS_DENIED error (HTTP 200);
        - "predictive_503": HTTP 503 for Klaviyo requests asking for predictive_analytics;
        - "revoke_tokens": before this Shopify request is authenticated, every granted token stops working.
        - "null_connection": HTTP 200 whose `data` holds the query's root field as null
          (`{"data":{"orders":null}}`), no `errors`;
        - "echo_headers": an error that echoes the credential and request headers after
          `pad` filler characters (or placed to straddle character `straddle` of the body):
          on Shopify HTTP `http_status` (default 200) with a GraphQL error of extension
          `code` (default None), on Klaviyo HTTP `http_status` (default 503).
        "truncated" with `mode="cut_lines"` (bulk download) cuts the body after `fraction`
        of its lines and sends it without Content-Length.
        Event kinds (count events, not requests; use `times`):
        - "bulk_failed": the next bulk operation(s) end FAILED (errorCode INTERNAL_SERVER_ERROR);
        - "bulk_busy": bulkOperationRunQuery answers "already in progress";
        - "bulk_partial": the next bulk operation(s) end `status` (default FAILED) with a
          `partialDataUrl` to part of the result and no `url`.
        `op` limits a GraphQL fault to one operation: "orders", "line_items", "bulk_start", "bulk_poll";
        with `op`, `at` counts that operation's requests.
        """
        if kind not in REQUEST_KINDS and kind not in EVENT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}")
        spec = Fault(route, kind, times, frozenset(at) if at is not None else None, op, params)
        with self._lock:
            self.faults.append(spec)
        return spec

    def requests_for(self, route: str, op: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.route == route and (op is None or r.op == op)]

    def _fire(self, route: str, number: int, op: str | None, request: Recorded | None, kinds: set[str]) -> dict:
        fired = {}
        with self._lock:
            for spec in self.faults:
                if spec.route == route and spec.kind in kinds and spec.kind not in fired:
                    if spec.matches(number, op, request):
                        spec.fired += 1
                        fired[spec.kind] = spec
        return fired

    def _event(self, kind: str) -> bool:
        return bool(self._fire(EVENT_KINDS[kind], 0, None, None, {kind}))

    # -- Shopify authentication and versions

    def grant_token(self, request: Recorded) -> tuple[int, Any, dict]:
        """The client credentials grant: form fields in, {access_token, scope, expires_in} out."""
        form = request.body if isinstance(request.body, dict) else {}
        if request.method != "POST" or form.get("grant_type") != "client_credentials":
            raise _Response(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            raise _Response(400, {"error": "invalid_client",
                                  "error_description": "Client credentials are invalid"})
        with self._lock:
            token = f"shpat_granted_{len(self.granted_tokens) + 1:04d}_{random.getrandbits(64):016x}"
            self.granted_tokens[token] = self.clock() + self.token_lifetime
        return 200, {"access_token": token, "scope": "read_orders,read_all_orders,read_customers",
                     "expires_in": self.token_lifetime}, {}

    def token_valid(self, token: str | None) -> bool:
        if token is None:
            return False
        if token == self.shopify_token:
            return True
        if not self.accept_granted_tokens:
            return False
        expires = self.granted_tokens.get(token)
        return expires is not None and self.clock() < expires

    def revoke_granted_tokens(self) -> None:
        """Every token granted so far stops working (an app uninstalled and reinstalled, say)."""
        with self._lock:
            for token in self.granted_tokens:
                self.granted_tokens[token] = float("-inf")

    def served_version(self, requested: str) -> str | None:
        """The version Shopify answers with: the requested one if supported, the oldest supported one
        for an expired version, None (HTTP 404) for anything else."""
        if requested in self.shopify_api_versions:
            return requested
        if re.fullmatch(r"\d{4}-(01|04|07|10)", requested) and requested < min(self.shopify_api_versions):
            return min(self.shopify_api_versions)
        return None

    def _event_spec(self, kind: str) -> Fault | None:
        return self._fire(EVENT_KINDS[kind], 0, None, None, {kind}).get(kind)

    # -- Shopify

    def _refill(self) -> None:
        now = self.clock()
        self._bucket_available = min(
            self.bucket_maximum, self._bucket_available + (now - self._bucket_at) * self.bucket_restore
        )
        self._bucket_at = now

    def _cost(self, requested: float, actual: float | None) -> dict:
        return {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": {
            "maximumAvailable": self.bucket_maximum, "currentlyAvailable": round(self._bucket_available, 2),
            "restoreRate": self.bucket_restore}}}

    def _throttled(self, requested: float, http_status: int) -> _Response:
        self.throttled_responses += 1
        return _Response(http_status, {
            "errors": [{"message": "Throttled", "extensions": {
                "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
            "extensions": self._cost(requested, None),
        })

    def _visible_orders(self) -> list[dict]:
        if self.read_all_orders:
            return self.orders
        cutoff = self.now - timedelta(days=60)
        return [o for o in self.orders if _parse_time(o["createdAt"]) >= cutoff]

    def _filter_orders(self, search: str | None) -> list[dict]:
        orders = self._visible_orders()
        if not search:
            return orders
        for op, value in re.findall(r"updated_at:(>=|<=|>|<)'([^']+)'", search):
            bound = _parse_time(value)
            test = {">=": lambda t, b=bound: t >= b, ">": lambda t, b=bound: t > b,
                    "<": lambda t, b=bound: t < b, "<=": lambda t, b=bound: t <= b}[op]
            orders = [o for o in orders if test(_parse_time(o["updatedAt"]))]
        return orders

    def graphql(self, request: Recorded, faults: dict) -> tuple[int, Any]:
        root = request.root
        if root is None:
            return 200, {"errors": [{"message": "Parse error: not a GraphQL query"}]}
        if "access_denied" in faults:
            return 200, {"errors": [{"message": "Access denied for orders field. Required access: `read_orders`",
                                     "extensions": {"code": "ACCESS_DENIED"}}], "data": None}
        if "null_connection" in faults:
            return 200, {"data": {name: None for name in root}}
        handlers = {"orders": self._orders_page, "order": self._order_line_items,
                    "bulkOperationRunQuery": self._bulk_start, "node": self._bulk_poll, "shop": self._shop,
                    **self._activation_handlers(), **self._bulk_write_handlers()}
        name = next((n for n in root if n in handlers), None)
        if name is None:
            return 200, {"errors": [{"message": f"unsupported root fields {list(root)}"}]}
        with self._lock:
            self._refill()
            self._forced_throttle = faults.get("throttled")
            try:
                status, payload = handlers[name](root[name], faults)
            except UnknownField as exc:
                return 200, {"errors": [{"message": f"Field '{exc}' doesn't exist on this type",
                                         "extensions": {"code": "undefinedField"}}]}
            finally:
                self._forced_throttle = None
            if "bucket_low" in faults:
                self._bucket_available = float(faults["bucket_low"].params.get("available", 0))
            return status, payload

    def _charge(self, requested: float, actual: float) -> dict:
        """Check the single-query limit and the bucket, then charge; returns `extensions`."""
        if self._free:
            return {}
        if self.max_query_cost is not None and requested > self.max_query_cost:
            raise _Response(200, {"errors": [{
                "message": f"Query cost is {int(requested)}, which exceeds the single query max cost limit "
                f"({int(self.max_query_cost)}).",
                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": self.max_query_cost}}]})
        forced = self._forced_throttle
        if forced is not None:
            self._bucket_available = float(forced.params.get("available", 0))
            raise self._throttled(requested, int(forced.params.get("http_status", self.throttle_http_status)))
        if requested > self._bucket_available:
            raise self._throttled(requested, self.throttle_http_status)
        self._bucket_available -= actual
        return self._cost(requested, actual)

    def _line_item_page(self, order: dict, sel: Selection) -> dict:
        first = int(sel.args.get("first") or 0)
        if not 0 < first <= 250:
            raise _Response(200, {"errors": [{"message": "lineItems needs first between 1 and 250"}]})
        items = order["lineItems"]["nodes"]
        start = _offset(sel.args.get("after"))
        chunk = items[start:start + first]
        out = {}
        for name, sub in (sel.fields or {}).items():
            if name == "nodes":
                out[name] = project(chunk, sub.fields)
            elif name == "pageInfo":
                out[name] = project({"hasNextPage": start + first < len(items),
                                     "endCursor": _cursor(start + len(chunk)) if chunk else None}, sub.fields)
            else:
                raise UnknownField(name)
        return out

    def _refund_line_page(self, refund: dict, sel: Selection, name: str = "refundLineItems") -> dict:
        """A page of one of the refund's connections (refundLineItems, refundShippingLines); a
        hand-written refund without refundShippingLines has none (Shopify always sends the connection)."""
        first = int(sel.args.get("first") or 0)
        if not 0 < first <= 250:
            raise _Response(200, {"errors": [{"message": f"{name} needs first between 1 and 250"}]})
        items = (refund.get(name) or {"nodes": []})["nodes"]
        chunk = items[:first]
        out = {}
        for name, sub in (sel.fields or {}).items():
            if name == "nodes":
                out[name] = project(chunk, sub.fields)
            elif name == "pageInfo":
                out[name] = project({"hasNextPage": first < len(items),
                                     "endCursor": _cursor(len(chunk)) if chunk else None}, sub.fields)
            else:
                raise UnknownField(name)
        return out

    def _project_refunds(self, refunds: list[dict], fields: dict[str, Selection]) -> list[dict]:
        out = []
        for refund in refunds:
            item = {}
            for name, sel in fields.items():
                if name in ("refundLineItems", "refundShippingLines"):
                    item[name] = self._refund_line_page(refund, sel, name)
                elif name not in refund:
                    raise UnknownField(name)
                else:
                    item[name] = project(refund[name], sel.fields)
            out.append(item)
        return out

    def _project_order(self, order: dict, fields: dict[str, Selection]) -> dict:
        out = {}
        for name, sel in fields.items():
            if name == "lineItems":
                out[name] = self._line_item_page(order, sel)
            elif name == "refunds":
                out[name] = self._project_refunds(order["refunds"], sel.fields or {})
            elif name not in order:
                raise UnknownField(name)
            else:
                out[name] = project(order[name], sel.fields)
        return out

    def _orders_page(self, sel: Selection, faults: dict) -> tuple[int, Any]:
        first = int(sel.args.get("first") or 0)
        if not 0 < first <= self.max_page_size:
            return 200, {"errors": [{"message": f"first must be between 1 and {self.max_page_size}"}]}
        if sel.args.get("sortKey") != "UPDATED_AT":
            return 200, {"errors": [{"message": "the fake only serves sortKey: UPDATED_AT"}]}
        node_fields = (sel.fields or {}).get("nodes")
        line_sel = (node_fields.fields or {}).get("lineItems") if node_fields and node_fields.fields else None
        line_first = int(line_sel.args.get("first") or 0) if line_sel else 0
        requested = 2 + first * (2 + line_first)
        orders = self._filter_orders(sel.args.get("query"))
        start = _offset(sel.args.get("after"))
        chunk = orders[start:start + first]
        actual = 2 + sum(2 + min(len(o["lineItems"]["nodes"]), line_first) for o in chunk)
        extensions = self._charge(requested, actual)
        end = start + len(chunk)
        if "duplicate" in faults and chunk and end < len(orders):
            end -= 1
        connection = {}
        for name, sub in (sel.fields or {}).items():
            if name == "nodes":
                connection[name] = [self._project_order(o, sub.fields or {}) for o in chunk]
            elif name == "pageInfo":
                connection[name] = project({"hasNextPage": end < len(orders),
                                            "endCursor": _cursor(end) if chunk else None}, sub.fields)
            else:
                raise UnknownField(name)
        return 200, {"data": {"orders": connection}, "extensions": extensions}

    def _shop(self, sel: Selection, faults: dict) -> tuple[int, Any]:
        extensions = self._charge(1, 1)
        return 200, {"data": {"shop": project(self.shop, sel.fields)}, "extensions": extensions}

    def _order_line_items(self, sel: Selection, faults: dict) -> tuple[int, Any]:
        """`order(id:)`: a page of its line items, or its refunds (with their refund line items)."""
        order = next((o for o in self._visible_orders() if o["id"] == sel.args.get("id")), None)
        line_sel = (sel.fields or {}).get("lineItems")
        first = int(line_sel.args.get("first") or 0) if line_sel else 0
        extensions = self._charge(3 + first, 3 + first)
        if order is None:
            return 200, {"data": {"order": None}, "extensions": extensions}
        return 200, {"data": {"order": self._project_order(order, sel.fields or {})}, "extensions": extensions}

    def _bulk_start(self, sel: Selection, faults: dict) -> tuple[int, Any]:
        extensions = self._charge(10, 10)
        running = [op for op in self._bulk.values() if op.status in {"CREATED", "RUNNING"} and op.kind == "QUERY"]
        if running or self._event("bulk_busy"):
            busy = running[0].id if running else "gid://shopify/BulkOperation/4046676525245"
            result = {"bulkOperation": None, "userErrors": [{"code": None, "field": None, "message":
                      f"A bulk query operation for this app and shop is already in progress: {busy}."}]}
            return 200, {"data": {"bulkOperationRunQuery": result}, "extensions": extensions}
        try:
            parse_graphql(sel.args.get("query") or "")
        except (ValueError, IndexError) as exc:
            result = {"bulkOperation": None, "userErrors": [{"code": "INVALID", "field": ["query"],
                                                             "message": f"Invalid bulk query: {exc}"}]}
            return 200, {"data": {"bulkOperationRunQuery": result}, "extensions": extensions}
        op = _BulkOperation(id=f"gid://shopify/BulkOperation/{len(self._bulk) + 1}", query=sel.args["query"],
                            group_objects=bool(sel.args.get("groupObjects", False)))
        self._bulk[op.id] = op
        result = {"bulkOperation": {"id": op.id, "status": op.status, "createdAt": op.created_at}, "userErrors": []}
        return 200, {"data": {"bulkOperationRunQuery": result}, "extensions": extensions}

    def _bulk_poll(self, sel: Selection, faults: dict) -> tuple[int, Any]:
        extensions = self._charge(1, 1)
        op = self._bulk.get(sel.args.get("id"))
        if op is None:
            return 200, {"data": {"node": None}, "extensions": extensions}
        self._advance_bulk(op)
        node = {"id": op.id, "status": op.status, "errorCode": op.error_code, "createdAt": op.created_at,
                "completedAt": op.completed_at, "objectCount": str(op.object_count),
                "fileSize": str(op.file_size) if op.url else None, "url": op.url, "partialDataUrl": op.partial_url}
        fields = (sel.fields or {})
        return 200, {"data": {"node": {k: v for k, v in node.items() if k in fields}}, "extensions": extensions}

    def _advance_bulk(self, op: _BulkOperation) -> None:
        """Operations run as they are polled: done after `bulk_polls_to_complete` looks."""
        op.polls += 1
        if op.status in {"CREATED", "RUNNING"}:
            if op.polls >= self.bulk_polls_to_complete:
                self._finish_bulk(op)
            else:
                op.status = "RUNNING"

    def _finish_bulk(self, op: _BulkOperation) -> None:
        op.completed_at = _iso(datetime.now(timezone.utc))
        if op.kind == "MUTATION":
            self._run_bulk_mutation(op)
            return
        if self._event("bulk_failed"):
            op.status, op.error_code = "FAILED", "INTERNAL_SERVER_ERROR"
            return
        root = parse_graphql(op.query)
        if "customers" in root:
            self._publish_bulk(op, self._bulk_customers(root["customers"]))
            return
        orders_sel = root["orders"]
        node_fields = orders_sel.fields["edges"].fields["node"].fields
        parents, children = [], []
        for order in self._filter_orders(orders_sel.args.get("query")):
            line = {"__typename": "Order"}
            kids = []
            for name, sel in node_fields.items():
                if name == "__typename":
                    continue
                if name == "lineItems":
                    item_fields = sel.fields["edges"].fields["node"].fields
                    for item in order["lineItems"]["nodes"]:
                        child = {"__typename": "LineItem"}
                        child.update(project(item, {k: v for k, v in item_fields.items() if k != "__typename"}))
                        child["__parentId"] = order["id"]
                        kids.append(child)
                elif name not in order:
                    raise UnknownField(name)
                else:
                    line[name] = project(order[name], sel.fields)
            grouped = op.group_objects if self.bulk_jsonl_grouped is None else self.bulk_jsonl_grouped
            if grouped:
                parents.extend([line, *kids])
            else:
                parents.append(line)
                children.extend(kids)
        # Ungrouped output (groupObjects: false, the default since 2026-01) promises no order at all:
        # here every child comes before the parents, the arrangement a reader is least likely to expect.
        objects = children + parents
        partial = self._event_spec("bulk_partial")
        if partial is not None and objects:
            # Shopify: a failed operation may leave part of its result at partialDataUrl.
            op.status = str(partial.params.get("status", "FAILED"))
            op.error_code = "INTERNAL_SERVER_ERROR" if op.status == "FAILED" else None
            kept = objects[: max(1, len(objects) // 2)]
            data = "".join(json.dumps(o, separators=(",", ":")) + "\n" for o in kept).encode()
            path = f"/bulk/{op.id.rsplit('/', 1)[1]}-partial.jsonl"
            self._files[path] = data
            op.object_count = len(kept)
            op.partial_url = f"{self.base_url}{path}?X-Goog-Signature=fake"
            return
        self._publish_bulk(op, objects)

    def _publish_bulk(self, op: _BulkOperation, objects: list[dict], partial: bool = False) -> None:
        """The operation's JSONL result at a URL this server serves (none when there are no objects)."""
        op.status = "FAILED" if partial else "COMPLETED"
        op.object_count = len(objects)
        if not objects:
            return
        data = "".join(json.dumps(o, separators=(",", ":")) + "\n" for o in objects).encode()
        path = f"/bulk/{op.id.rsplit('/', 1)[1]}{'-partial' if partial else ''}.jsonl"
        self._files[path] = data
        url = f"{self.base_url}{path}?X-Goog-Signature=fake"
        if partial:
            op.error_code, op.partial_url = "INTERNAL_SERVER_ERROR", url
        else:
            op.file_size, op.url = len(data), url

    def _bulk_customers(self, sel: Selection) -> list[dict]:
        """A bulk query of `customers { edges { node { id tags metafields(namespace:) {...} } } }`:
        customer lines, and a child line (`__parentId`) per metafield, children first (ungrouped)."""
        node_fields = sel.fields["edges"].fields["node"].fields
        meta = node_fields.get("metafields")
        namespace = meta.args.get("namespace") if meta else None
        parents, children = [], []
        for gid, customer in self.customers.items():
            line = {"__typename": "Customer"}
            for name in node_fields:
                if name == "id":
                    line["id"] = gid
                elif name == "tags":
                    line["tags"] = sorted(customer["tags"])
                elif name not in {"__typename", "metafields"}:
                    raise UnknownField(name)
            parents.append(line)
            if meta is not None:
                for (ns, key), m in sorted(customer["metafields"].items()):
                    if namespace in (None, ns):
                        children.append({"__typename": "Metafield", "key": key, "value": m["value"], "__parentId": gid})
        return children + parents

    def _staged_uploads_create(self, sel: Selection, faults: dict) -> tuple[int, Any]:
        extensions = self._charge(10, 10)
        targets, errors = [], []
        for entry in sel.args.get("input") or []:
            if entry.get("resource") != "BULK_MUTATION_VARIABLES" or entry.get("httpMethod") != "POST":
                errors.append({"field": ["input"], "message": "the fake stages BULK_MUTATION_VARIABLES by POST only"})
                continue
            key = f"tmp/fake/bulk/{len(self._staged) + len(targets) + 1}/{entry.get('filename')}"
            targets.append({"url": f"{self.base_url}/staged-uploads/", "resourceUrl": None, "parameters": [
                {"name": "Content-Type", "value": entry.get("mimeType")}, {"name": "success_action_status",
                                                                          "value": "201"},
                {"name": "acl", "value": "private"}, {"name": "key", "value": key},
                {"name": "policy", "value": "ZmFrZQ=="}]})
        result = {"stagedTargets": targets if not errors else None, "userErrors": errors}
        return 200, {"data": {"stagedUploadsCreate": project(result, sel.fields)}, "extensions": extensions}

    def staged_upload(self, record: Recorded) -> tuple[int, Any]:
        """The storage service's form POST: fields first, the file last; 201 with an XML receipt."""
        fields = record.body if isinstance(record.body, dict) else {}
        data, key = fields.get("file"), fields.get("key")
        if not isinstance(data, bytes) or not isinstance(key, str):
            raise _Response(400, b"<Error><Code>InvalidArgument</Code></Error>")
        if len(data) > STAGED_UPLOAD_MAX_BYTES:
            raise _Response(400, b"<Error><Code>EntityTooLarge</Code></Error>")
        with self._lock:
            self._staged[key] = data
        return 201, f"<PostResponse><Key>{key}</Key></PostResponse>".encode()

    def _bulk_mutation_start(self, sel: Selection, faults: dict) -> tuple[int, Any]:
        extensions = self._charge(10, 10)

        def refused(code: str, message: str) -> tuple[int, Any]:
            result = {"bulkOperation": None, "userErrors": [{"code": code, "field": None, "message": message}]}
            return 200, {"data": {"bulkOperationRunMutation": project(result, sel.fields)}, "extensions": extensions}

        running = [op for op in self._bulk.values() if op.kind == "MUTATION" and op.status in {"CREATED", "RUNNING"}]
        if len(running) >= self.bulk_mutation_concurrency:
            self._advance_bulk(running[0])  # it runs on while the caller waits
            if self.bulk_mutation_concurrency == 1:
                return refused("OPERATION_IN_PROGRESS", "A bulk mutation operation for this app and shop is "
                                                        "already in progress.")
            return refused("LIMIT_REACHED", "Bulk operations limit reached. Please try again later.")
        self.most_running_mutations = max(self.most_running_mutations, len(running) + 1)
        path = sel.args.get("stagedUploadPath")
        if path not in self._staged:
            return refused("NO_SUCH_FILE", "The JSONL file could not be found.")
        try:
            root = parse_graphql(sel.args.get("mutation") or "")
        except (ValueError, IndexError):
            root = {}
        if len(root) != 1 or next(iter(root)) not in self._activation_handlers():
            return refused("INVALID_MUTATION", "The mutation is invalid.")
        op = _BulkOperation(id=f"gid://shopify/BulkOperation/{len(self._bulk) + 1}", query=sel.args["mutation"],
                            kind="MUTATION", staged_path=path)
        self._bulk[op.id] = op
        result = {"bulkOperation": {"id": op.id, "status": op.status}, "userErrors": []}
        return 200, {"data": {"bulkOperationRunMutation": project(result, sel.fields)}, "extensions": extensions}

    def start_other_bulk_mutation(self) -> str:
        """A bulk mutation of someone else (another app, or the admin) that is running now."""
        with self._lock:
            self._staged["other-app"] = b""
            op = _BulkOperation(id=f"gid://shopify/BulkOperation/{len(self._bulk) + 1}", kind="MUTATION",
                                query="mutation Other($id: ID!, $tags: [String!]!) { tagsAdd(id: $id, tags: $tags) "
                                "{ userErrors { message } } }", status="RUNNING", staged_path="other-app")
            self._bulk[op.id] = op
            return op.id

    def _run_bulk_mutation(self, op: _BulkOperation) -> None:
        """Run the mutation once per line with that line's variables; `bulk_partial` stops after half
        the lines (FAILED, their results at partialDataUrl), `bulk_failed` runs none."""
        if self._event("bulk_failed"):
            op.status, op.error_code = "FAILED", "INTERNAL_SERVER_ERROR"
            return
        lines = [json.loads(line) for line in self._staged[op.staged_path].decode().splitlines() if line.strip()]
        partial = self._event_spec("bulk_partial") is not None
        if partial:
            lines = lines[: max(1, len(lines) // 2)]
        results = []
        self._free = True
        try:
            for number, variables in enumerate(lines):
                root = parse_graphql(op.query, variables)
                name = next(iter(root))
                _, payload = self._activation_handlers()[name](root[name], {})
                if "errors" in payload:
                    results.append({"errors": payload["errors"], "__lineNumber": number})
                else:
                    results.append({"data": payload["data"], "__lineNumber": number})
        finally:
            self._free = False
        self._publish_bulk(op, results[::-1], partial=partial)

    def _current_bulk_operation(self, sel: Selection, faults: dict) -> tuple[int, Any]:
        extensions = self._charge(1, 1)
        kind = sel.args.get("type", "QUERY")
        ops = [op for op in self._bulk.values() if op.kind == kind]
        if ops:
            self._advance_bulk(ops[-1])
        node = {"id": ops[-1].id, "status": ops[-1].status} if ops else None
        return 200, {"data": {"currentBulkOperation": project(node, sel.fields) if node else None},
                     "extensions": extensions}

    # -- Klaviyo

    def klaviyo_profiles(self, request: Recorded) -> tuple[int, Any]:
        q = request.query
        size = int(q.get("page[size]", 20))
        if not 1 <= size <= self.klaviyo_max_page_size:
            raise _Response(400, _klaviyo_error(400, "invalid", f"page[size] must be 1..{self.klaviyo_max_page_size}"))
        sort = q.get("sort", "id")
        key = sort.lstrip("-")
        if key not in {"id", "created", "updated", "email"}:
            raise _Response(400, _klaviyo_error(400, "invalid", f"unsupported sort {sort}"))
        profiles = [p for p in self.profiles if p["id"] not in self.klaviyo_deleted]
        filter_text = q.get("filter")
        id_list = re.fullmatch(r"any\(id,\[(.*)\]\)", filter_text or "")
        if id_list:
            wanted = set(json.loads("[" + id_list.group(1) + "]"))
            if len(wanted) > 100:
                raise _Response(400, _klaviyo_error(400, "invalid", "any() takes at most 100 values"))
            profiles = [p for p in profiles if p["id"] in wanted]
        elif filter_text:
            conditions = re.findall(r"(greater-than|less-than)\((updated|created),([^)]+)\)", filter_text)
            if not conditions:
                raise _Response(400, _klaviyo_error(400, "invalid", f"unsupported filter {filter_text}"))
            for op, attr, value in conditions:
                bound = _parse_time(value)
                profiles = [p for p in profiles if (_parse_time(p["attributes"][attr]) > bound if op == "greater-than"
                                                    else _parse_time(p["attributes"][attr]) < bound)]
        if key in {"updated", "created"}:
            profiles.sort(key=lambda p: (_parse_time(p["attributes"][key]), p["id"]), reverse=sort.startswith("-"))
        else:
            profiles.sort(key=lambda p: (p["id"] if key == "id" else p["attributes"]["email"]),
                          reverse=sort.startswith("-"))
        extra = {f for f in q.get("additional-fields[profile]", "").split(",") if f}
        unknown = extra - {"subscriptions", "predictive_analytics"}
        if unknown:
            raise _Response(400, _klaviyo_error(400, "invalid", f"unknown additional-fields {sorted(unknown)}"))
        start = _offset(q.get("page[cursor]"))
        chunk = profiles[start:start + size]
        end = start + len(chunk)
        if "duplicate" in request.faults and chunk and end < len(profiles):
            end -= 1
        data = []
        for profile in chunk:
            attributes = {k: v for k, v in profile["attributes"].items()
                          if k not in {"subscriptions", "predictive_analytics"} or k in extra}
            if profile["id"] in self.klaviyo_properties:
                attributes["properties"] = dict(self.klaviyo_properties[profile["id"]])
            data.append({**profile, "attributes": attributes})
        params = {k: v for k, v in q.items() if k != "page[cursor]"}
        base = f"{self.base_url}/api/profiles/"
        next_link = None
        if end < len(profiles):
            next_link = base + "?" + urlencode({**params, "page[cursor]": _cursor(end)}, quote_via=quote)
        self_link = base + ("?" + urlencode(q, quote_via=quote) if q else "")
        return 200, {"data": data, "links": {"self": self_link, "next": next_link, "prev": None}}

    # -- activation writes (issue 23): customer metafields/tags and Klaviyo bulk profile import jobs

    def _init_activation(self) -> None:
        """State of the write endpoints. `received` logs every value a write request carried
        (applied or rejected), so tests can compare count + checksum between runs."""
        self.customers: dict[str, dict] = {}
        for order in self.orders:
            if order.get("customer"):
                self.customers.setdefault(order["customer"]["id"], {"metafields": {}, "tags": set()})
        self.shopify_invalid_owners: set[str] = set()
        self.klaviyo_properties: dict[str, dict] = {}
        self.klaviyo_deleted: set[str] = set()
        self.klaviyo_reject_ids: set[str] = set()
        self.klaviyo_jobs: dict[str, dict] = {}
        self.klaviyo_job_polls_to_complete = 2
        self.klaviyo_max_import_profiles = 10_000
        self.klaviyo_max_import_bytes = 5 * 1024 * 1024
        self.received: list[dict] = []

    def add_customers(self, ids: Iterable[str]) -> None:
        with self._lock:
            for gid in ids:
                self.customers.setdefault(gid, {"metafields": {}, "tags": set()})

    def received_checksum(self, dest: str | None = None) -> tuple[int, str]:
        with self._lock:
            return checksum(r for r in self.received if dest is None or r["dest"] == dest)

    def _activation_handlers(self) -> dict:
        return {"nodes": self._customers_read, "metafieldsSet": self._metafields_set,
                "metafieldsDelete": self._metafields_delete, "tagsAdd": self._tags_add, "tagsRemove": self._tags_remove}

    def _bulk_write_handlers(self) -> dict:
        return {"stagedUploadsCreate": self._staged_uploads_create, "bulkOperationRunMutation": self._bulk_mutation_start,
                "currentBulkOperation": self._current_bulk_operation}

    def _customers_read(self, sel: Selection, faults: dict) -> tuple[int, Any]:
        ids = list(sel.args.get("ids") or [])
        if len(ids) > 250:
            return 200, {"errors": [{"message": "nodes accepts at most 250 ids"}]}
        fields = sel.fields or {}
        first = int((fields.get("metafields").args.get("first") or 0) if fields.get("metafields") else 0)
        cost = 1 + len(ids) * (2 + first)
        extensions = self._charge(cost, cost)
        namespace = fields["metafields"].args.get("namespace") if "metafields" in fields else None
        nodes = []
        for gid in ids:
            customer = self.customers.get(gid)
            if customer is None:
                nodes.append(None)
                continue
            metafields = [{"key": k, "value": m["value"], "namespace": ns, "type": m["type"]}
                          for (ns, k), m in sorted(customer["metafields"].items()) if namespace in (None, ns)]
            full = {"id": gid, "tags": sorted(customer["tags"]), "metafields": {"nodes": metafields[:first or None]}}
            nodes.append(project(full, fields))
        return 200, {"data": {"nodes": nodes}, "extensions": extensions}

    @staticmethod
    def _metafield_error(item: dict, owners: dict, invalid: set[str]) -> tuple[str, str] | None:
        kind, value = item.get("type"), str(item.get("value"))
        if item.get("ownerId") not in owners:
            return "INVALID", "Owner does not exist"
        if not re.fullmatch(r"[A-Za-z0-9_-]{2,64}", str(item.get("key") or "")):
            return "TOO_SHORT", "Key must be 2-64 alphanumeric, hyphen or underscore characters"
        if not re.fullmatch(r"[A-Za-z0-9_-]{3,255}", str(item.get("namespace") or "")):
            return "TOO_SHORT", "Namespace must be 3-255 alphanumeric, hyphen or underscore characters"
        if item.get("ownerId") in invalid:
            return "INVALID_VALUE", "Value is invalid for this customer (injected by the fake)"
        checks = {"number_decimal": r"-?\d+(\.\d+)?", "date": r"\d{4}-\d{2}-\d{2}",
                  "date_time": r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})?"}
        if kind == "single_line_text_field":
            return ("INVALID_VALUE", "Value can't contain a newline") if "\n" in value else None
        if kind not in checks:
            return "INVALID_TYPE", f"Type '{kind}' is not a valid metafield type"
        if not re.fullmatch(checks[kind], value):
            return "INVALID_VALUE", f"Value '{value}' is invalid for type {kind}"
        return None

    def _metafields_set(self, sel: Selection, faults: dict) -> tuple[int, Any]:
        items = list(sel.args.get("metafields") or [])
        if len(items) > 25:
            return 200, {"errors": [{"message": f"The input array size of {len(items)} is greater than the "
                                                "maximum allowed of 25.", "extensions": {"code": "MAX_INPUT_SIZE_EXCEEDED"}}]}
        extensions = self._charge(10, 10)
        for item in items:
            self.received.append({"dest": "shopify", **{k: item.get(k) for k in
                                                         ("ownerId", "namespace", "key", "type", "value")}})
        errors = []
        for index, item in enumerate(items):
            problem = self._metafield_error(item, self.customers, self.shopify_invalid_owners)
            if problem:
                errors.append({"field": ["metafields", str(index), "value"], "message": problem[1],
                               "code": problem[0], "elementIndex": index})
        saved = []
        if not errors:  # atomic, like Shopify: one error and nothing of the call is saved
            for item in items:
                self.customers[item["ownerId"]]["metafields"][(item["namespace"], item["key"])] = {
                    "value": str(item["value"]), "type": item["type"]}
                saved.append({"key": item["key"], "namespace": item["namespace"], "value": str(item["value"])})
        result = {"metafields": saved if not errors else None, "userErrors": errors}
        return 200, {"data": {"metafieldsSet": project(result, (sel.fields or None))}, "extensions": extensions}

    def _metafields_delete(self, sel: Selection, faults: dict) -> tuple[int, Any]:
        items = list(sel.args.get("metafields") or [])
        if not items:
            return 200, {"errors": [{"message": "At least one identifier must be specified."}]}
        extensions = self._charge(10, 10)
        deleted = []
        for item in items:
            self.received.append({"dest": "shopify_delete", **{k: item.get(k) for k in ("ownerId", "namespace", "key")}})
            metafields = (self.customers.get(item.get("ownerId")) or {}).get("metafields") or {}
            found = metafields.pop((item.get("namespace"), item.get("key")), None)
            deleted.append({k: item.get(k) for k in ("ownerId", "namespace", "key")} if found else None)
        result = {"deletedMetafields": deleted, "userErrors": []}
        return 200, {"data": {"metafieldsDelete": project(result, (sel.fields or None))}, "extensions": extensions}

    def _tags(self, sel: Selection, op: str) -> tuple[int, Any]:
        extensions = self._charge(10, 10)
        gid, tags = sel.args.get("id"), [str(t) for t in sel.args.get("tags") or []]
        for tag in tags:
            self.received.append({"dest": "shopify_tags", "id": gid, "op": op, "tag": tag})
        customer = self.customers.get(gid)
        if customer is None:
            result = {"node": None, "userErrors": [{"field": ["id"], "message": "Customer does not exist"}]}
        else:
            customer["tags"] = customer["tags"] | set(tags) if op == "add" else customer["tags"] - set(tags)
            result = {"node": {"id": gid}, "userErrors": []}
        name = "tagsAdd" if op == "add" else "tagsRemove"
        return 200, {"data": {name: project(result, sel.fields or None)}, "extensions": extensions}

    def _tags_add(self, sel: Selection, faults: dict) -> tuple[int, Any]:
        return self._tags(sel, "add")

    def _tags_remove(self, sel: Selection, faults: dict) -> tuple[int, Any]:
        return self._tags(sel, "remove")

    def _job_resource(self, job: dict) -> dict:
        attributes = {k: job[k] for k in ("status", "created_at", "total_count", "completed_count", "failed_count",
                                          "completed_at", "expires_at", "started_at")}
        return {"type": "profile-bulk-import-job", "id": job["id"], "attributes": attributes,
                "links": {"self": f"{self.base_url}/api/profile-bulk-import-jobs/{job['id']}/"}}

    def _advance_job(self, job: dict) -> None:
        """Jobs move queued -> processing -> complete as they are polled (or listed)."""
        if job["status"] in {"complete", "cancelled"}:
            return
        job["polls"] += 1
        if job["status"] == "queued":
            job["status"], job["started_at"] = "processing", _iso(datetime.now(timezone.utc))
        if job["polls"] < self.klaviyo_job_polls_to_complete:
            return
        known = {p["id"] for p in self.profiles} - self.klaviyo_deleted
        for index, profile in enumerate(job["profiles"]):
            pid = profile.get("id")
            if pid not in known or pid in self.klaviyo_reject_ids:
                detail = (f"A profile with id {pid} does not exist." if pid not in known
                          else "Invalid property value (injected by the fake).")
                job["errors"].append({"type": "import-error", "id": f"err-{job['id']}-{index}", "attributes": {
                    "code": "invalid", "title": "Invalid input.", "detail": detail,
                    "source": {"pointer": f"/data/attributes/profiles/data/{index}"}, "original_payload": profile}})
                continue
            props = (profile.get("attributes") or {}).get("properties") or {}
            # Klaviyo's import ignores a null: it cannot clear a property
            self._klaviyo_props(pid).update({k: v for k, v in props.items() if v is not None})
        job["failed_count"] = len(job["errors"])
        job["completed_count"] = len(job["profiles"]) - job["failed_count"]
        job["status"], job["completed_at"] = "complete", _iso(datetime.now(timezone.utc))

    def _klaviyo_props(self, pid: str) -> dict:
        """The profile's properties as written so far (its original ones until first written)."""
        if pid not in self.klaviyo_properties:
            original = next((p for p in self.profiles if p["id"] == pid), {})
            self.klaviyo_properties[pid] = dict((original.get("attributes") or {}).get("properties") or {})
        return self.klaviyo_properties[pid]

    def klaviyo_update_profile(self, request: Recorded) -> tuple[int, Any]:
        """Update Profile: set `attributes.properties`, remove `meta.patch_properties.unset`."""
        pid = [p for p in request.path.split("/") if p][2]
        data = (request.body or {}).get("data") if isinstance(request.body, dict) else None
        if request.method != "PATCH" or not isinstance(data, dict) or data.get("type") != "profile" \
                or data.get("id") != pid:
            raise _Response(400, _klaviyo_error(400, "invalid", "data must be a profile whose id is the path's"))
        with self._lock:
            if pid not in {p["id"] for p in self.profiles} - self.klaviyo_deleted:
                raise _Response(404, _klaviyo_error(404, "not_found", f"A profile with id {pid} does not exist."))
            props = (data.get("attributes") or {}).get("properties") or {}
            unset = ((data.get("meta") or {}).get("patch_properties") or {}).get("unset") or []
            unset = [unset] if isinstance(unset, str) else list(unset)
            self.received.append({"dest": "klaviyo", "id": pid, "properties": props, "unset": unset})
            stored = self._klaviyo_props(pid)
            stored.update({k: v for k, v in props.items() if v is not None})
            for key in unset:
                stored.pop(key, None)
            return 200, {"data": {"type": "profile", "id": pid, "attributes": {"properties": dict(stored)}}}

    def klaviyo_import(self, request: Recorded) -> tuple[int, Any]:
        parts = [p for p in request.path.split("/") if p]  # api, profile-bulk-import-jobs, [id, [sub]]
        with self._lock:
            if request.method == "POST" and len(parts) == 2:
                return self._klaviyo_create_job(request)
            if request.method == "GET" and len(parts) == 2:
                for job in self.klaviyo_jobs.values():
                    self._advance_job(job)
                jobs = sorted(self.klaviyo_jobs.values(), key=lambda j: (j["created_at"], j["id"]),
                              reverse=request.query.get("sort") == "-created_at")
                return 200, {"data": [self._job_resource(j) for j in jobs[:20]], "links": {"next": None}}
            job = self.klaviyo_jobs.get(parts[2]) if len(parts) >= 3 else None
            if request.method != "GET" or job is None:
                raise _Response(404, _klaviyo_error(404, "not_found", "Not found."))
            if len(parts) == 3:
                self._advance_job(job)
                return 200, {"data": self._job_resource(job)}
            if len(parts) == 4 and parts[3] == "import-errors":
                return 200, {"data": list(job["errors"]), "links": {"next": None}}
            raise _Response(404, _klaviyo_error(404, "not_found", "Not found."))

    def _klaviyo_create_job(self, request: Recorded) -> tuple[int, Any]:
        if int(request.headers.get("content-length") or 0) > self.klaviyo_max_import_bytes:
            raise _Response(413, _klaviyo_error(400, "invalid", "The payload exceeds the maximum size of 5MB."))
        data = (request.body or {}).get("data") if isinstance(request.body, dict) else None
        if not isinstance(data, dict) or data.get("type") != "profile-bulk-import-job":
            raise _Response(400, _klaviyo_error(400, "invalid", "data.type must be profile-bulk-import-job"))
        profiles = ((data.get("attributes") or {}).get("profiles") or {}).get("data")
        if not isinstance(profiles, list) or not 1 <= len(profiles) <= self.klaviyo_max_import_profiles:
            raise _Response(400, _klaviyo_error(400, "invalid", "profiles.data must hold 1..10000 profiles"))
        for profile in profiles:
            attributes = profile.get("attributes") or {}
            if profile.get("type") != "profile" or not (profile.get("id") or attributes.get("email")
                                                         or attributes.get("phone_number")
                                                         or attributes.get("external_id")):
                raise _Response(400, _klaviyo_error(400, "invalid", "each profile needs type profile and an identifier"))
        for profile in profiles:
            self.received.append({"dest": "klaviyo", "id": profile.get("id"),
                                  "properties": (profile.get("attributes") or {}).get("properties")})
        now = _iso(datetime.now(timezone.utc))
        job = {"id": f"job-{len(self.klaviyo_jobs) + 1:05d}", "status": "queued", "created_at": now,
               "total_count": len(profiles), "completed_count": 0, "failed_count": 0, "completed_at": None,
               "expires_at": None, "started_at": None, "polls": 0, "profiles": profiles, "errors": []}
        self.klaviyo_jobs[job["id"]] = job
        return 202, {"data": self._job_resource(job)}


def _echo_headers(route: str, record: Recorded, spec: Fault) -> _Response:
    """A (misbehaving) server error that repeats the request's credential and headers.

    `straddle=N` pads the message so that the credential starts 10 characters before
    character N of the body (where a cut-then-redact excerpt used to leak its start).
    """
    secret = record.headers.get("x-shopify-access-token") or record.headers.get("authorization") or ""

    def build(pad: int) -> tuple[int, Any]:
        text = "x" * pad + " credential " + secret + " request headers: " + json.dumps(record.headers)
        if route == KLAVIYO:
            status = int(spec.params.get("http_status", 503))
            return status, _klaviyo_error(status, "error", text)
        status = int(spec.params.get("http_status", 200))
        if status == 200:
            return 200, {"errors": [{"message": text, "extensions": {"code": spec.params.get("code")}}]}
        return status, {"errors": text}

    pad = int(spec.params.get("pad", 0))
    if "straddle" in spec.params:
        _, body = build(0)
        pad = max(0, int(spec.params["straddle"]) - 10 - json.dumps(body).find(secret))
    status, body = build(pad)
    return _Response(status, body)


def _klaviyo_error(status: int, code: str, detail: str) -> dict:
    titles = {401: "Incorrect authentication credentials.", 403: "You do not have permission to perform this action.",
              429: "Request was throttled.", 503: "Service unavailable.", 404: "Not found.", 400: "Invalid input."}
    return {"errors": [{"id": "8c8f4aea-0000-4000-8000-000000000000", "status": status, "code": code,
                        "title": titles.get(status, "Error"), "detail": detail, "source": {"pointer": "/data"},
                        "meta": {}}]}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeApi

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out or disconnect are expected here; stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        """Headers and body go out in separate writes; without TCP_NODELAY each response
        would stall on Nagle + delayed ACK (~40 ms on loopback)."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _route(self, path: str) -> str | None:
        if re.fullmatch(r"/admin/api/[^/]+/graphql\.json", path):
            return SHOPIFY
        if path == "/admin/oauth/access_token":
            return SHOPIFY_TOKEN
        if path.startswith("/bulk/"):
            return BULK_DOWNLOAD
        if path.startswith("/staged-uploads/"):
            return STAGED_UPLOAD
        if path.rstrip("/") == "/api/profiles":
            return KLAVIYO
        if re.fullmatch(r"/api/profiles/[^/]+/?", path):
            return KLAVIYO_PROFILE
        if path.startswith("/api/profile-bulk-import-jobs"):
            return KLAVIYO_IMPORT
        return None

    def _dispatch(self) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if "x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
            body = dict(parse_qsl(raw.decode(), keep_blank_values=True))
        if "multipart/form-data" in (self.headers.get("Content-Type") or ""):
            body = _multipart_fields(self.headers["Content-Type"], raw)
        route = self._route(parts.path)
        with fake._lock:
            number = 0
            if route is not None:
                fake._counters[route] += 1
                number = fake._counters[route]
            record = Recorded(route or "unknown", number, self.command, parts.path,
                              dict(parse_qsl(parts.query, keep_blank_values=True)),
                              {k.lower(): v for k, v in self.headers.items()}, body)
            fake.requests.append(record)
        if route == SHOPIFY:
            record.root = _parse_body(body)
            record.op = _graphql_op(record.root)
            with fake._lock:
                fake._counters[record.op] = fake._counters.get(record.op, 0) + 1
                record.op_number = fake._counters[record.op]
        try:
            status, payload, headers = self._answer(fake, route, record)
        except _Response as response:
            status, payload, headers = response.status, response.body, response.headers
        except _Reset:
            record.status = 0
            self._reset()
            return
        record.status = status
        try:
            self._send(status, payload, headers, record)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True

    def _answer(self, fake: FakeApi, route: str | None, record: Recorded) -> tuple[int, Any, dict]:
        if route is None:
            raise _Response(404, {"errors": "Not Found"})
        faults = fake._fire(route, record.number, record.op, record, REQUEST_KINDS)
        record.faults = faults
        if "reset" in faults:
            raise _Reset()
        if "slow" in faults:
            fake._stop.wait(float(faults["slow"].params.get("delay", 2.0)))
        if "revoke_tokens" in faults:
            fake.revoke_granted_tokens()
        if route != SHOPIFY_TOKEN:
            self._check_auth(fake, route, record)
        if "echo_headers" in faults:
            raise _echo_headers(route, record, faults["echo_headers"])
        if "status" in faults or "predictive_503" in faults:
            spec = faults.get("status") or faults["predictive_503"]
            status = int(spec.params.get("status", 503))
            headers = {"Retry-After": str(spec.params["retry_after"])} if "retry_after" in spec.params else {}
            raise _Response(status, _fault_body(route, status), headers)
        if route == SHOPIFY_TOKEN:
            return fake.grant_token(record)
        if route == SHOPIFY:
            status, payload = fake.graphql(record, faults)
            return status, payload, {"X-Shopify-API-Version": fake.served_version(record.path.split("/")[3])}
        if route == BULK_DOWNLOAD:
            data = fake._files.get(record.path)
            if data is None:
                raise _Response(404, {"errors": "Not Found"})
            return 200, data, {"Content-Type": "application/jsonl"}
        if route == STAGED_UPLOAD:
            status, payload = fake.staged_upload(record)
            return status, payload, {"Content-Type": "application/xml"}
        if route == KLAVIYO_IMPORT:
            status, payload = fake.klaviyo_import(record)
            return status, payload, {"Content-Type": "application/vnd.api+json"}
        if route == KLAVIYO_PROFILE:
            status, payload = fake.klaviyo_update_profile(record)
            return status, payload, {"Content-Type": "application/vnd.api+json"}
        status, payload = fake.klaviyo_profiles(record)
        return status, payload, {"Content-Type": "application/vnd.api+json"}

    def _check_auth(self, fake: FakeApi, route: str, record: Recorded) -> None:
        if route == SHOPIFY:
            version = record.path.split("/")[3]
            if fake.served_version(version) is None:
                raise _Response(404, {"errors": "Not Found"})
            if not fake.token_valid(record.headers.get("x-shopify-access-token")):
                raise _Response(401, {"errors": "[API] Invalid API key or access token (unrecognized login or "
                                                "wrong password)"})
            if fake.shopify_forbidden:
                raise _Response(403, {"errors": "[API] This action requires merchant approval for read_orders scope."})
        elif route in (KLAVIYO, KLAVIYO_IMPORT, KLAVIYO_PROFILE):
            if record.headers.get("authorization") != f"Klaviyo-API-Key {fake.klaviyo_key}":
                raise _Response(401, _klaviyo_error(401, "authentication_failed",
                                                    "Incorrect authentication credentials."))
            if fake.klaviyo_forbidden:
                raise _Response(403, _klaviyo_error(403, "permission_denied",
                                                    "You do not have permission to perform this action."))
            if not record.headers.get("revision"):
                raise _Response(400, _klaviyo_error(400, "invalid", "missing revision header"))

    def _send(self, status: int, payload: Any, headers: dict, record: Recorded) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        declared = len(data)
        spec = record.faults.get("truncated")
        mode = spec.params.get("mode", "invalid_json") if spec is not None else None
        if mode == "cut_lines":
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[: int(len(lines) * float(spec.params.get("fraction", 0.6)))])
            declared = None
        elif spec is not None:
            data = data[: max(1, len(data) // 2)]
            if mode == "invalid_json":
                declared = len(data)
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        for name, value in headers.items():
            self.send_header(name, value)
        if declared is None:
            # No Content-Length: the body ends when the connection closes (HTTP/1.1 §6.3).
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(declared))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        if declared is None or declared != len(data):
            self._reset()

    def _reset(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Reset(Exception):
    pass


def _multipart_fields(content_type: str, raw: bytes) -> dict[str, Any]:
    """A multipart/form-data body as {name: text}, the `file` part as bytes."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        fields[name] = payload if part.get_filename() else payload.decode()
    return fields


def _parse_body(body: Any) -> dict[str, Selection] | None:
    query = body.get("query") if isinstance(body, dict) else None
    if not isinstance(query, str):
        return None
    try:
        return parse_graphql(query, body.get("variables") or {})
    except (ValueError, IndexError):
        return None


def _graphql_op(root: dict[str, Selection] | None) -> str | None:
    if root and "order" in root and "refunds" in (root["order"].fields or {}):
        return "refunds"
    for name, op in (("orders", "orders"), ("order", "line_items"), ("bulkOperationRunQuery", "bulk_start"),
                     ("node", "bulk_poll"), ("shop", "shop"), ("nodes", "customer_read"),
                     ("metafieldsSet", "metafields_set"), ("metafieldsDelete", "metafields_delete"),
                     ("tagsAdd", "tags_add"), ("tagsRemove", "tags_remove"), ("stagedUploadsCreate", "staged_upload"),
                     ("bulkOperationRunMutation", "bulk_mutation_start"),
                     ("currentBulkOperation", "bulk_mutation_status")):
        if root and name in root:
            return op
    return None


def _fault_body(route: str, status: int) -> Any:
    if route == KLAVIYO:
        code = "throttled" if status == 429 else "error"
        detail = "Request was throttled. Expected available in 1 second." if status == 429 else "Service unavailable."
        return _klaviyo_error(status, code, detail)
    if status == 429:
        return {"errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume "
                          "uninterrupted service."}
    return {"errors": f"Internal error (HTTP {status}), please retry"}
