"""One inbox file imported the way the `import_inbox_file` job imports it, for the file tests."""

import textwrap

import dagster as dg
from dagster_duckdb import DuckDBResource

from clv_platform.ingestion.file_assets import inbox_file_partitions, raw_file_transactions


def import_file(data_env, file_name: str, text: str | bytes | None = None):
    """Materialize `raw/file_transactions` for `file_name` of the inbox into `data_env`'s clv.duckdb
    (written first when `text` is given: a str is dedented and saved as UTF-8, bytes as they are);
    returns (the run's result, without raising on a failed step, and the database path)."""
    path = data_env / "inbox" / file_name
    if isinstance(text, str):
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    elif isinstance(text, bytes):
        path.write_bytes(text)
    db = data_env / "clv.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(inbox_file_partitions.name, [file_name])
    result = dg.materialize(
        [raw_file_transactions], partition_key=file_name, instance=instance, raise_on_error=False,
        resources={"duckdb": DuckDBResource(database=str(db))},
    )
    return result, db
