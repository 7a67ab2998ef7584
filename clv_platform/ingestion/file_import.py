"""Read a transaction export (CSV or Excel) into raw rows, keeping every cell as text.

Layouts are recognized from the header, whatever its case, spaces and punctuation:

* line level (both UCI Online Retail files and their usual spellings): invoice
  (`InvoiceNo` / `Invoice`), stock code, quantity, invoice date, unit price (`UnitPrice` /
  `Price`), customer id (`CustomerID` / `Customer ID`), optionally description, country and
  currency; without a stock code when the file has no amount column either (a line is worth its
  quantity times its price; a credit note then reduces the customer's latest order before it);
* order level (generic): `customer_id, order_id, order_date, amount`, optionally `product_id`,
  `quantity`, `country`, `currency`, an order status and a refunded amount (``LAYOUT_FIELD_HEADERS``);
* transactions without an order id (`customer_id, order_date, amount`, the same optional columns;
  CDNOW's and many public logs' shape): each row is one order, keyed in staging by its customer,
  date and amount as written;
* Shopify admin's orders export (Orders → Export, plain CSV or CSV for Excel): one row per line
  item (`Name`, `Lineitem quantity`, `Lineitem price`, `Lineitem name`, `Lineitem sku`), the
  order's own columns (`Email`, `Financial Status`, `Created at`, `Subtotal`, `Currency`,
  `Refunded Amount`, `Cancelled at`, `Id`, ...) on its first row only. The rows are kept as they
  are (staging gives each line row its order's columns); the order columns that have no raw
  column of their own are kept under canonical names in `layout_fields`.

Any other export is read once the store names its headers (store.toml [files.columns]: raw column
= header); an unknown header fails the file listing the layouts and that setting. CSV delimiter
(`,` `;` tab `|`, else columns aligned with runs of spaces, as CDNOW's text file writes them) and
encoding (UTF-8 with or without BOM, UTF-16 with BOM, else Windows-1252) are detected. A line
whose field count does not match the header is kept as a raw row with its line number and a
parse error, which staging rejects with that reason: one bad line never refuses the file.
Every sheet of a workbook is read (an empty sheet contributes no rows; a sheet that lists returned
orders, an order id and a `Returned` flag as Tableau's Sample Superstore's `Returns`, marks those
orders' rows returned; a sheet with no transaction column and no date or number, a lookup list such
as Superstore's `People`, is named in the import's report and not read; any other header fails the
file naming the sheet). Values are judged in staging SQL, where every bad row
gets a reason; this module only refuses files it cannot read at all, naming the file and the
problem.

A CSV is decoded a block at a time and its rows are turned into frames ``BATCH_ROWS`` at a time
(``read_export``), spooled to a scratch DuckDB file and moved into the store in one transaction
(``spooled_export``, ``replace_file_rows``): the import's memory does not grow with the file. What
needs the whole file (its encoding, its decimal separator, the shops of a warehouse table) is
decided on the whole file all the same.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain, islice
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from clv_platform.core.scratch import scratch_dir
from clv_platform.core.sql import transaction
from clv_platform.resources.storage import attached_read_only, spool_connection

WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
"""Spreadsheets read by pandas' calamine engine (Excel 2007+, Excel 97-2003, binary Excel, OpenDocument)."""
SUPPORTED_SUFFIXES = (".csv", ".txt", *WORKBOOK_SUFFIXES)


def inbox_listing(folder: Path) -> tuple[list[Path], list[Path]]:
    """(files to import, files of another type) of the inbox, each sorted by name; hidden files
    (editor and sync temporaries) are neither. The other files are for naming, never for passing
    over in silence (`clv-platform files`, the inbox sensor)."""
    if not folder.is_dir():
        return [], []
    files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")), key=lambda p: p.name)
    return ([p for p in files if p.suffix.lower() in SUPPORTED_SUFFIXES],
            [p for p in files if p.suffix.lower() not in SUPPORTED_SUFFIXES])

# normalized header spelling → raw column
HEADER_ALIASES = {
    "invoice": "order_id", "invoiceno": "order_id", "invoicenumber": "order_id", "invoiceid": "order_id",
    "orderid": "order_id", "orderno": "order_id", "ordernumber": "order_id",
    "stockcode": "product_id", "productid": "product_id", "sku": "product_id", "productcode": "product_id",
    "description": "description", "productname": "description",
    "quantity": "quantity", "qty": "quantity",
    "invoicedate": "order_date", "orderdate": "order_date", "date": "order_date",
    "transactiondate": "order_date", "purchasedate": "order_date",
    "price": "unit_price", "unitprice": "unit_price",
    "customerid": "customer_id", "customer": "customer_id", "customerno": "customer_id",
    "country": "country",
    # not "Order Total Amount": a WooCommerce export's, whose "Customer ID" is 0 for every guest, so
    # it must be read with the e-mail named as the customer ([files.columns]), not guessed
    "amount": "amount", "total": "amount", "ordertotal": "amount", "orderamount": "amount",
    "currency": "currency", "currencycode": "currency", "ordercurrency": "currency",
}
PREFERRED_ALIASES = {"customer_id": ("customeruniqueid", "uniquecustomerid")}
"""Spellings read before ``HEADER_ALIASES``' when a file has both: Olist's Brazilian e-commerce data
(the most used public marketplace data set) gives every order a `customer_id` of its own and the
person a `customer_unique_id`; read as the customer, the order-level id made every buyer a one-time
buyer."""
FALLBACK_ALIASES = {
    "amount": ("sales", "salesamount", "totalamount", "linetotal", "revenue", "transactionamount", "purchaseamount",
               "dollarvalue", "tranamount", "transamount", "txnamount", "paymentvalue", "grandtotal", "ordervalue",
               "totalprice", "totalsales", "netamount"),
    "order_date": ("transdate", "trandate", "txndate", "orderpurchasetimestamp", "purchasetimestamp", "tdat",
                   "ordercreatedat", "createdat", "orderdatetime", "ordertimestamp"),
    "order_id": ("transactionid", "transactionno", "transactionnumber", "receiptid", "receiptno", "receiptnumber"),
    "customer_id": ("clientid", "customercode", "userid", "memberid", "buyerid", "accountid", "customeremail",
                    "email", "emailaddress", "buyeremail"),
    "unit_price": ("priceperunit", "priceeach", "itemprice", "listprice"),
    "quantity": ("quantityordered", "qtyordered"),
    "product_id": ("productno", "productnumber", "itemcode", "itemnumber"),
    "country": ("countryregion", "countryname"),
}
"""Looser spellings of a column (normalized header, in order of preference), read only when the file
has none of ``HEADER_ALIASES``' spellings of it: public sales data sets write the money as `Sales`
(Tableau's Superstore, one row per line, summed per order), `Total Amount` or `Revenue` and the
order as `Transaction ID`; the Kaggle "Retail Data Transactions" file, a common RFM and CLV exercise,
writes `customer_id, trans_date, tran_amount` (dates `11-Feb-13`); Superstore's editions since 2019
write the country as `Country/Region`; Kaggle's "Sales Transaction v.4a" (an online shop's lines)
writes `TransactionNo, Date, ProductNo, ProductName, Price, Quantity, CustomerNo, Country`; a file with `Amount` and `Sales` reads `Amount`. A customer's name is no
id (two people share one) and stays unread; so does a date header that names no date
(`TRANSACTION_DT` of Ta Feng, whose `AMOUNT` is the quantity: refused, not misread). A file with no
customer id but an e-mail column (`Email`, `Customer Email`) reads the address as the customer (a
file with both reads the id: WooCommerce's `Customer ID` is 0 for every guest, named in store.toml
instead); H&M's Kaggle transactions write the day as `t_dat`; `Created at` and `Grand Total` are the
order tables of many shop systems."""

CURRENCY_CODES = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD
CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ
GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR
LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN
PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB
TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL
""".split())
"""ISO 4217's active currency codes: a money header may name its currency (`Amount (EUR)`)."""
_WORD_CODES = frozenset({"ALL", "BOB", "CUP", "GEL", "MAD", "MOP", "NAD", "PEN", "SOS", "TOP", "TRY"})
"""Codes that are also English words: read as a currency in a header only written in capitals inside
brackets (`Total (TRY)`), so `Total all` or `price_top` name no currency."""
_HEADER_CODE = re.compile(r"^(?P<name>.*?[A-Za-z0-9])(?:\s*[(\[]\s*(?P<bracketed>[A-Za-z]{3})\s*[)\]]"
                          r"|[\s_\-]+(?P<plain>[A-Za-z]{3}))\s*$")


