"""Loaders of the CDNOW files shipped in the lifetimes wheel and of transaction CSVs."""

from pathlib import Path

import pandas as pd
import pytest

from clv_platform.models import datasets


def test_cdnow_sample():
    loaded = datasets.load_dataset("cdnow-sample")
    frame = loaded.transactions
    assert list(frame.columns) == datasets.TRANSACTION_COLUMNS
    assert frame["customer_id"].nunique() == 2357
    assert len(frame) == 6919
    assert pd.api.types.is_datetime64_any_dtype(frame["order_date"])
    assert frame["order_date"].min() == pd.Timestamp("1997-01-01")
    assert (loaded.calibration_end, loaded.holdout_end) == (
        pd.Timestamp("1997-09-30"),
        pd.Timestamp("1998-06-30"),
    )


def test_cdnow_full():
    frame = datasets.load_cdnow_full()
    assert len(frame) == 69659
    assert frame["customer_id"].nunique() == 23570
    assert (frame["amount"] == 0).any()
    assert frame["order_date"].max() == pd.Timestamp("1998-06-30")


def test_csv(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(
        "customer_id,order_date,amount,channel\n007,2024-01-02T10:00:00Z,12.5,web\n007,2024-01-03,3,shop\n"
    )
    loaded = datasets.load_dataset(path)
    assert loaded.name == "orders"
    assert loaded.calibration_end is None
    frame = loaded.transactions
    assert frame["customer_id"].tolist() == ["007", "007"]
    assert frame["order_date"].tolist() == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")]
    assert frame["amount"].tolist() == [12.5, 3.0]


def test_csv_missing_column_and_unknown_dataset(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("customer_id,amount\n1,2\n")
    with pytest.raises(ValueError, match=r"^bad.csv: unrecognized columns \['customer_id', 'amount'\]"):
        datasets.load_dataset(path)
    with pytest.raises(FileNotFoundError):
        datasets.load_dataset("cdnow-nope")


def test_csv_ids_are_keyed_like_the_files_import_and_unusable_rows_are_counted(tmp_path):
    """A spreadsheet's `17850.0` and a padded ` 17850 ` are customer 17850 (as in the files path);
    leading zeros and case are kept; a row without an id, date or amount is left out and counted
    (it became one customer "nan" and a NaN spend)."""
    path = tmp_path / "export.csv"
    path.write_text(
        "customer_id,order_id,order_date,amount\n"
        "17850,1,2024-01-02,10\n"
        "17850.0,2,2024-01-05,20\n"
        "  17850 ,3,2024-01-09,30\n"
        "00123,4,2024-01-02,5\n"
        "123,5,2024-01-03,6\n"
        "AbC,6,2024-01-03,7\n"
        "abc,7,2024-01-04,8\n"
        ",8,2024-01-04,99\n"
        ",9,2024-01-05,98\n"
        "NA,10,2024-01-06,4\n"
        "X1,11,,3\n"
        "X2,12,2024-01-06,\n"
        "X3,13,2024-01-06,n/a\n"
    )
    loaded = datasets.load_dataset(path)
    frame = loaded.transactions
    assert frame.groupby("customer_id")["amount"].sum().to_dict() == {
        "17850": 60.0, "00123": 5.0, "123": 6.0, "AbC": 7.0, "abc": 8.0}
    # NA is what R's write.csv writes for a missing value: no customer
    assert loaded.dropped == {"missing customer id": 3, "unparseable order date": 1, "unparseable amount": 2}
    assert frame["amount"].notna().all() and frame["order_date"].notna().all()


def test_an_export_in_another_layout_is_read_as_the_files_import_reads_it(tmp_path):
    """The backtest refused every file but the plain `customer_id, order_date, amount` CSV with ISO
    dates ('the backtest reads a CSV ... import it with clv-platform files'): month-first dates, a
    workbook, Excel's UTF-16 text and Online Retail's layout are now read through the files import
    (a temporary store), with its ids, returns and rejected rows; a file that import refuses is
    refused with its sentence."""
    us = tmp_path / "us.csv"
    us.write_text("customer_id,order_date,amount\na,03/10/2024,5\na,03/31/2024,6\n")
    loaded = datasets.load_dataset(us)
    assert loaded.transactions[["customer_id", "order_date", "amount"]].values.tolist() == [
        ["import:a", pd.Timestamp("2024-03-10"), 5.0], ["import:a", pd.Timestamp("2024-03-31"), 6.0]]

    book = tmp_path / "retail.xlsx"
    pd.DataFrame({"InvoiceNo": ["536365", "536365", "C536366", "536367"], "StockCode": ["85123A", "POST", "85123A", "22"],
                  "Description": ["X", "POSTAGE", "X", "Y"], "Quantity": [6, 1, -2, 1],
                  "InvoiceDate": ["12/1/2010 8:26", "12/1/2010 8:26", "12/3/2010 9:00", "12/13/2010 9:00"],
                  "UnitPrice": [2.55, 18.0, 2.55, 4.0], "CustomerID": [17850.0, 17850.0, 17850.0, None],
                  "Country": ["United Kingdom"] * 4}).to_excel(book, index=False)
    loaded = datasets.load_dataset(book)
    frame = loaded.transactions
    # the sale with its postage, its credit note a return on its own day, the guest line out
    assert frame[["customer_id", "order_date", "amount"]].values.tolist() == [
        ["import:17850", pd.Timestamp("2010-12-01"), 33.3], ["import:17850", pd.Timestamp("2010-12-03"), -5.1]]
    assert loaded.dropped == {"rejected by the cleaning rules: missing customer id": 1}

    wide = tmp_path / "excel.csv"  # Excel's "Unicode text": UTF-16, tab separated
    wide.write_text("customer_id\torder_date\tamount\na\t2024-01-01\t5\n", encoding="utf-16")
    assert datasets.load_dataset(wide).transactions["amount"].tolist() == [5.0]

    broken = tmp_path / "orders.xlsx"
    broken.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\x83")
    with pytest.raises(ValueError, match=r"^orders.xlsx: .*\(the backtest reads a file as `clv-platform files` imports it\)"):
        datasets.load_dataset(broken)


RETURNS_CSV = """customer_id,order_date,amount
a,2024-01-01,100
a,2024-01-20,-30
a,2024-01-25,50
a,2024-02-10,-80
a,2024-02-20,40
b,2024-01-05,20
b,2024-01-05,-50
c,2024-01-10,10
c,2024-02-15,-5
d,2024-01-03,-12
d,2024-01-07,25
"""


def test_a_return_reduces_the_purchase_it_is_booked_to_from_its_own_day_on(tmp_path):
    """A negative amount is a return of the customer's latest purchase by its day, never a purchase
    day of its own; each window sees it only from its date on, capped at that purchase.

    a: 100 on 1 Jan, 30 returned on 20 Jan, 50 on 25 Jan (all of it returned on 10 Feb, after the
    calibration end), 40 on 20 Feb. b: returns more than the order, the same day. c: a return after
    the calibration end. d: a return before any purchase reduces nothing and is counted."""
    from clv_platform.models import btyd

    path = tmp_path / "returns.csv"
    path.write_text(RETURNS_CSV)
    frame, dropped = datasets.read_transactions_csv(path)
    assert dropped == {datasets.RETURN_WITHOUT_PURCHASE: 1}
    assert len(frame) == 10 and not ((frame["customer_id"] == "d") & (frame["amount"] < 0)).any()

    purchases, returns = datasets.split_returns(frame)
    booked = returns.merge(purchases[["purchase_id", "order_date", "amount"]], on="purchase_id")
    assert sorted(zip(booked["customer_id"], booked["return_date"].dt.day, booked["order_date"].dt.day)) == [
        ("a", 10, 25), ("a", 20, 1), ("b", 5, 5), ("c", 15, 10)]

    summary = btyd.summarize(frame, "2024-01-31", "2024-03-31")
    assert summary.loc["a", "frequency"] == 1                      # 1 and 25 Jan; the 20 Jan return is no purchase
    assert summary.loc["a", "calibration_spend"] == pytest.approx(120.0)  # 100 - 30 + 50: the 10 Feb return not yet made
    assert summary.loc["a", "monetary"] == pytest.approx(50.0)
    assert (summary.loc["a", "holdout_purchases"], summary.loc["a", "holdout_spend"]) == (1, pytest.approx(40.0))
    assert summary.loc["b", "calibration_spend"] == 0.0            # capped at the order: a purchase worth 0
    assert summary.loc["b", "frequency"] == 0
    assert summary.loc["c", "calibration_spend"] == pytest.approx(10.0)
    assert summary.loc["c", "holdout_spend"] == 0.0                # a holdout return of an older purchase
    assert summary.loc["d", "calibration_spend"] == pytest.approx(25.0)
    # as of a later date the 10 Feb return has taken a's 25 Jan purchase back whole
    later = btyd.summarize(frame, "2024-02-29")
    assert later.loc["a", "calibration_spend"] == pytest.approx(70.0 + 0.0 + 40.0)
    assert later.loc["a", "frequency"] == 2
    assert later.loc["c", "calibration_spend"] == pytest.approx(5.0)


def test_the_features_and_labels_of_a_file_with_returns_agree_with_the_btyd_summary(tmp_path):
    """The hybrid's path (the CSV as staging tables, the platform's feature and label SQL) books the
    returns as refunds on their own days, so its spend as of the calibration end and its holdout
    labels are the BTYD summary's, customer by customer."""
    from datetime import date

    from clv_platform.models import btyd, frames
    from clv_platform.transforms.features import build_training_frame

    path = tmp_path / "returns.csv"
    path.write_text(RETURNS_CSV)
    frame, _ = datasets.read_transactions_csv(path)
    summary = btyd.summarize(frame, "2024-01-31", "2024-03-31")
    with frames.staging_connection(frame) as conn:
        assert conn.execute("select count(*), sum(amount) from staging.refunds").fetchone() == (4, 165)
        rows = build_training_frame(conn, date(2024, 3, 31), 60).set_index("customer_id").sort_index()
    assert list(rows.index) == ["a", "b", "c", "d"]
    assert rows["total_net_spend"].tolist() == pytest.approx(summary["calibration_spend"].tolist())
    assert rows["frequency"].tolist() == summary["frequency"].tolist()
    assert rows["label_spend"].fillna(0.0).tolist() == pytest.approx(summary["holdout_spend"].tolist())
    assert rows.loc["b", "refund_rate"] == pytest.approx(1.0)


SPREADSHEET_IDS = ["17850", "17850.0", "1.7850E+04", "1.785E+04", "1.23457E+11", "1.23456789012E+11",
                   "1.234567890120E+11", "1.2345678901205E+11", "00017", "C12345", "1.20E+01", "0.0E+00", "1e3"]


def test_the_backtest_keys_spreadsheet_ids_as_the_files_import_does(tmp_path):
    """One rule for ids in both readers: the backtest CSV's ``spreadsheet_id`` gives the same key and
    the same lost-digits verdict as the staging SQL's macros on every example."""
    import re

    import duckdb

    sql = (Path(datasets.__file__).parents[1] / "transforms" / "sql" / "staging" / "03_file_rows.sql").read_text()
    with duckdb.connect() as conn:
        for macro in re.findall(r"create or replace temp macro clv_file_id.*?;\n", sql, re.S):
            conn.execute(macro)
        expected = {t: conn.execute("select clv_file_id(?), clv_file_id_lost_digits(?)", [t, t]).fetchone()
                    for t in SPREADSHEET_IDS}
    assert {t: datasets.spreadsheet_id(t) for t in SPREADSHEET_IDS} == {t: (k, bool(f)) for t, (k, f) in expected.items()}
    assert datasets.spreadsheet_id("1.23456789012E+11") == ("123456789012", False)
    assert datasets.spreadsheet_id("1.23457E+11") == ("1.23457E+11", True)

    path = tmp_path / "sci.csv"
    path.write_text("customer_id,order_date,amount\n123456789012,2024-01-01,10\n1.23456789012E+11,2024-01-09,20\n"
                    "1.23457E+11,2024-01-05,30\n17850.0,2024-01-02,5\nAnn@Example.com,2024-01-03,\"$1,234.50\"\n"
                    "x,2024-01-04,\"12,5\"\n")
    frame, dropped = datasets.read_transactions_csv(path)
    assert dropped == {datasets.ID_LOST_DIGITS: 1, "unparseable amount": 1}
    assert sorted(frame["customer_id"]) == ["123456789012", "123456789012", "17850", "ann@example.com"]
    assert frame.loc[frame["customer_id"] == "ann@example.com", "amount"].tolist() == [1234.50]


PLACEHOLDER_IDS = ["N/A", "nan", "NaN", "#N/A", " guest ", "Unknown", "-", "0", "0.0", "-1", "00", "10", "A0"]


def test_customer_ids_that_say_there_is_none_are_no_customer_in_both_readers(tmp_path):
    """`N/A`, `nan`, `#N/A`, `guest`, ... are a missing id in the staging SQL and in the backtest CSV:
    otherwise every guest is one customer with all their orders. 0 and -1 stay ids (a 0-based
    numbering, as the demo store's CSV has)."""
    import re

    import duckdb

    sql = (Path(datasets.__file__).parents[1] / "transforms" / "sql" / "staging" / "03_file_rows.sql").read_text()
    with duckdb.connect() as conn:
        for macro in re.findall(r"create or replace temp macro clv_file_(?:id|missing_id|customer).*?;\n", sql, re.S):
            conn.execute(macro)
        keys = {t: conn.execute("select clv_file_customer(?)", [t]).fetchone()[0] for t in PLACEHOLDER_IDS}
    assert keys == {"N/A": None, "nan": None, "NaN": None, "#N/A": None, " guest ": None, "Unknown": None, "-": None,
                    "0": "0", "0.0": "0", "-1": "-1", "00": "00", "10": "10", "A0": "A0"}
    path = tmp_path / "guests.csv"
    path.write_text("customer_id,order_date,amount\n"
                    + "".join(f"{t},2024-01-0{1 + i % 9},{10 + i}\n" for i, t in enumerate(PLACEHOLDER_IDS)))
    frame, dropped = datasets.read_transactions_csv(path)
    assert dropped == {"missing customer id": 7}
    assert sorted(frame["customer_id"]) == ["-1", "0", "0", "00", "10", "A0"]


def test_rows_dated_in_the_future_are_left_out_and_counted_as_the_files_import_rejects_them(tmp_path):
    """Ten rows of a typo year (2091) ended the derived holdout there, months after the last real
    order (`backtest` chose a holdout to 2027-06-10 on 2026-12-03); the files import rejects them."""
    today = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()
    rows = [f"a,{(today - pd.Timedelta(days=d)).date()},{10 + d}" for d in (1, 30, 200)]
    rows += [f"b,{(today - pd.Timedelta(days=90)).date()},20", "b,2091-06-01,30", "c,2091-06-02,n/a"]
    path = tmp_path / "export.csv"
    path.write_text("customer_id,order_date,amount\n" + "\n".join(rows) + "\n")
    loaded = datasets.load_dataset(path)
    assert loaded.dropped == {"order date in the future": 1, "unparseable amount": 1}
    assert loaded.transactions["order_date"].max() == today - pd.Timedelta(days=1)
    assert loaded.transactions.groupby("customer_id")["amount"].sum().to_dict() == {"a": 261.0, "b": 20.0}


def test_totals_rows_are_left_out_of_the_backtest_csv_as_the_files_import_rejects_them(tmp_path):
    """A spreadsheet's `Total` / `Grand Total` / Excel Subtotal `<value> Total` row with a date was a
    customer of the backtest holding the sum of the others (its spend a multiple of any real
    customer's). Both readers judge the label with one rule (``clv_file_totals_label``)."""
    import re

    import duckdb

    labels = ["Total", " GRAND TOTAL ", "Subtotal", "Sub-total", "Totals", "c1 Total", "Gesamtergebnis", "Summe",
              "c1", "Totalcare", "total-1", "10"]
    sql = (Path(datasets.__file__).parents[1] / "transforms" / "sql" / "staging" / "03_file_rows.sql").read_text()
    with duckdb.connect() as conn:
        conn.execute(re.search(r"create or replace temp macro clv_file_totals_label.*?;\n", sql, re.S).group(0))
        in_sql = {t: conn.execute("select clv_file_totals_label(?)", [t]).fetchone()[0] for t in labels}
    in_python = {t: bool(datasets.TOTALS_LABEL.match(t.strip().lower())) for t in labels}
    assert in_python == in_sql == {t: t not in ("c1", "Totalcare", "total-1", "10") for t in labels}
    path = tmp_path / "sheet.csv"
    path.write_text("customer_id,order_date,amount\nc1,2024-01-05,10.00\nc2,2024-01-06,20.00\n"
                    "c1 Total,2024-01-05,10.00\nTotal,2024-01-06,30.00\n")
    frame, dropped = datasets.read_transactions_csv(path)
    assert dropped == {datasets.TOTALS_ROW: 2}
    assert frame["customer_id"].tolist() == ["c1", "c2"] and frame["amount"].sum() == 30.0


def test_rows_an_export_loses_are_counted_by_kind_not_by_value(tmp_path):
    """The rows the files import rejects were counted per reason text, and the text quotes the value:
    a real export's many bad dates were as many entries of `rows_dropped`. They are counted by kind.
    A line with more fields than the header (a comma inside an unquoted value) stopped the backtest
    with pandas' ParserError; the file is read through the files import, which rejects that line."""
    path = tmp_path / "orders.csv"
    path.write_text("customer_id,order_id,order_date,amount\n"
                    "a,o1,2024-01-05,10\nb,o2,13/13/2024,5\nc,o3,someday,6\nd,o4,2024-01-07,0.5 euros\n"
                    "e,o5,2024-01-08,7,extra\nf,o6,2024-01-09,8,more\n")
    loaded = datasets.load_dataset(path)
    assert loaded.dropped == {"rejected by the cleaning rules: unparseable order date": 2,
                              "rejected by the cleaning rules: malformed line": 2,
                              "rejected by the cleaning rules: unparseable amount": 1}
    assert loaded.transactions["amount"].tolist() == [10.0]
    for name, text in (("empty.csv", ""), ("blank.csv", "\n\n\n")):  # pandas' EmptyDataError, without the file's name
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=rf"^{name}: the file is empty \(the backtest reads a file as"):
            datasets.load_dataset(tmp_path / name)


def test_one_reader_of_dates_a_plain_csv_with_another_spelling_goes_through_the_import(tmp_path):
    """An ISO file with one Unix time or one slash date among its dates: the plain reader dropped those
    rows as unparseable while the files import reads them (the backtest and the platform disagreed on
    the same file). Any non-ISO date sends the file through the import; an empty date stays a dropped row."""
    path = tmp_path / "mixed.csv"
    path.write_text("customer_id,order_date,amount\na,2024-01-05,10\na,1704499200,20\nb,03/15/2024,5\n")
    loaded = datasets.load_dataset(path)
    assert loaded.transactions[["customer_id", "order_date", "amount"]].values.tolist() == [
        ["import:a", pd.Timestamp("2024-01-05"), 10.0], ["import:a", pd.Timestamp("2024-01-06"), 20.0],
        ["import:b", pd.Timestamp("2024-03-15"), 5.0]]
    empty = tmp_path / "empty_date.csv"
    empty.write_text("customer_id,order_date,amount\na,2024-01-05,10\nb,,5\n")
    loaded = datasets.load_dataset(empty)
    assert loaded.transactions["customer_id"].tolist() == ["a"] and loaded.dropped == {"unparseable order date": 1}


def test_a_plain_csv_whose_amounts_are_decimal_commas_is_read_through_the_import(tmp_path):
    """Google Sheets in a European locale writes `"10,50"`: the plain reader dropped most rows as
    unparseable amounts; a file where most amounts do not read goes through the import, which reads
    them (a stray bad amount stays a dropped row of the plain reader)."""
    path = tmp_path / "sheets.csv"
    path.write_text('customer_id,order_date,amount\na,2024-01-05,"10,50"\nb,2024-01-06,"7,95"\nc,2024-01-07,3\n')
    loaded = datasets.load_dataset(path)
    assert loaded.transactions["amount"].tolist() == [10.5, 7.95, 3.0]
    assert loaded.transactions["customer_id"].tolist() == ["import:a", "import:b", "import:c"]


def test_a_plain_csv_in_several_currencies_is_not_added_up(tmp_path):
    """A `currency` column with EUR and USD rows: the plain reader ignored it and added euros to dollars.
    Such a file goes through the import, which keeps the file's (or the store's) currency and leaves the
    other rows out, counted."""
    path = tmp_path / "mixed.csv"
    path.write_text("customer_id,order_date,amount,currency\na,2024-01-05,10,EUR\nb,2024-01-06,20,eur\n"
                    "c,2024-01-07,30,USD\n")
    loaded = datasets.load_dataset(path)
    assert loaded.transactions["amount"].tolist() == [10.0, 20.0]
    assert loaded.dropped == {"rejected by the cleaning rules: currency USD differs from the store currency EUR": 1}
    one = tmp_path / "one.csv"
    one.write_text("customer_id,order_date,amount,currency\na,2024-01-05,10,EUR\nb,2024-01-06,20,\n")
    assert datasets.load_dataset(one).transactions["customer_id"].tolist() == ["a", "b"]  # the plain reader


def test_a_plain_csv_with_a_status_or_refund_column_is_read_as_the_import_reads_it(tmp_path):
    """`Status` (a cancelled order) and `Amount Refunded` beside the three plain columns were ignored by
    the plain reader: a cancelled order counted as a purchase, a refund not subtracted. Such a file goes
    through the import, which applies both."""
    path = tmp_path / "orders.csv"
    path.write_text("customer_id,order_id,order_date,amount,Status,Amount Refunded\n"
                    "a,o1,2024-01-05,10,paid,\nb,o2,2024-01-06,20,cancelled,\nc,o3,2024-01-07,30,paid,5\n")
    loaded = datasets.load_dataset(path)
    purchases, returns = datasets.split_returns(loaded.transactions)
    assert purchases["amount"].tolist() == [10.0, 30.0] and returns["refund"].tolist() == [5.0]
    assert loaded.dropped == {"rejected by the cleaning rules: order status cancelled": 1}


def test_a_time_with_an_offset_falls_on_the_store_calendar_day_in_both_readers(tmp_path, monkeypatch):
    """`2024-01-01T03:00:00Z` in a store west of UTC is an evening of 31 December: the plain reader took
    the UTC day (1 January) while the files import takes the store's, so the backtest and the platform
    put the order on different days. Both now use the store's time zone; a naive time stays as written."""
    monkeypatch.setenv("CLV_STORE_TIMEZONE", "America/Los_Angeles")
    path = tmp_path / "orders.csv"
    path.write_text("customer_id,order_date,amount\na,2024-01-01T03:00:00Z,10\nb,2024-01-01T03:00:00,20\n"
                    "c,2024-01-01 23:30:00+02:00,5\n")
    loaded = datasets.load_dataset(path)
    assert loaded.transactions["order_date"].dt.strftime("%Y-%m-%d").tolist() == ["2023-12-31", "2024-01-01",
                                                                                  "2024-01-01"]
    assert loaded.transactions["customer_id"].tolist() == ["a", "b", "c"]  # the plain reader



def test_a_time_in_iso_basic_format_falls_on_the_store_calendar_day(tmp_path, monkeypatch):
    """`20240101T030000Z` and `20240101T0300-0500` parse as ISO 8601, but the plain reader saw no
    offset in them (it looks for one after `hh:mm`) and took the UTC day: 1 January for an order of
    New Year's Eve in Los Angeles, and 1 January for one of 31 December written with its own offset.
    Such a file goes through the files import, which converts both."""
    monkeypatch.setenv("CLV_STORE_TIMEZONE", "America/Los_Angeles")
    monkeypatch.setenv("CLV_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "orders.csv"
    path.write_text("customer_id,order_date,amount\na,20240101T030000Z,10\nb,20231231T2230-0500,20\n"
                    "c,2024-01-01 12:00:00,5\n")
    with pytest.raises(datasets.NotPlainTransactions, match="20240101T030000Z"):
        datasets.read_transactions_csv(path)
    loaded = datasets.load_dataset(path)
    by_customer = dict(zip(loaded.transactions["customer_id"].str.split(":").str[-1],
                           loaded.transactions["order_date"].dt.strftime("%Y-%m-%d")))
    assert by_customer == {"a": "2023-12-31", "b": "2023-12-31", "c": "2024-01-01"}


def test_an_id_wrapped_as_excel_text_is_the_plain_id_in_the_plain_reader(tmp_path):
    """`="00123"` (Excel's text wrapper) is the id `00123`, as the files import reads it; a wrapped date
    and amount are their text too."""
    path = tmp_path / "wrapped.csv"
    path.write_text('customer_id,order_date,amount\n"=""00123""",2024-01-05,10\n00123,"=""2024-01-06""","=""20"""\n')
    frame, dropped = datasets.read_transactions_csv(path)
    assert frame["customer_id"].tolist() == ["00123", "00123"] and dropped == {}
    assert frame["amount"].tolist() == [10.0, 20.0]
    assert frame["order_date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-05", "2024-01-06"]
