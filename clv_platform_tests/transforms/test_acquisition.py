"""Acquisition attribution: orders with known journeys and discount codes → staging.customer_acquisition
→ marts.acquisition_value, every figure recomputed by hand."""

import math
from datetime import date

import duckdb
import pytest

from clv_platform.marts.forecast_assets import build_acquisition_value
from clv_platform.transforms.staging import build_staging
from test_staging import load, money, order


def visit(source, source_type=None, utm=None, referrer=None, landing="https://shop.example.com/"):
    return {"source": source, "sourceType": source_type, "landingPage": landing, "referrerUrl": referrer,
            "utmParameters": None if utm is None else {
                "source": utm[0], "medium": utm[1], "campaign": utm[2], "content": None, "term": None}}


def journey(first, last=None):
    return {"customerOrderIndex": 1, "daysToConversion": 2, "firstVisit": first, "lastVisit": last or first}


def placed(n, *, customer, email, day, total, codes=(), journey_=None, source_name="web", cancelled=None):
    node = order(n, customer=customer, email=email, total=total, updated=f"{day}T12:00:00Z", cancelled=cancelled)
    node["createdAt"] = node["processedAt"] = f"{day}T10:00:00Z"
    # revenue is net sales (lines after discounts), so the one line carries the order's value
    line = node["lineItems"]["nodes"][0]
    line["quantity"], line["originalUnitPriceSet"] = 1, money(total, "USD")
    node["sourceName"] = source_name
    node["discountCodes"] = list(codes)
    node["customerJourneySummary"] = journey_
    return node


KLAVIYO = visit("email", "NEWSLETTER", ("klaviyo", "email", "welcome_series"),
                landing="https://shop.example.com/?utm_source=klaviyo")
FACEBOOK = visit("facebook", "AD", ("facebook", "paid_social", "bfcm_2025"), referrer="https://l.facebook.com/")
GOOGLE = visit("google", "SEO", referrer="https://www.google.com/")
DIRECT = visit("direct")

# customer -> (orders); the first never-cancelled order decides the acquisition
ORDERS = [
    # c1: e-mail, WELCOME10, repeats after 30 days (an e-mail campaign later must not change the channel)
    placed(1, customer=1, email="c1@example.com", day="2025-03-01", total="50.00", codes=["welcome10"],
           journey_=journey(KLAVIYO)),
    placed(2, customer=1, email="c1@example.com", day="2025-03-31", total="70.00",
           journey_=journey(FACEBOOK)),
    # c2: e-mail, same campaign and code, no repeat
    placed(3, customer=2, email="c2@example.com", day="2025-03-10", total="30.00", codes=["WELCOME10"],
           journey_=journey(KLAVIYO)),
    # c3: a cancelled first order via direct, then the real first order from a paid social ad
    placed(4, customer=3, email="c3@example.com", day="2025-04-01", total="99.00", journey_=journey(DIRECT),
           cancelled="2025-04-01T11:00:00Z"),
    placed(5, customer=3, email="c3@example.com", day="2025-04-02", total="40.00", codes=["SOCIAL15", "VIP20"],
           journey_=journey(FACEBOOK, DIRECT)),
    # c3 repeats after 120 days: outside the 90-day window
    placed(6, customer=3, email="c3@example.com", day="2025-07-31", total="40.00", journey_=journey(DIRECT)),
    # c4: organic search, repeats on day 90 exactly (inside)
    placed(7, customer=4, email="c4@example.com", day="2025-05-01", total="80.00", journey_=journey(GOOGLE)),
    placed(8, customer=4, email="c4@example.com", day="2025-07-30", total="20.00", journey_=journey(DIRECT)),
    # c5: a POS sale, no journey
    placed(9, customer=5, email="c5@example.com", day="2025-06-01", total="25.00", journey_=None,
           source_name="pos"),
    # c6: bought 30 days before the as-of date via google: not observable for the 90-day repeat rate
    placed(10, customer=6, email="c6@example.com", day="2025-10-01", total="60.00", journey_=journey(GOOGLE)),
]
AS_OF = date(2025, 10, 31)
CLV = {  # customer email -> (predicted_clv, p_alive): a stand-in for scores.customer_clv
    "c1@example.com": (300.0, 0.9), "c2@example.com": (100.0, 0.5), "c3@example.com": (80.0, 0.4),
    "c4@example.com": (200.0, 0.8), "c5@example.com": (50.0, 0.3), "c6@example.com": (120.0, 0.95),
}


