"""raw/file_transactions: transaction exports dropped into data/inbox, one partition per file."""


from datetime import datetime, timezone

import dagster as dg
from dagster_duckdb import DuckDBResource

from clv_platform.ingestion.file_import import UnreadableFileError, parse_export
from clv_platform.ingestion.raw_tables import ensure_raw_tables
from clv_platform.resources.storage import inbox_dir

inbox_file_partitions = dg.DynamicPartitionsDefinition(name="inbox_files")


@dg.asset(
    key=["raw", "file_transactions"],
    group_name="raw",
    partitions_def=inbox_file_partitions,
    kinds={"csv", "excel", "duckdb"},
    owners=["team:data-engineering"],
)
def raw_file_transactions(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Rows of one imported CSV/Excel export (the partition key is the file name), cells as text.

    The file is read completely before anything is written, and its rows replace the
    previous import of the same file in one transaction: an unreadable file fails the
    run and leaves everything loaded before untouched.
    """
    file_name = context.partition_key
    path = inbox_dir() / file_name
    if not path.is_file():
        raise dg.Failure(description=f"{file_name}: file not found in {inbox_dir()}")
    try:
        frame = parse_export(path, datetime.now(timezone.utc).replace(tzinfo=None))
    except UnreadableFileError as exc:
        raise dg.Failure(description=str(exc)) from exc

    with duckdb.get_connection() as conn:
        ensure_raw_tables(conn)
        conn.execute("begin transaction")
        try:
            conn.execute("delete from raw.file_transactions where file_name = ?", [file_name])
            conn.register("_file_batch", frame)
            conn.execute(
                """
                insert into raw.file_transactions
                select file_name, file_format, row_number, order_id, customer_id, order_date, product_id,
                       description, quantity, unit_price, amount, country, payload::json, ingested_at
                from _file_batch
                """
            )
            conn.unregister("_file_batch")
            conn.execute("commit")
        except Exception:
            conn.execute("rollback")
            raise
    context.log.info(f"{file_name}: {len(frame)} rows imported as {frame['file_format'].iat[0] if len(frame) else 'empty'}")
    return dg.MaterializeResult(
        metadata={
            "file": file_name,
            "format": frame["file_format"].iat[0] if len(frame) else "empty",
            "dagster/row_count": len(frame),
            "preview": dg.MetadataValue.md(frame.drop(columns=["payload"]).head(5).to_markdown(index=False)),
        }
    )
