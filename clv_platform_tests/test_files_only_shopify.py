"""A files-only store fed by Shopify admin's orders export, end to end: the synthetic Online Retail
customers' sales written as Shopify writes its export (one row per line, the order's columns on its
first row only, `-0500` timestamps, guests without an email, refunds, cancellations, float-looking
ids) → `clv-platform files` on a fresh database → scores."""

import csv
from datetime import datetime, timedelta

import duckdb
import pytest

from clv_platform_tests.cheap_config import files_store_run
from clv_platform_tests.ingestion.test_shopify_export import HEADER
from clv_platform_tests.online_retail import synthesize

GUEST_REASON = "missing customer id: guest order without an email (the export has no other customer id)"


def write_shopify_export(export, path) -> dict:
    """The export's sales (not its credit notes, bad-debt or non-product lines) as a Shopify orders
    export; returns what the file holds: rows, guest rows, and per order its expected net revenue."""
    frame = export.frame.drop_duplicates()
    frame = frame[~frame["InvoiceNo"].str.startswith(("C", "A")) & ~frame["StockCode"].isin(["POST", "DOT", "M"])]
    cancelled = {invoice for _, invoice in export.cancelled}
    expected, rows, guest_rows = {}, [], 0
    for n, (invoice, lines) in enumerate(frame.groupby("InvoiceNo", sort=False)):
        created = datetime.strptime(lines["InvoiceDate"].iat[0], "%m/%d/%Y %H:%M")
        subtotal = round(sum(int(q) * float(p) for q, p in zip(lines["Quantity"], lines["UnitPrice"])), 2)
        customer = lines["CustomerID"].iat[0]
        email = f"Customer{customer.split('.')[0]}@Example.com " if customer else ""
        refunded, status, cancelled_at = 0.0, "paid", ""
        if invoice in cancelled:
            refunded, status = subtotal + 5, "refunded"
            cancelled_at = (created + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S -0500")
        elif n % 10 == 3:
            refunded, status = round(subtotal / 3, 2), "partially_refunded"
        order_id = 5_000_000_000_000 + n
        head = {
            "Name": f"#{invoice}", "Email": email, "Financial Status": status, "Currency": "GBP",
            "Subtotal": f"{subtotal:.2f}", "Shipping": "5.00", "Taxes": "0.00", "Total": f"{subtotal + 5:.2f}",
            "Discount Amount": "0.00", "Created at": created.strftime("%Y-%m-%d %H:%M:%S -0500"),
            "Billing Country": lines["Country"].iat[0], "Cancelled at": cancelled_at,
            "Refunded Amount": f"{refunded:.2f}", "Id": f"{order_id}.0" if n % 2 else str(order_id),
        }
        for i, (_, line) in enumerate(lines.iterrows()):
            row = {"Name": f"#{invoice}", "Lineitem quantity": line["Quantity"], "Lineitem name": line["Description"],
                   "Lineitem price": line["UnitPrice"], "Lineitem sku": line["StockCode"], "Lineitem discount": "0.00"}
            rows.append({**head, **row} if i == 0 else row)
        if email:
            net = 0.0 if cancelled_at else max(subtotal - refunded, 0.0)
            expected[f"import:{order_id}"] = (email.strip().lower(), created.date(), net)
        else:
            guest_rows += len(lines)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return {"rows": len(rows), "guest_rows": guest_rows, "orders": expected}


@pytest.fixture(scope="module")
def shopify_store(tmp_path_factory):
    export = synthesize(n_customers=300, seed=5, lines_per_invoice=3)
    # the export's Currency column gives the currency
    with files_store_run(tmp_path_factory.mktemp("shopify_files_store"),
                         lambda inbox: write_shopify_export(export, inbox / "orders_export_1.csv")) as store:
        yield store


def test_a_shopify_orders_export_reaches_scores(shopify_store):
    assert shopify_store.code == 0
    with duckdb.connect(str(shopify_store.db), read_only=True) as conn:
        assert conn.execute("select distinct file_format from raw.file_transactions").fetchall() == \
            [("shopify_orders",)]
        for table in ("scores.customer_clv", "scores.customer_npd", "scores.customer_segments",
                      "marts.customer_scores", "marts.revenue_monthly"):
            assert conn.execute(f"select count(*) from {table}").fetchone()[0] > 0, table
        scored = conn.execute("select count(*) from scores.customer_clv where customer_id like 'import:%@example.com'"
                              ).fetchone()[0]
        assert scored == conn.execute("select count(*) from scores.customer_clv").fetchone()[0]


def test_every_row_is_accounted_for_and_orders_carry_the_exports_meaning(shopify_store):
    written = shopify_store.written
    with duckdb.connect(str(shopify_store.db), read_only=True) as conn:
        raw_rows = conn.execute("select count(*) from raw.file_transactions").fetchone()[0]
        lines = conn.execute("select count(*) from staging.order_lines").fetchone()[0]
        rejected = dict(conn.execute("select reason, count(*) from staging.rejected_rows group by 1").fetchall())
        orders = {o: (e, d, float(n)) for o, e, d, n in conn.execute(
            "select order_id, email, order_date, net_revenue from staging.orders").fetchall()}
        cutoff = conn.execute("select distinct feature_cutoff from features.customer_features").fetchall()
    assert raw_rows == written["rows"] and written["guest_rows"] > 0
    assert rejected == {GUEST_REASON: written["guest_rows"]}
    assert lines + written["guest_rows"] == raw_rows
    assert set(orders) == set(written["orders"])
    for order_id, (email, day, net) in written["orders"].items():
        assert orders[order_id] == (email, day, pytest.approx(net, abs=0.005)), order_id
    assert cutoff == [(max(day for _, day, _ in written["orders"].values()),)]
