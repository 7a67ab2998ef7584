"""A CSV export is read a block and a batch of rows at a time (memory bounded by a batch, not the
file): where the blocks and batches are cut must never change a row, a separator or a refusal."""

import io
import os
import tempfile
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from clv_platform.ingestion import file_import
from clv_platform.ingestion.file_import import parse_export, read_export, replace_file_rows, spooled_export
from clv_platform.ingestion.raw_tables import ensure_raw_tables
from clv_platform_tests.inbox import import_file
from clv_platform_tests.ingestion.test_shopify_table import DBT_HEADER, _dbt_row

NOW = datetime(2026, 1, 5)

# line ends of every kind, a `\r\n` and a `\r` wherever a block may end, blank and quoted lines
TEXTS = [
    "a,b\r\n1,2\r\n\r\n3,4\r\n",
    "a,b\r1,2\r3,4\r",
    "a,b\n1,\"x\r\ny\"\r\n2,3\n\n4,5",
    "\ufeffa;b\r\n 1 ;2 \n3;4",
]
ALIGNED = (" customer_id  date\tcds  dollars  \r\n 00001 19970101  1   11.77  \r\n"
           "\t00002 19970112 \t 1   12.00\n 3 4 5 6")


@pytest.mark.parametrize("block", [1, 2, 3, 5, 64])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "cp1252"])
def test_lines_read_in_blocks_are_the_whole_texts_lines(tmp_path, monkeypatch, block, encoding):
    """``_text_lines`` against ``io.StringIO(text, newline="")`` of the whole text (how the file was
    read before): the same lines for blocks of any size, also when a block ends between `\\r` and
    `\\n`; aligned columns with the pattern applied to the whole text."""
    monkeypatch.setattr(file_import, "_TEXT_BLOCK", block)
    path = tmp_path / "f.csv"
    for text in TEXTS if encoding != "cp1252" else TEXTS[:3]:  # Windows-1252 has no BOM
        path.write_bytes(text.encode(encoding))
        whole = text.encode(encoding).decode(encoding).removeprefix("\ufeff")
        assert list(file_import._text_lines(path, encoding, "strict", False)) == list(io.StringIO(whole, newline=""))
    path.write_bytes(ALIGNED.encode(encoding))
    whole = file_import._LINE_EDGE_BLANKS.sub("", ALIGNED.replace("\t", " "))
    lines = list(file_import._text_lines(path, encoding, "strict", True))
    assert lines == list(io.StringIO(whole, newline=""))
    assert lines[1] == "00001 19970101  1   11.77\n"


def _quoted_csv(n: int) -> str:
    lines = ["customer_id,order_id,order_date,amount,product_id,quantity"]
    lines += [f'c{i % 13},o{i},2024-03-{1 + i % 28:02d},"{i % 40},{i % 100:02d}",p{i % 7},{1 + i % 3}'
              for i in range(n)]
    lines[10] = 'c1,o10,2024-03-01,"5,00",p1'  # too few fields
    lines[20] = 'c1,o20,2024-03-01,"5,00",p1,1,extra'  # too many
    lines[30] = lines[0]  # the header again (two exports pasted together)
    lines[40] = 'c1,o40,2024-03-01,"5,00",p"1,1'  # a stray quote
    lines[50] = 'c1,o50,2024-03-01,"5,00","multi\nline",1'  # a quoted line break
    lines.insert(60, "")
    return "\n".join(lines) + "\n"