def header_currency(name: str) -> tuple[str, str] | None:
    """(the header without its currency, normalized; the ISO code) of a header that ends in a
    currency code, written apart from the rest (`Amount (EUR)`, `Order Total [GBP]`, `amount_usd`,
    `Sales USD`), else None."""
    match = _HEADER_CODE.match(str(name).strip())
    if match is None:
        return None
    written = match["bracketed"] or match["plain"]
    code = written.upper()
    if code not in CURRENCY_CODES or (code in _WORD_CODES and not (match["bracketed"] and written.isupper())):
        return None
    return normalize_header(match["name"]), code


MONEY_SPELLINGS = frozenset({name for name, column in HEADER_ALIASES.items() if column in ("amount", "unit_price")}
                            | set(FALLBACK_ALIASES["amount"]) | set(FALLBACK_ALIASES["unit_price"]))
"""Normalized money headers: with a currency code after them (``header_currency``) they are read as
without it, and the code is the currency of the file's rows when it has no currency column."""


def money_header_currency(header: list, mapping: Mapping[str, int]) -> str | None:
    """The currency a file's money header names (``header_currency`` of its amount's, else its unit
    price's header), None when it names none or the file has a currency column."""
    if "currency" in mapping:
        return None
    for column in ("amount", "unit_price"):
        if column in mapping:
            named = header_currency(str(header[mapping[column]]))
            if named is not None and named[0] in MONEY_SPELLINGS:
                return named[1]
    return None


STATUS_HEADERS = {"status", "orderstatus", "paymentstatus"}
"""An order's status column of an order- or line-level export (normalized header), kept in
`layout_fields` as `status`: staging rejects the rows of orders that are not purchases
(cancelled, failed, pending, ...; data_contracts.md, "Files")."""
REFUNDED_HEADERS = ("amountrefunded", "refundedamount", "refundamount", "refunded")
"""The money given back on an order of an order-level or transactions export (Stripe's payments
export `Amount Refunded`, `Refunded Amount`, `Refund Amount`, `Refunded`; normalized header, the
first of them a file has wins, so a bare `Refunded` beside an amount is not taken for it), kept in
`layout_fields` as `refunded_amount`: staging subtracts it from the order as it does Shopify's
`Refunded Amount` (data_contracts.md, "Files")."""
LAYOUT_FIELD_HEADERS = {"status": STATUS_HEADERS, "refunded_amount": REFUNDED_HEADERS}
"""The columns of the other layouts than Shopify's kept in `layout_fields` (no raw column of their
own), by the headers recognized without a setting; store.toml [files.columns] may name them too."""
LINE_LEVEL_REQUIRED = {"order_id", "product_id", "quantity", "order_date", "unit_price", "customer_id"}
ORDER_LEVEL_REQUIRED = {"customer_id", "order_id", "order_date", "amount"}
TRANSACTIONS_REQUIRED = ORDER_LEVEL_REQUIRED - {"order_id"}

# Shopify admin's orders export: normalized header → raw column. `Email` is the customer (the
# export has no customer id), `Subtotal` the order's amount (after discounts, before shipping and
# taxes), `Lineitem sku` the product (staging falls back to `Lineitem name` when it is blank).
SHOPIFY_ORDERS_COLUMNS = {
    "name": "order_id", "email": "customer_id", "createdat": "order_date", "lineitemsku": "product_id",
    "lineitemname": "description", "lineitemquantity": "quantity", "lineitemprice": "unit_price",
    "subtotal": "amount", "billingcountry": "country", "currency": "currency",
}
# ... and the columns kept in `layout_fields` (normalized header → canonical name staging reads)
SHOPIFY_ORDERS_FIELDS = {
    "id": "id", "financialstatus": "financial_status", "paidat": "paid_at", "cancelledat": "cancelled_at",
    "refundedamount": "refunded_amount", "discountamount": "discount_amount", "shipping": "shipping",
    "taxes": "taxes", "duties": "duties", "total": "total", "lineitemdiscount": "line_discount",
    "shippingcountry": "shipping_country", "outstandingbalance": "outstanding_balance",
    "acceptsmarketing": "accepts_marketing",
}
SHOPIFY_ORDERS_REQUIRED = {"name", "email", "financialstatus", "createdat", "subtotal",
                           "lineitemquantity", "lineitemprice", "lineitemname"}
# A Shopify orders table as a warehouse holds it, one row per order, exported to a file: the
# `order` table of Fivetran's Shopify connector, or dbt_shopify's `shopify__orders` model built on it
# (the usual way a data team keeps Shopify orders), or the `orders` stream of Airbyte's Shopify source
# (the REST Admin API's order, its `customer` and `refunds` objects kept as JSON). Column meanings:
# dbt_shopify's models/shopify.yml and shopify_source's get_order_columns (fivetran/dbt_shopify,
# fivetran/dbt_shopify_source), Shopify's REST Order resource. Fivetran's connector on the GraphQL Admin
# API writes a money set's shop amount as `<field>_set_shop_amount` (`subtotal_price_set_shop_amount`;
# dbt's `shopify_gql__orders` renames it `subtotal_price_shop_amount`) and the status as
# `display_financial_status`: the shop amount, never the presentment one, is read.
# Raw column -> normalized spellings, the most preferred first.
SHOPIFY_TABLE_COLUMNS = {
    # dbt renames the connector's `id`; its `number` and `order_number` are not the id
    "order_id": ("orderid", "id"),
    # Airbyte's `customer` is the customer object as JSON ({"id": 6543210987654, ...}): staging reads its id
    "customer_id": ("customerid", "customer"),
    # "the date that appears on your orders and that's used in the analytic reports": orders imported
    # from another platform keep their own day here, while `created_at` is the day of the import
    "order_date": ("processedtimestamp", "processedat", "createdtimestamp", "createdat"),
    # "the price of the order in the shop currency after discounts but before shipping, taxes, and tips"
    "amount": ("subtotalprice", "subtotalpriceshopamount", "subtotalpricesetshopamount"),
    "currency": ("currency", "currencycode"),
    "country": ("billingaddresscountry", "shippingaddresscountry"),
}
# ... and the order's columns kept in `layout_fields` (staging reads them; data_contracts.md)
SHOPIFY_TABLE_FIELDS = {
    "financial_status": ("financialstatus", "displayfinancialstatus"),
    # dbt's refunded line-item subtotals (without tax and shipping, like the subtotal); the connector's
    # own table has no refunds (they are in its `refund` and `order_line_refund` tables)
    "refunded_amount": ("refundsubtotal",),
    "cancelled_at": ("cancelledtimestamp", "cancelledat"),
    # the creation time, read where an order has no processing time (the API path's coalesce)
    "created_at": ("createdtimestamp", "createdat"),
    "test": ("istestorder", "test"),
    "deleted": ("isdeleted", "fivetrandeleted"),
    "taxes_included": ("hastaxesincluded", "taxesincluded"),
    "taxes": ("totaltax", "totaltaxshopamount", "totaltaxsetshopamount"),
    "email": ("email",),
    # Airbyte: the order's refunds as JSON (their `refund_line_items[].subtotal` are the products
    # refunded), and the time Shopify deleted the order (the source emits deleted orders)
    "refunds": ("refunds",),
    "deleted_at": ("deletedat",),
    # "whether the customer consented to receive email updates from the shop" when ordering
    "accepts_marketing": ("hasbuyeracceptedmarketing", "buyeracceptsmarketing", "customeracceptsmarketing"),
}
SHOPIFY_TABLE_REQUIRED = ("financial_status", "amount")
"""What makes a header a Shopify orders table's (any spelling of each), with an order id, an order time
and a customer."""
SHOPIFY_TABLE_UNION_HEADERS = ("sourcerelation", "shopurl")
"""dbt_shopify's `source_relation` (the connector a row came from when a project unions several shops
into one table) and Airbyte's `shop_url` (the shop each order of its stream is from). One database
holds one store, so a file of several is refused."""


EXPECTED_LAYOUTS = (
    "Online Retail (InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country), "
    "Online Retail II (Invoice, StockCode, Description, Quantity, InvoiceDate, Price, Customer ID, Country; "
    "StockCode optional in a file without an amount column), "
    "order level (customer_id, order_id, order_date, amount[, product_id, quantity, country, currency]), "
    "transactions without an order id (customer_id, order_date, amount[, ...]: a row is an order), "
    "Shopify's orders export (Name, Email, Financial Status, Created at, Subtotal, Lineitem quantity, "
    "Lineitem name, Lineitem price, ...), or a Shopify orders table from a warehouse (Fivetran's `order`, "
    "dbt_shopify's `shopify__orders`, Airbyte's `orders`: order_id or id, customer_id or customer, "
    "processed_at or processed_timestamp, subtotal_price, financial_status, ...); header names are matched ignoring case, spaces and punctuation"
)

