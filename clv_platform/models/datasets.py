"""Transaction data sets for the CLV backtests.

Every loader returns the same frame, one row per order line:
``customer_id`` (str), ``order_date`` (datetime64, day precision), ``amount`` (float).

Two named data sets are the CDNOW music-retailer files that ship inside the ``lifetimes`` wheel
(``lifetimes/datasets/``); they are located at run time from the installed package and are never
downloaded. Anything else passed as ``dataset`` is read as a CSV file with the three columns above.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

CDNOW_SAMPLE = "cdnow-sample"
CDNOW_FULL = "cdnow-full"
CDNOW_DATASETS = (CDNOW_SAMPLE, CDNOW_FULL)

CDNOW_CALIBRATION_END = pd.Timestamp("1997-09-30")
CDNOW_HOLDOUT_END = pd.Timestamp("1998-06-30")

TRANSACTION_COLUMNS = ["customer_id", "order_date", "amount"]


@dataclass(frozen=True)
class LoadedDataset:
    """A transactions frame plus the default backtest window for it (``None`` when unknown)."""

    name: str
    transactions: pd.DataFrame
    calibration_end: pd.Timestamp | None
    holdout_end: pd.Timestamp | None


def lifetimes_datasets_dir() -> Path:
    """Folder holding the CDNOW files inside the installed ``lifetimes`` package."""
    import lifetimes

    return Path(os.path.dirname(lifetimes.__file__)) / "datasets"


def _read_cdnow(path: Path, names: list[str], skiprows: int) -> pd.DataFrame:
    raw = pd.read_csv(
        path,
        sep=r"\s+",
        header=None,
        names=names,
        skiprows=skiprows,
        dtype={"customer_id": str, "date": str},
        engine="c",
    )
    return pd.DataFrame(
        {
            "customer_id": raw["customer_id"].astype(str),
            "order_date": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "amount": raw["dollar_value"].astype(float),
        }
    )


def load_cdnow_sample() -> pd.DataFrame:
    """The 1/10 CDNOW sample (2,357 customers); the customer key is the master id (first column)."""
    return _read_cdnow(
        lifetimes_datasets_dir() / "CDNOW_sample.txt",
        ["customer_id", "sample_id", "date", "cds", "dollar_value"],
        skiprows=0,
    )


def load_cdnow_full() -> pd.DataFrame:
    """The full CDNOW master file (23,570 customers, 69,659 rows; some rows have $0 value)."""
    return _read_cdnow(
        lifetimes_datasets_dir() / "CDNOW_master.txt",
        ["customer_id", "date", "cds", "dollar_value"],
        skiprows=1,
    )


def load_transactions_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV with ``customer_id, order_date, amount`` columns (extra columns are ignored).

    ``order_date`` is ISO 8601; timestamps with an offset are converted to UTC before the date is
    taken, naive ones are taken as they are.
    """
    raw = pd.read_csv(path, dtype={"customer_id": str})
    missing = [c for c in TRANSACTION_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected {TRANSACTION_COLUMNS}")
    order_date = pd.to_datetime(raw["order_date"], utc=True, format="ISO8601").dt.tz_localize(None)
    return pd.DataFrame(
        {
            "customer_id": raw["customer_id"].astype(str),
            "order_date": order_date.dt.normalize(),
            "amount": pd.to_numeric(raw["amount"]).astype(float),
        }
    )


def load_dataset(dataset: str | os.PathLike) -> LoadedDataset:
    """Load a named CDNOW data set or a transactions CSV, with its default backtest window.

    CDNOW gets the papers' protocol (calibration to 1997-09-30, holdout to 1998-06-30); a CSV
    has no default window and the caller must supply one.
    """
    name = str(dataset)
    if name == CDNOW_SAMPLE:
        return LoadedDataset(name, load_cdnow_sample(), CDNOW_CALIBRATION_END, CDNOW_HOLDOUT_END)
    if name == CDNOW_FULL:
        return LoadedDataset(name, load_cdnow_full(), CDNOW_CALIBRATION_END, CDNOW_HOLDOUT_END)
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"unknown dataset {name!r}: not one of {CDNOW_DATASETS} and not a file")
    return LoadedDataset(path.stem, load_transactions_csv(path), None, None)
