"""Probabilistic ("buy 'til you die") CLV baseline: BG/NBD or Pareto/NBD plus Gamma-Gamma spend.

Follows the protocol of Fader, Hardie & Lee (2005) so the CDNOW 1/10 sample reproduces the
published parameters:

* several transactions of one customer on one day are one transaction (amounts summed);
* ``frequency`` is the number of *repeat* transaction days in the calibration period;
* ``recency`` (t_x) and ``T`` are measured in days and divided by 7 - weeks, never rounded,
  because rounding to whole weeks visibly moves the estimates (r goes from 0.243 to about 0.28);
* ``monetary`` is the mean spend of the repeat transactions (the lifetimes convention; the first
  purchase is excluded because its value is drawn from a different process).

The time unit of every model and every horizon in this module is the week. The fitters come from
``lifetimes``; the transaction models are fitted on the distinct (frequency, recency, T)
combinations with a weight = number of customers, exactly as Fader and Hardie condense the RFM
matrix - the likelihood is identical and the fit is much faster on large customer bases.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
from lifetimes.utils import ConvergenceError
from scipy.special import expit, roots_jacobi

from clv_platform.models.datasets import net_purchases
from clv_platform.transforms.order_gaps import in_spans, stretch_days, transaction_gaps, transaction_stretches

_log = logging.getLogger(__name__)


@contextlib.contextmanager
def _optimizer_output_logged():
    """lifetimes prints scipy's whole OptimizeResult before it raises ConvergenceError. The error
    is handled here (a penalized refit, the next family), so the print is only noise on a CLI's
    stdout (`clv-platform files` interleaved it with its table counts) and in a run's captured
    output: it goes to this module's debug log instead."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        if buffer.getvalue().strip():
            _log.debug("lifetimes optimizer output:\n%s", buffer.getvalue())


BGNBD = "bgnbd"
PARETO_NBD = "pareto_nbd"
MBGNBD = "mbgnbd"
TRANSACTION_MODELS = (BGNBD, PARETO_NBD, MBGNBD)
AUTO = "auto"
AUTO_FAMILIES = (PARETO_NBD, MBGNBD)
"""Families ``auto`` fits, in this order. Both let a customer drop out before any repeat purchase
(Pareto/NBD at any time, MBG/NBD at time 0 and after each purchase), so ``p_alive`` means the same
for one-time and repeat buyers; BG/NBD does not (p_alive = 1 for every x = 0 customer) and is only
the last resort, penalized (see ``fit_auto``)."""
PARAM_BOUNDS = (1e-6, 1e6)
"""A fitted parameter outside these bounds sits on the boundary of the parameter space (e.g. BG/NBD
a, b -> 0: nobody ever drops out): the fit is *degenerate* and not served (``degeneracy``)."""

DAYS_PER_WEEK = 7.0
WEEKS_PER_MONTH = 4.345
"""lifetimes' month length in weeks (``factor`` for ``freq="W"`` in ``customer_lifetime_value``)."""
WEEKS_PER_YEAR = 12 * WEEKS_PER_MONTH
"""A year of twelve lifetimes months, so annual and monthly discounting agree exactly."""

SUMMARY_COLUMNS = [
    "first_purchase",
    "frequency",
    "recency",
    "T",
    "calendar_recency",
    "calendar_T",
    "monetary",
    "calibration_spend",
    "holdout_purchases",
    "holdout_spend",
]

_PARETO_STARTS = ((0.5, 0.3, 0.5, 0.3), (1.0, 1.0, 1.0, 1.0))
"""Fixed starts of the Pareto/NBD fit, in lifetimes' internal scale where max(T) = 1."""
PARETO_MAX_ITERATIONS = 200
"""BFGS iterations per start of the Pareto/NBD fit (5 to 16 likelihood evaluations each, the
gradient by finite differences). The fits measured (CDNOW, the demo store, the sweep stores) stop
after 10 to 60; the cap only bounds a fit whose likelihood is noisy along its way (``_pareto_fit``)."""
PARETO_RIDGE_STEP = 1.05
"""Step along a heterogeneity ray (``_pareto_edge``): an interior optimum loses likelihood there."""
PARETO_EDGE_SHAPE = 50.0
"""Gamma shape (r or s) at which a BFGS iterate of the Pareto/NBD fit is stopped as on its way to an
edge: a shape of 50 is a coefficient of variation of 14 % in the purchase or dropout rates, the
heterogeneity all but gone. lifetimes' likelihood turns NaN further along, where its ``hyp2f1``
terms lose precision, and each evaluation gets slower on the way (0.5 ms at s = 1, 10 ms at s = 8,
40 ms at s = 75 on 1,426 distinct rows). Where that wall lies depends on the data: about s = 165 on
a 300-customer store, but s = 92 on a store of 2,359 customers who buy once a year
(``awkward_stores`` gift.csv), short of the 100 this was before, so BFGS never stopped and spent 160
evaluations of a 384-evaluation fit (6.2 of its 7.2 s) probing that wall, for a fit ``fit_auto``
then drops as degenerate; the backtest's rolling windows fit it 30 times (6 of its 7 minutes).
Stopped at 50, the chosen family is the same on twelve data sets (the seven awkward stores, CDNOW
full and sample, a 20,000-customer demo store, ``tools/backtest_csvs.py``'s two CSVs; ``fit_auto``),
and that fit takes 2.1 s. A fit
stopped here is at the boundary (``degeneracy``), whatever the edge test says at the stopping
point."""
PARETO_EDGE_DROPOUT = 1e-5
"""Share of customers expected to drop out within the observed history (1 - (beta / (beta + T))^s,
T the longest customer age) below which a BFGS iterate is stopped as on its way to the edge
s -> 0 (nobody drops out). The walk on (a store where nobody churns: 600 to 960 evaluations,
5-16 s a fit from the fixed starts on 600-1,600 customers, and every bootstrap refit again) only
moved s further towards 0: measured against where it ended, the stopped fit's P(alive) is within
1e-4 for every customer, the expected purchases within 1.2e-4 and the total within 3e-5.
A fit stopped here is at the boundary, like one stopped at ``PARETO_EDGE_SHAPE``."""
PARETO_WALL_HITS = 3
PARETO_WALL_NEAR = 1.5
PARETO_WALL_MIN_SHAPE = 5.0
"""A BFGS iterate of the Pareto/NBD fit is stopped as pressed against the wall where lifetimes'
likelihood gives out (``_ParetoLikelihood.pressed_against_wall``) once ``PARETO_WALL_HITS`` of the
evaluations so far returned no finite value within a factor ``PARETO_WALL_NEAR`` of it in every
parameter, its r or s at least ``PARETO_WALL_MIN_SHAPE``. Where that wall lies depends on the data,
and on an Online-Retail-shaped export (``tools/backtest_csvs.py``, calibrated to 2011-06-01) it is at
s = 18, far below ``PARETO_EDGE_SHAPE``: BFGS climbed the ray s, beta -> inf to it in 120
evaluations and then spent 150 more (4.1 of the fit's 4.8 s, each 20-35 ms) in line searches
bouncing off it. An iterate still climbing keeps asking for steps beyond the wall; near an interior
optimum the steps shrink and seldom reach it. A fit stopped there is at the boundary (``degeneracy``),
whatever the edge test says at the stopping point: next to the wall the likelihood is what the formula
still gives as its precision runs out, not a maximum to compare with another family's."""

def _daily(transactions: pd.DataFrame) -> pd.DataFrame:
    """One row per customer and purchase day with the day's amounts summed (the papers' protocol).

    A return (negative amount) is not a purchase day: it reduces the purchase it is booked to
    (``datasets.net_purchases``) by what the frame holds of it, so a frame cut at a date gives the
    days' spend as of that date.
    """
    frame = net_purchases(transactions)[["customer_id", "order_date", "amount"]]
    return frame.groupby(["customer_id", "order_date"], as_index=False, sort=True)["amount"].sum()