RAW_COLUMNS = [
    "file_name", "file_format", "row_number", "order_id", "customer_id", "order_date",
    "product_id", "description", "quantity", "unit_price", "amount", "country", "payload",
    "ingested_at", "sheet_name", "currency", "parse_error", "content_sha256", "decimal_separator",
    "layout_fields",
]
_VALUE_COLUMNS = ["order_id", "customer_id", "order_date", "product_id", "description",
                  "quantity", "unit_price", "amount", "country"]
_SNIFF_BYTES = 1 << 16


class UnreadableFileError(Exception):
    """The file cannot be imported at all; the message names the file and the problem."""


def normalize_header(name: str) -> str:
    """A header as the layouts are matched: lower case, letters and digits only (`Order ID` = `order_id`)."""
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


EXCEL_EPOCH = datetime(1899, 12, 30)
"""Day 0 of Excel's serial dates (1900 date system, with its phantom 29 Feb 1900 folded in)."""
EXCEL_SERIAL_DAYS = (20000, 80000)
"""Serial numbers read as dates in a date column: 1954-10-03 to 2119-01-10. A workbook date cell
without a date format comes back as its serial number (45173 = 2023-09-04); a number outside
this range in a date column is left as it is (staging rejects it as an unparseable date)."""


def _date_cell_text(value) -> str | None:
    """A workbook's order-date cell as text: a bare number in the serial range is an unformatted
    Excel date (its fraction the time of day); anything else as ``_cell_text`` renders it."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and \
            EXCEL_SERIAL_DAYS[0] <= value < EXCEL_SERIAL_DAYS[1]:
        return (EXCEL_EPOCH + timedelta(days=float(value))).isoformat(sep=" ", timespec="seconds")
    return _cell_text(value)


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes: a corrected file is a new version even with the same name, size
    and modification time, and a touched but unchanged file is the same version."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- CSV


def detect_encoding(head: bytes) -> str:
    """The text encoding of a CSV from its first bytes: BOMs first, then UTF-16 without BOM by its
    zero bytes, then UTF-8 if it decodes, else Windows-1252 (what European Excel writes)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if len(head) >= 4 and head[1::2].count(0) > len(head) // 4:
        return "utf-16-le"
    if len(head) >= 4 and head[0::2].count(0) > len(head) // 4:
        return "utf-16-be"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
            return "cp1252"
    return "utf-8"


def detect_delimiter(sample: str) -> str:
    """`,` `;` tab or `|`, whichever splits the header line into the most fields consistently."""
    lines = [line for line in sample.splitlines()[:20] if line.strip()]
    if not lines:
        return ","
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|").delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in ",;\t|"}
        return max(counts, key=counts.get) if max(counts.values()) else ","


ALIGNED = " "
"""The "delimiter" of a text file whose columns are aligned with runs of spaces (CDNOW_master.txt:
` 00001 19970101  1   11.77`), tried only when no header is recognized with `,` `;` tab or `|`."""
_LINE_EDGE_BLANKS = re.compile(r"^[ ]+|[ \r]+$", re.MULTILINE)
_DECIMAL_COMMA = re.compile(r"^-?\d{1,3}(\.\d{3})*,\d+$|^-?\d+,\d+$")
_QUOTED_DECIMAL_COMMA = re.compile(r"^-?\d{1,3}(\.\d{3})*,\d{1,2}$|^-?\d+,\d{1,2}$")
_US_GROUPING = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d*)?$")
_CURRENCY_AND_SPACES = re.compile(r"[$£€¥\s\u00a0\u202f]")
# an accountant's negative: `(6,95)` or `6,95-`
ACCOUNTING_NEGATIVES = (re.compile(r"^\(([0-9][0-9.,]*)\)$"), re.compile(r"^([0-9][0-9.,]*)-$"))


_GUARD_APOSTROPHE = re.compile(r"^\s*'(?=[-+(0-9.\u2212])")
"""An apostrophe before a number (`'-12.00`): a formula-injection guard of the exporter, or Excel's text marker."""


def bare_number_text(values: pd.Series) -> pd.Series:
    """Number texts as staging reads them (``clv_file_bare_number`` in 03_file_rows.sql) without their
    currency codes: currency symbols and spaces (thousands groups) left out, an accountant's negative
    signed with a leading minus, as is a typographic minus sign (U+2212, `−12.00`: Numbers, LibreOffice
    and typeset reports write it); an apostrophe before the number (``_GUARD_APOSTROPHE``) left out.
    The backtest's CSV reader reads amounts through it, the files import's decimal detection through
    ``file_number_text``."""
    values = values.str.replace(_GUARD_APOSTROPHE, "", regex=True)
    values = values.str.replace("\u2212", "-", regex=False).str.replace(_CURRENCY_AND_SPACES, "", regex=True)
    for pattern in ACCOUNTING_NEGATIVES:
        values = values.str.replace(pattern, r"-\1", regex=True)
    return values


_DOLLAR_PREFIX = re.compile(r"[A-Z]{1,2}[$]")  # R$, US$, A$, HK$: a dollar-style symbol
_OTHER_SYMBOLS = re.compile(r"[₹]")
_CODE_BEFORE = re.compile(r"^([(-]?)[A-Z]{3}([-(]?[0-9.])")
_CODE_AFTER = re.compile(r"([0-9.)-])[A-Z]{3}([)]?)$")
_APOSTROPHE_THOUSANDS = re.compile(
    r"^([-(]?[0-9]{1,3})['’]([0-9]{3})(?:['’]([0-9]{3}))?(?:['’]([0-9]{3}))?([.,][0-9]*)?([)-]?)$")


def file_number_text(values: pd.Series) -> pd.Series:
    """Number texts as the files import reads them (``clv_file_bare_number`` in 03_file_rows.sql):
    ``bare_number_text`` after leaving out the currency a cell may also carry (`R$ 1.234,56`,
    `₹1,234.50`, a code: `USD 12.00`, `12.00 EUR`) and Swiss apostrophe thousands (`1'234.50`).
    Staging checks a code against the store currency; the backtest's CSV reader has no currency, so
    it reads amounts through ``bare_number_text`` alone (a code there stays unparseable)."""
    values = values.str.replace(_DOLLAR_PREFIX, "$", regex=True).str.replace(_OTHER_SYMBOLS, "", regex=True)
    values = values.str.replace(_CURRENCY_AND_SPACES, "", regex=True)
    values = values.str.replace(_CODE_BEFORE, r"\1\2", regex=True).str.replace(_CODE_AFTER, r"\1\2", regex=True)
    values = values.str.replace(_APOSTROPHE_THOUSANDS, r"\1\2\3\4\5\6", regex=True)
    return bare_number_text(values)


DECIDING_VALUES = 5000
"""Money texts a file's decimal separator is decided on: its first unit prices, then its first amounts."""


def decimal_separator(frame: pd.DataFrame, delimiter: str | None) -> str:
    """`,` when a semicolon/tab file (or a workbook's number cells stored as text, ``delimiter``
    None) writes its prices or amounts with a decimal comma (European Excel: `6,95`, `1.234,50`),
    else `.`. Decided per file from its values, never per cell.

    A comma-separated file can only write a decimal comma quoted (`"10,50"`: a sheet in a European
    locale downloaded as CSV, Google Sheets'); there it takes one or two decimals (`_QUOTED_DECIMAL_COMMA`)
    and no US grouping (`1,234.50`) anywhere, so a thousands group (`"1,234"`) never decides it."""
    texts = _MoneyTexts()
    texts.add(frame)
    return texts.separator(delimiter)


class _MoneyTexts:
    """The money texts ``decimal_separator`` decides on, gathered batch by batch: a streamed CSV's
    separator is the one its whole file gives (the first ``DECIDING_VALUES`` unit prices of the file,
    then its first amounts), however its rows are split."""

    def __init__(self):
        self.prices: list[str] = []
        self.amounts: list[str] = []

    def add(self, frame: pd.DataFrame) -> None:
        for kept, column in ((self.prices, "unit_price"), (self.amounts, "amount")):
            if len(kept) < DECIDING_VALUES:
                values = frame[column].dropna()
                values = file_number_text(values.astype(str)) if len(values) else values
                kept.extend(values[values != ""].head(DECIDING_VALUES - len(kept)).tolist())

    def separator(self, delimiter: str | None) -> str:
        values = pd.Series((self.prices + self.amounts)[:DECIDING_VALUES], dtype=object)
        if values.empty:
            return "."
        if delimiter == ",":
            comma = values.str.match(_QUOTED_DECIMAL_COMMA).mean() > 0.5 and not values.str.match(_US_GROUPING).any()
            return "," if comma else "."
        return "," if values.str.match(_DECIMAL_COMMA).mean() > 0.5 else "."


