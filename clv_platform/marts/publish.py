"""Publish the marts and scores to a separate DuckDB file that analysts can open at any time.

DuckDB allows one writing process per database file, and a process that holds the pipeline's
file open for writing blocks every other process from opening it at all. So analysts never
query `clv.duckdb`: after a refresh the pipeline copies the analyst-facing schemas into a NEW
file under a temporary name in the same folder, checkpoints and closes it, and then swaps it in
with `os.replace`, which atomically points the published name at the new file.

A reader that opens `analytics.duckdb` read-only therefore gets either the previous snapshot or
the new one, always complete: it never sees a half-written file, and a reader that already has
the old file open keeps reading the old (now unlinked) file until it closes its connection.
The swap relies on POSIX rename semantics (Linux, macOS); on Windows a file that is open cannot
be replaced.

The file is written in DuckDB storage version `SNAPSHOT_STORAGE_VERSION` (v1.0.0 = header version
number 64), not in the format of the duckdb that runs the pipeline: analysts open it with whatever
DuckDB they have (the `duckdb-cli` wheel from pip, duckdb 1.x in a notebook, DBeaver's driver),
and a 1.x reader refuses any file newer than it knows ("we can only read versions between 64 and
68"). Every duckdb since 1.0 reads version 64. Tables are copied in the order the data contract
gives (`order_by`), and the contract's table and column descriptions are written as comments.
"""

import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from clv_platform.core.sql import transaction
from clv_platform import contract
from clv_platform.settings import load_settings

PUBLISHED_SCHEMAS = ("marts", "scores")
# Oldest DuckDB release whose readers must open the snapshot: written with ATTACH's STORAGE_VERSION.
SNAPSHOT_STORAGE_VERSION = "v1.0.0"
# The storage version numbers in a DuckDB file header: v1.0.0 writes 64, and duckdb 1.0 ... 1.5
# read 64 up to 64 ... 68 (2.0 writes 69), so 64 is the number every 1.x reader accepts.
SNAPSHOT_HEADER_VERSION = 64
SNAPSHOT_INFO_TABLE = "marts.snapshot_info"
_ALIAS = "clv_snapshot_being_written"


def analytics_path() -> Path:
    """The published snapshot: `CLV_ANALYTICS_PATH`, else `<data dir>/analytics.duckdb`."""
    return load_settings().analytics_path


@dataclass
class Snapshot:
    path: Path
    published_at: datetime
    tables: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    dropped: list[str] = field(default_factory=list)
    """Tables the replaced snapshot had and this one has not (analysts' queries of them now fail)."""


def _previous_tables(target: Path) -> set[str]:
    """The tables of the snapshot about to be replaced, from its `marts.snapshot_info` (none when
    there is no snapshot yet or it cannot be read: that only loses the comparison)."""
    if not target.is_file():
        return set()
    try:
        with duckdb.connect(str(target), read_only=True) as old:
            return {name for (name,) in old.execute(f"select table_name from {SNAPSHOT_INFO_TABLE}").fetchall()}
    except duckdb.Error:
        return set()


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _published_tables(conn: duckdb.DuckDBPyConnection, schemas: tuple[str, ...]) -> list[tuple[str, str]]:
    placeholders = ", ".join("?" for _ in schemas)
    return conn.execute(
        f"""
        select table_schema, table_name from information_schema.tables
        where table_catalog = current_database() and table_type = 'BASE TABLE'
          and table_schema in ({placeholders})
          and table_schema || '.' || table_name <> ?
        order by 1, 2
        """,
        [*schemas, SNAPSHOT_INFO_TABLE],
    ).fetchall()


def _fsync(path: Path) -> None:
    """Flush a file (or a folder entry) to disk so the swap survives a power cut."""
    flags = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def publish_snapshot(
    conn: duckdb.DuckDBPyConnection,
    target: str | Path | None = None,
    schemas: tuple[str, ...] = PUBLISHED_SCHEMAS,
) -> Snapshot:
    """Copy every table of `schemas` from `conn`'s database into a fresh file and swap it in.

    The copy runs in one read transaction on the source, so all tables come from the same
    state. A `marts.snapshot_info` table records when it was published and the row count of
    every table. If anything fails, the temporary file is removed and the previous snapshot
    stays in place untouched. A table of the previous snapshot that the database no longer has
    (a store rebuilt and not yet through every mart) is not published; `Snapshot.dropped` names it.
    """
    target = Path(target) if target is not None else analytics_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    temp_wal = temp.with_name(temp.name + ".wal")
    published_at = datetime.now(timezone.utc).replace(tzinfo=None)
    tables = _published_tables(conn, schemas)
    if not tables:  # an empty snapshot would replace the analysts' tables with none
        raise ValueError(
            f"nothing to publish: the database has no table in {' or '.join(schemas)} yet; materialize the marts "
            f"first (marts/customer_scores and the other marts/* assets). {target} is left as it was."
        )
    counts: dict[str, int] = {}
    previous = _previous_tables(target)

    conn.execute(
        f"attach {_literal(str(temp))} as {_ALIAS} (storage_version {_literal(SNAPSHOT_STORAGE_VERSION)})"
    )
    try:
        with transaction(conn):
            for schema in sorted({s for s, _ in tables} | {SNAPSHOT_INFO_TABLE.split('.')[0]}):
                conn.execute(f"create schema if not exists {_ALIAS}.{schema}")
            for schema, table in tables:
                order = contract.order_by(f"{schema}.{table}")
                conn.execute(
                    f'create table {_ALIAS}.{schema}."{table}" as select * from {schema}."{table}"'
                    + (f" order by {order}" if order else "")
                )
                counts[f"{schema}.{table}"] = int(
                    conn.execute(f'select count(*) from {_ALIAS}.{schema}."{table}"').fetchone()[0]
                )
            conn.execute(
                f"create table {_ALIAS}.{SNAPSHOT_INFO_TABLE} "
                "(table_name varchar, row_count bigint, published_at timestamp)"
            )
            conn.executemany(
                f"insert into {_ALIAS}.{SNAPSHOT_INFO_TABLE} values (?, ?, ?)",
                [[name, rows, published_at] for name, rows in counts.items()],
            )
            contract.apply_comments(conn, catalog=_ALIAS, schemas=schemas, own_transaction=False)
        conn.execute(f"checkpoint {_ALIAS}")
    except Exception:
        conn.execute(f"detach database if exists {_ALIAS}")
        _remove(temp, temp_wal)
        raise
    conn.execute(f"detach {_ALIAS}")
    try:
        _fsync(temp)
        os.replace(temp, target)
        _fsync(target.parent)
    finally:
        _remove(temp, temp_wal)
    return Snapshot(path=target, published_at=published_at, tables=counts, size_bytes=target.stat().st_size,
                    dropped=sorted(previous - set(counts)))


def header_version(path: str | Path) -> int:
    """The storage version number in a DuckDB file's main header (bytes 8-11 `DUCK`, then a uint64).

    What a reader compares with the versions it can read, before it reads anything else.
    """
    with open(path, "rb") as handle:
        head = handle.read(20)
    if len(head) < 20 or head[8:12] != b"DUCK":
        raise ValueError(f"{path} is not a DuckDB database file")
    return int.from_bytes(head[12:20], "little")


def open_snapshot(path: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the published snapshot; close it when done to see the next one."""
    return duckdb.connect(str(Path(path) if path is not None else analytics_path()), read_only=True)
