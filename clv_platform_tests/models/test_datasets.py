"""Loaders of the CDNOW files shipped in the lifetimes wheel and of transaction CSVs."""

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
    with pytest.raises(ValueError, match="order_date"):
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
        "X1,11,not a date,3\n"
        "X2,12,2024-01-06,\n"
        "X3,13,2024-01-06,n/a\n"
    )
    loaded = datasets.load_dataset(path)
    frame = loaded.transactions
    assert frame.groupby("customer_id")["amount"].sum().to_dict() == {
        "17850": 60.0, "00123": 5.0, "123": 6.0, "AbC": 7.0, "abc": 8.0, "NA": 4.0}
    assert loaded.dropped == {"missing customer id": 2, "unparseable order date": 1, "unparseable amount": 2}
    assert frame["amount"].notna().all() and frame["order_date"].notna().all()


def test_csv_with_no_iso_dates_or_a_workbook_is_refused_in_a_sentence(tmp_path):
    us = tmp_path / "us.csv"
    us.write_text("customer_id,order_date,amount\na,03/10/2024,5\na,03/31/2024,6\n")
    with pytest.raises(ValueError, match=r"no order_date is an ISO 8601 date .* '03/10/2024'"):
        datasets.load_dataset(us)
    book = tmp_path / "orders.xlsx"
    book.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\x83")
    with pytest.raises(ValueError, match="the backtest reads a CSV"):
        datasets.load_dataset(book)
