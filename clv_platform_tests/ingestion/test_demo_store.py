"""The synthetic demo store: deterministic, contract-shaped, messy at the configured rates,
and faithful to the BG/NBD truth it was generated from."""

import hashlib
import json
import re
import warnings
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import duckdb
import pandas as pd
import pytest

from clv_platform.ingestion.demo_store import DemoStoreParams, generate

MONEY = re.compile(r"^\d+\.\d{2}$")
TS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
TS_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$")
ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
ORDER_KEYS = {
    "id", "name", "createdAt", "processedAt", "updatedAt", "cancelledAt", "currencyCode", "presentmentCurrencyCode",
    "test", "email", "displayFinancialStatus", "displayFulfillmentStatus", "taxesIncluded", "totalPriceSet",
    "subtotalPriceSet", "currentTotalPriceSet", "totalDiscountsSet", "totalTaxSet", "totalShippingPriceSet",
    "customer", "lineItems", "refunds", "sourceName", "discountCodes", "customerJourneySummary",
}
LINE_KEYS = {
    "id", "quantity", "currentQuantity", "sku", "title", "isGiftCard", "product", "originalUnitPriceSet",
    "totalDiscountSet",
}
PREDICTIVE_KEYS = {
    "historic_clv", "predicted_clv", "total_clv", "historic_number_of_orders", "predicted_number_of_orders",
    "average_days_between_orders", "average_order_value", "churn_probability", "expected_date_of_next_order",
    "ranked_channel_affinity",
}


@pytest.fixture(scope="module")
def store():
    return generate(DemoStoreParams(n_customers=5000, seed=42))


@pytest.fixture(scope="module")
def nodes(store):
    return list(store.order_nodes())


@pytest.fixture(scope="module")
def profiles(store):
    return list(store.profile_objects())


def is_broken(node: dict) -> bool:
    return "id" not in node or not MONEY.match(node["totalPriceSet"]["shopMoney"]["amount"])


def latest_versions(nodes: list[dict]) -> list[dict]:
    latest = {}
    for node in nodes:  # nodes come sorted by updatedAt, so the last one seen wins
        if not is_broken(node):
            latest[node["id"]] = node
    return list(latest.values())


def checksum(store) -> str:
    digest = hashlib.sha256()
    for record in [*store.order_nodes(), *store.profile_objects()]:
        digest.update(json.dumps(record, sort_keys=True).encode())
    return digest.hexdigest()


def test_same_seed_same_store_other_seed_other_store():
    small = DemoStoreParams(n_customers=400, seed=1)
    assert checksum(generate(small)) == checksum(generate(small))
    assert checksum(generate(small)) != checksum(generate(DemoStoreParams(n_customers=400, seed=2)))