@pytest.fixture(scope="module")
def conn():
    connection = duckdb.connect()
    load(connection, ORDERS)
    build_staging(connection)
    connection.execute("create schema scores")
    connection.execute("create table scores.customer_clv (customer_id varchar, predicted_clv double, p_alive double)")
    for email, (clv, alive) in CLV.items():
        connection.execute(
            "insert into scores.customer_clv select customer_id, ?, ? from staging.customers where email = ?",
            [clv, alive, email])
    yield connection
    connection.close()


def acquisition(conn):
    rows = conn.execute(
        """
        select c.email, a.first_order_id, a.first_order_date, a.first_order_net_revenue, a.channel, a.campaign,
               a.discount_code, a.discount_codes, a.source_name, a.first_visit_source, a.last_visit_source,
               a.first_visit_utm_source, a.first_visit_referrer_url
        from staging.customer_acquisition a join staging.customers c using (customer_id)
        order by c.email
        """
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_first_order_channel_campaign_and_code(conn):
    got = acquisition(conn)
    assert set(got) == set(CLV)
    c1 = got["c1@example.com"]
    assert c1[0] == "gid://shopify/Order/1" and c1[3:6] == ("email", "welcome_series", "WELCOME10")
    assert c1[6] == ["WELCOME10"] and c1[7] == "web" and c1[9] == "email" and c1[10] == "klaviyo"
    assert got["c2@example.com"][3:6] == ("email", "welcome_series", "WELCOME10")
    c3 = got["c3@example.com"]  # the cancelled direct order is not the first purchase
    assert c3[0] == "gid://shopify/Order/5" and c3[1] == date(2025, 4, 2)
    assert c3[3:6] == ("paid_social", "bfcm_2025", "SOCIAL15") and c3[6] == ["SOCIAL15", "VIP20"]
    assert c3[8] == "facebook" and c3[9] == "direct" and c3[11] == "https://l.facebook.com/"
    assert got["c4@example.com"][3:6] == ("organic_search", "(none)", "(none)")
    assert got["c5@example.com"][3:8] == ("pos", "(none)", "(none)", [], "pos")
    assert got["c6@example.com"][3] == "organic_search"
    assert got["c1@example.com"][2] == pytest.approx(50.0)


def test_channel_rules_on_awkward_visits():
    """Referrer-only, utm-only and unknown sources, and a file-imported order with no payload at all."""
    connection = duckdb.connect()
    nodes = [
        placed(1, customer=1, email="a@example.com", day="2025-03-01", total="10.00",
               journey_=journey(visit("blog.example.org", referrer="https://blog.example.org/post"))),
        placed(2, customer=2, email="b@example.com", day="2025-03-01", total="10.00",
               journey_=journey(visit("unknown", utm=("Mailchimp", "Email", "spring")))),
        placed(3, customer=3, email="c@example.com", day="2025-03-01", total="10.00",
               journey_=journey(visit("instagram", referrer="https://l.instagram.com/"))),
        placed(4, customer=4, email="d@example.com", day="2025-03-01", total="10.00",
               journey_=journey(visit("bing", "AD", ("bing", "cpc", "brand")))),
        placed(5, customer=5, email="e@example.com", day="2025-03-01", total="10.00",
               journey_={"customerOrderIndex": 1, "daysToConversion": 0, "firstVisit": None, "lastVisit": None}),
    ]
    del nodes[0]["discountCodes"]  # an older payload without the field
    load(connection, nodes)
    build_staging(connection)
    got = dict(connection.execute(
        "select c.email, a.channel || '|' || a.campaign || '|' || a.discount_code "
        "from staging.customer_acquisition a join staging.customers c using (customer_id)").fetchall())
    assert got == {
        "a@example.com": "referral|(none)|(none)",
        "b@example.com": "email|spring|(none)",
        "c@example.com": "organic_social|(none)|(none)",
        "d@example.com": "paid_search|brand|(none)",
        "e@example.com": "unknown|(none)|(none)",
    }


def test_acquisition_value_figures(conn):
    build_acquisition_value(conn, AS_OF)
    mart = conn.execute("select * from marts.acquisition_value").df()
    total = mart[mart["is_all_months"]].set_index(["channel", "campaign", "discount_code"])
    # store history: 2025-03 .. 2025-10 = 8 months
    email = total.loc[("email", "welcome_series", "WELCOME10")]
    assert email["customers"] == 2 and email["customers_per_month"] == pytest.approx(2 / 8)
    assert email["first_order_value"] == pytest.approx((50 + 30) / 2)
    assert email["customers_observable_90d"] == 2 and email["repeat_rate_90d"] == pytest.approx(0.5)
    assert email["mean_predicted_clv"] == pytest.approx(200.0) and email["total_predicted_clv"] == pytest.approx(400.0)
    half_width = 1.2815515655446004 * math.sqrt(((300 - 200) ** 2 + (100 - 200) ** 2) / 1) / math.sqrt(2)
    assert email["mean_predicted_clv_low"] == pytest.approx(200 - half_width)
    assert email["mean_predicted_clv_high"] == pytest.approx(200 + half_width)
    assert email["total_predicted_clv_high"] == pytest.approx(2 * (200 + half_width))
    assert email["share_alive"] == pytest.approx(0.7)
    assert math.isnan(email["sum_customer_clv_p10"])  # no per-customer interval in these scores

    social = total.loc[("paid_social", "bfcm_2025", "SOCIAL15")]
    assert social["customers"] == 1 and social["repeat_rate_90d"] == 0.0  # repeat after 120 days
    assert social["first_order_value"] == pytest.approx(40.0)
    assert math.isnan(social["mean_predicted_clv_low"])  # one customer: no interval

    search = total.loc[("organic_search", "(none)", "(none)")]
    assert search["customers"] == 2 and search["customers_observable_90d"] == 1  # c6 is too recent
    assert search["repeat_rate_90d"] == pytest.approx(1.0)  # c4 repeated on day 90
    assert search["total_predicted_clv"] == pytest.approx(320.0)

    months = mart[~mart["is_all_months"]]
    assert months["customers"].sum() == total["customers"].sum() == 6
    march = months[(months["channel"] == "email") & (months["acquisition_month"] == "2025-03-01")]
    assert len(march) == 1 and march.iloc[0]["customers"] == 2 and march.iloc[0]["customers_per_month"] == 2
    comments = dict(conn.execute(
        "select column_name, comment from duckdb_columns() where table_name = 'acquisition_value'").fetchall())
    assert "90 days" in comments["repeat_rate_90d"]


def test_acquisition_value_reads_per_customer_intervals_when_scored(conn):
    conn.execute("create or replace table scores.customer_clv as "
                 "select *, predicted_clv * 0.5 as clv_p10, predicted_clv * 2 as clv_p90 from scores.customer_clv")
    missing = build_acquisition_value(conn, AS_OF)
    assert missing == []
    row = conn.execute("select sum_customer_clv_p10, sum_customer_clv_p90 from marts.acquisition_value "
                       "where is_all_months and channel = 'email'").fetchone()
    assert row == (pytest.approx(200.0), pytest.approx(800.0))
