"""CSV/Excel imports: every row of a hostile export is accepted or rejected with its reason."""

import textwrap

import duckdb
import pandas as pd
import pytest

from clv_platform.transforms.staging import build_staging
from clv_platform_tests.inbox import import_file as _import

HOSTILE_CSV = textwrap.dedent(
    """\
    Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country
    489434,85048,LED CANDLE,12,2009-12-01 07:45:00,6.95,13085,United Kingdom
    489434,79323P,PINK CHERRY LIGHTS,12,2009-12-01 07:45:00,6.75,13085,United Kingdom
    489435,22350,CAT BOWL,12,12/01/2009 07:46,2.55,13086,France
    489436,22111,HOT WATER BOTTLE,3,not a date,4.25,13087,France
    489437,22112,CHOCOLATE BOTTLE,3,2009-12-02 10:00:00,4.25,,France
    ,22113,NO INVOICE,3,2009-12-02 10:00:00,4.25,13088,France
    489438,22114,BAD QUANTITY,abc,2009-12-02 10:00:00,4.25,13088,France
    489439,22115,NEGATIVE SALE,-2,2009-12-02 10:00:00,4.25,13088,France
    C489440,85048,LED CANDLE,-1,2009-12-03 09:00:00,6.95,13085,United Kingdom
    C489441,85048,LED CANDLE,2,2009-12-03 09:00:00,6.95,13085,United Kingdom
    489434,85048,LED CANDLE,12,2009-12-01 07:45:00,6.95,13085,United Kingdom
    489442,22116,NO PRICE,1,2009-12-04 10:00:00,N/A,13089,Spain
    489443,22117,BAD DEBT,1,2009-12-04 10:00:00,-11062.06,13089,Spain
    489444,22118,FROM THE FUTURE,1,2199-01-01 10:00:00,1.00,13089,Spain
    489445,22119,ZERO QTY,0,2009-12-05 10:00:00,1.00,13090,Spain
    """
)

# CSV line number (header = 1) → expected rejection reason (None = accepted).
EXPECTED = {
    2: None, 3: None, 4: None,
    5: "unparseable order date: not a date",
    6: "missing customer id",
    7: "missing order id",
    8: "unparseable quantity: abc",
    9: "negative quantity on a sale (not a return invoice)",
    10: None,  # a return: lands in staging.returns
    11: "positive quantity on a return invoice",
    12: "duplicate row",
    13: "unparseable price: N/A",
    14: "negative price or amount",
    15: "order date in the future",
    16: "zero quantity",
}


@pytest.fixture(autouse=True)
def _store_currency(monkeypatch):
    monkeypatch.setenv("CLV_FILE_CURRENCY", "GBP")


def test_hostile_csv_every_row_accounted_for(data_env):
    (data_env / "inbox" / "export.csv").write_text(HOSTILE_CSV)
    result, db = _import(data_env, "export.csv")
    assert result.success
    with duckdb.connect(str(db)) as conn:
        build_staging(conn)
        rejected = dict(
            conn.execute(
                """
                select cast(split_part(record_id, '#', 2) as integer), reason
                from staging.rejected_rows where source_table = 'raw.file_transactions'
                """
            ).fetchall()
        )
        lines = conn.execute(
            "select order_id, quantity, unit_price, line_revenue from staging.order_lines order by order_id, line_number"
        ).fetchall()
        orders = dict(conn.execute("select order_id, net_revenue::double from staging.orders").fetchall())
        returns = conn.execute(
            "select return_id, customer_id, quantity, amount::double, matched_order_id, matched_by from staging.returns"
        ).fetchall()
        refunds = conn.execute("select order_id, amount::double from staging.refunds").fetchall()
        raw_rows = conn.execute("select count(*) from raw.file_transactions").fetchone()[0]

    assert raw_rows == len(EXPECTED)
    assert rejected == {line: reason for line, reason in EXPECTED.items() if reason}
    assert len(lines) + len(returns) + len(rejected) == raw_rows
    # the credit note C489440 gives back one LED CANDLE of 13085's order 489434 (same customer and stock code)
    assert orders == {
        "import:489434": pytest.approx(12 * 6.95 + 12 * 6.75 - 6.95),
        "import:489435": pytest.approx(30.60),
    }
    assert [(q, float(p)) for _, q, p, _ in lines] == [(12, 6.95), (12, 6.75), (12, 2.55)]
    assert returns == [("import:C489440", "import:13085", 1, pytest.approx(6.95), "import:489434",
                        "customer and stock code")]
    assert refunds == [("import:489434", pytest.approx(6.95))]


def test_generic_excel_export_and_reimport_replaces(data_env):
    frame = pd.DataFrame(
        {
            "customer_id": ["a1", "a1", "b2", None],
            "order_id": ["o1", "o2", "o3", "o4"],
            "order_date": pd.to_datetime(["2024-03-01", "2024-04-01", "2024-04-02", "2024-04-03"]),
            "amount": [10.5, 20.0, -3.0, 5.0],
        }
    )
    path = data_env / "inbox" / "shop.xlsx"
    frame.to_excel(path, index=False)
    for _ in range(2):  # importing the same file twice must not duplicate anything
        result, db = _import(data_env, "shop.xlsx")
        assert result.success
    with duckdb.connect(str(db)) as conn:
        build_staging(conn)
        assert conn.execute("select count(*) from raw.file_transactions").fetchone()[0] == 4
        orders = dict(conn.execute("select order_id, net_revenue::double from staging.orders").fetchall())
        reasons = sorted(r for (r,) in conn.execute("select reason from staging.rejected_rows").fetchall())
        returns = conn.execute("select return_id, amount::double, matched_by from staging.returns").fetchall()
    assert orders == {"import:o1": pytest.approx(10.5), "import:o2": pytest.approx(20.0)}
    assert reasons == ["missing customer id"]
    # b2's negative amount is a return; b2 bought nothing before it, so it reduces no order
    assert returns == [("import:o3", 3.0, "none")]


