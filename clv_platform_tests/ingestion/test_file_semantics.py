"""Exports read as the retailer meant them: header variants, encodings and delimiters, float ids,
credit notes, non-product lines, sheets, time-zone offsets, overflow values, re-sends and withdrawal."""

import textwrap
from types import SimpleNamespace

import duckdb
import pandas as pd
import pytest

from clv_platform.cli import withdraw_file
from clv_platform.ingestion.file_import import UnreadableFileError, detect_delimiter, detect_encoding, parse_export
from clv_platform.transforms.staging import build_staging
from clv_platform_tests.inbox import import_file as _import


@pytest.fixture(autouse=True)
def _store_currency(monkeypatch):
    monkeypatch.setenv("CLV_FILE_CURRENCY", "GBP")


def _failure(result) -> str:
    event = next(e for e in result.all_events if e.is_step_failure)
    data = event.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message


def _stage(db, store_timezone: str = "UTC"):
    with duckdb.connect(str(db)) as conn:
        result = build_staging(conn, store_timezone=store_timezone)
        rejected = dict(conn.execute(
            "select record_id, reason from staging.rejected_rows where source_table = 'raw.file_transactions'"
        ).fetchall())
        orders = {o: float(n) for o, n in conn.execute("select order_id, net_revenue from staging.orders").fetchall()}
    return result, rejected, orders


def _metadata(result) -> dict:
    """The metadata of the import's `raw/file_transactions` materialization."""
    return result.asset_materializations_for_node("raw__file_transactions")[0].metadata


def _by_order(db, column: str = "created_at") -> dict[str, str]:
    """`column` of every staging order as text, keyed by the file's own order id (`import:` dropped)."""
    with duckdb.connect(str(db)) as conn:
        rows = conn.execute(f"select order_id, {column} from staging.orders").fetchall()
    return {o.split(":")[1]: str(v) for o, v in rows}


ORIGINAL = """\
    InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
    536365,85123A,"WHITE HANGING HEART T-LIGHT HOLDER, LARGE",6,12/1/2010 8:26,2.55,17850.0,United Kingdom
    536365,POST,POSTAGE,1,12/1/2010 8:26,18,17850.0,United Kingdom
    536366,22633,HAND WARMER UNION JACK,6,12/1/2010 8:28,1.85,17851.0,France
    C536367,22633,HAND WARMER UNION JACK,-6,12/1/2010 9:00,1.85,17851.0,France
    536368,22634,PLACEHOLDER,1,12/2/2010 9:00,0,17850.0,United Kingdom
    A563185,B,Adjust bad debt,1,8/12/2011 14:50,-11062.06,,United Kingdom
    C536369,22999,NEVER BOUGHT HERE,-2,12/3/2010 9:00,4.00,17852.0,Germany
    C536370,21000,OTHER PRODUCT,-1,12/3/2010 10:00,3.00,17850.0,United Kingdom
    """


def test_original_uci_header_float_ids_credit_notes_and_non_product_lines(data_env):
    result, db = _import(data_env, "online_retail.csv", ORIGINAL)
    assert result.success
    # a second file with integer ids and the Online Retail II header: the same customers
    second = """\
        invoice , stock code,DESCRIPTION,qty,Invoice Date,price,Customer ID,country
        536400,85123A,WHITE HANGING HEART T-LIGHT HOLDER,2,2010-12-05 10:00:00,2.55,17850,United Kingdom
        """
    assert _import(data_env, "ii.csv", second)[0].success
    staged, rejected, orders = _stage(db)
    assert rejected == {
        "online_retail.csv#6": "zero price (no revenue: a free or placeholder line)",
        "online_retail.csv#7": "bad-debt adjustment (A invoice): not a customer transaction",
    }
    with duckdb.connect(str(db)) as conn:
        customers = dict(conn.execute("select customer_id, country from staging.customers").fetchall())
        lines = conn.execute(
            "select order_id, sku, product_id, category, line_revenue::double from staging.order_lines order by all"
        ).fetchall()
        returns = conn.execute(
            "select return_id, matched_order_id, matched_by, amount::double from staging.returns order by 1"
        ).fetchall()
        currencies = conn.execute("select distinct presentment_currency, shop_currency from staging.orders").fetchall()
    assert set(customers) == {"import:17850", "import:17851", "import:17852"}  # 17850.0 == 17850
    assert customers["import:17851"] == "France" and customers["import:17852"] == "Germany"
    assert currencies == [("GBP", "GBP")] and staged.shop_currency == "GBP"
    # postage is revenue of its order but not a product
    assert ("import:536365", "POST", None, "postage", 18.0) in lines
    assert orders["import:536365"] == pytest.approx(6 * 2.55 + 18 - 3.00)  # C536370: same customer, other product
    assert orders["import:536366"] == 0.0  # cancelled in full by C536367
    assert returns == [
        ("import:C536367", "import:536366", "customer and stock code", pytest.approx(11.10)),
        ("import:C536369", None, "none", pytest.approx(8.00)),  # booked on its own date
        ("import:C536370", "import:536365", "customer", pytest.approx(3.00)),
    ]
    rec = {r.source_table: r for r in staged.reconciliation}["raw.file_transactions"]
    assert (rec.rows_in, rec.accepted, rec.rejected) == (9, 7, 2)


def test_a_file_of_returns_only_is_accounted_for(data_env):
    text = """\
        Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country
        C1,22633,HAND WARMER,-6,2010-12-01 09:00:00,1.85,17851,France
        C2,22634,MUG,-1,2010-12-02 09:00:00,3.00,17852,France
        """
    assert _import(data_env, "returns.csv", text)[0].success
    staged, rejected, orders = _stage(data_env / "clv.duckdb")
    assert rejected == {} and orders == {}
    assert staged.row_counts["returns"] == 2 and staged.row_counts["refunds"] == 0


def test_refund_rate_counts_credit_notes_as_of_their_date(data_env):
    from clv_platform.transforms.features import materialize_features

    text = """\
        Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country
        1,A,X,10,2010-01-01 09:00:00,10.00,1,UK
        2,A,X,10,2010-03-01 09:00:00,10.00,1,UK
        C3,A,X,-5,2010-03-20 09:00:00,10.00,1,UK
        4,B,Y,1,2010-04-01 09:00:00,10.00,2,UK
        """
    assert _import(data_env, "f.csv", text)[0].success
    db = data_env / "clv.duckdb"
    _stage(db)
    with duckdb.connect(str(db)) as conn:
        for cutoff, expected in (("2010-03-10", 0.0), ("2010-04-01", 50 / 200)):
            materialize_features(conn, pd.Timestamp(cutoff).date())
            row = conn.execute(
                "select refund_rate, total_net_spend from features.customer_features where customer_id = 'import:1'"
            ).fetchone()
            assert row[0] == pytest.approx(expected)
            assert row[1] == pytest.approx(200 - 200 * expected)


def test_semicolon_cp1252_and_utf16_exports_are_read(data_env):
    semicolon = (
        "Invoice;StockCode;Description;Quantity;InvoiceDate;Price;Customer ID;Country\r\n"
        "10;A1;CAFÉ CRÈME;2;05.03.2024 10:00;1.234,50;7;Österreich\r\n"
        "11;A2;TASSE;1;06.03.2024 10:00;6,95;8;Deutschland\r\n"
    )
    assert _import(data_env, "eu.csv", semicolon.encode("cp1252"))[0].success
    text16 = "customer_id\torder_id\torder_date\tamount\r\nc1\to1\t2024-03-01\t10.50\r\nc2\to2\t2024-03-02\t20.00\r\n"
    assert _import(data_env, "u16.csv", text16.encode("utf-16"))[0].success  # with BOM, tab-separated
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert rejected == {}
    assert orders == {"import:10": pytest.approx(2469.0), "import:11": pytest.approx(6.95),
                      "import:o1": pytest.approx(10.5), "import:o2": pytest.approx(20.0)}
    with duckdb.connect(str(data_env / "clv.duckdb")) as conn:
        assert conn.execute("select title from staging.order_lines where order_id = 'import:10'").fetchone()[0] == \
            "CAFÉ CRÈME"
    assert detect_encoding("é".encode("utf-16-le") * 10) == "utf-16-le"
    assert detect_delimiter("a|b|c\n1|2|3\n") == "|"


def test_malformed_line_is_rejected_with_its_line_number(data_env):
    text = (
        "customer_id,order_id,order_date,amount\n"
        "c1,o1,2024-03-01,10.00\n"
        "c2,o2,2024-03-02,20.00,surplus\n"
        'c3,o3,2024-03-03,"5.00\n'
    )
    result, db = _import(data_env, "bad.csv", text)
    assert result.success
    _, rejected, orders = _stage(db)
    assert rejected["bad.csv#3"] == "malformed line 3: 5 fields, the header has 4"
    assert any(k.startswith("bad.csv#") and "malformed line" in v for k, v in rejected.items() if k != "bad.csv#3")
    assert orders == {"import:o1": pytest.approx(10.0)}


def test_offsets_are_converted_to_the_store_time_zone(data_env):
    text = """\
        customer_id,order_id,order_date,amount
        c1,late,2024-03-05T23:30:00-05:00,10.00
        c1,early,2024-03-06T01:30:00+05:00,10.00
        c1,zulu,2024-03-06T12:00:00Z,10.00
        c1,naive,2024-03-06 12:00:00,10.00
        """
    assert _import(data_env, "tz.csv", text)[0].success
    db = data_env / "clv.duckdb"
    for tz, expected in (
        ("UTC", {"late": "2024-03-06 04:30:00", "early": "2024-03-05 20:30:00", "zulu": "2024-03-06 12:00:00"}),
        ("America/New_York", {"late": "2024-03-05 23:30:00", "early": "2024-03-05 15:30:00",
                              "zulu": "2024-03-06 07:00:00"}),
    ):
        _stage(db, tz)
        got = _by_order(db)
        assert got == {**expected, "naive": "2024-03-06 12:00:00"}


def test_offsets_written_after_a_space_are_read_and_converted(data_env):
    """`2023-12-31 22:30:00 -0800`, the offset after a space (Shopify's and Ruby's timestamps, reused
    by many apps' exports): every such row was rejected as an unparseable order date. It is read like
    `…22:30:00-08:00`: converted to the store's time zone, so a store west of UTC keeps its own day."""
    text = """\
        customer_id,order_id,order_date,amount
        c1,late,2023-12-31 22:30:00 -0800,10.00
        c1,short,2023-12-31 22:30 -08:00,11.00
        c2,east,2024-01-01 03:00:00 +0530,12.00
        """
    assert _import(data_env, "tz.csv", text)[0].success
    db = data_env / "clv.duckdb"
    for tz, expected in (
        ("UTC", {"late": "2024-01-01 06:30:00", "short": "2024-01-01 06:30:00", "east": "2023-12-31 21:30:00"}),
        ("America/Los_Angeles", {"late": "2023-12-31 22:30:00", "short": "2023-12-31 22:30:00",
                                 "east": "2023-12-31 13:30:00"}),
    ):
        _, rejected, _ = _stage(db, tz)
        assert rejected == {}
        got = _by_order(db)
        days = {d for o, d in _by_order(db, "order_date").items() if o != "east"}
        assert got == expected
        assert days == {"2024-01-01" if tz == "UTC" else "2023-12-31"}


def test_times_under_a_utc_header_are_converted_to_the_store_time_zone(data_env):
    """Stripe's payments export writes `Created (UTC)` as `2024-01-01 06:30:00`: times in UTC without an
    offset. They were taken as the store's own wall clock, so in a store west of UTC an evening
    payment fell on the next day. The header says UTC: they are converted like an offset `Z`."""
    (data_env / "store.toml").write_text('[files.columns]\norder_id = "id"\norder_date = "Created (UTC)"\n')
    text = """\
        id,Created (UTC),Amount,Currency,Status,Customer ID
        ch_1,2024-01-01 06:30:00,10.00,usd,Paid,cus_A
        ch_2,2024-01-01 12:00,11.00,usd,Paid,cus_A
        ch_3,2024-01-01T20:00:00-08:00,12.00,usd,Paid,cus_B
        """
    result, db = _import(data_env, "unified_payments.csv", text)
    assert result.success
    with duckdb.connect(str(db)) as conn:
        zones = {z for (z,) in conn.execute("select layout_fields ->> 'order_date_zone' "
                                            "from raw.file_transactions").fetchall()}
    assert zones == {"UTC"}
    for tz, expected in (
        ("UTC", {"ch_1": "2024-01-01 06:30:00", "ch_2": "2024-01-01 12:00:00", "ch_3": "2024-01-02 04:00:00"}),
        ("America/Los_Angeles", {"ch_1": "2023-12-31 22:30:00", "ch_2": "2024-01-01 04:00:00",
                                 "ch_3": "2024-01-01 20:00:00"}),
    ):
        _, rejected, _ = _stage(db, tz)
        assert rejected == {}
        got = _by_order(db)
        assert got == expected


def test_overflow_values_are_rejected_rows_and_staging_succeeds(data_env):
    line_level = """\
        Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country
        1,A,HUGE,2147483647,2010-12-01 09:00:00,99999999.99,1,UK
        2,A,TOO MANY,99999999999,2010-12-01 09:00:00,1.00,1,UK
        3,A,FINE,1,2010-12-01 09:00:00,1.00,1,UK
        4,A,BIG PRICE,1,2010-12-01 09:00:00,99999999999999999999999,1,UK
        """
    order_level = """\
        customer_id,order_id,order_date,amount
        c1,o1,2024-03-01,9999999999999999.99
        c2,o2,2024-03-01,9000000000000000
        c2,o2,2024-03-01,9000000000000000
        c3,o3,2024-03-01,600000000000
        c3,o3,2024-03-01,600000000001
        c4,o4,2024-03-01,12.00
        """
    assert _import(data_env, "lines.csv", line_level)[0].success
    assert _import(data_env, "orders.csv", order_level)[0].success
    staged, rejected, orders = _stage(data_env / "clv.duckdb")
    assert rejected == {
        "lines.csv#2": "amount out of range: 214748364678525163.53",
        "lines.csv#3": "quantity out of range: 99999999999",
        "lines.csv#5": "price out of range: 99999999999999999999999",
        "orders.csv#2": "amount out of range: 9999999999999999.99",
        "orders.csv#3": "amount out of range: 9000000000000000",
        "orders.csv#4": "amount out of range: 9000000000000000",
        "orders.csv#5": "order total out of range: 1200000000001.00",
        "orders.csv#6": "order total out of range: 1200000000001.00",
    }
    assert orders == {"import:3": pytest.approx(1.0), "import:o4": pytest.approx(12.0)}
    assert all(r.balanced for r in staged.reconciliation)


