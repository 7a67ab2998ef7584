"""Realized model performance: how good were the scores of an earlier scoring, now that we know?

A score snapshot made at cutoff C predicts each customer's (discounted) spend over (C, C + H].
Once the data reach C + H, the prediction can be compared with what the customer actually spent
in that window: MAE (on the money scale) and normalized Gini (ranking quality, scale-free; the
same `clv_platform.models.metrics` functions the backtests use). Until then the snapshot is
"pending" and not evaluated: a partial window would make every model look pessimistic.

Realized spend is the staging `net_revenue` (0 for cancelled orders, net of refunds) of orders
dated in (C, C + H], discounted to C at the configured annual rate because `predicted_clv` is
discounted the same way; customers without orders spent 0. Pure pandas, no Dagster.
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


def _as_date(value) -> date:
    return pd.Timestamp(value).date()


def realized_spend(
    orders: pd.DataFrame, cutoff: date, horizon_days: int, annual_discount_rate: float = 0.0
) -> pd.Series:
    """Spend per customer in (cutoff, cutoff + horizon], discounted to the cutoff.

    ``orders`` needs ``customer_id``, ``order_date`` and ``net_revenue``. An order ``d`` days after
    the cutoff is worth ``net · (1 + r)^(−d / 365)``.
    """
    cutoff = _as_date(cutoff)
    end = cutoff + timedelta(days=int(horizon_days))
    dates = pd.to_datetime(orders["order_date"]).dt.date
    window = orders.loc[(dates > cutoff) & (dates <= end) & orders["customer_id"].notna()]
    days = (pd.to_datetime(window["order_date"]) - pd.Timestamp(cutoff)).dt.days.to_numpy(dtype=float)
    value = window["net_revenue"].astype(float).to_numpy() * (1.0 + annual_discount_rate) ** (-days / 365.0)
    return pd.Series(value, index=window["customer_id"].astype(str).to_numpy()).groupby(level=0).sum()


def matured(snapshots: pd.DataFrame, data_end: date) -> pd.DataFrame:
    """Snapshot header rows whose whole window (cutoff, cutoff + horizon] lies on or before ``data_end``."""
    heads = snapshots.drop_duplicates("snapshot_id")
    ends = [
        _as_date(c) + timedelta(days=int(h)) for c, h in zip(heads["cutoff"], heads["horizon_days"])
    ]
    return heads.loc[[end <= _as_date(data_end) for end in ends]]


def realized_performance(
    snapshots: pd.DataFrame,
    orders: pd.DataFrame,
    data_end: date,
    annual_discount_rate: float = 0.0,
    prediction_column: str = "predicted_clv",
) -> pd.DataFrame:
    """One row per scoring date whose holdout window has passed: MAE and normalized Gini.

    ``snapshots`` are rows of ``monitoring.score_history`` (``snapshot_id``, ``scored_at``,
    ``cutoff``, ``horizon_days``, ``model_version``, ``customer_id`` and the prediction). When
    several snapshots were taken on one day, the last one of that day stands for it.
    """
    if snapshots.empty:
        return pd.DataFrame(columns=PERFORMANCE_COLUMNS)
    ready = matured(snapshots, data_end)
    if ready.empty:
        return pd.DataFrame(columns=PERFORMANCE_COLUMNS)
    ready = ready.assign(scoring_date=pd.to_datetime(ready["scored_at"]).dt.date)
    ready = ready.sort_values("scored_at").drop_duplicates("scoring_date", keep="last")
    rows = []
    for head in ready.itertuples(index=False):
        snap = snapshots.loc[snapshots["snapshot_id"] == head.snapshot_id]
        actual = realized_spend(orders, head.cutoff, head.horizon_days, annual_discount_rate)
        y = actual.reindex(snap["customer_id"].astype(str).to_numpy()).fillna(0.0).to_numpy(dtype=float)
        p = snap[prediction_column].astype(float).to_numpy()
        rows.append(
            {
                "scoring_date": head.scoring_date,
                "snapshot_id": head.snapshot_id,
                "model_version": head.model_version,
                "scored_at": head.scored_at,
                "cutoff": _as_date(head.cutoff),
                "horizon_days": int(head.horizon_days),
                "horizon_end": _as_date(head.cutoff) + timedelta(days=int(head.horizon_days)),
                "customers": int(len(snap)),
                "predicted_total": float(np.sum(p)),
                "actual_total": float(np.sum(y)),
                "mae": mae(y, p),
                "normalized_gini": normalized_gini(y, p),
            }
        )
    return pd.DataFrame(rows, columns=PERFORMANCE_COLUMNS).sort_values("scoring_date").reset_index(drop=True)


def next_maturity(snapshots: pd.DataFrame, data_end: date) -> date | None:
    """The earliest horizon end still after ``data_end`` (when the next evaluation becomes possible)."""
    if snapshots.empty:
        return None
    heads = snapshots.drop_duplicates("snapshot_id")
    ends = sorted(
        _as_date(c) + timedelta(days=int(h)) for c, h in zip(heads["cutoff"], heads["horizon_days"])
    )
    later = [e for e in ends if e > _as_date(data_end)]
    return later[0] if later else None
