"""Explanation of a trained booster: SHAP values from xgboost's ``pred_contribs`` /
``pred_interactions`` and a self-contained SVG/HTML page of them.
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from clv_platform.models.clv.booster import _dmatrix, ClvModel


def _sample(frame: pd.DataFrame, size: int, seed: int = 0) -> pd.DataFrame:
    return frame if len(frame) <= size else frame.sample(size, random_state=seed)


def shap_importance(model: ClvModel, frame: pd.DataFrame, sample: int = 2000) -> pd.DataFrame:
    """Global importance: mean |SHAP| per feature (xgboost's TreeSHAP), on a sample for speed.

    SHAP values are on the booster's margin scale (log for Tweedie and log1p), which ranks
    features the same way as the spend scale would for a single-link model. A model without a
    booster (BTYD-only, ``train.btyd_only``) has nothing to explain: an empty table.
    """
    if model.booster is None:
        return pd.DataFrame({"feature": pd.Series(dtype=str), "mean_abs_shap": pd.Series(dtype=float),
                             "mean_shap": pd.Series(dtype=float), "rank": pd.Series(dtype="int64"),
                             "n_sample": pd.Series(dtype="int64")})
    rows = _sample(frame, sample)
    contribs = model.booster.predict(
        _dmatrix(rows, model.features, model.objective, "btyd_expected_spend" if model.offset else None),
        pred_contribs=True,
    )[:, :-1]
    table = pd.DataFrame(
        {
            "feature": model.features,
            "mean_abs_shap": np.abs(contribs).mean(axis=0),
            "mean_shap": contribs.mean(axis=0),
        }
    ).sort_values("mean_abs_shap", ascending=False, kind="stable")
    table["rank"] = np.arange(1, len(table) + 1)
    table["n_sample"] = len(rows)
    return table.reset_index(drop=True)


def shap_interactions(model: ClvModel, frame: pd.DataFrame, sample: int = 400, top: int = 20) -> pd.DataFrame:
    """The ``top`` feature pairs by mean |SHAP interaction value| (off-diagonal, i < j, x2 for symmetry);
    an empty table for a model without a booster (BTYD-only)."""
    if model.booster is None:
        return pd.DataFrame({"feature_a": pd.Series(dtype=str), "feature_b": pd.Series(dtype=str),
                             "mean_abs_interaction": pd.Series(dtype=float), "rank": pd.Series(dtype="int64"),
                             "n_sample": pd.Series(dtype="int64")})
    rows = _sample(frame, sample, seed=1)
    values = model.booster.predict(
        _dmatrix(rows, model.features, model.objective, "btyd_expected_spend" if model.offset else None),
        pred_interactions=True,
    )[:, :-1, :-1]
    strength = np.abs(values).mean(axis=0)
    i, j = np.triu_indices(len(model.features), k=1)
    table = pd.DataFrame(
        {
            "feature_a": np.asarray(model.features)[i],
            "feature_b": np.asarray(model.features)[j],
            "mean_abs_interaction": 2.0 * strength[i, j],
        }
    ).sort_values("mean_abs_interaction", ascending=False, kind="stable").head(top)
    table["rank"] = np.arange(1, len(table) + 1)
    table["n_sample"] = len(rows)
    return table.reset_index(drop=True)


def importance_svg(importance: pd.DataFrame, title: str = "Mean |SHAP| per feature", top: int = 20) -> str:
    """A horizontal bar chart of the top features as a self-contained SVG string."""
    rows = importance.head(top)
    width, bar_h, left, top_pad = 760, 18, 230, 30
    height = top_pad + bar_h * len(rows) + 20
    peak = float(rows["mean_abs_shap"].max()) if len(rows) else 1.0
    peak = peak or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<text x="10" y="18" font-size="14" font-weight="bold">{_escape(title)}</text>']
    for k, row in enumerate(rows.itertuples(index=False)):
        y = top_pad + k * bar_h
        w = (width - left - 90) * float(row.mean_abs_shap) / peak
        parts.append(f'<text x="{left - 6}" y="{y + 13}" font-size="11" text-anchor="end">{_escape(row.feature)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{bar_h - 4}" fill="#1f77b4"/>')
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 13}" font-size="10">{float(row.mean_abs_shap):.4f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _escape(text) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def explainability_html(importance: pd.DataFrame, interactions: pd.DataFrame, title: str) -> str:
    """A self-contained HTML page: the importance chart and the interaction table."""
    rows = "".join(
        f"<tr><td>{r.rank}</td><td>{_escape(r.feature_a)}</td><td>{_escape(r.feature_b)}</td>"
        f"<td>{r.mean_abs_interaction:.4f}</td></tr>"
        for r in interactions.itertuples(index=False)
    )
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{_escape(title)}</title>'
        "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px}</style></head><body>"
        f"<h1>{_escape(title)}</h1>{importance_svg(importance)}"
        "<h2>Top feature interactions (mean |SHAP interaction|)</h2>"
        f"<table><tr><th>rank</th><th>feature a</th><th>feature b</th><th>strength</th></tr>{rows}</table>"
        "</body></html>"
    )
