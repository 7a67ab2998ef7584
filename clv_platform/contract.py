"""The data contract's table and column descriptions, read from `data_contract.toml`.

One file says what every published column means (unit, currency, horizon, discounting); from it
come the Dagster column schema of each table asset (`dagster/column_schema`, with the column
types DuckDB reports) and the `COMMENT ON TABLE` / `COMMENT ON COLUMN` of the working database
and the analyst snapshot, so the UI, `duckdb_columns()` and `describe` all tell the same story.

Descriptions may use `{horizon_days}`, `{discount_rate}` and `{label_horizon_days}`: they are
filled from `models/clv.toml`, so the horizon a column states is the one the models use.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import dagster as dg
import duckdb

from clv_platform.core.horizon import load_horizon

CONTRACT_FILE = "data_contract.toml"
UNDESCRIBED = "(no description in data_contract.toml)"


@dataclass(frozen=True)
class TableContract:
    table: str
    description: str = ""
    order_by: str | None = None
    columns: dict[str, str] = field(default_factory=dict)


def _placeholders() -> dict[str, object]:
    config = load_horizon()
    return {
        "horizon_days": config.horizon_days,
        "label_horizon_days": config.label_horizon_days,
        "discount_rate": f"{config.annual_discount_rate:.0%}",
    }


@lru_cache(maxsize=1)
def load_contract() -> dict[str, TableContract]:
    """`schema.table` -> its contract; raises on a malformed entry rather than skipping it."""
    raw = tomllib.loads(resources.files("clv_platform").joinpath(CONTRACT_FILE).read_text(encoding="utf-8"))
    values = _placeholders()
    out: dict[str, TableContract] = {}
    for schema, tables in raw.items():
        for name, spec in tables.items():
            table = f"{schema}.{name}"
            columns = spec.get("columns", {})
            if not isinstance(columns, dict) or not all(isinstance(v, str) for v in columns.values()):
                raise ValueError(f"{CONTRACT_FILE}: [{table}.columns] must map column names to descriptions")
            out[table] = TableContract(
                table=table,
                description=str(spec.get("description", "")).format(**values).strip(),
                order_by=spec.get("order_by"),
                columns={c: " ".join(d.format(**values).split()) for c, d in columns.items()},
            )
    return out


def table_contract(table: str) -> TableContract | None:
    return load_contract().get(table)


def describe(table: str, column: str) -> str | None:
    contract = table_contract(table)
    return contract.columns.get(column) if contract else None


def order_by(table: str) -> str | None:
    """The order analysts expect the table's rows in (e.g. segment summaries by value)."""
    contract = table_contract(table)
    return contract.order_by if contract else None


def table_columns(conn: duckdb.DuckDBPyConnection, table: str, catalog: str | None = None) -> list[tuple[str, str]]:
    """(name, DuckDB type) of each column of ``schema.table``, in table order."""
    schema, name = table.split(".")
    return [
        (str(c), str(t))
        for c, t in conn.execute(
            "select column_name, data_type from duckdb_columns() "
            "where database_name = coalesce(?, current_database()) and schema_name = ? and table_name = ? "
            "order by column_index",
            [catalog, schema, name],
        ).fetchall()
    ]


def column_schema(conn: duckdb.DuckDBPyConnection, table: str) -> dg.TableSchema:
    """The table's columns with their DuckDB types and contract descriptions, in table order."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=column, type=kind.lower(), description=describe(table, column) or UNDESCRIBED)
            for column, kind in table_columns(conn, table)
        ]
    )


def column_metadata(conn: duckdb.DuckDBPyConnection, table: str) -> dict[str, dg.TableSchema]:
    """`{"dagster/column_schema": ...}`: what every table asset adds to its materialization metadata."""
    return {"dagster/column_schema": column_schema(conn, table)}


def undescribed(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Columns of `table` that the contract does not describe."""
    return [c for c, _ in table_columns(conn, table) if not describe(table, c)]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def apply_comments(
    conn: duckdb.DuckDBPyConnection,
    catalog: str | None = None,
    tables: list[str] | None = None,
    schemas: tuple[str, ...] | None = None,
    own_transaction: bool = True,
) -> int:
    """Write the contract's descriptions as DuckDB comments on the tables that exist.

    The comments are one commit of their own; a caller that holds a transaction open passes
    ``own_transaction=False`` and they become part of it.

    `catalog` is an attached database (the snapshot being written), else the current one.
    `create or replace` drops comments, so every asset that recreates a table calls this after.
    Returns the number of column comments written.
    """
    prefix = f"{catalog}." if catalog else ""
    statements: list[str] = []
    written = 0
    for table, spec in load_contract().items():
        if tables is not None and table not in tables:
            continue
        if schemas is not None and table.split(".")[0] not in schemas:
            continue
        present = {c for c, _ in table_columns(conn, table, catalog)}
        if not present:
            continue
        if spec.description:
            statements.append(f"comment on table {prefix}{table} is {_literal(spec.description)}")
        for column, text in spec.columns.items():
            if column in present:
                statements.append(f'comment on column {prefix}{table}."{column}" is {_literal(text)}')
                written += 1
    _in_one_transaction(conn, statements, own_transaction)
    return written


def _in_one_transaction(conn: duckdb.DuckDBPyConnection, statements: list[str], own: bool) -> None:
    """Run ``statements`` as one commit (one WAL sync, not one per column comment: about 0.5 s per
    30 comments on a busy disk), or, with ``own`` False, inside the caller's open transaction
    (DuckDB has no nested transactions, and a failed ``begin`` aborts the caller's)."""
    if not statements:
        return
    if not own:
        for statement in statements:
            conn.execute(statement)
        return
    conn.execute("begin transaction")
    try:
        for statement in statements:
            conn.execute(statement)
        conn.execute("commit")
    except BaseException:
        try:
            conn.execute("rollback")
        except duckdb.TransactionException:
            pass
        raise