def test_order_nodes_match_the_contract(nodes):
    assert len(nodes) > 20_000
    for node in nodes:
        assert set(node) == ORDER_KEYS or (is_broken(node) and set(node) == ORDER_KEYS - {"id"})
        if "id" in node:
            assert re.match(r"^gid://shopify/Order/\d+$", node["id"])
        assert node["name"].startswith("#")
        for key in ("createdAt", "processedAt", "updatedAt"):
            assert TS_Z.match(node[key])
        assert node["cancelledAt"] is None or TS_Z.match(node["cancelledAt"])
        total = node["totalPriceSet"]
        # Order.currencyCode is the shop currency; presentmentCurrencyCode is the buyer's
        assert node["currencyCode"] == "USD" and total["shopMoney"]["currencyCode"] == "USD"
        assert total["presentmentMoney"]["currencyCode"] == node["presentmentCurrencyCode"]
        assert node["presentmentCurrencyCode"] in ("USD", "EUR")
        if node["presentmentCurrencyCode"] == "USD" and not is_broken(node):
            assert total["presentmentMoney"]["amount"] == total["shopMoney"]["amount"]
        assert node["taxesIncluded"] is False
        for key in ("subtotalPriceSet", "currentTotalPriceSet", "totalDiscountsSet", "totalTaxSet",
                    "totalShippingPriceSet"):
            assert MONEY.match(node[key]["shopMoney"]["amount"])
        assert MONEY.match(total["presentmentMoney"]["amount"])
        if node["customer"] is not None:
            assert re.match(r"^gid://shopify/Customer/\d+$", node["customer"]["id"])
            assert set(node["customer"]) == {"id", "defaultEmailAddress"}  # Customer.email is deprecated
            assert node["customer"]["defaultEmailAddress"]["emailAddress"] == node["email"]
        assert isinstance(node["email"], str) and "@" in node["email"]
        assert 1 <= len(node["lineItems"]["nodes"]) <= 6
        for line in node["lineItems"]["nodes"]:
            assert set(line) == LINE_KEYS
            assert re.match(r"^gid://shopify/LineItem/\d+$", line["id"])
            assert re.match(r"^gid://shopify/Product/\d+$", line["product"]["id"])
            assert line["product"]["productType"] in DemoStoreParams().categories
            assert isinstance(line["quantity"], int) and line["quantity"] >= 1
            assert isinstance(line["currentQuantity"], int) and 0 <= line["currentQuantity"] <= line["quantity"]
            assert MONEY.match(line["originalUnitPriceSet"]["shopMoney"]["amount"])
            assert MONEY.match(line["totalDiscountSet"]["shopMoney"]["amount"])
        for refund in node["refunds"]:
            assert re.match(r"^gid://shopify/Refund/\d+$", refund["id"])
            assert TS_Z.match(refund["createdAt"]) and refund["createdAt"] <= node["updatedAt"]
            assert MONEY.match(refund["totalRefundedSet"]["shopMoney"]["amount"])
            line_ids = {li["id"] for li in node["lineItems"]["nodes"]}
            # refunded lines, refunded shipping, or both (a full refund)
            assert refund["refundLineItems"]["nodes"] or refund["refundShippingLines"]["nodes"]
            for refunded in refund["refundLineItems"]["nodes"]:
                assert refunded["lineItem"]["id"] in line_ids and refunded["quantity"] >= 1
                assert MONEY.match(refunded["subtotalSet"]["shopMoney"]["amount"])
            for shipped in refund["refundShippingLines"]["nodes"]:
                assert set(shipped) == {"subtotalAmountSet", "taxAmountSet"}
                assert MONEY.match(shipped["subtotalAmountSet"]["shopMoney"]["amount"])
                assert MONEY.match(shipped["taxAmountSet"]["shopMoney"]["amount"])


def test_lines_add_up_to_the_order_and_refunds_to_the_current_total(nodes):
    """Shopify's arithmetic: sold units (still on the order + refunded; edited-away units are not
    sold) at their price minus discounts = subtotal; + tax + shipping = totalPrice; current total =
    total - refunds (0 once cancelled); a refund's products = its refunded lines' subtotals, its
    shipping = its refunded shipping lines (at most the order's shipping)."""
    edited = refunded_lines = shipping_only = 0
    for node in nodes:
        if is_broken(node):
            continue
        lines = node["lineItems"]["nodes"]
        refund_qty: dict[str, int] = {}
        products_refunded = shipping_refunded = Decimal(0)
        for refund in node["refunds"]:
            for r in refund["refundShippingLines"]["nodes"]:
                shipping_refunded += (Decimal(r["subtotalAmountSet"]["shopMoney"]["amount"])
                                      + Decimal(r["taxAmountSet"]["shopMoney"]["amount"]))
            shipping_only += not refund["refundLineItems"]["nodes"]
            for r in refund["refundLineItems"]["nodes"]:
                refund_qty[r["lineItem"]["id"]] = refund_qty.get(r["lineItem"]["id"], 0) + r["quantity"]
                products_refunded += Decimal(r["subtotalSet"]["shopMoney"]["amount"])
                refunded_lines += 1
        sold = {li["id"]: li["currentQuantity"] + refund_qty.get(li["id"], 0) for li in lines}
        edited += any(sold[li["id"]] < li["quantity"] for li in lines)
        subtotal = Decimal(node["subtotalPriceSet"]["shopMoney"]["amount"])
        line_discounts = sum(Decimal(li["totalDiscountSet"]["shopMoney"]["amount"]) for li in lines)
        line_revenue = sum(sold[li["id"]] * Decimal(li["originalUnitPriceSet"]["shopMoney"]["amount"])
                           for li in lines) - line_discounts
        assert line_revenue == subtotal
        assert line_discounts == Decimal(node["totalDiscountsSet"]["shopMoney"]["amount"])
        tax = Decimal(node["totalTaxSet"]["shopMoney"]["amount"])
        shipping = Decimal(node["totalShippingPriceSet"]["shopMoney"]["amount"])
        assert tax == (subtotal * Decimal("0.08")).quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
        assert shipping == (Decimal(0) if subtotal >= 75 else Decimal("5.95"))
        total = Decimal(node["totalPriceSet"]["shopMoney"]["amount"])
        assert total == subtotal + tax + shipping
        refunded = sum(Decimal(r["totalRefundedSet"]["shopMoney"]["amount"]) for r in node["refunds"])
        current = Decimal(node["currentTotalPriceSet"]["shopMoney"]["amount"])
        assert current == (Decimal(0) if node["cancelledAt"] else total - refunded)
        assert 0 <= products_refunded <= refunded <= total
        assert shipping_refunded <= shipping and products_refunded + shipping_refunded <= refunded
    assert edited > 50 and refunded_lines > 500 and shipping_only > 20