def _width_error(line: int, fields: list[str], header: list) -> str | None:
    """A CSV line's error when its fields do not fit the header, else None.

    A line of another length fits when it has every field up to the header's last named column and
    nothing but empty fields after it: trailing empty fields (`c1,o1,5.00,,`) and trailing columns the
    header leaves unnamed (a header ending `amount,,`) carry no value (spreadsheets and hand edits leave
    such ragged ends; every such line was rejected). A value after the named columns of a line of
    another length (`…,1,050.00`: a comma inside an amount) is no such end: malformed.
    """
    width = len(header)
    if len(fields) == width:
        return None
    named = max((i + 1 for i, name in enumerate(header) if str(name or "").strip()), default=0)
    if len(fields) >= named and all(not str(f).strip() for f in fields[named:]):
        return None
    return f"malformed line {line}: {len(fields)} fields, the header has {width}"


_TEXT_BLOCK = 1 << 20
"""Characters of a CSV decoded at a time."""


def _csv_text(path: Path) -> tuple[str, str]:
    """(encoding, errors) the whole CSV decodes with: the detected encoding, or Windows-1252 with
    replacement characters for a file detected as UTF-8 that is not (a single Latin-1 byte anywhere,
    also far below the sample the detection reads). Refuses a blank file and one that is not valid
    text in its detected encoding. Reads the file block by block: nothing of it is kept."""
    with path.open("rb") as handle:
        if not any(block.strip() for block in iter(lambda: handle.read(_TEXT_BLOCK), b"")):
            raise UnreadableFileError(f"{path.name}: the file is empty")
        handle.seek(0)
        encoding = detect_encoding(handle.read(_SNIFF_BYTES))
        handle.seek(0)
        decoder = codecs.getincrementaldecoder(encoding)("strict")
        try:
            for block in iter(lambda: handle.read(_TEXT_BLOCK), b""):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            if not encoding.startswith("utf-8"):
                raise UnreadableFileError(f"{path.name}: not valid {encoding} text") from None
            return "cp1252", "replace"
    return encoding, "strict"


def _text_lines(path: Path, encoding: str, errors: str, aligned: bool) -> Iterator[str]:
    """The CSV's lines as ``io.StringIO(text, newline="")`` gives them from the whole decoded text
    (a line ends at `\n`, `\r` or `\r\n`, kept; a leading BOM dropped), decoded a block at a time.
    ``aligned``: tabs as spaces and ``_LINE_EDGE_BLANKS`` left out, as on the whole text. A block is
    cut after its last `\n` (else, not aligned, its last `\r` that is not its last character), so no
    line and no `\r\n` is split and the line-anchored pattern sees whole lines."""
    with path.open("rb") as raw, io.TextIOWrapper(raw, encoding=encoding, errors=errors, newline="") as text:
        carry, first = "", True
        while True:
            block = text.read(_TEXT_BLOCK)
            end = not block
            if first:
                block, first = block.removeprefix("\ufeff"), False
            block = carry + (block.replace("\t", " ") if aligned else block)
            carry = ""
            if not end:
                cut = block.rfind("\n") + 1
                if not cut and not aligned:
                    cut = block.rfind("\r", 0, len(block) - 1) + 1
                block, carry = block[:cut], block[cut:]
            if aligned:
                block = _LINE_EDGE_BLANKS.sub("", block)
            yield from io.StringIO(block, newline="")
            if end:
                return


def _read_csv(path: Path, delimiter: str | None, text: tuple[str, str],
              ) -> tuple[list[str], Iterator[tuple[int, list[str] | None, str | None]], str]:
    """Header, data rows as (line number, fields, parse error), and the delimiter of a CSV (the
    one given, else the one detected). The rows are read as they are iterated (a block of the file
    at a time); ``text``: the file's (encoding, errors) (``_csv_text``)."""
    encoding, errors = text
    if delimiter is None:
        with path.open("r", encoding=encoding, errors=errors, newline="") as handle:
            delimiter = detect_delimiter(handle.read(_SNIFF_BYTES + 1).removeprefix("\ufeff")[:_SNIFF_BYTES])
    lines = _text_lines(path, encoding, errors, delimiter == ALIGNED)
    # strict: an unterminated quote or a stray quote is a malformed line, not silently joined text
    reader = csv.reader(lines, delimiter=delimiter, strict=True, skipinitialspace=delimiter == ALIGNED)
    try:
        header = next(reader)
    except StopIteration:
        lines.close()
        raise UnreadableFileError(f"{path.name}: the file is empty") from None
    return header, _csv_rows(reader, header, lines), delimiter


def _csv_rows(reader, header: list[str], lines: Iterator[str]) -> Iterator[tuple[int, list[str] | None, str | None]]:
    try:
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a NUL byte or an unterminated quote: that line, not the file
                yield reader.line_num, None, f"malformed line {reader.line_num}: {exc}"
                continue
            if not "".join(fields).strip():
                continue  # blank line (or only blank fields): not a row
            yield reader.line_num, fields, _width_error(reader.line_num, fields, header)
    finally:
        lines.close()


# --------------------------------------------------------------------------- layout


def _first_spelling(normalized: list[str], spellings: tuple[str, ...] | frozenset[str] | set[str],
                    excluded: set[int]) -> int | None:
    """The index of the header (``normalized``, not in ``excluded``) of the most preferred of
    ``spellings`` (a tuple is in order of preference; a set's spellings are equal, the leftmost
    header wins), else None."""
    found = [(spellings.index(name) if isinstance(spellings, tuple) else 0, i)
             for i, name in enumerate(normalized) if name in spellings and i not in excluded]
    return min(found)[1] if found else None


def detect_format(columns: list[str], file_name: str, named: Mapping[str, str] | None = None,
                  ) -> tuple[str, dict[str, int], dict[str, int]]:
    """The layout, for each raw column the index of the file column feeding it, and for each
    layout field (`layout_fields`, Shopify's orders export only) the index of its column.

    ``named``: the store's own header names (store.toml [files.columns], raw column -> header),
    for exports whose headers are not among the built-in spellings; a named header wins over
    them, and the header it names is not also read as another column. Shopify's orders export is
    recognized first and read by its own rules. An order status column (``STATUS_HEADERS``, or
    named as ``status``) and a refunded-amount column (``REFUNDED_HEADERS``, or named as
    ``refunded_amount``) of the other layouts go to `layout_fields`."""
    normalized = [normalize_header(name) for name in columns]
    if SHOPIFY_ORDERS_REQUIRED <= set(normalized):
        mapping, fields = {}, {}
        for index, name in enumerate(normalized):
            if name in SHOPIFY_ORDERS_COLUMNS:
                mapping.setdefault(SHOPIFY_ORDERS_COLUMNS[name], index)
            if name in SHOPIFY_ORDERS_FIELDS:
                fields.setdefault(SHOPIFY_ORDERS_FIELDS[name], index)
        return "shopify_orders", mapping, fields
    table = _shopify_table(normalized)
    if table is not None:
        return table
    # `Amount (EUR)` is the amount; its currency is read by money_header_currency
    named_codes = [header_currency(name) for name in columns]
    normalized = [code[0] if code is not None and code[0] in MONEY_SPELLINGS else name
                  for name, code in zip(normalized, named_codes)]
    wanted = {normalize_header(header): column for column, header in (named or {}).items()}
    mapping, fields = {}, {}
    for index, name in enumerate(columns):
        column = wanted.get(normalize_header(name))
        if column in LAYOUT_FIELD_HEADERS:
            fields.setdefault(column, index)
        elif column and column not in mapping:
            mapping[column] = index
    taken = set(mapping.values()) | set(fields.values())
    for field, headers in LAYOUT_FIELD_HEADERS.items():
        if field not in wanted.values():
            index = _first_spelling(normalized, headers, taken)
            if index is not None:
                fields[field] = index
                taken.add(index)
    for target, spellings in PREFERRED_ALIASES.items():
        index = _first_spelling(normalized, spellings, taken)
        if target not in mapping and index is not None:
            mapping[target] = index
    for index, name in enumerate(normalized):
        target = HEADER_ALIASES.get(name)
        if target and target not in mapping and index not in taken:
            mapping[target] = index
    for target, spellings in FALLBACK_ALIASES.items():
        index = _first_spelling(normalized, spellings, taken | set(mapping.values()))
        if target not in mapping and index is not None:
            mapping[target] = index
    if "amount" not in mapping and "quantity" not in mapping and "unit_price" in mapping:
        # without a quantity a row is one item, and its price is what the row sold for (KPMG's
        # Sprocket Central `Transactions`: transaction_id, product_id, customer_id, list_price)
        mapping["amount"] = mapping.pop("unit_price")
    if LINE_LEVEL_REQUIRED <= set(mapping) or ("amount" not in mapping
                                               and LINE_LEVEL_REQUIRED - {"product_id"} <= set(mapping)):
        # lines without a stock code (an Online Retail cut to CustomerID, InvoiceNo, InvoiceDate,
        # Quantity, UnitPrice) are still lines, each worth its quantity times its price; with an
        # amount column of its own a file without products is order level and its amount wins
        mapping.pop("amount", None)
        fields.pop("refunded_amount", None)  # a line-level file's refunds are its credit notes
        return "online_retail", mapping, fields
    if ORDER_LEVEL_REQUIRED <= set(mapping):
        return "generic", mapping, fields
    if TRANSACTIONS_REQUIRED <= set(mapping):
        return "transactions", mapping, fields
    found = f" (with store.toml [files.columns] {dict(named)})" if named else ""
    raise UnreadableFileError(f"{file_name}: unrecognized columns {list(columns)}{found}; expected {EXPECTED_LAYOUTS}, "
                              "or name your headers in store.toml [files.columns]")


