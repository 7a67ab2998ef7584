"""A file + DuckDB model registry for both models (CLV and next purchase): every trained model is
kept, the latest registered one is served.

Registration (``decide``): a candidate is compared with the served model *on the same validation
window* - the caller scores the served model on the rows behind the candidate's validation
metrics - and registered only if no configured metric is worse than the served model's by more
than its margin. Rollback by version (``rollback_to``) makes an older version the served one.

A model is saved under ``<data_dir>/models/`` as ``<name>_<YYYYmmddTHHMMSSZ>``: the XGBoost booster
in its binary format (``.ubj``; none for a BTYD-only model, ``clv.btyd_only``) and a JSON sidecar (``.json``) with the config, data window,
feature list, objective choice and metrics - everything ``load_model`` needs to predict exactly
as at training time (feature order, log1p smearing, BTYD offset). One row per save goes to
``ml.model_runs``; ``is_registered`` marks the runs eligible for serving, and the newest of those
(by ``trained_at``) is what ``load_latest`` returns. Files are the source of truth for the
booster; the table is the index that a dashboard or the scoring asset queries.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import duckdb
import xgboost as xgb

from clv_platform.core.assets import side_table_spec
from clv_platform.models.clv import ClvConfig, ClvModel, ObjectiveSpec, TrainedClv
from clv_platform.models.clv.season import ClvSeason
from clv_platform.settings import load_settings

MODEL_RUNS_TABLE = "ml.model_runs"
# written here for whichever training asset saves a model; that asset logs the materialization
MODEL_RUNS = dg.AssetKey(["ml", "model_runs"])
MODEL_RUNS_SPEC = side_table_spec(MODEL_RUNS, "The registry index: one row per trained model, appended by "
                                  "ml/clv_model and ml/npd_model (models/registry.py); ml.model_registry is its view.")
DEFAULT_MODEL_NAME = "clv_xgb"
NPD_MODEL_NAME = "npd_aft"

_MODEL_RUNS_DDL = """
create table if not exists ml.model_runs (
    model_name varchar,
    model_version varchar,
    trained_at timestamp,
    cutoff date,
    horizon_days integer,
    objective varchar,
    n_train bigint,
    metrics json,
    path varchar,
    is_registered boolean
)
"""


def models_dir() -> Path:
    return load_settings().models_dir


@dataclass(frozen=True)
class ModelRecord:
    """Where a saved model lives and what its sidecar says."""

    name: str
    version: str
    booster_path: Path | None
    """None for a BTYD-only model (no booster)."""
    sidecar_path: Path
    sidecar: dict


def _version(trained_at: datetime, name: str, folder: Path) -> str:
    """UTC timestamp version; a save within the same second gets a ``_2``, ``_3`` ... suffix."""
    base = trained_at.strftime("%Y%m%dT%H%M%SZ")
    version, n = base, 1
    while (folder / f"{name}_{version}.json").exists():
        n += 1
        version = f"{base}_{n}"
    return version


def ensure_model_runs(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("create schema if not exists ml")
    conn.execute(_MODEL_RUNS_DDL)


def save_model(
    conn: duckdb.DuckDBPyConnection,
    trained: TrainedClv,
    config: ClvConfig,
    name: str = DEFAULT_MODEL_NAME,
    register: bool = True,
    trained_at: datetime | None = None,
    extra: dict | None = None,
) -> ModelRecord:
    """Write booster + sidecar under ``models_dir()`` and append a row to ``ml.model_runs``."""
    trained_at = (trained_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    folder = models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    version = _version(trained_at, name, folder)
    stem = folder / f"{name}_{version}"
    sidecar_path = stem.with_suffix(".json")
    # a BTYD-only model (history too short to train, ``clv.btyd_only``) has no booster: no .ubj,
    # and its ml.model_runs path is the sidecar's (``load_model`` reads either)
    booster_path = stem.with_suffix(".ubj") if trained.model.booster is not None else None
    if booster_path is not None:
        trained.model.booster.save_model(str(booster_path))
    classifier_path = stem.with_name(f"{stem.name}_buy.ubj")
    if trained.model.classifier is not None:
        # the mixture point rule's buy classifier, next to the booster
        trained.model.classifier.save_model(str(classifier_path))
    sidecar = {
        "classifier_file": classifier_path.name if trained.model.classifier is not None else None,
        "model_name": name,
        "model_version": version,
        "trained_at": trained_at.isoformat(),
        "booster_file": booster_path.name if booster_path is not None else None,
        **trained.sidecar(config),
        **(extra or {}),
    }
    sidecar_path.write_text(json.dumps(sidecar, indent=2, default=str), encoding="utf-8")
    ensure_model_runs(conn)
    conn.execute(
        "insert into ml.model_runs values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            name,
            version,
            trained_at.replace(tzinfo=None),
            trained.cutoff,
            int(config.horizon_days),
            trained.model.objective.name,
            int(trained.n_train),
            json.dumps(trained.validation_metrics, default=str),
            str(booster_path or sidecar_path),
            bool(register),
        ],
    )
    return ModelRecord(name, version, booster_path, sidecar_path, sidecar)


def model_runs_event(name: str, version: str, registered: bool) -> dg.AssetMaterialization:
    """What the saving asset logs for ``ml/model_runs``: the row it appended, so the catalog shows
    when and by which model the index last changed."""
    return dg.AssetMaterialization(asset_key=MODEL_RUNS, metadata={
        "model_name": name, "model_version": version, "registered": bool(registered)})


def read_sidecar(path: str | Path) -> dict:
    """The JSON sidecar of a saved model, from its booster (``.ubj``) or sidecar (``.json``) path."""
    return json.loads(Path(path).with_suffix(".json").read_text(encoding="utf-8"))


def load_model(path: str | Path) -> tuple[ClvModel, dict]:
    """Load a saved model from its booster (``.ubj``) or sidecar (``.json``) path. A sidecar whose
    ``booster_file`` is null is a BTYD-only model (``clv.btyd_only``): booster None."""
    stem = Path(path).with_suffix("")
    sidecar = read_sidecar(path)
    booster = None
    if sidecar.get("booster_file", "") is not None:
        booster = xgb.Booster()
        booster.load_model(str(stem.with_suffix(".ubj")))
    model = ClvModel(
        booster=booster,
        features=list(sidecar["features"]),
        objective=ObjectiveSpec(sidecar["objective"], dict(sidecar["objective_params"]), sidecar["target"]),
        variant=sidecar["variant"],
        label_horizon_days=int(sidecar["label_horizon_days"]),
        smearing=float(sidecar["smearing"]),
        num_boost_round=int(sidecar["num_boost_round"]),
        offset=bool(sidecar.get("btyd_offset", False)),
        serves_btyd=bool(sidecar.get("serves_btyd", False)),
        level=float(sidecar.get("level", 1.0)),
        extension_factor=float(sidecar.get("extension_factor", 1.0)),
        blend=float(sidecar.get("blend", 1.0)),
        naive_weight=float(sidecar.get("naive_weight", 0.0)),
        naive_level=float(sidecar.get("naive_level", 1.0)),
        sharpen=float(sidecar.get("sharpen", 1.0)),
        point_rule=str(sidecar.get("point_rule", "sharpen")),
        point_shrink=float(sidecar.get("point_shrink", 1.0)),
        classifier_shift=float(sidecar.get("classifier_shift", 0.0)),
        classifier_season_mean=(None if sidecar.get("classifier_season_mean") is None
                                else float(sidecar["classifier_season_mean"])),
        season=ClvSeason.from_dict(sidecar.get("season")),
    )
    if sidecar.get("classifier_file"):
        model.classifier = xgb.Booster()
        model.classifier.load_model(str(stem.parent / sidecar["classifier_file"]))
    return model, sidecar


def latest_registered(conn: duckdb.DuckDBPyConnection, name: str = DEFAULT_MODEL_NAME) -> dict | None:
    """The newest registered ``ml.model_runs`` row of ``name`` as a dict, or None."""
    ensure_model_runs(conn)
    frame = conn.execute(
        """
        select * from ml.model_runs
        where model_name = ? and is_registered
        order by trained_at desc, model_version desc
        limit 1
        """,
        [name],
    ).df()
    return None if frame.empty else frame.iloc[0].to_dict()


def load_latest(conn: duckdb.DuckDBPyConnection, name: str = DEFAULT_MODEL_NAME) -> tuple[ClvModel, dict]:
    """Load the newest registered model; raises LookupError when none is registered."""
    row = latest_registered(conn, name)
    if row is None:
        raise LookupError(
            f"no registered model named {name!r} in {MODEL_RUNS_TABLE}: train one first with the "
            "refresh_everything or retrain_models job (or materialize ml/clv_model)"
        )
    return load_model(row["path"])


def served_point_rule(conn: duckdb.DuckDBPyConnection, name: str = DEFAULT_MODEL_NAME) -> tuple[str, str] | None:
    """(version, point rule) of the served model, read from its sidecar without loading the
    booster; None when no model is registered."""
    row = latest_registered(conn, name)
    if row is None:
        return None
    return str(row["model_version"]), str(read_sidecar(row["path"]).get("point_rule", "sharpen"))


class ServedModelFeaturesMissing(LookupError):
    """The served model needs feature columns that the current feature table does not have."""


def require_features(name: str, version: str, model_features: list[str], columns) -> None:
    """Fail clearly when the served model ``name`` / ``version`` cannot be scored on ``columns``.

    A model keeps the feature names it was trained on; after a feature is renamed or removed the
    current features no longer have them. Training already copes (``decide``: a served model that
    cannot be scored on the validation window does not block the candidate), so the remedy is a
    retrain; scoring must not fail with a bare ``KeyError`` deep inside XGBoost instead.
    """
    available = set(columns)
    missing = [column for column in model_features if column not in available]
    if missing:
        raise ServedModelFeaturesMissing(
            f"the served {name} model {version} was trained on feature columns the current features do not "
            f"have: {', '.join(missing)} (renamed or removed since it was trained). Train and register a new "
            "model with the retrain_models job (or refresh_everything, or materialize ml/clv_model and "
            "ml/npd_model), then score again."
        )


def set_registered(conn: duckdb.DuckDBPyConnection, name: str, version: str, registered: bool) -> None:
    """Register or unregister one version (e.g. roll back by unregistering the newest)."""
    ensure_model_runs(conn)
    conn.execute(
        "update ml.model_runs set is_registered = ? where model_name = ? and model_version = ?",
        [registered, name, version],
    )


def record_run(
    conn: duckdb.DuckDBPyConnection,
    name: str,
    version: str,
    trained_at: datetime,
    cutoff,
    horizon_days: int,
    objective: str,
    n_train: int,
    metrics: dict,
    path: str | Path,
    registered: bool,
) -> None:
    """Append one ``ml.model_runs`` row for a model saved elsewhere (the next-purchase model)."""
    ensure_model_runs(conn)
    metrics = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
    conn.execute(
        "insert into ml.model_runs values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [name, version, trained_at.astimezone(timezone.utc).replace(tzinfo=None), cutoff, int(horizon_days),
         objective, int(n_train), json.dumps(metrics, default=str), str(path), bool(registered)],
    )


def decide(candidate: dict | None, served: dict | None, settings, served_version: str | None = None) -> dict:
    """Register or not: ``candidate`` and ``served`` are metric dicts on the *same* validation rows.

    ``settings`` is a ``ModelRegressionSettings`` (metric -> "higher"/"lower", relative margins).
    No served model: register. Served model not scorable on this window (``served`` None): register
    and say so. Otherwise refuse when any metric regressed beyond its margin. Returns
    ``{"register", "reason", "comparisons", "served_version"}``.
    """
    from clv_platform.core.thresholds import compare_runs

    if served_version is None:
        return {"register": True, "reason": "first model: nothing registered yet", "comparisons": [],
                "served_version": None}
    if served is None:
        return {"register": True, "served_version": served_version, "comparisons": [],
                "reason": f"served {served_version} cannot be scored on this validation window (features changed)"}
    comparisons = compare_runs({"metrics": candidate or {}}, {"metrics": served}, settings)
    regressed = [c for c in comparisons if c["regressed"]]
    if not comparisons:
        return {"register": True, "served_version": served_version, "comparisons": [],
                "reason": "no comparable metric on the validation window"}
    if regressed:
        reason = f"worse than served {served_version} on the same validation window: " + "; ".join(
            f"{c['metric']} {c['candidate']:.4g} vs {c['registered']:.4g} (allowed {c['bound']:.4g})" for c in regressed
        )
        return {"register": False, "reason": reason, "comparisons": comparisons, "served_version": served_version}
    summary = ", ".join(f"{c['metric']} {c['candidate']:.4g} vs {c['registered']:.4g}" for c in comparisons)
    return {"register": True, "comparisons": comparisons, "served_version": served_version,
            "reason": f"not worse than served {served_version} on the same validation window ({summary})"}


def short_history_stand_in(sidecar: dict) -> bool:
    """Whether a saved model is the BTYD stand-in built because the history was too short to train
    (the CLV model's ``clv.btyd_only``: ``serving.history_too_short``; the next-purchase fallback of
    ``npd_assets._register_fallback``: ``history_too_short``). Such a model was never compared with
    a trained one, so the next import should try to train (``sensors.needs_training``) rather than
    wait for the weekly retrain; a BTYD served because a trained model lost to it is not one."""
    return bool(sidecar.get("history_too_short") or (sidecar.get("serving") or {}).get("history_too_short"))


def registered_paths(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The saved path of the newest registered run of each model name (the ordering of
    ``latest_registered``), without creating ``ml.model_runs``: safe on a read-only connection."""
    rows = conn.execute(
        """
        select model_name, arg_max(path, (trained_at, model_version)) from ml.model_runs
        where is_registered group by model_name
        """
    ).fetchall()
    return {name: path for name, path in rows}