def test_mess_lands_near_the_configured_rates(store, nodes):
    p = store.params
    latest = latest_versions(nodes)
    real = [n for n in latest if not n["test"]]

    def share(rows, pred):
        return sum(1 for n in rows if pred(n)) / len(rows)

    # tolerances: about 4 binomial standard errors at ~21,000 orders; partial refunds lose a
    # little to refunds that would fall after the end date; guests cluster by shopper
    assert share(latest, lambda n: n["test"]) == pytest.approx(p.test_order_rate, abs=0.0015)
    assert share(real, lambda n: n["cancelledAt"] is not None) == pytest.approx(p.cancel_rate, abs=0.006)
    assert share(real, lambda n: n["displayFinancialStatus"] == "REFUNDED" and not n["cancelledAt"]) == (
        pytest.approx(p.full_refund_rate, abs=0.005))
    assert share(real, lambda n: n["displayFinancialStatus"] == "PARTIALLY_REFUNDED") == (
        pytest.approx(p.partial_refund_rate, abs=0.009))
    assert share(real, lambda n: n["customer"] is None) == pytest.approx(p.guest_order_rate, abs=0.012)
    assert share(latest, lambda n: n["presentmentCurrencyCode"] == "EUR") == (
        pytest.approx(p.second_currency_order_rate, abs=0.008))
    assert share(latest, lambda n: n["totalDiscountsSet"]["shopMoney"]["amount"] != "0.00") == (
        pytest.approx(p.discount_rate, abs=0.012))
    cancelled = [n for n in real if n["cancelledAt"]]
    assert {n["displayFinancialStatus"] for n in cancelled} == {"VOIDED", "REFUNDED"}
    broken = [n for n in nodes if is_broken(n)]
    assert 0.0003 < len(broken) / len(nodes) < 0.002
    assert any("id" not in n for n in broken) and any("id" in n for n in broken)
    emails = [n["email"] for n in latest]
    assert share(latest, lambda n: n["email"] != n["email"].strip()) > 0.01
    assert any(e != e.lower() for e in emails)


def test_guest_checkouts_can_be_tied_to_registered_customers(nodes):
    latest = latest_versions(nodes)
    registered = {n["customer"]["defaultEmailAddress"]["emailAddress"].strip().lower():
                  n["customer"]["defaultEmailAddress"]["emailAddress"] for n in latest if n["customer"]}
    guests = [n for n in latest if n["customer"] is None]
    tied = [g for g in guests if g["email"].strip().lower() in registered]
    assert len(tied) > 50
    assert all(registered[g["email"].strip().lower()] != g["email"] for g in tied)  # spelled differently
    assert len(tied) < len(guests)  # and others are guests the shop has never seen registered


def test_orders_have_later_versions(nodes):
    by_id: dict[str, list[dict]] = {}
    for node in nodes:
        if not is_broken(node):
            by_id.setdefault(node["id"], []).append(node)
    multi = {k: v for k, v in by_id.items() if len(v) > 1}
    assert len(multi) > 0.05 * len(by_id)
    assert any(len(v) >= 3 for v in multi.values())
    for versions in multi.values():
        stamps = [v["updatedAt"] for v in versions]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        assert len({v["createdAt"] for v in versions}) == 1
        assert versions[0]["refunds"] == [] and versions[0]["cancelledAt"] is None
        # the lines as ordered never change; what is left of them (currentQuantity) may
        strip = [[{k: v for k, v in li.items() if k != "currentQuantity"} for li in x["lineItems"]["nodes"]]
                 for x in (versions[0], versions[-1])]
        assert strip[0] == strip[1]
    changed = [v for v in multi.values() if v[-1]["refunds"] or v[-1]["cancelledAt"]]
    assert changed and all(v[-1]["displayFinancialStatus"] != v[0]["displayFinancialStatus"] for v in changed)