def _shopify_table(normalized: list[str]) -> tuple[str, dict[str, int], dict[str, int]] | None:
    """("shopify_table", mapping, fields) when the header is a Shopify orders table's (``SHOPIFY_TABLE_*``):
    the store's own header names do not apply to it, as to Shopify's export."""
    spellings = {**SHOPIFY_TABLE_COLUMNS, **SHOPIFY_TABLE_FIELDS}
    if not all(set(spellings[column]) & set(normalized) for column in SHOPIFY_TABLE_REQUIRED):
        return None
    mapping, fields, taken = {}, {}, set()
    for target, table in ((mapping, SHOPIFY_TABLE_COLUMNS), (fields, SHOPIFY_TABLE_FIELDS)):
        for column, spellings in table.items():
            index = _first_spelling(normalized, spellings, taken)
            if index is not None:
                target[column] = index
                taken.add(index)
    if not {"order_id", "order_date", "customer_id"} <= set(mapping):
        return None
    union = _first_spelling(normalized, SHOPIFY_TABLE_UNION_HEADERS, taken)
    if union is not None:
        fields["source_relation"] = union
    return "shopify_table", mapping, fields


HEADER_SEARCH_ROWS = 20
"""How many rows a report's title lines may take above the header (``find_header``)."""


def find_header(header: list[str], rows: list[tuple[int, list | None, str | None]], file_name: str,
                named: Mapping[str, str] | None = None, width_checked: bool = True):
    """(header, data rows, detected format, title rows skipped) of a file or sheet whose header
    may sit below a report's title lines (`Sales report` / `Generated 2024-05-01` / blank, then the
    header): the first row, else the first of the next ``HEADER_SEARCH_ROWS`` rows, that
    ``detect_format`` recognizes. The title lines are not data: they are counted (the import's
    metadata reports them), never imported as rows. Without a recognized row the first row's error
    is raised.

    ``width_checked``: the rows carry a "malformed line" error for a field count other than the
    first row's (a CSV); below a later header it is checked against that header instead."""
    try:
        return header, rows, detect_format(header, file_name, named), 0
    except UnreadableFileError as first_error:
        for position, (number, fields, error) in enumerate(rows[:HEADER_SEARCH_ROWS]):
            if fields is None:
                continue
            candidate = [_cell_text(v) or "" for v in fields]
            try:
                detected = detect_format(candidate, file_name, named)
            except UnreadableFileError:
                continue
            body = rows[position + 1:]
            if width_checked:
                body = [(n, f, e if f is None else _width_error(n, f, candidate)) for n, f, e in body]
            # the first row (taken for the header) and the rows between it and the real header
            return candidate, body, detected, 1 + sum(f is not None for _, f, _ in rows[:position])
        raise first_error


UTC_HEADER = re.compile(r"\butc\b|\bgmt\b", re.IGNORECASE)
"""An order-date header that says its times are UTC (Stripe's `Created (UTC)`, `Created date (UTC)`)."""


def _date_zone_fields(header: list[str], mapping: dict[str, int], file_format: str) -> dict[str, str]:
    """`{"order_date_zone": "UTC"}` when the order-date column's header says its times are UTC (other
    layouts than Shopify's, whose wall clock is the shop's): staging then converts the times written
    without an offset from UTC to the store's time zone instead of taking them as already in it."""
    index = mapping.get("order_date")
    if file_format == "shopify_table" and index is not None:
        # the connector writes UTC (Fivetran converts every timestamp to it), and dbt_shopify keeps UTC
        # unless a project sets its `shopify_timezone` (data_contracts.md)
        return {"order_date_zone": "UTC"}
    if file_format == "shopify_orders" or index is None or not UTC_HEADER.search(str(header[index])):
        return {}
    return {"order_date_zone": "UTC"}


_JSON_TEXT = json.JSONEncoder(ensure_ascii=False).encode
"""``json.dumps(value, ensure_ascii=False)`` without building an encoder per call (two a row)."""


def _frame_from_rows(
    header: list[str], rows: list[tuple[int, list | None, str | None]], file_name: str, sheet: str | None,
    mapping: dict[str, int], file_format: str, fields: dict[str, int], text: bool = False,
) -> pd.DataFrame:
    """A file's or a sheet's rows as raw.file_transactions columns. ``text``: every cell is a str
    (a CSV's), rendered as ``_cell_text`` renders a str without its per-cell type tests."""
    zone = _date_zone_fields(header, mapping, file_format)
    value_at = [([], mapping.get(column)) for column in _VALUE_COLUMNS]  # each raw column's values, its cell
    currency, payloads, numbers, errors, layout, money_text = [], [], [], [], [], []
    money = [i for i in (mapping.get("unit_price"), mapping.get("amount"), fields.get("refunded_amount"))
             if i is not None]
    names = [str(h) for h in header]
    header_key = [normalize_header(name) for name in names]
    probe = min(mapping.values())  # one cell compared first, so the whole row is normalized only for a header
    probe_text = names[probe].strip().lower()
    date_index, currency_index = mapping.get("order_date"), mapping.get("currency")
    named_currency = money_header_currency(names, mapping)  # `Amount (EUR)`: each row's currency
    for number, cells_in, error in rows:
        if (error is None and cells_in is not None and probe < len(cells_in)
                and str(cells_in[probe]).strip().lower() == probe_text
                and [normalize_header(_cell_text(v) or "") for v in cells_in] == header_key):
            # the header again below the first (exports pasted one after another): not an order
            error = f"repeated header row: line {number} repeats the header (exports joined into one file)"
        numbers.append(number)
        errors.append(error)
        if cells_in is None or error is not None:
            for values, _ in value_at:
                values.append(None)
            currency.append(None)
            layout.append(None)
            money_text.append(False)
            payloads.append(json.dumps({"fields": cells_in}, ensure_ascii=False, default=str))
            continue
        if text:
            cells = [v if v.strip() else None for v in cells_in]
            money_text.append(any(cells[i] is not None for i in money))
        else:
            cells = [_cell_text(v) for v in cells_in]
            written = [cells_in[i] for i in money if cells[i] is not None]
            money_text.append(bool(written) and all(isinstance(v, str) for v in written))
            if date_index is not None:  # CSV cells are text: only a workbook's numeric date cell changes
                cells[date_index] = _date_cell_text(cells_in[date_index])
        for values, index in value_at:
            values.append(cells[index] if index is not None else None)
        currency.append(cells[currency_index] if currency_index is not None else named_currency)
        layout.append(_JSON_TEXT({**{k: cells[i] for k, i in fields.items()}, **zone}) if fields or zone else None)
        payloads.append(_JSON_TEXT(dict(zip(names, cells))))
    out = pd.DataFrame({column: values for column, (values, _) in zip(_VALUE_COLUMNS, value_at)})
    out.insert(0, "file_name", file_name)
    out.insert(1, "file_format", file_format)
    out.insert(2, "row_number", pd.Series(numbers, dtype="int64"))
    out["payload"] = payloads
    out["sheet_name"] = sheet
    out["currency"] = currency
    out["parse_error"] = errors
    out["layout_fields"] = layout
    out["money_as_text"] = money_text  # every money cell of the row is text (a workbook's numbers stored as text)
    return out


