"""monitoring/* assets: score snapshots, drift runs and realized model performance.

* ``monitoring/score_history`` keeps a snapshot of every scoring (predictions, tier and segments
  with the cutoff and horizon they were made for), because ``scores.*`` is replaced on every run
  and realized performance can only be computed a horizon later.
* ``monitoring/drift_runs`` compares the current features with reference features, and the current
  score snapshot with the previous one (prediction drift, segment-share changes). One row per
  Dagster run in ``monitoring.drift_runs`` plus one per column in ``monitoring.drift_columns``;
  re-executing a run replaces its rows. The drift sensor reads the newest row.
* ``monitoring/model_performance`` evaluates every snapshot whose horizon has passed.

The reference features are those at the cutoff of the newest registered model (what it was
trained and validated on), computed with the same feature SQL; with no registered model, or one
newer than the data, the features ``reference_offset_days`` before the current cutoff. When the
reference cutoff is the current cutoff (the first drift run after training) there is nothing to
compare yet: the run is recorded with ``n_columns = 0`` and a null ``share_drifted`` and says "no
comparison yet", instead of a drift of 0 that only measures the features against themselves.
"""

import hashlib
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from clv_platform.monitoring.drift import (
    DriftResult,
    MonitoringConfig,
    detect_drift,
    load_config,
    save_note,
    save_report,
    segment_share_changes,
    warm_up,
)
from clv_platform.monitoring.performance import SCORE_HISTORY_TABLE, evaluate, matured, next_maturity, snapshot_heads
from clv_platform.core import warmup
from clv_platform.core.assets import layer_asset, layer_spec
from clv_platform.core.sql import transaction
from clv_platform import contract
from clv_platform.reports import prune_reports, report_url
from clv_platform.resources.storage import qualified, read_sql, row_count, table_exists
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform.models.clv_assets import CUSTOMER_CLV
from clv_platform.models.segment_assets import CUSTOMER_SEGMENTS
from clv_platform.transforms.features import (AFFINE_COPIES, FEATURE_COLUMNS, FEATURE_TABLE, check_order_history,
                                              feature_query, feature_sql)
from clv_platform.transforms.features_assets import CUSTOMER_FEATURES
from clv_platform.transforms.staging_assets import ORDERS

FEATURES = CUSTOMER_FEATURES
STAGING_ORDERS = ORDERS
# Asset keys, declared once; each equals the DuckDB table the asset writes.
SCORE_HISTORY = dg.AssetKey(["monitoring", "score_history"])
DRIFT_RUNS = dg.AssetKey(["monitoring", "drift_runs"])
DRIFT_COLUMNS = dg.AssetKey(["monitoring", "drift_columns"])
MODEL_PERFORMANCE = dg.AssetKey(["monitoring", "model_performance"])

DRIFT_RUNS_TABLE = "monitoring.drift_runs"
DRIFT_COLUMNS_TABLE = "monitoring.drift_columns"
PERFORMANCE_TABLE = "monitoring.model_performance"

DRIFT_FEATURES = [c for c in FEATURE_COLUMNS if c not in AFFINE_COPIES]
"""The feature columns whose drift is measured: every model feature once (``AFFINE_COPIES`` left out)."""

SCORE_VALUE_COLUMNS = ["predicted_clv", "p_alive", "expected_purchases"]
SEGMENT_SOURCE_COLUMNS = ["rfm_segment", "lifecycle_stage"]

_DDL = """
create schema if not exists monitoring;
create table if not exists monitoring.score_history (
    snapshot_id varchar, scored_at timestamp, cutoff date, horizon_days integer, model_version varchar,
    customer_id varchar, predicted_clv double, p_alive double, expected_purchases double,
    clv_tier varchar, rfm_segment varchar, lifecycle_stage varchar, snapshotted_at timestamp
);
create table if not exists monitoring.drift_runs (
    drift_run_id varchar, run_at timestamp, model_version varchar, current_cutoff date,
    reference_cutoff date, reference_kind varchar, n_reference bigint, n_current bigint,
    n_columns integer, n_drifted integer, share_drifted double, drift_share_threshold double,
    drift_detected boolean, prediction_method varchar, prediction_score double,
    prediction_drifted boolean, column_drift json, segment_changes json,
    max_segment_share_change double, skipped_columns json, report_path varchar
);
create table if not exists monitoring.drift_columns (
    drift_run_id varchar, run_at timestamp, "column" varchar, kind varchar, method varchar,
    threshold double, score double, drifted boolean, is_prediction boolean
);
create table if not exists monitoring.model_performance (
    scoring_date date, snapshot_id varchar, model_version varchar, scored_at timestamp, cutoff date,
    horizon_days integer, horizon_end date, customers bigint, predicted_total double,
    actual_total double, mae double, normalized_gini double, evaluated_at timestamp
);
"""


