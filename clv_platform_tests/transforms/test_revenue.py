"""Shopify money and days, order by order, on hand-written order nodes with the real field meanings.

Each fixture order is what the GraphQL Admin API returns for one situation (currencyCode = shop
currency, totalPriceSet with tax and shipping, currentQuantity after edits, refunds with their
refunded lines); the expected columns are worked out by hand from data_contracts.md, "Revenue".
The shop is in America/Los_Angeles, as Shopify's `shop { ianaTimezone }` says.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import duckdb
import pytest

from clv_platform.ingestion.raw_tables import ensure_raw_tables
from clv_platform.transforms.staging import build_staging

ANA = "gid://shopify/Customer/11"


def usd(amount: str) -> dict:
    return {"shopMoney": {"amount": amount, "currencyCode": "USD"}}


def line(n: int, qty: int, price: str, discount: str = "0.00", current: int | None = None,
         gift_card: bool = False) -> dict:
    return {
        "id": f"gid://shopify/LineItem/{n}", "quantity": qty, "currentQuantity": qty if current is None else current,
        "sku": f"SKU-{n}", "title": f"Product {n}", "isGiftCard": gift_card,
        "product": {"id": f"gid://shopify/Product/{n % 10}", "productType": "Apparel"},
        "originalUnitPriceSet": usd(price), "totalDiscountSet": usd(discount),
    }


def refund(n: int, at: str, total: str, lines: list[tuple[int, int, str]],
           shipping: list[tuple[str, str]] = (), gift_cards: tuple[int, ...] = ()) -> dict:
    """`shipping`: the refunded shipping lines, (subtotalAmountSet, taxAmountSet) each; `gift_cards`: the
    refunded lines that are gift cards (their lineItem's isGiftCard)."""
    return {"id": f"gid://shopify/Refund/{n}", "createdAt": at, "totalRefundedSet": usd(total),
            "refundLineItems": {"nodes": [{"lineItem": {"id": f"gid://shopify/LineItem/{li}",
                                                        "isGiftCard": li in gift_cards}, "quantity": q,
                                           "subtotalSet": usd(amount)} for li, q, amount in lines]},
            "refundShippingLines": {"nodes": [{"subtotalAmountSet": usd(sub), "taxAmountSet": usd(tax)}
                                              for sub, tax in shipping]}}


def order(n: int, lines: list[dict], *, subtotal: str, tax: str, shipping: str, total: str, discounts="0.00",
          at="2025-03-01T18:00:00Z", status="PAID", cancelled=None, refunds=(), customer=ANA,
          email="ana@example.com", presentment=("USD", None), test=False) -> dict:
    currency, presented_total = presentment
    return {
        "id": f"gid://shopify/Order/{n}", "name": f"#{1000 + n}", "createdAt": at, "processedAt": at,
        "updatedAt": "2025-04-01T00:00:00Z", "cancelledAt": cancelled,
        "currencyCode": "USD", "presentmentCurrencyCode": currency, "test": test, "email": email,
        "displayFinancialStatus": status, "displayFulfillmentStatus": "FULFILLED", "taxesIncluded": False,
        "totalPriceSet": {**usd(total),
                          "presentmentMoney": {"amount": presented_total or total, "currencyCode": currency}},
        "subtotalPriceSet": usd(subtotal), "currentTotalPriceSet": usd(total), "totalDiscountsSet": usd(discounts),
        "totalTaxSet": usd(tax), "totalShippingPriceSet": usd(shipping),
        "customer": None if customer is None else {"id": customer, "defaultEmailAddress": {"emailAddress": email}},
        "lineItems": {"nodes": lines}, "refunds": list(refunds),
    }


FIXTURE = {
    "ordinary": order(1, [line(11, 2, "30.00"), line(12, 1, "15.00", discount="5.00")], discounts="5.00",
                      subtotal="70.00", tax="5.60", shipping="5.95", total="81.55"),
    "guest": order(2, [line(21, 1, "40.00")], subtotal="40.00", tax="3.20", shipping="5.95", total="49.15",
                   customer=None, email=" Guest@Example.com "),
    "test": order(3, [line(31, 1, "99.00")], subtotal="99.00", tax="7.92", shipping="0.00", total="106.92",
                  test=True),
    "cancelled and refunded": order(
        4, [line(41, 1, "50.00", current=0)], subtotal="50.00", tax="4.00", shipping="0.00", total="54.00",
        status="REFUNDED", cancelled="2025-03-02T09:00:00Z",
        refunds=[refund(41, "2025-03-02T09:00:00Z", "54.00", [(41, 1, "50.00")])]),
    "two refunds": order(
        5, [line(51, 2, "30.00", current=1), line(52, 1, "20.00")], subtotal="80.00", tax="6.40",
        shipping="5.95", total="92.35", status="PARTIALLY_REFUNDED",
        refunds=[refund(51, "2025-03-05T12:00:00Z", "32.40", [(51, 1, "30.00")]),
                 refund(52, "2025-03-20T12:00:00Z", "5.00", [])]),  # amount-only goodwill refund
    # placed as 8 units, 4 removed by an order edit: the totals are the edited order's
    "edited": order(6, [line(61, 8, "16.40", current=4)], subtotal="65.60", tax="5.25", shipping="0.00",
                    total="70.85"),
    "other currency": order(7, [line(71, 1, "100.00")], subtotal="100.00", tax="8.00", shipping="0.00",
                            total="108.00", presentment=("EUR", "99.36")),
    # 23:30 on 9 March in Los Angeles (PDT, UTC-7) is 06:30 on 10 March in UTC
    "23:30 local": order(8, [line(81, 1, "25.00")], subtotal="25.00", tax="2.00", shipping="5.95",
                         total="32.95", at="2025-03-10T06:30:00Z"),
    "voided": order(9, [line(91, 1, "60.00")], subtotal="60.00", tax="4.80", shipping="0.00", total="64.80",
                    status="VOIDED"),
    "pending": order(10, [line(101, 1, "10.00")], subtotal="10.00", tax="0.80", shipping="5.95", total="16.75",
                     status="PENDING"),
}

COLUMNS = ("gross_sales", "discount_amount", "returns_amount", "net_sales", "tax_amount", "shipping_amount",
           "total_price", "total_refunded", "net_revenue", "item_quantity", "ordered_quantity", "is_cancelled",
           "presentment_currency", "shop_currency", "order_date", "customer_id", "is_guest")

D = Decimal
# gross, discounts, returns, net sales, tax, shipping, total, refunded, revenue, items, ordered, not a purchase,
# presentment, shop currency, order day, customer, guest
EXPECTED = {
    "ordinary": (D("75.00"), D("5.00"), D("0.00"), D("70.00"), D("5.60"), D("5.95"), D("81.55"), D("0.00"),
                 D("70.00"), 3, 3, False, "USD", "USD", date(2025, 3, 1), ANA, False),
    "guest": (D("40.00"), D("0.00"), D("0.00"), D("40.00"), D("3.20"), D("5.95"), D("49.15"), D("0.00"),
              D("40.00"), 1, 1, False, "USD", "USD", date(2025, 3, 1), None, True),
    # every unit sold was returned, and a cancelled order is no purchase
    "cancelled and refunded": (D("50.00"), D("0.00"), D("50.00"), D("0.00"), D("4.00"), D("0.00"), D("54.00"),
                               D("54.00"), D("0.00"), 1, 1, True, "USD", "USD", date(2025, 3, 1), ANA, False),
    # a returned unit (30.00 of products; its 2.40 tax is not sales) and an amount-only 5.00 refund
    "two refunds": (D("80.00"), D("0.00"), D("35.00"), D("45.00"), D("6.40"), D("5.95"), D("92.35"), D("37.40"),
                    D("45.00"), 3, 3, False, "USD", "USD", date(2025, 3, 1), ANA, False),
    # 4 units sold at 16.40, not the 8 ordered (131.20)
    "edited": (D("65.60"), D("0.00"), D("0.00"), D("65.60"), D("5.25"), D("0.00"), D("70.85"), D("0.00"),
               D("65.60"), 4, 8, False, "USD", "USD", date(2025, 3, 1), ANA, False),
    "other currency": (D("100.00"), D("0.00"), D("0.00"), D("100.00"), D("8.00"), D("0.00"), D("108.00"),
                       D("0.00"), D("100.00"), 1, 1, False, "EUR", "USD", date(2025, 3, 1), ANA, False),
    "23:30 local": (D("25.00"), D("0.00"), D("0.00"), D("25.00"), D("2.00"), D("5.95"), D("32.95"), D("0.00"),
                    D("25.00"), 1, 1, False, "USD", "USD", date(2025, 3, 9), ANA, False),
    # authorized, never paid: no revenue, no purchase
    "voided": (D("60.00"), D("0.00"), D("0.00"), D("0.00"), D("4.80"), D("0.00"), D("64.80"), D("0.00"),
               D("0.00"), 1, 1, True, "USD", "USD", date(2025, 3, 1), ANA, False),
    # payment pending (bank transfer, cash on delivery): a purchase, counted like Shopify's reports do
    "pending": (D("10.00"), D("0.00"), D("0.00"), D("10.00"), D("0.80"), D("5.95"), D("16.75"), D("0.00"),
                D("10.00"), 1, 1, False, "USD", "USD", date(2025, 3, 1), ANA, False),
}


def load(conn: duckdb.DuckDBPyConnection) -> None:
    ensure_raw_tables(conn)
    for node in FIXTURE.values():
        conn.execute(
            "insert into raw.shopify_orders values (?, timezone('UTC', ?::timestamptz), ?::date, ?, 'shopify', "
            "timezone('UTC', now()))",
            [node["id"], node["updatedAt"], node["updatedAt"][:10], json.dumps(node)],
        )
    conn.execute("insert into raw.shopify_shop values ('fixture.myshopify.com', 'America/Los_Angeles', 'USD', "
                 "'shopify', timezone('UTC', now()))")


@pytest.fixture
def conn():
    with duckdb.connect() as c:
        load(c)
        yield c


def staged(conn: duckdb.DuckDBPyConnection) -> dict[str, tuple]:
    rows = conn.execute(f"select order_id, {', '.join(COLUMNS)} from staging.orders").fetchall()
    by_id = {r[0]: r[1:] for r in rows}
    return {name: by_id.get(node["id"]) for name, node in FIXTURE.items()}


@pytest.mark.parametrize("case", list(EXPECTED))
def test_order_by_order(conn, case):
    result = build_staging(conn)
    assert (result.shop_timezone, result.shop_currency, result.revenue_basis) == (
        "America/Los_Angeles", "USD", "net_sales")
    got = dict(zip(COLUMNS, staged(conn)[case]))
    assert got == dict(zip(COLUMNS, EXPECTED[case]))


def test_test_order_is_rejected_and_everything_else_accounted_for(conn):
    result = build_staging(conn)
    assert staged(conn)["test"] is None
    assert conn.execute("select record_id, reason from staging.rejected_rows").fetchall() == [
        ("gid://shopify/Order/3", "test order")]
    shopify = next(r for r in result.reconciliation if r.source_table == "raw.shopify_orders")
    assert (shopify.rows_in, shopify.accepted, shopify.rejected) == (10, 9, 1)


def test_lines_refunds_and_history(conn):
    build_staging(conn)
    lines = {r[0]: r[1:] for r in conn.execute(
        """select line_id, quantity, ordered_quantity, current_quantity, refunded_quantity, line_revenue,
                  discount_amount, order_date
           from staging.order_lines""").fetchall()}
    assert lines["gid://shopify/LineItem/61"] == (4, 8, 4, 0, D("65.60"), D("0.00"), date(2025, 3, 1))
    assert lines["gid://shopify/LineItem/51"] == (2, 2, 1, 1, D("60.00"), D("0.00"), date(2025, 3, 1))
    assert lines["gid://shopify/LineItem/12"] == (1, 1, 1, 0, D("10.00"), D("5.00"), date(2025, 3, 1))
    assert lines["gid://shopify/LineItem/81"][-1] == date(2025, 3, 9)
    refunds = conn.execute(
        "select refund_id, refunded_on, amount, total_refunded, products_refunded from staging.refunds "
        "order by refund_id").fetchall()
    assert refunds == [
        ("gid://shopify/Refund/41", date(2025, 3, 2), D("50.00"), D("54.00"), D("50.00")),
        ("gid://shopify/Refund/51", date(2025, 3, 5), D("30.00"), D("32.40"), D("30.00")),
        ("gid://shopify/Refund/52", date(2025, 3, 20), D("5.00"), D("5.00"), D("5.00")),
    ]
    # the purchase sequence skips the cancelled and the voided order; the late order is on the 9th
    history = dict(conn.execute(
        "select order_id, purchase_seq from staging.order_history where customer_id = ?", [ANA]).fetchall())
    assert history["gid://shopify/Order/4"] is None and history["gid://shopify/Order/9"] is None
    assert history["gid://shopify/Order/8"] == 6  # after the five purchases of 1 March (1, 5, 6, 7, 10)
    refund_days = conn.execute(
        "select first_refunded_on, last_refunded_on, refunded_total from staging.order_history "
        "where order_id = 'gid://shopify/Order/5'").fetchone()
    assert refund_days == (date(2025, 3, 5), date(2025, 3, 20), 35.0)


def test_total_price_basis(conn):
    build_staging(conn, basis="total_price")
    revenue = dict(conn.execute("select order_id, net_revenue from staging.orders").fetchall())
    assert revenue["gid://shopify/Order/5"] == D("54.95")  # 92.35 paid - 37.40 refunded
    assert revenue["gid://shopify/Order/1"] == D("81.55")
    assert revenue["gid://shopify/Order/9"] == D("0.00")
    # the net sales breakdown stays the same whatever the basis
    assert conn.execute("select net_sales from staging.orders where order_id = 'gid://shopify/Order/5'"
                        ).fetchone()[0] == D("45.00")
    assert conn.execute("select amount from staging.refunds where refund_id = 'gid://shopify/Refund/51'"
                        ).fetchone()[0] == D("32.40")


def test_refunded_shipping_is_not_a_return_of_products():
    """Refunded shipping (`refundShippingLines`, with its tax) is not net sales: a shipping-only
    refund leaves the revenue at the products' value, a refund of a line and the shipping lowers it
    by the line only, and an amount-only refund that also refunded shipping counts without it."""
    at = "2025-03-05T12:00:00Z"
    nodes = {
        # "we refunded your shipping": 5.95 + 0.48 tax back, no product returned
        "shipping only": order(21, [line(211, 2, "30.00")], subtotal="60.00", tax="5.28", shipping="5.95",
                               total="71.23", status="PARTIALLY_REFUNDED",
                               refunds=[refund(210, at, "6.43", [], shipping=[("5.95", "0.48")])]),
        # one unit returned (30.00 + 2.40 tax) together with the shipping (5.95 + 0.48)
        "line and shipping": order(22, [line(221, 2, "30.00", current=1)], subtotal="60.00", tax="5.28",
                                   shipping="5.95", total="71.23", status="PARTIALLY_REFUNDED",
                                   refunds=[refund(220, at, "38.83", [(221, 1, "30.00")],
                                                   shipping=[("5.95", "0.48")])]),
        # 20.00 given back without refunded lines, 5.95 of it the shipping: 14.05 counts as products
        "amount and shipping": order(23, [line(231, 1, "50.00")], subtotal="50.00", tax="4.00", shipping="5.95",
                                     total="59.95", status="PARTIALLY_REFUNDED",
                                     refunds=[refund(230, at, "20.00", [], shipping=[("5.95", "0.00")])]),
    }
    with duckdb.connect() as c:
        ensure_raw_tables(c)
        for node in nodes.values():
            c.execute("insert into raw.shopify_orders values (?, timezone('UTC', ?::timestamptz), ?::date, ?, "
                      "'shopify', timezone('UTC', now()))",
                      [node["id"], node["updatedAt"], node["updatedAt"][:10], json.dumps(node)])
        build_staging(c)
        got = {r[0]: r[1:] for r in c.execute(
            "select order_id, gross_revenue, returns_amount, net_revenue, total_refunded from staging.orders"
        ).fetchall()}
        refunds = dict(c.execute("select refund_id, products_refunded from staging.refunds").fetchall())
        assert c.execute("select count(*) from staging.rejected_rows").fetchone()[0] == 0
    assert got[nodes["shipping only"]["id"]] == (D("60.00"), D("0.00"), D("60.00"), D("6.43"))
    assert got[nodes["line and shipping"]["id"]] == (D("60.00"), D("30.00"), D("30.00"), D("38.83"))
    assert got[nodes["amount and shipping"]["id"]] == (D("50.00"), D("14.05"), D("35.95"), D("20.00"))
    assert refunds == {"gid://shopify/Refund/210": D("0.00"), "gid://shopify/Refund/220": D("30.00"),
                       "gid://shopify/Refund/230": D("14.05")}


def test_unparseable_refunded_shipping_rejects_the_order():
    node = order(24, [line(241, 1, "50.00")], subtotal="50.00", tax="4.00", shipping="5.95", total="59.95",
                 status="PARTIALLY_REFUNDED",
                 refunds=[refund(240, "2025-03-05T12:00:00Z", "5.95", [], shipping=[("5,95", "0.00")])])
    with duckdb.connect() as c:
        ensure_raw_tables(c)
        c.execute("insert into raw.shopify_orders values (?, timezone('UTC', ?::timestamptz), ?::date, ?, "
                  "'shopify', timezone('UTC', now()))",
                  [node["id"], node["updatedAt"], node["updatedAt"][:10], json.dumps(node)])
        build_staging(c)
        assert c.execute("select record_id, reason from staging.rejected_rows").fetchall() == [
            (node["id"], "unparseable refund amount")]


def _staged_nodes(nodes: list[dict], query: str) -> list[tuple]:
    """`query`'s rows after staging `nodes` (America/Los_Angeles shop, like the fixture), nothing rejected."""
    with duckdb.connect() as c:
        ensure_raw_tables(c)
        for node in nodes:
            c.execute("insert into raw.shopify_orders values (?, timezone('UTC', ?::timestamptz), ?::date, ?, "
                      "'shopify', timezone('UTC', now()))",
                      [node["id"], node["updatedAt"], node["updatedAt"][:10], json.dumps(node)])
        build_staging(c)
        assert c.execute("select count(*) from staging.rejected_rows").fetchone()[0] == 0
        return c.execute(query).fetchall()


def test_a_gift_card_sold_is_not_net_sales():
    """LineItem.isGiftCard (shopify.dev admin-graphql LineItem): a gift card sold is a liability, sales
    only when redeemed. Its line adds no gross sales and no units, is no product line, and a refund of
    it returns no products; the order's tax, shipping and total stay as Shopify reports them."""
    at = "2025-03-05T12:00:00Z"
    nodes = [
        # two tees (60.00, taxed 4.80) and a 50.00 gift card (untaxed) with 5.95 shipping
        order(31, [line(311, 2, "30.00"), line(312, 1, "50.00", gift_card=True)], subtotal="110.00", tax="4.80",
              shipping="5.95", total="120.75"),
        # the same, the gift card then refunded (50.00 back, no product returned)
        order(32, [line(321, 2, "30.00"), line(322, 1, "50.00", gift_card=True, current=0)], subtotal="110.00",
              tax="4.80", shipping="5.95", total="120.75", status="PARTIALLY_REFUNDED",
              refunds=[refund(320, at, "50.00", [(322, 1, "50.00")], gift_cards=(322,))]),
        # only a gift card: no net sales
        order(33, [line(331, 1, "100.00", gift_card=True)], subtotal="100.00", tax="0.00", shipping="0.00",
              total="100.00"),
    ]
    orders = {r[0].rsplit("/", 1)[1]: r[1:] for r in _staged_nodes(nodes, """
        select order_id, gross_sales, returns_amount, net_sales, net_revenue, item_quantity, ordered_quantity,
               tax_amount, shipping_amount, total_price, total_refunded from staging.orders""")}
    assert orders == {
        "31": (D("60.00"), D("0.00"), D("60.00"), D("60.00"), 2, 2, D("4.80"), D("5.95"), D("120.75"), D("0.00")),
        "32": (D("60.00"), D("0.00"), D("60.00"), D("60.00"), 2, 2, D("4.80"), D("5.95"), D("120.75"), D("50.00")),
        "33": (D("0.00"), D("0.00"), D("0.00"), D("0.00"), 0, 0, D("0.00"), D("0.00"), D("100.00"), D("0.00")),
    }
    lines = _staged_nodes(nodes, "select line_id, quantity, line_revenue from staging.order_lines order by line_id")
    assert lines == [("gid://shopify/LineItem/311", 2, D("60.00")), ("gid://shopify/LineItem/321", 2, D("60.00"))]
    refunds = _staged_nodes(nodes, "select refund_id, amount, total_refunded, products_refunded from staging.refunds")
    assert refunds == [("gid://shopify/Refund/320", D("0.00"), D("50.00"), D("0.00"))]
