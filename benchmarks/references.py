"""The bench's references: the same RFM / cadence features as the SQL, written in pandas.

`pandas_features` is the vectorized notebook version, `pandas_features_per_customer` the seed
projects' one-function-per-customer style; `agreement` says whether either equals the SQL
features (the bench's like-for-like claim, and what test_bench.py asserts).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd


def pandas_features(orders: pd.DataFrame, cutoff: date) -> pd.DataFrame:
    """The notebook reference: RFM + cadence features with pandas groupby/diff/agg.

    Same definitions as the SQL (non-cancelled as of the cutoff, day-level transactions),
    written the way an analyst would, vectorized — no per-customer Python loops.
    """
    cut = pd.Timestamp(cutoff)
    df = orders[orders["customer_id"].notna() & (orders["order_date"] <= cut)].copy()
    cancelled = df["is_cancelled"] & ~(df["cancelled_at"].dt.normalize() > cut)
    df = df[~cancelled]
    df["net"] = (df["gross_revenue"] - df["refunded_amount"]).clip(lower=0)
    df = df.sort_values(["customer_id", "order_date"])
    days = df.groupby(["customer_id", "order_date"], as_index=False).agg(
        net=("net", "sum"), orders=("net", "size")
    )
    days["gap"] = days.groupby("customer_id")["order_date"].diff().dt.days
    days["day_number"] = days.groupby("customer_id").cumcount()
    age = (cut - days["order_date"]).dt.days
    days["o30"] = days["orders"].where(age < 30, 0)
    days["o90"] = days["orders"].where(age < 90, 0)
    days["o365"] = days["orders"].where(age < 365, 0)
    days["s90"] = days["net"].where(age < 90, 0.0)
    days["p90"] = days["net"].where((age >= 90) & (age < 180), 0.0)
    days["repeat_net"] = days["net"].where(days["day_number"] > 0)
    out = days.groupby("customer_id").agg(
        first=("order_date", "min"),
        last=("order_date", "max"),
        purchase_days=("order_date", "size"),
        order_count=("orders", "sum"),
        total_net_spend=("net", "sum"),
        monetary=("repeat_net", "mean"),
        mean_interpurchase_days=("gap", "mean"),
        median_interpurchase_days=("gap", "median"),
        std_interpurchase_days=("gap", "std"),
        orders_last_30d=("o30", "sum"),
        orders_last_90d=("o90", "sum"),
        orders_last_365d=("o365", "sum"),
        spend_last_90d=("s90", "sum"),
        spend_prev_90d=("p90", "sum"),
    )
    out["days_since_last_order"] = (cut - out["last"]).dt.days
    out["frequency"] = out["purchase_days"] - 1
    out["monetary"] = out["monetary"].fillna(0.0)
    out["T_days"] = (cut - out["first"]).dt.days
    return out.drop(columns=["first", "last"])


PER_CUSTOMER_SAMPLE = 500


def pandas_features_per_customer(orders: pd.DataFrame, cutoff: date) -> pd.DataFrame:
    """The seed projects' style: one Python function per customer through `groupby().apply`.

    This is how RFM/cadence features are commonly written in CLV notebooks (readable, and
    slow: Python work per customer). Same definitions as `pandas_features`.
    """
    cut = pd.Timestamp(cutoff)
    df = orders[orders["customer_id"].notna() & (orders["order_date"] <= cut)].copy()
    df = df[~(df["is_cancelled"] & ~(df["cancelled_at"].dt.normalize() > cut))]
    df["net"] = (df["gross_revenue"] - df["refunded_amount"]).clip(lower=0)

    def one_customer(g: pd.DataFrame) -> pd.Series:
        days = g.groupby("order_date")["net"].agg(["sum", "size"]).sort_index()
        gaps = days.index.to_series().diff().dt.days.dropna()
        age = (cut - days.index).days
        return pd.Series({
            "days_since_last_order": (cut - days.index.max()).days,
            "frequency": len(days) - 1,
            "monetary": days["sum"].iloc[1:].mean() if len(days) > 1 else 0.0,
            "total_net_spend": days["sum"].sum(),
            "order_count": days["size"].sum(),
            "T_days": (cut - days.index.min()).days,
            "mean_interpurchase_days": gaps.mean() if len(gaps) else np.nan,
            "median_interpurchase_days": gaps.median() if len(gaps) else np.nan,
            "std_interpurchase_days": gaps.std() if len(gaps) > 1 else np.nan,
            "orders_last_30d": days["size"][age < 30].sum(),
            "orders_last_90d": days["size"][age < 90].sum(),
            "orders_last_365d": days["size"][age < 365].sum(),
            "spend_last_90d": days["sum"][age < 90].sum(),
            "spend_prev_90d": days["sum"][(age >= 90) & (age < 180)].sum(),
        })

    return df.groupby("customer_id").apply(one_customer, include_groups=False)


_COMPARED = [
    "days_since_last_order", "frequency", "monetary", "total_net_spend", "order_count", "T_days",
    "mean_interpurchase_days", "median_interpurchase_days", "std_interpurchase_days",
    "orders_last_30d", "orders_last_90d", "orders_last_365d", "spend_last_90d", "spend_prev_90d",
]


def agreement(sql_features: pd.DataFrame, reference: pd.DataFrame) -> dict[str, Any]:
    """Max absolute difference per shared column between the SQL and pandas features."""
    joined = sql_features.set_index("customer_id")[_COMPARED].join(
        reference[_COMPARED], how="outer", rsuffix="_pd"
    )
    worst = {}
    for col in _COMPARED:
        a, b = joined[col].astype(float), joined[col + "_pd"].astype(float)
        both_null = a.isna() & b.isna()
        diff = (a - b).abs().where(~both_null, 0.0)
        worst[col] = float(diff.max()) if not diff.isna().any() else float("inf")
    return {
        "customers_sql": int(len(sql_features)),
        "customers_pandas": int(len(reference)),
        "max_abs_diff": max(worst.values()) if worst else 0.0,
        "ok": len(sql_features) == len(reference) and all(v < 1e-6 for v in worst.values()),
    }