def ensure_monitoring_tables(conn) -> None:
    for statement in [s.strip() for s in _DDL.split(";") if s.strip()]:
        conn.execute(statement)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _md(frame: pd.DataFrame, rows: int = 10) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.head(rows).to_markdown(index=False, floatfmt=".4g") if len(frame) else "(none)")


def _newest_model_run(conn, model_version: str | None = None) -> dict | None:
    """The ml.model_runs row of ``model_version``, or the newest registered run; None without a registry."""
    if not table_exists(conn, "ml.model_runs"):
        return None
    if model_version is not None:
        sql, params = "select * from ml.model_runs where model_version = ?", [model_version]
    else:
        sql, params = "select * from ml.model_runs where is_registered", []
    frame = conn.execute(f"{sql} order by trained_at desc limit 1", params).df()
    return None if frame.empty else frame.iloc[0].to_dict()


# ----------------------------------------------------------------------------- score history


def _table_columns(conn, table: str) -> set[str]:
    schema, name = table.split(".")
    return {c for (c,) in conn.execute(
        "select column_name from duckdb_columns() where schema_name = ? and table_name = ?", [schema, name]
    ).fetchall()}


def snapshot_scores(conn, columns: set[str], snapshot_id: str, scored_at, cutoff, horizon: int, version: str,
                    now) -> int:
    """Append the current scoring to monitoring.score_history in SQL (``sql/score_snapshot.sql``),
    replacing a snapshot of the same cutoff and model version (the same day run again) and one with
    the same id; returns the customers written."""
    values = ", ".join(f"c.{c}::double as {c}" if c in columns else f"null::double as {c}"
                       for c in SCORE_VALUE_COLUMNS)
    values += ", c.clv_tier::varchar as clv_tier" if "clv_tier" in columns else ", null::varchar as clv_tier"
    segment_columns = (_table_columns(conn, "scores.customer_segments")
                       if table_exists(conn, "scores.customer_segments") else set())
    segments = ", ".join(f"s.{c}::varchar as {c}" if c in segment_columns else f"null::varchar as {c}"
                         for c in SEGMENT_SOURCE_COLUMNS)
    join = ("left join scores.customer_segments as s on s.customer_id::varchar = c.customer_id::varchar"
            if "customer_id" in segment_columns else "")
    sql = read_sql("clv_platform.monitoring", "sql/score_snapshot.sql").format(
        values=values, segments=segments, segment_join=join)
    with transaction(conn):
        conn.execute(f"delete from {SCORE_HISTORY_TABLE} where snapshot_id = ? or (cutoff = ? and model_version = ?)",
                     [snapshot_id, cutoff, version])
        conn.execute(sql, {"snapshot_id": snapshot_id, "scored_at": scored_at, "cutoff": cutoff,
                           "horizon_days": horizon, "model_version": version, "snapshotted_at": now})
    return int(conn.execute(f"select count(*) from {SCORE_HISTORY_TABLE} where snapshot_id = ?",
                            [snapshot_id]).fetchone()[0])


