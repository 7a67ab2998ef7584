"""Shopify admin's orders export (Orders → Export): one row per line item, the order's own columns on
its first row only. Read as Shopify meant it: local order days, Subtotal as net sales before
returns, refunds capped at the order, cancelled and voided orders worth nothing, guests without an
email rejected, float-looking ids kept whole; as CSV and as a two-sheet workbook."""

import csv
import io
from datetime import date

import duckdb
import pandas as pd
import pytest

from clv_platform.ingestion.file_import import detect_format
from clv_platform_tests.ingestion.test_file_semantics import _import, _stage

# The export's header as Shopify writes it (order of the real file, trimmed of the tax columns).
HEADER = [
    "Name", "Email", "Financial Status", "Paid at", "Fulfillment Status", "Fulfilled at", "Accepts Marketing",
    "Currency", "Subtotal", "Shipping", "Taxes", "Total", "Discount Code", "Discount Amount", "Shipping Method",
    "Created at", "Lineitem quantity", "Lineitem name", "Lineitem price", "Lineitem compare at price",
    "Lineitem sku", "Lineitem requires shipping", "Lineitem taxable", "Lineitem fulfillment status",
    "Billing Name", "Billing City", "Billing Zip", "Billing Country", "Shipping Name", "Shipping City",
    "Shipping Country", "Notes", "Cancelled at", "Payment Method", "Refunded Amount", "Vendor",
    "Outstanding Balance", "Id", "Tags", "Risk Level", "Source", "Lineitem discount", "Phone", "Duties",
]


def _order(name, email, status, created, subtotal, shipping, taxes, total, lines, *, refunded="0.00",
           cancelled="", discount="0.00", code="", order_id="", country="United States"):
    """The rows of one order: its own columns on the first row only, as the export writes them."""
    head = {
        "Name": name, "Email": email, "Financial Status": status, "Paid at": created, "Fulfillment Status": "fulfilled",
        "Accepts Marketing": "no", "Currency": "USD", "Subtotal": subtotal, "Shipping": shipping, "Taxes": taxes,
        "Total": total, "Discount Code": code, "Discount Amount": discount, "Shipping Method": "Standard",
        "Created at": created, "Billing Name": "Someone", "Billing Country": country, "Shipping Country": country,
        "Cancelled at": cancelled, "Payment Method": "Shopify Payments", "Refunded Amount": refunded,
        "Outstanding Balance": "0.00", "Id": order_id, "Risk Level": "Low", "Source": "web",
    }
    rows = []
    for i, (qty, title, price, sku, line_discount) in enumerate(lines):
        line = {"Name": name, "Lineitem quantity": qty, "Lineitem name": title, "Lineitem price": price,
                "Lineitem sku": sku, "Lineitem requires shipping": "true", "Lineitem taxable": "true",
                "Lineitem fulfillment status": "fulfilled", "Vendor": "Acme", "Lineitem discount": line_discount}
        rows.append({**head, **line} if i == 0 else line)
    return rows


