"""The BTYD interval table kept per stored fit (``ml.btyd_interval_cache``), so a night that reuses
the fit draws only the interval keys it has not drawn before.

The interval draws (``btyd_intervals.interval_table``) were half of ``ml/btyd_scores``: 6.3 of 13.4 s
at 300k customers, every night. But on a night that reuses the stored fit the model is the one of
the night before and T moved by one day, so almost every interval key (x, t_x week, T week) of
tonight was drawn already. The cache holds the drawn ratios of each key under a fingerprint
(``cache_key``) of the fit's identity and of every setting that changes the values (horizon, label
window, draws, levels, seed, chunk, key width, positive-part levels). A run reads the rows of its
keys, draws the missing ones (seeded by the night's cutoff, see ``btyd_intervals``) and appends
them. Rows under another fingerprint (another fit, other settings) are deleted first: the table is
derived data, redrawn whole when it no longer matches.

So a customer whose key did not change keeps exactly the same P10 / P50 / P90 night after night
until the next refit (before, every new key of the store shifted the seeding chunks of the keys
after it and every interval jittered by its Monte Carlo error each night).

The mixture point rule's columns (label-window P(buy), positive-part ratios) are drawn only when a
night needs them (``clv_assets.mixture_inputs_needed``). A cache drawn without them is redrawn whole
when a night needs them (never served as nulls); a cache drawn with them serves a night that does
not need them (the other columns are the same draws) and keeps drawing them for its new keys, so
the table stays whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np
import pandas as pd

from clv_platform.core.sql import table_exists, transaction
from clv_platform.models import btyd_intervals
from clv_platform.models.stored_fits import StoredFit, config_key

TABLE = "ml.btyd_interval_cache"
POSITIVE = [f"positive_q{round(level * 100):02d}_ratio" for level in btyd_intervals.POSITIVE_LEVELS]
"""Columns of the positive-part quantile ratios, one per ``btyd_intervals.POSITIVE_LEVELS``."""
_DDL = f"""
create table if not exists {TABLE} (
    cache_key varchar not null,
    code bigint not null,
    drawn_cutoff date not null,
    p10_ratio double not null,
    p50_ratio double not null,
    p90_ratio double not null,
    p_buy double not null,
    p_buy_label double,
    {", ".join(f"{c} double" for c in POSITIVE)}
)"""


@dataclass(frozen=True)
class DrawSettings:
    """Every setting of ``btyd_intervals.interval_table`` that changes a key's values."""

    horizon_weeks: float
    label_weeks: float | None
    draws: int = 200
    seed: int = 0
    chunk: int = 20_000
    levels: tuple[float, float] = (0.10, 0.90)

    @property
    def label_drawn(self) -> bool:
        """Whether the mixture draws include the label window's own P(buy) (else it is the horizon's)."""
        return self.label_weeks is not None and float(self.label_weeks) != float(self.horizon_weeks)

    def fingerprint(self, fit: str) -> str:
        return config_key({"fit": fit, "horizon_weeks": float(self.horizon_weeks),
                           "label_weeks": None if self.label_weeks is None else float(self.label_weeks),
                           "draws": int(self.draws), "seed": int(self.seed), "chunk": int(self.chunk),
                           "levels": [float(v) for v in self.levels], "key_days": btyd_intervals.KEY_DAYS,
                           "positive_levels": list(btyd_intervals.POSITIVE_LEVELS)})

    def draw(self, model, codes: np.ndarray, mixture: bool, stream: tuple[int, ...] = ()) -> btyd_intervals.IntervalTable:
        return btyd_intervals.interval_table(model, codes, self.horizon_weeks, draws=self.draws, seed=self.seed,
                                             chunk=self.chunk, levels=self.levels, label_weeks=self.label_weeks,
                                             mixture=mixture, stream=stream)


def fit_identity(stored: StoredFit) -> str:
    """The stored fit a cache belongs to: a refit (even to equal parameters) is another fit."""
    return config_key({"component": stored.component, "fit_cutoff": stored.fit_cutoff,
                       "fitted_at": stored.fitted_at, "config_key": stored.config_key, "params": stored.params})