@layer_asset(SCORE_HISTORY, deps=[CUSTOMER_CLV, CUSTOMER_SEGMENTS, FEATURES], kinds={"duckdb"})
def score_history(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """A snapshot of the current scoring (scores.customer_clv + segments) with its cutoff and horizon,
    appended to monitoring.score_history in SQL; snapshotting the same scoring, or the same cutoff with
    the same model (a day run again), replaces it.
    """
    config = load_config()
    now = _now()
    with duckdb.get_connection() as conn:
        ensure_monitoring_tables(conn)
        if not table_exists(conn, "scores.customer_clv"):
            raise RuntimeError("scores.customer_clv does not exist: materialize scores/customer_clv first")
        cutoff = (
            conn.execute(f"select max(feature_cutoff) from {FEATURE_TABLE}").fetchone()[0]
            if table_exists(conn, FEATURE_TABLE) else None
        ) or scoring_cutoff(conn)
        columns = _table_columns(conn, "scores.customer_clv")
        version, scored_at = conn.execute(
            "select {}, {} from scores.customer_clv".format(
                "any_value(model_version::varchar)" if "model_version" in columns else "null",
                "max(scored_at::timestamp)" if "scored_at" in columns else "null")
        ).fetchone()
        version = str(version) if version is not None else None
        scored_at = pd.Timestamp(scored_at or now).to_pydatetime()
        run = _newest_model_run(conn, version) if version else None
        horizon = int(run["horizon_days"]) if run is not None else config.performance.default_horizon_days
        snapshot_id = f"{version or 'unknown'}@{scored_at:%Y-%m-%dT%H:%M:%S}"
        customers = snapshot_scores(conn, columns, snapshot_id, scored_at, cutoff, horizon, version or "unknown", now)
        snapshots = conn.execute(
            f"select count(distinct snapshot_id), count(*) from {SCORE_HISTORY_TABLE}"
        ).fetchone()
        contract.apply_comments(conn, tables=[SCORE_HISTORY_TABLE])
        schema = contract.column_metadata(conn, SCORE_HISTORY_TABLE)
    context.log.info(f"snapshot {snapshot_id}: {customers} customers as of {cutoff}, horizon {horizon} days")
    return dg.MaterializeResult(
        metadata={
            "snapshot_id": snapshot_id,
            "customers": customers,
            "cutoff": str(cutoff),
            "horizon_days": horizon,
            "snapshots_kept": int(snapshots[0]),
            "dagster/row_count": int(snapshots[1]),
            **schema,
        }
    )


# ----------------------------------------------------------------------------- drift


def reference_cutoff(conn, current: date, config: MonitoringConfig) -> tuple[date, str]:
    """The cutoff of the reference features and where it came from (see the module docstring)."""
    run = _newest_model_run(conn)
    if run is not None and run.get("cutoff") is not None:
        registered = pd.Timestamp(run["cutoff"]).date()
        if registered <= current:
            return registered, f"registered model {run['model_version']}"
    return current - timedelta(days=config.drift.reference_offset_days), f"{config.drift.reference_offset_days} days earlier"


def run_is_reference(ref_kind: str) -> bool:
    """True when the reference features are a registered model's training cutoff (see reference_cutoff)."""
    return ref_kind.startswith("registered model")


def _pick(conn, relation: str, n: int, max_rows: int, columns: list[str] | None = None) -> pd.DataFrame:
    """At most ``max_rows`` rows of ``relation`` (``n`` rows): the smallest id hashes, in id order;
    only ``columns`` (and ``customer_id``) when given.

    ``order by ... limit`` is a top-N (a heap of ``max_rows`` rows), not a sort of the whole side; it
    picks row ids only and the chosen rows are read after (0.3 s less at 300k than carrying every
    column through the heap). ``relation`` is a table (it has row ids)."""
    present = [c for (c,) in conn.execute(f"select column_name from (describe {relation})").fetchall()]
    has_id = "customer_id" in present
    select = ", ".join(["customer_id"] * has_id + [c for c in columns if c in present and c != "customer_id"]
                       ) if columns is not None else "*"
    if max_rows and n > max_rows:
        inner = (f"""select {select} from {relation} where rowid in (select rowid from {relation}
                     order by hash(customer_id::varchar), customer_id limit {int(max_rows)})"""
                 if has_id else f"select {select} from {relation} using sample {int(max_rows)} rows (reservoir, 0)")
    else:
        inner = f"select {select} from {relation}"
    return conn.execute(f"select * from ({inner}) {'order by customer_id' if has_id else ''}").df()


def sampled_rows(conn, source_sql: str, params: dict, max_rows: int) -> tuple[pd.DataFrame, int]:
    """(at most ``max_rows`` rows of ``source_sql``, its row count): the customers with the smallest
    hash of their id, the same customers on every side and in every run (0 = every row)."""
    conn.execute(f"create or replace temp table _drift_side as {source_sql}", params)
    try:
        n = int(conn.execute("select count(*) from _drift_side").fetchone()[0])
        frame = _pick(conn, "_drift_side", n, max_rows)
    finally:
        conn.execute("drop table if exists _drift_side")
    return frame, n


def sampled_table(conn, table: str, max_rows: int, columns: list[str] | None = None) -> tuple[pd.DataFrame, int]:
    """``sampled_rows`` of a stored table, read in place (no copy of the whole table first), only
    ``columns`` (and ``customer_id``) when given."""
    n = row_count(conn, table)
    return _pick(conn, qualified(table), n, max_rows, columns), n


# Customers drawn beyond max_rows before the reference features are computed for them: the draw is
# over every customer with an order by the cutoff, a few of whom have no purchase left at it (all
# their orders cancelled by then) and drop out: 0.7 % of them at 300k (297,682 with an order by the
# reference cutoff, 295,684 with features). 10 % of head room keeps the exact fallback (the whole
# store's features) a rare case.
REFERENCE_CANDIDATE_MARGIN = 0.10
_HISTORY = "staging.order_history"


def reference_population(conn, cutoff: date) -> int:
    """How many customers the feature query has at ``cutoff``: those with a purchase by then (an
    order placed by the cutoff and not cancelled by it), as ``customer_features.sql`` defines its
    population; a test holds the two equal."""
    return int(conn.execute(
        f"""select count(distinct customer_id) from {_HISTORY}
            where order_date <= $cutoff::date and not (is_cancelled and coalesce(cancelled_on <= $cutoff::date, true))""",
        {"cutoff": cutoff}).fetchone()[0])


def reference_features(conn, cutoff: date, max_rows: int) -> tuple[pd.DataFrame, int]:
    """The features at the reference cutoff (the feature SQL), sampled like the current ones.

    Computing the whole store's features at the reference cutoff every night only to keep
    ``max_rows`` of them was most of this step's own time (3.4 s of the feature SQL at 300k; a
    filter on the query's result is not pushed into its CTEs). The sample is the ``max_rows``
    customers of the smallest id hash, so the feature SQL runs on the order history of candidates
    only: the smallest hashes (plus ``REFERENCE_CANDIDATE_MARGIN``) among every customer with an
    order by the cutoff, a superset of the feature population. A customer's features are computed
    from that customer's own orders (and their lines and refunds) alone, so the candidates' rows
    are those of the whole query; when at least ``max_rows`` of them have features, their
    ``max_rows`` smallest hashes are exactly the whole population's (everyone left out hashes
    higher). Otherwise (too many candidates without a purchase) the whole query runs as before.
    """
    check_order_history(conn)
    sql, params = feature_query(cutoff)
    n = reference_population(conn, cutoff) if max_rows else 0
    if not max_rows or n <= max_rows or _HISTORY not in sql:
        return sampled_rows(conn, sql, params, max_rows)
    candidates = max_rows + int(max_rows * REFERENCE_CANDIDATE_MARGIN)
    conn.execute(
        f"""create or replace temp table _drift_candidates as
            select customer_id from (select distinct customer_id from {_HISTORY} where order_date <= $cutoff::date)
            order by hash(customer_id::varchar), customer_id limit {int(candidates)}""", params)
    conn.execute(f"""create or replace temp view _drift_history as
                     select * from {_HISTORY} semi join _drift_candidates using (customer_id)""")
    try:
        frame, found = sampled_rows(conn, sql.replace(_HISTORY, "_drift_history"), params, max_rows)
    finally:
        conn.execute("drop view if exists _drift_history")
        conn.execute("drop table if exists _drift_candidates")
    if found < max_rows:
        return sampled_rows(conn, sql, params, max_rows)
    return frame, n


DRIFT_REFERENCE_TABLE = "monitoring.drift_reference"


def _reference_key(ref_cutoff: date, ref_kind: str, max_rows: int) -> str:
    """What a frozen reference sample depends on: the model and its cutoff, the sample size and the
    feature SQL's text (a changed feature definition computes the reference again)."""
    sql_hash = hashlib.sha256(feature_sql().encode()).hexdigest()[:16]
    return f"{ref_kind}|{ref_cutoff}|{int(max_rows)}|{sql_hash}"


def training_reference(conn, ref_cutoff: date, ref_kind: str, max_rows: int) -> tuple[pd.DataFrame, int, bool]:
    """(reference sample, population, reused): a registered model's reference features, computed
    once and kept in ``monitoring.drift_reference``.

    The reference of a registered model is the features at its training cutoff, which every night
    recomputed from the whole order history (``reference_features``: the feature SQL over the
    sampled customers' history, about 2 s of the drift step at 1M customers). Kept from the first
    run that computes it, it is what the model was trained on as the data stood then: a later
    correction to an order before the cutoff (a late refund) no longer moves the reference, as it
    did not move the model. Any other reference (``reference_offset_days`` before the current
    cutoff, moving nightly) is computed as before and not kept. One reference is kept at a time.
    """
    if not run_is_reference(ref_kind):
        frame, n = reference_features(conn, ref_cutoff, max_rows)
        return frame, n, False
    key = _reference_key(ref_cutoff, ref_kind, max_rows)
    if table_exists(conn, DRIFT_REFERENCE_TABLE):
        (population,) = conn.execute(f"select max(reference_population) from {DRIFT_REFERENCE_TABLE} "
                                     "where reference_key = ?", [key]).fetchone()
        if population is not None:
            frame = conn.execute(f"select * exclude (reference_key, reference_population) from {DRIFT_REFERENCE_TABLE} "
                                 "where reference_key = ? order by customer_id", [key]).df()
            return frame, int(population), True
    frame, n = reference_features(conn, ref_cutoff, max_rows)
    if len(frame):
        with transaction(conn):
            conn.register("_reference", frame)
            conn.execute(f"create or replace table {DRIFT_REFERENCE_TABLE} as "
                         "select ?::varchar as reference_key, ?::bigint as reference_population, * from _reference",
                         [key, int(n)])
            conn.unregister("_reference")
    return frame, n, False


def snapshot_inputs(conn, prediction: str, segment_columns, max_rows: int) -> dict:
    """From the newest score snapshot and the one before it: the newest's model version, each one's
    predictions (``max_rows`` customers with the smallest id hash) and the segment-share changes
    between them (``segment_changes``), aggregated in SQL."""
    out = {"latest_model_version": None, "latest_predictions": None, "previous_predictions": None,
           "segment_changes": {}}
    if not table_exists(conn, SCORE_HISTORY_TABLE):
        return out
    ids = [s for (s,) in conn.execute(
        f"select snapshot_id from {SCORE_HISTORY_TABLE} group by 1 order by max(scored_at) desc, 1 desc limit 2"
    ).fetchall()]
    if not ids:
        return out
    out["latest_model_version"] = conn.execute(
        f"select any_value(model_version) from {SCORE_HISTORY_TABLE} where snapshot_id = ?", [ids[0]]).fetchone()[0]
    if len(ids) < 2:
        return out
    columns = _table_columns(conn, SCORE_HISTORY_TABLE)
    if prediction in columns:
        limit = f"limit {int(max_rows)}" if max_rows else ""
        for key, snapshot in (("latest_predictions", ids[0]), ("previous_predictions", ids[1])):
            values = conn.execute(
                f"""select {prediction} from {SCORE_HISTORY_TABLE} where snapshot_id = ?
                    order by hash(customer_id::varchar), customer_id {limit}""", [snapshot]).df()[prediction]
            out[key] = values.rename(prediction)
    for column in segment_columns:
        if column not in columns:
            continue
        shares = conn.execute(
            f"""select snapshot_id, coalesce({column}::varchar, '(missing)') as segment,
                       count(*)::double / sum(count(*)) over (partition by snapshot_id) as share,
                       sum(count({column})) over (partition by snapshot_id) as known
                from {SCORE_HISTORY_TABLE} where snapshot_id in (?, ?) group by 1, 2""", ids).df()
        known = shares.groupby("snapshot_id")["known"].first()
        if len(known) < 2 or (known <= 0).any():
            continue  # all null on one side: nothing to compare
        frame = (shares.pivot(index="segment", columns="snapshot_id", values="share").reindex(columns=ids)
                 .fillna(0.0).sort_index())
        table = pd.DataFrame({"segment": frame.index.astype(str), "reference_share": frame[ids[1]].to_numpy(),
                              "current_share": frame[ids[0]].to_numpy()})
        table["share_change"] = table["current_share"] - table["reference_share"]
        order = table["share_change"].abs().sort_values(ascending=False, kind="stable").index
        out["segment_changes"][column] = table.loc[order].reset_index(drop=True).to_dict(orient="records")
    return out


def segment_changes(current: pd.DataFrame | None, previous: pd.DataFrame | None, columns) -> dict[str, list[dict]]:
    """Share changes of every segment column present (and not all null) in both snapshots."""
    out: dict[str, list[dict]] = {}
    if current is None or previous is None:
        return out
    for column in columns:
        if column in current and column in previous and current[column].notna().any() and previous[column].notna().any():
            out[column] = segment_share_changes(previous[column], current[column]).to_dict(orient="records")
    return out


def drift_row(
    run_id: str, run_at: datetime, model_version: str | None, current_cutoff: date, ref_cutoff: date,
    ref_kind: str, n_reference: int, n_current: int, result: DriftResult, segments: dict, report: Path | None,
) -> dict:
    """The monitoring.drift_runs row of one drift run (JSON columns as text)."""
    columns = result.to_frame()
    max_change = max((abs(r["share_change"]) for rows in segments.values() for r in rows), default=0.0)
    return {
        "drift_run_id": run_id,
        "run_at": run_at,
        "model_version": model_version,
        "current_cutoff": current_cutoff,
        "reference_cutoff": ref_cutoff,
        "reference_kind": ref_kind,
        "n_reference": n_reference,
        "n_current": n_current,
        "n_columns": len(result.columns),
        "n_drifted": len(result.drifted_columns),
        "share_drifted": result.share_drifted,
        "drift_share_threshold": result.drift_share_threshold,
        "drift_detected": result.drift_detected,
        "prediction_method": result.prediction.method if result.prediction else None,
        "prediction_score": result.prediction.score if result.prediction else None,
        "prediction_drifted": result.prediction.drifted if result.prediction else None,
        "column_drift": json.dumps(columns.to_dict(orient="records")),
        "segment_changes": json.dumps(segments),
        "max_segment_share_change": float(max_change),
        "skipped_columns": json.dumps(result.skipped),
        "report_path": str(report) if report else None,
    }


def write_drift_run(conn, row: dict, columns: pd.DataFrame) -> None:
    """Replace the rows of ``row['drift_run_id']`` in drift_runs and drift_columns, atomically."""
    ensure_monitoring_tables(conn)
    run_frame = pd.DataFrame([row])
    column_frame = columns.assign(drift_run_id=row["drift_run_id"], run_at=row["run_at"])
    with transaction(conn):
        for table in (DRIFT_RUNS_TABLE, DRIFT_COLUMNS_TABLE):
            conn.execute(f"delete from {table} where drift_run_id = ?", [row["drift_run_id"]])
        conn.register("_drift_run", run_frame)
        conn.execute(
            f"insert into {DRIFT_RUNS_TABLE} by name select * replace ("
            "column_drift::json as column_drift, segment_changes::json as segment_changes, "
            "skipped_columns::json as skipped_columns) from _drift_run"
        )
        conn.unregister("_drift_run")
        if len(column_frame):
            conn.register("_drift_columns", column_frame)
            conn.execute(f"insert into {DRIFT_COLUMNS_TABLE} by name select * from _drift_columns")
            conn.unregister("_drift_columns")


@dg.multi_asset(
    name="drift_runs",
    specs=[
        layer_spec(DRIFT_RUNS, deps=[FEATURES, SCORE_HISTORY], kinds={"duckdb", "evidently"},
                   description="One row per drift run: feature, prediction and segment-share drift."),
        layer_spec(DRIFT_COLUMNS, deps=[FEATURES, SCORE_HISTORY], kinds={"duckdb", "evidently"},
                   description="One row per measured column of each drift run, written with it."),
    ],
)
def drift_runs(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    """Feature drift (current features vs the registered model's), prediction drift and segment-share
    changes (current vs previous score snapshot), with an Evidently HTML report under data/reports.
    One row per run in monitoring.drift_runs and one per measured column in monitoring.drift_columns,
    written in one transaction; the drift sensor retrains when the run's flag is set.
    """
    config = load_config()
    run_at = _now()
    settings = config.drift
    with duckdb.get_connection() as conn:
        ensure_monitoring_tables(conn)
        # only the rows the comparison measures leave DuckDB: memory is bounded by drift max_rows
        current, n_current = sampled_table(conn, FEATURE_TABLE, settings.max_rows, DRIFT_FEATURES)
        current_cutoff = conn.execute(f"select max(feature_cutoff) from {FEATURE_TABLE}").fetchone()[0]
        current_cutoff = pd.Timestamp(current_cutoff).date() if current_cutoff is not None else scoring_cutoff(conn)
        ref_cutoff, ref_kind = reference_cutoff(conn, current_cutoff, config)
        reference, n_reference, reference_reused = training_reference(conn, ref_cutoff, ref_kind, settings.max_rows)
        snapshots = snapshot_inputs(conn, settings.prediction_column, settings.segment_columns, settings.max_rows)
        registered = _newest_model_run(conn)
        old_report = conn.execute(
            f"select report_path from {DRIFT_RUNS_TABLE} where drift_run_id = ?", [context.run.run_id]
        ).fetchone()
    compared = ref_cutoff != current_cutoff
    columns = [c for c in DRIFT_FEATURES if c in current.columns and c in reference.columns] if compared else []
    have_predictions = snapshots["previous_predictions"] is not None and snapshots["latest_predictions"] is not None
    result = detect_drift(
        reference,
        current,
        columns,
        config.drift,
        reference_predictions=snapshots["previous_predictions"] if have_predictions else None,
        current_predictions=snapshots["latest_predictions"] if have_predictions else None,
    )
    model_version = snapshots["latest_model_version"] or (registered or {}).get("model_version")
    if compared:
        reference_name = "the training reference" if run_is_reference(ref_kind) else "the reference features"
        title = (f"Feature drift: features at {current_cutoff} vs {reference_name} at {ref_cutoff} "
                 f"({ref_kind}), scored by model {model_version}")
    else:
        title = (f"No feature comparison yet: the features at {current_cutoff} are the training reference of "
                 f"{ref_kind}; prediction drift only (model {model_version})")
    report = save_report(result, when=run_at, title=title)
    if report is None:
        report = save_note(title, [
            f"Reference: {ref_kind}, features at {ref_cutoff}. Current features: {current_cutoff}.",
            "Feature drift is measured once the data has moved past the registered model's training cutoff."
            if not compared else "No column had enough non-null values on both sides to be measured.",
            "Prediction drift needs two score snapshots (monitoring.score_history)."
            if result.prediction is None else "",
            f"Skipped: {json.dumps(result.skipped)}" if result.skipped else "",
        ], when=run_at)
    if old_report and old_report[0] and old_report[0] != str(report):
        Path(old_report[0]).unlink(missing_ok=True)
    prune_reports("drift_")
    row = drift_row(
        context.run.run_id, run_at, model_version, current_cutoff, ref_cutoff, ref_kind,
        n_reference, n_current, result, snapshots["segment_changes"], report,
    )
    if not compared:
        row["share_drifted"] = None
    with duckdb.get_connection() as conn:
        write_drift_run(conn, row, result.to_frame())
        total = conn.execute(f"select count(*) from {DRIFT_RUNS_TABLE}").fetchone()[0]
        column_rows = conn.execute(f"select count(*) from {DRIFT_COLUMNS_TABLE}").fetchone()[0]
        contract.apply_comments(conn, tables=[DRIFT_RUNS_TABLE, DRIFT_COLUMNS_TABLE, DRIFT_REFERENCE_TABLE])
        schema = contract.column_metadata(conn, DRIFT_RUNS_TABLE)
        column_schema = contract.column_metadata(conn, DRIFT_COLUMNS_TABLE)
    drifted = result.to_frame().sort_values("score", ascending=False)
    if compared:
        status = (f"{len(result.drifted_columns)}/{len(result.columns)} feature columns drifted "
                  f"({result.share_drifted:.0%}, threshold {result.drift_share_threshold:.0%})")
    else:
        status = "no comparison yet"
    context.log.info(f"{status}: features at {current_cutoff} vs {ref_kind} ({ref_cutoff})")
    metadata = {
        "drift_run_id": context.run.run_id,
        "status": status,
        "report_title": title,
        "drift_detected": result.drift_detected,
        **({"share_drifted": result.share_drifted} if compared else {}),
        "drift_share_threshold": result.drift_share_threshold,
        "drifted_columns": ", ".join(result.drifted_columns) or "none",
        "current_cutoff": str(current_cutoff),
        "reference_cutoff": f"{ref_cutoff} ({ref_kind})",
        "reference_reused": reference_reused,
        "columns": _md(drifted, rows=len(drifted)),
        "max_segment_share_change": row["max_segment_share_change"],
        "skipped_columns": dg.MetadataValue.json(result.skipped),
        "copies_not_measured": ", ".join(f"{c} = {o}" for c, o in AFFINE_COPIES.items()),
        "dagster/row_count": int(total),
        **schema,
    }
    if result.prediction:
        metadata["prediction_drift_score"] = result.prediction.score
        metadata["prediction_drifted"] = result.prediction.drifted
    if report:
        metadata["report"] = dg.MetadataValue.path(str(report))
        metadata["report_url"] = dg.MetadataValue.url(report_url(report))
    yield dg.MaterializeResult(asset_key=DRIFT_RUNS, metadata=metadata)
    yield dg.MaterializeResult(asset_key=DRIFT_COLUMNS, metadata={
        "dagster/row_count": int(column_rows),
        "columns_this_run": len(drifted),
        "drift_run_id": context.run.run_id,
        **column_schema,
    })


# the drift step is near the end of a run and the only user of Evidently: load it while the
# run's first steps execute (core.warmup; the storage resource starts it for runs that select it)
warmup.register("evidently", [drift_runs.node_def.name], warm_up)


# ----------------------------------------------------------------------------- realized performance


class ModelPerformanceConfig(dg.Config):
    """How past scorings are evaluated."""

    reevaluate: bool = False
    """Evaluate every matured scoring again (after corrections to old orders, e.g. late refunds),
    instead of only those whose horizon has passed since the last run; one scoring at a time."""


@layer_asset(MODEL_PERFORMANCE, deps=[SCORE_HISTORY, STAGING_ORDERS], kinds={"duckdb"})
def model_performance(context: dg.AssetExecutionContext, config: ModelPerformanceConfig,
                      duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Realized MAE and normalized Gini of every past scoring whose horizon has passed, by scoring
    date: its predictions against what customers actually spent (discounted) in (cutoff, cutoff + H].

    Each scoring is evaluated once, in the first run after its horizon ends, and its row is kept
    (``evaluated_at``); a row whose snapshot is no longer the day's scoring (replaced, or gone) is
    dropped. The score history holds a whole store per night, so only one scoring at a time is read.
    With ``reevaluate`` (run config) every matured scoring is evaluated again.
    """
    settings = load_config()
    with duckdb.get_connection() as conn:
        ensure_monitoring_tables(conn)
        heads = snapshot_heads(conn, SCORE_HISTORY_TABLE)
        data_end = conn.execute("select max(order_date) from staging.orders").fetchone()[0]
        scorings = matured(heads, data_end) if data_end is not None else heads.iloc[0:0]
        stored = {s for (s,) in conn.execute(f"select snapshot_id from {PERFORMANCE_TABLE}").fetchall()}
        kept = set() if config.reevaluate else stored & set(scorings["snapshot_id"])
        new = evaluate(conn, scorings, settings.performance.annual_discount_rate, done=kept)
        new = new.assign(evaluated_at=_now())
        with transaction(conn):
            (dropped,) = conn.execute(f"delete from {PERFORMANCE_TABLE} "
                                      "where snapshot_id not in (select unnest(?::varchar[]))", [sorted(kept)]).fetchone()
            if len(new):
                conn.register("_rows", new)
                conn.execute(f"insert into {PERFORMANCE_TABLE} by name select * from _rows")
                conn.unregister("_rows")
        rows = row_count(conn, PERFORMANCE_TABLE)
        performance = conn.execute(f"select * exclude (evaluated_at) from {PERFORMANCE_TABLE} "
                                   "order by scoring_date desc limit 20").df()
        contract.apply_comments(conn, tables=[PERFORMANCE_TABLE])
        schema = contract.column_metadata(conn, PERFORMANCE_TABLE)
    pending = next_maturity(heads, data_end) if data_end is not None else None
    context.log.info(f"{len(new)} scorings evaluated now, {rows} in all; data through {data_end}; "
                     f"next horizon ends {pending}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            **schema,
            "evaluated_now": len(new),
            "rows_dropped": int(dropped),
            "snapshots": len(heads),
            "data_through": str(data_end),
            "next_evaluation_possible": str(pending) if pending else "no pending snapshot",
            "performance": _md(performance, rows=20),
        }
    )


MONITORING_ASSETS = [score_history, drift_runs, model_performance]
