"""A synthetic export shaped like the UCI Online Retail files, with their real quirks.

Used by the files-only tests (small) and by the import measurement (about 540k lines, like the
real 541,909-line file). Quirks reproduced from the real data:

* header `InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country`
  (the original file; `online_retail_ii=True` gives the II names `Invoice, Price, Customer ID`);
* `CustomerID` written as a float (`17850.0`) because a quarter of the lines have none;
* credit notes: `C` invoices with negative quantities, some cancelling a same-day order in full;
* non-product lines: `POST` / `DOT` postage, `M` manual, `A` bad-debt adjustments with a
  negative price and no customer, zero-price lines;
* exact duplicate lines, descriptions with commas, `m/d/yyyy h:mm` dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

ORIGINAL_HEADER = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID",
                   "Country"]
II_HEADER = ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID", "Country"]
COUNTRIES = ["United Kingdom"] * 18 + ["Germany", "France", "EIRE", "Spain", "Netherlands", "Belgium"]


@dataclass
class Export:
    frame: pd.DataFrame  # columns of ORIGINAL_HEADER, every cell as the file shows it
    cancelled: list[tuple[str, str]]  # (customer id, invoice) cancelled in full by a same-day credit note
    last_order_date: str  # the newest InvoiceDate of a sale with a customer (YYYY-MM-DD)


def _date_text(ts: datetime) -> str:
    return f"{ts.month}/{ts.day}/{ts.year} {ts.hour}:{ts.minute:02d}"


def synthesize(n_customers: int, seed: int = 0, start: str = "2009-12-01", end: str = "2011-12-09",
               lines_per_invoice: float = 20.0) -> Export:
    """A deterministic export of `n_customers` repeat-buying customers (plus guest lines)."""
    rng = np.random.default_rng(seed)
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    span_days = (t1 - t0).days
    n_products = 3000
    codes = np.array([str(20000 + i) + ("A" if i % 17 == 0 else "") for i in range(n_products)])
    prices = np.round(np.exp(rng.normal(0.8, 0.8, n_products)), 2)
    names = np.array([f"ITEM {i}, ASSORTED" if i % 9 == 0 else f"ITEM {i}" for i in range(n_products)])

    customer_ids = 12346 + np.arange(n_customers)
    country = rng.choice(COUNTRIES, n_customers)
    rate = rng.gamma(0.9, 1 / 30, n_customers)  # purchases per day
    life = rng.exponential(span_days * 0.8, n_customers)
    first = rng.uniform(0, span_days * 0.9, n_customers)

    rows: list[tuple] = []
    invoice_no = 536365
    cancelled: list[tuple[str, str]] = []
    last_sale = t0
    for c in range(n_customers):
        t = first[c]
        n_orders = 0
        while t < min(first[c] + life[c], span_days) or n_orders == 0:
            ts = (t0 + timedelta(days=float(t))).to_pydatetime().replace(second=0, microsecond=0)
            if ts > t1:
                break
            invoice = str(invoice_no)
            invoice_no += 1
            k = max(1, int(rng.poisson(lines_per_invoice)))
            picks = rng.integers(0, n_products, k)
            qty = rng.choice([1, 2, 3, 4, 6, 12, 24], k)
            cid = f"{customer_ids[c]}.0"
            lines = [(invoice, codes[p], names[p], int(q), ts, float(prices[p]), cid, country[c])
                     for p, q in zip(picks, qty)]
            if rng.random() < 0.3:
                lines.append((invoice, "POST", "POSTAGE", 1, ts, 18.0, cid, country[c]))
            rows.extend(lines)
            last_sale = max(last_sale, pd.Timestamp(ts))
            roll = rng.random()
            if roll < 0.03:  # cancelled the same day, every line
                credit = "C" + str(invoice_no)
                invoice_no += 1
                later = ts + timedelta(minutes=int(rng.integers(5, 300)))
                rows.extend((credit, code, name, -q, later, price, cid, ctry)
                            for (_, code, name, q, _, price, _, ctry) in lines)
                cancelled.append((str(customer_ids[c]), invoice))
            elif roll < 0.08:  # one line returned later
                credit = "C" + str(invoice_no)
                invoice_no += 1
                _, code, name, q, _, price, _, ctry = lines[0]
                later = ts + timedelta(days=int(rng.integers(1, 30)))
                if later <= t1:
                    rows.append((credit, code, name, -max(1, q // 2), later, price, cid, ctry))
            n_orders += 1
            t += rng.exponential(1 / rate[c])

    # guest lines (no CustomerID): a quarter of the real file; also where most zero-price lines are
    n_guest = int(len(rows) * 0.33)
    g_ts = [(t0 + timedelta(minutes=int(m))).to_pydatetime() for m in rng.integers(0, span_days * 1440, n_guest)]
    g_pick = rng.integers(0, n_products, n_guest)
    for i in range(n_guest):
        price = 0.0 if i % 150 == 0 else float(prices[g_pick[i]])
        rows.append((str(invoice_no + i // 25), codes[g_pick[i]], names[g_pick[i]], int(rng.integers(1, 10)),
                     g_ts[i], price, "", "United Kingdom"))
    invoice_no += n_guest // 25 + 1
    # the other non-product lines of the real file
    some = rows[: max(3, len(rows) // 2000)]
    for i, (invoice, _, _, _, ts, _, cid, ctry) in enumerate(some):
        if cid:
            rows.append((invoice, "M", "Manual", 1, ts, 2.5, cid, ctry))
            rows.append((invoice, "DOT", "DOTCOM POSTAGE", 1, ts, 0.0 if i % 2 else 5.0, cid, ctry))
    for i in range(3):
        rows.append((f"A{563185 + i}", "B", "Adjust bad debt", 1, t1.to_pydatetime() - timedelta(days=30 + i),
                     -11062.06, "", "United Kingdom"))
    # exact duplicates (about 1 % of the real file)
    dup_idx = rng.integers(0, len(rows), max(1, len(rows) // 100))
    rows.extend(rows[i] for i in dup_idx)

    frame = pd.DataFrame(rows, columns=ORIGINAL_HEADER)
    frame["InvoiceDate"] = [_date_text(ts) for ts in frame["InvoiceDate"]]
    frame["UnitPrice"] = frame["UnitPrice"].map(lambda v: f"{v:.2f}".rstrip("0").rstrip(".") if v else "0")
    return Export(frame=frame, cancelled=cancelled, last_order_date=str(last_sale.date()))


def write_csv(export: Export, path, online_retail_ii: bool = False) -> None:
    frame = export.frame.copy()
    if online_retail_ii:
        frame.columns = II_HEADER
    frame.to_csv(path, index=False, encoding="utf-8")


def write_two_sheet_workbook(export: Export, path) -> tuple[int, int]:
    """Split at 2010-12-01 into two sheets like the Online Retail II workbook; the first sheet keeps
    the original header, the second uses the II names. Returns the row counts of the sheets."""
    dates = pd.to_datetime(export.frame["InvoiceDate"], format="%m/%d/%Y %H:%M")
    # As Excel holds them: dates, numbers, and float customer ids (empty where there is none).
    typed = export.frame.assign(
        InvoiceDate=dates,
        UnitPrice=export.frame["UnitPrice"].astype(float),
        CustomerID=pd.to_numeric(export.frame["CustomerID"], errors="coerce"),
    )
    first = typed[dates < "2010-12-01"]
    second = typed[dates >= "2010-12-01"].set_axis(II_HEADER, axis=1)
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        first.to_excel(writer, sheet_name="Year 2009-2010", index=False)
        second.to_excel(writer, sheet_name="Year 2010-2011", index=False)
    return len(first), len(second)


if __name__ == "__main__":  # python clv_platform_tests/online_retail.py OUT.csv N_CUSTOMERS [SEED] [--ii]
    import sys

    out, customers = sys.argv[1], int(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3].isdigit() else 0
    made = synthesize(customers, seed=seed)
    write_csv(made, out, online_retail_ii="--ii" in sys.argv)
    print(f"{out}: {len(made.frame)} lines, {customers} customers, {len(made.cancelled)} cancelled invoices, "
          f"last order {made.last_order_date}")
