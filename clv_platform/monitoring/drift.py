"""Drift of a current frame against a reference frame, measured with Evidently 0.7.

Pure functions (frames in, results out); their thresholds come from ``monitoring.toml``, parsed
in ``clv_platform.core.thresholds`` (the asset checks and the registration gate read them too).

* Feature drift: one Evidently ``ValueDrift`` per feature column, with the method and threshold
  ``DataDriftPreset`` would give it, gives a drift score, the method and a drifted flag per column. The methods are *distances* by default (normed
  Wasserstein for numbers, Jensen-Shannon for categories), not p-value tests: with thousands
  of customers a K-S test flags differences far too small to matter for a model, so a p-value
  threshold would have the retrain sensor firing on every run.
* The share of drifted columns decides the overall flag: drift is declared when it reaches
  ``drift_share_threshold``. Columns with fewer than ``min_rows`` non-null values on either side
  are skipped (and reported as skipped): a distance between a handful of values is noise.
* Prediction drift: the same per-column measurement on the prediction column, reported apart
  from the feature share (a model shift is a different question from a data shift).
* Large frames: each side (features and predictions alike) is measured on a deterministic
  sample of at most ``max_rows`` rows (``monitoring.toml``; 0 = every row). The distances are
  estimates of a distribution's shape, stable to the second decimal at tens of thousands of
  rows, while Evidently's cost (and the HTML report rendered from the same snapshot) grows with
  the rows: a 100k-customer comparison took 18 s, a million would take minutes.
* Segment-share changes: the share of each category of two categorical series (reference,
  current) and the change in percentage points, e.g. how the CLV tiers moved.

Evidently is imported inside the functions that use it: importing it takes seconds, and the
code location (which imports this module through the checks) should load fast.
"""

from __future__ import annotations

import re
import warnings
from html import escape
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clv_platform.resources.storage import reports_dir

# The configuration (dataclasses and `load_config`) lives in `clv_platform.core.thresholds`, below
# the checks and the models that read it too; these names are re-exported for the monitoring code.
from clv_platform.core.thresholds import (  # noqa: E402,F401
    CheckSettings,
    DriftSettings,
    ModelRegressionSettings,
    MonitoringConfig,
    PerformanceSettings,
    default_config_path,
    load_config,
)


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str  # "num" or "cat"
    method: str
    threshold: float
    score: float
    drifted: bool


@dataclass
class DriftResult:
    """Per-column drift, the share of drifted columns and the overall flag of one comparison."""

    columns: list[ColumnDrift]
    share_drifted: float
    drift_detected: bool
    drift_share_threshold: float
    prediction: ColumnDrift | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    snapshot: Any = None  # the Evidently snapshot, for the HTML report

    def to_frame(self) -> pd.DataFrame:
        """One row per measured column; the prediction column last, marked ``is_prediction``."""
        rows = [{**vars(c), "is_prediction": False} for c in self.columns]
        if self.prediction is not None:
            rows.append({**vars(self.prediction), "is_prediction": True})
        return pd.DataFrame(
            rows, columns=["column", "kind", "method", "threshold", "score", "drifted", "is_prediction"]
        )

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]


# ----------------------------------------------------------------------------- drift


