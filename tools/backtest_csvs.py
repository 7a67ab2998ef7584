"""Write the transactions CSVs (customer_id, order_date, amount) that ``clv-platform backtest --dataset
<file>`` reads, for the two data sets of the README's model section that are not CDNOW:

* ``demo.csv``: the built-in demo store, 2024-11-01 to 2026-10-31, 5,000 customers, seed 42
  (``forecast.backtest.demo_transactions``: test and cancelled orders dropped, refunds netted);
* ``online_retail.csv``: the synthetic UCI-Online-Retail-shaped export of ``clv_platform_tests/
  online_retail.py`` (2009-12-01 to 2011-12-09), net of credit notes: line amount = quantity x
  unit price summed per customer and invoice; lines without a customer (guest lines, bad-debt
  adjustments) and the lines staging classifies as postage or adjustments (``POST``, ``DOT``,
  ``M``, bank charges, ...) are left out; customer-days whose net is 0 (an order cancelled in
  full the same day) are dropped.

* ``demo4y.csv`` (with ``--four-year-demo``): the same demo store over four years, 2022-11-01 to
  2026-10-31: a store old enough for production's 180-day labels at a calibration end a year
  before its last day (a year-long holdout, production's horizon).

Usage: ``.venv/bin/python tools/backtest_csvs.py OUT_DIR [--retail-customers N] [--four-year-demo]``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import pandas as pd

NON_PRODUCT_CODES = {"POST", "DOT", "M", "A", "BANK CHARGES", "C2", "D", "CRUK", "PADS", "AMAZONFEE", "S", "B"}


def online_retail_transactions(n_customers: int, seed: int = 0) -> pd.DataFrame:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from clv_platform_tests.online_retail import synthesize

    frame = synthesize(n_customers, seed=seed).frame
    lines = frame[frame["CustomerID"].astype(str).str.strip().ne("") & frame["CustomerID"].notna()
                  & ~frame["StockCode"].astype(str).str.upper().isin(NON_PRODUCT_CODES)].copy()
    lines["customer_id"] = lines["CustomerID"].astype(float).astype(int).astype(str)
    lines["order_date"] = pd.to_datetime(lines["InvoiceDate"], format="%m/%d/%Y %H:%M").dt.normalize()
    lines["amount"] = lines["Quantity"].astype(float) * lines["UnitPrice"].astype(float)
    per_invoice = lines.groupby(["customer_id", "InvoiceNo"], as_index=False).agg(
        order_date=("order_date", "min"), amount=("amount", "sum"))
    # a credit note is its own invoice (C...), netted against the customer's spend on its day
    daily = per_invoice.groupby(["customer_id", "order_date"], as_index=False)["amount"].sum()
    daily = daily[daily["amount"].round(2) != 0]
    return daily[["customer_id", "order_date", "amount"]].sort_values(["order_date", "customer_id"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--retail-customers", type=int, default=4000)
    parser.add_argument("--four-year-demo", action="store_true", help="also write demo4y.csv (2022-11-01 to 2026-10-31)")
    args = parser.parse_args(argv)
    from clv_platform.forecast.backtest import demo_transactions

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    demo = demo_transactions(date(2024, 11, 1), date(2026, 10, 31))
    demo.assign(order_date=demo["order_date"].dt.date).to_csv(out / "demo.csv", index=False)
    retail = online_retail_transactions(args.retail_customers)
    retail.assign(order_date=retail["order_date"].dt.date).to_csv(out / "online_retail.csv", index=False)
    written = [("demo.csv", demo), ("online_retail.csv", retail)]
    if args.four_year_demo:
        long_demo = demo_transactions(date(2022, 11, 1), date(2026, 10, 31))
        long_demo.assign(order_date=long_demo["order_date"].dt.date).to_csv(out / "demo4y.csv", index=False)
        written.append(("demo4y.csv", long_demo))
    for name, frame in written:
        print(f"{out / name}: {len(frame):,} rows, {frame['customer_id'].nunique():,} customers, "
              f"{frame['order_date'].min().date()} to {frame['order_date'].max().date()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
