"""Files for people and tools outside DuckDB: `exports/customer_scores_<date>.parquet` and `.csv`.

One pair of files per scoring date (the date of `scored_at`). Re-running a scoring on the same
date overwrites that date's files; each file is written under a temporary name and renamed into
place, so a reader (or a sync job picking the folder up) never sees a half-written export.
"""

import os
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb

from clv_platform.settings import load_settings

EXPORT_TABLE = "marts.customer_scores"
FORMATS = {"parquet": "(format parquet, compression zstd)", "csv": "(format csv, header true)"}


def exports_dir() -> Path:
    """`CLV_EXPORT_DIR`, else `<data dir>/exports` (see `settings.py`)."""
    return load_settings().export_dir


def scoring_date(conn: duckdb.DuckDBPyConnection) -> date:
    """The date of the latest `scored_at` in the customer scores mart (today, UTC, if it has none)."""
    value = conn.execute(f"select max(scored_at)::date from {EXPORT_TABLE}").fetchone()[0]
    return value or datetime.now(timezone.utc).date()


def export_paths(on: date, folder: Path | None = None) -> dict[str, Path]:
    folder = folder or exports_dir()
    return {fmt: folder / f"customer_scores_{on.isoformat()}.{fmt}" for fmt in FORMATS}


def exports_on_disk(folder: Path | None = None) -> tuple[int, int]:
    """(dated export files, their total bytes) in the exports folder. Nothing prunes them: an old
    export holds columns that monitoring.score_history does not keep, so the folder grows by one
    pair a scoring date (about 430 MB at 1,000,000 customers), and the asset reports its size."""
    files = [p for p in (folder or exports_dir()).glob("customer_scores_*.*") if p.suffix.lstrip(".") in FORMATS]
    return len(files), sum(p.stat().st_size for p in files)


def export_customer_scores(
    conn: duckdb.DuckDBPyConnection, on: date | None = None, folder: Path | None = None
) -> dict[str, Path]:
    """Write the customer scores mart as Parquet and CSV for the scoring date; returns the paths."""
    on = on or scoring_date(conn)
    paths = export_paths(on, folder)
    for fmt, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp")
        quoted = "'" + str(temp).replace("'", "''") + "'"
        try:
            conn.execute(
                f"copy (select * from {EXPORT_TABLE} order by clv_rank, customer_id) to {quoted} {FORMATS[fmt]}"
            )
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
    return paths
