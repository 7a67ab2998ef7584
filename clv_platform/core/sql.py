"""The SQL runner and the one transaction helper every layer uses.

`run_script` executes a packaged `.sql` file statement by statement; `transaction` wraps a block
of statements so that either all of them land or none does (a failed write never leaves half a
partition behind). Table names interpolated into SQL go through `qualified` first.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import duckdb
import pandas as pd

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """`begin`, then `commit` when the block ends, `rollback` (and re-raise) when it raises.

    A failed `commit` has already ended the transaction, so the rollback that follows finds none;
    that second error is not allowed to hide the first.
    """
    conn.execute("begin transaction")
    try:
        yield conn
        conn.execute("commit")
    except BaseException:
        try:
            conn.execute("rollback")
        except duckdb.TransactionException:
            pass  # the failed statement was the commit itself: nothing is left to roll back
        raise


def read_sql(package: str, name: str) -> str:
    """Read a .sql file shipped inside the package (works from an installed wheel too)."""
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


def sql_code_version(package: str, *names: str) -> str:
    """A Dagster `code_version` for an asset built by packaged SQL files: a hash of their text.

    Editing a `.sql` file changes it, so the UI marks the asset (and what is below it) stale until
    it is materialized again with the new SQL.
    """
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode())
        digest.update(read_sql(package, name).encode())
    return digest.hexdigest()[:16]


def split_statements(sql: str) -> list[str]:
    """Split a SQL script on statement-ending semicolons (our files keep `;` at line ends)."""
    parts = re.split(r";\s*(?:\n|$)", sql)
    return [p.strip() for p in parts if p.strip() and not _only_comments(p)]


def _only_comments(sql: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in sql.splitlines())


def run_script(conn: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None) -> None:
    """Execute each statement of a script, passing only the parameters it uses."""
    for statement in split_statements(sql):
        used = {k: v for k, v in (params or {}).items() if f"${k}" in statement}
        conn.execute(statement, used) if used else conn.execute(statement)


def qualified(table: str) -> str:
    """Validate a `schema.table` name before it is interpolated into SQL."""
    parts = table.split(".")
    if len(parts) != 2 or not all(_IDENTIFIER.match(p) for p in parts):
        raise ValueError(f"not a schema-qualified table name: {table!r}")
    return table


def replace_table(conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> int:
    """Replace `schema.table` with the frame's rows: re-running an asset never duplicates."""
    name = qualified(table)
    conn.execute(f"create schema if not exists {name.split('.')[0]}")
    conn.register("_frame_to_write", frame)
    try:
        conn.execute(f"create or replace table {name} as select * from _frame_to_write")
    finally:
        conn.unregister("_frame_to_write")
    return len(frame)


def table_exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = qualified(table).split(".")
    return bool(
        conn.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, name],
        ).fetchone()[0]
    )


def row_count(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(conn.execute(f"select count(*) from {qualified(table)}").fetchone()[0])
