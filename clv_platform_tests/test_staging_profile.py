"""benchmarks.staging_profile: times a merge on a copy and leaves the given store as it was."""

from datetime import datetime

import duckdb

from benchmarks.staging_profile import main, statement_head
from clv_platform.ingestion.demo_store import DemoStoreParams, generate
from clv_platform.transforms.staging import build_staging


def test_profiles_a_merge_on_a_copy_of_the_store(tmp_path, capsys):
    store = tmp_path / "store.duckdb"
    with duckdb.connect(str(store)) as conn:
        generate(DemoStoreParams(n_customers=200)).write_raw_tables(conn, datetime(2026, 1, 1))
        build_staging(conn, None, "UTC")
        raw_before = conn.execute("select count(*) from raw.shopify_orders").fetchone()[0]
    assert main(["merge", str(store), "--work", str(tmp_path), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "merge: built as merge (as asked)" in out
    assert "merged keys: {'orders':" in out
    # the 3 costliest statements follow the header, each as wall s, CPU s and the statement's head
    lines = out.splitlines()
    rows = lines[lines.index(next(line for line in lines if line.endswith("statement"))) + 1:]
    assert len(rows) == 3
    for row in rows:
        wall, cpu, head = row.split(maxsplit=2)
        assert float(wall) >= 0 and float(cpu) >= 0
        assert head.split()[0] in {"create", "insert", "delete", "update", "with", "select", "drop"}
    with duckdb.connect(str(store), read_only=True) as conn:  # the day was appended to the copy only
        assert conn.execute("select count(*) from raw.shopify_orders").fetchone()[0] == raw_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.duckdb"]  # the copy's folder is gone


def test_statement_head_starts_at_the_sql_verb():
    sql = "-- why this statement exists\n  -- second line\ninsert into staging.orders\nselect 1  -- trailing note\n"
    assert statement_head(sql) == "insert into staging.orders select 1 -- trailing note"
    assert statement_head("select " + "x, " * 100, width=20) == "select x, x, x, x, x"


def test_staging_store_builds_raw_and_staging_then_appends_a_day(tmp_path, capsys):
    from benchmarks.staging_store import main as build_store

    store = tmp_path / "store.duckdb"
    assert build_store(["--customers", "150", str(store)]) == 0
    with duckdb.connect(str(store), read_only=True) as conn:
        state = conn.execute("select mode, orders_max_rowid from staging_build.build_state").fetchone()
        raw_rows = conn.execute("select count(*) from raw.shopify_orders").fetchone()[0]
        built = conn.execute("select count(*) from raw.shopify_orders where rowid <= ?", [state[1]]).fetchone()[0]
        assert state[0] == "full" and conn.execute("select count(*) from staging.orders").fetchone()[0] > 0
    # the appended day is in raw, after what the full build read: the next build merges it
    assert raw_rows > built == state[1] + 1
    assert "DayAppended(" in capsys.readouterr().out
    try:
        build_store(["--customers", "150", str(store)])
        raise AssertionError("an existing store was overwritten")
    except SystemExit as exc:
        assert exc.code == 2


def test_a_smaller_day_merges_fewer_orders(tmp_path, capsys):
    store = tmp_path / "store.duckdb"
    with duckdb.connect(str(store)) as conn:
        generate(DemoStoreParams(n_customers=400)).write_raw_tables(conn, datetime(2026, 1, 1))
        build_staging(conn, None, "UTC")
    new_orders = {}
    for fraction in ("0.003", "0.03"):
        assert main(["merge", str(store), "--work", str(tmp_path), "--top", "1", "--fraction", fraction]) == 0
        out = capsys.readouterr().out
        new_orders[fraction] = int(out.split("new_orders=")[1].split(",")[0])
    assert new_orders["0.003"] < new_orders["0.03"]