ORDERS = [
    # two lines; a float-looking Id; created 21:15 at -0500 = 02:15 UTC the next day
    _order("#1001", "ann@example.com", "paid", "2024-03-10 21:15:00 -0500", "50.00", "5.00", "4.00", "59.00",
           [("2", "Crew Tee - Black / M", "20.00", "TEE-BLK-M", "0.00"), ("1", "Mug", "10.00", "MUG", "0.00")],
           order_id="5123456789012.0"),
    # a discount code, a partial refund; an Id Excel wrote in scientific notation (digits lost); -0800
    _order("#1002", "  Bob@Example.COM ", "partially_refunded", "2024-03-11 22:30:00 -0800", "40.00", "0.00",
           "0.00", "40.00", [("3", "Socks", "15.00", "SOCK", "0.00")], refunded="15.00", discount="5.00",
           code="SAVE5", order_id="5.12345678901e+12"),
    # refunded in full
    _order("#1003", "ann@example.com", "refunded", "2024-04-01 10:00:00 -0500", "30.00", "0.00", "0.00", "30.00",
           [("1", "Cap", "30.00", "CAP", "0.00")], refunded="30.00", order_id="5123456789013"),
    # cancelled (and refunded)
    _order("#1004", "carol@example.com", "refunded", "2024-04-02 12:00:00 -0500", "25.00", "0.00", "0.00", "25.00",
           [("1", "Scarf", "25.00", "SCARF", "0.00")], refunded="25.00", cancelled="2024-04-03 09:00:00 -0500",
           order_id="5123456789014"),
    # payment voided: never paid
    _order("#1005", "dave@example.com", "voided", "2024-04-05 08:00:00 -0500", "35.00", "5.00", "0.00", "40.00",
           [("1", "Belt", "20.00", "BELT", "0.00"), ("1", "Wallet", "15.00", "WALLET", "0.00")],
           order_id="5123456789015"),
    # a guest checkout without an email: no customer to tie it to
    _order("#1006", "", "paid", "2024-04-06 08:00:00 -0500", "18.00", "0.00", "0.00", "18.00",
           [("1", "Pin", "8.00", "PIN", "0.00"), ("1", "Patch", "10.00", "PATCH", "0.00")], order_id="5123456789016"),
    # pending payment counts; a line without SKU is its product by name; a line discount
    _order("#1007", "erin@example.com", "pending", "2024-05-01 23:59:59 -0800", "22.00", "0.00", "0.00", "22.00",
           [("2", "Tote Bag - Natural", "12.00", "", "2.00")], order_id="5123456789017"),
    # a refund larger than the order's revenue (shipping and tax refunded too)
    _order("#1008", "frank@example.com", "refunded", "2024-05-02 09:00:00 -0500", "20.00", "10.00", "2.00",
           "32.00", [("1", "Poster", "20.00", "POSTER", "0.00")], refunded="32.00", order_id="5123456789018"),
    # prices include VAT: Total = Subtotal + Shipping, so the 4.00 of tax is inside the Subtotal
    _order("#1009", "gina@example.com", "paid", "2024-05-03 09:00:00 +0100", "24.00", "0.00", "4.00", "24.00",
           [("1", "Notebook", "24.00", "NOTE", "0.00")], order_id="5123456789019", country="Germany"),
]
# a line row whose order's first row is not in the file (the export was cut)
ORPHAN = [{"Name": "#0999", "Lineitem quantity": "1", "Lineitem name": "Lost", "Lineitem price": "9.00",
           "Lineitem sku": "LOST"}]
ROWS = [row for order in ORDERS for row in order] + ORPHAN  # 13 rows


def _csv(rows) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HEADER, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


@pytest.fixture(autouse=True)
def _no_store_currency(monkeypatch):
    monkeypatch.delenv("CLV_FILE_CURRENCY", raising=False)  # the export's Currency column says it


def _staged(db):
    staged, rejected, _ = _stage(db)
    with duckdb.connect(str(db)) as conn:
        orders = conn.execute(
            """
            select order_id, order_name, customer_id, email, order_date, financial_status, is_cancelled, is_unpaid,
                   cancelled_on, columns(['gross_sales', 'discount_amount', 'gross_revenue', 'refunded_amount',
                   'net_revenue', 'tax_amount', 'shipping_amount', 'total_price', 'total_refunded'])::double,
                   line_count, item_quantity, presentment_currency
            from staging.orders order by order_name
            """
        ).df().set_index("order_name")
        lines = conn.execute(
            "select order_id, sku, product_id, title, quantity, unit_price::double, discount_amount::double, "
            "line_revenue::double, is_cancelled, order_date from staging.order_lines order by order_id, line_number"
        ).fetchall()
        refunds = conn.execute(
            "select order_id, refunded_on, amount::double from staging.refunds order by 1").fetchall()
        customers = dict(conn.execute("select customer_id, email from staging.customers").fetchall())
        countries = dict(conn.execute("select customer_id, country from staging.customers").fetchall())
    return staged, rejected, orders, lines, refunds, customers, countries


