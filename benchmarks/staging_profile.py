"""Per-statement wall and CPU seconds of one staging build, on a copy of a built store.

    python -m benchmarks.staging_profile full  STORE.duckdb [--work /tmp/dir]
    python -m benchmarks.staging_profile merge STORE.duckdb [--work /tmp/dir] [--fraction 0.0003]

`full` rebuilds staging from raw (`build_staging(full_rebuild=True)`); `merge` first appends one
day of news (`benchmarks.nightly.append_day`, as the nightly bench does) and then merges it. The
store is copied first and never written (e.g. a bench `--keep-dir`'s `before_nightly.duckdb`).
CPU seconds are the process's (`time.process_time`), which grow far less than wall seconds when
other jobs share the cores, so two versions of the code are compared on CPU seconds.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import duckdb

from benchmarks.bench import default_memory_limit
from benchmarks.nightly import append_day
from clv_platform.transforms.staging import build_staging


def statement_head(sql: str, width: int = 110) -> str:
    """The statement's first words on one line, without its leading `--` comments.

    Several staging statements open with a comment saying why they exist; the head
    is there to tell which statement cost the time, so it starts at the SQL verb."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return " ".join(body.split())[:width]


class _TimedConnection:
    """A connection whose `execute` records (wall s, CPU s, statement head) per call."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self._conn = conn
        self.timings: list[tuple[float, float, str]] = []

    def execute(self, sql: str, *args):
        wall, cpu = time.perf_counter(), time.process_time()
        result = self._conn.execute(sql, *args)
        self.timings.append((time.perf_counter() - wall, time.process_time() - cpu, statement_head(sql)))
        return result

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("full", "merge"))
    parser.add_argument("store", type=Path)
    parser.add_argument("--work", type=Path, default=None, help="folder for the copy (default: a temp dir)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--timezone", default="UTC", help="the store time zone the staging asset passes")
    parser.add_argument("--checkpoint", action="store_true", help="time a CHECKPOINT after the build")
    parser.add_argument("--fraction", type=float, default=0.003,
                        help="the appended day's new orders as a share of the history (a smaller day shows which "
                             "statements cost the same whatever the day holds, i.e. grow with the store)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        copy = Path(tmp) / "store.duckdb"
        shutil.copy(args.store, copy)
        conn = duckdb.connect(str(copy), config={"memory_limit": default_memory_limit()})
        try:
            if args.mode == "merge":
                print(append_day(conn, fraction=args.fraction))
            timed = _TimedConnection(conn)
            wall, cpu = time.perf_counter(), time.process_time()
            result = build_staging(timed, None, args.timezone, full_rebuild=args.mode == "full")
            print(f"{args.mode}: built as {result.mode} ({result.full_reason or 'as asked'}), "
                  f"wall {time.perf_counter() - wall:.1f} s, CPU {time.process_time() - cpu:.1f} s")
            if args.checkpoint:
                # the merge's commit may leave its WAL to a later checkpoint, which pays the vacuum of
                # the rows it deleted: timed here, so moving work to the next commit cannot look like a saving
                w, c = time.perf_counter(), time.process_time()
                conn.execute("checkpoint")
                print(f"checkpoint after the build: wall {time.perf_counter() - w:.2f} s, "
                      f"CPU {time.process_time() - c:.2f} s")
            if result.merged:
                print(f"merged keys: {result.merged}")
            print(f"{'wall s':>8}{'CPU s':>8}  statement")
            for w, c, head in sorted(timed.timings, key=lambda t: t[1], reverse=True)[:args.top]:
                print(f"{w:8.2f}{c:8.2f}  {head}")
        finally:
            conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