def test_profiles_match_the_contract(store, profiles):
    n = store.params.n_customers
    assert len({p["id"] for p in profiles}) == len(profiles)
    stamps = [p["attributes"]["updated"] for p in profiles]
    assert stamps == sorted(stamps)
    for profile in profiles:
        assert profile["type"] == "profile" and ULID.match(profile["id"])
        assert profile["links"]["self"].endswith(f"/api/profiles/{profile['id']}/")
        attrs = profile["attributes"]
        assert TS_OFFSET.match(attrs["created"]) and TS_OFFSET.match(attrs["updated"])
        assert attrs["created"] <= attrs["updated"]
        assert {"country", "city", "region", "timezone"} <= set(attrs["location"])
        marketing = attrs["subscriptions"]["email"]["marketing"]
        assert marketing["consent"] in ("SUBSCRIBED", "UNSUBSCRIBED", "NEVER_SUBSCRIBED")
        assert marketing["can_receive_email_marketing"] == (marketing["consent"] == "SUBSCRIBED")
        assert (marketing["consent_timestamp"] is None) == (marketing["consent"] == "NEVER_SUBSCRIBED")
        if "predictive_analytics" in attrs:
            predictive = attrs["predictive_analytics"]
            assert set(predictive) == PREDICTIVE_KEYS
            assert predictive["historic_number_of_orders"] >= 1 and predictive["historic_clv"] > 0
            assert predictive["churn_probability"] is None or 0 <= predictive["churn_probability"] <= 1
    with_orders = [p for p in profiles if p["attributes"]["last_event_date"]]
    predictive = [p for p in profiles if "predictive_analytics" in p["attributes"]]
    assert len(with_orders) / n == pytest.approx(store.params.klaviyo_buyer_rate, abs=0.03)
    assert (len(profiles) - len(with_orders)) / n == pytest.approx(store.params.klaviyo_extra_profile_rate, abs=0.01)
    assert len(predictive) / n == pytest.approx(store.params.predictive_rate, abs=0.03)
    assert any(p["attributes"]["predictive_analytics"]["predicted_clv"] is None for p in predictive)
    # a linked profile's external_id is the Shopify customer's numeric id, with the same person's email
    truth = store.truth_customers.dropna(subset=["klaviyo_profile_id", "shopify_customer_id"])
    linked = truth.set_index("klaviyo_profile_id")
    for profile in with_orders:
        if profile["id"] in linked.index:
            row = linked.loc[profile["id"]]
            assert profile["attributes"]["external_id"] == row["shopify_customer_id"].rsplit("/", 1)[1]
            assert profile["attributes"]["email"].strip().lower() == row["email"]


def test_order_window_filter(store, nodes):
    lo = datetime(2025, 6, 1)
    mid = datetime(2025, 6, 17, 12, 30, tzinfo=timezone.utc)
    hi = datetime(2025, 7, 1)
    first = list(store.order_nodes(lo, mid))
    second = list(store.order_nodes(mid, hi))
    assert first and second
    assert all("2025-06-01T00:00:00Z" <= n["updatedAt"] < "2025-06-17T12:30:00Z" for n in first)
    assert all("2025-06-17T12:30:00Z" <= n["updatedAt"] < "2025-07-01T00:00:00Z" for n in second)
    expected = [n for n in nodes if "2025-06-01T00:00:00Z" <= n["updatedAt"] < "2025-07-01T00:00:00Z"]
    assert first + second == expected
    assert list(store.order_nodes(updated_min=datetime(2030, 1, 1))) == []
    assert len(list(store.order_nodes(updated_max=lo))) == sum(n["updatedAt"] < "2025-06-01" for n in nodes)