def _check(staged, rejected, orders, lines, refunds, customers, countries, row_ids):
    """The expected staging of ORDERS + ORPHAN; `row_ids` maps a row's place in ROWS to its record id."""
    assert staged.shop_currency == "USD"
    assert rejected == {
        row_ids[7]: "missing customer id: guest order without an email (the export has no other customer id)",
        row_ids[8]: "missing customer id: guest order without an email (the export has no other customer id)",
        row_ids[12]: "no order row: no row of order #0999 in the file has its Email, Financial Status, Created at "
                     "or Subtotal",
    }
    rec = {r.source_table: r for r in staged.reconciliation}["raw.file_transactions"]
    assert (rec.rows_in, rec.accepted, rec.rejected) == (13, 10, 3)
    assert rec.balanced and len(lines) == 10

    assert list(orders.index) == ["#1001", "#1002", "#1003", "#1004", "#1005", "#1007", "#1008", "#1009"]
    o = orders.to_dict("index")
    # ids: the integral Id whole (not 5.123e12, not 5123456789012.0); Excel's lossy one falls back to the Name
    assert o["#1001"]["order_id"] == "import:5123456789012"
    assert o["#1002"]["order_id"] == "import:#1002"
    # customers: the normalized email, filled in on the order's other line rows
    assert o["#1001"]["customer_id"] == o["#1003"]["customer_id"] == "import:ann@example.com"
    assert o["#1002"]["customer_id"] == "import:bob@example.com" and o["#1002"]["email"] == "bob@example.com"
    assert customers["import:bob@example.com"] == "bob@example.com"
    assert countries["import:gina@example.com"] == "Germany"
    # the day written in Created at (the shop's), not the UTC day
    assert o["#1001"]["order_date"].date() == date(2024, 3, 10)
    assert o["#1002"]["order_date"].date() == date(2024, 3, 11)
    assert o["#1007"]["order_date"].date() == date(2024, 5, 1)
    # net revenue per order: net sales (Subtotal) − refunds, never below 0; cancelled / voided = 0
    net = {name: row["net_revenue"] for name, row in o.items()}
    assert net == {"#1001": 50.0, "#1002": 25.0, "#1003": 0.0, "#1004": 0.0, "#1005": 0.0, "#1007": 22.0,
                   "#1008": 0.0, "#1009": 20.0}
    assert o["#1001"]["gross_sales"] == 50.0 and o["#1001"]["line_count"] == 2 and o["#1001"]["item_quantity"] == 3
    assert (o["#1001"]["tax_amount"], o["#1001"]["shipping_amount"], o["#1001"]["total_price"]) == (4.0, 5.0, 59.0)
    assert (o["#1002"]["gross_sales"], o["#1002"]["discount_amount"], o["#1002"]["gross_revenue"],
            o["#1002"]["refunded_amount"], o["#1002"]["financial_status"]) == (45.0, 5.0, 40.0, 15.0,
                                                                             "PARTIALLY_REFUNDED")
    # a refund larger than the revenue is capped at it; the money refunded stays in total_refunded
    assert (o["#1008"]["gross_revenue"], o["#1008"]["refunded_amount"], o["#1008"]["total_refunded"]) == \
        (20.0, 20.0, 32.0)
    assert o["#1009"]["gross_revenue"] == 20.0  # 24.00 with 4.00 of VAT inside
    assert bool(o["#1004"]["is_cancelled"]) and not bool(o["#1004"]["is_unpaid"])
    assert o["#1004"]["cancelled_on"].date() == date(2024, 4, 3)
    assert bool(o["#1005"]["is_cancelled"]) and bool(o["#1005"]["is_unpaid"])
    assert not bool(o["#1007"]["is_cancelled"]) and o["#1007"]["financial_status"] == "PENDING"
    assert set(orders["presentment_currency"]) == {"USD"}
    # lines: product by SKU, else by name; the line discount off the line's revenue; cancelled flagged
    by_title = {title: (oid, sku, pid, q, price, disc, rev, cancelled, day)
                for oid, sku, pid, title, q, price, disc, rev, cancelled, day in lines}
    assert by_title["Mug"] == ("import:5123456789012", "MUG", "import:MUG", 1, 10.0, 0.0, 10.0, False,
                               date(2024, 3, 10))
    assert by_title["Crew Tee - Black / M"][:7] == ("import:5123456789012", "TEE-BLK-M", "import:TEE-BLK-M", 2,
                                                    20.0, 0.0, 40.0)
    assert by_title["Tote Bag - Natural"][:7] == ("import:5123456789017", None, "import:Tote Bag - Natural", 2,
                                                  12.0, 2.0, 22.0)
    assert by_title["Wallet"][7] and by_title["Scarf"][7]  # voided, cancelled
    # each order's Refunded Amount is one refund on the order's own day (the export has no refund date)
    assert refunds == [
        ("import:#1002", date(2024, 3, 11), 15.0),
        ("import:5123456789013", date(2024, 4, 1), 30.0),
        ("import:5123456789014", date(2024, 4, 2), 25.0),
        ("import:5123456789018", date(2024, 5, 2), 32.0),
    ]