def _frame(table: btyd_intervals.IntervalTable, key: str, cutoff: date) -> pd.DataFrame:
    n = table.codes.size
    frame = pd.DataFrame({"cache_key": key, "code": table.codes, "drawn_cutoff": pd.Timestamp(cutoff).date(),
                          "p10_ratio": table.p10_ratio, "p50_ratio": table.p50_ratio, "p90_ratio": table.p90_ratio,
                          "p_buy": table.p_buy,
                          "p_buy_label": table.p_buy_label if table.p_buy_label is not None else np.full(n, np.nan)})
    for j, column in enumerate(POSITIVE):
        frame[column] = table.positive_ratios[:, j] if table.positive_ratios is not None else np.nan
    return frame


def _table(frame: pd.DataFrame, settings: DrawSettings, mixture: bool) -> btyd_intervals.IntervalTable:
    """An IntervalTable of cache rows (sorted by code), the mixture columns only with ``mixture``."""
    frame = frame.sort_values("code", kind="stable")
    column = lambda name: frame[name].to_numpy(dtype=float)  # noqa: E731
    return btyd_intervals.IntervalTable(
        frame["code"].to_numpy(dtype=np.int64), column("p10_ratio"), column("p50_ratio"), column("p90_ratio"),
        column("p_buy"), column("p_buy_label") if mixture and settings.label_drawn else None,
        frame[POSITIVE].to_numpy(dtype=float) if mixture else None)


def cached_interval_table(conn: duckdb.DuckDBPyConnection, model, codes, settings: DrawSettings, fit: str,
                          cutoff: date, mixture: bool) -> tuple[btyd_intervals.IntervalTable, dict]:
    """The interval table of the distinct ``codes`` for the fit ``fit`` (``fit_identity``): cached rows
    where the cache has them, the missing keys drawn and appended in one transaction, and the counts
    and the reason for the metadata. With ``mixture`` every key has the mixture columns."""
    unique = np.unique(np.asarray(codes, dtype=np.int64))
    key = settings.fingerprint(fit)
    conn.execute("create schema if not exists ml")
    conn.execute(_DDL)
    with transaction(conn):
        stale = conn.execute(f"select count(*) from {TABLE} where cache_key <> ?", [key]).fetchone()[0]
        conn.execute(f"delete from {TABLE} where cache_key <> ?", [key])
        without_mixture = conn.execute(f"select count(*) from {TABLE} where {POSITIVE[0]} is null").fetchone()[0]
        if mixture and without_mixture:
            conn.execute(f"delete from {TABLE}")
        cached = conn.execute(f"select * from {TABLE}").df()
        held = len(cached)
        fresh = held == 0
        # a cache drawn with the mixture columns keeps drawing them (it stays whole for a night that needs them)
        draw_mixture = mixture or (not fresh and not without_mixture)
        cached = cached[cached["code"].isin(unique)]
        missing = np.setdiff1d(unique, cached["code"].to_numpy(dtype=np.int64), assume_unique=True)
        # a full draw (the first of a fit, or a redraw) seeds as ``interval_table`` always did; the
        # keys a night adds get a stream of its cutoff and of the rows held before (a second draw at
        # the same cutoff, after late data, so gets streams of its own, not the first draw's again)
        stream = () if fresh else (cutoff.toordinal(), held)
        drawn = settings.draw(model, missing, draw_mixture, stream) if missing.size else None
        if not fresh:
            reason = "reused the cache of this fit" + (f", drew {missing.size} new keys" if missing.size else "")
        elif mixture and without_mixture:
            reason = "redrawn: the cache lacked the mixture columns this night needs"
        elif stale:
            reason = "redrawn: the cache was of another fit or other draw settings"
        else:
            reason = "drawn: no cache of this fit yet"
        if drawn is not None and drawn.codes.size:
            new = _frame(drawn, key, cutoff)
            conn.register("_interval_rows", new)
            try:
                conn.execute(f"insert into {TABLE} by name select * from _interval_rows")
            finally:
                conn.unregister("_interval_rows")
            cached = pd.concat([cached, new], ignore_index=True) if len(cached) else new
    counts = {"interval_keys": int(unique.size), "interval_keys_reused": int(unique.size - missing.size),
              "interval_keys_drawn": int(missing.size), "interval_cache": reason}
    return _table(cached, settings, mixture), counts
