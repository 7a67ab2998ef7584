"""Asset check of ml/clv_model: a new model must not be worse than the registered one.

Generic over `ml.model_runs` (the registry's index, see `clv_platform.models.registry`): for each
model name, the newest run (the candidate) is compared with the newest *other* registered run
trained before it (the model being served until now) on the validation metrics stored in the
`metrics` JSON. The metrics and their direction, and the allowed relative margin, come from
`[model_regression]` in `monitoring.toml`. The ml/clv_model asset applies the same comparison
before registering (`clv_assets.registration_gate`): a regressed model is saved but not
registered, so scoring keeps using the previous model. The check is therefore not blocking —
scores still flow, with the old model — and fails to say why the new one was held back.
"""

import json

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from clv_platform.core.thresholds import ModelRegressionSettings, compare_runs, metric_value, monitoring_config
from clv_platform.models.clv_assets import CLV_MODEL_KEY
from clv_platform.resources.storage import table_exists

CLV_MODEL = CLV_MODEL_KEY
MODEL_RUNS_TABLE = "ml.model_runs"


def regression_report(runs: pd.DataFrame, settings: ModelRegressionSettings) -> list[dict]:
    """For every model name in ``runs`` (rows of ml.model_runs): candidate, baseline and comparisons."""
    out = []
    if runs.empty:
        return out
    for name, group in runs.groupby("model_name", sort=True):
        group = group.sort_values(["trained_at", "model_version"])
        candidate = group.iloc[-1].to_dict()
        earlier = group[
            (group["model_version"] != candidate["model_version"])
            & group["is_registered"].fillna(False).astype(bool)
            & (group["trained_at"] <= candidate["trained_at"])
        ]
        if earlier.empty:
            out.append({"model_name": name, "candidate": candidate["model_version"], "registered": None,
                        "comparisons": [], "regressed": False})
            continue
        baseline = earlier.iloc[-1].to_dict()
        comparisons = compare_runs(candidate, baseline, settings)
        out.append({
            "model_name": name,
            "candidate": candidate["model_version"],
            "registered": baseline["model_version"],
            "comparisons": comparisons,
            "regressed": any(c["regressed"] for c in comparisons),
        })
    return out


def _explain(report: list[dict]) -> str:
    parts = []
    for model in report:
        for c in model["comparisons"]:
            if c["regressed"]:
                limit = "at least" if c["better"] == "higher" else "at most"
                parts.append(
                    f"{model['model_name']} {model['candidate']}: {c['metric']} {c['candidate']:.4g} is worse than "
                    f"registered {model['registered']} ({c['registered']:.4g}) by more than the {c['margin']:.0%} "
                    f"margin (needed {limit} {c['bound']:.4g})"
                )
    return "; ".join(parts)


@dg.asset_check(
    asset=CLV_MODEL,
    blocking=False,
    description="The newly trained model is not worse than the previously registered one on the validation "
    "window by more than the margin configured in monitoring.toml.",
)
def clv_model_not_worse_than_registered(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    settings = monitoring_config().model_regression
    with duckdb.get_connection() as conn:
        if not table_exists(conn, MODEL_RUNS_TABLE):
            return dg.AssetCheckResult(passed=True, description="no ml.model_runs yet: nothing to compare against")
        runs = conn.execute(f"select * from {MODEL_RUNS_TABLE}").df()
    report = regression_report(runs, settings)
    regressed = [m for m in report if m["regressed"]]
    compared = [m for m in report if m["registered"]]
    if regressed:
        description = _explain(regressed) + "; it was not registered, scores keep using the registered model"

    elif compared:
        description = "; ".join(
            f"{m['model_name']} {m['candidate']} is within the margin of registered {m['registered']}" for m in compared
        )
    else:
        description = "no earlier registered model to compare against"
    return dg.AssetCheckResult(
        passed=not regressed,
        description=description,
        metadata={"comparison": dg.MetadataValue.json(json.loads(json.dumps(report, default=str)))},
    )


MODEL_CHECKS = [clv_model_not_worse_than_registered]