def short_history_decision(conn: duckdb.DuckDBPyConnection, name: str) -> dict:
    """The registration of a model built because the history is too short to train one (the CLV
    model's ``clv.btyd_only``, the next-purchase model's ``npd.BTYDNextPurchase``): there is no
    validation window to compare it with anything, so it is registered only when nothing of ``name``
    is served, and a served model - trained or not - stays served."""
    served = latest_registered(conn, name)
    if served is None:
        return {"register": True, "served_version": None, "comparisons": [], "served_metrics": None,
                "reason": "first model: nothing registered yet (BTYD only, the history is too short to train)"}
    return {"register": False, "served_version": served["model_version"], "comparisons": [], "served_metrics": None,
            "reason": f"no validation window to compare with the served {served['model_version']} (the history "
                      "is too short to train): it stays served"}


def rollback_to(conn: duckdb.DuckDBPyConnection, name: str, version: str) -> None:
    """Serve ``version`` again: register it and unregister every version trained after it.

    Raises LookupError for an unknown version. Nothing is deleted: files and rows stay, so a roll
    forward is ``set_registered`` on the newer version.
    """
    ensure_model_runs(conn)
    row = conn.execute(
        "select trained_at from ml.model_runs where model_name = ? and model_version = ?", [name, version]
    ).fetchone()
    if row is None:
        raise LookupError(f"no version {version!r} of {name!r} in {MODEL_RUNS_TABLE}")
    conn.execute(
        "update ml.model_runs set is_registered = false where model_name = ? and is_registered "
        "and (trained_at > ? or (trained_at = ? and model_version > ?))",
        [name, row[0], row[0], version],
    )
    set_registered(conn, name, version, True)
