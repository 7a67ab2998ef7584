"""A files-only store end to end: an Online-Retail-shaped two-sheet workbook (original UCI headers,
float ids, credit notes, non-product lines) → the whole graph on a fresh database, no demo rows."""

from types import SimpleNamespace

import duckdb
import pandas as pd
import pytest

from clv_platform_tests.cheap_config import files_store_run
from clv_platform_tests.online_retail import synthesize, write_two_sheet_workbook


@pytest.fixture(scope="module")
def files_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("files_store")
    export = synthesize(n_customers=300, seed=3, lines_per_invoice=3)
    with files_store_run(tmp, lambda inbox: write_two_sheet_workbook(export, inbox / "online_retail_II.xlsx"),
                         "GBP") as store:
        yield SimpleNamespace(code=store.code, db=store.db, export=export, sheet_rows=store.written, tmp=tmp)


def _tables(conn) -> list[tuple[str, str]]:
    return conn.execute(
        "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE' order by 1, 2"
    ).fetchall()


def test_whole_graph_runs_on_a_fresh_files_only_database(files_store):
    assert files_store.code == 0
    assert files_store.db.is_file() and not (files_store.tmp / "demo.duckdb").exists()
    with duckdb.connect(str(files_store.db), read_only=True) as conn:
        assert conn.execute("select source from meta.platform").fetchall() == [("files",)]
        assert conn.execute("select count(*) from ml.model_runs where is_registered").fetchone()[0] >= 1
        for table in ("scores.customer_clv", "scores.customer_npd", "scores.customer_segments",
                      "marts.customer_scores", "marts.revenue_monthly"):
            assert conn.execute(f"select count(*) from {table}").fetchone()[0] > 0, table


def test_no_demo_or_live_rows_anywhere(files_store):
    with duckdb.connect(str(files_store.db), read_only=True) as conn:
        assert conn.execute("select count(*) from raw.shopify_orders").fetchone()[0] == 0
        assert conn.execute("select count(*) from raw.klaviyo_profiles").fetchone()[0] == 0
        assert conn.execute("select count(*) from staging.orders where source <> 'file'").fetchone()[0] == 0
        checked = 0
        for schema, table in _tables(conn):
            columns = {c for (c,) in conn.execute(
                "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
                [schema, table]).fetchall()}
            # raw and the staging build's kept parse of raw (staging_build) hold the file's own ids
            if "customer_id" in columns and schema not in ("raw", "staging_build"):
                foreign = conn.execute(
                    f"select count(*) from {schema}.{table} where customer_id not like 'import:%'"
                ).fetchone()[0]
                assert foreign == 0, f"{schema}.{table}"
                checked += 1
        assert checked >= 8


def test_every_input_row_is_accounted_for(files_store):
    first, second = files_store.sheet_rows
    assert first > 0 and second > 0
    with duckdb.connect(str(files_store.db), read_only=True) as conn:
        per_sheet = dict(conn.execute(
            "select sheet_name, count(*) from raw.file_transactions group by 1").fetchall())
        accepted = conn.execute(
            "select (select count(*) from staging.order_lines) + (select count(*) from staging.returns)"
        ).fetchone()[0]
        rejected = dict(conn.execute(
            "select reason, count(*) from staging.rejected_rows group by 1").fetchall())
    assert per_sheet == {"Year 2009-2010": first, "Year 2010-2011": second}
    assert accepted + sum(rejected.values()) == first + second
    assert rejected["bad-debt adjustment (A invoice): not a customer transaction"] == 3
    assert rejected["missing customer id"] > 0 and rejected["duplicate row"] > 0
    assert rejected["zero price (no revenue: a free or placeholder line)"] > 0


def test_credit_notes_cancel_orders_and_the_as_of_date_is_the_files_last_order(files_store):
    export = files_store.export
    with duckdb.connect(str(files_store.db), read_only=True) as conn:
        orders = conn.execute(
            "select order_id, customer_id, order_date, net_revenue::double as net_revenue from staging.orders"
        ).df()
        cutoffs = conn.execute("select distinct feature_cutoff from features.customer_features").fetchall()
        postage = conn.execute(
            "select count(*) from staging.order_lines where sku in ('POST', 'DOT') and product_id is null"
        ).fetchone()[0]
    by_id = orders.set_index("order_id")
    same_day = orders.groupby(["customer_id", "order_date"]).size()
    checked = 0
    for customer, invoice in export.cancelled:
        row = by_id.loc[f"import:{invoice}"]
        if same_day[(row["customer_id"], row["order_date"])] == 1:  # no other order the credit could be matched to
            assert row["net_revenue"] == 0.0, invoice
            checked += 1
    assert checked >= 3
    assert cutoffs == [(pd.Timestamp(export.last_order_date).date(),)]
    assert postage > 0


def test_a_failed_run_is_reported_as_plain_lines_not_a_traceback(capsys):
    """A failed run's events end with RUN_FAILURE, which has no step failure data: the report names
    the failed step and its error and stops there (it raised dagster's CheckError on that event)."""
    import dagster as dg

    from clv_platform.cli import _print_failures

    @dg.op
    def no_btyd_model():
        raise ValueError("no BTYD model could be fitted: pareto_nbd(0.0): degenerate")

    @dg.job
    def failing():
        no_btyd_model()

    result = failing.execute_in_process(raise_on_error=False)
    assert not result.success
    capsys.readouterr()  # dagster's own log lines
    _print_failures(result)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["FAILED no_btyd_model: ValueError: no BTYD model could be fitted: pareto_nbd(0.0): degenerate"]


def test_a_dagster_home_that_does_not_exist_yet_is_made_not_a_traceback(tmp_path, monkeypatch, capsys):
    """`DAGSTER_HOME=data/.dagster clv-platform files` on a fresh data folder ended in Dagster's
    DagsterInvariantViolationError traceback ("is not a directory or does not exist"): the command
    makes the folder and says so; a path that cannot be a folder stops with one plain line."""
    from clv_platform.cli import _dagster_instance

    home = tmp_path / "data" / ".dagster"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = _dagster_instance()
    assert instance.is_persistent and home.is_dir()
    assert capsys.readouterr().err == f"created DAGSTER_HOME {home} (Dagster's run history)\n"
    instance.dispose()
    assert _dagster_instance().is_persistent and capsys.readouterr().err == ""  # there now: nothing said

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("DAGSTER_HOME", str(blocker / "home"))
    with pytest.raises(SystemExit) as stopped:
        _dagster_instance()
    assert str(stopped.value).startswith(f"DAGSTER_HOME={blocker / 'home'} is not a folder and cannot be made one (")