def _read_workbook(path: Path) -> list[tuple[str, list[str], list[tuple[int, list, None]]]]:
    """Every sheet of a workbook: (name, header, rows with their sheet row numbers).

    Read with pandas' `calamine` engine (Rust): openpyxl parses the sheet XML in Python, 323 s
    for a 377k-line sheet of an Online Retail II-sized workbook against 38 s here (measured side
    by side on this machine); the real workbook has 1.07M lines. Both give Excel's cell types
    (text, numbers, datetimes), and calamine keeps empty rows, so row numbers are Excel's.
    """
    try:
        sheets = pd.read_excel(path, sheet_name=None, dtype=object, engine="calamine", header=None)
    except Exception as exc:  # zip and calamine errors all mean "cannot read this file"
        raise UnreadableFileError(
            f"{path.name}: cannot be parsed as {path.suffix[1:].lower()} ({type(exc).__name__}: {exc})"
        ) from exc
    out = []
    for name, frame in sheets.items():
        frame = frame.dropna(how="all")
        if frame.empty:
            out.append((str(name), [], []))
            continue
        header = [_cell_text(v) or "" for v in frame.iloc[0].tolist()]
        body = frame.iloc[1:]
        # Sheet row number as Excel shows it (1-based, header row included).
        rows = [(int(idx) + 1, list(values), None) for idx, values in zip(body.index, body.itertuples(index=False))]
        out.append((str(name), header, rows))
    return out


def _refuse_unsaved_formulas(path: Path, sheet: str, header: list, rows: list, mapping: dict[str, int]) -> None:
    """Refuse a sheet whose every cell of a column the import reads is empty because the cells are
    formulas without a saved result: a workbook written by a program (openpyxl, a script, some
    report tools) that no spreadsheet application has opened and saved stores the formula only, and
    a reader gets nothing, so every row would be rejected as an unparseable amount (Excel shows the
    values, the merchant cannot see why). Only an entirely empty column is checked (openpyxl, formulas
    only, at most 50 rows), so a workbook with values costs nothing."""
    empty = [column for column, index in mapping.items()
             if rows and all(fields is None or index >= len(fields) or _cell_text(fields[index]) in (None, "")
                             for _, fields, _ in rows)]
    if not empty or path.suffix.lower() not in (".xlsx", ".xlsm"):
        return
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except Exception:  # noqa: BLE001 - calamine read it; without openpyxl's view there is nothing to add
        return
    try:
        cells = book[sheet].iter_rows(min_row=rows[0][0], max_row=rows[0][0] + 49, values_only=True)
        formulas = {column for line in cells for column in empty
                    if mapping[column] < len(line) and str(line[mapping[column]] or "").startswith("=")}
    finally:
        book.close()
    if formulas:
        named = ", ".join(f"{column} ({header[mapping[column]]!r})" for column in sorted(formulas))
        raise UnreadableFileError(
            f"{path.name}, sheet '{sheet}': the column(s) {named} hold formulas without a saved result (the workbook "
            "was written by a program and never opened and saved in a spreadsheet application, which stores the "
            "results): open it in Excel or LibreOffice, save it, and import it again")


def _hidden_sheets(path: Path) -> set[str]:
    """Names of the workbook's hidden and very hidden sheets (Excel's sheet state), for the message
    that refuses a sheet: a merchant cannot find a hidden helper sheet the message names. Read only
    on that error; empty when the format keeps no sheet state."""
    try:
        from python_calamine import CalamineWorkbook, SheetVisibleEnum

        return {m.name for m in CalamineWorkbook.from_path(str(path)).sheets_metadata
                if m.visible != SheetVisibleEnum.Visible}
    except Exception:  # the message is still right without the note
        return set()


RETURNED_HEADERS = ("returned", "isreturned", "returnstatus", "returnflag", "status", "orderstatus")
"""The flag column of a workbook sheet that lists returned orders (normalized header): Tableau's
Sample Superstore has the sheet `Returns` with the columns `Returned` (`Yes`) and `Order ID`
beside its `Orders` (older releases: `Order ID`, `Status` = `Returned`)."""
RETURNED_YES = frozenset({"yes", "y", "true", "1", "x", "returned", "return"})
RETURNED_NO = frozenset({"no", "n", "false", "0", "notreturned", "kept"})
"""A returns list's flag values (normalized like a header): a listed order is returned or not;
any other value refuses the file (guessing would drop or keep revenue on a misreading)."""
TRANSACTION_COLUMNS = frozenset({"order_id", "customer_id", "order_date", "amount", "unit_price", "quantity",
                                 "product_id"})
"""The raw columns that make a sheet a sheet of transactions: one header among their spellings
means the sheet is meant to be read (and refuses the file when it cannot be)."""
_DATE_TEXT = re.compile(
    r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{8}"
    r"|\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s*\d|\d\s*[-/ ]?\s*(jan|feb|mar|apr|may|jun|jul"
    r"|aug|sep|oct|nov|dec)[a-z]*\b", re.IGNORECASE)
_NUMBER_TEXT = re.compile(r"^[^0-9]{0,4}-?[0-9][0-9.,' ]*[^0-9]{0,4}$")


def _column_of(normalized: list[str], column: str, named: Mapping[str, str] | None) -> int | None:
    """The index of the header read as raw column ``column`` (the store's name, a preferred, a
    built-in or a looser spelling, in ``detect_format``'s order), else None."""
    own = normalize_header((named or {}).get(column, "")) or None
    spellings = [own] if own else []
    spellings += list(PREFERRED_ALIASES.get(column, ()))
    spellings += [name for name, target in HEADER_ALIASES.items() if target == column]
    spellings += list(FALLBACK_ALIASES.get(column, ()))
    for spelling in spellings:
        if spelling in normalized:
            return normalized.index(spelling)
    return None


def returns_list(header: list[str], rows: list[tuple[int, list | None, str | None]], where: str,
                 named: Mapping[str, str] | None = None) -> tuple[dict[str, int], int] | None:
    """A sheet that lists returned orders (an order id and a returned flag, no customer, date or
    money): ({order id as written: its sheet row} of the orders flagged returned, rows flagged not
    returned); None for any other sheet. A flag that is neither yes nor no refuses the file."""
    normalized = [normalize_header(name) for name in header]
    order = _column_of(normalized, "order_id", named)
    flag = next((normalized.index(h) for h in RETURNED_HEADERS if h in normalized), None)
    if order is None or flag is None or flag == order:
        return None
    if any(_column_of(normalized, column, named) is not None for column in TRANSACTION_COLUMNS - {"order_id"}):
        return None
    returned: dict[str, int] = {}
    kept = 0
    for number, fields, _ in rows:
        cells = [_cell_text(v) for v in (fields or [])]
        order_id = _order_text(cells[order] if order < len(cells) else None)
        value = normalize_header(cells[flag] or "") if flag < len(cells) else ""
        if order_id is None and not value:
            continue
        if order_id is None:
            raise UnreadableFileError(f"{where}: row {number} flags {header[flag]!r} = {cells[flag]!r} for no order id "
                                      "(a list of returned orders needs the order id on every row)")
        if value in RETURNED_YES:
            returned.setdefault(order_id, number)
        elif value in RETURNED_NO or not value:
            kept += 1
        else:
            raise UnreadableFileError(
                f"{where}: row {number}: {header[flag]!r} = {cells[flag]!r} for order {order_id} is neither yes nor no "
                "(a list of returned orders: write Yes for a returned order, or remove the row)")
    return returned, kept


def _order_text(value: str | None) -> str | None:
    """An order id as the returns list and the orders are matched: trimmed, an integral float's
    `.0` dropped (`536365.0` is `536365`, as staging reads ids)."""
    if value is None or not value.strip():
        return None
    return re.sub(r"^([0-9]+)\.0+$", r"\1", value.strip())


def holds_no_transactions(header: list[str], rows: list[tuple[int, list | None, str | None]],
                          named: Mapping[str, str] | None = None) -> bool:
    """Whether a sheet with an unrecognized header is plainly no sheet of transactions (a lookup
    list such as Superstore's `People`: names and regions): no header among the spellings of an
    order, customer, date, amount, price, quantity or product, and no cell that is or reads as a
    date or a number. A sheet of purchases has dates and amounts, so one under headers the import
    cannot read is never taken for such a list: it refuses the file."""
    normalized = [normalize_header(name) for name in header]
    if any(_column_of(normalized, column, named) is not None for column in TRANSACTION_COLUMNS):
        return False
    for _, fields, _ in rows:
        for value in fields or []:
            if isinstance(value, bool):
                continue
            if isinstance(value, (int, float, datetime, pd.Timestamp)) and not pd.isna(value):
                return False
            text = _cell_text(value)
            if text and (_DATE_TEXT.search(text) or _NUMBER_TEXT.match(text.strip())):
                return False
    return True