SHAPES = {
    "quoted.csv": _quoted_csv(200).encode(),
    # a report's title lines, a `;` file with decimal commas: the delimiter is found below them
    "titled.csv": ("Umsatzbericht\nErstellt 2024-05-01\n\ncustomer_id;order_id;order_date;amount\n"
                   + "".join(f"c{i % 9};o{i};2024-0{1 + i % 9}-1{i % 10};{i % 50},{i % 100:02d}\n"
                             for i in range(150))).encode(),
    # CDNOW's text layout: columns aligned by spaces, CRLF
    "aligned.txt": (" customer_id  date number_of_cds  dollar_value\r\n"
                    + "".join(f" {i % 31:05d} 1997{1 + i % 12:02d}{1 + i % 28:02d}  {1 + i % 3}   "
                              f"{i % 90}.{i % 100:02d}\r\n" for i in range(150))).encode(),
    # UTF-8 until a Windows-1252 byte far down: the whole file is read as Windows-1252
    "late_latin1.csv": ("customer_id,order_id,order_date,amount,description\n"
                        + "".join(f"c{i % 9},o{i},2024-02-0{1 + i % 9},{i % 70}.5,"
                                  f"{'caf' + chr(233) if i == 140 else 'x'}\n" for i in range(150))).encode("cp1252"),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_a_csv_read_in_batches_is_the_same_rows_as_in_one(tmp_path, name):
    """Batches of 7 rows concatenated are the one batch's frame, cell for cell (row numbers, parse
    errors, payloads, separators), and each batch holds at most 7 rows."""
    path = tmp_path / name
    path.write_bytes(SHAPES[name])
    whole = parse_export(path, NOW, "USD", "sha")
    reading, batches = read_export(path, NOW, "USD", "sha", batch_rows=7)
    parts = list(batches)
    assert len(parts) == -(-len(whole) // 7) and max(len(p) for p in parts) == 7
    streamed = pd.concat(parts, ignore_index=True)
    streamed["decimal_separator"] = reading.decimal_separator
    pd.testing.assert_frame_equal(streamed, whole[streamed.columns], check_exact=True)
    assert reading.rows == len(whole) and reading.malformed == int(whole["parse_error"].notna().sum())
    assert reading.attrs() == whole.attrs
    if name == "quoted.csv":  # too few fields, too many, the header again; a quote inside a field is text
        assert reading.malformed == 3 and reading.decimal_separator == ","
        assert whole["parse_error"].str.startswith("repeated header row").sum() == 1
        assert whole["product_id"].isin(["multi\nline", 'p"1']).sum() == 2
    if name == "titled.csv":  # rows below the first 20 are checked against the header found below the titles
        assert reading.title_lines == {"titled.csv": 2} and reading.delimiter == ";"
        assert reading.malformed == 0 and len(whole) == 150 and reading.decimal_separator == ","
    if name == "aligned.txt":
        assert reading.malformed == 0 and whole["amount"].iat[149] == "59.49" and reading.decimal_separator == "."
    if name == "late_latin1.csv":
        assert (whole["payload"].str.contains("café")).sum() == 1


def _stored(conn, path, reading, batches) -> list[tuple]:
    with spooled_export(batches) as spool:
        replace_file_rows(conn, path.name, spool, reading)
    return conn.execute("select decimal_separator, count(*) from raw.file_transactions group by 1").fetchall()


def test_a_separator_only_later_rows_decide_is_written_on_every_row(tmp_path):
    """A `;` file whose first rows write decimal commas and whose rows after them write points: its
    first batch is handed out with `,` (all it has seen), the file's separator is `.`, and every
    stored row carries `.`."""
    rows = [f"c{i};o{i};2024-01-0{1 + i % 9};{'6,95' if i < 3 else '7.50'}" for i in range(10)]
    path = tmp_path / "late.csv"
    path.write_text("customer_id;order_id;order_date;amount\n" + "\n".join(rows) + "\n")
    reading, batches = read_export(path, NOW, "EUR", "sha", batch_rows=3)
    parts = list(batches)
    assert [p["decimal_separator"].iat[0] for p in parts] == [",", ".", ".", "."] and reading.decimal_separator == "."
    with duckdb.connect() as conn:
        ensure_raw_tables(conn)
        assert _stored(conn, path, reading, iter(parts)) == [(".", 10)]
    assert set(parse_export(path, NOW, "EUR", "sha")["decimal_separator"]) == {"."}


def test_a_csv_with_a_header_and_no_rows_imports_nothing(data_env):
    """Before the streamed reader, a header-only export failed with pandas' `Can only use .str
    accessor with string values!`."""
    result, db = import_file(data_env, "empty.csv", "customer_id,order_id,order_date,amount\n")
    assert result.success
    metadata = result.asset_materializations_for_node("raw__file_transactions")[0].metadata
    assert metadata["dagster/row_count"].value == 0 and metadata["format"].value == "empty"
    with duckdb.connect(str(db)) as conn:
        assert conn.execute("select count(*) from raw.file_transactions").fetchone()[0] == 0


def test_a_refusal_in_a_later_batch_leaves_the_earlier_import(data_env, monkeypatch):
    """A warehouse table whose second shop appears only after the first batches were written: the
    file is refused naming both shops, and the rows of its earlier import stay as they were."""
    monkeypatch.setattr(file_import, "BATCH_ROWS", 4)
    first = [_dbt_row(100 + i, "11", "a@x.com", f"2024-01-{1 + i:02d} 10:00:00", "10.00") for i in range(6)]
    assert import_file(data_env, "orders.csv", "\n".join([DBT_HEADER, *first]) + "\n")[0].success
    second = [_dbt_row(200 + i, "11", "a@x.com", f"2024-02-{1 + i:02d} 10:00:00", "12.00") for i in range(9)]
    second.append(_dbt_row(300, "12", "b@x.com", "2024-02-20 10:00:00", "14.00", shop="shopify_eu"))
    result, db = import_file(data_env, "orders.csv", "\n".join([DBT_HEADER, *second]) + "\n")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
    message = failure.user_failure_data.description
    assert "2 shops" in message and "shopify_eu" in message and "shopify_us" in message
    with duckdb.connect(str(db)) as conn:
        kept = conn.execute("select order_id from raw.file_transactions order by row_number").fetchall()
    assert kept == [(str(100 + i),) for i in range(6)]


def test_a_file_refused_while_it_is_read_leaves_the_store_and_no_scratch(tmp_path):
    """The rows wait in a scratch file until the whole file is read: a refusal while reading (no
    currency) never reaches the store's earlier rows of the file, and the scratch folder goes."""
    path = tmp_path / "orders.csv"
    path.write_text("customer_id,order_id,order_date,amount\n" + "".join(f"c{i},o{i},2024-01-02,5\n" for i in range(9)))
    scratch = list(Path(tempfile.gettempdir()).glob(f"clv-scratch-{os.getpid()}-file-import-*"))
    with duckdb.connect() as conn:
        ensure_raw_tables(conn)
        assert _stored(conn, path, *read_export(path, NOW, "USD", "sha", batch_rows=4)) == [(".", 9)]
        assert _stored(conn, path, *read_export(path, NOW, "USD", "sha", batch_rows=4)) == [(".", 9)]  # replaced
        with pytest.raises(file_import.UnreadableFileError, match="no currency column"):
            _stored(conn, path, *read_export(path, NOW, None, "sha", batch_rows=4))
        assert conn.execute("select count(*), min(currency) from raw.file_transactions").fetchone() == (9, "USD")
    assert list(Path(tempfile.gettempdir()).glob(f"clv-scratch-{os.getpid()}-file-import-*")) == scratch == []