def test_the_export_header_is_recognized():
    file_format, mapping, fields = detect_format(HEADER, "orders_export.csv")
    assert file_format == "shopify_orders"
    assert mapping["order_id"] == HEADER.index("Name") and mapping["customer_id"] == HEADER.index("Email")
    assert mapping["amount"] == HEADER.index("Subtotal") and mapping["currency"] == HEADER.index("Currency")
    assert fields["refunded_amount"] == HEADER.index("Refunded Amount") and fields["id"] == HEADER.index("Id")


def test_shopify_orders_export_csv(data_env):
    result, db = _import(data_env, "orders_export_1.csv", _csv(ROWS))
    assert result.success
    meta = result.asset_materializations_for_node("raw__file_transactions")[0].metadata
    assert meta["format"].value == "shopify_orders"
    with duckdb.connect(str(db)) as conn:  # kept as the file has it: continuation rows stay blank
        assert conn.execute("select customer_id, order_date, amount from raw.file_transactions "
                            "where row_number = 3").fetchone() == (None, None, None)
    _check(*_staged(db), row_ids={i: f"orders_export_1.csv#{i + 2}" for i in range(len(ROWS))})


def test_shopify_orders_export_workbook_with_two_sheets(data_env):
    """The same export saved from Excel: numbers are numbers (the Id a float), one sheet per half."""
    frame = pd.read_csv(io.StringIO(_csv(ROWS)), dtype=str, keep_default_na=False).replace("", None)
    for column in ("Subtotal", "Shipping", "Taxes", "Total", "Discount Amount", "Lineitem quantity",
                   "Lineitem price", "Refunded Amount", "Outstanding Balance", "Lineitem discount", "Id"):
        frame[column] = pd.to_numeric(frame[column])  # 5123456789012.0 and 5.12345678901e12 as Excel holds them
    assert frame.loc[0, "Id"] == 5123456789012.0
    path = data_env / "inbox" / "orders_export.xlsx"
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        frame.iloc[:6].to_excel(writer, sheet_name="Orders 1", index=False)  # #1005's 2nd line on the next
        frame.iloc[6:].to_excel(writer, sheet_name="Orders 2", index=False)
    result, db = _import(data_env, "orders_export.xlsx")
    assert result.success
    row_ids = {i: f"orders_export.xlsx#Orders 1!{i + 2}" if i < 6 else f"orders_export.xlsx#Orders 2!{i - 4}"
               for i in range(len(ROWS))}
    staged, rejected, orders, lines, refunds, customers, countries = _staged(db)
    # Excel held #1002's lossy Id as the number 5123456789010: integral, so it is taken as the id
    assert orders.loc["#1002", "order_id"] == "import:5123456789010"
    orders.loc["#1002", "order_id"] = "import:#1002"
    refunds = [("import:#1002", *r[1:]) if r[0] == "import:5123456789010" else r for r in refunds]
    _check(staged, rejected, orders, lines, sorted(refunds), customers, countries, row_ids)


