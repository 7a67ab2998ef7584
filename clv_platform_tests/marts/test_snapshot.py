"""The published snapshot: complete, swapped atomically, readable by another process at any time."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from clv_platform.marts import publish
from clv_platform.marts.publish import open_snapshot, publish_snapshot

# The reader runs in its own interpreter, like an analyst's notebook: open read-only, count,
# close, as fast as it can, until the stop file appears (or its own limits are hit). It prints
# `seen <rows>` whenever the version it reads changes, so the writer can wait for it.
READER = r"""
import json, os, sys, time
import duckdb

path, stop_file, max_reads, max_seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
reads, errors, seen, inconsistent, last = 0, [], {}, [], None
started = time.monotonic()
while reads < max_reads and time.monotonic() - started < max_seconds:
    stopping = os.path.exists(stop_file)
    try:
        conn = duckdb.connect(path, read_only=True)
        try:
            rows, customers, rank_sum = conn.execute(
                "select count(*), count(distinct customer_id), sum(clv_rank) from marts.customer_scores"
            ).fetchone()
            info = conn.execute(
                "select row_count from marts.snapshot_info where table_name = 'marts.customer_scores'"
            ).fetchone()[0]
        finally:
            conn.close()
        reads += 1
        if reads == 1:
            print("ready", flush=True)
        if rows != last:  # tell the writer which version this reader now sees
            print(f"seen {rows}", flush=True)
            last = rows
        seen[rows] = seen.get(rows, 0) + 1
        if not (rows == customers == info and rank_sum == rows * (rows + 1) // 2):
            inconsistent.append([rows, customers, info, rank_sum])
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    if stopping:
        break
print(json.dumps({"reads": reads, "errors": errors[:5], "error_count": len(errors),
                  "seen": seen, "inconsistent": inconsistent[:5],
                  "seconds": time.monotonic() - started}), flush=True)
"""

SIZES = [5_000, 1_200, 20_000, 800, 12_000, 3_000, 30_000, 7_500]


def write_scores(conn: duckdb.DuckDBPyConnection, customers: int) -> None:
    """Source tables of one 'refresh': `customers` rows ranked 1..n (so sum(clv_rank) is known)."""
    conn.execute("create schema if not exists marts")
    conn.execute("create schema if not exists scores")
    conn.execute(
        f"""
        create or replace table marts.customer_scores as
        select 'c' || i as customer_id, 'c' || i || '@example.com' as email,
               1000.0 / i as predicted_clv, i as clv_rank, repeat('x', 40) as padding
        from range(1, {customers} + 1) t(i)
        """
    )
    conn.execute(
        f"create or replace table scores.customer_clv as select customer_id, predicted_clv, clv_rank "
        f"from marts.customer_scores"
    )


def test_publish_copies_marts_and_scores_only(tmp_path):
    target = tmp_path / "out" / "analytics.duckdb"
    with duckdb.connect(str(tmp_path / "clv.duckdb")) as conn:
        write_scores(conn, 10)
        conn.execute("create schema staging")
        conn.execute("create table staging.orders as select 1 as order_id")
        snapshot = publish_snapshot(conn, target)
        # the pipeline's connection is still usable and nothing stays attached
        assert conn.execute("select count(*) from duckdb_databases() where not internal").fetchone()[0] == 1
    assert snapshot.tables == {"marts.customer_scores": 10, "scores.customer_clv": 10}
    assert sorted(p.name for p in target.parent.iterdir()) == ["analytics.duckdb"]
    with open_snapshot(target) as snap:
        tables = snap.execute(
            "select table_schema || '.' || table_name from information_schema.tables order by 1"
        ).fetchall()
        assert [t for (t,) in tables] == ["marts.customer_scores", "marts.snapshot_info", "scores.customer_clv"]
        assert snap.execute("select sum(row_count) from marts.snapshot_info").fetchone()[0] == 20
        with pytest.raises(duckdb.Error):
            snap.execute("create table marts.scratch as select 1")


def test_default_path_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("CLV_ANALYTICS_PATH", raising=False)
    monkeypatch.setenv("CLV_DATA_DIR", str(tmp_path))
    assert publish.analytics_path() == tmp_path / "analytics.duckdb"
    monkeypatch.setenv("CLV_ANALYTICS_PATH", str(tmp_path / "elsewhere.duckdb"))
    assert publish.analytics_path() == tmp_path / "elsewhere.duckdb"


def test_failed_publish_keeps_the_previous_snapshot(tmp_path, monkeypatch):
    target = tmp_path / "analytics.duckdb"
    with duckdb.connect(str(tmp_path / "clv.duckdb")) as conn:
        write_scores(conn, 10)
        publish_snapshot(conn, target)
        write_scores(conn, 99)

        def broken_replace(src, dst):
            raise OSError("disk full")

        monkeypatch.setattr(publish.os, "replace", broken_replace)
        with pytest.raises(OSError, match="disk full"):
            publish_snapshot(conn, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analytics.duckdb", "clv.duckdb"]
    with open_snapshot(target) as snap:
        assert snap.execute("select count(*) from marts.customer_scores").fetchone()[0] == 10


def test_publishing_a_store_without_marts_says_so_and_keeps_the_snapshot(tmp_path):
    target = tmp_path / "analytics.duckdb"
    with duckdb.connect(str(tmp_path / "clv.duckdb")) as conn:
        write_scores(conn, 10)
        publish_snapshot(conn, target)
    with duckdb.connect(str(tmp_path / "empty.duckdb")) as conn:
        conn.execute("create schema staging")
        conn.execute("create table staging.orders as select 1 as order_id")
        with pytest.raises(ValueError, match=r"^nothing to publish: the database has no table in marts or scores yet; "
                                             r"materialize the marts first"):
            publish_snapshot(conn, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analytics.duckdb", "clv.duckdb", "empty.duckdb"]
    with open_snapshot(target) as snap:
        assert snap.execute("select count(*) from marts.customer_scores").fetchone()[0] == 10


def test_a_snapshot_with_fewer_tables_names_those_it_no_longer_publishes(tmp_path):
    """A store rebuilt and not yet through every mart published a snapshot without the missing tables,
    silently: analysts' queries of them failed with no trace in the run. The replaced snapshot's tables
    that this one lacks are named (the asset logs a warning and reports them in metadata)."""
    target = tmp_path / "analytics.duckdb"
    with duckdb.connect(str(tmp_path / "clv.duckdb")) as conn:
        write_scores(conn, 10)
        conn.execute("create table marts.extra_mart as select 1 as x")
        assert publish_snapshot(conn, target).dropped == []
        conn.execute("drop table marts.extra_mart")
        conn.execute("drop table scores.customer_clv")
        again = publish_snapshot(conn, target)
    assert again.dropped == ["marts.extra_mart", "scores.customer_clv"]
    assert again.tables == {"marts.customer_scores": 10}


def test_the_snapshot_asset_reports_the_tables_it_no_longer_publishes(data_env):
    import dagster as dg
    from dagster_duckdb import DuckDBResource

    from clv_platform.marts.assets import analytics_snapshot

    db = data_env / "clv.duckdb"
    with duckdb.connect(str(db)) as conn:
        write_scores(conn, 10)
        conn.execute("create table marts.extra_mart as select 1 as x")
        publish_snapshot(conn, publish.analytics_path())
        conn.execute("drop table marts.extra_mart")
    result = dg.materialize([analytics_snapshot], resources={"duckdb": DuckDBResource(database=str(db))})
    metadata = result.asset_materializations_for_node("marts__analytics_snapshot")[0].metadata
    assert metadata["tables_no_longer_published"].value == ["marts.extra_mart"]


def test_reader_process_never_sees_a_broken_or_partial_snapshot(tmp_path):
    target = tmp_path / "analytics.duckdb"
    stop_file = tmp_path / "stop"
    source = duckdb.connect(str(tmp_path / "clv.duckdb"))
    write_scores(source, 100)
    publish_snapshot(source, target)
    published = {100}

    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(target), str(stop_file), "100000", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    def wait_until_seen(rows: int) -> None:
        """Block until the reader reports reading version `rows` (it gives up after its 60 s)."""
        while (line := reader.stdout.readline().strip()) != f"seen {rows}":
            assert line.startswith("seen "), f"reader stopped before seeing {rows} rows: {line!r}"

    try:
        assert reader.stdout.readline().strip() == "ready"
        wait_until_seen(100)
        started = time.monotonic()
        for size in SIZES * 2:
            write_scores(source, size)
            publish_snapshot(source, target)
            published.add(size)
            # the next swap happens only once the reader has read this one: every version is read
            wait_until_seen(size)
        publish_seconds = time.monotonic() - started
        stop_file.touch()
        out, err = reader.communicate(timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
        source.close()
    assert reader.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    seen = {int(k): v for k, v in report["seen"].items()}
    sys.stderr.write(
        f"\nconcurrent reader: {report['reads']} reads in {report['seconds']:.1f} s during "
        f"{2 * len(SIZES)} publishes ({publish_seconds:.1f} s), versions seen {sorted(seen)}, "
        f"errors {report['error_count']}\n"
    )
    assert report["error_count"] == 0, report["errors"]
    assert report["inconsistent"] == []
    assert set(seen) == published  # it really read every snapshot while they were being swapped
    assert report["reads"] >= 10
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp") or p.endswith(".wal")]
    assert Path(target).exists()


def test_snapshot_is_written_in_a_storage_version_every_duckdb_1x_reads(tmp_path):
    """duckdb 1.0 ... 1.5 readers accept header versions 64 up to 64 ... 68; the snapshot says 64,
    whatever duckdb wrote it, while the working database keeps the writer's own format."""
    target = tmp_path / "analytics.duckdb"
    working = tmp_path / "clv.duckdb"
    with duckdb.connect(str(working)) as conn:
        write_scores(conn, 50)
        publish_snapshot(conn, target)
    assert publish.header_version(target) == publish.SNAPSHOT_HEADER_VERSION == 64
    assert publish.SNAPSHOT_STORAGE_VERSION == "v1.0.0"
    with open_snapshot(target) as conn:
        assert conn.execute("select count(*) from marts.customer_scores").fetchone()[0] == 50
    with pytest.raises(ValueError, match="not a DuckDB"):
        (tmp_path / "x.duckdb").write_bytes(b"not a database at all")
        publish.header_version(tmp_path / "x.duckdb")


@pytest.mark.skipif(not os.environ.get("CLV_TEST_DUCKDB_CLI"),
                    reason="set CLV_TEST_DUCKDB_CLI to a duckdb 1.x CLI (pip install duckdb-cli==1.5.*)")
def test_snapshot_opens_with_the_duckdb_1x_cli(tmp_path):
    """The README's command, run by the CLI analysts install from pip (a separate duckdb 1.x)."""
    cli = os.environ["CLV_TEST_DUCKDB_CLI"]
    version = subprocess.run([cli, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("v1."), version
    target = tmp_path / "analytics.duckdb"
    with duckdb.connect(str(tmp_path / "clv.duckdb")) as conn:
        write_scores(conn, 25)
        publish_snapshot(conn, target)
    out = subprocess.run(
        [cli, "-readonly", "-csv", str(target), "-c",
         "select count(*), sum(clv_rank) from marts.customer_scores"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == f"25,{25 * 26 // 2}"
