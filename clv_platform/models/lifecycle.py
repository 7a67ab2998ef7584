"""The one lifecycle-stage rule: ``new`` / ``churned`` / ``at_risk`` / ``active``.

Used by ``scores/customer_segments`` (``segments.segment_customers``, whose column the marts
read) and by the dataset backtest (``backtest.py`` groups its per-stage errors with
``stages_from_summary``, on the p_alive production would serve: ``backtest_cli.restage``), so the
backtest's per-stage errors describe the stages production assigns.
Thresholds and column names are the ``[lifecycle]`` section of ``segments.toml``.

Rule, checked in this order: ``new`` (tenure at most ``new_max_tenure_days``), then ``churned`` /
``at_risk`` when the time since the last order is a large multiple of the customer's own cadence
(mean interval; the pooled population interval for one-time buyers) or, if given, the
probability alive is low; else ``active``. Cadence-relative recency is what makes a 60-day gap
alarming for a weekly buyer and normal for a quarterly one.

With a probability alive, the cadence alone makes a customer at most ``at_risk`` (overdue) while
the store's fitted model says they are probably still a customer (p_alive at least
``at_risk_max_p_alive``): ``churned`` then needs the model's agreement. The model has seen how
irregular the store's customers are; the ratio has not. On a store where nobody stops buying the
"either signal" rule called 233 of 3,000 customers churned whose p_alive was 1.0
(``benchmarks/awkward_stores.py``, nochurn.csv); on the demo it moves 0.4 % of the churned.

Where a trained next-purchase model is served (it earned its place against the BTYD), its
P(purchase within 90 days) is a third signal: at least ``active_min_p_purchase`` and the cadence
test is waived. The pooled interval calls a store's December buyers overdue every October; on the
gift store of ``benchmarks/awkward_stores.py`` 580 of them were ``at_risk`` (64 % still customers,
P(90 d) 0.75) next to the 120 real ones (35 %, 0.24).

A store with fewer repeat buyers than ``cadence_min_repeat_buyers`` (default 1: a store where
nobody bought twice) has no population interval to judge its one-time buyers by. The rule then
switches the cadence test off for them (their cadence ratio is undefined, never "overdue") and
their stage rests on tenure and p_alive alone; a repeat buyer is still judged by their own interval.
No default cadence is assumed: a made-up interval would call customers overdue on no evidence.
"""

from __future__ import annotations

import tomllib
from importlib import resources

import numpy as np
import pandas as pd

from clv_platform.models.npd import NaiveCadence

STAGES = ("new", "active", "at_risk", "churned")

DAYS_PER_WEEK = 7.0


def _lifecycle_config(config: dict | None) -> dict:
    """The ``[lifecycle]`` section of a parsed segments config (default: the shipped ``segments.toml``)."""
    if config is None:
        text = resources.files("clv_platform.models").joinpath("segments.toml").read_text(encoding="utf-8")
        config = tomllib.loads(text)
    return config["lifecycle"]


def _min_repeat_buyers(config: dict | None) -> int:
    return max(int(_lifecycle_config(config).get("cadence_min_repeat_buyers", 1)), 1)


def repeat_buyers(frame: pd.DataFrame, config: dict | None = None) -> int:
    """Customers of ``frame`` with a known mean interval: those the population interval pools."""
    life = _lifecycle_config(config)
    interval = pd.to_numeric(frame[life["interval_column"]], errors="coerce").to_numpy(dtype=float)
    gaps = pd.to_numeric(frame[life["frequency_column"]], errors="coerce").to_numpy(dtype=float)
    return int((np.isfinite(interval) & (gaps > 0)).sum())


def population_cadence(frame: pd.DataFrame, config: dict | None = None) -> NaiveCadence:
    """The cadence baseline fitted on ``frame``: its population interval is pooled over all gaps of
    the frame's repeat buyers (total gap days / total gaps). With fewer than
    ``cadence_min_repeat_buyers`` of them it is left unfitted (``population_interval_`` NaN): one-time
    buyers then get no cadence ratio (module docstring)."""
    life = _lifecycle_config(config)
    cadence = NaiveCadence(
        recency_col=life["recency_column"],
        interval_col=life["interval_column"],
        frequency_col=life["frequency_column"],
    )
    if repeat_buyers(frame, config) < _min_repeat_buyers(config):
        return cadence
    return cadence.fit(frame)


def cadence_rule(cadence: NaiveCadence, buyers: int, config: dict | None = None) -> str:
    """What the lifecycle stages of a run rest on, in a sentence for the metadata."""
    if np.isfinite(cadence.population_interval_):
        return (f"cadence: each repeat buyer's own mean interval, one-time buyers the population interval of "
                f"{cadence.population_interval_:.1f} days pooled over {buyers} repeat buyers")
    return (f"no population interval: {buyers} repeat buyers, fewer than cadence_min_repeat_buyers = "
            f"{_min_repeat_buyers(config)}; "
            "one-time buyers' stages rest on tenure and p_alive only (the cadence test is off for them), "
            "repeat buyers are judged by their own interval")


