"""raw/file_transactions: transaction exports dropped into data/inbox, one partition per file."""


from contextlib import closing
from dataclasses import replace
from datetime import datetime, timezone

import dagster as dg
from dagster_duckdb import DuckDBResource

from clv_platform.ingestion.file_import import (
    UnreadableFileError, content_hash, read_export, replace_file_rows, spooled_export,
)
from clv_platform.ingestion.raw_tables import ensure_raw_tables
from clv_platform.ingestion.store_source import fail_unless_store_matches
from clv_platform.resources.storage import StorageResource, settings_of

inbox_file_partitions = dg.DynamicPartitionsDefinition(name="inbox_files")


RAW_FILE_TRANSACTIONS = dg.AssetKey(["raw", "file_transactions"])  # the table raw.file_transactions


@dg.asset(
    key=RAW_FILE_TRANSACTIONS,
    group_name="raw",
    partitions_def=inbox_file_partitions,
    kinds={"csv", "excel", "duckdb"},
    owners=["team:data-engineering"],
)
def raw_file_transactions(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Rows of one imported CSV/Excel export (the partition key is the file name), cells as text.

    Its rows replace the previous import of the same file in one transaction, once the whole file
    has been read: a CSV is read a batch of rows at a time into a scratch file (``file_import``'s
    ``read_export`` and ``spooled_export``: memory bounded by a batch, not the file), so a file
    refused anywhere, on its first line or its last, fails the run and leaves everything loaded
    before untouched, and the store is opened only for the replacement.
    """
    file_name = context.partition_key
    settings = settings_of(duckdb)
    if not isinstance(duckdb, StorageResource):  # a test's own plain resource: this asset is the files store
        settings = replace(settings, source="files")
    not_imported = (f"{file_name}: not imported (exports are imported by a files-only store: CLV_SOURCE=files, "
                    "see README 'Run on your own export'). ")
    if settings.source != "files":  # a demo or live database never takes rows from the inbox (launched by hand)
        raise dg.Failure(description=f"{not_imported}This run has CLV_SOURCE={settings.source}: nothing was read "
                         f"or written to {settings.duckdb_path}.", allow_retries=False)
    fail_unless_store_matches(duckdb, settings, context=not_imported)
    inbox = settings.inbox_dir
    path = inbox / file_name
    if not path.is_file():
        raise dg.Failure(description=f"{file_name}: file not found in {inbox}")
    digest = content_hash(path)
    try:
        reading, batches = read_export(path, datetime.now(timezone.utc).replace(tzinfo=None), settings.file_currency,
                                       digest, dict(settings.file_columns), settings.file_sheets)
        with spooled_export(batches) as spool:
            # closed on an error too (a plain DuckDBResource closes only after a clean block), so that
            # a later connection of the same process is not refused while this one stays open
            with duckdb.get_connection() as conn, closing(conn):
                ensure_raw_tables(conn)
                replace_file_rows(conn, file_name, spool, reading)
    except UnreadableFileError as exc:
        raise dg.Failure(description=str(exc)) from exc
    file_format = reading.file_format
    malformed = reading.malformed
    sheets = reading.rows_per_sheet
    titles = reading.title_lines
    not_imported = reading.sheets_not_imported
    returned = reading.returned_orders
    for sheet, report in returned.items():
        if report["orders_not_in_file"]:
            context.log.warning(
                f"{file_name}: sheet '{sheet}' lists {report['orders_not_in_file']} returned orders that no sheet of the "
                f"file holds (e.g. {report['not_in_file_examples']}); an order imported from another file stays "
                "as imported there")
    read_from = ", ".join(f"{column} <- {header!r}" for column, header in reading.columns.items())
    context.log.info(f"{file_name}: {reading.rows} rows imported as {file_format} ({malformed} malformed lines; "
                     f"{read_from})"
                     + (f"; title lines above the header skipped: {titles}" if titles else "")
                     + (f"; sheets not read as transactions: {not_imported}" if not_imported else ""))
    return dg.MaterializeResult(
        metadata={
            "file": file_name,
            "format": file_format,
            "content_sha256": digest,
            "dagster/row_count": reading.rows,
            "malformed_lines": malformed,
            # a report's title lines above the header, skipped (file_import.find_header)
            "title_lines_skipped": dg.MetadataValue.json(titles),
            # which header each column was read from (the looser spellings and store.toml names included)
            "columns_read_from": dg.MetadataValue.json(reading.columns),
            **({"delimiter": reading.delimiter} if reading.delimiter else {}),
            "rows_per_sheet": dg.MetadataValue.json({str(k): int(v) for k, v in sheets.items()}),
            # a workbook's sheets that are no transactions (a returns list, a lookup list), with why
            "sheets_not_imported": dg.MetadataValue.json(not_imported),
            # per returns sheet: orders listed, found in the file and marked returned, not found
            "returned_orders": dg.MetadataValue.json(returned),
            "currencies": dg.MetadataValue.json(dict(sorted(reading.currencies.items(), key=lambda kv: -kv[1]))),
            # the store's own header names, when it has any (store.toml [files.columns])
            **({"named_columns": dg.MetadataValue.json(dict(settings.file_columns))} if settings.file_columns else {}),
            # the only sheets of a workbook read, when the store names them (store.toml [files] sheets)
            **({"named_sheets": dg.MetadataValue.json(list(settings.file_sheets))} if settings.file_sheets else {}),
            "preview": dg.MetadataValue.md(reading.preview.drop(columns=["payload"]).to_markdown(index=False)),
        }
    )