def test_profile_window_filter(store, profiles):
    cut = profiles[len(profiles) // 2]["attributes"]["updated"]
    after = datetime.fromisoformat(cut)
    newer = list(store.profile_objects(after))
    assert newer == [p for p in profiles if p["attributes"]["updated"] > cut]
    assert 0 < len(newer) < len(profiles)
    # a naive datetime is read as UTC; one second earlier brings back the profiles updated at `cut`
    earlier = (after.replace(tzinfo=None) - timedelta(seconds=1)).isoformat() + "+00:00"
    again = list(store.profile_objects(after.replace(tzinfo=None) - timedelta(seconds=1)))
    assert again == [p for p in profiles if p["attributes"]["updated"] > earlier]
    assert len(again) > len(newer)


def test_sql_rendering_equals_python_rendering():
    params = DemoStoreParams(
        n_customers=600, seed=5, broken_record_rate=0.03, cancel_rate=0.1, partial_refund_rate=0.1,
        edit_rate=0.2, guest_order_rate=0.15,
    )
    small = generate(params)
    with duckdb.connect() as conn:
        counts = small.write_raw_tables(conn, datetime(2026, 11, 1, 6, 0))
        orders = conn.execute(
            "select order_id, updated_at, partition_date, payload, source, ingested_at from raw.shopify_orders"
        ).fetchall()
        sql_profiles = conn.execute(
            "select profile_id, updated_at, payload, source from raw.klaviyo_profiles"
        ).fetchall()

    def order_key(node):
        return node.get("id") or "", node["updatedAt"]

    python_orders = sorted(small.order_nodes(), key=order_key)
    assert counts["raw.shopify_orders"] == len(python_orders) == len(orders)
    assert sorted((json.loads(r[3]) for r in orders), key=order_key) == python_orders
    assert sum("id" not in n for n in python_orders) > 0  # the missing-id path was exercised
    for order_id, updated_at, partition_date, payload, source, ingested_at in orders:
        node = json.loads(payload)
        assert order_id == node.get("id") and source == "demo" and ingested_at == datetime(2026, 11, 1, 6, 0)
        assert updated_at == datetime.fromisoformat(node["updatedAt"].replace("Z", ""))
        assert partition_date == updated_at.date()

    python_profiles = sorted(small.profile_objects(), key=lambda p: p["id"])
    assert sorted((json.loads(r[2]) for r in sql_profiles), key=lambda p: p["id"]) == python_profiles
    for profile_id, updated_at, payload, source in sql_profiles:
        attrs = json.loads(payload)["attributes"]
        assert updated_at == datetime.fromisoformat(attrs["updated"]).replace(tzinfo=None)


def test_truth_is_consistent_with_the_orders(store):
    truth = store.truth_customers
    tx = store.truth_transactions
    assert truth["n_purchases"].min() == 1  # every customer's first purchase is their arrival
    first = tx.groupby("customer")["timestamp"].min()
    assert (first.to_numpy() == truth["arrival"].to_numpy()).all()
    last = tx.groupby("customer")["timestamp"].max()
    dropped = truth[~truth["is_alive_at_end"]]
    # BG/NBD: a customer can only drop out right after a repeat purchase, and never buys again
    assert (last[dropped["customer"]].to_numpy() == dropped["dropout_time"].to_numpy()).all()
    assert (dropped["n_purchases"] >= 2).all()
    assert len(tx) == int((~store.orders["is_test"]).sum())
    assert truth["email"].is_unique


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bgnbd_fit_recovers_the_true_parameters(seed):
    """Tolerances = |bias| + 4 sd of the relative error over 20 seeds (100..119) at 5,000
    customers, rounded up to 5 %: r mean +2 % sd 3 %, alpha +7 % sd 3.4 % (day rounding and
    seasonality), a -3 % sd 8.6 %, b -2 % sd 11 %. The mean purchase rate r/alpha and mean
    dropout a/(a+b) are pinned more tightly (worst over 20 seeds: 7 % and 6 %)."""
    from lifetimes import BetaGeoFitter
    from lifetimes.utils import summary_data_from_transaction_data

    store = generate(DemoStoreParams(n_customers=5000, seed=seed))
    summary = summary_data_from_transaction_data(
        store.truth_transactions, "customer", "timestamp",
        observation_period_end=pd.Timestamp(store.params.end_date) + pd.Timedelta(days=1), freq="D",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = BetaGeoFitter().fit(summary["frequency"], summary["recency"] / 7, summary["T"] / 7).params_
    true = store.true_params["bgnbd"]
    tolerance = {"r": 0.15, "alpha": 0.25, "a": 0.40, "b": 0.45}
    for name, tol in tolerance.items():
        assert fitted[name] == pytest.approx(true[name], rel=tol), name
    assert fitted["r"] / fitted["alpha"] == pytest.approx(true["r"] / true["alpha"], rel=0.12)
    assert fitted["a"] / (fitted["a"] + fitted["b"]) == pytest.approx(true["a"] / (true["a"] + true["b"]), rel=0.12)