def cadence_ratio(frame: pd.DataFrame, config: dict | None = None, cadence: NaiveCadence | None = None) -> pd.Series:
    """Days since the last order / the customer's mean interval (population interval for one-timers;
    NaN for them when the store has no population interval, ``population_cadence``).

    The population interval is pooled over all gaps of the frame's repeat buyers (total gap
    days / total gaps), the same estimate as the naive next-purchase baseline; a batch of a larger
    store passes the ``cadence`` fitted on the whole store (``population_cadence``).
    """
    life = _lifecycle_config(config)
    cadence = cadence or population_cadence(frame, config)
    since_last = pd.to_numeric(frame[life["recency_column"]], errors="coerce").to_numpy(dtype=float)
    return pd.Series(since_last / cadence.intervals(frame), index=frame.index, name="cadence_ratio")


def lifecycle_stages(frame: pd.DataFrame, config: dict | None = None, p_alive=None,
                     cadence: NaiveCadence | None = None, p_purchase=None) -> pd.Series:
    """``new`` / ``churned`` / ``at_risk`` / ``active``, checked in that order (thresholds in config).

    ``p_alive`` (optional, array-like aligned with ``frame``) adds the probability-alive tests;
    either signal - cadence or p_alive - is enough to mark a customer at risk, and a low p_alive is
    enough for churned, but the cadence makes a customer churned only where p_alive is below
    ``at_risk_max_p_alive`` too (or unknown: NaN): see the module docstring. ``p_purchase``
    (optional: the served P(purchase within 90 days) of a *trained* next-purchase model, which
    earned its place against the BTYD) waives the cadence test where it is at least
    ``active_min_p_purchase``: a model that reads the customer's own cadence and last year's season
    and still expects a purchase soon outweighs the store's pooled interval (a December buyer in
    October, a one-time buyer of a seasonal store). The p_alive tests stay.
    """
    life = _lifecycle_config(config)
    ratio = cadence_ratio(frame, config, cadence).to_numpy()
    tenure = pd.to_numeric(frame[life["tenure_column"]], errors="coerce").to_numpy(dtype=float)
    churned = ratio >= life["churned_min_ratio"]
    at_risk = ratio >= life["at_risk_min_ratio"]
    if p_purchase is not None:
        expected = np.asarray(p_purchase, dtype=float) >= float(life.get("active_min_p_purchase", 0.5))
        churned &= ~expected
        at_risk &= ~expected
    if p_alive is not None:
        alive = np.asarray(p_alive, dtype=float)
        churned = (churned & ~(alive >= life["at_risk_max_p_alive"])) | (alive < life["churned_max_p_alive"])
        at_risk |= alive < life["at_risk_max_p_alive"]
    stage = np.select(
        [tenure <= life["new_max_tenure_days"], churned, at_risk],
        ["new", "churned", "at_risk"],
        default="active",
    )
    return pd.Series(stage, index=frame.index, name="lifecycle_stage", dtype=object)


def features_from_summary(summary: pd.DataFrame, config: dict | None = None) -> pd.DataFrame:
    """The lifecycle columns of the feature table rebuilt from a BTYD calibration summary.

    ``summary`` has ``frequency`` (repeat purchase days), ``recency`` (first to last purchase) and
    ``T`` (first purchase to the cutoff) in weeks, as ``btyd.summarize`` makes it. The feature SQL
    defines tenure = cutoff - first order, recency = cutoff - last order and the mean interval =
    mean gap between purchase days = (last - first) / frequency (null for one-time buyers).
    """
    life = _lifecycle_config(config)
    frequency = summary["frequency"].to_numpy(dtype=float)
    # calendar weeks where the summary has them (``btyd.summarize``'s recency and T are in observed time)
    span_days = summary.get("calendar_recency", summary["recency"]).to_numpy(dtype=float) * DAYS_PER_WEEK
    age_days = summary.get("calendar_T", summary["T"]).to_numpy(dtype=float) * DAYS_PER_WEEK
    safe = np.where(frequency > 0, frequency, 1.0)
    return pd.DataFrame(
        {
            life["tenure_column"]: age_days,
            life["recency_column"]: age_days - span_days,
            life["interval_column"]: np.where(frequency > 0, span_days / safe, np.nan),
            life["frequency_column"]: frequency,
        },
        index=summary.index,
    )


def stages_from_summary(summary: pd.DataFrame, config: dict | None = None, p_alive=None,
                        p_purchase=None) -> pd.Series:
    """Production's ``lifecycle_stages`` applied to a BTYD calibration summary (the backtest's frame)."""
    return lifecycle_stages(features_from_summary(summary, config), config, p_alive,
                            p_purchase=p_purchase).rename("stage")
