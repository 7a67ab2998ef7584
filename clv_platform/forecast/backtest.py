"""Revenue-forecast backtest: forecast at a past cutoff vs the actual monthly revenue after it.

The forecast of ``revenue.forecast_revenue`` is made with data up to the cutoff only (per-customer
predictions = the expected spend of the BTYD ml/btyd_scores would serve at the cutoff,
``served_purchase_model``, since the backtest does not train the XGBoost model) and
compared month by month with the actual revenue, against a seasonal-naive baseline: the same
month one year earlier times the recent trend (revenue of the last three months before the
cutoff / the same three months a year earlier; 1 when the history does not reach that far back,
which is flagged); a flat mean of the last three months is shown beside it. Reported: absolute
percentage error per month and its mean (MAPE) for each,
the share of months whose actual lies in the forecast's 80 % interval (coverage), and the errors
of the existing- and new-customer parts.

Data sets: ``demo`` (the built-in demo store, two years: forecast from 2025-10-31, so the
forecast and the baseline both have exactly one year of history), ``demo-3y`` (the same store
simulated over three years, two years of history before the cutoff), the CDNOW files (18 months:
see ``CDNOW_NOTE``) or a transactions CSV (``customer_id, order_date, amount``).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from clv_platform.forecast import revenue
from clv_platform.reports import svg_chart_start, svg_value_axis

DEMO_DATASETS = {
    # name: (start, end, default cutoff)
    "demo": (date(2024, 11, 1), date(2026, 10, 31), date(2025, 10, 31)),
    "demo-3y": (date(2023, 11, 1), date(2026, 10, 31), date(2025, 10, 31)),
}
CDNOW_CUTOFF = date(1997, 12, 31)
CDNOW_NOTE = (
    "CDNOW covers 1997-01 to 1998-06 (18 months) and every customer first bought in 1997-Q1, so the "
    "forecast is cut at 1997-12-31 and scored on the six months 1998-01..06; the baseline's 'same month "
    "last year' falls into the acquisition quarter for Jan-Mar and the three-month trend has no year-ago "
    "window (trend = 1). CDNOW is a closed cohort (no customer can be new after 1997-03), so the forecast "
    "scored is the existing-customer part alone. It is not a data set with two years of history."
)
BASELINE_TREND_MONTHS = 3


@dataclass(frozen=True)
class ForecastDataset:
    name: str
    transactions: pd.DataFrame
    default_cutoff: date | None
    note: str = ""
    closed_cohort: bool = False  # no customer can be new after the cutoff: the forecast is the existing part


def demo_transactions(start: date, end: date, n_customers: int = 5000, seed: int = 42) -> pd.DataFrame:
    """Net revenue per order of the demo store (test orders dropped, refunds and voids netted).

    Orders carry the simulated shopper (so guest checkouts count for the person who placed them);
    the amount is the order's net sales as staging computes them: its subtotal (lines after
    discounts) minus the products refunded before the store's end date, not the tax or shipping
    refunded (a refund of the shipping only leaves it whole). Refunds after a backtest cutoff of
    orders before it are netted too: a small look-ahead in the history.
    """
    from clv_platform.ingestion.demo_store import DemoStoreParams, generate

    store = generate(DemoStoreParams(n_customers=n_customers, seed=seed, start_date=start, end_date=end))
    # cancelled orders (voided, or cancelled and refunded) are not purchases, as in staging
    orders = store.orders[~store.orders["is_test"] & ~store.orders["fate"].isin([1, 2])]
    net = (orders["gross_cents"].to_numpy() - orders["refund_products_cents"].to_numpy()) / 100.0
    return pd.DataFrame({
        "customer_id": orders["individual"].astype(str).to_numpy(),
        "order_date": pd.to_datetime(orders["created_s"].to_numpy(), unit="s").normalize(),
        "amount": net,
    })


def load_forecast_dataset(name: str) -> ForecastDataset:
    """``demo``, ``demo-3y``, ``cdnow-sample``, ``cdnow-full`` or a CSV path."""
    if name in DEMO_DATASETS:
        start, end, cutoff = DEMO_DATASETS[name]
        return ForecastDataset(name, demo_transactions(start, end), cutoff,
                               f"demo store {start}..{end}, 5,000 customers, seed 42")
    from clv_platform.models.datasets import CDNOW_DATASETS, load_dataset

    loaded = load_dataset(name)
    if name in CDNOW_DATASETS:
        return ForecastDataset(loaded.name, loaded.transactions, CDNOW_CUTOFF, CDNOW_NOTE, closed_cohort=True)
    return ForecastDataset(loaded.name, loaded.transactions, None)


def default_cutoff_for(transactions: pd.DataFrame) -> date:
    """The month end 12 months before the last complete month of the data."""
    last = pd.Timestamp(transactions["order_date"].max()).normalize()
    last_complete = last if last.is_month_end else last - pd.offsets.MonthEnd(1)
    return (last_complete - pd.offsets.MonthEnd(12)).date()


def _revenue_between(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> float:
    inside = (frame["order_date"] >= start) & (frame["order_date"] <= end)
    return float(frame.loc[inside, "amount"].sum())


def seasonal_naive(transactions: pd.DataFrame, cutoff: date, periods: list[revenue.Period]) -> tuple[dict, dict]:
    """Baseline per period: revenue in the same days a year earlier x the recent trend.

    Returns ({period label: value or None when last year is not covered}, trend description).
    """
    frame = transactions.assign(order_date=pd.to_datetime(transactions["order_date"]))
    first_day = frame["order_date"].min()
    c = pd.Timestamp(cutoff)
    recent_start = c - pd.DateOffset(months=BASELINE_TREND_MONTHS) + pd.Timedelta(days=1)
    year_ago_start, year_ago_end = recent_start - pd.DateOffset(years=1), c - pd.DateOffset(years=1)
    if year_ago_start >= first_day:
        previous = _revenue_between(frame, year_ago_start, year_ago_end)
        trend = _revenue_between(frame, recent_start, c) / previous if previous > 0 else 1.0
        trend_info = {"trend": trend, "available": True,
                      "window": f"{recent_start.date()}..{c.date()} vs {year_ago_start.date()}..{year_ago_end.date()}"}
    else:
        trend = 1.0
        trend_info = {"trend": 1.0, "available": False,
                      "window": f"history starts {first_day.date()}: no year-ago window for {recent_start.date()}..{c.date()}"}
    values = {}
    for p in periods:
        start, end = pd.Timestamp(p.start) - pd.DateOffset(years=1), pd.Timestamp(p.end) - pd.DateOffset(years=1)
        values[p.label] = None if start < first_day else _revenue_between(frame, start, end) * trend
    return values, trend_info


def recent_mean(transactions: pd.DataFrame, cutoff: date, months: int = BASELINE_TREND_MONTHS) -> float | None:
    """A second, flat reference: mean monthly revenue of the last ``months`` whole months before the cutoff."""
    frame = transactions.assign(order_date=pd.to_datetime(transactions["order_date"]))
    c = pd.Timestamp(cutoff)
    start = c - pd.DateOffset(months=months) + pd.Timedelta(days=1)
    if start < frame["order_date"].min():
        return None
    return _revenue_between(frame, start, c) / months


def _ape(predicted: float | None, actual: float) -> float | None:
    if predicted is None or actual <= 0:
        return None
    return abs(predicted - actual) / actual


def _mean(values) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def served_purchase_model(summary: pd.DataFrame, config_path=None):
    """The BTYD that ``ml/btyd_scores`` would serve on ``summary`` (``btyd.summarize`` at the cutoff;
    clv.toml's family, ``auto`` by default, its penalizers and fit sample): marts/revenue_forecast
    forecasts with that fit, so the backtest does too. A fixed BG/NBD failed the backtest of a store
    where nobody churns ("The model did not converge") that the platform forecasts with MBG/NBD.
    ``config_path``: another clv.toml (the backtest's ``--config``)."""
    from clv_platform.models.clv import load_config

    config = load_config(config_path)
    return revenue.fit_purchase_model(summary, config.btyd_model, config.max_btyd_fit_customers or None,
                                      config.btyd_penalizer, config.spend_penalizer)


def run_forecast_backtest(dataset: str, cutoff: str | date | None = None, config_path=None) -> dict:
    """Forecast at ``cutoff`` with data up to it; score every whole month the data still cover."""
    loaded = load_forecast_dataset(dataset)
    tx = loaded.transactions
    cutoff = pd.Timestamp(cutoff).date() if cutoff else (loaded.default_cutoff or default_cutoff_for(tx))
    if not pd.Timestamp(cutoff).is_month_end:
        raise ValueError(f"forecast cutoff {cutoff} must be a month end, so the periods are calendar months")
    data_end = pd.Timestamp(tx["order_date"].max()).normalize()
    if pd.Timestamp(cutoff) >= data_end:
        raise ValueError(f"forecast cutoff {cutoff} is not before the end of the data ({data_end.date()})")
    # one summary at the cutoff for the fit and the forecast (summarize reads orders up to it only)
    summary = revenue.btyd.summarize(tx, cutoff)
    forecast = revenue.forecast_revenue(tx, cutoff, model=served_purchase_model(summary, config_path), summary=summary)
    table = forecast.table
    months = [
        p for p in revenue.forecast_periods(cutoff)
        if p.kind == "month" and pd.Timestamp(p.end) <= data_end
    ]
    if not months:
        raise ValueError(f"no whole month of data after the cutoff {cutoff}")
    actual = revenue.period_actuals(tx, months, cutoff).set_index("period")
    baseline, trend = seasonal_naive(tx, cutoff, months)
    recent = recent_mean(tx, cutoff)
    if loaded.closed_cohort:
        table = table.assign(
            total_revenue=table["existing_revenue"], total_revenue_low=table["existing_revenue_low"],
            total_revenue_high=table["existing_revenue_high"], new_revenue=0.0, new_revenue_low=0.0,
            new_revenue_high=0.0,
        )
    rows = []
    for p in months:
        f = table[table["period"] == p.label].iloc[0]
        a = actual.loc[p.label]
        rows.append({
            "period": p.label,
            "month": p.start.strftime("%Y-%m"),
            "actual": a["actual_revenue"],
            "forecast": float(f["total_revenue"]),
            "low": float(f["total_revenue_low"]),
            "high": float(f["total_revenue_high"]),
            "baseline": baseline[p.label],
            "recent_mean": recent,
            "ape_recent_mean": _ape(recent, a["actual_revenue"]),
            "ape_forecast": _ape(float(f["total_revenue"]), a["actual_revenue"]),
            "ape_baseline": _ape(baseline[p.label], a["actual_revenue"]),
            "covered": bool(f["total_revenue_low"] <= a["actual_revenue"] <= f["total_revenue_high"]),
            "actual_existing": a["actual_existing_revenue"],
            "forecast_existing": float(f["existing_revenue"]),
            "existing_covered": bool(f["existing_revenue_low"] <= a["actual_existing_revenue"]
                                     <= f["existing_revenue_high"]),
            "actual_new": a["actual_new_revenue"],
            "forecast_new": float(f["new_revenue"]),
            "new_covered": bool(f["new_revenue_low"] <= a["actual_new_revenue"] <= f["new_revenue_high"]),
        })
    summary = {
        "mape_forecast": _mean(r["ape_forecast"] for r in rows),
        "mape_baseline": _mean(r["ape_baseline"] for r in rows),
        "mape_recent_mean": _mean(r["ape_recent_mean"] for r in rows),
        "coverage_80": float(np.mean([r["covered"] for r in rows])),
        "coverage_80_existing": float(np.mean([r["existing_covered"] for r in rows])),
        "coverage_80_new": float(np.mean([r["new_covered"] for r in rows])),
        "mape_existing": _mean(_ape(r["forecast_existing"], r["actual_existing"]) for r in rows),
        "mape_new": _mean(_ape(r["forecast_new"], r["actual_new"]) for r in rows),
        "months_scored": len(rows),
        "months_with_baseline": sum(r["baseline"] is not None for r in rows),
        "total_actual": float(sum(r["actual"] for r in rows)),
        "total_forecast": float(sum(r["forecast"] for r in rows)),
        "total_baseline": float(sum(r["baseline"] or 0.0 for r in rows)),
    }
    summary["beats_baseline"] = (
        summary["mape_forecast"] is not None and summary["mape_baseline"] is not None
        and summary["mape_forecast"] < summary["mape_baseline"]
    )
    return {
        "dataset": loaded.name,
        "note": loaded.note,
        "closed_cohort": loaded.closed_cohort,
        "rehearsal": {"cutoff": str(forecast.rehearsal.cutoff), "existing_scale": forecast.rehearsal.existing_scale,
                      "new_scale": forecast.rehearsal.new_scale},
        "cutoff": str(cutoff),
        "data_end": str(data_end.date()),
        "baseline_trend": trend,
        "seasonal_index": [round(float(v), 4) for v in forecast.season.index],
        "existing_relative_sd": forecast.season.relative_sd,
        "new_customers_per_day_at_cutoff": float(forecast.acquisition.daily_mean[:28].mean()),
        "new_relative_sd": forecast.acquisition.relative_sd,
        "new_dispersion": forecast.acquisition.dispersion,
        "months": rows,
        "summary": summary,
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _money(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.0f}"


def forecast_text(result: dict) -> str:
    """Plain-text table of a forecast backtest."""
    s = result["summary"]
    lines = [
        f"revenue forecast backtest on {result['dataset']}: cutoff {result['cutoff']}, data to {result['data_end']}",
        *( [f"note: {result['note']}"] if result["note"] else [] ),
        f"baseline trend {result['baseline_trend']['trend']:.3f} ({result['baseline_trend']['window']})",
        f"{'month':<8} {'actual':>10} {'forecast':>10} {'80% low':>10} {'80% high':>10} {'in':>3} "
        f"{'APE':>7} {'baseline':>10} {'APE base':>8}",
    ]
    for r in result["months"]:
        lines.append(
            f"{r['month']:<8} {_money(r['actual']):>10} {_money(r['forecast']):>10} {_money(r['low']):>10} "
            f"{_money(r['high']):>10} {'y' if r['covered'] else 'n':>3} {_pct(r['ape_forecast']):>7} "
            f"{_money(r['baseline']):>10} {_pct(r['ape_baseline']):>8}"
        )
    lines.append(
        f"MAPE forecast {_pct(s['mape_forecast'])} vs seasonal-naive {_pct(s['mape_baseline'])} "
        f"({'beats' if s['beats_baseline'] else 'does NOT beat'} the baseline; flat mean of the last 3 months "
        f"{_pct(s['mape_recent_mean'])}); 80% interval coverage "
        f"{_pct(s['coverage_80'])} (existing {_pct(s['coverage_80_existing'])}, new {_pct(s['coverage_80_new'])}); "
        f"MAPE existing part {_pct(s['mape_existing'])}, new part {_pct(s['mape_new'])}; "
        f"total {_money(s['total_forecast'])} forecast vs {_money(s['total_actual'])} actual"
    )
    return "\n".join(lines)


def forecast_svg(rows: list[dict], title: str) -> str:
    """Actual, forecast (with its 80 % band) and baseline per month as inline SVG."""
    width, height, left, right, top, bottom = 720, 320, 70, 140, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for r in rows for v in (r["actual"], r["high"], r["baseline"] or 0.0)]
    y_max = max(values + [1.0]) * 1.05
    n = len(rows)

    def sx(i: float) -> float:
        return left + (i + 0.5) / max(n, 1) * plot_w

    def sy(v: float) -> float:
        return top + plot_h - v / y_max * plot_h

    parts = [*svg_chart_start(width, height, left, title),
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
             *svg_value_axis(left, top, plot_w, plot_h, y_max, grid=False)]
    band = [f"{sx(i):.1f},{sy(r['high']):.1f}" for i, r in enumerate(rows)]
    band += [f"{sx(i):.1f},{sy(r['low']):.1f}" for i, r in reversed(list(enumerate(rows)))]
    parts.append(f'<polygon points="{" ".join(band)}" fill="#1f77b4" fill-opacity="0.15" stroke="none"/>')
    series = [("actual", "actual", "#222", ""), ("forecast", "forecast", "#1f77b4", ""),
              ("baseline", "seasonal naive", "#d62728", ' stroke-dasharray="6 3"')]
    for j, (key, label, color, dash) in enumerate(series):
        points = " ".join(f"{sx(i):.1f},{sy(r[key]):.1f}" for i, r in enumerate(rows) if r[key] is not None)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{points}"/>')
        y = top + 14 + 18 * j
        parts.append(f'<line x1="{left + plot_w + 10}" x2="{left + plot_w + 30}" y1="{y}" y2="{y}" '
                     f'stroke="{color}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{left + plot_w + 34}" y="{y + 4}" font-size="11">{label}</text>')
    for i, r in enumerate(rows):
        parts.append(f'<text x="{sx(i):.1f}" y="{top + plot_h + 16}" font-size="9" '
                     f'text-anchor="middle">{html.escape(r["month"])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def forecast_section_html(result: dict) -> str:
    """The report section of the revenue-forecast backtest."""
    s = result["summary"]
    body = "".join(
        f"<tr><td>{html.escape(r['month'])}</td><td>{_money(r['actual'])}</td><td>{_money(r['forecast'])}</td>"
        f"<td>{_money(r['low'])} – {_money(r['high'])}</td><td>{'yes' if r['covered'] else 'no'}</td>"
        f"<td>{_pct(r['ape_forecast'])}</td><td>{_money(r['baseline'])}</td><td>{_pct(r['ape_baseline'])}</td>"
        f"<td>{_money(r['forecast_existing'])} / {_money(r['actual_existing'])}</td>"
        f"<td>{_money(r['forecast_new'])} / {_money(r['actual_new'])}</td></tr>"
        for r in result["months"]
    )
    note = f"<p>{html.escape(result['note'])}</p>" if result["note"] else ""
    return (
        f"<h2>Revenue forecast backtest: {html.escape(result['dataset'])}</h2>"
        f"<p>Forecast made at {html.escape(result['cutoff'])} with data up to that day; actual revenue to "
        f"{html.escape(result['data_end'])}. Baseline: same month a year earlier × trend "
        f"{result['baseline_trend']['trend']:.3f} ({html.escape(result['baseline_trend']['window'])}).</p>{note}"
        f"<p><b>MAPE {_pct(s['mape_forecast'])}</b> vs seasonal-naive {_pct(s['mape_baseline'])} "
        f"(flat mean of the last three months: {_pct(s['mape_recent_mean'])}); "
        f"80 % interval coverage {_pct(s['coverage_80'])} over {s['months_scored']} months "
        f"(existing {_pct(s['coverage_80_existing'])}, new {_pct(s['coverage_80_new'])}).</p>"
        + forecast_svg(result["months"], "Monthly revenue: actual, forecast (80 % band), seasonal naive")
        + "<table><thead><tr><th>month</th><th>actual</th><th>forecast</th><th>80 % interval</th><th>inside</th>"
        "<th>APE</th><th>seasonal naive</th><th>APE naive</th><th>existing forecast / actual</th>"
        f"<th>new forecast / actual</th></tr></thead><tbody>{body}</tbody></table>"
    )


def write_forecast_report(result: dict, path) -> None:
    """Append the forecast section to an existing report, or write a standalone one."""
    from pathlib import Path

    out = Path(path)
    section = forecast_section_html(result)
    if out.exists() and "</body>" in (text := out.read_text(encoding="utf-8")):
        out.write_text(text.replace("</body>", section + "</body>", 1), encoding="utf-8")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    style = ("body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}th{background:#f3f3f3}svg{display:block;margin:0.5em 0 1em}")
    out.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>Revenue forecast backtest</title>'
                   f"<style>{style}</style></head><body>{section}</body></html>", encoding="utf-8")