def test_unreadable_file_fails_and_keeps_earlier_loads(data_env):
    (data_env / "inbox" / "good.csv").write_text(HOSTILE_CSV)
    assert _import(data_env, "good.csv")[0].success
    (data_env / "inbox" / "broken.xlsx").write_bytes(b"this is not a zip archive")
    result, db = _import(data_env, "broken.xlsx")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.user_failure_data.description
    assert "broken.xlsx" in message and "cannot be parsed as xlsx" in message
    with duckdb.connect(str(db)) as conn:
        assert conn.execute("select count(*) from raw.file_transactions").fetchone()[0] == len(EXPECTED)


def test_unrecognized_columns_name_the_file(data_env):
    (data_env / "inbox" / "odd.csv").write_text("foo,bar\n1,2\n")
    result, _ = _import(data_env, "odd.csv")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.user_failure_data.description
    assert "odd.csv: unrecognized columns ['foo', 'bar']" in message
    assert "InvoiceNo" in message and "Customer ID" in message and "customer_id, order_id, order_date, amount" in message


def test_a_workbook_refused_for_a_hidden_sheet_says_the_sheet_is_hidden(tmp_path):
    """Every sheet is imported, hidden ones too: a hidden helper sheet (a lookup table) with another
    header refuses the file. The message named a sheet the merchant cannot see in Excel; it now
    marks it hidden and says how to find it. A workbook without hidden sheets gets no such note."""
    from datetime import datetime, timezone

    import openpyxl

    from clv_platform.ingestion.file_import import UnreadableFileError, parse_export

    def workbook(name: str, state: str):
        book = openpyxl.Workbook()
        orders = book.active
        orders.title = "Orders"
        for row in (["customer_id", "order_id", "order_date", "amount"], ["c1", "o1", "2024-03-01", 10.0]):
            orders.append(row)
        lookup = book.create_sheet("Lookup")
        lookup.append(["code", "rate"])
        lookup.append(["GBP", 1.0])
        lookup.sheet_state = state
        book.save(tmp_path / name)
        return tmp_path / name

    now = datetime(2024, 4, 1, tzinfo=timezone.utc)
    with pytest.raises(UnreadableFileError) as hidden:
        parse_export(workbook("hidden.xlsx", "hidden"), now, currency="GBP")
    assert "sheets ['Orders', 'Lookup (hidden)']" in str(hidden.value)
    assert "right-click a sheet tab, Unhide" in str(hidden.value)
    with pytest.raises(UnreadableFileError) as visible:
        parse_export(workbook("visible.xlsx", "visible"), now, currency="GBP")
    assert "sheets ['Orders', 'Lookup']" in str(visible.value) and "Unhide" not in str(visible.value)


def test_a_demo_store_never_takes_an_inbox_file(data_env):
    """`import_inbox_file` launched by hand (the UI's launchpad, a partition added by hand) in demo
    mode: the file is refused and the demo database keeps no file row."""
    import dagster as dg

    from clv_platform.definitions import build_definitions
    from clv_platform.ingestion.file_assets import inbox_file_partitions

    (data_env / "inbox" / "good.csv").write_text(HOSTILE_CSV)
    db = data_env / "clv.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(inbox_file_partitions.name, ["good.csv"])
    result = build_definitions(database=str(db)).resolve_job_def("import_inbox_file").execute_in_process(
        partition_key="good.csv", instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_failure_data.user_failure_data.description == (
        "good.csv: not imported (exports are imported by a files-only store: CLV_SOURCE=files, see README 'Run on "
        f"your own export'). This run has CLV_SOURCE=demo: nothing was read or written to {db}.")
    assert not db.exists()


def test_a_workbook_of_formulas_without_saved_results_is_refused_with_how_to_fix_it(tmp_path):
    """A workbook written by a program (here openpyxl) stores formulas without their results; the
    reader gets empty cells, so every row was rejected as an unparseable amount while Excel shows the
    values. Such a file is refused naming the column and how to fix it; an empty column that holds no
    formulas (a blank country) refuses nothing."""
    from datetime import datetime, timezone

    import openpyxl

    from clv_platform.ingestion.file_import import UnreadableFileError, parse_export

    def workbook(name: str, amount) -> object:
        book = openpyxl.Workbook()
        sheet = book.active
        sheet.title = "Orders"
        sheet.append(["customer_id", "order_id", "order_date", "qty", "price", "amount", "country"])
        for i in range(3):
            sheet.append([f"c{i}", f"o{i}", f"2024-01-0{i + 1}", 2, 5.0, amount(i + 2), None])
        book.save(tmp_path / name)
        return tmp_path / name

    now = datetime(2024, 4, 1, tzinfo=timezone.utc)
    with pytest.raises(UnreadableFileError) as refused:
        parse_export(workbook("formulas.xlsx", lambda row: f"=D{row}*E{row}"), now, currency="GBP")
    assert str(refused.value) == (
        "formulas.xlsx, sheet 'Orders': the column(s) amount ('amount') hold formulas without a saved result (the "
        "workbook was written by a program and never opened and saved in a spreadsheet application, which stores "
        "the results): open it in Excel or LibreOffice, save it, and import it again")
    frame = parse_export(workbook("values.xlsx", lambda row: 10.0), now, currency="GBP")
    assert frame["amount"].tolist() == ["10"] * 3 and frame["country"].isna().all()