def _until(transactions: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    return transactions[pd.to_datetime(transactions["order_date"]) <= end]


def summarize(
    transactions: pd.DataFrame,
    calibration_end,
    holdout_end=None,
) -> pd.DataFrame:
    """Per-customer RFM summary at ``calibration_end`` (inclusive) and holdout outcomes.

    Only customers whose first purchase is on or before ``calibration_end`` are summarized; a
    holdout purchase is a transaction day in (calibration_end, holdout_end]. Columns:
    ``first_purchase``, ``frequency`` (repeat transaction days), ``recency`` and ``T`` (weeks,
    days / 7), ``monetary`` (mean repeat-transaction spend, 0 without repeats),
    ``calibration_spend`` (all calibration spend including the first purchase),
    ``holdout_purchases`` and ``holdout_spend`` (both 0 when ``holdout_end`` is None).
    The index is ``customer_id``. Recency and T are in observed time: the days of a stretch without
    orders the store's rate cannot explain (``transforms.order_gaps``, seen in these transactions up
    to ``calibration_end``) are not counted, as the feature table's ``observed_*`` columns;
    ``calendar_recency`` and ``calendar_T`` keep the calendar weeks (the lifecycle rule and the naive
    rate read those, as production's features).
    """
    calibration_end = pd.Timestamp(calibration_end).normalize()
    # each window's spend net of the returns made by its end (point in time): a return after the
    # calibration end of a calibration purchase is not known at the calibration end, and a return
    # in the holdout of an older purchase is not holdout spend (the platform's labels alike)
    calibration = _daily(_until(transactions, calibration_end))

    grouped = calibration.groupby("customer_id", sort=True)
    first = grouped["order_date"].min()
    last = grouped["order_date"].max()
    days = grouped.size()
    spend = grouped["amount"].sum()
    first_amount = grouped["amount"].first()

    frequency = (days - 1).astype(int)
    repeat_spend = spend - first_amount
    monetary = (repeat_spend / frequency.where(frequency > 0)).fillna(0.0)
    gaps = transaction_gaps(transactions, calibration_end)

    summary = pd.DataFrame(
        {
            "first_purchase": first,
            "frequency": frequency,
            "recency": ((last - first).dt.days - stretch_days(gaps, first, last)) / DAYS_PER_WEEK,
            "T": ((calibration_end - first).dt.days - stretch_days(gaps, first, calibration_end)) / DAYS_PER_WEEK,
            "calendar_recency": (last - first).dt.days / DAYS_PER_WEEK,
            "calendar_T": (calibration_end - first).dt.days / DAYS_PER_WEEK,
            "monetary": monetary,
            "calibration_spend": spend,
        }
    )
    summary.index.name = "customer_id"

    if holdout_end is None:
        summary["holdout_purchases"] = 0
        summary["holdout_spend"] = 0.0
        return summary

    holdout_end = pd.Timestamp(holdout_end).normalize()
    daily = _daily(_until(transactions, holdout_end))
    holdout = daily[daily["order_date"] > calibration_end]
    holdout_grouped = holdout.groupby("customer_id")
    summary["holdout_purchases"] = holdout_grouped.size().reindex(summary.index, fill_value=0).astype(int)
    summary["holdout_spend"] = holdout_grouped["amount"].sum().reindex(summary.index, fill_value=0.0)
    return summary


def holdout_weeks(calibration_end, holdout_end, transactions: pd.DataFrame | None = None) -> float:
    """Length of the holdout window in weeks (CDNOW: 273 days = 39 weeks); with ``transactions``,
    without the days of the closed seasons a store's history up to the calibration end projects into
    it (``order_gaps.Stretches.closed_ranges``): ``summarize`` reads a closed season as no customer's
    time, so the forecast counts only the open days ahead."""
    start, end = pd.Timestamp(calibration_end).normalize(), pd.Timestamp(holdout_end).normalize()
    days = (end - start).days
    if transactions is not None:
        holdout = pd.date_range(start + pd.Timedelta(days=1), end, freq="D")
        days -= int(in_spans(transaction_stretches(transactions, start).closed_ranges(), holdout).sum())
    return days / DAYS_PER_WEEK


def condense(summary: pd.DataFrame) -> pd.DataFrame:
    """Distinct (frequency, recency, T) combinations with ``weight`` = number of customers."""
    return (
        summary.groupby(["frequency", "recency", "T"], sort=True)
        .size()
        .rename("weight")
        .reset_index()
    )


# Penalizers tried, in order, when a fit does not converge: real stores (and synthetic
# benchmarks) are not always BG/NBD-shaped, and a slightly shrunk fit beats a failed refresh.
FALLBACK_PENALIZERS = (0.001, 0.01, 0.1)


def _fit_transactions(
    frequency, recency, T, weights, model: str, penalizer: float, pareto_start: dict | None = None,
) -> BetaGeoFitter | ParetoNBDFitter:
    """Fit one lifetimes transaction model.

    BG/NBD and MBG/NBD use lifetimes' gradient fit as is. Pareto/NBD is fitted here
    (``_pareto_fit``), not by lifetimes' ``fit``: that runs Nelder-Mead from random starts with a
    loose tolerance (1e-6), which stops early on the flat (s, beta) ridge of CDNOW, and Nelder-Mead
    from fixed starts with a tight one walks for tens of thousands of evaluations on a store whose
    optimum lies at the edge of the parameter space (see ``_pareto_fit``). With ``pareto_start``
    (week-unit parameters of a fit on similar data, e.g. the previous training window of the same
    run) the fit starts there and falls back to the fixed starts when that start ends nowhere.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if model == BGNBD:
            return BetaGeoFitter(penalizer_coef=penalizer).fit(frequency, recency, T, weights=weights)
        if model == MBGNBD:
            return ModifiedBetaGeoFitter(penalizer_coef=penalizer).fit(frequency, recency, T, weights=weights)
        if model == PARETO_NBD:
            return _pareto_fit(frequency, recency, T, weights, penalizer, pareto_start)
    raise ValueError(f"unknown transaction model {model!r}; expected one of {TRANSACTION_MODELS}")


class PressedAgainstWall(Exception):
    """Raised inside a BFGS line search of the Pareto/NBD fit: its last iterate is the end."""


LIKELIHOOD_THREADS = min(os.cpu_count() or 1, 4)
"""Threads a Pareto/NBD likelihood evaluation is split over (``_ParetoLikelihood``): the fits of a
training run or a backtest run one after another while XGBoost and DuckDB are idle. Measured on the
1M bench store's CLV training (six window fits, 1,799 evaluations of about 50,000 customers): 43 s of
likelihood on one thread."""
LIKELIHOOD_ROWS_PER_THREAD = 2000
"""Fewer rows per thread than this are not split (a 2,357-customer store is evaluated in one part)."""


class _ParetoLikelihood:
    """lifetimes' Pareto/NBD objective on log parameters, in lifetimes' time scale (max T = 1).

    The value is the mean negative log-likelihood per customer (lifetimes' objective divided by
    the number of rows, same optimum) plus lifetimes' L2 penalty scaled alike, and 1e300 where
    lifetimes' formula gives no finite number: its Gauss hypergeometric terms (scipy ``hyp2f1``)
    lose all precision and turn NaN once s and beta (or r and alpha) are large, e.g. s > 165 on a
    300-customer store. ``evaluations`` counts the calls.
    """

    def __init__(self, frequency, recency, T, weights, penalizer: float) -> None:
        self.frequency = np.asarray(frequency).astype(int)
        age = np.asarray(T, dtype=float)
        self.scale = 1.0 / float(age.max())
        self.recency = np.asarray(recency, dtype=float) * self.scale
        self.T = age * self.scale
        self.weights = np.ones_like(age) if weights is None else np.asarray(weights, dtype=float)
        self.total = float(self.weights.sum())
        self.penalizer = float(penalizer)
        self.evaluations = 0
        threads = min(LIKELIHOOD_THREADS, len(age) // LIKELIHOOD_ROWS_PER_THREAD)
        bounds = np.linspace(0, len(age), threads + 1).astype(int) if threads > 1 else None
        self._parts = [] if bounds is None else [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="pareto_likelihood") if self._parts else None
        self.walls: list[np.ndarray] = []
        """Log parameters of the evaluations that gave no finite value."""
        self.iterate: np.ndarray | None = None
        """The last BFGS iterate of the start being run (``_pareto_fit``), else None: while it is set,
        an evaluation that finds it pressed against the wall ends the start (``PressedAgainstWall``)."""

    def __call__(self, z) -> float:
        self.evaluations += 1
        with np.errstate(all="ignore"):
            value = self._negative_log_likelihood(np.exp(z))
        if np.isfinite(value):
            return float(value) * float(self.weights.mean()) / self.total
        self.walls.append(np.array(z, dtype=float))
        if self.iterate is not None and self.pressed_against_wall(self.iterate):
            # a line search probing the wall again and again from there: its iterate is the end
            raise PressedAgainstWall
        return 1e300

    def _negative_log_likelihood(self, params: np.ndarray) -> float:
        """lifetimes' ``ParetoNBDFitter._negative_log_likelihood``, the same value to the last bit,
        with its per-customer terms computed in ``_parts`` on threads: they are element-wise (two
        scipy ``hyp2f1`` per row, which release the GIL, were 85 % of a fit's time), so the parts
        put together are the array lifetimes computes, and the sum and penalty below are its own."""
        if np.any(np.asarray(params) <= 0.0):
            return np.inf
        if self._pool is None:
            terms = self._terms(params, slice(None))
        else:
            terms = np.concatenate(list(self._pool.map(lambda part: self._terms(params, part), self._parts)))
        penalizer_term = self.penalizer * sum(np.asarray(params) ** 2)
        return -(self.weights * terms).sum() / self.weights.mean() + penalizer_term

    def _terms(self, params: np.ndarray, part: slice) -> np.ndarray:
        with np.errstate(all="ignore"):  # numpy's error state is per thread
            return ParetoNBDFitter._conditional_log_likelihood(
                params, self.frequency[part], self.recency[part], self.T[part])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def pressed_against_wall(self, z) -> bool:
        """Whether the iterate ``z`` is pressed against the wall where the likelihood gives out
        (``PARETO_WALL_HITS``, ``PARETO_WALL_NEAR``, ``PARETO_WALL_MIN_SHAPE``)."""
        if len(self.walls) < PARETO_WALL_HITS or max(z[0], z[2]) < np.log(PARETO_WALL_MIN_SHAPE):
            return False
        near = np.log(PARETO_WALL_NEAR)
        return sum(bool(np.all(np.abs(w - z) <= near)) for w in self.walls) >= PARETO_WALL_HITS

    def log_start(self, params: dict) -> np.ndarray:
        """Log parameters in the internal scale of week-unit ``params``."""
        return np.log([float(params["r"]), float(params["alpha"]) * self.scale,
                       float(params["s"]), float(params["beta"]) * self.scale])

    def fitter(self, z, value: float) -> ParetoNBDFitter:
        r, alpha, s, beta = np.exp(z)
        fitter = ParetoNBDFitter(penalizer_coef=self.penalizer)
        fitter.params_ = pd.Series({"r": r, "alpha": alpha / self.scale, "s": s, "beta": beta / self.scale})
        fitter._scale = self.scale
        fitter._negative_log_likelihood_ = value * self.total / float(self.weights.mean())
        return fitter


def _pareto_fit(frequency, recency, T, weights, penalizer: float, start: dict | None = None) -> ParetoNBDFitter:
    """Pareto/NBD maximum likelihood by BFGS on the log parameters, from ``start`` or the fixed starts.

    Why not Nelder-Mead (what this did before, tol=1e-10 and 20,000 iterations from each fixed
    start): on CDNOW both reach the published estimates, BFGS in 150-250 likelihood evaluations a
    start instead of about 650. But on a store whose customers all drop out at about the same rate
    the likelihood keeps rising along the ray (s, beta) -> k (s, beta), k -> inf, where the gamma
    spread of the dropout rates vanishes; lifetimes' likelihood turns NaN a little way along it
    (above s = 165 on a 300-customer store), and the simplex walked the iteration cap into and
    around the NaN region at 20-300 ms an evaluation: 19 minutes for one fit and a NaN likelihood
    at the end. BFGS is stopped once a gamma shape passes ``PARETO_EDGE_SHAPE``, before that wall
    (it stopped at the wall within its iteration cap, but only after many probes of it), once
    almost nobody would drop out within the history (``PARETO_EDGE_DROPOUT``), or once it is pressed
    against that wall where it lies below that shape (``PARETO_WALL_HITS``), and ``_pareto_edge`` (or
    ``_stopped_edge``) then says whether the fit is at the boundary, so ``degeneracy`` reports it as such.

    The best (lowest objective) end over the starts is kept; deterministic. ``start`` (week units,
    e.g. a nearby window's optimum, its gamma shapes brought back to ``PARETO_START_SHAPE``) is tried
    alone first, and the fixed starts only when it ends without a finite likelihood. Raises
    ``ConvergenceError`` when no start ends at one.
    """
    from scipy.optimize import minimize

    objective = _ParetoLikelihood(frequency, recency, T, weights, penalizer)
    try:
        tries = [[_inside_edge_shape(objective.log_start(start))]] if start else []
        tries.append([np.log(np.asarray(point, dtype=float)) for point in _PARETO_STARTS])

        pressed = False  # whether the start being run ended pressed against the wall

        def stop_at_edge(z) -> None:
            nonlocal pressed
            objective.iterate = np.array(z, dtype=float)
            if _stopped_edge(z):
                raise StopIteration
            if objective.pressed_against_wall(z):
                pressed = True
                raise StopIteration

        for starts in tries:
            ends = []
            for z0 in starts:
                pressed = False
                try:
                    result = minimize(objective, z0, method="BFGS", callback=stop_at_edge,
                                      options={"gtol": 1e-8, "maxiter": PARETO_MAX_ITERATIONS})
                    x, value = result.x, result.fun
                except PressedAgainstWall:
                    x, objective.iterate, pressed = objective.iterate, None, True
                    value = objective(x)
                objective.iterate = None
                if np.all(np.isfinite(x)) and value < 1e300:
                    ends.append((float(value), x, pressed))
            if ends:
                value, z, at_wall = min(ends, key=lambda end: end[0])
                fitter = objective.fitter(z, value)
                # next to the wall the likelihood is what lifetimes' formula still gives, not an optimum
                wall = (f"pressed against where lifetimes' likelihood gives out (r = {np.exp(z[0]):.3g}, "
                        f"s = {np.exp(z[2]):.3g})") if at_wall else None
                fitter.boundary_ = _pareto_edge(objective, z, value) or _stopped_edge(z) or wall
                fitter.evaluations_ = objective.evaluations
                return fitter
    finally:
        objective.close()
    raise ConvergenceError("Pareto/NBD: no start ends at a finite likelihood")


PARETO_RAYS = (("s, beta -> inf (every customer drops out at the same rate)", np.array([0.0, 0.0, 1.0, 1.0])),
               ("r, alpha -> inf (every customer buys at the same rate)", np.array([1.0, 1.0, 0.0, 0.0])),
               ("s -> 0 (nobody drops out)", np.array([0.0, 0.0, -1.0, 0.0])),
               ("r -> 0 (nobody buys again)", np.array([-1.0, 0.0, 0.0, 0.0])))
"""Edges of the Pareto/NBD parameter space as directions in log parameters: along the first two a
gamma spread vanishes (shape and rate grow together, the mean rate stays put), along the last two
the mean dropout or purchase rate goes to 0."""


PARETO_START_SHAPE = 10.0
"""The largest gamma shape (r or s) a warm start of the Pareto/NBD fit keeps (``_inside_edge_shape``)."""


def _inside_edge_shape(z: np.ndarray) -> np.ndarray:
    """A warm start (log parameters) with each gamma shape above ``PARETO_START_SHAPE`` brought back
    to it along its ray (shape and rate scaled together: the same mean rate, a wider spread).

    Warm starts come from a nearby window's fit (``pareto_params``), a boundary fit too: started at
    or beyond ``PARETO_EDGE_SHAPE``, the first iterate stopped the fit at once, so once one window's
    fit went to the edge every later window stayed there. An Online-Retail-shaped window at
    2011-09-09 was reported at the edge that way (MBG/NBD served) although its likelihood has an
    interior maximum at s = 8.26 that the fixed starts find, 85 log-likelihood units above the
    MBG/NBD's. From the pulled-back start a store whose likelihood does rise to the edge climbs back
    to it within a few iterations."""
    z = np.array(z, dtype=float)
    cap = np.log(PARETO_START_SHAPE)
    for shape, rate in ((0, 1), (2, 3)):
        if z[shape] > cap:
            z[rate] -= z[shape] - cap
            z[shape] = cap
    return z


def _stopped_edge(z: np.ndarray) -> str | None:
    """The edge the Pareto/NBD iterate ``z`` (log parameters, lifetimes' scale: the longest age is 1)
    has reached (``PARETO_EDGE_SHAPE``, ``PARETO_EDGE_DROPOUT``), or None."""
    edges = [f"{PARETO_RAYS[i][0]}: gamma shape above {PARETO_EDGE_SHAPE:g}"
             for i, shape in ((1, z[0]), (0, z[2])) if shape > np.log(PARETO_EDGE_SHAPE)]
    with np.errstate(all="ignore"):
        s, beta = np.exp(z[2]), np.exp(z[3])
        dropout = -np.expm1(-s * np.log1p(1.0 / beta))
    if dropout < PARETO_EDGE_DROPOUT:
        edges.append(f"{PARETO_RAYS[2][0]}: {dropout:.2g} of the customers drop out within the history")
    return "; ".join(edges) or None


def _pareto_edge(objective: _ParetoLikelihood, z: np.ndarray, value: float) -> str | None:
    """Which heterogeneity edge the Pareto/NBD optimum ``z`` lies on, or None when it is interior.

    A step of ``PARETO_RIDGE_STEP`` along a ray of ``PARETO_RAYS`` from an interior optimum loses
    likelihood. If the likelihood there is as high or higher, or lifetimes cannot compute it, the optimizer
    stopped on its way to that edge (the data want no spread, the supremum is the limit), not at
    a maximum: the parameters are where lifetimes' formula gave out, not an estimate.
    """
    step = np.log(PARETO_RIDGE_STEP)
    edges = [name for name, ray in PARETO_RAYS if not value < objective(z + step * ray) < 1e300]
    return "; ".join(edges) or None


def transaction_log_likelihood(fitter, frequency, recency, T, weights=None) -> float:
    """Total log-likelihood in week units (the scale of the published -9582.4 for BG/NBD).

    lifetimes reports a normalized negative log-likelihood in its internal rescaled time unit
    (max T = 1), which is neither a sum nor in weeks, so it is recomputed here from the params.
    """
    frequency = np.asarray(frequency, dtype=float)
    recency = np.asarray(recency, dtype=float)
    T = np.asarray(T, dtype=float)
    weights = np.ones_like(T) if weights is None else np.asarray(weights, dtype=float)
    fitter = getattr(fitter, "fitter", fitter)
    if isinstance(fitter, BetaGeoFitter):  # BG/NBD and MBG/NBD (a subclass with its own likelihood)
        params = np.log(fitter.params_[["r", "alpha", "a", "b"]].to_numpy(dtype=float))
        mean_nll = type(fitter)._negative_log_likelihood(params, frequency, recency, T, weights, 0.0)
        return float(-mean_nll * weights.sum())
    params = fitter.params_[["r", "alpha", "s", "beta"]].to_numpy(dtype=float)
    # NaN where lifetimes' formula loses precision (logaddexp of -inf and NaN terms): the caller
    # treats a non-finite likelihood as a degenerate fit, so numpy's warning is only console noise
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        values = ParetoNBDFitter._conditional_log_likelihood(params, frequency, recency, T)
    return float((weights * values).sum())


@lru_cache(maxsize=4096)
def _beta_nodes(A: float, B: float, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes in (0, 1) and weights summing to 1 for p ~ Beta(A, B), A, B >= 1.

    Gauss-Jacobi (exact for polynomials of degree < 2 n) unless A + B is so large that scipy's
    normalizing constant 2^(A+B-1) overflows; such a Beta is concentrated (sd ~ 1/sqrt(A+B)) and a
    Gauss-Hermite rule on its mean and standard deviation, clipped into (0, 1), is used instead.
    """
    # cached (one pair per distinct frequency of a scored store, reused by every horizon and batch):
    # the returned arrays are read-only so no caller can change the cached nodes
    if A + B < 1000.0:
        nodes, weights = roots_jacobi(n_nodes, B - 1.0, A - 1.0)  # (1-u)^(B-1) (1+u)^(A-1): Beta(A, B) in p
        return _frozen((1.0 + nodes) / 2.0), _frozen(weights / weights.sum())
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)
    mean = A / (A + B)
    sd = np.sqrt(A * B / ((A + B) ** 2 * (A + B + 1.0)))
    # nodes below 0 are moved to a small fraction of the mean, not towards 0: the caller divides by p
    p = np.clip(mean + sd * nodes, 1e-3 * mean, 1.0 - 1e-12)
    return _frozen(p), _frozen(weights / weights.sum())


def _frozen(values: np.ndarray) -> np.ndarray:
    values.setflags(write=False)
    return values


def _beta_expectation(g, alpha_, beta_, n_nodes: int = 48) -> np.ndarray:
    """E[g(p)] for p ~ Beta(alpha_, beta_) (one value per row), exact for smooth ``g``, for any
    alpha_, beta_ > 0 however close to 0.

    Gauss-Jacobi quadrature needs Jacobi parameters > -1, i.e. Beta parameters > 0 that are not
    tiny; a degenerate fit (a = 3.7e-19) breaks it. The expectation is rewritten so the quadrature
    runs on Beta(alpha_ + 1, beta_ + 1) only:
    E[g] = g(0) + alpha_/(alpha_+beta_) * (k(1) + beta_/(alpha_+beta_+1) * E_{B(alpha_+1, beta_+1)}[m])
    with k(p) = (g(p) - g(0)) / p and m(p) = (k(p) - k(1)) / (1 - p) - an exact identity
    (E[p f(p)] = alpha_/(alpha_+beta_) E_{B(alpha_+1, beta_)}[f], and the same on the 1 - p side).
    ``g`` maps a (rows x nodes) array of p to values of the same shape.
    """
    alpha_ = np.asarray(alpha_, dtype=float)
    beta_ = np.asarray(beta_, dtype=float)
    out = np.empty(alpha_.shape)
    pairs = np.stack([alpha_, beta_], axis=1)
    zero = np.zeros((len(alpha_), 1))
    one = np.ones((len(alpha_), 1))
    g0, g1 = g(zero)[:, 0], g(one)[:, 0]
    k1 = g1 - g0
    for a_, b_ in np.unique(pairs, axis=0):
        rows = (alpha_ == a_) & (beta_ == b_)
        p, weights = _beta_nodes(a_ + 1.0, b_ + 1.0, n_nodes)
        values = g(np.broadcast_to(p, (int(rows.sum()), n_nodes)), rows)
        k = (values - g0[rows, None]) / p
        m = (k - k1[rows, None]) / (1.0 - p)
        out[rows] = g0[rows] + a_ / (a_ + b_) * (k1[rows] + b_ / (a_ + b_ + 1.0) * (m * weights).sum(axis=1))
    return out


PURCHASE_WITHIN_NODES = 32
"""Gauss-Legendre nodes of the Pareto/NBD purchase-timing integral (``purchase_within_if_alive``): on
z = ln(1 + u/a) the integrand is a smooth product of exponentials; 32 nodes agree with an adaptive
quadrature to 1e-10 on the test's customers."""


@lru_cache(maxsize=8)
def _legendre_nodes(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes on [-1, 1] and their weights (read-only, cached)."""
    nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
    return _frozen(nodes), _frozen(weights)


EXPECTATION_NODES = 16
"""Quadrature nodes of E[X(t)] for BG/NBD and MBG/NBD (``TransactionModel.expected_at_times``). The
integrand is smooth in p: on the 98,600 customers of the 100k demo store at every discount step
of both horizons, 16 nodes differ from 48 by at most 2.1e-12 relative (12: 1.6e-9, 8: 1.1e-6) at
a quarter of the cost."""


class TransactionModel:
    """A fitted lifetimes transaction model whose predictions are total over valid inputs.

    ``family`` is ``bgnbd``, ``mbgnbd`` or ``pareto_nbd``; ``params_`` and everything else are the
    lifetimes fitter's. For BG/NBD and MBG/NBD the conditional expectation and P(alive) are computed
    here, not by lifetimes: lifetimes uses a Gauss hypergeometric function that returns NaN when
    a + b + x - 1 < 0 and its Gauss-Jacobi fallback raises for a, b -> 0. Both families give
    E[X(t) | x, t_x, T] = P(alive) * E_p[(1 - ((alpha+T) / (alpha+T+p t))^(r+x)) / p] with
    p ~ Beta(a, b + x) (BG/NBD) or Beta(a, b + x + 1) (MBG/NBD, where a customer can also drop out
    at time 0), evaluated by ``_beta_expectation`` for any positive a, b. P(alive) is evaluated in
    log space (a logistic of the log odds), so it never overflows.
    """

    def __init__(self, fitter, family: str) -> None:
        self.fitter = fitter
        self.family = family

    def __getattr__(self, name):
        return getattr(self.fitter, name)

    def _p(self):
        return tuple(float(self.fitter.params_[k]) for k in ("r", "alpha", "a", "b"))

    def conditional_probability_alive(self, frequency, recency, T) -> np.ndarray:
        x, tx, age = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=float)) for v in (frequency, recency, T)))
        if self.family == PARETO_NBD:
            with np.errstate(all="ignore"):
                return np.clip(np.asarray(self.fitter.conditional_probability_alive(x, tx, age), dtype=float), 0, 1)
        r, alpha, a, b = self._p()
        with np.errstate(divide="ignore", invalid="ignore"):  # BG/NBD x = 0 rows are replaced below
            log_odds_dead = (np.log(a) - np.log(b + x - (1.0 if self.family == BGNBD else 0.0))
                             + (r + x) * (np.log(alpha + age) - np.log(alpha + tx)))
        alive = expit(-log_odds_dead)
        if self.family == BGNBD:  # BG/NBD: no dropout before the first repeat purchase
            alive = np.where(x == 0, 1.0, alive)
        return alive

    def conditional_expected_number_of_purchases_up_to_time(self, t, frequency, recency, T) -> np.ndarray:
        """E[X(t) | x, t_x, T]; the shape of the broadcast inputs (a 0-d array for scalars)."""
        shape = np.broadcast(np.asarray(frequency), np.asarray(recency), np.asarray(T)).shape
        return self._expected(t, frequency, recency, T).reshape(shape)

    def _expected(self, t, frequency, recency, T) -> np.ndarray:
        return self.expected_at_times([t], frequency, recency, T)[:, 0]

    def expected_number_of_purchases_up_to_time(self, t) -> np.ndarray:
        """Unconditional E[X(t)] of a customer who has just made their first purchase (the shape of ``t``).

        BG/NBD and MBG/NBD: the conditional expectation at x = 0, t_x = 0, T = 0 (the same quadrature,
        total for a, b -> 0), not lifetimes' hypergeometric closed form, which is infinite or NaN at
        the limit ``fit_auto`` serves for a store where nobody drops out (a = 1e-32, b = 4e-21): the
        revenue forecast's new customers and seasonal index read this curve.
        """
        if self.family == PARETO_NBD:
            return self.fitter.expected_number_of_purchases_up_to_time(t)
        times = np.asarray(t, dtype=float)
        distinct, inverse = np.unique(times.reshape(-1), return_inverse=True)
        values = self.expected_at_times(distinct, 0.0, 0.0, 0.0)[0]
        return values[inverse.reshape(-1)].reshape(times.shape)

    def expected_at_times(self, times, frequency, recency, T) -> np.ndarray:
        """E[X(t) | x, t_x, T] for every t of ``times`` at once: a (customers x times) array.

        BG/NBD and MBG/NBD: one pass over the customers grouped by the Beta posterior of their
        dropout probability (one group per distinct frequency), whose quadrature nodes are built
        once and shared by every t - a CLV's discount steps and both horizons cost one grouping
        instead of one per t. The values are those of the one-t formula (same operations).
        """
        x, tx, age = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=float)) for v in (frequency, recency, T)))
        times = np.atleast_1d(np.asarray(times, dtype=float))
        out = np.zeros((x.shape[0], times.shape[0]))
        if self.family == PARETO_NBD:
            for j, t in enumerate(times):
                with np.errstate(all="ignore"):
                    out[:, j] = np.asarray(self.fitter.conditional_expected_number_of_purchases_up_to_time(
                        float(t), x, tx, age), dtype=float)
            return out
        r, alpha, a, b = self._p()
        shape = r + x
        base = alpha + age
        beta_b = b + x + (1.0 if self.family == MBGNBD else 0.0)
        distinct, inverse = np.unique(beta_b, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        edges = np.searchsorted(inverse[order], np.arange(distinct.shape[0] + 1))
        for u, b_ in enumerate(distinct):
            rows = order[edges[u]:edges[u + 1]]
            p, weights = _beta_nodes(a + 1.0, float(b_) + 1.0, EXPECTATION_NODES)
            # Given x, the expectation of an alive customer depends on T alone (t_x only enters
            # P(alive)), and T takes one value per day of first purchase: the integral is
            # evaluated once per distinct (x, T), far fewer than the customers of a large store.
            bases, back = np.unique(base[rows], return_inverse=True)
            s, bb = float(shape[rows[0]]), bases[:, None]
            block = np.zeros((bases.shape[0], times.shape[0]))
            for j, t in enumerate(times):
                if t <= 0:
                    continue
                # _beta_expectation's identity for g(p) = (1 - (base / (base + p t))^shape) / p, whose
                # limit at p = 0 is shape * t / base
                g0 = (s * t / bb)[:, 0]
                g1 = -np.expm1(-s * np.log1p(1.0 * t / bb))[:, 0]
                k1 = g1 - g0
                values = -np.expm1(-s * np.log1p(p * t / bb)) / p
                k = (values - g0[:, None]) / p
                m = (k - k1[:, None]) / (1.0 - p)
                block[:, j] = g0 + a / (a + b_) * (k1 + b_ / (a + b_ + 1.0) * (m * weights).sum(axis=1))
            out[rows] = block[back.reshape(-1)]
        return self.conditional_probability_alive(x, tx, age)[:, None] * out

    def probability_of_purchase_within(self, t, frequency, recency, T) -> np.ndarray:
        """P(at least one repeat purchase within ``t``) = P(alive) x ``purchase_within_if_alive``.

        The next-purchase fallback (``npd.BTYDNextPurchase``) reads its 7/30/90-day probabilities off
        this curve when the history is too short to train the survival model.
        """
        x, tx, age = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=float)) for v in (frequency, recency, T)))
        return self.conditional_probability_alive(x, tx, age) * self.purchase_within_if_alive(t, x, age)

    def purchase_within_if_alive(self, t, frequency, T) -> np.ndarray:
        """P(a repeat purchase within ``t`` | the customer is alive at T): the purchase-timing curve
        without P(alive), which cancels from every "given a purchase within L" quantity.

        Given alive, the purchase rate is Gamma(r + x, alpha + T). BG/NBD and MBG/NBD: an alive
        customer cannot drop out before their next purchase, so the curve is the closed form
        1 - ((alpha+T)/(alpha+T+t))^(r+x). Pareto/NBD: the lifetime left is Exponential(mu) with mu ~
        Gamma(s, beta + T) independent of the rate, and a purchase comes first with probability
        P = int_0^t E[lambda e^(-lambda u)] E[e^(-mu u)] du
          = int_0^t k/a (a/(a+u))^(k+1) (b/(b+u))^s du,   k = r + x, a = alpha + T, b = beta + T,
        evaluated on z = ln(1 + u/a), where it is k e^(-kz) (1 + a (e^z - 1)/b)^(-s), a smooth integrand
        on [0, ln(1 + t/a)] (``PURCHASE_WITHIN_NODES`` Gauss-Legendre nodes; s = 0 gives the closed form).
        """
        x, age, t = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=float)) for v in (frequency, T, t)))
        params = {k: float(v) for k, v in self.fitter.params_.items()}
        shape, base = params["r"] + x, params["alpha"] + age
        if self.family != PARETO_NBD:
            return -np.expm1(shape * (np.log(base) - np.log(base + t)))
        nodes, weights = _legendre_nodes(PURCHASE_WITHIN_NODES)
        span = np.log1p(t / base)
        z = span[:, None] * (nodes[None, :] + 1.0) / 2.0
        dropout = np.exp(-params["s"] * np.log1p(base[:, None] * np.expm1(z) / (params["beta"] + age)[:, None]))
        values = shape[:, None] * np.exp(-shape[:, None] * z) * dropout
        return np.clip(span / 2.0 * (values @ weights), 0.0, 1.0)

    def median_purchase_time_within(self, window, frequency, T) -> np.ndarray:
        """Median time to the next purchase *given it happens within* ``window``: the t solving
        P(t | alive) = P(window | alive) / 2 (P(alive) cancels). Closed form for BG/NBD and MBG/NBD;
        for Pareto/NBD the curve is increasing in t and the root is found by bisection (to 1e-9 of
        the window), once per distinct (frequency, T).
        """
        x, age = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=float)) for v in (frequency, T)))
        window = float(window)
        if self.family != PARETO_NBD:
            r, alpha = float(self.fitter.params_["r"]), float(self.fitter.params_["alpha"])
            shape, base = r + x, alpha + age
            target = 1.0 - 0.5 * self.purchase_within_if_alive(window, x, age)
            return base * np.expm1(-np.log(target) / shape)
        keys, inverse = np.unique(np.stack([x, age], axis=1), axis=0, return_inverse=True)
        kx, kt = keys[:, 0], keys[:, 1]
        target = self.purchase_within_if_alive(window, kx, kt) / 2.0
        low, high = np.zeros(len(keys)), np.full(len(keys), window)
        for _ in range(int(np.ceil(np.log2(1e9)))):
            middle = (low + high) / 2.0
            below = self.purchase_within_if_alive(middle, kx, kt) < target
            low, high = np.where(below, middle, low), np.where(below, high, middle)
        return ((low + high) / 2.0)[inverse.reshape(-1)]

    def sample_purchases(self, t, frequency, recency, T, draws: int, rng: np.random.Generator) -> np.ndarray:
        """Draws of the number of repeat purchases in the next ``t`` (customers x draws).

        Alive ~ Bernoulli(P(alive)); given alive the rate is Gamma(r + x, alpha + T). BG/MBG: the
        dropout probability is Beta(a, b + x [+ 1]) and the count is min(Poisson(lambda t), G) with G
        the geometric purchase at which the customer drops out. Pareto/NBD: the lifetime left is
        Exponential(mu), mu ~ Gamma(s, beta + T), and the count is Poisson(lambda min(tau, t)).
        """
        x, tx, age = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=float)) for v in (frequency, recency, T)))
        n = x.shape[0]
        alive = rng.random((n, draws)) < self.conditional_probability_alive(x, tx, age)[:, None]
        params = {k: float(v) for k, v in self.fitter.params_.items()}
        r, alpha = params["r"], params["alpha"]
        lam = rng.gamma((r + x)[:, None], 1.0 / (alpha + age)[:, None], size=(n, draws))
        if self.family == PARETO_NBD:
            mu = rng.gamma(params["s"], 1.0 / (params["beta"] + age)[:, None], size=(n, draws))
            tau = rng.exponential(1.0, size=(n, draws)) / np.maximum(mu, 1e-300)
            counts = rng.poisson(lam * np.minimum(tau, float(t)))
        else:
            extra = 1.0 if self.family == MBGNBD else 0.0
            p = rng.beta(max(params["a"], 1e-300), (params["b"] + x + extra)[:, None], size=(n, draws))
            drop_at = rng.geometric(np.clip(p, 1e-12, 1.0))
            counts = np.minimum(rng.poisson(lam * float(t)), drop_at)
        return np.where(alive, counts, 0)


@dataclass(frozen=True)
class SpendFit:
    """Gamma-Gamma spend model and how many repeat customers it had to leave out."""

    fitter: GammaGammaFitter | None
    n_fitted: int
    n_excluded_nonpositive: int
    population_mean: float

    def expected_average_order_value(self, frequency, monetary) -> np.ndarray:
        """E[spend per transaction | x, m]: shrinks m towards the population mean by x.

        Customers without a repeat purchase (x = 0) get the population mean p*v/(q-1). Customers
        whose repeat spend was zero or negative were excluded from the fit; their non-positive mean
        is clipped to 0 and shrunk the same way, so they score below the population mean.
        """
        frequency = np.asarray(frequency, dtype=float)
        monetary = np.clip(np.asarray(monetary, dtype=float), 0.0, None)
        if self.fitter is None:
            return np.full_like(frequency, self.population_mean)
        return np.asarray(self.fitter.conditional_expected_average_profit(frequency, monetary), dtype=float)


SPEND_GRADIENT_TOLERANCE = 1e-4
"""Largest gradient entry (of lifetimes' Gamma-Gamma objective, in log parameters) at which a BFGS end
that stopped for precision loss is taken as the optimum (``_GammaGammaFit``)."""


class _GammaGammaFit(GammaGammaFitter):
    """lifetimes' Gamma-Gamma fit that also accepts an optimum BFGS reached to machine precision.

    Where customers' mean spends barely differ (one spend distribution for everyone), the
    likelihood rises along q, v -> inf with p v / (q - 1) fixed, flat to the last digits: BFGS ends
    there with "precision loss" (scipy status 2) and a gradient of about 1e-6, and lifetimes calls
    that a failure. The penalized refit that followed pulled q and v back to small values far from
    the optimum (the population mean spend 13 % above the customers' own mean on such a store), and
    whether BFGS reported success or precision loss depended on the order of the rows (the order
    DuckDB returned them in), so two runs on the same data served different spend models.
    """

    def _fit(self, minimizing_function_args, initial_params, params_size, disp, tol=1e-7, bounds=None, **kwargs):
        from autograd import hessian, value_and_grad
        from scipy.optimize import minimize

        x0 = 0.1 * np.ones(params_size) if initial_params is None else initial_params
        output = minimize(value_and_grad(self._negative_log_likelihood), jac=True, method=None, tol=tol, x0=x0,
                          args=minimizing_function_args, options={"disp": disp, **kwargs}, bounds=bounds)
        at_optimum = output.status == 2 and np.all(np.isfinite(output.x)) and np.isfinite(output.fun) and (
            float(np.max(np.abs(output.jac))) <= SPEND_GRADIENT_TOLERANCE)
        if not (output.success or at_optimum):
            # what lifetimes' own fit prints before it raises, logged as ``_optimizer_output_logged`` logs it
            _log.debug("lifetimes optimizer output:\n%s", output)
            raise ConvergenceError(f"Gamma-Gamma fit did not converge: {output.message}")
        return output.x, output.fun, hessian(self._negative_log_likelihood)(output.x, *minimizing_function_args)


def fit_gamma_gamma(summary: pd.DataFrame, penalizer: float = 0.0) -> SpendFit:
    """Fit Gamma-Gamma on customers with frequency > 0 and monetary > 0.

    Zero/negative repeat spend (CDNOW has $0 rows) is outside the model's support, so those
    customers are excluded from the fit and counted in ``n_excluded_nonpositive``. With fewer than
    two usable customers no model is fitted and the mean repeat spend is the population mean.
    The rows are fitted in one canonical order (frequency, monetary), so the fit does not depend
    on the order the summary arrives in (``_GammaGammaFit``).
    """
    repeaters = summary[summary["frequency"] > 0]
    usable = repeaters[repeaters["monetary"] > 0].sort_values(["frequency", "monetary"], kind="stable")
    excluded = int(len(repeaters) - len(usable))
    if len(usable) < 2:
        mean = float(usable["monetary"].mean()) if len(usable) else 0.0
        return SpendFit(None, int(len(usable)), excluded, mean)
    for attempt in (penalizer, *[p for p in FALLBACK_PENALIZERS if p > penalizer]):
        try:
            with warnings.catch_warnings():  # _GammaGammaFit logs its optimizer output, prints nothing
                warnings.simplefilter("ignore", RuntimeWarning)
                fitter = _GammaGammaFit(penalizer_coef=attempt).fit(usable["frequency"], usable["monetary"])
        except ConvergenceError:
            continue
        p, q, v = (float(fitter.params_[k]) for k in ("p", "q", "v"))
        if q > 1:
            return SpendFit(fitter, int(len(usable)), excluded, p * v / (q - 1))
    # No usable spend model (e.g. no heterogeneity in spend between customers): every customer
    # gets the observed mean repeat spend rather than the refresh failing.
    return SpendFit(None, int(len(usable)), excluded, float(usable["monetary"].mean()))


@dataclass(frozen=True)
class BTYDModel:
    """A fitted transaction model (BG/NBD or Pareto/NBD) plus the Gamma-Gamma spend model."""

    model: str
    transactions: TransactionModel
    spend: SpendFit
    log_likelihood: float
    n_customers: int
    penalizer: float = 0.0
    selection: tuple = ()
    """How ``fit_auto`` chose this family: one dict per candidate (family, penalizer, log-likelihood,
    status, reason); empty for a single-family fit."""
    reason: str = ""

    def params(self) -> dict:
        """Fitted parameters (week units) of both sub-models, plus the fit diagnostics."""
        out = {k: float(v) for k, v in self.transactions.params_.items()}
        spend = {}
        if self.spend.fitter is not None:
            spend = {k: float(v) for k, v in self.spend.fitter.params_.items()}
        return {
            "model": self.model,
            "transaction_params": out,
            "log_likelihood": self.log_likelihood,
            "n_customers": self.n_customers,
            "spend_params": spend,
            "spend_population_mean": self.spend.population_mean,
            "spend_n_fitted": self.spend.n_fitted,
            "spend_n_excluded_nonpositive": self.spend.n_excluded_nonpositive,
            "penalizer": self.penalizer,
            "reason": self.reason,
            "selection": list(self.selection),
        }

    def expected_purchases(self, summary: pd.DataFrame, horizon_weeks: float) -> np.ndarray:
        """E[repeat purchases in the next ``horizon_weeks`` | frequency, recency, T]."""
        return np.asarray(
            self.transactions.conditional_expected_number_of_purchases_up_to_time(
                horizon_weeks,
                summary["frequency"].to_numpy(dtype=float),
                summary["recency"].to_numpy(dtype=float),
                summary["T"].to_numpy(dtype=float),
            ),
            dtype=float,
        )

    def probability_alive(self, summary: pd.DataFrame) -> np.ndarray:
        return np.asarray(
            self.transactions.conditional_probability_alive(
                summary["frequency"].to_numpy(dtype=float),
                summary["recency"].to_numpy(dtype=float),
                summary["T"].to_numpy(dtype=float),
            ),
            dtype=float,
        )

    def expected_average_order_value(self, summary: pd.DataFrame) -> np.ndarray:
        return self.spend.expected_average_order_value(summary["frequency"], summary["monetary"])

    def expected_purchases_at(self, summary: pd.DataFrame, times) -> np.ndarray:
        """E[repeat purchases in the next t weeks] for every t of ``times``: customers x times."""
        return self.transactions.expected_at_times(
            times,
            summary["frequency"].to_numpy(dtype=float),
            summary["recency"].to_numpy(dtype=float),
            summary["T"].to_numpy(dtype=float),
        )

    def discounted_clv(
        self,
        summary: pd.DataFrame,
        horizon_weeks: float,
        annual_discount_rate: float = 0.10,
        period_weeks: float = WEEKS_PER_MONTH,
        cumulative: np.ndarray | None = None,
    ) -> np.ndarray:
        """Discounted expected spend over ``horizon_weeks``.

        The horizon is cut into periods of ``period_weeks`` (default one lifetimes month,
        4.345 weeks; a shorter last period if the horizon is not a multiple). Each period's
        incremental expected purchases times the expected order value are discounted at the end
        of the period by (1 + annual_rate) ** (t / 52.14), 52.14 = 12 lifetimes months. For a
        horizon of M whole months this equals lifetimes'
        ``GammaGammaFitter.customer_lifetime_value(model, ..., time=M, freq="W",
        discount_rate=(1 + annual_rate) ** (1 / 12) - 1)`` - lifetimes' ``time`` is in months and
        its ``discount_rate`` is monthly, whatever ``freq`` the data are in. ``cumulative`` may
        hold E[X(t)] at ``discount_steps`` already (customers x steps).
        """
        steps = discount_steps(horizon_weeks, period_weeks)
        aov = self.expected_average_order_value(summary)
        if cumulative is None:
            cumulative = self.expected_purchases_at(summary, steps)
        increments = np.diff(cumulative, axis=1, prepend=0.0)
        discount = (1.0 + annual_discount_rate) ** (-(steps / WEEKS_PER_YEAR))
        clv = np.zeros(len(summary))
        for j in range(steps.shape[0]):  # period by period, the order of the original sum
            clv += increments[:, j] * aov * discount[j]
        return clv

    def sample_spend(
        self, summary: pd.DataFrame, horizon_weeks: float, draws: int = 200, seed: int | list[int] = 0,
        chunk: int = 20000,
    ) -> np.ndarray:
        """Draws of each customer's (undiscounted) spend over ``horizon_weeks``: customers x draws.

        Purchases come from ``TransactionModel.sample_purchases``; the spend of n purchases is
        Gamma(n p, nu) with the Gamma-Gamma posterior nu ~ Gamma(q + p x, v + x m) (the population
        mean per purchase when no spend model could be fitted). Parameter uncertainty is not
        included here (it moves every customer together and matters for the store total, see
        ``parameter_bootstrap``), so these are the customer-level randomness only.
        """
        rng = np.random.default_rng(seed)
        out = np.empty((len(summary), draws))
        x_all = summary["frequency"].to_numpy(dtype=float)
        m_all = np.clip(summary["monetary"].to_numpy(dtype=float), 0.0, None)
        for start in range(0, len(summary), chunk):
            part = slice(start, start + chunk)
            x, m = x_all[part], m_all[part]
            counts = self.transactions.sample_purchases(
                horizon_weeks, x, summary["recency"].to_numpy(dtype=float)[part],
                summary["T"].to_numpy(dtype=float)[part], draws, rng)
            fitter = self.spend.fitter
            if fitter is None:
                out[part] = counts * self.spend.population_mean
                continue
            p, q, v = (float(fitter.params_[k]) for k in ("p", "q", "v"))
            nu = rng.gamma((q + p * x)[:, None], 1.0 / (v + x * m)[:, None], size=counts.shape)
            shape = np.where(counts > 0, counts * p, 1.0)
            out[part] = np.where(counts > 0, rng.gamma(shape, 1.0 / nu), 0.0)
        return out

    def spend_intervals(
        self, summary: pd.DataFrame, horizon_weeks: float, draws: int = 200, seed: int = 0, chunk: int = 20000,
        levels: tuple[float, float] = (0.10, 0.90),
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-customer ``levels`` quantiles of spend over the horizon and the draws of the total.

        Chunked over customers, so a large store never holds customers x draws in memory at once.
        Returns (low, high, total_draws) with total_draws[j] = sum over customers of draw j.
        """
        quantiles, totals = self.spend_quantiles(summary, horizon_weeks, levels, draws, seed, chunk)
        return quantiles[0], quantiles[-1], totals

    def spend_quantiles(
        self, summary: pd.DataFrame, horizon_weeks: float, levels: tuple[float, ...] = (0.10, 0.50, 0.90),
        draws: int = 200, seed: int = 0, chunk: int = 20000,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-customer quantiles (one row per level) of spend over the horizon, and the total's draws.

        The same draws as ``spend_intervals`` with the same seed (chunk k uses ``seed + k``), so
        adding the median (0.5) to the levels leaves the P10 / P90 unchanged.
        """
        out = np.empty((len(levels), len(summary)))
        totals = np.zeros(draws)
        for k, start in enumerate(range(0, len(summary), chunk)):
            part = summary.iloc[start:start + chunk]
            sample = self.sample_spend(part, horizon_weeks, draws, seed + k, chunk)
            out[:, start:start + chunk] = np.quantile(sample, levels, axis=1)
            totals += sample.sum(axis=0)
        return out, totals

    def score(
        self,
        summary: pd.DataFrame,
        horizon_weeks: float,
        annual_discount_rate: float = 0.10,
    ) -> pd.DataFrame:
        """Per-customer scores over ``horizon_weeks``: p_alive, purchases, order value, CLV.

        ``expected_spend`` is undiscounted (purchases x order value) - the quantity compared with
        actual holdout spend in a backtest; ``clv`` is the discounted version.
        """
        return self.score_horizons(summary, [horizon_weeks], annual_discount_rate)[0]

    def score_horizons(
        self, summary: pd.DataFrame, horizons_weeks, annual_discount_rate: float = 0.10,
    ) -> list[pd.DataFrame]:
        """``score`` for each horizon, with E[X(t)] evaluated once at the union of every horizon's
        discount steps (a label window's steps are a prefix of a longer horizon's)."""
        steps = {float(h): discount_steps(float(h)) for h in horizons_weeks}
        times = np.unique(np.concatenate([*steps.values(), list(steps)]))
        cumulative = self.expected_purchases_at(summary, times)
        column = {t: j for j, t in enumerate(times)}
        aov = self.expected_average_order_value(summary)
        alive = self.probability_alive(summary)
        out = []
        for h in horizons_weeks:
            h = float(h)
            h_steps = steps[h]
            at_steps = cumulative[:, [column[t] for t in h_steps]]
            purchases = cumulative[:, column[h]]
            out.append(pd.DataFrame(
                {
                    "p_alive": alive,
                    "expected_purchases": purchases,
                    "expected_aov": aov,
                    "expected_spend": purchases * aov,
                    "clv": self.discounted_clv(summary, h, annual_discount_rate, cumulative=at_steps),
                },
                index=summary.index,
            ))
        return out


def distinct_rows(frame: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(position of each distinct row's first occurrence, each row's distinct index) over ``columns``.

    Every BTYD quantity of a customer is a function of a few summary columns, which many customers
    share, so callers evaluate the distinct rows once and give the values to every row
    (``values[inverse]``). A hash grouping: ``np.unique(axis=0)`` sorts the rows as opaque bytes
    (1.2 s a night at 300k customers in the BTYD scores, 1.6 s at 1M in the revenue forecast)."""
    inverse = frame.groupby(list(columns), sort=False, dropna=False).ngroup().to_numpy()
    _, first = np.unique(inverse, return_index=True)
    return first, inverse


def discount_steps(horizon_weeks: float, period_weeks: float = WEEKS_PER_MONTH) -> np.ndarray:
    """Ends of the discounting periods of ``BTYDModel.discounted_clv``: every ``period_weeks`` and
    the horizon itself (a shorter last period when the horizon is not a multiple)."""
    steps = np.arange(period_weeks, horizon_weeks + 1e-9, period_weeks)
    if steps.size == 0 or horizon_weeks - steps[-1] > 1e-9:
        steps = np.append(steps, horizon_weeks)
    return steps


def parameter_bootstrap(
    model: BTYDModel, summary: pd.DataFrame, horizon_weeks: float, replicates: int = 20, seed: int = 0,
) -> dict:
    """Parameter uncertainty of the store total: customer bootstrap of the fitted BTYD.

    Each replicate resamples the calibration customers with replacement, refits the same family
    (and penalizer) and Gamma-Gamma on the resample, and predicts the expected holdout spend of
    the *original* customers; ``factors`` = replicate total / the fitted model's total. Combined
    with the per-customer draws (``sample_spend``: who is alive, how many purchases, what they
    spend, given the parameters), the total's interval covers both sources. A replicate whose
    refit fails is left out and counted in ``failed``; with fewer than two usable replicates the
    factors are empty (no parameter term) and ``reason`` says so.
    """
    base = float(model.score(summary, horizon_weeks)["expected_spend"].sum())
    rng = np.random.default_rng(seed)
    factors, failed = [], 0
    # a resample's optimum is near the fit's: a Pareto/NBD refit starts there (``_pareto_fit``)
    # instead of from the two fixed starts, fewer likelihood evaluations a refit (a penalized fit's
    # own parameters too: 20 refits took 38 s from the fixed starts on a 5,000-customer store)
    start = ({k: float(v) for k, v in model.transactions.params_.items()} if model.model == PARETO_NBD else None)
    for _ in range(int(replicates)):
        rows = rng.integers(0, len(summary), len(summary))
        resample = summary.iloc[rows].reset_index(drop=True)
        try:
            refit = fit_btyd(resample, model.model, model.penalizer, pareto_start=start)
            total = float(refit.score(summary, horizon_weeks)["expected_spend"].sum())
        except FIT_ERRORS:
            failed += 1
            continue
        if not np.isfinite(total) or base <= 0:
            failed += 1
            continue
        factors.append(total / base)
    out = {"replicates": int(replicates), "failed": failed, "family": model.model,
           "factors": np.asarray(factors, dtype=float)}
    if len(factors) < 2:
        out["factors"] = np.empty(0)
        out["reason"] = f"{len(factors)} usable bootstrap refits: no parameter term"
    else:
        out["cv"] = float(np.std(factors, ddof=1) / np.mean(factors))
    return out


def fit_btyd(
    summary: pd.DataFrame,
    model: str = BGNBD,
    penalizer: float = 0.0,
    spend_penalizer: float = 0.0,
    pareto_start: dict | None = None,
) -> BTYDModel:
    """Fit a transaction model on the condensed RFM combinations and Gamma-Gamma on spend.

    If lifetimes reports non-convergence, the fit is retried with growing L2 penalizers
    (`FALLBACK_PENALIZERS`); the penalizer used is recorded on the result. ``model="auto"`` is
    ``fit_auto`` (family chosen with degenerate-fit fallback). ``pareto_start``: see
    ``_fit_transactions`` (used for the Pareto/NBD fit at the requested penalizer, not for its retries).
    """
    if model == AUTO:
        return fit_auto(summary, penalizer, spend_penalizer, pareto_start=pareto_start)
    combos = condense(summary)
    args = (combos["frequency"], combos["recency"], combos["T"], combos["weight"], model)
    for attempt in (penalizer, *[p for p in FALLBACK_PENALIZERS if p > penalizer]):
        try:
            # passed only when set: a plain fit keeps the six-argument call
            start = {"pareto_start": pareto_start} if pareto_start and attempt == penalizer else {}
            with _optimizer_output_logged():
                fitter = TransactionModel(_fit_transactions(*args, attempt, **start), model)
            penalizer = attempt
            break
        except (ConvergenceError, np.linalg.LinAlgError) as error:
            # lifetimes inverts the Hessian at the optimum for its standard errors: on a store too small
            # to identify the parameters (one customer) it is singular, which is a fit that did not
            # converge as well (a penalizer makes it regular), not a crash of the refresh
            if attempt == FALLBACK_PENALIZERS[-1] or attempt > FALLBACK_PENALIZERS[-1]:
                if isinstance(error, ConvergenceError):
                    raise
                raise ConvergenceError(f"{model}: singular Hessian at the optimum ({len(combos)} distinct "
                                       "frequency/recency/T rows): the data do not identify the parameters") from error
    log_likelihood = transaction_log_likelihood(
        fitter, combos["frequency"], combos["recency"], combos["T"], combos["weight"]
    )
    return BTYDModel(
        model=model,
        transactions=fitter,
        spend=fit_gamma_gamma(summary, spend_penalizer),
        log_likelihood=log_likelihood,
        n_customers=int(len(summary)),
        penalizer=penalizer,
    )


FIT_ERRORS = (ConvergenceError, ValueError, ArithmeticError, np.linalg.LinAlgError)
"""What a BTYD fit that did not succeed raises (non-convergence, a singular Hessian, parameters
lifetimes rejects, overflow): the callers that try a fit and go on without it catch these."""


def unusable(model: BTYDModel, summary: pd.DataFrame) -> str | None:
    """Why a fit must not be served (``degeneracy``, or a log-likelihood lifetimes cannot compute,
    which would win or lose a comparison of likelihoods at random), or None when it can be."""
    return degeneracy(model, summary) or (None if np.isfinite(model.log_likelihood) else "log-likelihood not finite")


def degeneracy(model: BTYDModel, summary: pd.DataFrame) -> str | None:
    """Why a fitted transaction model must not be served, or None when it is usable.

    Degenerate: a parameter not finite or outside ``PARAM_BOUNDS`` (the optimizer ran to the edge
    of the parameter space, e.g. the BG/NBD collapse a = 3.7e-19, b = 3.4e-09 of a store where few
    customers ever stop), a Pareto/NBD fit that stopped on its way to such an edge (``boundary_``,
    set by ``_pareto_edge``: its parameters are where lifetimes' likelihood gave out, not an
    estimate), or predictions on the calibration customers that are not finite numbers
    (E[X] over one year < 0 or NaN, P(alive) outside [0, 1]).
    """
    params = {k: float(v) for k, v in model.transactions.params_.items()}
    low, high = PARAM_BOUNDS
    bad = {k: v for k, v in params.items() if not np.isfinite(v) or v < low or v > high}
    if bad:
        return BOUNDARY + ", ".join(f"{k}={v:.3g}" for k, v in bad.items())
    edge = getattr(model.transactions.fitter, "boundary_", None)
    if edge:  # a Pareto/NBD fit that stopped on its way to an edge (``_pareto_edge``)
        return BOUNDARY + edge + ", stopped at " + ", ".join(f"{k}={v:.3g}" for k, v in params.items())
    return prediction_problem(model, summary)


BOUNDARY = "parameter at the boundary: "
"""How ``degeneracy`` starts when the fit ran to the edge of the parameter space."""


def prediction_problem(model: BTYDModel, summary: pd.DataFrame) -> str | None:
    """Why the model's predictions on ``summary`` are unusable (not finite, negative expectations,
    P(alive) outside [0, 1]), or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = model.expected_purchases(summary, 52.0)
            alive = model.probability_alive(summary)
    except (ValueError, ArithmeticError) as error:
        return f"predictions fail: {error}"
    if not np.all(np.isfinite(expected)) or np.any(expected < -1e-9):
        return f"{int(np.sum(~np.isfinite(expected) | (expected < -1e-9)))} customers get no finite expectation"
    if not np.all(np.isfinite(alive)) or np.any((alive < 0) | (alive > 1)):
        return "P(alive) outside [0, 1]"
    return None


AUTO_FALLBACK_PENALIZERS = (0.001, 0.01, 0.1)
"""When no family of ``AUTO_FAMILIES`` gives a usable fit, each is fitted again with these L2
penalizers, the smallest first: at the first penalizer where any is usable, the one of higher
calibration log-likelihood is served (the least regularization that gives a usable fit, and the
same criterion as the unpenalized choice). Until 5 December 2026 the first usable of MBG/NBD 0.01,
MBG/NBD 0.1 was served: on a marketplace-shaped store of 97 % one-time buyers (Olist's share) that
was MBG/NBD 0.01 (log-likelihood -9,299, holdout total +203 %) where Pareto/NBD 0.001 (-9,042) held
the holdout total to +2.6 %."""
AUTO_LAST_RESORT = ((BGNBD, 0.01), (BGNBD, 0.1))
"""Penalized BG/NBD fits tried in this order when no penalized family of ``AUTO_FAMILIES`` is
usable either (BG/NBD keeps every one-time buyer alive, so it comes last)."""


def pareto_params(model: BTYDModel) -> dict | None:
    """Week-unit parameters of the unpenalized Pareto/NBD fit behind ``model``, if one converged."""
    if model.model == PARETO_NBD and model.penalizer == 0:
        return {k: float(v) for k, v in model.transactions.params_.items()}
    for row in model.selection:
        if row.get("family") == PARETO_NBD and row.get("penalizer") == 0 and row.get("params"):
            if row.get("status") in ("usable", "degenerate") and all(
                    np.isfinite(v) and v > 0 for v in row["params"].values()):
                return dict(row["params"])
    return None


def fit_auto(
    summary: pd.DataFrame, penalizer: float = 0.0, spend_penalizer: float = 0.0,
    fits: dict[str, BTYDModel | Exception] | None = None, pareto_start: dict | None = None,
) -> BTYDModel:
    """Fit every family of ``AUTO_FAMILIES`` and serve the best usable one.

    Criterion: the highest calibration log-likelihood among the fits that converged and are not
    degenerate (``degeneracy``); all candidates have four parameters, so this is also the AIC/BIC
    choice. If none is usable, ``AUTO_FAMILIES`` are fitted with the penalizers of
    ``AUTO_FALLBACK_PENALIZERS``, smallest first, and at the first penalizer where any is usable the
    higher log-likelihood is served; then the penalized BG/NBD fits of ``AUTO_LAST_RESORT`` in order.
    If none of those is usable either but an unpenalized fit failed only by
    running to the edge of the parameter space with finite predictions (a store where nobody drops out),
    the highest-likelihood such limit is served, and the reason says so. Only if all of them fail does
    this raise. The returned model
    carries ``selection`` (every candidate and its status) and ``reason``. ``fits`` may hold
    fits (or the exception a fit raised) already made with ``penalizer`` to reuse, by family;
    ``pareto_start`` warm-starts the Pareto/NBD candidate (``_fit_transactions``).
    A summary in which every customer's first purchase is on the cutoff day (T = 0: a store whose
    orders are all on one day) holds no time to learn a rate from; that is said in a sentence.
    """
    if len(summary) and float(summary["T"].max()) <= 0:
        raise ValueError(f"history too short to fit a purchase model: all {len(summary):,} customers first bought "
                         "on the cutoff day, so no time after any first purchase shows how often they buy; "
                         "import orders of more than one day")
    rows: list[dict] = []
    boundary: list[BTYDModel] = []  # unpenalized fits at the edge whose predictions are finite
    fits = fits or {}

    def _ladder_start(family: str, pen: float) -> dict | None:
        # a penalized Pareto/NBD starts where the smaller penalizer's fit ended (degenerate or not):
        # the same optimum as from the fixed starts, in a third of the time (2.1 vs 5.9 s on a
        # 5,000-customer store of one-time buyers)
        if family != PARETO_NBD:
            return None
        if pen > penalizer:
            for row in reversed(rows):
                params = row.get("params") or {}
                if row["family"] == PARETO_NBD and params and all(np.isfinite(v) and v > 0 for v in params.values()):
                    return dict(params)
        return pareto_start

    def attempt(family: str, pen: float) -> BTYDModel | None:
        try:
            prefit = fits.get(family) if pen == penalizer else None
            if isinstance(prefit, Exception):
                raise prefit
            fitted = prefit or fit_btyd(summary, family, pen, spend_penalizer,
                                        pareto_start=_ladder_start(family, pen))
        except FIT_ERRORS as error:
            rows.append({"family": family, "penalizer": pen, "log_likelihood": None, "status": "failed",
                         "reason": f"{type(error).__name__}: {error}"[:200]})
            return None
        problem = unusable(fitted, summary)
        rows.append({"family": family, "penalizer": fitted.penalizer, "log_likelihood": fitted.log_likelihood,
                     "status": "degenerate" if problem else "usable", "reason": problem or "",
                     "params": {k: float(v) for k, v in fitted.transactions.params_.items()}})
        if problem and problem.startswith(BOUNDARY) and pen == penalizer and prediction_problem(fitted, summary) is None:
            boundary.append(fitted)
        return None if problem else fitted

    # one ladder of penalizers, the caller's first: at the first step where any family is usable, the
    # higher calibration log-likelihood is served. fit_btyd raises its own penalizer when a fit does
    # not converge: such a fit competes from the step of the penalizer it was fitted with (an MBG/NBD
    # that needed 0.001 meets the Pareto/NBD fitted with 0.001, not the unpenalized one); a family
    # whose every penalizer failed is done.
    best = None
    pending: dict[str, BTYDModel | None] = {}
    for pen in (penalizer, *sorted(p for p in AUTO_FALLBACK_PENALIZERS if p > penalizer)):
        fitted = []
        for family in AUTO_FAMILIES:
            if family not in pending:
                model = attempt(family, pen)
                if model is not None or rows[-1]["status"] == "failed":
                    pending[family] = model
            model = pending.get(family)
            if model is not None and model.penalizer <= pen:
                fitted.append(model)
        if fitted:
            best = max(fitted, key=lambda m: m.log_likelihood)
            others = [f"{m.model} {m.log_likelihood:.1f}" for m in fitted if m is not best]
            versus = (f" vs {', '.join(others)}" if others else "; the other candidates were not usable") + ")"
            if best.penalizer == 0:
                reason = f"{best.model}: highest calibration log-likelihood ({best.log_likelihood:.1f}" + versus
            else:
                reason = (f"{best.model} with L2 penalizer {best.penalizer:g}: the smallest penalizer giving a usable "
                          f"fit of {AUTO_FAMILIES}, highest calibration log-likelihood ({best.log_likelihood:.1f}" + versus)
            break
    if best is None:
        for family, pen in AUTO_LAST_RESORT:
            best = attempt(family, max(pen, penalizer))
            if best is not None:
                reason = (f"{family} with L2 penalizer {best.penalizer:g}: no unpenalized or penalized fit of "
                          f"{AUTO_FAMILIES} was usable")
                break
        if best is None and boundary:
            # Every fit, penalized ones included, ran to the edge: the data sit at a limit of the
            # model (a store where nobody drops out: a, b or s -> 0; identical buyers: r, alpha -> inf).
            # The penalizers shrink towards 0 and cannot pull a dropout parameter back from it, so
            # the limit is what the data say; its predictions are total (checked), so it is served
            # rather than leaving the store without any forecast.
            best = max(boundary, key=lambda m: m.log_likelihood)
            edge = next(r["reason"] for r in rows if r["family"] == best.model and r["penalizer"] == best.penalizer)
            reason = (f"{best.model} at the limit of its parameter space ({edge.removeprefix(BOUNDARY)}): every fit, "
                      "penalized ones included, ran to the edge (e.g. nobody in the calibration data dropped out); "
                      "its predictions are finite, so the limit is served")
        if best is None:
            raise ValueError("no BTYD model could be fitted: " + "; ".join(
                f"{r['family']}({r['penalizer']}): {r['status']} {r['reason']}" for r in rows))
    at_limit = any(best is m for m in boundary)
    chosen = [dict(r, chosen=(r["family"] == best.model and r["penalizer"] == best.penalizer
                              and (r["status"] == "usable" or at_limit))) for r in rows]
    return replace(best, selection=tuple(chosen), reason=reason)


def purchases_by_frequency(
    summary: pd.DataFrame, predictions: dict[str, np.ndarray], cap: int = 7
) -> list[dict]:
    """Mean holdout purchases by calibration repeat purchases x (x >= ``cap`` pooled as "7+").

    One row per x: customers, actual mean, and one mean per named prediction - the
    conditional-expectation table of Fader, Hardie & Lee (2005).
    """
    bucket = np.minimum(summary["frequency"].to_numpy(), cap)
    frame = pd.DataFrame({"x": bucket, "actual": summary["holdout_purchases"].to_numpy(dtype=float)})
    for name, values in predictions.items():
        frame[name] = np.asarray(values, dtype=float)
    table = frame.groupby("x").agg(
        customers=("actual", "size"), **{col: (col, "mean") for col in ["actual", *predictions]}
    )
    return [
        {
            "x": f"{x}+" if x == cap else str(x),
            **{k: (int(v) if k == "customers" else float(v)) for k, v in row.items()},
        }
        for x, row in table.iterrows()
    ]


def cumulative_repeat_transactions(
    transactions: pd.DataFrame,
    fitters: dict[str, BetaGeoFitter | ParetoNBDFitter],
    calibration_end,
    holdout_end,
    start=None,
) -> dict:
    """Week-by-week cumulative repeat transactions of the calibration cohort: models vs actual.

    Week w covers days [start + 7(w-1), start + 7w); the cumulative total is read at the end of
    its last day. A customer who first bought on day f (same day index) has age (d - f) / 7
    weeks at the end of day d and contributes the unconditional E[X(age)] of each model - the
    forecast uses only the fitted parameters and the first-purchase dates, as in the papers'
    tracking plots. Customers are grouped by first-purchase day, so the work is
    (#first days x #weeks), not per customer. Only the cohort that first bought on or before
    ``calibration_end`` is tracked, and same-day transactions count once.

    Returns ``{"weeks": [...], "actual": [...], "models": {name: [...]}, "calibration_weeks",
    "totals": {"actual", name...}}``, the totals read at the last week.
    """
    calibration_end = pd.Timestamp(calibration_end).normalize()
    holdout_end = pd.Timestamp(holdout_end).normalize()
    daily = _daily(transactions)
    first = daily.groupby("customer_id")["order_date"].transform("min")
    cohort = daily[first <= calibration_end].assign(first_purchase=first[first <= calibration_end])
    start = pd.Timestamp(start).normalize() if start is not None else cohort["first_purchase"].min()

    n_weeks = int(np.ceil(((holdout_end - start).days + 1) / DAYS_PER_WEEK))
    week_end_day = np.arange(1, n_weeks + 1) * 7 - 1

    repeats = cohort[(cohort["order_date"] > cohort["first_purchase"]) & (cohort["order_date"] <= holdout_end)]
    repeat_days = (repeats["order_date"] - start).dt.days.to_numpy()
    actual = np.searchsorted(np.sort(repeat_days), week_end_day, side="right")

    first_days = cohort.drop_duplicates("customer_id")["first_purchase"]
    cohort_sizes = ((first_days - start).dt.days).value_counts().sort_index()
    f = cohort_sizes.index.to_numpy(dtype=float)
    n = cohort_sizes.to_numpy(dtype=float)
    age = np.clip((week_end_day[:, None] - f[None, :]) / DAYS_PER_WEEK, 0.0, None)

    models = {}
    for name, fitter in fitters.items():
        expected = np.zeros_like(age)
        positive = age > 0
        expected[positive] = np.asarray(fitter.expected_number_of_purchases_up_to_time(age[positive]), dtype=float)
        models[name] = (expected * n[None, :]).sum(axis=1)

    calibration_weeks = ((calibration_end - start).days + 1) / DAYS_PER_WEEK
    return {
        "start": start.date().isoformat(),
        "weeks": list(range(1, n_weeks + 1)),
        "calibration_weeks": float(calibration_weeks),
        "actual": [int(v) for v in actual],
        "models": {name: [float(v) for v in values] for name, values in models.items()},
        "totals": {"week": n_weeks, "actual": int(actual[-1]), **{k: float(v[-1]) for k, v in models.items()}},
    }
