"""Training frames of a customer sample, drawn in DuckDB before anything reaches pandas.

The model steps cap their rows (``[sampling]`` in clv.toml): each keeps the customers with the
smallest seeded pandas hash of their id (``customer_keys``), the same customers in every window
and every run. Fetching a whole-store frame with ``.df()`` and capping it afterwards made the cost
of every training run grow with the store (eight 1M-row frames per CLV run). Here the same rule
runs in SQL: the hash of every customer id of the store is computed once per run (pandas, so it
is bit-for-bit the key ``cap_rows`` uses) into a DuckDB temp table, and each window's query keeps
its ``max_rows`` smallest keys before ``.df()`` (a cap above a quarter of the store, where that
costs more than it saves, reads the window whole and caps it in pandas: ``PUSH_DOWN_SHARE``). Because the kept set is "the smallest keys" in
both places, a frame sampled to N rows and then capped to M <= N rows with ``cap_rows`` holds
exactly the rows ``cap_rows(whole_frame, M)`` holds: the models are unchanged by the move, only
the memory and the fetch shrink. Stores with at most ``max_rows`` customers take the unchanged
whole-frame path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd

from clv_platform.transforms.features import build_training_frame, check_order_history, cutoff_gaps, training_query

KEYS_VIEW = "__clv_customer_sample_keys"
"""Temp table of (customer_id, sample_key), written once per run and connection, dropped by ``close``."""


PUSH_DOWN_SHARE = 4
"""A cap of at most 1 / PUSH_DOWN_SHARE of the store's customers is sampled in SQL (the features
computed for the candidates only); a larger one reads the whole window and caps it in pandas."""


def customer_keys(ids: pd.Series) -> np.ndarray:
    """The fixed pseudo-random 64-bit key of each customer id (pandas' seeded hash, stable across
    runs and machines): the sampling order of every capped training frame."""
    return pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy()


def cap_rows(frame: pd.DataFrame, max_rows: int | None) -> pd.DataFrame:
    """At most ``max_rows`` rows: those of the customers with the smallest ``customer_keys``.

    A deterministic customer sample, in the original row order; ``max_rows`` of 0 / None, or a
    frame that is not larger, returns the frame itself (stores of normal size are untouched). The
    same customer gets the same key in every window, so a cap on rows keeps whole customers: the
    customers of a capped window are (nearly) the same in every window and every run.
    """
    if not max_rows or len(frame) <= max_rows:
        return frame
    keep = np.sort(np.argpartition(customer_keys(frame["customer_id"]), max_rows - 1)[:max_rows])
    return frame.iloc[keep].reset_index(drop=True)


@dataclass
class SampledFrame:
    """A training frame (possibly a customer sample) and the size of the window it was drawn from."""

    frame: pd.DataFrame
    rows: int
    """Rows (customers) of the whole window."""
    has_repeat: bool
    """Whether the whole window has a customer with a repeat purchase day (``frequency`` > 0)."""
    max_rows: int | None
    """The cap it was fetched with (None = whole window)."""

    @property
    def complete(self) -> bool:
        return len(self.frame) == self.rows


@dataclass
class TrainingFrames:
    """The training frames of one run, each fetched once, customer-sampled in SQL when capped.

    ``get(end, h, max_rows)``: features at ``end - h`` with labels in (end - h, end], at most
    ``max_rows`` rows (0 / None = all) chosen by the smallest ``customer_keys``, in customer_id
    order - the same rows as ``cap_rows(build_training_frame(conn, end, h), max_rows)``. A frame is
    fetched once per (end, h) with the largest cap announced for it by ``want`` (or the first
    request's) and held until its announced uses are served; a later request with a smaller cap
    is served from it by ``cap_rows``. Frames that were not announced are not held.
    """

    conn: duckdb.DuckDBPyConnection
    _wanted: dict = field(default_factory=dict)
    _frames: dict = field(default_factory=dict)
    _store_customers: int | None = None
    _keys_registered: bool = False
    fetched: list = field(default_factory=list)
    """(end, h, max_rows, rows fetched) of every query run (metadata, tests)."""
    pushed_down: int = 0
    """Samples whose features were computed for the candidate customers only (``_fetch_pushed_down``)."""

    def want(self, end: date, horizon_days: int, max_rows: int | None) -> None:
        """Announce a later ``get``: the frame is fetched with the largest cap announced (None = all)
        and held until the last announced ``get`` has been served (then released)."""
        key, cap = (end, int(horizon_days)), int(max_rows) if max_rows else None
        if key in self._wanted:
            old, uses = self._wanted[key]
            cap = None if old is None or cap is None else max(old, cap)
            self._wanted[key] = (cap, uses + 1)
        else:
            self._wanted[key] = (cap, 1)

    def get(self, end: date, horizon_days: int, max_rows: int | None) -> SampledFrame:
        key = (end, int(horizon_days))
        cap = int(max_rows) if max_rows else None
        held = self._frames.get(key)
        if held is None or not (held.complete or (cap is not None and held.max_rows is not None
                                                  and cap <= held.max_rows)):
            fetch = cap
            if key in self._wanted:
                wanted = self._wanted[key][0]
                fetch = None if wanted is None or cap is None else max(wanted, cap)
            held = self._fetch(end, int(horizon_days), fetch)
        if key in self._wanted:
            wanted, uses = self._wanted[key]
            # held for the announced uses only: a run does not keep every window in memory
            if uses > 1:
                self._wanted[key] = (wanted, uses - 1)
                self._frames[key] = held
            else:
                del self._wanted[key]
                self._frames.pop(key, None)
        if cap is None or len(held.frame) <= cap:
            return held
        return SampledFrame(cap_rows(held.frame, cap), held.rows, held.has_repeat, cap)

    def _fetch(self, end: date, horizon_days: int, max_rows: int | None) -> SampledFrame:
        if max_rows is None or max_rows * PUSH_DOWN_SHARE > self.store_customers():
            # no cap, a store within the cap, or a sample of a large share of the store: reading
            # every row (and capping in pandas) costs less than sampling in SQL (300k store,
            # 223k-customer window, 150k cap: 2.4 s CPU whole, 3.2 s sampled after the features,
            # 4.1 s with the features of the candidates only)
            whole = build_training_frame(self.conn, end, horizon_days)
            self.fetched.append((end, horizon_days, max_rows, len(whole)))
            frame = cap_rows(whole, max_rows)
            return SampledFrame(frame, len(whole), bool(len(whole) and whole["frequency"].sum() > 0),
                                None if frame is whole else max_rows)
        self._register_keys()
        sql, params = training_query(end, horizon_days, cutoff_gaps(self.conn, end - timedelta(days=horizon_days)))
        sampled = self._fetch_pushed_down(sql, params, max_rows)
        if sampled is None:
            sampled = self._fetch_filtered_after(sql, params, max_rows)
        else:
            self.pushed_down += 1
        self.fetched.append((end, horizon_days, max_rows, len(sampled.frame)))
        return sampled

    def _fetch_pushed_down(self, sql: str, params: dict, max_rows: int) -> SampledFrame | None:
        """The sample with the features computed for candidate customers only.

        Candidates: the ``max_rows`` + margin smallest keys among customers with any order by the
        feature cutoff (a superset of the window's customers, who need a purchase not cancelled by
        then). Every feature and label is a function of the customer's own orders, so reading
        ``staging.order_history`` for the candidates only gives their rows unchanged; when at
        least ``max_rows`` candidates are in the window, its ``max_rows`` smallest keys are among
        them. Otherwise (or when the sample has no repeat customer, so the window's total is
        needed) None: the caller computes every customer's features and samples after.
        """
        margin = max_rows // 50 + 100
        threshold = self.conn.execute(
            f"""
            select max(sample_key) from (
                select k.sample_key
                from {KEYS_VIEW} as k
                semi join (select customer_id from staging.order_history where order_date <= $cutoff::date)
                    using (customer_id)
                order by k.sample_key
                limit $candidates
            )
            """,
            {"cutoff": params["cutoff"], "candidates": max_rows + margin},
        ).fetchall()[0][0]
        if threshold is None:
            return None
        candidates = (f"(select * from staging.order_history semi join "
                      f"(select customer_id from {KEYS_VIEW} where sample_key <= $key_max) using (customer_id))")
        pushed = sql.replace("staging.order_history", candidates)
        frame = self.conn.execute(
            f"""
            select t.*
            from ({pushed}) as t
            join {KEYS_VIEW} as k on k.customer_id = t.customer_id
            qualify row_number() over (order by k.sample_key) <= $max_rows
            order by t.customer_id
            """,
            {**params, "max_rows": int(max_rows), "key_max": threshold},
        ).df()
        if len(frame) < max_rows or frame["frequency"].sum() == 0:
            return None
        # the window's size: customers with a purchase by the feature cutoff not cancelled by then
        # (the feature SQL's population)
        rows = int(self.conn.execute(
            """
            select count(distinct customer_id) from staging.order_history
            where order_date <= $cutoff::date
              and not (is_cancelled and coalesce(cancelled_on <= $cutoff::date, true))
            """,
            {"cutoff": params["cutoff"]},
        ).fetchall()[0][0])
        return SampledFrame(frame, rows, True, max_rows)

    def _fetch_filtered_after(self, sql: str, params: dict, max_rows: int) -> SampledFrame:
        """The sample of every customer's features (window aggregates give the window's totals)."""
        # window aggregates run before QUALIFY: the whole window's size and repeat days come back
        # with the sample, so the callers' "too few customers" checks see the window, not the sample
        frame = self.conn.execute(
            f"""
            select t.*, count(*) over () as __window_rows, sum(t.frequency) over () as __window_frequency
            from ({sql}) as t
            join {KEYS_VIEW} as k on k.customer_id = t.customer_id
            qualify row_number() over (order by k.sample_key) <= $max_rows
            order by t.customer_id
            """,
            {**params, "max_rows": int(max_rows)},
        ).df()
        rows = int(frame["__window_rows"].iloc[0]) if len(frame) else 0
        frequency = int(frame["__window_frequency"].iloc[0] or 0) if len(frame) else 0
        frame = frame.drop(columns=["__window_rows", "__window_frequency"])
        return SampledFrame(frame, rows, frequency > 0, max_rows)

    def store_customers(self) -> int:
        """Customers with any order in the store: no window can hold more."""
        if self._store_customers is None:
            check_order_history(self.conn)
            self._store_customers = int(self.conn.execute(
                "select count(distinct customer_id) from staging.order_history").fetchall()[0][0])
        return self._store_customers

    def _register_keys(self) -> None:
        if self._keys_registered:
            return
        # every customer of the feature SQL's population comes from staging.order_history
        ids = self.conn.execute("select distinct customer_id from staging.order_history").df()["customer_id"]
        keys = pd.DataFrame({"customer_id": ids.to_numpy(), "sample_key": customer_keys(ids)})
        # a temp table, not a registered frame: every scan of a pandas frame converts its Python
        # strings again, and each sampled query reads the keys up to three times
        self.conn.register("__clv_customer_sample_keys_frame", keys)
        try:
            self.conn.execute(f"create or replace temp table {KEYS_VIEW} as "
                              "select customer_id, sample_key from __clv_customer_sample_keys_frame")
        finally:
            self.conn.unregister("__clv_customer_sample_keys_frame")
        self._keys_registered = True

    def close(self) -> None:
        """Unregister the keys and drop the held frames."""
        if self._keys_registered:
            self.conn.execute(f"drop table if exists temp.main.{KEYS_VIEW}")
            self._keys_registered = False
        self._frames.clear()
