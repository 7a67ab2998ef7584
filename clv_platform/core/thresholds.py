"""Monitoring thresholds and the model-regression rule, read from `monitoring/monitoring.toml`.

They sit in the lowest layer because three layers judge by them: the asset checks (null shares,
ranges, clock tolerance), the model registration gate in `models/` (a candidate worse than the
served model by more than the margin is not registered) and `monitoring/` (drift thresholds,
realized performance). The TOML file stays beside the monitoring code that documents it.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path



@dataclass(frozen=True)
class DriftSettings:
    drift_share_threshold: float = 0.3
    num_method: str = "wasserstein"
    num_threshold: float = 0.1
    cat_method: str = "jensenshannon"
    cat_threshold: float = 0.1
    per_column_threshold: dict[str, float] = field(default_factory=dict)
    prediction_column: str = "predicted_clv"
    prediction_method: str = "wasserstein"
    prediction_threshold: float = 0.1
    segment_columns: tuple[str, ...] = ("clv_tier", "rfm_segment", "lifecycle_stage")
    reference_offset_days: int = 90
    min_rows: int = 30
    max_rows: int = 0
    sample_seed: int = 0


@dataclass(frozen=True)
class CheckSettings:
    null_share_default: float = 0.0
    null_share_limits: dict[str, float] = field(default_factory=dict)
    null_share_defined_when: dict[str, str] = field(default_factory=dict)
    """Per column, the SQL condition on the feature table under which the column is defined: its null
    share is taken over those rows only (``[checks.null_share_defined_when]``)."""
    non_negative: tuple[str, ...] = ()
    unit_interval: tuple[str, ...] = ()
    future_tolerance_hours: float = 24.0


@dataclass(frozen=True)
class ModelRegressionSettings:
    margin: float = 0.05
    metrics: dict[str, str] = field(default_factory=lambda: {"normalized_gini": "higher", "mae": "lower"})
    margins: dict[str, float] = field(default_factory=dict)
    metrics_path: str = ""

    def margin_for(self, metric: str) -> float:
        return float(self.margins.get(metric, self.margin))


@dataclass(frozen=True)
class PerformanceSettings:
    default_horizon_days: int = 365
    annual_discount_rate: float = 0.10


@dataclass(frozen=True)
class MonitoringConfig:
    drift: DriftSettings = field(default_factory=DriftSettings)
    checks: CheckSettings = field(default_factory=CheckSettings)
    model_regression: ModelRegressionSettings = field(default_factory=ModelRegressionSettings)
    performance: PerformanceSettings = field(default_factory=PerformanceSettings)


def default_config_path() -> Path:
    return Path(str(resources.files("clv_platform.monitoring").joinpath("monitoring.toml")))


def load_config(path: str | Path | None = None) -> MonitoringConfig:
    """Parse ``monitoring.toml`` (the shipped one unless ``path`` is given); missing keys keep defaults."""
    raw = tomllib.loads(Path(path or default_config_path()).read_text(encoding="utf-8"))
    drift = dict(raw.get("drift", {}))
    if "segment_columns" in drift:
        drift["segment_columns"] = tuple(drift["segment_columns"])
    checks_raw = raw.get("checks", {})
    limits = dict(checks_raw.get("null_share_limits", {}))
    ranges = checks_raw.get("feature_ranges", {})
    checks = CheckSettings(
        null_share_default=float(limits.pop("default", 0.0)),
        null_share_limits={k: float(v) for k, v in limits.items()},
        null_share_defined_when={k: str(v) for k, v in checks_raw.get("null_share_defined_when", {}).items()},
        non_negative=tuple(ranges.get("non_negative", ())),
        unit_interval=tuple(ranges.get("unit_interval", ())),
        future_tolerance_hours=float(checks_raw.get("future_tolerance_hours", 24.0)),
    )
    regression = dict(raw.get("model_regression", {}))
    return MonitoringConfig(
        drift=DriftSettings(**drift),
        checks=checks,
        model_regression=ModelRegressionSettings(**regression),
        performance=PerformanceSettings(**raw.get("performance", {})),
    )


@lru_cache(maxsize=1)
def monitoring_config() -> MonitoringConfig:
    """The shipped `monitoring.toml`, parsed once per process."""
    return load_config()


# ----------------------------------------------------------------------------- model regression


def metric_value(metrics, name: str, path: str = "") -> float | None:
    """A metric from a run's metrics JSON: under the dotted ``path`` if present, else top level."""
    if isinstance(metrics, str):
        metrics = json.loads(metrics or "{}")
    if not isinstance(metrics, dict):
        return None
    block = metrics
    for part in [p for p in path.split(".") if p]:
        block = block.get(part) if isinstance(block, dict) else None
    for source in (block, metrics):
        if isinstance(source, dict) and name in source:
            try:
                value = float(source[name])
            except (TypeError, ValueError):
                return None
            return value if math.isfinite(value) else None
    return None


def compare_runs(candidate: dict, baseline: dict, settings: ModelRegressionSettings) -> list[dict]:
    """Per configured metric: candidate vs baseline value, allowed bound and whether it regressed.

    "Worse by more than the margin" is relative to the baseline: for a higher-is-better metric
    the candidate must reach baseline − margin·|baseline|, for lower-is-better at most
    baseline + margin·|baseline|. Metrics missing (or not finite) on either side are skipped.
    """
    rows = []
    for name, direction in settings.metrics.items():
        new = metric_value(candidate.get("metrics"), name, settings.metrics_path)
        old = metric_value(baseline.get("metrics"), name, settings.metrics_path)
        if new is None or old is None:
            continue
        allowance = settings.margin_for(name) * abs(old)
        if direction == "higher":
            bound, worse = old - allowance, new < old - allowance
        elif direction == "lower":
            bound, worse = old + allowance, new > old + allowance
        else:
            raise ValueError(f"metric {name}: direction must be 'higher' or 'lower', got {direction!r}")
        rows.append(
            {"metric": name, "better": direction, "candidate": new, "registered": old,
             "bound": bound, "margin": settings.margin_for(name), "regressed": bool(worse)}
        )
    return rows
