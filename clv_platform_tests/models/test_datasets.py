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
