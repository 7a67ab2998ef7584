"""customer_ranges: the quantile cuts must give ceil(n / batch) batches, none larger than the batch,
none empty, and together every row exactly once, in customer_id order."""

from __future__ import annotations

import math

import duckdb
import pytest

from clv_platform.core.batches import customer_ranges, range_condition, read_batches


def _table(conn, ids):
    conn.execute("create schema if not exists s; create or replace table s.t (customer_id varchar)")
    if ids:
        conn.executemany("insert into s.t values (?)", [(i,) for i in ids])


def _batch_sizes(conn, ranges):
    sizes = []
    for lo, hi in ranges:
        condition, params = range_condition(lo, hi)
        (count,) = conn.execute(f"select count(*) from s.t where {condition}", params).fetchone()
        sizes.append(count)
    return sizes


@pytest.mark.parametrize("rows", [1, 2, 7, 100, 997, 1000, 1001, 4099])
@pytest.mark.parametrize("batch", [1, 3, 10, 64, 1000])
def test_unique_ids_give_ceil_batches_each_within_the_size(rows, batch):
    conn = duckdb.connect()
    # string ids whose text order differs from their numeric order, as Shopify's gids do
    _table(conn, [f"gid://shopify/Customer/{(i * 7919) % 100003}" for i in range(rows)])
    ranges = customer_ranges(conn, "s.t", batch)
    sizes = _batch_sizes(conn, ranges)
    assert len(ranges) == max(1, math.ceil(rows / batch))
    assert sum(sizes) == rows
    assert all(0 < size <= batch for size in sizes)
    # the batches differ by at most a couple of rows: cut at quantiles, not at the end
    assert max(sizes) - min(sizes) <= 2


def test_ranges_read_back_every_row_once_in_order():
    conn = duckdb.connect()
    ids = [f"{i:.1f}" for i in range(5000, 0, -3)]  # float-looking ids, inserted in reverse order
    _table(conn, ids)
    ranges = customer_ranges(conn, "s.t", 250)
    read = [frame for _, frame in read_batches(
        conn, "select customer_id from s.t where {where} order by customer_id", ranges)]
    offsets = [offset for offset, _ in read_batches(
        conn, "select customer_id from s.t where {where} order by customer_id", ranges)]
    seen = [value for frame in read for value in frame["customer_id"]]
    assert seen == sorted(ids)
    assert offsets[0] == 0 and offsets[1] == len(read[0])


def test_repeated_ids_never_give_an_empty_batch():
    conn = duckdb.connect()
    # a column that is not unique (order lines by customer): a cut may repeat, a range must not
    _table(conn, ["a"] * 40 + ["b"] * 3 + ["c"] * 40 + [f"d{i}" for i in range(5)])
    ranges = customer_ranges(conn, "s.t", 10)
    sizes = _batch_sizes(conn, ranges)
    assert sum(sizes) == 88
    assert all(size > 0 for size in sizes)
    assert len(ranges) < math.ceil(88 / 10)  # the repeated cuts were merged, not kept empty


def test_empty_table_is_one_open_range_and_a_zero_batch_is_refused():
    conn = duckdb.connect()
    _table(conn, [])
    assert customer_ranges(conn, "s.t", 100) == [(None, None)]
    with pytest.raises(ValueError, match="at least 1"):
        customer_ranges(conn, "s.t", 0)


def _file_table(tmp_path, ids):
    """A committed table in a database file (a prefetching cursor reads committed tables only)."""
    conn = duckdb.connect(str(tmp_path / "b.duckdb"))
    conn.execute("create schema s; create table s.t (customer_id varchar, value double)")
    conn.executemany("insert into s.t values (?, ?)", [(i, float(n)) for n, i in enumerate(ids)])
    return conn


QUERY = "select customer_id, value from s.t where {where} order by customer_id"


def test_prefetched_batches_equal_the_sequential_ones(tmp_path):
    ids = [f"gid://shopify/Customer/{(i * 7919) % 100003}" for i in range(3001)]
    conn = _file_table(tmp_path, ids)
    ranges = customer_ranges(conn, "s.t", 400)
    assert len(ranges) == 8
    sequential = list(read_batches(conn, QUERY, ranges))
    prefetched = list(read_batches(conn, QUERY, ranges, prefetch=True))
    assert [o for o, _ in prefetched] == [o for o, _ in sequential]
    for (_, a), (_, b) in zip(sequential, prefetched):
        assert a.equals(b)
    assert [v for _, f in prefetched for v in f["customer_id"]] == sorted(ids)