def _kind(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        return "cat"
    return "num"


def _prepare(frame: pd.DataFrame, columns: list[str], kinds: dict[str, str]) -> pd.DataFrame:
    """Numbers as float (nullable Int/decimal → float, ±inf → NaN), categories as strings."""
    out = pd.DataFrame(index=frame.index)
    for column in columns:
        if kinds[column] == "num":
            values = pd.to_numeric(frame[column], errors="coerce").astype(float)
            out[column] = values.replace([np.inf, -np.inf], np.nan)
        else:
            out[column] = frame[column].astype("string").astype(object).where(frame[column].notna(), None)
    return out


def sample_rows(data, max_rows: int, seed: int = 0):
    """A deterministic sample of at most ``max_rows`` rows of a frame or series (itself if not larger).

    Frames with a ``customer_id`` column keep the customers with the smallest seeded hash of
    their id, so the reference and the current sample hold (mostly) the same customers; anything
    else is sampled with ``seed``. Row order is kept.
    """
    if not max_rows or len(data) <= max_rows:
        return data
    if isinstance(data, pd.DataFrame) and "customer_id" in data:
        keys = pd.util.hash_pandas_object(data["customer_id"].astype(str), index=False).to_numpy()
        return data.iloc[np.sort(np.argpartition(keys, max_rows - 1)[:max_rows])]
    return data.iloc[np.sort(np.random.default_rng(seed).choice(len(data), size=max_rows, replace=False))]


def _usable(reference: pd.Series, current: pd.Series, min_rows: int) -> str | None:
    """Why a column cannot be measured, or None when it can."""
    ref_n, cur_n = int(reference.notna().sum()), int(current.notna().sum())
    if ref_n < min_rows or cur_n < min_rows:
        return f"too few non-null values (reference {ref_n}, current {cur_n}, need {min_rows})"
    return None


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str] | None = None,
    settings: DriftSettings | None = None,
    reference_predictions: pd.Series | None = None,
    current_predictions: pd.Series | None = None,
) -> DriftResult:
    """Compare ``current`` with ``reference`` column by column in one Evidently report.

    Each side is first cut to ``settings.max_rows`` rows (``sample_rows``; 0 = all rows).

    ``columns`` defaults to the columns both frames share. When both prediction series are
    given, their drift is measured too (under ``settings.prediction_column``, with the prediction
    method and threshold) and kept out of the share of drifted features. Predictions may come
    from other rows than the features (e.g. the previous score snapshot): every measurement is
    univariate and drops missing values, so the prediction rows are appended below the feature
    rows rather than joined to them.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.legacy.options.data_drift import DataDriftOptions
    from evidently.metrics import ValueDrift

    settings = settings or DriftSettings()
    reference = sample_rows(reference, settings.max_rows, settings.sample_seed)
    current = sample_rows(current, settings.max_rows, settings.sample_seed)
    if reference_predictions is not None:
        reference_predictions = sample_rows(reference_predictions, settings.max_rows, settings.sample_seed)
    if current_predictions is not None:
        current_predictions = sample_rows(current_predictions, settings.max_rows, settings.sample_seed)
    prediction = settings.prediction_column
    if columns is None:
        columns = [c for c in reference.columns if c in current.columns]
    columns = [c for c in columns if c != prediction]
    missing = [c for c in columns if c not in reference.columns or c not in current.columns]
    if missing:
        raise KeyError(f"columns missing from the reference or current frame: {missing}")

    kinds = {c: _kind(reference[c]) for c in columns}
    skipped: dict[str, str] = {}
    measured = []
    for column in columns:
        reason = _usable(reference[column], current[column], settings.min_rows)
        if reason:
            skipped[column] = reason
        else:
            measured.append(column)

    predict = reference_predictions is not None and current_predictions is not None
    if predict:
        kinds[prediction] = "num"
        reason = _usable(reference_predictions, current_predictions, settings.min_rows)
        if reason:
            skipped[prediction] = reason
            predict = False

    all_columns = measured + ([prediction] if predict else [])
    if not all_columns:
        return DriftResult([], 0.0, False, settings.drift_share_threshold, None, skipped, None)

    # One ValueDrift per column, configured as DataDriftPreset configures its own (the same
    # DataDriftOptions resolve each column's method and threshold), without the preset's extras:
    # its DriftedColumnsCount and its rendered DataDriftTable each measured every column again
    # (three passes in all) and drew a second set of plots, about 60 % of the report's time. The
    # decision never read them: the share of drifted columns is computed below from the ValueDrift
    # tests alone, so it is unchanged.
    options = DataDriftOptions(
        drift_share=settings.drift_share_threshold,
        num_features_stattest=settings.num_method,
        cat_features_stattest=settings.cat_method,
        num_features_threshold=settings.num_threshold,
        cat_features_threshold=settings.cat_threshold,
        per_feature_threshold={c: float(t) for c, t in settings.per_column_threshold.items() if c in measured} or None,
    )
    metrics: list = [
        ValueDrift(column=column, method=_method_name(options.get_feature_stattest_func(column, kinds[column])),
                   threshold=options.get_threshold(column, kinds[column]))
        for column in measured
    ]
    if predict:
        metrics.append(
            ValueDrift(column=prediction, method=settings.prediction_method, threshold=settings.prediction_threshold)
        )
    definition = DataDefinition(
        numerical_columns=[c for c in all_columns if kinds[c] == "num"],
        categorical_columns=[c for c in all_columns if kinds[c] == "cat"],
    )
    ref_frame = _prepare(reference, measured, kinds)
    cur_frame = _prepare(current, measured, kinds)
    if predict:
        ref_frame = _with_predictions(ref_frame, reference_predictions, prediction)
        cur_frame = _with_predictions(cur_frame, current_predictions, prediction)
    ref = Dataset.from_pandas(ref_frame, data_definition=definition)
    cur = Dataset.from_pandas(cur_frame, data_definition=definition)
    # Constant columns make Evidently's correlation widgets divide by a zero deviation; the
    # drift scores are unaffected, so the warning is silenced here only, not globally.
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = Report(metrics, include_tests=True).run(current_data=cur, reference_data=ref)

    results = _column_results(snapshot.dict(), kinds)
    feature_results = [results[c] for c in measured]
    share = sum(r.drifted for r in feature_results) / len(feature_results) if feature_results else 0.0
    return DriftResult(
        columns=feature_results,
        share_drifted=float(share),
        drift_detected=bool(feature_results) and share >= settings.drift_share_threshold,
        drift_share_threshold=settings.drift_share_threshold,
        prediction=results.get(prediction) if predict else None,
        skipped=skipped,
        snapshot=snapshot,
    )


def warm_up() -> None:
    """Import Evidently and render one tiny report, so the drift step of this process finds
    Evidently and the Plotly modules its widgets validate already loaded (`core.warmup`, which
    runs this in a background thread while a run's first steps execute).

    It builds the report as `detect_drift` does (a number, a category and the prediction column,
    each a ValueDrift) but without `detect_drift`'s `warnings.catch_warnings`, which swaps the
    process-wide warning filters and is not safe off the main thread; the data are not constant,
    so nothing warns."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    settings = DriftSettings()
    rng = np.random.default_rng(0)
    n = 200
    frames = [pd.DataFrame({"number": rng.normal(shift, 1.0, n), "category": rng.choice(["a", "b", "c"], n),
                            "prediction": rng.gamma(2.0, 10.0 + shift, n)}) for shift in (0.0, 0.5)]
    definition = DataDefinition(numerical_columns=["number", "prediction"], categorical_columns=["category"])
    reference, current = (Dataset.from_pandas(frame, data_definition=definition) for frame in frames)
    metrics = [ValueDrift(column="number", method=settings.num_method, threshold=settings.num_threshold),
               ValueDrift(column="category", method=settings.cat_method, threshold=settings.cat_threshold),
               ValueDrift(column="prediction", method=settings.prediction_method,
                          threshold=settings.prediction_threshold)]
    Report(metrics, include_tests=True).run(current_data=current, reference_data=reference).get_html_str(as_iframe=False)


def _method_name(method):
    """A drift method as ValueDrift takes it (DataDriftPreset's conversion: a StatTest by its name)."""
    return getattr(method, "name", method)


def _with_predictions(features: pd.DataFrame, predictions: pd.Series, column: str) -> pd.DataFrame:
    values = pd.to_numeric(predictions, errors="coerce").astype(float).replace([np.inf, -np.inf], np.nan)
    block = pd.DataFrame({column: values.to_numpy()})
    if features.shape[1] == 0:
        return block
    return pd.concat([features.reset_index(drop=True), block], ignore_index=True)


def _column_results(report: dict, kinds: dict[str, str]) -> dict[str, ColumnDrift]:
    """Per-column score/method/threshold from the ValueDrift metrics, drifted from their tests.

    The drifted flag is read from Evidently's own test status rather than recomputed: for a
    distance a high score means drift, for a p-value test a low one, and Evidently knows which.
    """
    status = {}
    for test in report.get("tests", []):
        metric_id = (test.get("metric_config") or {}).get("metric_id")
        if metric_id:
            status[metric_id] = str(getattr(test.get("status"), "value", test.get("status"))).upper()
    out: dict[str, ColumnDrift] = {}
    for metric in report.get("metrics", []):
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith(":ValueDrift"):
            continue
        column = config["column"]
        if metric["id"] not in status:
            raise RuntimeError(f"Evidently returned no drift test for column {column!r}")
        out[column] = ColumnDrift(
            column=column,
            kind=kinds.get(column, "num"),
            method=str(config.get("method")),
            threshold=float(config.get("threshold")),
            score=float(metric["value"]),
            drifted=status[metric["id"]] == "FAIL",
        )
    return out


# ----------------------------------------------------------------------------- segments


def segment_share_changes(reference: pd.Series, current: pd.Series) -> pd.DataFrame:
    """Share of each category in ``reference`` and ``current`` and the change (current − reference).

    Nulls count as their own category ``"(missing)"`` so a growing share of unsegmented customers
    shows up. Rows are ordered by the size of the change, largest first.
    """
    def shares(values: pd.Series) -> pd.Series:
        labels = values.astype("string").fillna("(missing)")
        return labels.value_counts(normalize=True) if len(labels) else pd.Series(dtype=float)

    ref, cur = shares(reference), shares(current)
    segments = sorted(set(ref.index) | set(cur.index))
    frame = pd.DataFrame(
        {
            "segment": segments,
            "reference_share": [float(ref.get(s, 0.0)) for s in segments],
            "current_share": [float(cur.get(s, 0.0)) for s in segments],
        }
    )
    frame["share_change"] = frame["current_share"] - frame["reference_share"]
    order = frame["share_change"].abs().sort_values(ascending=False, kind="stable").index
    return frame.loc[order].reset_index(drop=True)


# ----------------------------------------------------------------------------- report file


def save_report(
    result: DriftResult, when: datetime | None = None, directory: Path | None = None, title: str | None = None
) -> Path | None:
    """Write the Evidently HTML report to ``<reports dir>/drift_<UTC timestamp>.html``.

    ``title`` (which windows and which model are compared) becomes the page title and a heading
    above Evidently's widgets. Returns None when nothing was measured (there is no snapshot to render).
    """
    if result.snapshot is None:
        return None
    when = when or datetime.now(timezone.utc)
    folder = Path(directory or reports_dir())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"drift_{when:%Y%m%dT%H%M%S}.html"
    # the page is built once (Snapshot.get_html_str, what save_html writes) and titled before it is
    # written, instead of written, read back and written again (4.6 MB at 50k rows per side)
    document = result.snapshot.get_html_str(as_iframe=False)
    path.write_text(_with_title(document, title) if title else document, encoding="utf-8")
    return path


def save_note(title: str, lines: list[str], when: datetime | None = None, directory: Path | None = None) -> Path:
    """A small HTML page in place of the Evidently report when nothing could be compared, so the
    asset's report link always opens a page that says why (``drift_<UTC timestamp>.html``)."""
    when = when or datetime.now(timezone.utc)
    folder = Path(directory or reports_dir())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"drift_{when:%Y%m%dT%H%M%S}.html"
    body = "".join(f"<p>{escape(line)}</p>" for line in lines if line)
    path.write_text(
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{escape(title)}</title></head>'
        f'<body style="font-family:sans-serif;max-width:900px;margin:2em auto"><h1>{escape(title)}</h1>{body}</body></html>',
        encoding="utf-8",
    )
    return path


def _with_title(document: str, title: str) -> str:
    """``document`` with ``title`` in its <title> and as a heading at the top of its body."""
    text = escape(title)
    document, titled = re.subn(r"<title>.*?</title>", lambda _: f"<title>{text}</title>", document, count=1, flags=re.S)
    if not titled:
        document = document.replace("<head>", f"<head><title>{text}</title>", 1)
    heading = f'<h1 style="font-family:sans-serif;font-size:20px;margin:16px">{text}</h1>'
    return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + heading, document, count=1)
