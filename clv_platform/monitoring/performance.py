"""Realized model performance: how good were the scores of an earlier scoring, now that we know?

A score snapshot made at cutoff C predicts each customer's (discounted) spend over (C, C + H].
Once the data reach C + H, the prediction can be compared with what the customer actually spent
in that window: MAE (on the money scale) and normalized Gini (ranking quality, scale-free; the
same `clv_platform.models.metrics` functions the backtests use). Until then the snapshot is
"pending" and not evaluated: a partial window would make every model look pessimistic.

Realized spend is the staging `net_revenue` (0 for cancelled orders, net of refunds) of orders
dated in (C, C + H], discounted to C at the configured annual rate because `predicted_clv` is
discounted the same way; customers without orders spent 0.

`monitoring.score_history` gains a whole store's snapshot every night and is never pruned, so
nothing here reads it whole: the snapshots' header rows are aggregated in DuckDB, a scoring is
evaluated once, the first run after its horizon has passed (``evaluated_at`` says when), and its
realized spend is joined to its predictions in SQL; only that one scoring's two float columns
reach numpy for the metrics.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from clv_platform.models.metrics import mae, normalized_gini

PERFORMANCE_COLUMNS = [
    "scoring_date",
    "snapshot_id",
    "model_version",
    "scored_at",
    "cutoff",
    "horizon_days",
    "horizon_end",
    "customers",
    "predicted_total",
    "actual_total",
    "mae",
    "normalized_gini",
]

SCORE_HISTORY_TABLE = "monitoring.score_history"


def _as_date(value) -> date:
    return pd.Timestamp(value).date()


def snapshot_heads(conn, table: str = SCORE_HISTORY_TABLE) -> pd.DataFrame:
    """One row per snapshot of ``table``: id, scored_at, cutoff, horizon_days, model_version and its
    customer count (aggregated in DuckDB: the table holds every night's whole store)."""
    return conn.execute(f"""
        select snapshot_id, max(scored_at) as scored_at, max(cutoff) as cutoff,
               max(horizon_days) as horizon_days, any_value(model_version) as model_version,
               count(*) as customers
        from {table} group by snapshot_id order by snapshot_id""").df()


def matured(heads: pd.DataFrame, data_end: date) -> pd.DataFrame:
    """The scorings to evaluate: snapshots whose whole window (cutoff, cutoff + horizon] lies on or
    before ``data_end``, one per scoring date (the last snapshot of a day stands for it)."""
    if heads.empty:
        return heads.assign(scoring_date=pd.Series(dtype=object))
    ends = [_as_date(c) + timedelta(days=int(h)) for c, h in zip(heads["cutoff"], heads["horizon_days"])]
    ready = heads.loc[[end <= _as_date(data_end) for end in ends]]
    ready = ready.assign(scoring_date=[ts.date() for ts in pd.to_datetime(ready["scored_at"])])
    return ready.sort_values(["scored_at", "snapshot_id"]).drop_duplicates("scoring_date", keep="last")


def next_maturity(heads: pd.DataFrame, data_end: date) -> date | None:
    """The earliest horizon end still after ``data_end`` (when the next evaluation becomes possible)."""
    ends = sorted(_as_date(c) + timedelta(days=int(h)) for c, h in zip(heads["cutoff"], heads["horizon_days"]))
    later = [e for e in ends if e > _as_date(data_end)]
    return later[0] if later else None


def realized_outcomes(conn, snapshot_id: str, cutoff: date, horizon_days: int, annual_discount_rate: float = 0.0,
                      prediction_column: str = "predicted_clv", table: str = SCORE_HISTORY_TABLE,
                      orders: str = "staging.orders") -> tuple[np.ndarray, np.ndarray]:
    """(realized spend, prediction) per customer of one snapshot, in DuckDB.

    The spend is the customer's ``net_revenue`` of orders dated in (cutoff, cutoff + horizon]; an
    order ``d`` days after the cutoff is worth ``net · (1 + r)^(−d / 365)``; a customer of the
    snapshot without such orders spent 0, and orders of customers not in the snapshot are not counted.
    """
    cutoff = _as_date(cutoff)
    frame = conn.execute(f"""
        with spend as (
            select customer_id::varchar as customer_id,
                   sum(net_revenue::double * pow(1.0 + $rate, -(order_date::date - $cutoff::date) / 365.0)) as spend
            from {orders}
            where customer_id is not null and order_date::date > $cutoff::date and order_date::date <= $end::date
            group by 1
        )
        select coalesce(spend.spend, 0.0) as actual, s.{prediction_column}::double as predicted
        from {table} as s left join spend on spend.customer_id = s.customer_id::varchar
        where s.snapshot_id = $snapshot""",
        {"rate": float(annual_discount_rate), "cutoff": cutoff, "end": cutoff + timedelta(days=int(horizon_days)),
         "snapshot": snapshot_id}).fetchnumpy()
    return np.asarray(frame["actual"], dtype=float), np.asarray(frame["predicted"], dtype=float)


def evaluate(conn, scorings: pd.DataFrame, annual_discount_rate: float = 0.0,
             done: set[str] | frozenset = frozenset(), prediction_column: str = "predicted_clv",
             table: str = SCORE_HISTORY_TABLE, orders: str = "staging.orders") -> pd.DataFrame:
    """One row per matured scoring (a row of ``matured``) whose snapshot is not in ``done``: MAE and
    normalized Gini of its predictions against the realized spend (``realized_outcomes``)."""
    rows = []
    for head in scorings.itertuples(index=False):
        if head.snapshot_id in done:
            continue
        y, p = realized_outcomes(conn, head.snapshot_id, head.cutoff, head.horizon_days, annual_discount_rate,
                                 prediction_column, table, orders)
        rows.append({
            "scoring_date": head.scoring_date,
            "snapshot_id": head.snapshot_id,
            "model_version": head.model_version,
            "scored_at": head.scored_at,
            "cutoff": _as_date(head.cutoff),
            "horizon_days": int(head.horizon_days),
            "horizon_end": _as_date(head.cutoff) + timedelta(days=int(head.horizon_days)),
            "customers": int(len(y)),
            "predicted_total": float(np.sum(p)),
            "actual_total": float(np.sum(y)),
            "mae": mae(y, p),
            "normalized_gini": normalized_gini(y, p),
        })
    return pd.DataFrame(rows, columns=PERFORMANCE_COLUMNS)