def _mark_returned(frame: pd.DataFrame, returns: list[tuple[str, dict[str, int]]]) -> dict:
    """Mark the rows of every order a returns list names (`layout_fields.returned_on_sheet`: staging
    rejects them as returned, data_contracts.md "Files"); what was listed and found, for the report."""
    report = {}
    has_orders = frame["file_format"].isin(["generic", "online_retail"]) & frame["parse_error"].isna()
    order_text = frame["order_id"].where(has_orders).map(_order_text, na_action="ignore")
    for sheet, returned in returns:
        hit = order_text.isin(returned.keys())
        found = set(order_text[hit])
        missing = [o for o in returned if o not in found]
        frame.loc[hit, "layout_fields"] = [
            json.dumps({**(json.loads(v) if isinstance(v, str) else {}), "returned_on_sheet": sheet},
                       ensure_ascii=False)
            for v in frame.loc[hit, "layout_fields"]]
        report[sheet] = {"orders_listed": len(returned), "orders_found": len(found), "rows_marked": int(hit.sum()),
                         "orders_not_in_file": len(missing), "not_in_file_examples": missing[:5]}
    return report


BATCH_ROWS = 100_000
"""CSV rows turned into one frame at a time (``read_export``): an import holds a batch, not its file (a
CSV read whole took about 2 KB of memory per line: 1.8 GB for 786,000 Online Retail lines, 4 GB for
2,000,000)."""


@dataclass
class ExportReading:
    """How a file is read, beside its rows: what the import reports. The counts, the preview and a
    CSV's decimal separator are complete once every batch of ``read_export`` has been taken."""

    title_lines: dict[str, int] = field(default_factory=dict)
    """A report's title lines above the header, skipped, per file or sheet (``find_header``)."""
    sheets_not_imported: dict[str, str] = field(default_factory=dict)
    """A workbook's sheets read as no transactions, with why."""
    returned_orders: dict = field(default_factory=dict)
    """Per returns sheet of a workbook: orders listed, found and marked, not found."""
    columns: dict[str, str] = field(default_factory=dict)
    """Which header each column was read from (the first sheet's)."""
    delimiter: str | None = None
    """How a CSV was split (a workbook has none)."""
    decimal_separator: str | None = None
    """A CSV's, decided on the whole file (``_MoneyTexts``); a workbook's is per row."""
    rows: int = 0
    malformed: int = 0
    file_format: str = "empty"
    rows_per_sheet: dict[str, int] = field(default_factory=dict)
    currencies: dict[str, int] = field(default_factory=dict)
    preview: pd.DataFrame | None = None

    def attrs(self) -> dict:
        """``parse_export``'s ``frame.attrs``."""
        out = {"title_lines": self.title_lines, "sheets_not_imported": self.sheets_not_imported,
               "returned_orders": self.returned_orders, "columns": self.columns}
        if self.delimiter:
            out["delimiter"] = self.delimiter
        return out

    def _count(self, batch: pd.DataFrame) -> pd.DataFrame:
        if len(batch) and not self.rows:
            self.file_format = str(batch["file_format"].iat[0])
        if self.preview is None or len(self.preview) < 5:
            self.preview = pd.concat([p for p in (self.preview, batch.head(5)) if p is not None],
                                     ignore_index=True).head(5)
        self.rows += len(batch)
        self.malformed += int(batch["parse_error"].notna().sum())
        for counts, column in ((self.rows_per_sheet, "sheet_name"), (self.currencies, "currency")):
            for key, n in batch[column].value_counts(sort=False).items():
                counts[key] = counts.get(key, 0) + int(n)
        return batch


def parse_export(path: Path, ingested_at: datetime, currency: str | None = None,
                 content_sha256: str | None = None, named: Mapping[str, str] | None = None,
                 sheets_read: tuple[str, ...] = ()) -> pd.DataFrame:
    """Every data row of the file as one raw.file_transactions frame (``read_export``'s batches
    together), with what ``ExportReading.attrs`` reports in ``frame.attrs``."""
    reading, batches = read_export(path, ingested_at, currency, content_sha256, named, sheets_read)
    frames = list(batches)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if reading.decimal_separator is not None:
        frame["decimal_separator"] = reading.decimal_separator
    frame.attrs.update(reading.attrs())
    return frame


@contextmanager
def spooled_export(batches: Iterable[pd.DataFrame]) -> Iterator[Path]:
    """``read_export``'s batches written to a scratch DuckDB file as they are read, each committed
    on its own; yields the file (removed after, also on an error). Rows appended from pandas inside
    one open transaction stay in memory until it commits (a 2,000,000-line CSV: 2.6 GB), so the
    rows wait here and ``replace_file_rows`` moves them into the store in SQL, in one transaction;
    and the store is not held while a long file is read."""
    columns = ", ".join(f"{c} {_SPOOL_TYPES.get(c, 'varchar')}" for c in RAW_COLUMNS)
    with scratch_dir("file-import") as scratch:
        path = scratch / "rows.duckdb"
        with spool_connection(path) as spool:
            spool.execute(f"create table file_rows ({columns})")
            for batch in batches:
                spool.register("_file_batch", batch)
                spool.execute(f"insert into file_rows select {', '.join(RAW_COLUMNS)} from _file_batch")
                spool.unregister("_file_batch")
        yield path


_SPOOL_TYPES = {"row_number": "bigint", "ingested_at": "timestamp"}


def replace_file_rows(conn, file_name: str, spool: Path, reading: ExportReading) -> None:
    """Replace the file's rows in raw.file_transactions with the spooled ones (``spooled_export``) in
    one transaction: a refused or failed import leaves the table as it was. A CSV's rows get the
    decimal separator its whole file decided (a batch carries the one the rows read before it
    gave)."""
    values = ", ".join(f"{c}::json" if c in ("payload", "layout_fields") else
                       "coalesce($separator, decimal_separator)" if c == "decimal_separator" else c
                       for c in RAW_COLUMNS)
    with attached_read_only(conn, spool, "clv_file_rows"), transaction(conn):
        conn.execute("delete from raw.file_transactions where file_name = $file", {"file": file_name})
        conn.execute(f"insert into raw.file_transactions ({', '.join(RAW_COLUMNS)}) "
                     f"select {values} from clv_file_rows.file_rows", {"separator": reading.decimal_separator})


def read_export(path: Path, ingested_at: datetime, currency: str | None = None,
                content_sha256: str | None = None, named: Mapping[str, str] | None = None,
                sheets_read: tuple[str, ...] = (), batch_rows: int | None = None,
                ) -> tuple[ExportReading, Iterator[pd.DataFrame]]:
    """Every data row of the file as raw.file_transactions rows (nothing dropped here): how it is
    read, and its rows in batches. The layout is found (or the file refused) before this returns; a
    CSV's rows are read ``batch_rows`` (default ``BATCH_ROWS``) at a time as the batches are taken,
    so a file of any length is read in the memory of a batch. A workbook is read whole (its reader
    loads every sheet) and handed out as one batch.

    `currency` is the store's file currency (setting); a currency column wins row by row. Without
    either the file is refused: amounts without a currency cannot be added up honestly. `named`:
    the store's header names (`detect_format`). `sheets_read` (store.toml [files] sheets): the only
    sheets of a workbook that are read, names compared without case (empty: every sheet); the
    others are named in the report, and a workbook with none of them is refused. A refusal found
    in a CSV's rows (several shops, no currency) is raised while its batches are taken.
    """
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnreadableFileError(
            f"{path.name}: unsupported file type '{suffix}' (expected one of {', '.join(SUPPORTED_SUFFIXES)})"
        )
    if suffix in WORKBOOK_SUFFIXES:
        reading, frame = _read_workbook_export(path, ingested_at, currency, content_sha256, named, sheets_read)
        return reading, map(reading._count, [frame])
    reading = ExportReading()
    text = _csv_text(path)
    header, rows, delimiter = _read_csv(path, None, text)
    try:
        found = _header_of(header, rows, path.name, named)
    except UnreadableFileError as error:
        # the delimiter is detected on the file's first lines, a report's title lines included
        # (`Umsatzbericht` above a `;` header whose amounts are `475,60`: `,` won): a header
        # recognized below them with another delimiter is the file's
        for other in (d for d in ",;\t|" + ALIGNED if d != delimiter):
            header, rows, _ = _read_csv(path, other, text)
            try:
                found = _header_of(header, rows, path.name, named)
            except UnreadableFileError:
                continue
            delimiter = other
            break
        else:
            raise error from None
    header, rows, (file_format, mapping, fields), skipped = found
    if skipped:
        reading.title_lines[path.name] = skipped
    reading.columns = _headers_read(header, mapping, fields)
    reading.delimiter = "columns aligned by spaces" if delimiter == ALIGNED else delimiter
    batches = _csv_batches(reading, path.name, header, rows, mapping, file_format, fields, delimiter,
                           ingested_at, currency, content_sha256, batch_rows or BATCH_ROWS)
    return reading, map(reading._count, batches)


