"""HTML reports under `reports_dir()`: browser links to them and pruning by a retention setting.

Browsers refuse `file://` links from an http page, so `make ui` serves the reports folder
read-only on 127.0.0.1 (`python -m http.server --bind 127.0.0.1 --directory data/reports 3001`)
and assets link to `reports_url()/<file name>` with `MetadataValue.url`.

Each report kind has its own file-name prefix (`clv_explainability_`, `drift_`, `backtest_`);
pruning only ever touches files of that prefix with the `.html` suffix, newest kept by name
(the names end in a UTC timestamp), so a file someone else put in the folder is never deleted.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from clv_platform.settings import load_settings


def reports_dir() -> Path:
    """HTML reports (explainability, drift, backtest): `CLV_REPORTS_DIR`, else `<data dir>/reports`."""
    return load_settings().reports_dir


def reports_url() -> str:
    """Where `make ui` serves `reports_dir()` read-only (`CLV_REPORTS_URL`); asset links point there."""
    return load_settings().reports_url


def report_retention() -> int:
    """Newest reports kept per kind (`CLV_REPORT_RETENTION`, default 5, at least 1)."""
    return load_settings().report_retention


def report_url(path: str | Path) -> str:
    """The http address of a report inside `reports_dir()`; raises for a file elsewhere."""
    path = Path(path).resolve()
    folder = reports_dir()
    try:
        relative = path.relative_to(folder)
    except ValueError:
        raise ValueError(f"{path} is not inside the served reports folder {folder}") from None
    return f"{reports_url()}/" + ("" if relative == Path(".") else relative.as_posix())


def prune_reports(prefix: str, keep: int | None = None, folder: Path | None = None) -> list[Path]:
    """Delete all but the `keep` newest `<prefix>*.html` reports; returns the deleted paths."""
    keep = report_retention() if keep is None else keep
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    if not prefix:
        raise ValueError("a report prefix is required: pruning never matches every file")
    folder = Path(folder) if folder is not None else reports_dir()
    reports = sorted(p for p in folder.glob(f"{prefix}*.html") if p.is_file())
    removed = reports[:-keep] if len(reports) > keep else []
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def float_metrics(metrics: dict | None, prefix: str = "") -> dict[str, float]:
    """Every finite number of a metrics dict as its own top-level float metadata entry.

    Dagster plots a float metadata key across materializations (the asset's Plots tab); one JSON
    blob is not plotted. Nested dicts become `<prefix><outer>_<inner>`; NaN/inf, booleans and text
    are left out (they would break the plot), counts stay numbers.
    """
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(float_metrics(value, prefix=f"{name}_"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
            out[name] = float(value)
    return out


def svg_chart_start(width: int, height: int, left: float, title: str) -> list[str]:
    """The opening tag and bold title of an inline SVG chart, so every report's charts look alike."""
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
            f'<text x="{left}" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>']


def svg_value_axis(left: float, top: float, plot_w: float, plot_h: float, y_max: float,
                   grid: bool = True) -> list[str]:
    """Five labels from 0 to ``y_max`` on a chart's left edge (with light grid lines when ``grid``).

    One axis for the backtest reports' charts, so their scales read the same way.
    """
    parts = []
    for i in range(5):
        value = y_max * i / 4
        y = top + plot_h - value / y_max * plot_h
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{value:,.0f}</text>')
        if grid:
            parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
    return parts
