"""Files for people and tools outside DuckDB: `exports/customer_scores_<date>.parquet` and `.csv`.

One file per format and scoring date (the date of `scored_at`; the formats are store.toml
[exports] formats). Re-running a scoring on the same date overwrites that date's files; each file
is written under a temporary name and renamed into place, so a reader (or a sync job picking the
folder up) never sees a half-written export.

The folder grows by one export a night (about 360 MB for both formats at 1,000,000 customers).
Nothing in it can be fetched again (an old export holds columns monitoring.score_history does
not keep), so nothing is deleted unless the store asks for it: with [exports] keep_dates = N the
export keeps the newest N scoring dates' files and deletes the older ones after a successful write.
"""

import os
import re
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb

from clv_platform import contract
from clv_platform.settings import load_settings

EXPORT_TABLE = "marts.customer_scores"
FORMATS = {"parquet": "(format parquet, compression zstd)", "csv": "(format csv, header true)"}
CSV_DECIMALS = 6
"""Decimals of the CSV's DOUBLE columns (probabilities, expected purchases, percentiles; money is in
cents already). DuckDB writes a double with all 17 significant digits (0.9086699666750278): noise
for a spreadsheet or a sync tool, and formatting it was a third of the CSV's write time at 1,000,000
customers (2.9-3.8 s -> 2.0-2.4 s, 362 -> 300 MB). The Parquet file and the mart keep full precision."""


def exports_dir() -> Path:
    """`CLV_EXPORT_DIR`, else `<data dir>/exports` (see `settings.py`)."""
    return load_settings().export_dir


def scoring_date(conn: duckdb.DuckDBPyConnection) -> date:
    """The date of the latest `scored_at` in the customer scores mart (today, UTC, if it has none)."""
    value = conn.execute(f"select max(scored_at)::date from {EXPORT_TABLE}").fetchone()[0]
    return value or datetime.now(timezone.utc).date()


_EXPORT_NAME = re.compile(r"customer_scores_(\d{4}-\d{2}-\d{2})\.(" + "|".join(FORMATS) + ")")


def export_paths(on: date, folder: Path | None = None, formats=tuple(FORMATS)) -> dict[str, Path]:
    folder = folder or exports_dir()
    return {fmt: folder / f"customer_scores_{on.isoformat()}.{fmt}" for fmt in formats}


def dated_exports(folder: Path | None = None) -> dict[date, list[Path]]:
    """The export files in the folder by scoring date: only names this module writes
    (`customer_scores_<yyyy-mm-dd>.<format>`); any other file there is never counted or touched."""
    found: dict[date, list[Path]] = {}
    for path in (folder or exports_dir()).glob("customer_scores_*.*"):
        match = _EXPORT_NAME.fullmatch(path.name)
        if match and path.is_file():
            try:
                found.setdefault(date.fromisoformat(match.group(1)), []).append(path)
            except ValueError:  # a name like customer_scores_2026-13-45.csv is not ours
                continue
    return found


def exports_on_disk(folder: Path | None = None) -> tuple[int, int]:
    """(dated export files, their total bytes) in the exports folder; the asset reports them."""
    files = [p for paths in dated_exports(folder).values() for p in paths]
    return len(files), sum(p.stat().st_size for p in files)


def prune_exports(folder: Path, keep_dates: int, written: date) -> list[Path]:
    """Delete the export files of every scoring date but the newest ``keep_dates`` (0: none is
    deleted); returns the deleted paths. The date just written (``written``) always stays, even
    when a rerun of an older date makes newer ones exist."""
    if keep_dates <= 0:
        return []
    exports = dated_exports(folder)
    kept = set(sorted(exports, reverse=True)[:keep_dates]) | {written}
    deleted = []
    for on in sorted(set(exports) - kept):
        for path in sorted(exports[on]):
            path.unlink(missing_ok=True)
            deleted.append(path)
    return deleted


def export_customer_scores(
    conn: duckdb.DuckDBPyConnection, on: date | None = None, folder: Path | None = None, formats=tuple(FORMATS)
) -> dict[str, Path]:
    """Write the customer scores mart in ``formats`` for the scoring date; returns the paths.

    A file of the same date in a format no longer written (the setting changed between two runs
    of one date) is deleted: it holds the earlier run's scores and would contradict the new files."""
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise ValueError(f"export formats must be a non-empty subset of {list(FORMATS)}, got {list(formats)}")
    on = on or scoring_date(conn)
    paths = export_paths(on, folder, formats)
    columns = {"parquet": "*", "csv": _csv_columns(conn)}
    for fmt, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp")
        quoted = "'" + str(temp).replace("'", "''") + "'"
        try:
            conn.execute(
                f"copy (select {columns[fmt]} from {EXPORT_TABLE} order by clv_rank, customer_id) "
                f"to {quoted} {FORMATS[fmt]}"
            )
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
    for stale in export_paths(on, folder, [f for f in FORMATS if f not in formats]).values():
        stale.unlink(missing_ok=True)
    return paths


def _csv_columns(conn: duckdb.DuckDBPyConnection) -> str:
    """The mart's columns in order, its DOUBLE columns rounded to ``CSV_DECIMALS``."""
    return ", ".join(f'round("{name}", {CSV_DECIMALS}) as "{name}"' if kind == "DOUBLE" else f'"{name}"'
                     for name, kind in contract.table_columns(conn, EXPORT_TABLE))
