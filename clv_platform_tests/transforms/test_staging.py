"""Staging rules on hand-made raw records whose right answers are known."""

import copy
import json

import duckdb
import pytest

from clv_platform.ingestion.raw_tables import ensure_raw_tables
from clv_platform.transforms.staging import build_staging


def money(amount: str, currency: str = "USD") -> dict:
    return {"shopMoney": {"amount": amount, "currencyCode": currency}}


def order(n: int, *, updated="2025-01-05T08:00:00Z", customer=7, email="ana@example.com", total="60.00",
          refunds=(), cancelled=None, test=False, currency="USD", shop_currency="USD") -> dict:
    return {
        "id": f"gid://shopify/Order/{n}", "name": f"#{1000 + n}",
        "createdAt": "2025-01-03T10:00:00Z", "processedAt": "2025-01-03T10:00:00Z", "updatedAt": updated,
        # currencyCode is the shop currency, presentmentCurrencyCode the buyer's (shopify.dev Order)
        "cancelledAt": cancelled, "currencyCode": shop_currency, "presentmentCurrencyCode": currency,
        "test": test, "email": email,
        "displayFinancialStatus": "PAID",
        "totalPriceSet": money(total, shop_currency),
        "currentTotalPriceSet": money(total, shop_currency),
        "totalDiscountsSet": money("0.00", shop_currency),
        "customer": None if customer is None else {"id": f"gid://shopify/Customer/{customer}", "email": email},
        "lineItems": {"nodes": [
            {"id": f"gid://shopify/LineItem/{n}1", "quantity": 2, "sku": "TEE", "title": "Tee",
             "product": {"id": "gid://shopify/Product/1", "productType": "Apparel"},
             "originalUnitPriceSet": money("30.00", shop_currency), "totalDiscountSet": money("0.00", shop_currency)},
        ]},
        "refunds": [{"id": f"gid://shopify/Refund/{n}{i}", "createdAt": updated,
                     "totalRefundedSet": money(a, shop_currency)} for i, a in enumerate(refunds)],
    }


def profile(pid: str, email: str | None, updated="2025-02-01T00:00:00+00:00") -> dict:
    return {"type": "profile", "id": pid, "attributes": {
        "email": email, "created": "2024-06-01T00:00:00+00:00", "updated": updated,
        "location": {"country": "Spain"},
        "subscriptions": {"email": {"marketing": {"can_receive_email_marketing": True, "consent": "SUBSCRIBED"}}},
        "predictive_analytics": {"predicted_clv": 42.5, "expected_date_of_next_order": "2025-03-01T00:00:00+00:00"},
    }}


def load(conn, orders=(), profiles=()):
    """Insert order nodes and profiles into the raw tables as one ingestion would (an id may be missing)."""
    ensure_raw_tables(conn)
    for node in orders:
        updated = node.get("updatedAt") or "2025-01-01T00:00:00Z"
        conn.execute(
            "insert into raw.shopify_orders values (?, timezone('UTC', ?::timestamptz), ?::date, ?, 'demo', now())",
            [node.get("id"), updated, updated[:10], json.dumps(node)],
        )
    for p in profiles:
        conn.execute(
            "insert into raw.klaviyo_profiles values (?, timezone('UTC', ?::timestamptz), ?, 'demo', now())",
            [p.get("id"), p["attributes"]["updated"], json.dumps(p)],
        )


@pytest.fixture
def conn():
    with duckdb.connect() as c:
        yield c


def orders_by_id(conn) -> dict:
    rows = conn.execute(
        """select order_id, customer_id, net_revenue::double, refunded_amount::double, is_cancelled,
                  presentment_currency from staging.orders"""
    ).fetchall()
    return {r[0].rsplit("/", 1)[1]: r[1:] for r in rows}