def test_prefetch_inside_an_open_write_transaction_reads_the_committed_source(tmp_path):
    """As the scoring steps use it: the batches are read while a BatchWriter's transaction on the
    same connection writes another table."""
    from clv_platform.core.batches import BatchWriter

    conn = _file_table(tmp_path, [f"c{i:04d}" for i in range(1000)])
    ranges = customer_ranges(conn, "s.t", 300)
    with BatchWriter(conn, "s.out") as writer:
        for _, frame in read_batches(conn, QUERY, ranges, prefetch=True):
            writer.write(frame.assign(value=frame["value"] * 2))
    assert conn.execute("select count(*), sum(value) from s.out").fetchone() == (1000, 2.0 * sum(range(1000)))


def test_a_prefetching_reader_stopped_early_or_failing_ends_cleanly(tmp_path):
    conn = _file_table(tmp_path, [f"c{i:04d}" for i in range(1000)])
    ranges = customer_ranges(conn, "s.t", 100)
    batches = read_batches(conn, QUERY, ranges, prefetch=True)
    first = next(batches)
    batches.close()  # waits for the read in flight, closes its cursor
    assert first[0] == 0 and len(first[1]) == 100
    # a failing read surfaces in the caller at the batch it belongs to, after the batches before it
    failing = ("select customer_id, case when customer_id = 'c0500' then error('bad batch') end as x "
               "from s.t where {where} order by customer_id")
    seen = []
    with pytest.raises(duckdb.Error, match="bad batch"):
        for offset, _ in read_batches(conn, failing, ranges, prefetch=True):
            seen.append(offset)
    assert seen == [0, 100, 200, 300, 400]
    # the connection is still usable afterwards
    assert conn.execute("select count(*) from s.t").fetchone() == (1000,)


def test_a_background_writer_stores_what_a_foreground_one_does_and_commits_once(tmp_path):
    """``BatchWriter(background=True)``: the batches are written on a cursor of its own while the
    caller computes; the table equals the one written in the caller's thread, and readers of the
    store see the old table until the block ends."""
    from clv_platform.core.batches import BatchWriter

    conn = _file_table(tmp_path, [f"c{i:04d}" for i in range(1000)])
    ranges = customer_ranges(conn, "s.t", 300)
    conn.execute("create table s.out as select 'old' as customer_id, 0.0 as value")
    other = conn.cursor()
    for background, table in ((False, "s.fg"), (True, "s.out")):
        with BatchWriter(conn, table, constants={"run": ("varchar", "r1")}, background=background) as writer:
            for index, (_, frame) in enumerate(read_batches(conn, QUERY, ranges, prefetch=True)):
                writer.write(frame.assign(value=frame["value"] * 2))
                if background and index == 1:  # two batches written, none committed
                    assert other.execute("select customer_id from s.out").fetchall() == [("old",)]
        assert writer.rows == 1000
    assert conn.execute("select count(*), sum(value), min(run) from s.out").fetchone() == (1000, 2.0 * sum(range(1000)), "r1")
    assert conn.execute("select * from s.out order by customer_id").df().equals(
        conn.execute("select * from s.fg order by customer_id").df())


def test_a_failed_background_write_or_a_failing_caller_leaves_the_old_table(tmp_path):
    from clv_platform.core.batches import BatchWriter

    conn = _file_table(tmp_path, [f"c{i:04d}" for i in range(1000)])
    ranges = customer_ranges(conn, "s.t", 300)
    conn.execute("create table s.out as select customer_id, value from s.t")
    # a batch the table cannot take (a column the first batch did not have) fails in the worker
    # thread and is raised in the caller, at its next write or when the block ends
    with pytest.raises(duckdb.Error):
        with BatchWriter(conn, "s.out", background=True) as writer:
            for index, (_, frame) in enumerate(read_batches(conn, QUERY, ranges)):
                writer.write(frame.assign(extra=1) if index == 2 else frame)
    with pytest.raises(RuntimeError, match="caller failed"):
        with BatchWriter(conn, "s.out", background=True) as writer:
            for _, frame in read_batches(conn, QUERY, ranges):
                writer.write(frame.assign(value=-1.0))
                raise RuntimeError("caller failed")
    assert conn.execute("select count(*), sum(value) from s.out").fetchone() == (1000, float(sum(range(1000))))
    with pytest.raises(ValueError, match="temp table"):
        BatchWriter(conn, "scratch", temporary=True, background=True)