def _header_of(header: list[str], rows: Iterator, file_name: str, named: Mapping[str, str] | None):
    """``find_header`` on a streamed CSV: its candidates are the first ``HEADER_SEARCH_ROWS`` rows,
    and the rest of the file follows its body (checked against the header found below the first
    row, as ``find_header`` checks its own rows). Without a recognized header the rows are closed
    and the first row's error raised."""
    head = list(islice(rows, HEADER_SEARCH_ROWS))
    try:
        header, body, detected, skipped = find_header(header, head, file_name, named)
    except UnreadableFileError:
        rows.close()
        raise
    if skipped:
        rest = ((n, f, e if f is None else _width_error(n, f, header)) for n, f, e in rows)
    else:
        rest = rows
    return header, chain(body, rest), detected, skipped


def _csv_batches(reading: ExportReading, file_name: str, header: list[str], rows: Iterator, mapping: dict[str, int],
                 file_format: str, fields: dict[str, int], delimiter: str, ingested_at: datetime,
                 currency: str | None, content_sha256: str | None, batch_rows: int) -> Iterator[pd.DataFrame]:
    texts, shops, batch, handed = _MoneyTexts(), set(), [], False
    read_as = reading.columns.get("source_relation", "source_relation")

    def finished(chunk) -> pd.DataFrame:
        part = _frame_from_rows(header, chunk, file_name, None, mapping, file_format, fields, text=True)
        shops.update(_shops_of(part))
        texts.add(part)
        part["decimal_separator"] = texts.separator(delimiter)
        return _with_currency(part, file_name, currency, not _names_its_currency(header, mapping), ingested_at,
                              content_sha256)

    for row in rows:
        batch.append(row)
        if len(batch) >= batch_rows:
            yield finished(batch)
            batch, handed = [], True
    if batch or not handed:
        yield finished(batch)
    _refuse_several_shops(shops, file_name, read_as)
    reading.decimal_separator = texts.separator(delimiter)


def _names_its_currency(header: list, mapping: Mapping[str, int]) -> bool:
    """A currency column, or a money header that names the currency (``money_header_currency``)."""
    return "currency" in mapping or money_header_currency(header, mapping) is not None


def _with_currency(part: pd.DataFrame, file_name: str, currency: str | None, without_currency_column: bool,
                   ingested_at: datetime, content_sha256: str | None) -> pd.DataFrame:
    """The rows with the store's currency where they have none (refused without one), the import's
    time and the file's hash, in ``RAW_COLUMNS``' order."""
    if currency:
        part["currency"] = part["currency"].where(part["currency"].notna(), currency)
    elif without_currency_column and len(part):
        raise UnreadableFileError(
            f"{file_name}: no currency column and no store currency set; set [store] file_currency in "
            "store.toml (e.g. \"GBP\") or CLV_FILE_CURRENCY, then import the file again"
        )
    part["ingested_at"] = ingested_at
    part["content_sha256"] = content_sha256
    return part[RAW_COLUMNS].reset_index(drop=True)


def _read_workbook_export(path: Path, ingested_at: datetime, currency: str | None, content_sha256: str | None,
                          named: Mapping[str, str] | None, sheets_read: tuple[str, ...],
                          ) -> tuple[ExportReading, pd.DataFrame]:
    reading = ExportReading()
    parts = []
    without_currency_column = False
    title_lines = reading.title_lines
    not_imported = reading.sheets_not_imported
    returns: list[tuple[str, dict[str, int]]] = []  # a workbook's lists of returned orders: (sheet, orders)
    read_as: dict[str, str] = {}
    sheets = _read_workbook(path)
    if sheets_read:
        wanted = {name.casefold() for name in sheets_read}
        if not any(name.casefold() in wanted for name, _, _ in sheets):
            raise UnreadableFileError(
                f"{path.name}: none of the sheets store.toml [files] sheets names ({list(sheets_read)}) is in the "
                f"workbook (its sheets: {[name for name, _, _ in sheets]})")
        for name, _, _ in sheets:
            if name.casefold() not in wanted:
                not_imported[name] = "not among the sheets store.toml [files] sheets names"
        sheets = [sheet for sheet in sheets if sheet[0].casefold() in wanted]
    formats = set()
    for sheet, header, rows in sheets:
        if not header:
            continue
        where = f"{path.name}, sheet '{sheet}'"
        try:
            header, rows, (file_format, mapping, fields), skipped = find_header(
                header, rows, where, named, width_checked=False)
        except UnreadableFileError as exc:
            listed = returns_list(header, rows, where, named)
            if listed is not None:
                returns.append((sheet, listed[0]))
                not_imported[sheet] = (f"a list of returned orders: {len(listed[0])} returned, {listed[1]} not "
                                       "(their orders' rows are rejected as returned)")
                continue
            if holds_no_transactions(header, rows, named):
                not_imported[sheet] = (f"no transactions: no order, customer, date or money column "
                                       f"({[str(h) for h in header]}) and no date or number in its rows")
                continue
            hidden = _hidden_sheets(path)
            names = [f"{s} (hidden)" if s in hidden else s for s, _, _ in sheets]
            raise UnreadableFileError(
                f"{exc} (the workbook has sheets {names}; every sheet is imported, hidden ones too, so each "
                "must have a recognized header, be empty, list returned orders (an order id and a Returned "
                "column) or hold no dates and numbers at all (a lookup list); or name the sheets to read in "
                "store.toml [files] sheets"
                + ("; unhide a hidden sheet in Excel (right-click a sheet tab, Unhide) to see it" if hidden else "")
                + ")"
            ) from None
        if skipped:
            title_lines[f"sheet '{sheet}'"] = skipped
        formats.add(file_format)
        without_currency_column |= not _names_its_currency(header, mapping)
        _refuse_unsaved_formulas(path, sheet, header, rows, mapping)
        read_as = read_as or _headers_read(header, mapping, fields)
        parts.append(_frame_from_rows(header, rows, path.name, sheet, mapping, file_format, fields))
    if not parts and not_imported:
        raise UnreadableFileError(f"{path.name}: no sheet read holds transactions ({not_imported})")
    if not parts:
        raise UnreadableFileError(f"{path.name}: every sheet is empty ({[s for s, _, _ in sheets]})")
    if len(formats) > 1:
        raise UnreadableFileError(f"{path.name}: sheets have different layouts ({sorted(formats)})")
    frame = pd.concat(parts, ignore_index=True)
    _refuse_several_shops(_shops_of(frame), path.name, read_as.get("source_relation", "source_relation"))
    # a number cell is a number; numbers stored as text (typed after an apostrophe, pasted or
    # imported as text) are written as the person wrote them: `1.234,56` in a German workbook,
    # where `1.234` is 1234, not 1.234. Their separator is decided on the workbook's text cells.
    text = frame["money_as_text"]
    frame["decimal_separator"] = "."
    frame.loc[text, "decimal_separator"] = decimal_separator(frame[text], None)
    frame = _with_currency(frame, path.name, currency, without_currency_column, ingested_at, content_sha256)
    reading.returned_orders = _mark_returned(frame, returns) if returns else {}
    reading.columns = read_as
    return reading, frame


def _shops_of(frame: pd.DataFrame) -> set[str]:
    """The shops a Shopify orders table's rows name (dbt_shopify's `source_relation`, Airbyte's `shop_url`)."""
    if not len(frame):
        return set()
    table = (frame["file_format"].eq("shopify_table") & frame["layout_fields"].notna()
             & frame["layout_fields"].str.contains('"source_relation"', regex=False, na=False))
    if not table.any():  # no such column: nothing to parse row by row
        return set()
    return {value.strip() for value in frame.loc[table, "layout_fields"].map(
        lambda text: json.loads(text).get("source_relation")).dropna() if value.strip()}


def _refuse_several_shops(shops: set[str], file_name: str, header: str) -> None:
    """A Shopify orders table that unions several shops (dbt_shopify's `source_relation`, Airbyte's
    `shop_url`: ``header``) is refused: one database holds one store, and an order id is unique only
    within its shop."""
    if len(shops) > 1:
        shops = sorted(shops)
        raise UnreadableFileError(
            f"{file_name}: the table holds the orders of {len(shops)} shops ({header} {shops[:5]}); a database "
            "holds one store: export one shop's orders per store")


def _headers_read(header: list, mapping: dict[str, int], fields: dict[str, int]) -> dict[str, str]:
    """Which header each column was read from (`{"amount": "Sales", ...}`): with the looser spellings
    (``FALLBACK_ALIASES``) and the store's own names, what the import took for the money, the customer
    and the date must be visible where the import is reported, not only in this module."""
    return {column: str(header[index]) for column, index in sorted({**mapping, **fields}.items())}