def test_cleaning_rules(conn):
    first = order(1, updated="2025-01-03T10:00:00Z")
    refunded = order(1, updated="2025-01-05T08:00:00Z", refunds=["10.00", "5.50"])
    duplicate = copy.deepcopy(refunded)  # the same version fetched twice
    cancelled = order(2, cancelled="2025-01-04T00:00:00Z")
    test_order = order(3, test=True)
    guest_known = order(4, customer=None, email="  ANA@Example.COM ")
    guest_unknown = order(5, customer=None, email="stranger@example.com")
    euro_presented = order(6, currency="EUR")
    wrong_money = order(7, shop_currency="EUR")
    bad_amount = order(8, total="12,50")
    no_id = order(9)
    no_id.pop("id")
    load(conn, [first, refunded, duplicate, cancelled, test_order, guest_known, guest_unknown,
                euro_presented, wrong_money, bad_amount, no_id])

    result = build_staging(conn, shop_currency="USD")

    ana = "gid://shopify/Customer/7"
    assert orders_by_id(conn) == {
        "1": (ana, 44.5, 15.5, False, "USD"),
        "2": (ana, 0.0, 0.0, True, "USD"),
        "4": (ana, 60.0, 0.0, False, "USD"),
        "5": (None, 60.0, 0.0, False, "USD"),
        "6": (ana, 60.0, 0.0, False, "EUR"),
    }
    reasons = sorted(conn.execute("select record_id, reason from staging.rejected_rows").fetchall())
    assert reasons == [
        ("gid://shopify/Order/1", "duplicate of an accepted order version"),
        ("gid://shopify/Order/1", "superseded by a newer version of the order"),
        ("gid://shopify/Order/3", "test order"),
        ("gid://shopify/Order/7", "amount not in shop currency (EUR)"),
        ("gid://shopify/Order/8", "missing or unparseable total price"),
        ("unknown", "missing order id"),
    ]
    # the payload is kept for what a record holds (test, invalid); a superseded or duplicate version
    # stays in raw, so its payload is not copied
    payloads = dict(conn.execute("""select reason, payload is not null from staging.rejected_rows""").fetchall())
    assert payloads == {"duplicate of an accepted order version": False,
                        "superseded by a newer version of the order": False, "test order": True,
                        "amount not in shop currency (EUR)": True, "missing or unparseable total price": True,
                        "missing order id": True}
    test_payload = conn.execute("select payload from staging.rejected_rows where reason = 'test order'").fetchone()[0]
    assert json.loads(test_payload)["id"] == "gid://shopify/Order/3"
    shopify = next(r for r in result.reconciliation if r.source_table == "raw.shopify_orders")
    assert (shopify.rows_in, shopify.accepted, shopify.rejected) == (11, 5, 6)
    # one row per order id; lines follow their orders
    assert conn.execute("select count(*) - count(distinct order_id) from staging.orders").fetchone()[0] == 0
    assert conn.execute("select count(*) from staging.order_lines").fetchone()[0] == 5


def test_customers_resolved_across_shopify_and_klaviyo(conn):
    load(
        conn,
        [order(1, customer=7, email="ana@example.com"), order(2, customer=3, email=" Ana@example.com"),
         order(3, customer=9, email="bo@example.com")],
        [profile("P1", "ANA@EXAMPLE.COM"), profile("P2", "cy@example.com"),
         profile("P2", "cy@example.com", updated="2025-01-01T00:00:00+00:00")],
    )
    build_staging(conn, shop_currency="USD")
    customers = {
        r[0]: r[1:]
        for r in conn.execute(
            """select customer_id, email, klaviyo_profile_id, country, order_count, has_orders,
                      klaviyo_predicted_clv from staging.customers"""
        ).fetchall()
    }
    # two Shopify records with one email merge into the lowest gid; Klaviyo joins by email
    assert customers == {
        "gid://shopify/Customer/3": ("ana@example.com", "P1", "Spain", 2, True, 42.5),
        "gid://shopify/Customer/9": ("bo@example.com", None, None, 1, True, None),
        "klaviyo:P2": ("cy@example.com", "P2", "Spain", 0, False, 42.5),
    }
    assert conn.execute(
        "select reason from staging.rejected_rows where source_table = 'raw.klaviyo_profiles'"
    ).fetchall() == [("superseded by a newer version of the profile",)]
    assert conn.execute("select payload from staging.rejected_rows where source_table = 'raw.klaviyo_profiles'"
                        ).fetchall() == [(None,)]


def test_rebuild_is_idempotent(conn):
    load(conn, [order(1), order(2, refunds=["70.00"])], [profile("P1", "ana@example.com")])
    first = build_staging(conn, shop_currency="USD")
    snapshot = conn.execute("select * from staging.orders order by order_id").fetchall()
    second = build_staging(conn, shop_currency="USD")
    assert first.row_counts == second.row_counts
    assert conn.execute("select * from staging.orders order by order_id").fetchall() == snapshot
    # refunds larger than the total never make revenue negative
    assert conn.execute("select min(net_revenue) from staging.orders").fetchone()[0] == 0
