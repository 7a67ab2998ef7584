"""Read a transaction export (CSV or Excel) into raw rows, keeping every cell as text.

Two layouts are recognized from the header: Online Retail II (`Invoice, StockCode,
Description, Quantity, InvoiceDate, Price, Customer ID, Country`) and a generic one
(`customer_id, order_id, order_date, amount[, product_id, quantity]`). Validation of
the values happens in staging SQL, where every bad row gets a reason; this module only
refuses files it cannot read at all, naming the file and the problem.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pandas as pd

SUPPORTED_SUFFIXES = (".csv", ".txt", ".xlsx", ".xlsm")

ONLINE_RETAIL_COLUMNS = {
    "invoice": "order_id",
    "stockcode": "product_id",
    "description": "description",
    "quantity": "quantity",
    "invoicedate": "order_date",
    "price": "unit_price",
    "customerid": "customer_id",
    "country": "country",
}
GENERIC_REQUIRED = {"customer_id", "order_id", "order_date", "amount"}
GENERIC_OPTIONAL = {"product_id", "quantity"}

RAW_COLUMNS = [
    "file_name", "file_format", "row_number", "order_id", "customer_id", "order_date",
    "product_id", "description", "quantity", "unit_price", "amount", "country", "payload",
    "ingested_at",
]


class UnreadableFileError(Exception):
    """The file cannot be imported at all; the message names the file and the problem."""


def _normalize(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _cell_text(value) -> str | None:
    """Render a cell as text without losing what it was (Excel gives datetimes and floats)."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat(sep=" ")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    return text if text.strip() != "" else None


def read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnreadableFileError(
            f"{path.name}: unsupported file type '{suffix}' (expected one of {', '.join(SUPPORTED_SUFFIXES)})"
        )
    try:
        if suffix in (".xlsx", ".xlsm"):
            frame = pd.read_excel(path, dtype=object, engine="openpyxl")
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[], encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[], encoding="latin-1")
        except Exception:
            raise UnreadableFileError(f"{path.name}: not valid UTF-8 or Latin-1 text ({exc})") from exc
    except pd.errors.EmptyDataError as exc:
        raise UnreadableFileError(f"{path.name}: the file is empty") from exc
    except Exception as exc:  # parser, zip and openpyxl errors all mean "cannot read this file"
        raise UnreadableFileError(f"{path.name}: cannot be parsed as {suffix[1:]} ({type(exc).__name__}: {exc})") from exc
    return frame


def detect_format(columns: list[str], file_name: str) -> str:
    normalized = {_normalize(c) for c in columns}
    if set(ONLINE_RETAIL_COLUMNS) <= normalized:
        return "online_retail"
    if {_normalize(c) for c in GENERIC_REQUIRED} <= normalized:
        return "generic"
    raise UnreadableFileError(
        f"{file_name}: unrecognized columns {list(columns)}; expected Online Retail II "
        "(Invoice, StockCode, Description, Quantity, InvoiceDate, Price, Customer ID, Country) "
        "or customer_id, order_id, order_date, amount[, product_id, quantity]"
    )


def parse_export(path: Path, ingested_at: datetime) -> pd.DataFrame:
    """Every data row of the file as a raw.file_transactions row (nothing dropped here)."""
    frame = read_table(path)
    file_format = detect_format(list(frame.columns), path.name)
    by_norm = {_normalize(c): c for c in frame.columns}
    if file_format == "online_retail":
        mapping = {target: by_norm[src] for src, target in ONLINE_RETAIL_COLUMNS.items()}
    else:
        mapping = {name: by_norm[_normalize(name)] for name in GENERIC_REQUIRED | GENERIC_OPTIONAL
                   if _normalize(name) in by_norm}

    text = frame.map(_cell_text)
    out = pd.DataFrame(index=frame.index)
    out["file_name"] = path.name
    out["file_format"] = file_format
    # row_number = line in a CSV (header is line 1) / row in a sheet, so a rejected row is findable.
    out["row_number"] = (frame.index + 2).astype("int64")
    for column in ["order_id", "customer_id", "order_date", "product_id", "description",
                   "quantity", "unit_price", "amount", "country"]:
        out[column] = text[mapping[column]] if column in mapping else None
    out["payload"] = [
        json.dumps({str(k): v for k, v in row.items()}, ensure_ascii=False)
        for row in text.to_dict(orient="records")
    ]
    out["ingested_at"] = ingested_at
    return out[RAW_COLUMNS].reset_index(drop=True)