def test_a_later_invalid_resend_does_not_replace_loaded_orders(data_env):
    first = "customer_id,order_id,order_date,amount\nc1,o1,2024-03-01,10.00\nc2,o2,2024-03-02,20.00\n"
    assert _import(data_env, "a.csv", first)[0].success
    later = "customer_id,order_id,order_date,amount\nc1,o1,2024-03-01,N/A\nc2,o2,2024-03-02,25.00\n"
    assert _import(data_env, "b.csv", later)[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert orders == {"import:o1": pytest.approx(10.0), "import:o2": pytest.approx(25.0)}
    assert rejected == {"b.csv#2": "unparseable amount: N/A", "a.csv#3": "order re-imported from a later file"}


def test_every_sheet_of_a_workbook_is_read(data_env):
    path = data_env / "inbox" / "book.xlsx"
    sheet = lambda ids: pd.DataFrame({"Invoice": ids, "StockCode": "A", "Description": "X", "Quantity": 1,  # noqa: E731
                                      "InvoiceDate": pd.Timestamp("2010-12-01 09:00"), "Price": 2.5,
                                      "Customer ID": 17850.0, "Country": "UK"})
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        sheet([1, 2, 3]).to_excel(writer, sheet_name="Year 2009-2010", index=False)
        pd.DataFrame().to_excel(writer, sheet_name="Notes", index=False)
        sheet([4, 5]).rename(columns={"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}) \
            .to_excel(writer, sheet_name="Year 2010-2011", index=False)
    result, db = _import(data_env, "book.xlsx")
    assert result.success
    meta = _metadata(result)
    assert meta["rows_per_sheet"].value == {"Year 2009-2010": 3, "Year 2010-2011": 2}
    _, rejected, orders = _stage(db)
    assert rejected == {} and len(orders) == 5
    with duckdb.connect(str(db)) as conn:
        assert conn.execute("select distinct customer_id from staging.orders").fetchall() == [("import:17850",)]

    # a sheet of purchases under headers the import cannot read (dates and amounts in its rows) refuses
    # the file: never passed over as a lookup list
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        sheet([1]).to_excel(writer, sheet_name="Sales", index=False)
        pd.DataFrame({"Kunde": ["k1"], "Datum": [pd.Timestamp("2011-01-05")], "Betrag": [12.5]}).to_excel(
            writer, sheet_name="Pivot", index=False)
    result, _ = _import(data_env, "book.xlsx")
    assert not result.success
    message = _failure(result)
    assert "sheet 'Pivot'" in message and "['Sales', 'Pivot']" in message
    # ... and so does one whose dates and amounts are text
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        sheet([1]).to_excel(writer, sheet_name="Sales", index=False)
        pd.DataFrame({"Kunde": ["k1"], "Datum": ["5 Jan 2011"], "Betrag": ["n/a"]}).to_excel(
            writer, sheet_name="Pivot", index=False)
    result, _ = _import(data_env, "book.xlsx")
    assert not result.success and "sheet 'Pivot'" in _failure(result)


def test_the_store_names_the_sheets_of_a_workbook_to_read(data_env):
    """A workbook whose pivot sheet holds dates and totals is refused (rightly: it cannot be told from
    purchases under headers the import does not know), and the merchant had to delete the sheet:
    store.toml [files] sheets names the sheets to read instead; the others are named in the report,
    and a workbook with none of the named sheets is refused naming its sheets."""
    from clv_platform.settings import SettingsError, _file_sheets

    path = data_env / "inbox" / "book.xlsx"
    orders = pd.DataFrame({"Customer": ["c1", "c1", "c2"], "Order ID": ["o1", "o2", "o3"],
                           "Order Date": pd.to_datetime(["2024-01-03", "2024-02-01", "2024-02-05"]),
                           "Total": [10.0, 20.0, 7.5]})
    pivot = pd.DataFrame({"Month": pd.to_datetime(["2024-01-01", "2024-02-01"]), "Sum of Total": [10.0, 27.5]})
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        orders.to_excel(writer, sheet_name="Data", index=False)
        pivot.to_excel(writer, sheet_name="Pivot", index=False)
    result, _ = _import(data_env, "book.xlsx")
    assert not result.success and "name the sheets to read in store.toml [files] sheets" in _failure(result)

    (data_env / "store.toml").write_text('[files]\nsheets = ["data"]\n')
    result, db = _import(data_env, "book.xlsx")
    assert result.success
    meta = _metadata(result)
    assert meta["rows_per_sheet"].value == {"Data": 3} and meta["named_sheets"].value == ["data"]
    assert meta["sheets_not_imported"].value == {"Pivot": "not among the sheets store.toml [files] sheets names"}
    _, rejected, orders_read = _stage(db)
    assert rejected == {} and orders_read == {"import:o1": 10.0, "import:o2": 20.0, "import:o3": 7.5}

    (data_env / "store.toml").write_text('[files]\nsheets = ["Transactions"]\n')
    result, _ = _import(data_env, "book.xlsx")
    assert not result.success
    assert _failure(result) == ("book.xlsx: none of the sheets store.toml [files] sheets names (['Transactions']) is "
                                "in the workbook (its sheets: ['Data', 'Pivot'])")
    assert _file_sheets([" Data ", "Returns"]) == ("Data", "Returns")
    from clv_platform.settings import _file_date_order

    assert _file_date_order(" Day-First ") == "day-first"
    with pytest.raises(SettingsError, match=r"store.toml \[files\] date_order = 'dmy' is not one of auto"):
        _file_date_order("dmy")
    for bad in ("Data", [""], ["Data", "data"]):
        with pytest.raises(SettingsError, match=r"store.toml \[files\] sheets"):
            _file_sheets(bad)


def _superstore(path, returned_flags: dict[str, str]):
    """Tableau's Sample Superstore workbook as it ships: sheets Orders (one row per line, money in
    `Sales`), Returns (`Returned`, `Order ID`) and People (`Regional Manager`, `Region`)."""
    line = lambda order, customer, day, product, sales: {  # noqa: E731
        "Row ID": 0, "Order ID": order, "Order Date": pd.Timestamp(day), "Ship Date": pd.Timestamp(day),
        "Ship Mode": "Second Class", "Customer ID": customer, "Customer Name": "Claire Gute", "Segment": "Consumer",
        "Country/Region": "United States", "City": "Henderson", "State": "Kentucky", "Postal Code": 42420,
        "Region": "South", "Product ID": product, "Category": "Furniture", "Sub-Category": "Bookcases",
        "Product Name": "Bush Somerset Collection Bookcase", "Sales": sales, "Quantity": 2, "Discount": 0.0,
        "Profit": 41.91}
    orders = pd.DataFrame([
        line("CA-2016-152156", "CG-12520", "2016-11-08", "FUR-BO-10001798", 261.96),
        line("CA-2016-152156", "CG-12520", "2016-11-08", "FUR-CH-10000454", 731.94),
        line("CA-2016-138688", "DV-13045", "2016-06-12", "OFF-LA-10000240", 14.62),
        line("US-2015-108966", "SO-20335", "2015-10-11", "FUR-TA-10000577", 957.5775),
        line("CA-2017-114412", "CG-12520", "2017-04-15", "OFF-PA-10002365", 15.552),
    ])
    orders["Row ID"] = range(1, len(orders) + 1)
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        orders.to_excel(writer, sheet_name="Orders", index=False)
        pd.DataFrame({"Returned": list(returned_flags.values()), "Order ID": list(returned_flags.keys())}).to_excel(
            writer, sheet_name="Returns", index=False)
        pd.DataFrame({"Regional Manager": ["Anna Andreadi", "Chuck Magee", "Kelly Williams", "Cassandra Brandow"],
                      "Region": ["West", "East", "Central", "South"]}).to_excel(writer, sheet_name="People", index=False)


def test_superstore_workbook_reads_as_it_ships_with_its_returns_and_people_sheets(data_env):
    """Tableau's Sample Superstore has the sheets Orders, Returns and People: the import refused it
    ("sheet 'Returns': unrecognized columns ['Returned', 'Order ID']"), so the README's "Sample
    Superstore reads as it is" held for its CSV only. The Returns sheet's orders are returned (their
    rows rejected as such, as a refunded status is); People (names and regions) is no transactions
    and is named in the import's report; a listed order the file does not hold is reported."""
    path = data_env / "inbox" / "Sample - Superstore.xlsx"
    _superstore(path, {"CA-2016-152156": "Yes", "US-2015-108966": "No", "CA-2013-999999": "Yes"})
    result, db = _import(data_env, path.name)
    assert result.success
    meta = _metadata(result)
    assert meta["rows_per_sheet"].value == {"Orders": 5}
    assert set(meta["sheets_not_imported"].value) == {"Returns", "People"}
    assert meta["returned_orders"].value == {"Returns": {
        "orders_listed": 2, "orders_found": 1, "rows_marked": 2, "orders_not_in_file": 1,
        "not_in_file_examples": ["CA-2013-999999"]}}
    _, rejected, orders = _stage(db)
    reason = "returned: the workbook's sheet 'Returns' lists the order as returned (not a purchase, as a refunded status)"
    assert rejected == {"Sample - Superstore.xlsx#Orders!2": reason, "Sample - Superstore.xlsx#Orders!3": reason}
    assert orders == {"import:CA-2016-138688": pytest.approx(14.62), "import:US-2015-108966": pytest.approx(957.58),
                      "import:CA-2017-114412": pytest.approx(15.55)}
    with duckdb.connect(str(db)) as conn:
        assert dict(conn.execute("select customer_id, count(*) from staging.orders group by 1").fetchall()) == {
            "import:CG-12520": 1, "import:DV-13045": 1, "import:SO-20335": 1}
        # the edition's `Country/Region` is the country (it was left unread: no customer had one)
        assert dict(conn.execute("select customer_id, country from staging.customers").fetchall()) == {
            "import:CG-12520": "United States", "import:DV-13045": "United States", "import:SO-20335": "United States"}
    assert meta["columns_read_from"].value["country"] == "Country/Region"

    # a flag that is neither yes nor no refuses the file, naming the row: guessing would keep or drop revenue
    _superstore(path, {"CA-2016-152156": "Yes", "US-2015-108966": "Maybe"})
    result, _ = _import(data_env, path.name)
    assert not result.success
    assert ("sheet 'Returns': row 3: 'Returned' = 'Maybe' for order US-2015-108966 is neither yes nor no"
            in _failure(result))


def test_a_workbook_of_only_lists_is_refused(data_env):
    """Without a sheet of transactions, a returns list and a lookup list import nothing: the file is
    refused naming what each sheet was read as (not imported as an empty store)."""
    path = data_env / "inbox" / "lists.xlsx"
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        pd.DataFrame({"Order ID": ["A-1"], "Returned": ["Yes"]}).to_excel(writer, sheet_name="Returns", index=False)
        pd.DataFrame({"Person": ["Anna"], "Region": ["West"]}).to_excel(writer, sheet_name="People", index=False)
    result, _ = _import(data_env, path.name)
    assert not result.success
    message = _failure(result)
    assert message.startswith("lists.xlsx: no sheet read holds transactions (") and "'Returns'" in message \
        and "'People'" in message


def test_rows_repeated_on_two_sheets_of_a_workbook_count_once(data_env):
    """Online Retail II's two sheets both hold 1-9 Dec 2010 (22,523 identical lines), and a workbook
    edited by hand often has a sheet of all orders beside the monthly ones: the duplicate-row rule
    looked within a sheet only, so such orders counted twice. The copy on the other sheet is a
    duplicate row naming the first, even where one sheet writes the ids as numbers and the other as text."""
    path = data_env / "inbox" / "book.xlsx"
    line = lambda invoice, customer, day: {"Invoice": invoice, "StockCode": "85123A", "Description": "HEART",  # noqa: E731
                                           "Quantity": 6, "InvoiceDate": pd.Timestamp(day), "Price": 2.55,
                                           "Customer ID": customer, "Country": "UK"}
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        pd.DataFrame([line(536300, 17850.0, "2010-11-30 09:00"), line(536365, 17850.0, "2010-12-01 08:26")]) \
            .to_excel(writer, sheet_name="Year 2009-2010", index=False)
        pd.DataFrame([line("536365", "17850", "2010-12-01 08:26"), line(536366, 17851.0, "2010-12-10 09:00")]) \
            .to_excel(writer, sheet_name="Year 2010-2011", index=False)
    assert _import(data_env, "book.xlsx")[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert orders == {"import:536300": pytest.approx(15.30), "import:536365": pytest.approx(15.30),
                      "import:536366": pytest.approx(15.30)}
    assert rejected == {"book.xlsx#Year 2010-2011!2": "duplicate row: the same as sheet 'Year 2009-2010' row 3 "
                                                      "(a workbook's sheets that repeat rows count them once)"}

    # a transactions workbook (no order ids): a sheet's two identical rows are two purchases, and the
    # sheet of all orders repeating them adds none
    sales = pd.DataFrame({"Customer": ["c1", "c1", "c2"], "Date": pd.to_datetime(["2024-01-03"] * 2 + ["2024-02-01"]),
                          "Amount": [10.0, 10.0, 7.5]})
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        sales.iloc[:2].to_excel(writer, sheet_name="Jan", index=False)
        sales.iloc[2:].to_excel(writer, sheet_name="Feb", index=False)
        sales.to_excel(writer, sheet_name="All", index=False)
    assert _import(data_env, "book.xlsx")[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert sorted(orders.values()) == [7.5, 10.0, 10.0]
    assert sorted(rejected) == ["book.xlsx#Feb!2", "book.xlsx#Jan!2", "book.xlsx#Jan!3"]
    assert rejected["book.xlsx#Jan!3"] == ("duplicate row: the same as sheet 'All' row 3 (a workbook's sheets that "
                                           "repeat rows count them once)")


def test_currency_comes_from_a_column_or_the_setting_and_is_never_guessed(data_env, monkeypatch, tmp_path):
    text = "customer_id,order_id,order_date,amount\nc1,o1,2024-03-01,10.00\n"
    monkeypatch.delenv("CLV_FILE_CURRENCY")
    path = tmp_path / "x.csv"
    path.write_text(text)
    with pytest.raises(UnreadableFileError, match="file_currency"):
        parse_export(path, pd.Timestamp("2024-01-01").to_pydatetime())
    with_column = (
        "customer_id,order_id,order_date,amount,currency\n"
        "c1,o1,2024-03-01,10.00,GBP\nc2,o2,2024-03-01,5.00,eur\nc3,o3,2024-03-01,7.00,gbp\n"
    )
    assert _import(data_env, "cur.csv", with_column)[0].success
    with duckdb.connect(str(data_env / "clv.duckdb")) as conn:
        assert conn.execute("select currency from raw.file_transactions order by row_number").fetchall() == [
            ("GBP",), ("eur",), ("gbp",)]  # recorded per row as the file has it
    staged, rejected, orders = _stage(data_env / "clv.duckdb")
    assert staged.shop_currency == "GBP"  # the most frequent currency of the rows
    assert rejected == {"cur.csv#3": "currency EUR differs from the store currency GBP"}
    assert set(orders) == {"import:o1", "import:o3"}


def test_a_money_header_that_names_its_currency_is_the_rows_currency(data_env, monkeypatch):
    """`Order Total (GBP)` is the amount and says the currency: without a currency column or setting
    the file was refused ("unrecognized columns", then "no currency column"); an e-mail column is the
    customer of a file without a customer id. A header's code other than the store's rejects the rows
    as a currency column's would."""
    monkeypatch.delenv("CLV_FILE_CURRENCY")
    text = """\
        Customer Email,Order Date,Order Total (GBP)
        Ana@Example.com,2024-03-01,10.00
        ana@example.com,2024-03-05,5.00
        bo@example.com,2024-03-02,7.00
        """
    result = _import(data_env, "shop.csv", text)[0]
    assert result.success
    assert _metadata(result)["columns_read_from"].value == {
        "amount": "Order Total (GBP)", "customer_id": "Customer Email", "order_date": "Order Date"}
    db = data_env / "clv.duckdb"
    with duckdb.connect(str(db)) as conn:
        assert conn.execute("select distinct currency from raw.file_transactions").fetchall() == [("GBP",)]
    staged, rejected, orders = _stage(db)
    assert staged.shop_currency == "GBP" and rejected == {} and sorted(orders.values()) == [5.0, 7.0, 10.0]
    with duckdb.connect(str(db)) as conn:
        assert conn.execute("select count(distinct customer_id) from staging.orders").fetchone()[0] == 2
    us = "customer_id,order_date,amount_usd\nc9,2024-03-03,4.00\n"
    assert _import(data_env, "us.csv", us)[0].success
    _, rejected, _ = _stage(db)
    assert rejected == {"us.csv#2": "currency USD differs from the store currency GBP"}


@pytest.mark.parametrize("header, read", [
    ("Amount (EUR)", ("amount", "EUR")), ("Order Total [GBP]", ("ordertotal", "GBP")), ("amount_usd", ("amount", "USD")),
    ("Sales USD", ("sales", "USD")), ("Unit Price (eur)", ("unitprice", "EUR")), ("Total (TRY)", ("total", "TRY")),
    ("Total all", None), ("price_top", None), ("Total (try)", None), ("Total Tax", None), ("Created (UTC)", None),
    ("Amount EURO", None), ("amounteur", None),
])
def test_header_currency_reads_an_iso_code_written_apart(header, read):
    from clv_platform.ingestion.file_import import header_currency

    assert header_currency(header) == read


def test_withdrawing_a_file_removes_only_its_rows(data_env):
    assert _import(data_env, "a.csv", "customer_id,order_id,order_date,amount\nc1,o1,2024-03-01,10.00\n")[0].success
    assert _import(data_env, "b.csv", "customer_id,order_id,order_date,amount\nc2,o2,2024-03-01,20.00\n")[0].success
    db = data_env / "clv.duckdb"
    assert withdraw_file(SimpleNamespace(file="a.csv", database=str(db))) == 0
    assert withdraw_file(SimpleNamespace(file="a.csv", database=str(db))) == 1  # nothing left to withdraw
    _, _, orders = _stage(db)
    assert orders == {"import:o2": pytest.approx(20.0)}
    with duckdb.connect(str(db)) as conn:
        assert conn.execute("select file_name, rows from meta.withdrawn_files").fetchall() == [("a.csv", 1)]


def test_credit_note_and_cancellation_days_are_the_shops_in_a_store_west_of_utc(data_env):
    """A file's times are the shop's wall clock: the history and the features keep the day staging
    gives a credit note or a cancellation, not that day read as UTC and moved into the store's zone
    (a credit note at 02:00 in New York would fall on the day before)."""
    from clv_platform.transforms.features import materialize_features

    text = """\
        Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country
        1,A,X,10,2010-03-01 09:00:00,10.00,1,US
        2,A,X,10,2010-03-05 09:00:00,10.00,1,US
        C3,A,X,-5,2010-03-20 02:00:00,10.00,1,US
        """
    assert _import(data_env, "f.csv", text)[0].success
    db = data_env / "clv.duckdb"
    _stage(db, "America/New_York")
    with duckdb.connect(str(db)) as conn:
        refund_day = conn.execute("select refunded_on from staging.refunds").fetchone()[0]
        history = conn.execute(
            "select first_refunded_on, last_refunded_on, refunded_total from staging.order_history "
            "where first_refunded_on is not null").fetchone()
        assert str(refund_day) == "2010-03-20"
        assert [str(history[0]), str(history[1]), history[2]] == ["2010-03-20", "2010-03-20", 50.0]
        # by 03-19 the credit note has not been issued; by its own day it has
        for cutoff, spend in (("2010-03-19", 200.0), ("2010-03-20", 150.0)):
            materialize_features(conn, pd.Timestamp(cutoff).date())
            assert conn.execute("select total_net_spend from features.customer_features").fetchone()[0] == \
                pytest.approx(spend), cutoff


def test_day_first_dates_are_read_day_first_and_contradictions_rejected(data_env):
    """A file's d/m/y order comes from its own dates: 13/08/2023 can only be day-first, so the whole
    file is, and 11/08/2023 is 11 August (it was read as 8 November); 08/14/2023 makes a file
    month-first. A file with both is contradictory: a date that could be either is rejected."""
    day_first = """\
        customer_id,order_id,order_date,amount
        c1,d1,13/08/2023,10.00
        c1,d2,11/08/2023 09:30,10.00
        c2,d3,01/02/2023,10.00
        """
    month_first = """\
        customer_id,order_id,order_date,amount
        c1,m1,08/14/2023,10.00
        c1,m2,08/11/2023,10.00
        """
    both = """\
        customer_id,order_id,order_date,amount
        c3,b1,13/08/2023,10.00
        c3,b2,08/14/2023,10.00
        c3,b3,05/06/2023,10.00
        """
    for name, text in (("day.csv", day_first), ("month.csv", month_first), ("both.csv", both)):
        assert _import(data_env, name, text)[0].success
    db = data_env / "clv.duckdb"
    _, rejected, _ = _stage(db)
    days = _by_order(db, "order_date")
    assert days == {"d1": "2023-08-13", "d2": "2023-08-11", "d3": "2023-02-01",
                    "m1": "2023-08-14", "m2": "2023-08-11",
                    "b1": "2023-08-13", "b2": "2023-08-14"}
    assert rejected == {"both.csv#4": "ambiguous order date: 05/06/2023 (the file writes dates both day-first and month-first)"}


def test_a_file_whose_dates_cannot_tell_takes_the_stores_day_first_habit(data_env):
    """A British store's weekly export of 1 to 7 December has no field above 12: on its own it was read
    month-first, its orders dated 12 January to 12 July (the week vanished into the past, the cutoff
    stayed at November's end). With another file of the store that is day-first only, it is read
    day-first; a store whose files show both habits, or none, keeps the documented month-first."""
    november = """\
        customer_id,order_id,order_date,amount
        c1,n1,28/11/2024,10.00
        c2,n2,30/11/2024,10.00
        """
    week = """\
        customer_id,order_id,order_date,amount
        c1,w1,01/12/2024,10.00
        c2,w2,07/12/2024 18:30,10.00
        """
    assert _import(data_env, "week.csv", week)[0].success
    db = data_env / "clv.duckdb"
    _stage(db)
    assert _by_order(db, "order_date") == {"w1": "2024-01-12", "w2": "2024-07-12"}  # alone: month-first
    # the first file of a store whose habit no file shows yet: store.toml [files] date_order says it
    with duckdb.connect(str(db)) as conn:
        result = build_staging(conn, date_order="day-first")
    assert result.full_reason == "file_date_order changed (auto → day-first)"
    assert _by_order(db, "order_date") == {"w1": "2024-12-01", "w2": "2024-12-07"}
    with duckdb.connect(str(db)) as conn:
        build_staging(conn)
    assert _import(data_env, "november.csv", november)[0].success
    _stage(db)
    assert _by_order(db, "order_date") == {"n1": "2024-11-28", "n2": "2024-11-30", "w1": "2024-12-01",
                                           "w2": "2024-12-07"}
    # a month-first file beside them: the store shows both habits, the undecided week is month-first again
    assert _import(data_env, "us.csv", "customer_id,order_id,order_date,amount\nc3,u1,12/31/2024,10.00\n")[0].success
    _stage(db)
    assert {k: v for k, v in _by_order(db, "order_date").items() if k.startswith("w")} == {"w1": "2024-01-12",
                                                                                          "w2": "2024-07-12"}


def test_an_order_id_on_rows_of_several_customers_is_rejected_not_merged(data_env):
    """An order id reused for another customer used to become one order of the first customer with
    both amounts: the other customer's purchase vanished without a reason."""
    text = """\
        customer_id,order_id,order_date,amount
        001,O1,2023-08-01,10.00
        AbC0,O1,2023-08-02,20.00
        10000,O1,2023-08-03,30.00
        001,O2,2023-08-04,40.00
        """
    result, db = _import(data_env, "reused.csv", text)
    assert result.success
    staged, rejected, orders = _stage(db)
    assert orders == {"import:O2": pytest.approx(40.0)}
    reason = "order id used for several customers in the file (001 to AbC0): whose order it is cannot be told"
    assert rejected == {"reused.csv#2": reason, "reused.csv#3": reason, "reused.csv#4": reason}
    files = next(r for r in staged.reconciliation if r.source_table == "raw.file_transactions")
    assert (files.rows_in, files.accepted, files.rejected) == (4, 1, 3)


def test_unformatted_excel_serial_dates_are_dates(data_env):
    """A workbook date cell without a date format comes back as its serial number: 45173 is
    2023-09-04 (Excel shows it so once formatted as a date), 45173.5 noon of that day. The whole
    sheet was rejected as unparseable dates; a number out of the serial range still is."""
    path = data_env / "inbox" / "serial.xlsx"
    pd.DataFrame({"customer_id": ["c1", "c2", "c3"], "order_id": ["o1", "o2", "o3"],
                  "order_date": [45173, 45173.5, 12], "amount": [10.0, 20.0, 30.0]}).to_excel(path, index=False)
    assert _import(data_env, "serial.xlsx")[0].success
    _, rejected, _ = _stage(data_env / "clv.duckdb")
    got = _by_order(data_env / "clv.duckdb")
    assert got == {"o1": "2023-09-04 00:00:00", "o2": "2023-09-04 12:00:00"}
    assert rejected == {"serial.xlsx#Sheet1!4": "unparseable order date: 12"}


def test_ids_in_scientific_notation_are_kept_when_exact_and_rejected_when_digits_were_lost(data_env):
    """A spreadsheet writes a long numeric id as `1.23457E+11`: the last digits are gone, so two
    customers (or orders) that differ only there would become one. Such rows are rejected with the
    reason; notation that keeps every digit is the same id as the plain one."""
    text = """\
        customer_id,order_id,order_date,amount
        123456789012,9000000001,2023-08-01,10.00
        1.23456789012E+11,9000000002,2023-08-02,20.00
        1.23457E+11,9000000003,2023-08-03,30.00
        123456789999,9.00000E+09,2023-08-04,40.00
        17850.0,1.000000005E+09,2023-08-05,50.00
        """
    result, db = _import(data_env, "sci.csv", text)
    assert result.success
    staged, rejected, orders = _stage(db)
    assert orders == {"import:9000000001": pytest.approx(10.0), "import:9000000002": pytest.approx(20.0),
                      "import:1000000005": pytest.approx(50.0)}
    hint = " (a spreadsheet wrote the id as a number: export the column as text)"
    assert rejected == {"sci.csv#4": "customer id in scientific notation has lost digits: 1.23457E+11" + hint,
                        "sci.csv#5": "order id in scientific notation has lost digits: 9.00000E+09" + hint}
    with duckdb.connect(str(db)) as conn:
        owners = dict(conn.execute("select order_id, customer_id from staging.orders").fetchall())
    # the exact notation is the same customer as the plain id: one customer with two orders
    assert owners["import:9000000001"] == owners["import:9000000002"] == "import:123456789012"
    assert owners["import:1000000005"] == "import:17850"
    files = next(r for r in staged.reconciliation if r.source_table == "raw.file_transactions")
    assert (files.rows_in, files.accepted, files.rejected) == (5, 3, 2)


def test_a_file_without_order_ids_has_one_order_per_row(data_env):
    """CDNOW's and many public logs' shape: customer, date, amount. Each row is an order (two
    identical rows are two purchases: nothing else tells them apart), keyed by what it says and its
    place among the identical rows, so the same rows in a later export are re-sends, not more
    purchases; a row without a customer is rejected as such (not as a missing order id)."""
    text = """\
        CustomerID,Date,Amount
        00001,1997-01-01,11.77
        00001,1997-01-01,5.00
        00001,1997-03-02,20.00
        00002,1997-01-12,29.33
        00002,1997-01-12,29.33
        ,1997-02-01,9.00
        """
    result, db = _import(data_env, "log.csv", text)
    assert result.success
    with duckdb.connect(str(db)) as conn:
        assert conn.execute("select distinct file_format from raw.file_transactions").fetchall() == [("transactions",)]
    staged, rejected, orders = _stage(db)
    assert sorted(orders.values()) == pytest.approx([5.00, 11.77, 20.00, 29.33, 29.33])
    assert all(o.startswith("import:row:") for o in orders)
    assert rejected == {"log.csv#7": "missing customer id"}
    # a later export of an overlapping period: its repeated rows replace, its new row adds
    later = """\
        CustomerID,Date,Amount
        00002,1997-01-12,29.33
        00002,1997-01-12,29.33
        00002,1997-04-05,15.50
        """
    result, db = _import(data_env, "log_later.csv", later)
    assert result.success
    staged, rejected, orders = _stage(db)
    assert sorted(orders.values()) == pytest.approx([5.00, 11.77, 15.50, 20.00, 29.33, 29.33])
    assert rejected == {"log.csv#5": "order re-imported from a later file", "log.csv#6": "order re-imported from a later file",
                        "log.csv#7": "missing customer id"}
    with duckdb.connect(str(db)) as conn:
        per_customer = dict(conn.execute("select customer_id, count(*) from staging.orders group by 1").fetchall())
    assert per_customer == {"import:00001": 3, "import:00002": 3}
    files = next(r for r in staged.reconciliation if r.source_table == "raw.file_transactions")
    assert (files.rows_in, files.accepted, files.rejected) == (9, 6, 3)


WOOCOMMERCE = """\
    Order Number,Order Status,Order Date,Email (Billing),Customer User,Order Total Amount,Customer ID
    1001,completed,2024-03-01 10:15:00,ann@example.com,12,59.90,12
    1002,completed,2024-03-09 18:40:00,bob@example.com,0,20.00,0
    1003,completed,2024-04-02 09:05:00,ANN@example.com ,12,35.50,12
    """


def test_an_export_with_unknown_headers_is_read_once_the_store_names_them(data_env, monkeypatch):
    """A WooCommerce-like export: refused with the setting to use; read once store.toml
    [files.columns] names its headers. A named header wins over the built-in spelling of the same
    column (`Customer ID` here, which is 0 for guests) and is not read as anything else."""
    result, _ = _import(data_env, "woo.csv", WOOCOMMERCE)
    assert not result.success
    assert "name your headers in store.toml [files.columns]" in _failure(result)

    (data_env / "store.toml").write_text('[files.columns]\ncustomer_id = "Email (Billing)"\n'
                                         'order_id = "order number"\namount = "Order Total Amount"\n')
    result, db = _import(data_env, "woo.csv")
    assert result.success
    metadata = _metadata(result)
    assert metadata["format"].value == "generic"
    assert metadata["named_columns"].value == {"amount": "Order Total Amount", "customer_id": "Email (Billing)",
                                               "order_id": "order number"}
    staged, rejected, orders = _stage(db)
    assert rejected == {}
    assert orders == {"import:1001": pytest.approx(59.90), "import:1002": pytest.approx(20.00),
                      "import:1003": pytest.approx(35.50)}
    with duckdb.connect(str(db)) as conn:
        owners = dict(conn.execute("select order_id, customer_id from staging.orders").fetchall())
    # an e-mail as the customer is compared without case: Ann's two orders are one customer's
    assert owners == {"import:1001": "import:ann@example.com", "import:1002": "import:bob@example.com",
                      "import:1003": "import:ann@example.com"}


def test_store_named_headers_are_checked():
    from clv_platform.settings import SettingsError, _file_columns

    assert _file_columns({"amount": " Total paid ", "customer_id": "Email"}) == (
        ("amount", "Total paid"), ("customer_id", "Email"))
    with pytest.raises(SettingsError, match=r"unknown column\(s\) \['email'\]"):
        _file_columns({"email": "Email"})
    with pytest.raises(SettingsError, match="one header is named for two columns"):
        _file_columns({"customer_id": "Email", "order_id": "email"})
    with pytest.raises(SettingsError, match="must name a header"):
        _file_columns({"amount": ""})


def test_dates_with_month_names_and_compact_dates_are_read(data_env):
    text = """\
        customer_id,order_id,order_date,amount
        c1,o1,10-Mar-2024,10.00
        c1,o2,10 March 2024 21:15,11.00
        c2,o3,"Mar 9, 2024",12.00
        c2,o4,20240311,13.00
        c3,o5,2024031,14.00
        c3,o6,31-Foo-2024,15.00
        """
    result, db = _import(data_env, "names.csv", text)
    assert result.success
    staged, rejected, orders = _stage(db)
    with duckdb.connect(str(db)) as conn:
        days = dict(conn.execute("select order_id, order_date::varchar from staging.orders").fetchall())
    assert days == {"import:o1": "2024-03-10", "import:o2": "2024-03-10", "import:o3": "2024-03-09",
                    "import:o4": "2024-03-11"}
    assert rejected == {"names.csv#6": "unparseable order date: 2024031", "names.csv#7": "unparseable order date: 31-Foo-2024"}


def test_dates_written_to_the_month_are_the_months_first_day_in_both_readers(data_env, tmp_path):
    """An accounting export's period or a monthly report dates a row to the month only (`2024-03`,
    `2024/4`, `05/2024`, `Jun 2024`, `July 2024`): each is its month's first day (they were
    rejected as unparseable dates, and a whole such file left the store without orders). The
    backtest's reader gives the same days; a thirteenth month stays unparseable."""
    from clv_platform.models import datasets

    text = """\
        customer_id,order_date,amount
        c1,2024-03,10.00
        c1,2024/4,11.00
        c2,05/2024,12.00
        c2,Jun 2024,13.00
        c3,July 2024,14.00
        c3,2024-13,15.00
        """
    result, db = _import(data_env, "periods.csv", text)
    assert result.success
    _, rejected, _ = _stage(db)
    with duckdb.connect(str(db)) as conn:
        days = conn.execute("select customer_id, order_date::varchar from staging.order_history "
                            "order by order_date").fetchall()
    assert [day for _, day in days] == ["2024-03-01", "2024-04-01", "2024-05-01", "2024-06-01", "2024-07-01"]
    assert rejected == {"periods.csv#7": "unparseable order date: 2024-13"}
    path = tmp_path / "periods.csv"
    path.write_text(textwrap.dedent(text))
    loaded = datasets.load_dataset(str(path))
    assert sorted(loaded.transactions["order_date"].dt.strftime("%Y-%m-%d")) == [day for _, day in days]


def test_two_digit_years_are_read_with_their_century(data_env):
    """Etsy's Sold Orders export writes `Sale Date` as `12/31/23` (and Excel's m/d/yy, German
    `31.12.23`): read with %Y the year was 23, and a cast read `1/5/23` as 0001-05-23, so the orders
    were silently dated in antiquity (and the run then failed in the models). 00-68 are 2000-2068,
    69-99 are 1969-1999, as strptime's %y reads them."""
    us = """\
        customer_id,order_id,order_date,amount
        c1,o1,12/31/23,10.00
        c1,o2,1/5/24 2:15 PM,11.00
        c2,o3,6/30/99,12.00
        """
    assert _import(data_env, "etsy.csv", us)[0].success
    assert _import(data_env, "de.csv", "customer_id;order_id;order_date;amount\nc3;o4;31.12.23;1,50\n".encode())[0].success
    _, rejected, _ = _stage(data_env / "clv.duckdb")
    with duckdb.connect(str(data_env / "clv.duckdb")) as conn:
        created = dict(conn.execute("select order_id, created_at::varchar from staging.orders").fetchall())
    assert rejected == {}
    assert created == {"import:o1": "2023-12-31 00:00:00", "import:o2": "2024-01-05 14:15:00",
                       "import:o3": "1999-06-30 00:00:00", "import:o4": "2023-12-31 00:00:00"}


def test_long_dates_with_weekday_names_and_month_name_dates_with_two_digit_years(data_env):
    """A CSV saved from a sheet writes dates as they are formatted: Excel's long date
    (`Sunday, December 31, 2023`), `Sun 31 Dec 2023`, and its built-in `d-mmm-yy` (`31-Dec-23`).
    The weekday made the first two unparseable, and `31-Dec-23` was the year 23 (rejected as
    before 1900)."""
    text = """\
        customer_id;order_id;order_date;amount
        c1;1;Sunday, December 31, 2023;10.00
        c2;2;Sun 31 Dec 2023;20.00
        c3;3;31-Dec-23;30.00
        c4;4;5 Jan 24 14:30;40.00
        c5;5;Thursday, 4 January 2024;50.00
        """
    assert _import(data_env, "long.csv", text)[0].success
    _, rejected, _ = _stage(data_env / "clv.duckdb")
    assert rejected == {}
    assert _by_order(data_env / "clv.duckdb") == {"1": "2023-12-31 00:00:00", "2": "2023-12-31 00:00:00",
                                                  "3": "2023-12-31 00:00:00", "4": "2024-01-05 14:30:00",
                                                  "5": "2024-01-04 00:00:00"}


def test_more_hand_written_and_regional_date_spellings_are_read(data_env):
    """`Dec 31 2023` (no comma after the day), `20 Dec. 2023` / `Dec. 18, 2023` (an abbreviation's
    dot), `26-December-2023`, the year-first dotted `2023.12.30` (East Asian and Hungarian sheets) and
    RFC 2822's `Sun, 24 Dec 2023 10:00:00 +0000` were rejected as unparseable order dates, and so were
    days typed with an ordinal suffix (`March 10th, 2023`, `1st Jan 2023`). Each has one reading:
    read, the RFC 2822 one converted to the store's time zone by its offset."""
    text = """\
        customer_id,order_id,order_date,amount
        c1,o1,Dec 31 2023,10.00
        c1,o2,2023.12.30,10.00
        c1,o3,"Sun, 24 Dec 2023 10:00:00 +0000",10.00
        c1,o4,26-December-2023,10.00
        c1,o5,20 Dec. 2023,10.00
        c1,o6,"Dec. 18, 2023",10.00
        c1,o7,Dec 17 2023 10:30 PM,10.00
        c1,o8,2023.12.31x,10.00
        c1,o9,"March 10th, 2023",10.00
        c1,o10,1st Jan 2023,10.00
        c1,o11,Dec 2nd 2023,10.00
        c1,o12,23rd December 2023,10.00
        c1,o13,2023-12-3th,10.00
        """
    assert _import(data_env, "spellings.csv", text)[0].success
    _, rejected, _ = _stage(data_env / "clv.duckdb", "America/Los_Angeles")
    assert rejected == {"spellings.csv#9": "unparseable order date: 2023.12.31x",
                        "spellings.csv#14": "unparseable order date: 2023-12-3th"}
    assert _by_order(data_env / "clv.duckdb") == {
        "o1": "2023-12-31 00:00:00", "o2": "2023-12-30 00:00:00", "o3": "2023-12-24 02:00:00",
        "o4": "2023-12-26 00:00:00", "o5": "2023-12-20 00:00:00", "o6": "2023-12-18 00:00:00",
        "o7": "2023-12-17 22:30:00", "o9": "2023-03-10 00:00:00", "o10": "2023-01-01 00:00:00",
        "o11": "2023-12-02 00:00:00", "o12": "2023-12-23 00:00:00"}


def test_times_written_with_utc_or_gmt_are_converted_to_the_store_time_zone(data_env):
    """`2023-12-31 03:00:00 UTC` and RFC 2822's `GMT` name the offset +0000 in words: they were read
    as the store's own wall clock (a cast drops the word), so in a store west of UTC an evening order
    fell on the next day. They are converted like `+0000`."""
    text = """\
        customer_id,order_id,order_date,amount
        c1,utc,2024-01-01 03:00:00 UTC,10.00
        c1,gmt,"Mon, 01 Jan 2024 03:00:00 GMT",11.00
        c1,plain,2024-01-01 03:00:00,12.00
        """
    assert _import(data_env, "words.csv", text)[0].success
    _, rejected, _ = _stage(data_env / "clv.duckdb", "America/Los_Angeles")
    assert rejected == {}
    assert _by_order(data_env / "clv.duckdb") == {"utc": "2023-12-31 19:00:00", "gmt": "2023-12-31 19:00:00",
                                                  "plain": "2024-01-01 03:00:00"}


def test_times_with_a_zone_name_or_an_hour_offset_are_converted_not_read_as_the_stores_clock(data_env):
    """`21:15 PST`, `21:15:00 EST` and `T21:15:00-05` were read as the store's own wall clock (a cast
    to a timestamp drops a zone's name and an hour-only offset), so a Pacific evening order in a New
    York store fell on the wrong day; JavaScript's `GMT-0800 (Pacific Standard Time)` and Apple's
    `… at 9:15 PM` were rejected, and so was a slash date with an offset (`10/03/2024 21:15 GMT+1`),
    now read in the file's own day order (month-first here, day-first in a file that shows it)."""
    text = """\
        customer_id,order_id,order_date,amount
        c1,pst,2024-03-10 21:15 PST,10.00
        c1,est,2024-01-10 21:15:00 EST,11.00
        c1,hour,2024-03-10T21:15:00-05,12.00
        c2,js,Sat Mar 09 2024 21:15:00 GMT-0800 (Pacific Standard Time),13.00
        c2,apple,"March 9, 2024 at 9:15 PM",14.00
        c2,apple24,9 Mar 2024 at 21:15,15.00
        c3,iana,2024-03-10 21:15:00 America/Chicago,16.00
        c3,pm,3/9/2024 9:15 PM,17.00
        c3,slash,10/03/2024 21:15 GMT+1,18.00
        """
    assert _import(data_env, "zones.csv", text)[0].success
    _, rejected, _ = _stage(data_env / "clv.duckdb", "America/New_York")
    assert rejected == {}
    assert _by_order(data_env / "clv.duckdb") == {
        "pst": "2024-03-11 00:15:00", "est": "2024-01-10 21:15:00", "hour": "2024-03-10 22:15:00",
        "js": "2024-03-10 00:15:00", "apple": "2024-03-09 21:15:00", "apple24": "2024-03-09 21:15:00",
        "iana": "2024-03-10 22:15:00", "pm": "2024-03-09 21:15:00", "slash": "2024-10-03 16:15:00"}


def test_a_day_first_files_slash_dates_with_an_offset_are_read_day_first(data_env):
    text = """\
        customer_id,order_id,order_date,amount
        c4,uk,31/12/2023 21:15:00 +0100,19.00
        c4,uk2,05/01/2024 10:00 +00:00,20.00
        """
    assert _import(data_env, "zones_uk.csv", text)[0].success
    _, rejected, _ = _stage(data_env / "clv.duckdb", "America/New_York")
    assert rejected == {}
    assert _by_order(data_env / "clv.duckdb") == {"uk": "2023-12-31 15:15:00", "uk2": "2024-01-05 05:00:00"}


def test_a_comma_before_the_time_iso_basic_format_and_month_names_with_any_clock_are_read(data_env):
    """JavaScript's toLocaleString (`3/9/2024, 9:15:00 PM` in the US, `9.3.2024, 21:15:00` in
    Germany), a month name's date with a comma or a 12-hour clock (`9 Mar 2024, 21:15`,
    `9-Mar-2024 9:15 PM`), a full month name with seconds (`9 March 2024 21:15:00`), ISO 8601's basic
    format (`20240309T211500Z`) and its decimal comma (`21:15:00,250`) were all rejected as
    unparseable dates: a web app's whole export of the first kind could not be imported."""
    text = """\
        customer_id,order_id,order_date,amount
        c1,us,"3/9/2024, 9:15:00 PM",10.00
        c1,us24,"3/9/2024, 21:15:00",11.00
        c1,usshort,"3/9/24, 9:15 PM",12.00
        c1,de,"9.3.2024, 21:15:00",13.00
        c2,isocomma,"2024-03-09, 21:15",14.00
        c2,name,"9 Mar 2024, 21:15",15.00
        c2,name12,9-Mar-2024 9:15 PM,16.00
        c2,full,9 March 2024 21:15:00,17.00
        c3,fullus,"March 9, 2024 21:15:00",18.00
        c3,slash12,2024/03/09 9:15 PM,19.00
        c3,basic,20240309T211500Z,20.00
        c3,basicoffset,20240309T2115-0500,21.00
        c4,basicspace,20240309 211500,22.00
        c4,fraction,"2024-03-09 21:15:00,250",23.00
        c4,rfc,"Sat, 09 Mar 2024 21:15:00 GMT",24.00
        c4,unix,Sat Mar 9 21:15:00 UTC 2024,25.00
        """
    assert _import(data_env, "clocks.csv", text)[0].success
    _, rejected, _ = _stage(data_env / "clv.duckdb", "America/New_York")
    # the Unix `date` command's order (the year after the zone) stays unread, and says so
    assert rejected == {"clocks.csv#17": "unparseable order date: Sat Mar 9 21:15:00 UTC 2024"}
    wall = "2024-03-09 21:15:00"
    assert _by_order(data_env / "clv.duckdb") == {
        "us": wall, "us24": wall, "usshort": wall, "de": wall, "isocomma": wall, "name": wall, "name12": wall,
        "full": wall, "fullus": wall, "slash12": wall, "basicoffset": wall, "basicspace": wall,
        # 21:15 UTC is 16:15 in New York (EST: the clocks change on the 10th)
        "basic": "2024-03-09 16:15:00", "rfc": "2024-03-09 16:15:00", "fraction": "2024-03-09 21:15:00.250000"}


def test_a_day_first_files_dates_with_a_comma_before_the_time_are_read_day_first(data_env):
    """`13/03/2024, 21:15:00` (toLocaleString in a British locale) in a file whose dates are
    day-first."""
    text = """\
        customer_id,order_id,order_date,amount
        c1,gb,"13/03/2024, 21:15:00",10.00
        c1,gb2,"05/04/2024, 09:30:00",11.00
        """
    assert _import(data_env, "clocks_gb.csv", text)[0].success
    _, rejected, _ = _stage(data_env / "clv.duckdb", "Europe/London")
    assert rejected == {}
    assert _by_order(data_env / "clv.duckdb") == {"gb": "2024-03-13 21:15:00", "gb2": "2024-04-05 09:30:00"}


def test_cells_wrapped_as_excel_text_are_read_as_their_text(data_env):
    """`="00123"` is how ERP and bank exports keep an id's leading zeros (or a date or an amount as
    text) for Excel: the id was the customer `="00123"`, apart from `00123` in the store's other file,
    and the wrapped date and amount were unparseable."""
    wrapped = "\n".join(['customer_id,order_id,order_date,amount',
                         '"=""00123""","=""A-1""","=""2024-03-10""","=""20.00"""',
                         '"=""00123""",A-2,2024-03-11,"=""1,250.50"""', ''])
    plain = """\
        customer_id,order_id,order_date,amount
        00123,B-1,2024-03-12,5.00
        """
    assert _import(data_env, "wrapped.csv", wrapped)[0].success
    assert _import(data_env, "plain.csv", plain)[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert rejected == {}
    assert orders == {"import:A-1": 20.0, "import:A-2": 1250.5, "import:B-1": 5.0}
    with duckdb.connect(str(data_env / "clv.duckdb")) as conn:
        assert conn.execute("select distinct customer_id from staging.orders").fetchall() == [("import:00123",)]
        assert str(conn.execute("select order_date from staging.orders where order_id = 'import:A-1'").fetchone()[0]) \
            == "2024-03-10"


def test_unix_times_and_excel_serials_written_as_text_are_dates(data_env):
    """A database's or an API's export writes an instant as a Unix time (`1704078000` seconds,
    `1704078000000` milliseconds); a CSV saved from a sheet whose date column is formatted General
    writes Excel's serial (`45292`, `45292.75`). All were rejected as unparseable dates. A Unix time
    is converted to the store's time zone like a time with an offset (also under a `(UTC)` header: not
    twice); a serial is a wall clock, as a workbook's date cell is. Dunnhumby's day numbers stay refused."""
    (data_env / "store.toml").write_text('[files.columns]\norder_date = "Created (UTC)"\n')
    text = """\
        customer_id,order_id,Created (UTC),amount
        c1,sec,1704078000,10.00
        c1,ms,1704078000000,11.00
        c1,serial,45292,12.00
        c1,evening,45292.75,13.00
        c1,day,711,14.00
        """
    assert _import(data_env, "instants.csv", text)[0].success
    _, rejected, _ = _stage(data_env / "clv.duckdb", "America/Los_Angeles")
    assert rejected == {"instants.csv#6": "unparseable order date: 711"}
    # 1704078000 = 2024-01-01 03:00 UTC = 2023-12-31 19:00 in Los Angeles; serial 45292 = 2024-01-01,
    # read as UTC (the header says so) and converted
    assert _by_order(data_env / "clv.duckdb") == {"sec": "2023-12-31 19:00:00", "ms": "2023-12-31 19:00:00",
                                                  "serial": "2023-12-31 16:00:00", "evening": "2024-01-01 10:00:00"}


def test_order_dates_before_1900_are_rejected_not_purchases_in_antiquity(data_env):
    """A placeholder date (`0001-01-01`, Excel's day 0 `1899-12-30`) or a mis-read one was accepted
    as a purchase day: a year before 1678 then failed the run in the models (a pandas nanosecond
    timestamp cannot hold it), a later one skewed tenure and recency. Such a row is rejected."""
    text = """\
        customer_id,order_id,order_date,amount
        c1,o1,2023-05-01,10.00
        c1,o2,0001-01-01,11.00
        c2,o3,1899-12-30 00:00:00,12.00
        c2,o4,1900-01-01,13.00
        """
    assert _import(data_env, "placeholders.csv", text)[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    tail = " (a placeholder or a mis-read date)"
    assert rejected == {"placeholders.csv#3": "order date before 1900: 0001-01-01" + tail,
                        "placeholders.csv#4": "order date before 1900: 1899-12-30 00:00:00" + tail}
    assert orders == {"import:o1": pytest.approx(10.0), "import:o4": pytest.approx(13.0)}


def test_a_store_whose_rows_were_all_rejected_says_why_it_has_no_orders(data_env):
    """A file of Dunnhumby-style day numbers (`DAY` 1..711, named as the order date) is imported and
    every row rejected; the run then stopped at the features with only 'staging.orders holds no
    orders ... nothing to compute features as of'. The sentence now names the rejected rows and their
    most frequent reasons."""
    from clv_platform.ingestion.store_source import ensure_meta_table, recorded_source
    from clv_platform.transforms.cutoff import cutoff_and_rule

    text = """\
        customer_id,order_id,order_date,amount
        h1,b1,1,10.00
        h1,b2,5,11.00
        h2,b3,12,12.00
        h2,b4,2024-03-01,5 euros
        """
    result, db = _import(data_env, "transaction_data.csv", text)
    assert result.success
    _stage(db)
    with duckdb.connect(str(db)) as conn:
        ensure_meta_table(conn)
        if recorded_source(conn) is None:
            conn.execute("insert into meta.platform (source, created_at) values ('files', now())")
        with pytest.raises(ValueError) as error:
            cutoff_and_rule(conn)
    assert str(error.value) == (
        "staging.orders holds no orders of the 'files' store: there is nothing to compute features as of; the "
        "cleaning rules rejected 4 imported rows (staging.rejected_rows): unparseable order date (3 rows, e.g. "
        "unparseable order date: 1); unparseable amount (1 row, e.g. unparseable amount: 5 euros)")


def test_amounts_with_currency_symbols_and_thousands_separators_are_read(data_env):
    """A spreadsheet's formatted numbers: `$1,234.50` in a decimal-point file, `1 234,50 €` (a
    no-break space between the groups) in a decimal-comma one. `12,5` in a decimal-point file
    is still not a number: it is rejected with the cell as written."""
    us = """\
        customer_id,order_id,order_date,amount
        c1,o1,2024-03-01,"$1,234.50"
        c2,o2,2024-03-02,£12.00
        c3,o3,2024-03-03,"12,5"
        """
    assert _import(data_env, "us.csv", us)[0].success
    eu = "customer_id;order_id;order_date;amount\nc4;o4;2024-03-04;1\u00a0234,50 €\nc5;o5;2024-03-05;6,95\n"
    assert _import(data_env, "eu.csv", eu.encode("utf-8"))[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert orders == {"import:o1": pytest.approx(1234.50), "import:o2": pytest.approx(12.00),
                      "import:o4": pytest.approx(1234.50), "import:o5": pytest.approx(6.95)}
    assert rejected == {"us.csv#4": "unparseable amount: 12,5"}


def test_orders_whose_status_says_they_are_no_purchase_are_rejected_with_it(data_env):
    """An export's order status column: a cancelled, failed, unpaid or fully refunded order is not
    a purchase (it was summed into the customer's spend before); any other status is."""
    text = """\
        customer_id,order_id,order_date,amount,Order Status
        c1,o1,2024-03-01,10.00,completed
        c1,o2,2024-03-02,20.00,Cancelled
        c1,o3,2024-03-03,30.00,wc-pending
        c2,o4,2024-03-04,40.00,Refunded
        c2,o5,2024-03-05,50.00,partially refunded
        c2,o6,2024-03-06,60.00,processing
        c3,o7,2024-03-07,70.00,
        c3,o8,2024-03-08,80.00,failed
        """
    result, db = _import(data_env, "status.csv", text)
    assert result.success
    with duckdb.connect(str(db)) as conn:
        statuses = [r[0] for r in conn.execute("select layout_fields ->> 'status' from raw.file_transactions "
                                               "order by row_number").fetchall()]
    assert statuses == ["completed", "Cancelled", "wc-pending", "Refunded", "partially refunded", "processing", None,
                        "failed"]
    _, rejected, orders = _stage(db)
    assert orders == {"import:o1": pytest.approx(10.0), "import:o5": pytest.approx(50.0),
                      "import:o6": pytest.approx(60.0), "import:o7": pytest.approx(70.0)}
    tail = ": not a purchase (cancelled, failed, unpaid or fully refunded; a later export that shows it completed " \
           "replaces this row)"
    assert rejected == {"status.csv#3": "order status cancelled" + tail, "status.csv#4": "order status wc-pending" + tail,
                        "status.csv#5": "order status refunded" + tail, "status.csv#9": "order status failed" + tail}


def test_totals_and_subtotal_rows_of_a_spreadsheet_are_rejected_as_such(data_env):
    """A sheet edited by hand ends in `Total` / `Grand Total` rows, and Excel's Subtotal command writes
    `<value> Total` rows in the column it groups by. A transactions file's `Total` row with a date
    became a customer `Total` holding the sum again; the others were rejected for a missing order id or
    date, which does not say what they are. A customer so named with an order id is an order."""
    path = data_env / "inbox" / "sales.xlsx"
    pd.DataFrame({
        "Customer": ["c1", "c2", "January Total", "c1", None, "Total", "Grand Total"],
        "Date": pd.to_datetime(["2024-01-05", "2024-01-09", None, "2024-02-05", None, "2024-02-29", None]),
        "Amount": [10.0, 20.0, 30.0, 15.0, 15.0, 45.0, 45.0],
    }).to_excel(path, index=False)
    assert _import(data_env, "sales.xlsx")[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert sorted(orders.values()) == [10.0, 15.0, 20.0]
    assert rejected == {
        "sales.xlsx#Sheet1!4": "totals row (January Total): a sum of other rows, not an order",
        "sales.xlsx#Sheet1!6": "missing customer id",
        "sales.xlsx#Sheet1!7": "totals row (Total): a sum of other rows, not an order",
        "sales.xlsx#Sheet1!8": "totals row (Grand Total): a sum of other rows, not an order",
    }

    orders_csv = """\
        Customer,Order ID,Order Date,Amount
        c1,1,2024-01-05,10.00
        c1,1 Total,,10.00
        Total,2,2024-01-06,20.00
        2024-01-06 Total,,,20.00
        Grand Total,,,30.00
        """
    assert _import(data_env, "orders.csv", orders_csv)[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert {o: n for o, n in orders.items() if not o.startswith("import:row:")} == {"import:1": 10.0, "import:2": 20.0}
    assert {r: reason for r, reason in rejected.items() if r.startswith("orders.csv")} == {
        "orders.csv#3": "totals row (1 Total): a sum of other rows, not an order",
        "orders.csv#5": "totals row (2024-01-06 Total): a sum of other rows, not an order",
        "orders.csv#6": "totals row (Grand Total): a sum of other rows, not an order",
    }


def test_denied_expired_and_reversed_payments_are_no_purchases(data_env):
    """PayPal's activity download marks a payment the merchant refused `Denied` and one a chargeback
    took back `Reversed`; an authorization never captured is `Expired` (Shopify, payment gateways).
    None of them is money received: they were counted as revenue."""
    text = """\
        customer_id,order_id,order_date,amount,Status
        c1,p1,2024-03-01,10.00,Completed
        c1,p2,2024-03-02,20.00,Denied
        c2,p3,2024-03-03,30.00,Reversed
        c2,p4,2024-03-04,40.00,expired
        c2,p5,2024-03-05,50.00,Partially Refunded
        """
    assert _import(data_env, "paypal.csv", text)[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert orders == {"import:p1": pytest.approx(10.0), "import:p5": pytest.approx(50.0)}
    tail = ": not a purchase (cancelled, failed, unpaid or fully refunded; a later export that shows it completed " \
           "replaces this row)"
    assert rejected == {"paypal.csv#3": "order status denied" + tail, "paypal.csv#4": "order status reversed" + tail,
                        "paypal.csv#5": "order status expired" + tail}


def test_common_order_export_headers_are_recognized_without_settings():
    """Order-export and transaction-log spellings: Order Currency, Order Amount, Transaction Date,
    Purchase Date (WooCommerce's Order Total Amount stays unknown: its Customer ID is 0 for guests,
    see the test above)."""
    from clv_platform.ingestion.file_import import detect_format

    layout, mapping, fields = detect_format(
        ["Order Number", "Transaction Date", "Order Status", "Customer ID", "Order Amount", "Order Currency"],
        "woo.csv")
    assert layout == "generic" and fields == {"status": 2}
    assert mapping == {"order_id": 0, "order_date": 1, "customer_id": 3, "amount": 4, "currency": 5}
    layout, mapping, _ = detect_format(["Customer", "Purchase Date", "Order Amount"], "log.csv")
    assert layout == "transactions" and mapping == {"customer_id": 0, "order_date": 1, "amount": 2}


def test_customer_ids_that_say_there_is_none_are_rejected_not_merged_into_one_customer(data_env):
    """Spreadsheets and R write #N/A / NA, pandas nan, shop exports Guest: such rows were one
    customer holding every guest's orders. Numeric ids 0 and -1 stay customers (a 0-based
    numbering; WooCommerce's guest 0 is what the staging check customers_hold_plausible_order_shares
    warns of)."""
    text = """\
        customer_id,order_id,order_date,amount
        17,o1,2024-03-01,10.00
        0,o2,2024-03-02,20.00
        0.0,o3,2024-03-03,30.00
        -1,o4,2024-03-04,40.00
        #N/A,o5,2024-03-05,50.00
        nan,o6,2024-03-06,60.00
        Guest,o7,2024-03-07,70.00
        NA,o8,2024-03-08,80.00
        """
    result, db = _import(data_env, "guests.csv", text)
    assert result.success
    _, rejected, orders = _stage(db)
    assert orders == {"import:o1": pytest.approx(10.0), "import:o2": pytest.approx(20.0),
                      "import:o3": pytest.approx(30.0), "import:o4": pytest.approx(40.0)}
    assert rejected == {f"guests.csv#{row}": "missing customer id" for row in (6, 7, 8, 9)}
    with duckdb.connect(str(db)) as conn:
        owners = dict(conn.execute("select order_id, customer_id from staging.orders").fetchall())
    assert owners["import:o2"] == owners["import:o3"] == "import:0" and owners["import:o4"] == "import:-1"


def test_negative_amounts_of_order_level_and_transaction_files_are_refunds_not_rejected_rows(data_env):
    """A return written as its own row with a negative amount refunds the customer's latest order
    at or before it (capped at that order); with no earlier order it is a return that reduces none.
    It was rejected as a negative amount, and the store's revenue kept the refunded money."""
    text = """\
        customer_id,order_date,amount
        c1,2024-01-05,100.00
        c1,2024-02-01,50.00
        c1,2024-02-10,-30.00
        c2,2024-01-10,40.00
        c2,2024-01-20,-60.00
        c3,2024-01-03,-15.00
        c3,2024-01-04,25.00
        """
    result, db = _import(data_env, "log.csv", text)
    assert result.success
    staged, rejected, orders = _stage(db)
    assert rejected == {}
    with duckdb.connect(str(db)) as conn:
        per_order = conn.execute("select customer_id, order_date::varchar, net_revenue::double from staging.orders "
                                 "order by 1, 2").fetchall()
        refunds = conn.execute("select customer_id, refunded_on::varchar, amount::double from staging.refunds "
                               "order by 1").fetchall()
        returns = conn.execute("select customer_id, return_date::varchar, amount::double, quantity, matched_by "
                               "from staging.returns order by 1").fetchall()
    # c2's return is larger than its order: the order nets to 0, never below
    assert per_order == [("import:c1", "2024-01-05", 100.0), ("import:c1", "2024-02-01", 20.0),
                         ("import:c2", "2024-01-10", 0.0), ("import:c3", "2024-01-04", 25.0)]
    assert refunds == [("import:c1", "2024-02-10", 30.0), ("import:c2", "2024-01-20", 60.0)]
    assert returns == [("import:c1", "2024-02-10", 30.0, 1, "customer"), ("import:c2", "2024-01-20", 60.0, 1, "customer"),
                       ("import:c3", "2024-01-03", 15.0, 1, "none")]
    files = next(r for r in staged.reconciliation if r.source_table == "raw.file_transactions")
    assert (files.rows_in, files.accepted, files.rejected) == (7, 7, 0)

    # an order-level export writing a partial refund as a row of the same order id
    result, db = _import(data_env, "orders.csv", """\
        customer_id,order_id,order_date,amount
        d1,o1,2024-03-01,80.00
        d1,o1,2024-03-05,-20.00
        d1,o2,2024-03-09,10.00
        """)
    assert result.success
    _, rejected, orders = _stage(db)
    assert rejected == {}
    assert {k: v for k, v in orders.items() if k in ("import:o1", "import:o2")} == {
        "import:o1": pytest.approx(60.0), "import:o2": pytest.approx(10.0)}


def test_times_on_a_twelve_hour_clock_are_read_with_their_am_pm(data_env):
    """Excel's and many US tools' `3/1/2024 2:15 PM`: unparseable before (the rows were rejected),
    and the ISO form's PM was dropped by a plain cast (2:15 PM became 02:15). 12 AM is midnight.
    A day-first file (a first field above 12) reads its 12-hour times day-first too."""
    text = """\
        customer_id,order_id,order_date,amount
        c1,o1,3/1/2024 2:15 PM,10.00
        c1,o2,3/2/2024 12:05:09 AM,11.00
        c2,o3,2024-03-01 2:15:00 pm,12.00
        c2,o4,03/09/2024 11:59 p.m.,13.00
        c3,o5,3/10/2024 13:15 PM,14.00
        """
    result, db = _import(data_env, "us.csv", text)
    assert result.success
    _, rejected, _ = _stage(db)
    with duckdb.connect(str(db)) as conn:
        created = dict(conn.execute("select order_id, created_at::varchar from staging.orders").fetchall())
    assert created == {"import:o1": "2024-03-01 14:15:00", "import:o2": "2024-03-02 00:05:09",
                       "import:o3": "2024-03-01 14:15:00", "import:o4": "2024-03-09 23:59:00"}
    assert rejected == {"us.csv#6": "unparseable order date: 3/10/2024 13:15 PM"}

    result, db = _import(data_env, "uk.csv", """\
        customer_id,order_id,order_date,amount
        d1,p1,13/01/2024 9:30 AM,10.00
        d1,p2,02/03/2024 9:30 PM,11.00
        """)
    assert result.success
    _stage(db)
    with duckdb.connect(str(db)) as conn:
        created = dict(conn.execute("select order_id, created_at::varchar from staging.orders "
                                    "where order_id like 'import:p%'").fetchall())
    assert created == {"import:p1": "2024-01-13 09:30:00", "import:p2": "2024-03-02 21:30:00"}


def test_a_reports_title_lines_above_the_header_are_skipped_and_reported(data_env):
    """Reports often start with a title, a date line and a blank line before the header: the file
    was refused as 'unrecognized columns ['Sales report']'. The header is found below them (within
    20 rows), the data rows keep their own line numbers, and the import says what it skipped."""
    result, db = _import(data_env, "report.csv", """\
        Sales report
        Generated 2024-05-01,by Ann

        customer_id,order_id,order_date,amount
        c1,o1,2024-03-01,10.00
        c2,o2,2024-03-02,11.00
        c2,o3,2024-03-03
        """)
    assert result.success
    metadata = _metadata(result)
    assert metadata["title_lines_skipped"].value == {"report.csv": 2}
    assert metadata["malformed_lines"].value == 1  # only the short line, checked against the real header
    with duckdb.connect(str(db)) as conn:
        rows = conn.execute("select row_number, order_id, parse_error from raw.file_transactions order by 1").fetchall()
    assert rows == [(5, "o1", None), (6, "o2", None), (7, None, "malformed line 7: 3 fields, the header has 4")]

    frame = pd.DataFrame([["Orders export", None, None, None], [None, None, None, None],
                          ["customer_id", "order_id", "order_date", "amount"],
                          ["d1", "p1", "2024-04-01", 20.0], ["d2", "p2", "2024-04-02", 21.0]])
    frame.to_excel(data_env / "inbox" / "titled.xlsx", index=False, header=False)
    result, db = _import(data_env, "titled.xlsx")
    assert result.success
    metadata = _metadata(result)
    assert metadata["title_lines_skipped"].value == {"sheet 'Sheet1'": 1}
    with duckdb.connect(str(db)) as conn:
        rows = conn.execute("select row_number, order_id from raw.file_transactions where file_name = 'titled.xlsx' "
                            "order by 1").fetchall()
    assert rows == [(4, "p1"), (5, "p2")]

    result, _ = _import(data_env, "notes.csv", "Just some notes\nnothing,here\n1,2\n")
    assert not result.success and "unrecognized columns ['Just some notes']" in _failure(result)


def test_title_lines_above_a_semicolon_header_with_decimal_commas(data_env):
    """A European report: title lines, then a `;` header and amounts like `475,60`. The delimiter was
    detected on the first lines, titles included, and `,` won (the title lines have no `;`, every data
    line one decimal comma): the file was refused as 'unrecognized columns ['Umsatzbericht']'."""
    text = ("Umsatzbericht\r\nErstellt am 01.01.2024\r\n\r\n"
            "Customer;Order Number;Order Date;Amount\r\n"
            "Kundé1;R-1;26.01.2022;475,60\r\nKundé2;R-2;28.01.2022;1.234,50 €\r\nKundé2;R-3;29.01.2022\r\n")
    result, db = _import(data_env, "umsatz.csv", text.encode("cp1252"))
    assert result.success
    metadata = _metadata(result)
    assert metadata["title_lines_skipped"].value == {"umsatz.csv": 2}
    _, rejected, orders = _stage(db)
    assert orders == {"import:R-1": pytest.approx(475.60), "import:R-2": pytest.approx(1234.50)}
    assert rejected == {"umsatz.csv#7": "malformed line 7: 3 fields, the header has 4"}


def test_excel_97_workbooks_are_read_and_other_files_are_named_not_passed_over(data_env, monkeypatch, capsys):
    """An `.xls` goes through the same workbook reader as `.xlsx` (pandas' calamine engine): this
    one (statsmodels' test data, a real Excel 97 file) is read and refused for its columns, which
    only a parsed sheet can show. A file of another type is named by `clv-platform files`."""
    import importlib.util
    import shutil
    from pathlib import Path

    from clv_platform.cli import run_files
    from clv_platform.ingestion.file_import import SUPPORTED_SUFFIXES

    assert {".xls", ".xlsb", ".ods"} <= set(SUPPORTED_SUFFIXES)
    spec = importlib.util.find_spec("statsmodels")
    source = (Path(spec.origin).parent / "tsa" / "statespace" / "tests" / "results" / "frbny_nowcast" / "Nowcasting"
              / "data" / "US" / "2016-06-29.xls") if spec else None
    if source is None or not source.is_file():
        pytest.skip("no Excel 97 file at hand (statsmodels' test data)")
    shutil.copy(source, data_env / "inbox" / "macro.xls")
    result, _ = _import(data_env, "macro.xls")
    assert not result.success
    assert "macro.xls, sheet 'data': unrecognized columns ['Date', 'PAYEMS', 'JTSJOL'" in _failure(result)

    (data_env / "inbox" / "macro.xls").unlink()
    (data_env / "inbox" / "orders.pdf").write_bytes(b"%PDF-1.4")
    monkeypatch.setenv("CLV_SOURCE", "files")
    monkeypatch.setenv("CLV_DUCKDB_PATH", str(data_env / "none_yet.duckdb"))
    from types import SimpleNamespace
    code = run_files(SimpleNamespace(database=None, retrain=False, import_only=False, build_only=False))
    err = capsys.readouterr().err
    assert code == 2 and "not imported: orders.pdf (not a supported type" in err and "no exports in" in err


def _in_both_readers(data_env, tmp_path, name: str, text: str):
    """(rejected rows, net revenue by order) of `text` imported and staged, and (frame, dropped) of the
    backtest's CSV reader on the same text."""
    from clv_platform.models import datasets

    result, db = _import(data_env, name, text)
    assert result.success
    _, rejected, orders = _stage(db)
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return (rejected, orders, *datasets.read_transactions_csv(path))


def test_accounting_negatives_are_returns_in_both_readers(data_env, tmp_path):
    """`($20.00)` and `20.00-` (an accountant's negative, as Excel's accounting format saves it)
    are -20, and `−2.50` (U+2212, the minus sign Numbers and LibreOffice write) is -2.50: returns of
    the files import and of the backtest CSV, not unparseable amounts."""
    text = """\
        customer_id,order_date,amount
        c1,2024-01-05,$100.00
        c1,2024-01-09,($20.00)
        c1,2024-01-10,5.00-
        c1,2024-01-11,(x)
        c1,2024-01-12,−2.50
        """
    rejected, orders, frame, dropped = _in_both_readers(data_env, tmp_path, "ledger.csv", text)
    assert list(orders.values()) == [pytest.approx(72.5)]
    assert rejected == {"ledger.csv#5": "unparseable amount: (x)"}
    assert sorted(frame["amount"]) == [-20.0, -5.0, -2.5, 100.0] and dropped == {"unparseable amount": 1}


def test_an_apostrophe_guarding_a_number_is_left_out_in_both_readers(data_env, tmp_path):
    """Exporters that guard cells starting with - + = @ against spreadsheet formula injection
    (WooCommerce's CSV exporter; OWASP's advice) write a refund as `'-20.00`, and Excel's text marker
    leaks as `'100.00`: both were unparseable amounts, so the refund was lost and the customer's
    spend overstated. The apostrophe is left out (also before a typographic minus, and before a credit
    note's quantity `'-2`), in the files import and the backtest's CSV reader, to one verdict; an
    apostrophe before a word stays unparseable."""
    text = """\
        customer_id,order_date,amount
        c1,2024-01-05,'100.00
        c1,2024-01-09,'-20.00
        c1,2024-01-10,'x
        c1,2024-01-11,'−2.50
        """
    rejected, orders, frame, dropped = _in_both_readers(data_env, tmp_path, "guarded.csv", text)
    assert list(orders.values()) == [pytest.approx(77.5)]
    assert rejected == {"guarded.csv#4": "unparseable amount: 'x"}
    assert sorted(frame["amount"]) == [-20.0, -2.5, 100.0] and dropped == {"unparseable amount": 1}

    lines = """\
        InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
        536365,85123A,HOLDER,'6,12/1/2010 8:26,'2.55,17850,United Kingdom
        C536366,85123A,HOLDER,'-2,12/2/2010 9:00,2.55,17850,United Kingdom
        """
    result, db = _import(data_env, "lines.csv", lines)
    assert result.success
    _, rejected, orders = _stage(db)
    # the sale of 6 at 2.55 less its credit note of 2
    assert list(rejected) == ["guarded.csv#4"] and orders["import:536365"] == pytest.approx(10.20)


def test_a_return_on_a_day_of_several_orders_refunds_the_largest_on_every_build(data_env):
    """Dates without times put a day's orders at one moment: the return refunds the day's largest
    order (as the backtest's CSV reader does), not whichever the join met first."""
    text = """\
        customer_id,order_id,order_date,amount
        c1,o1,2024-01-05,10.00
        c1,o2,2024-01-05,50.00
        c1,o3,2024-01-05,50.00
        c1,r1,2024-01-05,-20.00
        """
    result, db = _import(data_env, "day.csv", text)
    assert result.success
    for _ in range(3):
        _, rejected, orders = _stage(db)
        assert rejected == {}
        # o2 and o3 tie on value: the higher order key wins
        assert orders == {"import:o1": pytest.approx(10.0), "import:o2": pytest.approx(50.0),
                          "import:o3": pytest.approx(30.0)}


def test_dash_dates_follow_the_files_day_or_month_order(data_env):
    """`31-12-2023` / `12-31-2023` (d-m-y / m-d-y with dashes, as many European and US tools write them)
    were unparseable order dates. They take the same per-file decision as slash dates: one decision
    for the file's slash and dash dates together, a field above 12 settling it, contradictions rejected."""
    day_first = """\
        customer_id,order_id,order_date,amount
        c1,d1,31-12-2023,10.00
        c1,d2,11-08-2023 09:30,10.00
        c2,d3,01/02/2023,10.00
        c2,d4,05-06-2023 10:30 PM,10.00
        """
    month_first = """\
        customer_id,order_id,order_date,amount
        c1,m1,12-31-2023 22:30:15,10.00
        c1,m2,08-11-2023,10.00
        """
    neither = "customer_id,order_id,order_date,amount\nc4,n1,05-06-2023,10.00\n"
    both = """\
        customer_id,order_id,order_date,amount
        c3,b1,31-12-2023,10.00
        c3,b2,12/30/2023,10.00
        c3,b3,05-06-2023,10.00
        """
    for name, text in (("day.csv", day_first), ("month.csv", month_first), ("neither.csv", neither),
                       ("both.csv", both)):
        assert _import(data_env, name, text)[0].success
    db = data_env / "clv.duckdb"
    _, rejected, _ = _stage(db)
    times = _by_order(db)
    assert times == {"d1": "2023-12-31 00:00:00", "d2": "2023-08-11 09:30:00", "d3": "2023-02-01 00:00:00",
                     "d4": "2023-06-05 22:30:00", "m1": "2023-12-31 22:30:15", "m2": "2023-08-11 00:00:00",
                     "n1": "2023-05-06 00:00:00", "b1": "2023-12-31 00:00:00", "b2": "2023-12-30 00:00:00"}
    assert rejected == {"both.csv#4": "ambiguous order date: 05-06-2023 (the file writes dates both day-first and "
                                      "month-first)"}


def test_month_name_dates_with_a_comma_before_the_time_and_epoch_numbers(data_env):
    """`Dec 31, 2023, 10:30 PM` (a comma before a 12-hour time: what US locales' date formatting and
    many app exports write) was unparseable. A Unix time among them is read as the instant it is
    (10 digits have no other date reading; it was rejected as unparseable until 4 December 2026)."""
    text = """\
        customer_id,order_id,order_date,amount
        c1,o1,"Dec 31, 2023, 10:30 PM",10.00
        c1,o2,"December 30, 2023, 9:05:07 am",10.00
        c2,o3,"Dec 29, 2023, 22:30",10.00
        c2,o4,"Dec 28, 2023 12:15 AM",10.00
        c3,o5,1703961000,10.00
        """
    assert _import(data_env, "us.csv", text)[0].success
    _, rejected, _ = _stage(data_env / "clv.duckdb")
    times = _by_order(data_env / "clv.duckdb")
    assert times == {"o1": "2023-12-31 22:30:00", "o2": "2023-12-30 09:05:07", "o3": "2023-12-29 22:30:00",
                     "o4": "2023-12-28 00:15:00", "o5": "2023-12-30 18:30:00"}
    assert rejected == {}


def test_numbers_stored_as_text_in_a_german_workbook_are_read_with_its_decimal_comma(data_env):
    """A workbook's amounts pasted or typed as text in a German sheet: `1.234,56`, `12,50` and `1.234`
    (1234). Workbook rows were all read decimal-point, so the first two were unparseable and `1.234`
    and `2.000` became 1.23 and 2.00 without a word. Number cells stay numbers (10.5)."""
    path = data_env / "inbox" / "umsatz.xlsx"
    amounts = ["1.234,56", "12,50", "1.234", "45,00", 10.5, "2.000", " 3,99 "]
    pd.DataFrame({"Customer": [f"k{i}" for i in range(len(amounts))], "Order ID": range(len(amounts)),
                  "Order Date": "31.12.2023", "Amount": amounts}).to_excel(path, index=False)
    assert _import(data_env, "umsatz.xlsx")[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert rejected == {}
    assert orders == {"import:0": 1234.56, "import:1": 12.5, "import:2": 1234.0, "import:3": 45.0,
                      "import:4": 10.5, "import:5": 2000.0, "import:6": 3.99}
    # a workbook whose text amounts are decimal-point keeps reading them so
    pd.DataFrame({"Customer": ["a", "b", "c"], "Order ID": [1, 2, 3], "Order Date": "2023-12-31",
                  "Amount": ["1,234.50", "1.234", 7.25]}).to_excel(path, index=False)
    assert _import(data_env, "umsatz.xlsx")[0].success
    assert _stage(data_env / "clv.duckdb")[2] == {"import:1": 1234.5, "import:2": 1.23, "import:3": 7.25}


def test_line_breaks_around_ids_and_thin_space_thousands_of_a_hand_edited_sheet(data_env):
    """A cell edited by hand may end in a line break (Alt+Enter) or a tab (text pasted from
    elsewhere): `c1<line break>` was a second customer beside `c1`, as trim() takes spaces only. A
    thin or figure space between thousands (`1 234.50`, typographic and SI style) was an unparseable
    amount, while a no-break space was read."""
    path = data_env / "inbox" / "edited.xlsx"
    pd.DataFrame({"Customer": ["c1", "c1\n", "\tAnn@X.com\n", "ann@x.com"], "Order ID": [1, 2, 3, 4],
                  "Order Date": "2024-01-05",
                  "Amount": ["10.00", "1\u2009234.50", "2\u2007000.00", "1\u00a0000.00"]}).to_excel(path, index=False)
    assert _import(data_env, "edited.xlsx")[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert rejected == {}
    assert orders == {"import:1": 10.0, "import:2": 1234.5, "import:3": 2000.0, "import:4": 1000.0}
    assert _by_order(data_env / "clv.duckdb", "customer_id") == {"1": "import:c1", "2": "import:c1",
                                                                 "3": "import:ann@x.com", "4": "import:ann@x.com"}


def test_amounts_with_currency_codes_and_other_symbols_are_read_and_checked(data_env):
    """`GBP 12.00`, `12.50 GBP`, `₹1,234.50`, `¥500`, Swiss `1'234.50` were unparseable amounts. A
    currency code in the amount is the row's currency, checked like a currency column's: one other
    than the store's is rejected (`currency USD differs ...`), never read as the store's currency; a
    symbol is left out as `$ £ € ¥` always were."""
    text = """\
        customer_id,order_id,order_date,amount
        c1,o1,2024-03-01,GBP 12.00
        c1,o2,2024-03-02,12.50 GBP
        c2,o3,2024-03-03,USD 12.00
        c2,o4,2024-03-04,"₹1,234.50"
        c3,o5,2024-03-05,1'234.50
        c3,o6,2024-03-06,GBP 1’234’567.50
        c4,o7,2024-03-07,¥500
        c4,o8,2024-03-08,(GBP 20.00)
        c5,o9,2024-03-09,12.00 EUR
        c5,o10,2024-03-10,12'5
        c5,o11,2024-03-11,12.00 gbp
        """
    assert _import(data_env, "codes.csv", text)[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert orders == {"import:o1": pytest.approx(12.00), "import:o2": pytest.approx(12.50),
                      "import:o4": pytest.approx(1234.50), "import:o5": pytest.approx(1234.50),
                      "import:o6": pytest.approx(1234567.50), "import:o7": pytest.approx(480.0)}  # o8 returns 20
    assert rejected == {"codes.csv#4": "currency USD differs from the store currency GBP",
                        "codes.csv#10": "currency EUR differs from the store currency GBP",
                        "codes.csv#11": "unparseable amount: 12'5", "codes.csv#12": "unparseable amount: 12.00 gbp"}


def test_brazilian_and_swiss_amounts_with_their_currency(data_env, monkeypatch):
    """A Brazilian export (`;`, `R$ 1.234,56`: dot thousands, decimal comma) is detected as a
    decimal-comma file through its currency symbols and codes; a Swiss one writes `CHF 1'234.50`."""
    monkeypatch.setenv("CLV_FILE_CURRENCY", "BRL")
    brazil = ("cliente;pedido;data;valor\n"
              "c1;b1;31/12/2023;R$ 1.234,56\nc2;b2;01/12/2023;R$12,50\nc3;b3;02/12/2023;BRL 99,90\n"
              "c4;b4;03/12/2023;10,00 USD\n")
    (data_env / "store.toml").write_text('[files.columns]\ncustomer_id = "cliente"\norder_id = "pedido"\n'
                                         'order_date = "data"\namount = "valor"\n')
    assert _import(data_env, "br.csv", brazil.encode("utf-8"))[0].success
    with duckdb.connect(str(data_env / "clv.duckdb")) as conn:
        assert conn.execute("select distinct decimal_separator from raw.file_transactions").fetchall() == [(",",)]
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert orders == {"import:b1": pytest.approx(1234.56), "import:b2": pytest.approx(12.50),
                      "import:b3": pytest.approx(99.90)}
    assert rejected == {"br.csv#5": "currency USD differs from the store currency BRL"}

    monkeypatch.setenv("CLV_FILE_CURRENCY", "CHF")
    (data_env / "store.toml").unlink()
    (data_env / "inbox" / "br.csv").unlink()
    withdraw_file(SimpleNamespace(file="br.csv", database=str(data_env / "clv.duckdb")))
    swiss = """\
        customer_id,order_id,order_date,amount
        s1,c1,31.12.2023,CHF 1'234.50
        s1,c2,30.12.2023,1'234.50
        s2,c3,29.12.2023,CHF 99.90
        """
    assert _import(data_env, "ch.csv", swiss)[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert rejected == {}
    assert orders == {"import:c1": pytest.approx(1234.50), "import:c2": pytest.approx(1234.50),
                      "import:c3": pytest.approx(99.90)}


def _money(db) -> tuple[dict, list]:
    with duckdb.connect(str(db)) as conn:
        orders = {o.split(":", 1)[1]: (g, r, n, t) for o, g, r, n, t in conn.execute(
            "select order_id, gross_revenue::double, refunded_amount::double, net_revenue::double, "
            "total_refunded::double from staging.orders").fetchall()}
        refunds = conn.execute("select order_id, refund_id, refunded_at, refunded_on, amount::double, "
                               "total_refunded::double from staging.refunds order by 1").fetchall()
    return orders, refunds


def test_an_order_level_files_refunded_amount_reduces_the_order(data_env):
    """Stripe's payments export carries the money given back per charge (`Amount Refunded`); it was
    ignored, so a partially refunded payment counted in full. It reduces the order as Shopify's
    export's `Refunded Amount` does: capped at the order, one refund on the order's own day (the export
    has no refund date), the uncapped amount in total_refunded, blank = 0, unparseable or negative
    rejected; a payment whose status says refunded stays rejected by it (no refund counted twice)."""
    (data_env / "store.toml").write_text('[files.columns]\norder_id = "id"\norder_date = "Created (UTC)"\n')
    text = """\
        id,Created (UTC),Amount,Amount Refunded,Currency,Status,Customer ID
        ch_1,2024-01-01 06:30:00,100.00,0.00,usd,Paid,cus_A
        ch_2,2024-01-02 10:00:00,50.00,20.00,usd,Partially refunded,cus_A
        ch_3,2024-01-03 10:00:00,40.00,,usd,Paid,cus_B
        ch_4,2024-01-04 10:00:00,30.00,45.00,usd,Paid,cus_B
        ch_5,2024-01-05 10:00:00,25.00,25.00,usd,Refunded,cus_C
        ch_6,2024-01-06 10:00:00,10.00,n/a,usd,Paid,cus_C
        ch_7,2024-01-07 10:00:00,10.00,-5.00,usd,Paid,cus_C
        ch_8,2024-01-08 10:00:00,12.00,USD 2.00,usd,Paid,cus_C
        ch_9,2024-01-09 10:00:00,12.00,EUR 2.00,usd,Paid,cus_C
        """
    result, db = _import(data_env, "unified_payments.csv", text)
    assert result.success
    with duckdb.connect(str(db)) as conn:
        kept = [r[0] for r in conn.execute("select layout_fields ->> 'refunded_amount' from raw.file_transactions "
                                           "order by row_number").fetchall()]
    assert kept == ["0.00", "20.00", None, "45.00", "25.00", "n/a", "-5.00", "USD 2.00", "EUR 2.00"]
    _, rejected, _ = _stage(db)
    orders, refunds = _money(db)
    # gross, refunded (capped), net, total_refunded (uncapped)
    assert orders == {"ch_1": (100.0, 0.0, 100.0, 0.0), "ch_2": (50.0, 20.0, 30.0, 20.0),
                      "ch_3": (40.0, 0.0, 40.0, 0.0), "ch_4": (30.0, 30.0, 0.0, 45.0),
                      "ch_8": (12.0, 2.0, 10.0, 2.0)}
    assert [(o, i, str(at), str(on), a, t) for o, i, at, on, a, t in refunds] == [
        ("import:ch_2", "import:ch_2#refunded", "2024-01-02 10:00:00", "2024-01-02", 20.0, 20.0),
        ("import:ch_4", "import:ch_4#refunded", "2024-01-04 10:00:00", "2024-01-04", 45.0, 45.0),
        ("import:ch_8", "import:ch_8#refunded", "2024-01-08 10:00:00", "2024-01-08", 2.0, 2.0)]
    tail = ": not a purchase (cancelled, failed, unpaid or fully refunded; a later export that shows it completed " \
           "replaces this row)"
    assert rejected == {"unified_payments.csv#6": "order status refunded" + tail,
                        "unified_payments.csv#7": "unparseable refunded amount: n/a",
                        "unified_payments.csv#8": "negative price or amount",
                        "unified_payments.csv#10": "currency EUR differs from the store currency USD"}


def test_a_named_refunded_column_of_a_transactions_file_and_rows_of_one_order(data_env):
    """`[files.columns] refunded_amount` names the column of an export whose header is not a known
    spelling; a file of several rows per order adds its rows' refunded amounts as it adds their
    amounts."""
    (data_env / "store.toml").write_text('[files.columns]\nrefunded_amount = "Money back"\n')
    log = """\
        customer_id,order_date,amount,Money back
        c1,2024-02-01,20.00,5.00
        c1,2024-02-01,20.00,
        c2,2024-02-02,8.00,8
        """
    lines = """\
        customer_id,order_id,order_date,amount,product_id,Refund Amount
        c3,o1,2024-02-03,10.00,A,1.50
        c3,o1,2024-02-03,15.00,B,2.50
        c4,o2,2024-02-04,9.00,A,
        """
    assert _import(data_env, "log.csv", log)[0].success
    (data_env / "store.toml").unlink()  # a named header replaces the built-in spellings: not for this file
    assert _import(data_env, "lines.csv", lines)[0].success
    _, rejected, _ = _stage(db := data_env / "clv.duckdb")
    assert rejected == {}
    orders, refunds = _money(db)
    by_money = sorted(orders.values())
    assert by_money == [(8.0, 8.0, 0.0, 8.0), (9.0, 0.0, 9.0, 0.0), (20.0, 0.0, 20.0, 0.0), (20.0, 5.0, 15.0, 5.0),
                        (25.0, 4.0, 21.0, 4.0)]
    assert sorted((str(on), a) for _, _, _, on, a, _ in refunds) == [
        ("2024-02-01", 5.0), ("2024-02-02", 8.0), ("2024-02-03", 4.0)]


def test_refunded_headers_are_recognized_without_settings():
    from clv_platform.ingestion.file_import import detect_format

    for header in ("Amount Refunded", "Refunded Amount", "Refunded", "refund_amount"):
        layout, mapping, fields = detect_format(["Customer ID", "Order ID", "Date", "Amount", header, "Status"], "x")
        assert layout == "generic" and fields == {"refunded_amount": 4, "status": 5}, header
    # a bare `Refunded` (perhaps a yes/no flag) beside the amount refunded is not taken for it
    _, _, fields = detect_format(["Customer ID", "Order ID", "Date", "Amount", "Refunded", "Amount Refunded"], "x")
    assert fields == {"refunded_amount": 5}
    # a line-level file's refunds are its credit notes: a refunded column there is not read
    layout, _, fields = detect_format(["Invoice", "StockCode", "Quantity", "InvoiceDate", "Price", "Customer ID",
                                       "Refunded"], "x")
    assert layout == "online_retail" and fields == {}


SUPERSTORE = """\
    Row ID,Order ID,Order Date,Ship Date,Ship Mode,Customer ID,Customer Name,Segment,Country,City,State,Postal Code,Region,Product ID,Category,Sub-Category,Product Name,Sales,Quantity,Discount,Profit
    1,CA-2016-152156,11/8/2016,11/11/2016,Second Class,CG-12520,Claire Gute,Consumer,United States,Henderson,Kentucky,42420,South,FUR-BO-10001798,Furniture,Bookcases,Bush Somerset Collection Bookcase,261.96,2,0,41.9136
    2,CA-2016-152156,11/8/2016,11/11/2016,Second Class,CG-12520,Claire Gute,Consumer,United States,Henderson,Kentucky,42420,South,FUR-CH-10000454,Furniture,Chairs,"Hon Deluxe Fabric Upholstered Stacking Chairs, Rounded Back",731.94,3,0,219.582
    3,CA-2016-138688,6/12/2016,6/16/2016,Second Class,DV-13045,Darrin Van Huff,Corporate,United States,Los Angeles,California,90036,West,OFF-LA-10000240,Office Supplies,Labels,Self-Adhesive Address Labels,14.62,2,0,6.8714
    4,US-2015-108966,10/11/2015,10/18/2015,Standard Class,SO-20335,Sean O'Donnell,Consumer,United States,Fort Lauderdale,Florida,33311,South,FUR-TA-10000577,Furniture,Tables,Bretford CR4500 Series Slim Rectangular Table,957.5775,5,0.45,-383.031
    5,US-2016-108967,12/31/2016,1/2/2017,Standard Class,SO-20335,Sean O'Donnell,Consumer,United States,Fort Lauderdale,Florida,33311,South,OFF-LA-10000240,Office Supplies,Labels,Labels,22.368,2,0.2,2.5164
    """


def test_public_sales_data_sets_that_write_the_money_as_sales_are_read(data_env):
    """Tableau's Sample Superstore (one row per line, the line's money after discount as `Sales`,
    month-first dates) was refused as 'unrecognized columns': `Sales` is the amount when the file has
    no `Amount`/`Total` spelling, and an order's rows add up. `Quantity` and `Discount` (a fraction)
    are not multiplied in, `Customer Name` is not the customer."""
    result, db = _import(data_env, "superstore.csv", SUPERSTORE)
    assert result.success
    # which header was taken for what is in the import's metadata (the UI) and its log line
    metadata = _metadata(result)
    assert metadata["columns_read_from"].value == {
        "amount": "Sales", "country": "Country", "customer_id": "Customer ID", "description": "Product Name",
        "order_date": "Order Date", "order_id": "Order ID", "product_id": "Product ID", "quantity": "Quantity"}
    assert metadata["delimiter"].value == ","
    _, rejected, orders = _stage(db)
    assert rejected == {}
    assert orders == {"import:CA-2016-152156": 993.90, "import:CA-2016-138688": 14.62,
                      "import:US-2015-108966": 957.58, "import:US-2016-108967": 22.37}
    assert _by_order(db, "order_date") == {"CA-2016-152156": "2016-11-08", "CA-2016-138688": "2016-06-12",
                                           "US-2015-108966": "2015-10-11", "US-2016-108967": "2016-12-31"}
    with duckdb.connect(str(db)) as conn:
        customers = sorted(r[0] for r in conn.execute("select customer_id from staging.customers").fetchall())
    assert customers == ["import:CG-12520", "import:DV-13045", "import:SO-20335"]


def test_looser_header_spellings_yield_to_the_usual_ones():
    """A looser spelling (`Sales`, `Total Amount`, `Transaction ID`, `Price per Unit`) is read only
    when the file has no usual spelling of that column, whatever the column order; a file whose only
    date header names no date (Ta Feng's `TRANSACTION_DT`, whose `AMOUNT` is a quantity) is refused."""
    from clv_platform.ingestion.file_import import detect_format

    layout, mapping, _ = detect_format(["Sales", "Customer ID", "Order ID", "Order Date", "Amount"], "f.csv")
    assert (layout, mapping["amount"]) == ("generic", 4)
    layout, mapping, _ = detect_format(
        ["Transaction ID", "Date", "Customer ID", "Gender", "Age", "Product Category", "Quantity", "Price per Unit",
         "Total Amount"], "retail_sales.csv")
    assert layout == "generic"
    assert mapping == {"order_id": 0, "order_date": 1, "customer_id": 2, "quantity": 6, "unit_price": 7, "amount": 8}
    layout, mapping, _ = detect_format(["Revenue", "Sales", "User ID", "Client ID", "Purchase Date"], "log.csv")
    assert (layout, mapping) == ("transactions", {"amount": 1, "customer_id": 3, "order_date": 4})
    with pytest.raises(UnreadableFileError, match="unrecognized columns"):
        detect_format(["TRANSACTION_DT", "CUSTOMER_ID", "AGE_GROUP", "PIN_CODE", "PRODUCT_SUBCLASS", "PRODUCT_ID",
                       "AMOUNT", "ASSET", "SALES_PRICE"], "tafeng.csv")


def test_the_retail_data_transactions_file_of_rfm_exercises_is_read(data_env):
    """Kaggle's "Retail Data Transactions" (`Retail_Data_Transactions.csv`, 125,000 rows, a common RFM
    and CLV exercise) writes `customer_id, trans_date, tran_amount` with dates `11-Feb-13`: refused as
    'unrecognized columns'. It is a transactions file (a row is an order)."""
    result, db = _import(data_env, "Retail_Data_Transactions.csv", """\
        customer_id,trans_date,tran_amount
        CS5295,11-Feb-13,35
        CS4768,15-Mar-15,39
        CS5295,01-Jan-12,99
        CS5295,11-Feb-13,35
        """)
    assert result.success
    metadata = _metadata(result)
    assert metadata["format"].value == "transactions"
    assert metadata["columns_read_from"].value == {"amount": "tran_amount", "customer_id": "customer_id",
                                                   "order_date": "trans_date"}
    _, rejected, orders = _stage(db)
    assert rejected == {}
    with duckdb.connect(str(db)) as conn:
        rows = conn.execute("select customer_id, cast(order_date as varchar), net_revenue from staging.orders "
                            "order by 1, 2").fetchall()
    # the two identical rows of one customer and day are two purchases, as in any transactions file
    assert [(c, d, float(v)) for c, d, v in rows] == [
        ("import:CS4768", "2015-03-15", 39.0), ("import:CS5295", "2012-01-01", 99.0),
        ("import:CS5295", "2013-02-11", 35.0), ("import:CS5295", "2013-02-11", 35.0)]


def test_a_text_file_with_columns_aligned_by_spaces_is_read(data_env):
    """CDNOW_master.txt as the lifetimes wheel ships it: columns aligned with runs of spaces (and
    a leading one; a tab among them), CRLF line ends, `YYYYMMDD` dates, the money as `dollar_value`. It was refused as
    'unrecognized columns [' customer_id  date number_of_cds  dollar_value']'. Each line is a
    transaction; a line with another number of fields is a malformed line, not a shifted row."""
    lines = [" customer_id  date number_of_cds  dollar_value", " 00001 19970101  1   11.77",
             " 00002 19970112  1   12.00", " 00002 19970112  5   77.00", " 00003 19970102  2   20.76  extra",
             " 00003 19970330\t2   20.76  "]
    result, db = _import(data_env, "CDNOW_master.txt", ("\r\n".join(lines) + "\r\n").encode())
    assert result.success
    metadata = _metadata(result)
    assert metadata["delimiter"].value == "columns aligned by spaces"
    assert metadata["columns_read_from"].value == {"amount": "dollar_value", "customer_id": "customer_id",
                                                   "order_date": "date"}
    with duckdb.connect(str(db)) as conn:
        raw = conn.execute("select row_number, customer_id, order_date, amount, parse_error from raw.file_transactions "
                           "order by 1").fetchall()
    assert raw == [(2, "00001", "19970101", "11.77", None), (3, "00002", "19970112", "12.00", None),
                   (4, "00002", "19970112", "77.00", None),
                   (5, None, None, None, "malformed line 5: 5 fields, the header has 4"),
                   (6, "00003", "19970330", "20.76", None)]
    _, rejected, orders = _stage(db)
    assert rejected == {"CDNOW_master.txt#5": "malformed line 5: 5 fields, the header has 4"}
    assert sorted(orders.values()) == pytest.approx([11.77, 12.00, 20.76, 77.00])
    with duckdb.connect(str(db)) as conn:
        days = conn.execute("select customer_id, order_date::varchar from staging.orders order by all").fetchall()
    assert days == [("import:00001", "1997-01-01"), ("import:00002", "1997-01-12"), ("import:00002", "1997-01-12"),
                    ("import:00003", "1997-03-30")]


def test_ragged_trailing_empty_fields_are_no_malformed_line(data_env):
    """A header ending in unnamed columns (`amount,,`) over lines without them, or lines ending in
    extra empty fields (`…,4.00,`): spreadsheets and hand edits leave such ragged ends, and every such
    line was rejected as malformed. They carry the same values and are read; a line with a value after
    the named columns (`1,050.00`: a comma in an amount) or without a named column's field is still
    malformed, never a shifted amount."""
    text = """\
        customer_id,order_id,order_date,amount,,
        c1,o1,2024-01-05,10.50
        c2,o2,2024-01-06,3.00,,
        c3,o3,2024-01-07,4.00,,,
        c4,o4,2024-01-08,1,050.00
        c5,o5,2024-01-09
        """
    assert _import(data_env, "ragged.csv", text)[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert rejected == {"ragged.csv#5": "malformed line 5: 5 fields, the header has 6",
                        "ragged.csv#6": "malformed line 6: 3 fields, the header has 6"}
    assert orders == {"import:o1": pytest.approx(10.5), "import:o2": pytest.approx(3.0),
                      "import:o3": pytest.approx(4.0)}


def test_a_header_repeated_below_the_first_is_named_as_such(data_env):
    """Exports pasted one after another repeat the header mid-file: the row was rejected as
    'unparseable order date: order_date', which says nothing of the cause. It is rejected as a
    repeated header row (a sheet's too), and the orders around it are read."""
    text = """\
        customer_id,order_id,order_date,amount
        c1,o1,2024-01-05,10.00
        Customer_ID,Order ID,order_date,Amount
        c2,o2,2024-01-06,5.00
        """
    assert _import(data_env, "joined.csv", text)[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert rejected == {"joined.csv#3": "repeated header row: line 3 repeats the header (exports joined into one file)"}
    assert orders == {"import:o1": pytest.approx(10.0), "import:o2": pytest.approx(5.0)}


def test_quoted_decimal_commas_in_a_comma_separated_file(data_env):
    """A sheet in a European locale downloaded as CSV (Google Sheets) is comma-separated with its
    decimal commas quoted (`"10,50"`): every amount was unparseable, the file rejected row by row. Such
    a file is read decimal-comma when most of its amounts have one or two decimals after a comma and
    none is grouped the US way; a US file's quoted `"1,234.50"` and thousands `"1,234"` keep it decimal-point."""
    text = """\
        customer_id,order_id,order_date,amount
        c1,o1,2024-01-05,"10,50"
        c2,o2,2024-01-06,"1.234,50"
        c3,o3,2024-01-07,"7,95 €"
        c4,o4,2024-01-08,12
        """
    assert _import(data_env, "sheets.csv", text)[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert rejected == {}
    assert orders == {"import:o1": pytest.approx(10.5), "import:o2": pytest.approx(1234.5),
                      "import:o3": pytest.approx(7.95), "import:o4": pytest.approx(12.0)}
    us = """\
        customer_id,order_id,order_date,amount
        d1,p1,2024-01-05,"1,234.50"
        d2,p2,2024-01-06,"10,50"
        d3,p3,2024-01-07,"2,000"
        """
    assert _import(data_env, "us.csv", us)[0].success
    _, rejected, orders = _stage(data_env / "clv.duckdb")
    assert rejected == {"us.csv#3": "unparseable amount: 10,50"}
    assert orders["import:p1"] == pytest.approx(1234.5) and orders["import:p3"] == pytest.approx(2000.0)



def test_the_sales_transaction_file_of_an_online_shop_is_read_as_lines(data_env):
    """Kaggle's "Sales Transaction v.4a" (an online shop's 536,350 lines, 2018-12..2019-12, a common
    RFM and CLV exercise): `TransactionNo, Date, ProductNo, ProductName, Price, Quantity, CustomerNo,
    Country`, dates `8/30/2019`, the customer a float-looking number or blank, a cancellation's
    transaction prefixed `C` with a negative quantity. It was refused as 'unrecognized columns'
    (`ProductNo` named no product); it is Online Retail's line layout under other names."""
    result, db = _import(data_env, "Sales Transaction v.4a.csv", """\
        TransactionNo,Date,ProductNo,ProductName,Price,Quantity,CustomerNo,Country
        548511,7/17/2019,85136B,Chest Of Drawers Gingham Heart,90.5,164,15837.0,European Community
        550960,7/26/2019,21813,Pink Combo Mini Crystals Necklace,25.16,188,12450.0,Malta
        550960,7/26/2019,21809,Hanging Metal Rabbit Decoration,11.26,10,12450.0,Malta
        C550961,7/28/2019,21809,Hanging Metal Rabbit Decoration,11.26,-4,12450.0,Malta
        553012,8/30/2019,21809,Hanging Metal Rabbit Decoration,11.26,-60,,Lithuania
        """)
    assert result.success
    metadata = _metadata(result)
    assert metadata["format"].value == "online_retail"
    assert metadata["columns_read_from"].value == {
        "country": "Country", "customer_id": "CustomerNo", "description": "ProductName", "order_date": "Date",
        "order_id": "TransactionNo", "product_id": "ProductNo", "quantity": "Quantity", "unit_price": "Price"}
    _, rejected, orders = _stage(db)
    # the adjustment line without a customer is rejected as such, not dropped in silence
    assert rejected == {"Sales Transaction v.4a.csv#6": "missing customer id"}
    # 188 x 25.16 + 10 x 11.26 = 4,842.68, less the cancelled 4 x 11.26 two days later (a refund of it)
    assert orders == {"import:548511": pytest.approx(164 * 90.5), "import:550960": pytest.approx(4797.64)}
    with duckdb.connect(str(db)) as conn:
        assert conn.execute("select customer_id, country from staging.customers order by 1").fetchall() == [
            ("import:12450", "Malta"), ("import:15837", "European Community")]
        assert conn.execute("select order_id, cast(refunded_on as varchar), cast(amount as double) from staging.refunds").fetchall() == [
            ("import:550960", "2019-07-28", pytest.approx(45.04))]
        assert dict(conn.execute("select order_id, cast(order_date as varchar) from staging.orders").fetchall()) == {
            "import:548511": "2019-07-17", "import:550960": "2019-07-26"}


def test_olist_orders_are_read_by_the_person_not_the_order_level_customer_id(data_env):
    """Olist's Brazilian e-commerce data (orders joined with customers and payments, as the data set's
    own schema says to) gives each order a `customer_id` of its own and the person a
    `customer_unique_id`: the file was refused (no date, no amount recognized), and a store naming
    only the date and the amount would have read the order-level id, every buyer a one-time buyer.
    The person is the customer, `order_purchase_timestamp` the date, an order's payments (a voucher
    and a card: two rows) one amount; `unavailable` (never fulfilled) and `canceled` are no purchase."""
    header = ("order_id,customer_id,order_status,order_purchase_timestamp,order_approved_at,customer_unique_id,"
              "customer_zip_code_prefix,customer_city,customer_state,payment_sequential,payment_type,"
              "payment_installments,payment_value")
    result, db = _import(data_env, "olist_orders_payments.csv", "\n".join([
        header,
        "e481f51c,9ef432eb,delivered,2017-10-02 10:56:33,2017-10-02 11:07:15,7c396fd4,3149,sao paulo,SP,1,credit_card,1,18.12",
        "e481f51c,9ef432eb,delivered,2017-10-02 10:56:33,2017-10-02 11:07:15,7c396fd4,3149,sao paulo,SP,2,voucher,1,2.00",
        "53cdb2fc,b0830fb4,delivered,2018-07-24 20:41:37,2018-07-26 03:24:27,7c396fd4,3149,sao paulo,SP,1,boleto,1,141.46",
        "47770eb9,41ce2a54,canceled,2018-08-08 08:38:49,2018-08-08 08:55:23,af07308b,47813,barreiras,BA,1,credit_card,3,179.12",
        "949d5b44,f88197465,unavailable,2018-02-13 21:18:39,2018-02-13 22:20:29,af07308b,47813,barreiras,BA,1,credit_card,1,72.20",
        "ad21c59c,8ab97904,shipped,2018-08-15 18:29:31,2018-08-15 20:02:28,af07308b,47813,barreiras,BA,1,credit_card,2,99.90",
    ]) + "\n")
    assert result.success
    metadata = _metadata(result)
    assert metadata["format"].value == "generic"
    assert metadata["columns_read_from"].value == {"amount": "payment_value", "customer_id": "customer_unique_id",
                                                   "order_date": "order_purchase_timestamp", "order_id": "order_id",
                                                   "status": "order_status"}
    _, rejected, orders = _stage(db)
    not_a_purchase = ": not a purchase (cancelled, failed, unpaid or fully refunded; a later export that shows it completed replaces this row)"
    assert rejected == {"olist_orders_payments.csv#5": "order status canceled" + not_a_purchase,
                        "olist_orders_payments.csv#6": "order status unavailable" + not_a_purchase}
    assert orders == {"import:e481f51c": pytest.approx(20.12), "import:53cdb2fc": pytest.approx(141.46),
                      "import:ad21c59c": pytest.approx(99.90)}
    with duckdb.connect(str(db)) as conn:
        assert dict(conn.execute("select customer_id, count(*) from staging.orders group by 1").fetchall()) == {
            "import:7c396fd4": 2, "import:af07308b": 1}


def test_a_transactions_sheet_with_a_price_and_no_quantity_reads_the_price_as_the_amount(data_env):
    """KPMG's Sprocket Central workbook (a common CLV and RFM exercise): a title sheet and customer
    lists beside `Transactions` (a note above the header; transaction_id, product_id, customer_id,
    transaction_date, online_order, order_status, brand, ..., list_price, standard_cost). With the
    sheet named in store.toml it was still refused: no amount and no quantity. A row without a
    quantity is one item; its price is what it sold for. A cancelled order is no purchase."""
    path = data_env / "inbox" / "KPMG_VI_New_raw_data_update_final.xlsx"
    note = "Note: The data and information in this document is reflective of a hypothetical situation and client."
    header = ["transaction_id", "product_id", "customer_id", "transaction_date", "online_order", "order_status",
              "brand", "product_line", "product_class", "product_size", "list_price", "standard_cost"]
    rows = [[1, 2, 2950, pd.Timestamp("2017-02-25"), False, "Approved", "Solex", "Standard", "medium", "medium",
             71.49, 53.62],
            [2, 3, 3120, pd.Timestamp("2017-05-21"), True, "Approved", "Trek Bicycles", "Standard", "medium", "large",
             2091.47, 388.92],
            [3, 37, 402, pd.Timestamp("2017-10-16"), False, "Approved", "OHM Cycles", "Standard", "low", "medium",
             1793.43, 248.82],
            [4, 88, 2950, pd.Timestamp("2017-08-31"), True, "Cancelled", "Norco Bicycles", "Standard", "medium",
             "medium", 1198.46, 381.10],
            [5, 78, 2950, pd.Timestamp("2017-10-01"), True, "Approved", "Giant Bicycles", "Standard", "medium",
             "large", 1765.30, 709.48]]
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        pd.DataFrame([["Sprocket Central Pty Ltd"], ["Data Quality Assessment"]]).to_excel(
            writer, sheet_name="Title Sheet", index=False, header=False)
        pd.DataFrame([[note] + [None] * (len(header) - 1), header, *rows]).to_excel(
            writer, sheet_name="Transactions", index=False, header=False)
        pd.DataFrame({"customer_id": [1, 2], "first_name": ["Laraine", "Eli"], "DOB": pd.to_datetime(
            ["1953-10-12", "1980-12-16"]), "tenure": [11, 16]}).to_excel(writer, sheet_name="CustomerDemographic",
                                                                         index=False)
    (data_env / "store.toml").write_text('[files]\nsheets = ["Transactions"]\n')
    result, db = _import(data_env, path.name)
    assert result.success
    meta = _metadata(result)
    assert meta["rows_per_sheet"].value == {"Transactions": 5}
    assert meta["columns_read_from"].value == {"amount": "list_price", "customer_id": "customer_id",
                                               "order_date": "transaction_date", "order_id": "transaction_id",
                                               "product_id": "product_id", "status": "order_status"}
    _, rejected, orders = _stage(db)
    assert list(rejected.values()) == [
        "order status cancelled: not a purchase (cancelled, failed, unpaid or fully refunded; a later export that "
        "shows it completed replaces this row)"]
    assert orders == {"import:1": pytest.approx(71.49), "import:2": pytest.approx(2091.47),
                      "import:3": pytest.approx(1793.43), "import:5": pytest.approx(1765.30)}


def test_online_retail_lines_without_stock_codes_are_lines_worth_quantity_times_price(data_env):
    """The UCI Online Retail file as RFM tutorials cut it (`CustomerID, InvoiceNo, InvoiceDate,
    Quantity, UnitPrice`, no stock code and no amount) was refused as unrecognized columns. Each
    row is a line worth its quantity times its price; an invoice is one order; a credit note (`C`,
    a negative quantity) has no stock code to match, so it gives money back on the customer's
    latest order at or before it. Two lines alike in every cell are two lines: nothing tells them
    from a repeat, and lines of one quantity and price were 1 % of such a file's lines (they were
    rejected as duplicate rows). A file of the same shape with its own amount stays order level."""
    result, db = _import(data_env, "online_retail_rfm.csv", """\
        CustomerID,InvoiceNo,InvoiceDate,Quantity,UnitPrice
        17850.0,536365,12/1/2010 8:26,6,2.55
        17850.0,536365,12/1/2010 8:26,8,3.39
        17850.0,536365,12/1/2010 8:26,6,2.55
        13047.0,536367,12/1/2010 8:34,24,1.69
        17850.0,536400,12/3/2010 9:00,2,7.95
        17850.0,C536401,12/4/2010 10:00,-1,7.95
        ,536402,12/4/2010 11:00,3,1.00
        """)
    assert result.success
    metadata = _metadata(result)
    assert metadata["format"].value == "online_retail"
    assert metadata["columns_read_from"].value == {
        "customer_id": "CustomerID", "order_date": "InvoiceDate", "order_id": "InvoiceNo",
        "quantity": "Quantity", "unit_price": "UnitPrice"}
    _, rejected, orders = _stage(db)
    assert rejected == {"online_retail_rfm.csv#8": "missing customer id"}
    # 2 x 6 x 2.55 + 8 x 3.39 = 57.72; 2 x 7.95 = 15.90 less the credit note's 7.95 the next day
    assert orders == {"import:536365": pytest.approx(57.72), "import:536367": pytest.approx(40.56),
                      "import:536400": pytest.approx(7.95)}
    with duckdb.connect(str(db)) as conn:
        assert conn.execute("select order_id, cast(refunded_on as varchar), cast(amount as double) "
                            "from staging.refunds").fetchall() == [("import:536400", "2010-12-04", pytest.approx(7.95))]
    result, _ = _import(data_env, "retail_sales_dataset.csv", """\
        Transaction ID,Date,Customer ID,Gender,Age,Product Category,Quantity,Price per Unit,Total Amount
        1,2023-11-24,CUST001,Male,34,Beauty,3,50,140
        """)
    assert result.success and _metadata(result)["format"].value == "generic"


def test_rows_told_apart_by_a_column_not_read_are_two_rows_and_a_repeat_in_every_cell_is_one(data_env):
    """Tableau's Superstore numbers its rows (`Row ID`), Olist its payments (`payment_sequential`):
    two rows of one order alike in every column read but their row id are two lines (an order with
    two vouchers of the same value paid twice that value; the second was rejected as a duplicate
    row). A row repeated in every cell, its row id too, is still a duplicate row."""
    result, db = _import(data_env, "superstore.csv", """\
        Row ID,Order ID,Order Date,Customer ID,Product ID,Sales,Quantity
        1,CA-2016-152156,11/8/2016,CG-12520,FUR-BO-10001798,261.96,2
        2,CA-2016-152156,11/8/2016,CG-12520,FUR-BO-10001798,261.96,2
        3,CA-2016-138688,6/12/2016,DV-13045,OFF-LA-10000240,14.62,2
        3,CA-2016-138688,6/12/2016,DV-13045,OFF-LA-10000240,14.62,2
        """)
    assert result.success and _metadata(result)["format"].value == "generic"
    _, rejected, orders = _stage(db)
    assert rejected == {"superstore.csv#5": "duplicate row"}
    assert orders == {"import:CA-2016-152156": pytest.approx(523.92), "import:CA-2016-138688": pytest.approx(14.62)}
    result, db = _import(data_env, "olist_payments.csv", """\
        order_id,customer_unique_id,order_purchase_timestamp,payment_sequential,payment_type,payment_value
        b8b61059,3c7e305796add66698959fc7ad176f6b,2017-11-07 12:57:45,1,voucher,20.00
        b8b61059,3c7e305796add66698959fc7ad176f6b,2017-11-07 12:57:45,2,voucher,20.00
        b8b61059,3c7e305796add66698959fc7ad176f6b,2017-11-07 12:57:45,3,credit_card,35.79
        """)
    assert result.success
    _, rejected, orders = _stage(db)
    assert rejected == {"superstore.csv#5": "duplicate row"}
    assert orders["import:b8b61059"] == pytest.approx(75.79)


def test_a_sheet_with_olists_person_id_is_no_list_of_returned_orders():
    """The returns-list and lookup-sheet tests find a sheet's columns as the import reads them:
    `customer_unique_id` (Olist's person) is a customer, so a sheet of orders with it and a
    returned flag is a sheet of purchases, not a list of returned orders to mark, and no lookup list."""
    from clv_platform.ingestion.file_import import holds_no_transactions, returns_list

    rows = [(2, ["e481f51c", "7c396fd4", "Yes"], None)]
    assert returns_list(["order_id", "customer_unique_id", "Returned"], rows, "olist.xlsx") is None
    assert returns_list(["order_id", "Returned"], [(2, ["e481f51c", "Yes"], None)], "olist.xlsx") == (
        {"e481f51c": 2}, 0)
    assert not holds_no_transactions(["customer_unique_id", "customer_city"], [(2, ["7c396fd4", "sao paulo"], None)])
    assert holds_no_transactions(["Person", "Region"], [(2, ["Anna Andreadi", "West"], None)])
