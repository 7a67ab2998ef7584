"""Transaction data sets for the CLV backtests.

Every loader returns the same frame, one row per order line:
``customer_id`` (str), ``order_date`` (datetime64, day precision), ``amount`` (float). A negative
amount is a return (a credit note), not a purchase: ``split_returns`` books it against the
customer's latest purchase at or before its date, on its own date, as the files import books a
credit note (``staging.refunds``), so every consumer (the BTYD summaries, the staging tables the
features are built from) sees it from that date on and never before.

Two named data sets are the CDNOW music-retailer files that ship inside the ``lifetimes`` wheel
(``lifetimes/datasets/``); they are located at run time from the installed package and are never
downloaded. A ``.duckdb`` file is a store the platform built, read from its staging tables
(``read_store_transactions``); anything else passed as ``dataset`` is read as a CSV file with the
three columns above.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from clv_platform.ingestion.file_import import REFUNDED_HEADERS, STATUS_HEADERS, bare_number_text, normalize_header
from clv_platform.settings import load_settings

CDNOW_SAMPLE = "cdnow-sample"
CDNOW_FULL = "cdnow-full"
CDNOW_DATASETS = (CDNOW_SAMPLE, CDNOW_FULL)

CDNOW_CALIBRATION_END = pd.Timestamp("1997-09-30")
CDNOW_HOLDOUT_END = pd.Timestamp("1998-06-30")

TRANSACTION_COLUMNS = ["customer_id", "order_date", "amount"]
NO_CURRENCY = "XXX"
"""ISO 4217's code for "no currency": the currency of an export's rows in a backtest when neither the
file nor the settings name one (a backtest compares amounts with amounts of the same file)."""
ORDER_ID = "order_id"
"""Optional column of a transactions frame: the order a row belongs to (a store's frame)."""
STORE_SUFFIXES = (".duckdb",)
"""A ``dataset`` with this suffix is a platform store (``read_store_transactions``), not a CSV."""


class NotPlainTransactions(ValueError):
    """A file that is not the plain ``customer_id, order_date, amount`` CSV with ISO dates
    (``read_transactions_csv``): ``load_dataset`` reads it through the files import instead."""


@dataclass(frozen=True)
class LoadedDataset:
    """A transactions frame plus the default backtest window for it (``None`` when unknown)."""

    name: str
    transactions: pd.DataFrame
    calibration_end: pd.Timestamp | None
    holdout_end: pd.Timestamp | None
    dropped: dict[str, int] = field(default_factory=dict)
    """Rows of the file left out, by reason (``read_transactions_csv``)."""


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


INTEGRAL_FLOAT_ID = r"^([0-9]+)\.0+$"
"""An id a spreadsheet wrote as a float (``17850.0``): the same id as ``17850``, as in the files
import (``transforms/sql/staging/03_file_rows.sql``)."""

SCIENTIFIC_ID = re.compile(r"^([0-9])(?:\.([0-9]*))?[eE]\+?([0-9]+)$")
ID_LOST_DIGITS = "customer id in scientific notation has lost digits"


def spreadsheet_id(text: str) -> tuple[str, bool]:
    """(key, lost digits) of an id as a spreadsheet may have written it, the files import's rule
    (``clv_file_id`` / ``clv_file_id_lost_digits`` in ``03_file_rows.sql``): ``17850.0`` and
    ``1.7850E+04`` are ``17850``; ``1.23457E+11`` has fewer mantissa digits than the id has, so
    customers differing in the lost digits would be merged: it is returned as written, flagged."""
    match = SCIENTIFIC_ID.match(text)
    if match is None:
        return re.sub(INTEGRAL_FLOAT_ID, r"\1", text), False
    lead, fraction, exponent = match.group(1), match.group(2) or "", int(match.group(3))
    if len(fraction) < exponent or fraction[exponent:].strip("0"):
        return text, True
    return (lead + fraction[:exponent]).lstrip("0") or "0", False


MISSING_ID_TEXTS = frozenset({"nan", "null", "none", "n/a", "na", "#n/a", "-", "guest", "unknown", "anonymous"})
"""Customer ids that say there is none (``clv_file_missing_id`` in ``03_file_rows.sql``): a missing id."""
TOTALS_LABEL = re.compile(r"^((grand|sub)[ -]?)?totals?$|^(gesamtergebnis|gesamtsumme|summe|sum)$|^.+ (total|ergebnis)$")
"""A spreadsheet's totals label in the customer column (``clv_file_totals_label`` in ``03_file_rows.sql``):
a row summing others (`Total`, `Grand Total`, Excel Subtotal's `<value> Total`), not a customer."""
TOTALS_ROW = "totals row (a sum of other rows, not a customer)"
RETURN_WITHOUT_PURCHASE = "return (negative amount) without an earlier purchase of the customer"

FUTURE_DATE = "order date in the future"
"""A CSV row dated more than a day after now (UTC), left out as the files import rejects it (03_file_rows.sql):
a typo year would otherwise end the derived holdout months after the last real order."""


def split_returns(transactions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(purchases, returns) of a transactions frame.

    ``purchases``: the rows with ``amount >= 0`` (a $0 row is a purchase, as in CDNOW), in
    (customer, date, amount) order, with ``purchase_id`` 0..n-1. ``returns``: the rows with
    ``amount < 0`` as ``customer_id``, ``return_date``, ``refund`` (= -amount) and ``purchase_id``,
    the customer's latest purchase at or before the return's day (the files import's rule for a
    credit note without a matching product; the largest of that day's purchases when there are
    several), or -1 when the customer bought nothing by then. The match never depends on what
    follows the return, so a frame cut at any date matches its returns as the whole frame does.
    A frame with an ``order_id`` column (a store's, ``read_store_transactions``: one purchase row
    per order, a return row per refund carrying its order's id) books each return to its own order.
    """
    frame = pd.DataFrame({
        "customer_id": transactions["customer_id"].astype(str).to_numpy(),
        "order_date": pd.to_datetime(transactions["order_date"]).dt.normalize().to_numpy(),
        "amount": transactions["amount"].astype(float).to_numpy(),
    })
    by_order = ORDER_ID in transactions.columns
    if by_order:
        frame[ORDER_ID] = transactions[ORDER_ID].astype(str).to_numpy()
    negative = frame["amount"].to_numpy() < 0
    purchases = (frame[~negative].sort_values(["customer_id", "order_date", "amount"], kind="stable")
                 .reset_index(drop=True))
    purchases["purchase_id"] = np.arange(len(purchases), dtype=np.int64)
    returns = frame[negative].rename(columns={"order_date": "return_date"})
    returns = returns.assign(refund=-returns["amount"]).drop(columns="amount")
    if returns.empty:
        return purchases, returns.assign(purchase_id=np.zeros(0, dtype=np.int64)).reset_index(drop=True)
    if by_order:
        # a store's refund names its order (``read_store_transactions``): booked to it, not to the
        # customer's latest purchase
        ids = pd.Series(purchases["purchase_id"].to_numpy(), index=purchases[ORDER_ID].to_numpy())
        returns = returns.assign(purchase_id=returns[ORDER_ID].map(ids).fillna(-1).astype(np.int64))
        return purchases, returns.sort_values(["customer_id", "return_date"], kind="stable").reset_index(drop=True)
    latest = purchases.drop_duplicates(["customer_id", "order_date"], keep="last")
    matched = pd.merge_asof(
        returns.reset_index(drop=True).sort_values("return_date", kind="stable"),
        latest[["customer_id", "order_date", "purchase_id"]].sort_values("order_date", kind="stable"),
        left_on="return_date", right_on="order_date", by="customer_id", direction="backward",
    )
    matched["purchase_id"] = matched["purchase_id"].fillna(-1).astype(np.int64)
    returns = matched.drop(columns="order_date").sort_values(["customer_id", "return_date"], kind="stable")
    return purchases, returns.reset_index(drop=True)


def net_purchases(transactions: pd.DataFrame) -> pd.DataFrame:
    """The purchases of ``transactions`` with ``amount`` net of the returns the frame holds, each
    purchase's refunds capped at its amount (a return larger than the order it is booked to
    refunds that order, not the customer's other spend, as staging caps a refund at its order).

    Cut the frame at a date first for "as of" that date: returns after it are then not yet made.
    """
    purchases, returns = split_returns(transactions)
    if returns.empty:
        return purchases
    amount = purchases["amount"].to_numpy()
    return purchases.assign(amount=amount - np.minimum(refunded_by_purchase(purchases, returns), amount))


def refunded_by_purchase(purchases: pd.DataFrame, returns: pd.DataFrame) -> np.ndarray:
    """What ``returns`` (of ``split_returns``) refund of each purchase, in ``purchases``' order
    (uncapped: a return larger than its purchase is capped by the caller, as staging caps it)."""
    refunded = returns[returns["purchase_id"] >= 0].groupby("purchase_id")["refund"].sum()
    return refunded.reindex(purchases["purchase_id"], fill_value=0.0).to_numpy()


_TIME_WITH_OFFSET = r"[0-9]:[0-9]{2}(?::[0-9]{2}(?:[.][0-9]+)?)?\s*(?:Z|[+-][0-9]{2}:?[0-9]{2})$"
"""A time of day with a UTC offset after it (``has_offset`` in 03_file_rows.sql)."""


def read_transactions_csv(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, int]]:
    """A CSV with ``customer_id, order_date, amount`` columns (extra columns are ignored), and the
    rows left out by reason; any other file raises ``NotPlainTransactions`` (``load_dataset`` then
    reads it through the files import).

    Ids are read as text and keyed like the files import (``spreadsheet_id``): surrounding spaces
    trimmed, an integral float (``17850.0``) or exact scientific notation is the plain id, leading
    zeros kept, an e-mail address lower-cased; scientific notation that lost digits is left out and
    counted, and so are ids that say there is none (``MISSING_ID_TEXTS``: ``N/A``, ``nan``, ...) and a
    spreadsheet's totals rows (``TOTALS_LABEL``: a `Total` row with a date was a customer holding the sum).
    ``order_date`` is ISO 8601; timestamps with
    an offset are converted to the store's time zone (setting) before the date is taken, as the files
    import converts them, naive ones are taken as they are; a file
    with any other date spelling (``03/10/2024``, a Unix time) is not plain: the files import, which
    reads those, is the one reader of them. A row without a customer id, date or readable amount is
    left out and counted (it would otherwise become a customer called "nan" or a NaN spend). A row
    dated more than a day after now is left out and counted
    (``FUTURE_DATE``), as the files import rejects it. A negative amount is a return
    (``split_returns``); one of a customer who has bought nothing by its day reduces no purchase and is
    left out and counted.
    """
    path = Path(path)
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods"):
        raise NotPlainTransactions(f"{path}: a workbook, not a CSV")
    try:
        raw = pd.read_csv(path, dtype={"customer_id": str, "order_date": str, "amount": str}, keep_default_na=False)
    except UnicodeDecodeError as error:
        raise NotPlainTransactions(f"{path}: not a UTF-8 text CSV ({error.reason} at byte {error.start})") from None
    except pd.errors.ParserError as error:  # a line with more fields than the header (a comma inside a value)
        raise NotPlainTransactions(f"{path}: {error}") from None
    except pd.errors.EmptyDataError:  # nothing but blank lines: the files import refuses it in a sentence
        raise NotPlainTransactions(f"{path}: the file is empty") from None
    missing = [c for c in TRANSACTION_COLUMNS if c not in raw.columns]
    if missing:
        raise NotPlainTransactions(f"{path}: missing columns {missing}; expected {TRANSACTION_COLUMNS}")
    for column in TRANSACTION_COLUMNS:  # `="00123"`: Excel's text wrapper, read as the import reads it (clv_file_cell)
        wrapped = raw[column].str.startswith('="') & raw[column].str.endswith('"') & (raw[column].str.len() >= 3)
        if wrapped.any():
            raw.loc[wrapped, column] = raw.loc[wrapped, column].str[2:-1].str.replace('""', '"')
    judged = [c for c in raw.columns if normalize_header(c) in (*STATUS_HEADERS, *REFUNDED_HEADERS)]
    if judged:  # the import rejects cancelled orders and subtracts refunds; the plain reader would count them
        raise NotPlainTransactions(f"{path}: a column the files import reads ({', '.join(map(str, judged))})")
    currencies = {c.strip().upper() for c in raw.get("currency", pd.Series(dtype=str)).astype(str) if c.strip()}
    if len(currencies) > 1:  # amounts of several currencies do not add up: the import keeps the store's one
        raise NotPlainTransactions(f"{path}: amounts in several currencies ({', '.join(sorted(currencies))})")
    keyed = [("", False) if text.lower() in MISSING_ID_TEXTS else spreadsheet_id(text)
             for text in raw["customer_id"].str.strip()]
    # an e-mail address as the customer is compared without case (``clv_file_customer``)
    customer_id = pd.Series([key.lower() if "@" in key else key for key, _ in keyed], index=raw.index, dtype=object)
    lost = pd.Series([flag for _, flag in keyed], index=raw.index, dtype=bool)
    date_text = raw["order_date"].str.strip()
    parsed = pd.to_datetime(date_text, utc=True, format="ISO8601", errors="coerce")
    # an instant (a time with an offset) on the store's calendar, as the files import reads it; a
    # time without one is already the store's wall clock
    instant = date_text.str.contains(_TIME_WITH_OFFSET, regex=True)
    order_date = parsed.dt.tz_localize(None).where(
        ~instant, parsed.dt.tz_convert(load_settings().store_timezone).dt.tz_localize(None))
    # as the files import reads a decimal-point file's amounts (``clv_file_number_text``): currency
    # symbols and spaces left out, thousands commas dropped (``$1,234.50``)
    bare = bare_number_text(raw["amount"])
    bare = bare.where(~bare.str.match(r"^[-+]?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?$"), bare.str.replace(",", ""))
    amount = pd.to_numeric(bare.replace("", None), errors="coerce").astype(float)
    unread = order_date.isna() & (date_text != "")
    # a time in ISO 8601's basic format (`20240309T211500Z`, `20240309T2115-0500`) parses here, but its
    # offset has no colon for _TIME_WITH_OFFSET to see, so it was read as the store's wall clock (a
    # day late west of UTC): the files import converts it
    unread |= date_text.str.match(r"^[0-9]{8}[T ]?[0-9]{4}")
    if unread.any():  # the files import reads the other spellings (and says which it cannot): one reader of dates
        raise NotPlainTransactions(
            f"{path}: order_date {date_text[unread].iloc[0]!r} is not ISO 8601's extended format")
    written = raw["amount"].str.strip() != ""
    if written.any() and amount[written].isna().mean() > 0.5:  # a format (`"10,50"`), not a stray bad cell
        raise NotPlainTransactions(f"{path}: most amounts are not decimal-point numbers "
                                   f"(e.g. {raw['amount'][written & amount.isna()].iloc[0]!r})")
    totals = raw["customer_id"].str.strip().str.lower().str.match(TOTALS_LABEL)
    known = (customer_id != "") & ~lost & ~totals
    reasons = {
        "missing customer id": customer_id == "",
        ID_LOST_DIGITS: lost,
        TOTALS_ROW: totals & (customer_id != ""),
        "unparseable order date": known & order_date.isna(),
        "unparseable amount": known & order_date.notna() & ~np.isfinite(amount),
        FUTURE_DATE: known & np.isfinite(amount)
        & (order_date > pd.Timestamp.now(tz="UTC").tz_localize(None) + pd.Timedelta(days=1)),
    }
    dropped = {reason: int(mask.sum()) for reason, mask in reasons.items() if mask.any()}
    keep = ~np.logical_or.reduce(list(reasons.values())) if len(raw) else np.ones(0, dtype=bool)
    frame = pd.DataFrame(
        {
            "customer_id": customer_id[keep].astype(str),
            "order_date": order_date[keep].dt.normalize(),
            "amount": amount[keep],
        }
    ).reset_index(drop=True)
    returns = split_returns(frame)[1]
    orphans = returns[returns["purchase_id"] < 0]
    if len(orphans):
        dropped[RETURN_WITHOUT_PURCHASE] = len(orphans)
        orphan_keys = pd.MultiIndex.from_frame(orphans[["customer_id", "return_date"]])
        keys = pd.MultiIndex.from_frame(frame[["customer_id", "order_date"]])
        frame = frame[~((frame["amount"].to_numpy() < 0) & keys.isin(orphan_keys))].reset_index(drop=True)
    return frame, dropped


CANCELLED_ON_ITS_DAY = "is_cancelled and coalesce(cancelled_on <= order_date, true)"
"""An order that is no purchase at any cutoff (cancelled, or never paid, by the end of its own day)."""

STORE_PURCHASES_SQL = f"""
with purchases as (
    -- the features' purchase (customer_features.sql): an order of a known customer, not cancelled
    -- by the end of its own day (an order cancelled later is a purchase until then)
    select order_id, customer_id, order_date, cast(gross_revenue as double) as amount,
           case when is_cancelled then cancelled_on end as cancelled_on
    from staging.order_history
    where not ({CANCELLED_ON_ITS_DAY})
)
select order_id, customer_id, order_date, amount from purchases
union all
-- a later cancellation returns the whole order on its day
select order_id, customer_id, cancelled_on, -amount from purchases where cancelled_on is not null
union all
select r.order_id, r.customer_id, r.refunded_on, -cast(r.amount as double)
from staging.refunds as r semi join purchases using (order_id)
where r.amount > 0
order by customer_id, order_date, order_id
"""


REASON_KIND_SQL = r"""regexp_replace(split_part(regexp_replace(reason, '\s*\([^)]*\)', '', 'g'), ':', 1),
                                 '^malformed line [0-9]+$', 'malformed line')"""
"""The kind of a rejection reason, without the value it quotes: `unparseable order date: 13/13/2024`
and `… : 1` are one kind, so are `malformed line 5: …` and `malformed line 9: …`, and
`totals row (Total): …`: a real export's thousand bad dates are one line of the backtest's
`rows_dropped`, not a thousand."""


def read_store_transactions(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, int]]:
    """The purchases and returns of a store the platform built (``CLV_SOURCE=files`` after
    ``clv-platform files``, a Shopify store, the demo), from its cleaned staging tables, and the
    orders left out by reason: so an export in any layout the files import reads (workbooks,
    day-first dates, statuses, several sheets) is backtested as the platform itself reads it.

    One purchase row per order at its gross revenue (``staging.order_history``: customer resolved,
    cleaning rules applied, rejected rows already out), a return row per refund on its own day
    (``staging.refunds``) carrying the order's id, and for an order cancelled after its own day a
    return of all of it on the cancellation day: as the features see them at any cutoff, with the
    one difference that such an order stays a purchase occasion after its cancellation. The rows
    the cleaning rules rejected are counted by kind of reason (``REASON_KIND_SQL``). Opened
    read-only; a store that a run holds open for writing is refused with a sentence.
    """
    path = Path(path)
    try:
        conn = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as error:
        raise ValueError(f"{path}: cannot open the store read-only ({error}); wait for the run that is "
                         "writing it (or stop the process holding it) and try again") from None
    try:
        tables = {name for (name,) in conn.execute(
            "select table_schema || '.' || table_name from information_schema.tables").fetchall()}
        missing = [t for t in ("staging.order_history", "staging.refunds", "staging.orders") if t not in tables]
        if missing:
            raise ValueError(f"{path}: the store has no {', '.join(missing)}: build its staging tables first "
                             "(`clv-platform files` for an import, `make demo`, or a refresh of a live store)")
        frame = conn.execute(STORE_PURCHASES_SQL).df()
        guests, cancelled = conn.execute(f"""
            select count(*) filter (where customer_id is null),
                   count(*) filter (where customer_id is not null and {CANCELLED_ON_ITS_DAY})
            from staging.orders""").fetchone()
        # what the cleaning rules kept out of the orders, by reason; a superseded version is not a
        # loss (its newer version is in), and profiles are not orders
        rejected = (conn.execute(f"""
            select {REASON_KIND_SQL} as kind, count(*) from staging.rejected_rows
            where source_table <> 'raw.klaviyo_profiles' and reason not like 'superseded by a newer version%'
            group by kind order by count(*) desc, kind""").fetchall()
                    if "staging.rejected_rows" in tables else [])
    finally:
        conn.close()
    dropped = {reason: int(n) for reason, n in (("guest order (no customer)", guests),
                                                 ("order cancelled on its own day", cancelled)) if n}
    dropped.update({f"rejected by the cleaning rules: {reason}": int(n) for reason, n in rejected})
    frame = frame.assign(customer_id=frame["customer_id"].astype(str), order_id=frame[ORDER_ID].astype(str),
                         order_date=pd.to_datetime(frame["order_date"]).dt.normalize(),
                         amount=frame["amount"].astype(float))
    return frame[[*TRANSACTION_COLUMNS, ORDER_ID]].reset_index(drop=True), dropped


def load_transactions_csv(path: str | os.PathLike) -> pd.DataFrame:
    """The transactions of ``read_transactions_csv`` (the rows it leaves out are not reported)."""
    return read_transactions_csv(path)[0]


def read_export_transactions(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, int]]:
    """An export in any layout the files import reads (a workbook, Online Retail, Shopify's orders
    export, day-first dates, UTF-16, a report's title lines, the store's own header names in
    store.toml [files.columns]), read as the platform reads it: imported into a temporary store whose
    staging tables are then read as a built store's are (``read_store_transactions``), so the
    backtest and the platform never disagree on what a file says. Nothing is written beside it.

    The currency is the file's currency column, else the store's file currency setting, else
    ``NO_CURRENCY``; rows in another currency than the file's most frequent one are left out and
    counted, as the import rejects them. Times are read in the store's time zone setting."""
    from datetime import datetime, timezone

    from clv_platform.ingestion.file_import import (
        UnreadableFileError, content_hash, read_export, replace_file_rows, spooled_export,
    )
    from clv_platform.ingestion.raw_tables import ensure_raw_tables
    from clv_platform.transforms.staging import build_staging

    path = Path(path).resolve()
    settings = load_settings()
    # one backtest loads its data set more than once (the ML and the BTYD backtests): import once
    key = (str(path), path.stat().st_mtime_ns, path.stat().st_size, settings.file_currency,
           settings.file_columns, settings.file_sheets, settings.store_timezone, settings.file_date_order)
    if key not in _IMPORTED:
        with tempfile.TemporaryDirectory(prefix="clv-backtest-import-") as folder:
            store = Path(folder) / "import.duckdb"
            with duckdb.connect(str(store)) as conn:
                ensure_raw_tables(conn)
                try:
                    reading, batches = read_export(
                        path, datetime.now(timezone.utc).replace(tzinfo=None), settings.file_currency or NO_CURRENCY,
                        content_hash(path), dict(settings.file_columns), settings.file_sheets)
                    with spooled_export(batches) as spool:
                        replace_file_rows(conn, path.name, spool, reading)
                except UnreadableFileError as error:
                    raise ValueError(f"{error} (the backtest reads a file as `clv-platform files` imports it)") from None
                build_staging(conn, store_timezone=settings.store_timezone, date_order=settings.file_date_order)
            _IMPORTED.clear()
            _IMPORTED[key] = read_store_transactions(store)
    frame, dropped = _IMPORTED[key]
    return frame.copy(), dict(dropped)


_IMPORTED: dict[tuple, tuple[pd.DataFrame, dict[str, int]]] = {}
"""The last export ``read_export_transactions`` imported, by file identity and the settings it read it with."""


def load_dataset(dataset: str | os.PathLike) -> LoadedDataset:
    """Load a named CDNOW data set, a store, or a transactions file, with its default backtest window.

    CDNOW gets the papers' protocol (calibration to 1997-09-30, holdout to 1998-06-30); a file
    has no default window and the caller must supply one. The plain CSV (``customer_id,
    order_date, amount``, ISO dates) is read directly; any other export through the files import
    (``read_export_transactions``).
    """
    name = str(dataset)
    if name == CDNOW_SAMPLE:
        return LoadedDataset(name, load_cdnow_sample(), CDNOW_CALIBRATION_END, CDNOW_HOLDOUT_END)
    if name == CDNOW_FULL:
        return LoadedDataset(name, load_cdnow_full(), CDNOW_CALIBRATION_END, CDNOW_HOLDOUT_END)
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"unknown dataset {name!r}: not one of {CDNOW_DATASETS} and not a file")
    if path.suffix.lower() in STORE_SUFFIXES:
        frame, dropped = read_store_transactions(path)
        return LoadedDataset(path.stem, frame, None, None, dropped)
    try:
        frame, dropped = read_transactions_csv(path)
    except NotPlainTransactions:
        frame, dropped = read_export_transactions(path)
    return LoadedDataset(path.stem, frame, None, None, dropped)
