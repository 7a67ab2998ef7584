"""Training data: point-in-time label windows stacked with per-window BTYD features.

Each window's BTYD is fitted at that window's feature cutoff only (a model fitted at the
cutoff would know the labels of earlier windows).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd

from clv_platform.models import btyd
from clv_platform.models.btyd import pareto_params
from clv_platform.models.frames import usable_features
from clv_platform.models.sampling import TrainingFrames, cap_rows
from clv_platform.transforms.features import FEATURE_COLUMNS, btyd_days
from clv_platform.transforms.order_gaps import order_stretches
from clv_platform.models.clv.config import HYBRID, BTYD_FEATURES, DERIVED_FEATURES, ClvConfig


class HistoryTooShort(ValueError):
    """No label window ending by the cutoff has the customers a model trains on (two or more, a
    repeat buyer among them): the store's history is too short to train the CLV model. The one
    signal ``train.train_clv`` turns into a BTYD-only model (``train.btyd_only``); a ValueError,
    so callers that do not fall back see the error they always saw."""


class CycleTooShort(HistoryTooShort):
    """A closed-season store whose history does not yet hold the three whole cycles its label windows
    need (``supported_label_window``): production serves the BTYD with the closures, and so does the
    backtest (``backtest_cli.label_window``), rather than refusing the file."""


MIN_REPEAT_CUSTOMERS = 10
"""Repeat buyers (customers with purchases on two different days) a history needs by the earliest
BTYD fit of a training run; ``supported_label_window`` dates the history from the day it had them."""

MIN_LABEL_DAYS = 14
"""The shortest label window trained on: a history that supports less gets the BTYD stand-in."""


@dataclass(frozen=True)
class LabelWindow:
    """The label window a CLV model trains on at a cutoff, and how it was set (``supported_label_window``)."""

    days: int
    configured: int
    ready: date | None
    note: str


def supported_label_window(conn: duckdb.DuckDBPyConnection, cutoff: date, label_days: int) -> LabelWindow:
    """The label window h the history before ``cutoff`` supports: ``label_days`` (the configured
    window, or the holdout when shorter), at most a third of the time since the history's
    ``MIN_REPEAT_CUSTOMERS``-th repeat buyer ("ready": the day that customer bought on a second day).

    Why a third: a training run fits the BTYD at C - 2h (the objective selection's training windows,
    the extension factor's first window, ``train.btyd_extension_factor``), and a BTYD fitted on
    customers watched for less than one label window has seen nobody stop over such a span: it
    extrapolates their first weeks' rate. So the history before C - 2h must be at least h long:
    h <= (C - ready) / 3. Measured (6 December 2026, sessions 42-43) with production's 180-day labels
    cut only to (C - ready) / 2, as the backtest used to: on CDNOW (one cohort, all bought in the
    first quarter of 1997) the fit at C - 2h = 1997-01-05 saw 1,102 customers a few days old, the
    extension factor came out 0.67 and the holdout total -25.6 %; with a third, 89-day labels, a
    factor of 1.21 and -2.0 % (benchmarks/MEASUREMENTS.md, "The backtests train as production does").

    The same rule sets production's label window (``ml/clv_model``) and the backtest's, so the
    backtest measures the model a store of that age is served. A store older than about 18 months
    trains on the configured 180 days. Raises ``HistoryTooShort`` (the BTYD stand-in) with fewer
    than ``MIN_REPEAT_CUSTOMERS`` repeat buyers by the cutoff or a supported window under
    ``MIN_LABEL_DAYS``. Point in time: orders dated by the cutoff, cancelled ones counted until
    their cancellation day.
    """
    rows = _first_second_days(conn, cutoff, MIN_REPEAT_CUSTOMERS)
    if not rows:
        # however long the history: not a matter of waiting a few more days only
        raise HistoryTooShort(f"no customer has bought on two different days by {cutoff}: there is no repeat "
                              "behaviour to learn yet")
    if len(rows) < MIN_REPEAT_CUSTOMERS:
        raise HistoryTooShort(f"only {len(rows)} customers bought on two different days by {cutoff}; a CLV model "
                              f"trains from {MIN_REPEAT_CUSTOMERS} on")
    ready = pd.Timestamp(rows[-1][0]).date()
    supported = (cutoff - ready).days // 3
    calendar = order_stretches(conn, until=cutoff).season_calendar
    if calendar is not None:
        return _whole_cycles(calendar, cutoff, ready, supported, label_days)
    if supported < MIN_LABEL_DAYS:
        raise HistoryTooShort(
            f"the {MIN_REPEAT_CUSTOMERS}th repeat buyer came on {ready}, {(cutoff - ready).days} days before {cutoff}: "
            f"a label window of h days needs 3h days after that (the BTYD fitted at C - 2h must have watched its "
            f"customers for h days), at least {3 * MIN_LABEL_DAYS} days, by {ready + timedelta(days=3 * MIN_LABEL_DAYS)}")
    if supported >= label_days:
        return LabelWindow(int(label_days), int(label_days), ready, f"{label_days} days")
    return LabelWindow(int(supported), int(label_days), ready,
                       f"{supported} days, shortened from {label_days}: a third of the {(cutoff - ready).days} days "
                       f"since the history's {MIN_REPEAT_CUSTOMERS}th repeat buyer ({ready}), so that the BTYD "
                       "fitted at C - 2h has watched its customers for a label window")


def _whole_cycles(calendar, cutoff: date, ready: date, supported: int, label_days: int) -> LabelWindow:
    """The label window of a store closed for a season every year (``order_gaps.Stretches.season_calendar``):
    one whole cycle, whatever is configured, so that every window holds one season. Shorter windows
    held a season, part of one or none: the label windows of a cutoff at a season's end were closed
    throughout (nothing to learn), one mid-season held 27 open days whose labels the season factor
    scaled up 6.7x, and the hybrid trained on them was served at -15 to -38 % of the year where the
    BTYD was +7 to +11 % (benchmarks/MEASUREMENTS.md, session 53). Raises ``HistoryTooShort`` when
    the history does not support a cycle (``CycleTooShort``, one: the BTYD stand-in)."""
    cycle = int(calendar.period)
    if supported < cycle:
        raise CycleTooShort(
            f"the store closes for {calendar.closed} days of every {cycle} (a season): its label windows span a "
            f"whole cycle, which needs {3 * cycle} days after the history's {MIN_REPEAT_CUSTOMERS}th repeat buyer "
            f"({ready}); it has {(cutoff - ready).days}")
    return LabelWindow(cycle, int(label_days), ready,
                       f"{cycle} days: a whole cycle of the store's closed seasons (configured {label_days})")


def _first_second_days(conn: duckdb.DuckDBPyConnection, cutoff: date, n: int) -> list[tuple]:
    """The ``n`` earliest days on which a customer made a purchase on a second day, as of ``cutoff``.

    Read over a growing span from the first order (30 days, then four times longer, up to the
    cutoff): a customer whose second purchase day lies in the span is found from the span's rows
    alone, so the ``n`` earliest found in a span are the ``n`` earliest of the history. At a million
    customers the first span answers from a few thousand orders; the whole history took 1.5-3 s."""
    first = conn.execute("select min(order_date) from staging.order_history where order_date <= $cutoff::date",
                         {"cutoff": cutoff}).fetchone()[0]
    if first is None:
        return []
    span = 30
    while True:
        end = min(pd.Timestamp(first).date() + timedelta(days=span), cutoff)
        rows = conn.execute("""
            with days as (
                select distinct customer_id, order_date
                from staging.order_history
                where order_date <= $end::date and (not is_cancelled or cancelled_on > $cutoff::date)
            ),
            second_days as (
                select order_date from days
                qualify row_number() over (partition by customer_id order by order_date) = 2
            )
            select order_date from second_days order by order_date limit $n""",
            {"end": end, "cutoff": cutoff, "n": n}).fetchall()
        if len(rows) >= n or end >= cutoff:
            return rows
        span *= 4


def add_derived_features(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``DERIVED_FEATURES`` added (from ``total_net_spend`` and ``T_days``)."""
    if not {"total_net_spend", "T_days"} <= set(frame.columns):
        return frame
    weeks = (frame["T_days"].astype(float) / btyd.DAYS_PER_WEEK).clip(lower=1.0)
    return frame.assign(spend_rate_per_week=frame["total_net_spend"].astype(float) / weeks)


def naive_spend(frame: pd.DataFrame, days: float) -> np.ndarray | None:
    """The naive spend-rate rule over ``days``: ``spend_rate_per_week`` x days / 7 per customer
    (derived here when absent), or None when the frame cannot give it (no spend or age columns).
    The hybrid's blend may include it as a third component (``objective.blend_weight``)."""
    if "spend_rate_per_week" not in frame:
        frame = add_derived_features(frame)
    if "spend_rate_per_week" not in frame:
        return None
    rate = np.nan_to_num(frame["spend_rate_per_week"].to_numpy(dtype=float))
    return np.clip(rate, 0.0, None) * float(days) / btyd.DAYS_PER_WEEK


def naive_btyd_ratio(frame: pd.DataFrame, days: int) -> float | None:
    """Sum of the BTYD's spend over the label window (``btyd_expected_spend``) / sum of the naive
    rule's over the same ``days``, over the customers of ``frame``; None when either is missing or 0.

    The naive component of the hybrid's blend takes its level from the BTYD of the population it
    scores: the naive rule's own level drifts with the customers' age (the first purchase over a
    short life inflates a young customer's rate), the BTYD's models it."""
    naive = naive_spend(frame, days)
    if naive is None or "btyd_expected_spend" not in frame:
        return None
    btyd_total = float(np.clip(np.nan_to_num(frame["btyd_expected_spend"].to_numpy(dtype=float)), 0.0, None).sum())
    naive_total = float(naive.sum())
    return btyd_total / naive_total if naive_total > 0 and btyd_total > 0 else None


def btyd_summary(features: pd.DataFrame) -> pd.DataFrame:
    """The BTYD calibration summary (weeks, not rounded) from a feature frame, by customer_id.

    Equal to ``btyd.summarize`` at the same cutoff: the feature SQL already counts purchase days,
    and recency and T are in observed time (``features.btyd_days``) as there.
    """
    frame = features.set_index("customer_id")
    recency_days, age_days = btyd_days(frame)
    return pd.DataFrame(
        {
            "frequency": frame["frequency"].astype(int),
            "recency": recency_days / btyd.DAYS_PER_WEEK,
            "T": age_days / btyd.DAYS_PER_WEEK,
            "monetary": frame["monetary"].astype(float),
        },
        index=frame.index,
    )


def fit_btyd_at(features: pd.DataFrame, config: ClvConfig, pareto_start: dict | None = None) -> btyd.BTYDModel:
    """BTYD fitted on one feature snapshot only (so on data up to its cutoff).

    ``auto`` is ``btyd.fit_auto``: Pareto/NBD and MBG/NBD, degenerate fits discarded, the higher
    calibration log-likelihood served, penalized fallbacks after that (the choice and its reason
    are on the returned model). Every family's predictions are total (``btyd.TransactionModel``).
    A snapshot of more than ``[sampling] max_btyd_fit_customers`` customers is fitted on that
    deterministic customer sample (``cap_rows``), the parameters then serve every customer:
    the fit's cost stops growing with the store, smaller stores are fitted on every customer.
    """
    return btyd.fit_btyd(fit_summary(features, config), config.btyd_model, config.btyd_penalizer,
                         config.spend_penalizer, pareto_start=pareto_start)


def fit_summary(features: pd.DataFrame, config: ClvConfig) -> pd.DataFrame:
    """The calibration summary a window's BTYD is fitted on: ``btyd_summary`` of the
    ``[sampling] max_btyd_fit_customers`` deterministic customer sample (all customers below it)."""
    return btyd_summary(cap_rows(features, config.max_btyd_fit_customers or None))


class WindowFits:
    """The BTYD fits of one training run, by feature cutoff.

    Windows of a run share feature cutoffs (the extension factor's window is the oldest selection
    window), so each snapshot is fitted once; and a Pareto/NBD fit starts from the previous
    window's optimum (``btyd.fit_btyd``'s ``pareto_start``) instead of the fixed starts.

    ``family`` (with ``[btyd] model = "auto"``): the family and L2 penalizer of the BTYD served at
    the cutoff, fitted at every window's cutoff instead of each window choosing its own. Why: the
    booster's offset and its correction are learned against the windows' BTYD and applied to the
    served one, so a family that changes between the windows and the cutoff turns the correction
    into an error. On a store of 88 % one-time buyers (``benchmarks/awkward_stores.py``) the
    windows chose the MBG/NBD (actual / forecast purchases over the next 91 days 0.61-0.65, about
    1.6 times too many) and the cutoff's fit a penalized Pareto/NBD (1.03): the hybrid learned to
    cut the BTYD by a third and cut a BTYD that was right. Only the family is taken from the cutoff's fit, not its
    parameters: each window's are fitted on that window's data alone (point in time). A window where
    the family gives no usable fit (``btyd.degeneracy``, or no fit at all) falls back to its own
    ``auto`` choice and is listed in ``unpinned``.
    """

    def __init__(self, config: ClvConfig, pareto_start: dict | None = None,
                 family: tuple[str, float] | None = None) -> None:
        """``pareto_start``: week-unit Pareto/NBD parameters to start the run's first fit from
        (the served BTYD fit's, ``pareto_params``); None = the fixed starts. ``family``: (family,
        penalizer) of the served BTYD fit, or None for each window's own choice."""
        self.config = config
        self.models: dict[date, btyd.BTYDModel] = {}
        self.fitted = 0
        self._pareto: dict | None = pareto_start
        self.family = family if config.btyd_model == btyd.AUTO and family and family[0] in btyd.AUTO_FAMILIES else None
        self.unpinned: dict[str, str] = {}
        """Feature cutoff (ISO date) -> why that window's BTYD is its own ``auto`` choice, not ``family``."""

    def fit(self, features: pd.DataFrame, feature_cutoff: date) -> btyd.BTYDModel:
        if feature_cutoff not in self.models:
            model = self._pinned(features, feature_cutoff) if self.family else None
            if model is None:
                model = fit_btyd_at(features, self.config, pareto_start=self._pareto)
            self.fitted += 1
            self.models[feature_cutoff] = model
            self._pareto = pareto_params(model) or self._pareto
        return self.models[feature_cutoff]

    def _pinned(self, features: pd.DataFrame, feature_cutoff: date) -> btyd.BTYDModel | None:
        family, penalizer = self.family
        summary = fit_summary(features, self.config)
        try:
            model = btyd.fit_btyd(summary, family, max(float(penalizer), self.config.btyd_penalizer),
                                  self.config.spend_penalizer,
                                  pareto_start=self._pareto if family == btyd.PARETO_NBD else None)
        except btyd.FIT_ERRORS as error:
            self.unpinned[feature_cutoff.isoformat()] = f"{family} failed: {type(error).__name__}: {error}"[:200]
            return None
        problem = btyd.unusable(model, summary)
        if problem:
            self.unpinned[feature_cutoff.isoformat()] = f"{family} not usable: {problem}"[:200]
            return None
        return replace(model, reason=f"{family} (penalizer {model.penalizer:g}): the family served at the cutoff")

    def record(self) -> dict:
        """What the run's window fits were, for the training metadata."""
        return {"family": self.family[0] if self.family else None,
                "penalizer": float(self.family[1]) if self.family else None,
                "windows": {d.isoformat(): {"model": m.model, "penalizer": float(m.penalizer)}
                            for d, m in sorted(self.models.items())},
                "unpinned": dict(self.unpinned),
                "reason": ("each window fits the family served at the cutoff" if self.family else
                           "each window chooses its own family" if self.config.btyd_model == btyd.AUTO else
                           f"[btyd] model = {self.config.btyd_model}")}


def btyd_features(
    model: btyd.BTYDModel, features: pd.DataFrame, horizon_weeks: float, annual_discount_rate: float
) -> pd.DataFrame:
    """The ``BTYD_FEATURES`` columns over ``horizon_weeks``, aligned to ``features``' rows."""
    return btyd_features_horizons(model, features, [horizon_weeks], annual_discount_rate)[0]


def btyd_features_horizons(
    model: btyd.BTYDModel, features: pd.DataFrame, horizons_weeks, annual_discount_rate: float
) -> list[pd.DataFrame]:
    """``btyd_features`` for several horizons from one evaluation of the BTYD (``score_horizons``)."""
    summary = btyd_summary(features)
    return [
        pd.DataFrame(
            {
                "btyd_p_alive": scores["p_alive"].to_numpy(),
                "btyd_expected_purchases": scores["expected_purchases"].to_numpy(),
                "btyd_expected_aov": scores["expected_aov"].to_numpy(),
                "btyd_expected_spend": scores["expected_spend"].to_numpy(),
                "btyd_clv": scores["clv"].to_numpy(),
            },
            index=features.index,
        )
        for scores in model.score_horizons(summary, horizons_weeks, annual_discount_rate)
    ]


def window_ends(cutoff: date, count: int, step_days: int, offset_days: int = 0) -> list[date]:
    """Label-window ends C - offset, C - offset - step, ... (newest first)."""
    return [cutoff - timedelta(days=offset_days + k * step_days) for k in range(count)]


def fetch_rows(max_rows: int | None, config: ClvConfig) -> int | None:
    """Rows a capped window must be fetched with (``sampling.TrainingFrames``): its own cap, or the
    BTYD fit's customer cap when that is larger (the fit samples the same smallest keys, so it sees
    the customers it would see in the whole window). None = the whole window."""
    if not max_rows or not config.max_btyd_fit_customers:
        return None
    return max(int(max_rows), int(config.max_btyd_fit_customers))


def training_windows(
    conn: duckdb.DuckDBPyConnection, ends: list[date], config: ClvConfig, max_rows_per_window: int | None = None,
    fits: WindowFits | None = None, frames: TrainingFrames | None = None,
) -> pd.DataFrame:
    """Stacked training rows of the windows ending at ``ends`` with BTYD features per window.

    Each window's BTYD model is fitted at its own feature cutoff (on ``[sampling]
    max_btyd_fit_customers`` of its customers); a window with fewer than two customers (too early
    in the history) or no repeat customer is skipped. With ``max_rows_per_window`` a window keeps a
    deterministic customer sample of at most that many rows (``cap_rows``' rule), drawn in SQL
    before the frame reaches pandas (``frames``, a ``sampling.TrainingFrames`` shared by the run
    so each window is read once). ``fits`` shares the fits of a training run (by feature cutoff:
    the caller draws from the validation window's, ``train.train_clv``'s P50).
    """
    h = config.label_horizon_days
    fits = fits or WindowFits(config)
    frames = frames or TrainingFrames(conn)
    parts = []
    without_repeat = 0
    for end in ends:
        sampled = frames.get(end, h, fetch_rows(max_rows_per_window, config))
        without_repeat += sampled.rows >= 2 and not sampled.has_repeat
        if sampled.rows < 2 or not sampled.has_repeat:
            continue
        frame = add_derived_features(sampled.frame)
        model = fits.fit(frame, end - timedelta(days=h))
        frame = cap_rows(frame, max_rows_per_window)
        extra = btyd_features(model, frame, h / btyd.DAYS_PER_WEEK, config.annual_discount_rate)
        parts.append(frame.join(extra).assign(window_end=pd.Timestamp(end)))
    if not parts and without_repeat == len(ends):
        # customers enough, but nobody has bought twice: not a matter of waiting for more days only
        raise HistoryTooShort(f"no customer has bought on two different days by any training cutoff (windows ending "
                              f"at [{', '.join(str(end) for end in ends)}], {h} days of labels): there is no repeat "
                              "behaviour to learn yet")
    if not parts:
        raise HistoryTooShort("no training window with customers among those ending at "
                              f"[{', '.join(str(end) for end in ends)}] (each needs two customers, a repeat buyer "
                              f"among them, with {h} days of labels)")
    return pd.concat(parts, ignore_index=True)


def feature_list(frame: pd.DataFrame, variant: str) -> list[str]:
    """Usable features of ``frame`` for a variant: hybrid = base + BTYD, xgboost = base only."""
    base = usable_features(frame, FEATURE_COLUMNS + DERIVED_FEATURES)
    return base + usable_features(frame, BTYD_FEATURES) if variant == HYBRID else base