def test_a_later_export_replaces_the_orders_it_repeats_by_name(data_env):
    """Overlapping exports: the newer file's rows of an order win, matched by Name even when the
    earlier file's Id was mangled by Excel."""
    assert _import(data_env, "jan.csv", _csv(ORDERS[0] + ORDERS[1]))[0].success
    refreshed = [dict(r) for r in ORDERS[1]]
    refreshed[0].update({"Id": "5123456789020", "Refunded Amount": "40.00", "Financial Status": "refunded"})
    assert _import(data_env, "feb.csv", _csv(refreshed))[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert orders == {"import:5123456789012": pytest.approx(50.0), "import:5123456789020": pytest.approx(0.0)}
    assert rejected == {"jan.csv#4": "order re-imported from a later file"}


def test_unparseable_order_columns_reject_the_order_with_the_column_named(data_env):
    bad = [dict(r) for r in ORDERS[0]]
    bad[0]["Refunded Amount"] = "n/a"
    worse = [dict(r) for r in ORDERS[2]]
    worse[0]["Created at"] = "sometime"
    assert _import(data_env, "bad.csv", _csv(bad + worse))[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert orders == {}
    assert rejected == {"bad.csv#2": "unparseable Refunded Amount: n/a", "bad.csv#3": "unparseable Refunded Amount: n/a",
                        "bad.csv#4": "unparseable order date: sometime"}


def test_order_columns_beyond_the_value_limits_are_rejected_rows(data_env):
    huge = [dict(r) for r in ORDERS[0]]
    huge[0]["Refunded Amount"] = "99999999999999999999.00"
    assert _import(data_env, "huge.csv", _csv(huge + ORDERS[1]))[0].success
    staged, rejected, orders = _stage(data_env / "clv.duckdb")
    assert rejected == {f"huge.csv#{n}": "amount out of range: Refunded Amount 99999999999999999999.00" for n in (2, 3)}
    assert orders == {"import:#1002": pytest.approx(25.0)}
    assert all(r.balanced for r in staged.reconciliation)


def test_accepts_marketing_of_the_customers_newest_order_is_their_consent(data_env):
    """`Accepts Marketing` is Shopify's consent when the file was exported: the newest order's value
    counts (ann said no on her March order and yes on her April one). "no" does not tell an
    unsubscribe from never subscribing: no consent state, but no marketing e-mail either. A blank
    says nothing."""
    rows = [dict(r) for r in ORDERS[0] + ORDERS[1] + ORDERS[2] + ORDERS[3]]
    by_name = {r["Name"]: r for r in rows if "Email" in r}  # the head rows
    by_name["#1001"]["Accepts Marketing"] = "no"
    by_name["#1003"]["Accepts Marketing"] = "yes"
    by_name["#1004"]["Accepts Marketing"] = ""
    assert _import(data_env, "consent.csv", _csv(rows))[0].success
    _stage(data_env / "clv.duckdb")
    with duckdb.connect(str(data_env / "clv.duckdb")) as conn:
        consent = {c: (state, can) for c, state, can in conn.execute(
            "select customer_id, email_consent, can_receive_email_marketing from staging.customers").fetchall()}
    assert consent == {"import:ann@example.com": ("SUBSCRIBED", True),
                       "import:bob@example.com": (None, False),
                       "import:carol@example.com": (None, None)}
