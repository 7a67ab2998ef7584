"""Scale benchmark: time each stage of a full refresh on a synthetic store of N customers.

`make bench ARGS="--customers N [N ...] [--json]"` (or `python -m benchmarks.bench ...` from the
repository root) builds a demo store of N customers,
writes its raw tables into a temporary DuckDB file and times every stage of the refresh
(staging, features, and any later stage registered with `register_stage`), with the
peak resident memory of each. DuckDB allocates natively, so `tracemalloc` would miss
almost all of it; we read the kernel's high-water mark (`VmHWM`) instead and reset it
between stages where the kernel allows (`/proc/self/clear_refs`).

On the same data it also times two references, so the feature SQL is judged against
something rather than in a vacuum:

* a straightforward pandas implementation of the RFM / cadence features — what a
  notebook does: read the orders into pandas, sort, group by customer, diff, aggregate;
  its output is checked against the SQL features so the comparison is like for like;
* a bare DuckDB `group by customer_id` scan of the order-lines table (sum / count), the
  floor any per-customer aggregation in DuckDB has to pay.

`--source synthetic` skips the demo store and fills the staging tables directly with
a simple random store in SQL; it isolates the feature SQL at sizes where generating the
demo store's JSON payloads would dominate the run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from benchmarks.references import PER_CUSTOMER_SAMPLE, agreement, pandas_features, pandas_features_per_customer
from benchmarks.synthetic import synthetic_staging
from clv_platform.resources.storage import StorageResource
from clv_platform.settings import Settings, load_settings, using_settings
from clv_platform.transforms.features import materialize_features
from clv_platform.transforms.order_history import (
    ORDER_HISTORY_SCRIPT,
    ORDER_HISTORY_TABLE,
    build_order_history,
    recomputed_at,
)

StageFn = Callable[[duckdb.DuckDBPyConnection, dict[str, Any]], Any]
"""A stage gets the connection and a shared context dict (e.g. `cutoff`); it may return
a row count or a dict of figures to report."""

_EXTRA_STAGES: list[tuple[str, StageFn]] = []


def register_stage(name: str, fn: StageFn) -> None:
    """Add a later refresh stage (models, scoring, drift …) to every subsequent bench run."""
    if name not in {n for n, _ in _EXTRA_STAGES}:
        _EXTRA_STAGES.append((name, fn))


@dataclass
class StageTiming:
    stage: str
    seconds: float
    peak_rss_mb: float | None
    detail: Any = None
    cpu_seconds: float | None = None


@dataclass
class BenchResult:
    customers: int
    source: str
    threads: int
    memory_limit: str
    orders: int = 0
    order_lines: int = 0
    feature_rows: int = 0
    stages: list[StageTiming] = field(default_factory=list)
    references: dict[str, float] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    agreement: dict[str, Any] = field(default_factory=dict)
    agreement_per_customer: dict[str, Any] = field(default_factory=dict)
    process_peak_rss_mb: float | None = None
    refresh_seconds: float = 0.0
    refresh_peak_rss_mb: float | None = None
    todo: list[str] = field(default_factory=list)


def _read_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0) so the next reading is per stage."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """Peak RSS of this process (VmHWM), or of process + children via getrusage (KiB on Linux)."""
    hwm = _read_status_kb("VmHWM")
    if hwm is not None:
        return hwm / 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def _process_peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def _cpu() -> float:
    """CPU seconds of this process (DuckDB's worker threads included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(name: str, fn: Callable[[], Any]) -> StageTiming:
    can_reset = _reset_peak_rss()
    started, cpu = time.perf_counter(), _cpu()
    detail = fn()
    seconds = time.perf_counter() - started
    return StageTiming(name, seconds, _peak_rss_mb() if can_reset else None, detail, _cpu() - cpu)


def _best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any, float]:
    """Best wall time of `repeats` runs (the first run also warms DuckDB's buffer pool),
    its result, and the best CPU time — steadier than wall time on a shared machine."""
    best, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(max(repeats, 1)):
        started, cpu = time.perf_counter(), _cpu()
        result = fn()
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, _cpu() - cpu)
    return best, result, best_cpu


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_memory_limit() -> str:
    """The platform's own DuckDB memory limit, so the bench measures what a refresh uses."""
    from clv_platform.resources.storage import duckdb_config

    return str(duckdb_config()["memory_limit"])


def _release_freed_memory() -> None:
    """Hand memory freed by the set-up (the generated store) back to the OS, so the refresh
    stages' peak RSS is theirs and not glibc's free lists."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def demo_store_stages(customers: int) -> list[tuple[str, StageFn]]:
    """Generate the demo store, write its raw tables and build staging (the real path)."""
    from clv_platform.ingestion.demo_store import DemoStoreParams, generate
    from clv_platform.transforms.staging import build_staging

    state: dict[str, Any] = {}

    def gen(conn, ctx):
        state["store"] = generate(DemoStoreParams(n_customers=customers))
        return None

    def write_raw(conn, ctx):
        return state.pop("store").write_raw_tables(conn, datetime.now().replace(microsecond=0))

    def staging(conn, ctx):
        result = build_staging(conn)
        ctx["staging_script_seconds"] = result.script_seconds
        return result.row_counts

    return [("demo_store.generate", gen), ("raw tables", write_raw), ("staging", staging)]


class _SharedDuckDB(StorageResource):
    """Hands cursors of the bench's own connection to the Dagster assets.

    DuckDB refuses a second connection to one file with other settings in the same process,
    and a cursor shares the bench's threads and memory limit, so the assets run as configured.
    It is a `StorageResource`, so the assets read the bench's settings (its data folder, model
    and report folders) from it instead of from the environment.
    """

    @contextmanager
    def get_connection(self):
        cursor = _SHARED_CONNECTIONS[self.database].cursor()
        try:
            yield cursor
        finally:
            cursor.close()
            limit = _SHARED_MEMORY_LIMITS.get(self.database)
            if limit and self.database in _SHARED_CONNECTIONS:
                release_buffer_cache(_SHARED_CONNECTIONS[self.database], limit)


def release_buffer_cache(conn: duckdb.DuckDBPyConnection, memory_limit: str) -> None:
    """Evict DuckDB's cached blocks, then set `memory_limit` back (the bench's configured string).

    The platform's assets each open their own connection (`DuckDBResource.get_connection`) and
    close it when done, which closes the database and frees its buffer pool: a step never starts
    with the blocks the previous steps read. The bench hands every step a cursor of one shared
    connection instead, so without this the cache of the staging build (up to `memory_limit` of raw
    payload blocks) stayed resident under every later step and counted in the run's peak RSS.
    Lowering the limit makes DuckDB drop unpinned blocks (clean ones are re-read from the file when
    needed); a limit it cannot reach (pinned blocks) is skipped. The limit is restored from the
    configured string, not from `current_setting` (which prints a rounded "3.7 GiB").
    """
    try:
        conn.execute("set memory_limit = '32MB'")
    except duckdb.Error:
        pass  # more is pinned than that: nothing to release safely
    finally:
        conn.execute("set memory_limit = ?", [memory_limit])


def bench_settings(workdir: Path, database: Path, memory_limit: str | None = None) -> Settings:
    """The settings of a bench run: a demo store whose every file lives under `workdir`.

    Built from an explicit mapping rather than the caller's environment, so a developer's
    `CLV_*` variables (a live store's paths, say) can never point the bench at real data. The
    runs hand them to the assets in the `duckdb` resource and, for modules that still call
    `load_settings()` themselves, through `using_settings` (never by rewriting `os.environ`).
    """
    env = {"CLV_SOURCE": "demo", "CLV_DATA_DIR": str(workdir), "CLV_DUCKDB_PATH": str(database)}
    if memory_limit:
        env["CLV_DUCKDB_MEMORY_LIMIT"] = memory_limit
    return load_settings(env)


_SHARED_CONNECTIONS: dict[str, duckdb.DuckDBPyConnection] = {}
_SHARED_MEMORY_LIMITS: dict[str, str] = {}
"""The memory_limit each shared connection was opened with (restored by `release_buffer_cache`)."""

MODEL_GROUPS = ("ml", "scores", "monitoring")

SETUP_STAGES = frozenset({"demo_store.generate", "raw tables"})
"""Stages that stand in for fetching from Shopify/Klaviyo; everything else is the refresh."""
REFRESH_STAGES = frozenset({"staging", "synthetic staging"})

BARE_SCAN_SQL = """
create or replace table main.bench_bare_scan as
select customer_id, sum(line_revenue) as revenue, count(*) as line_count
from staging.order_lines
group by customer_id
"""
"""The floor the feature build is compared with: one grouped pass over the order lines."""

TRAINING_OFFSET_DAYS = 180
"""The features are also timed at cutoff − 180 days, the CLV model's label window: at a training
cutoff some customers (an order cancelled, or refunded twice, across the cutoff) take the
feature query's recomputation path, which the scoring cutoff rarely needs."""


def model_stages(conn: duckdb.DuckDBPyConnection, workdir: Path) -> list[StageTiming]:
    """Models, scoring and drift: the real Dagster assets (and their checks) run in process on the
    bench database; one timing per asset step, model files and reports kept under `workdir`."""
    import dagster as dg

    from clv_platform.definitions import ASSET_CHECKS, ASSETS, source_resources

    key = str(workdir / "bench.duckdb")
    settings = bench_settings(workdir, Path(key))
    _SHARED_CONNECTIONS[key] = conn
    can_reset = _reset_peak_rss()
    started, cpu = time.perf_counter(), _cpu()
    try:
        with using_settings(settings):
            result = dg.materialize(
                [*ASSETS, *ASSET_CHECKS],
                selection=dg.AssetSelection.groups(*MODEL_GROUPS),
                resources={"duckdb": _SharedDuckDB.from_settings(settings), **source_resources(settings)},
                instance=dg.DagsterInstance.ephemeral(),
            )
    finally:
        _SHARED_CONNECTIONS.pop(key, None)
    total = time.perf_counter() - started
    peak = _peak_rss_mb() if can_reset else None
    steps = [
        StageTiming(f"  {event.step_key.replace('__', '/')}", event.event_specific_data.duration_ms / 1000, None)
        for event in result.get_step_success_events()
    ]
    return [StageTiming("models + scoring + drift", total, peak, len(steps), _cpu() - cpu), *steps]


def _count(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(conn.execute(f"select count(*) from {table}").fetchone()[0])


def run_bench(
    customers: int = 1_000_000,
    as_json: bool = False,
    *,
    source: str = "demo",
    threads: int | None = None,
    memory_limit: str | None = None,
    repeats: int = 3,
    stages: list[tuple[str, StageFn]] | None = None,
    keep_database: Path | None = None,
) -> dict:
    """Run the benchmark for one store size and return the figures as a dict.

    `stages` replaces the post-feature stages (default: whatever `register_stage` added).
    `as_json` only affects how `main` prints; it is accepted here for the CLI's sake.
    """
    threads = threads or default_threads()
    memory_limit = memory_limit or default_memory_limit()
    result = BenchResult(customers=customers, source=source, threads=threads, memory_limit=memory_limit)
    with tempfile.TemporaryDirectory(prefix="clv-bench-") as tmp:
        path = keep_database or Path(tmp) / "bench.duckdb"
        if path.exists():
            path.unlink()
        conn = duckdb.connect(str(path))
        try:
            conn.execute(f"set threads = {int(threads)}")
            conn.execute("set memory_limit = ?", [memory_limit])
            conn.execute("set preserve_insertion_order = false")
            conn.execute("set enable_progress_bar = false")
            ctx: dict[str, Any] = {}
            if source == "synthetic":
                load: list[tuple[str, StageFn]] = [
                    ("synthetic staging", lambda c, _: synthetic_staging(c, customers)),
                    ("order history", lambda c, _: build_order_history(c)),
                ]
            else:
                load = demo_store_stages(customers)
            for name, fn in load:
                if name in REFRESH_STAGES:
                    _release_freed_memory()
                result.stages.append(_timed(name, lambda fn=fn: fn(conn, ctx)))
            # the demo path builds the history inside staging (its script time), synthetic as a stage
            history_s = ctx.get("staging_script_seconds", {}).get(ORDER_HISTORY_SCRIPT)
            if history_s is not None:
                result.stages.append(StageTiming(f"  of which {ORDER_HISTORY_TABLE}", history_s, None))
            else:
                history_s = next((st.seconds for st in result.stages if st.stage == "order history"), None)

            result.orders = _count(conn, "staging.orders")
            result.order_lines = _count(conn, "staging.order_lines")
            cutoff = conn.execute("select max(order_date) from staging.orders").fetchone()[0]
            ctx["cutoff"] = cutoff

            features = _timed("features", lambda: materialize_features(conn, cutoff))
            result.feature_rows = features.detail
            # The bare scan and the repeats of the feature build alternate, so that a change in the
            # shared machine's speed during the run (seen: 1.5x between runs) hits both sides of
            # their ratio alike instead of whichever happened to be timed in the slow minutes.
            bare_s = bare_cpu = float("inf")
            for i in range(max(repeats, 1)):
                wall, _, cpu = _best_of(1, lambda: conn.execute(BARE_SCAN_SQL))
                bare_s, bare_cpu = min(bare_s, wall), min(bare_cpu, cpu)
                if i < repeats - 1:
                    wall, _, cpu = _best_of(1, lambda: materialize_features(conn, cutoff))
                    features.seconds = min(features.seconds, wall)
                    features.cpu_seconds = min(features.cpu_seconds, cpu)
            result.stages.append(features)
            training_cutoff = cutoff - timedelta(days=TRAINING_OFFSET_DAYS)
            training_s, _, _ = _best_of(repeats, lambda: materialize_features(
                conn, training_cutoff, "main.bench_features_training"))
            _, recomputed = recomputed_at(conn, training_cutoff)

            for name, fn in (stages if stages is not None else list(_EXTRA_STAGES)):
                result.stages.append(_timed(name, lambda fn=fn: fn(conn, ctx)))
            if stages is None and source == "demo":
                result.stages.extend(model_stages(conn, Path(tmp)))
            elif stages is None:
                result.todo.append("model stages run on --source demo only: the synthetic staging tables time "
                                   "the SQL but have no purchase-process structure for the models to fit")

            refresh = [st for st in result.stages if not st.stage.startswith(" ") and st.stage not in SETUP_STAGES]
            result.refresh_seconds = sum(st.seconds for st in refresh)
            peaks = [st.peak_rss_mb for st in refresh if st.peak_rss_mb is not None]
            result.refresh_peak_rss_mb = max(peaks) if peaks else None

            def load_orders() -> pd.DataFrame:
                return conn.execute(
                    """
                    select o.customer_id, o.order_date::timestamp as order_date, o.is_cancelled,
                           o.cancelled_on::timestamp as cancelled_at,  -- the shop's calendar day, as the SQL reads it
                           o.gross_revenue::double as gross_revenue,
                           coalesce(r.refunded, 0) as refunded_amount
                    from staging.orders as o
                    left join (
                        select order_id, sum(amount)::double as refunded from staging.refunds
                        where refunded_on <= ? group by order_id
                    ) as r using (order_id)
                    """,
                    [cutoff],
                ).df()

            load_s, orders_df, _ = _best_of(1, load_orders)
            orders_df_full = orders_df
            orders_df_ids = sorted(orders_df["customer_id"].dropna().unique())
            _reset_peak_rss()
            pandas_s, reference, pandas_cpu = _best_of(repeats, lambda: pandas_features(orders_df, cutoff))
            pandas_peak = _peak_rss_mb()
            del orders_df

            # The per-customer reference is slow by nature: time it on a customer sample and
            # scale by customers (its cost is per customer), saying so in the report.
            sample_ids = orders_df_ids[:PER_CUSTOMER_SAMPLE]
            sample = orders_df_full[orders_df_full["customer_id"].isin(set(sample_ids))]
            per_customer_s, per_customer, _ = _best_of(1, lambda: pandas_features_per_customer(sample, cutoff))
            per_customer_scaled = per_customer_s * result.feature_rows / max(len(sample_ids), 1)
            del orders_df_full, sample

            sql_features = conn.execute("select * from features.customer_features").df()
            result.agreement_per_customer = agreement(
                sql_features[sql_features["customer_id"].isin(set(per_customer.index))], per_customer
            )
            result.agreement = agreement(sql_features, reference)
            del sql_features, reference

            duck_s = features.seconds
            result.references = {
                "duckdb_features_s": duck_s,
                "duckdb_features_cpu_s": features.cpu_seconds,
                "duckdb_features_training_cutoff_s": training_s,
                "training_cutoff": training_cutoff,
                "training_cutoff_recomputed_customers": int(recomputed),
                "order_history_s": history_s,
                "bare_scan_s": bare_s,
                "bare_scan_cpu_s": bare_cpu,
                "pandas_compute_cpu_s": pandas_cpu,
                "pandas_load_s": load_s,
                "pandas_compute_s": pandas_s,
                "pandas_total_s": load_s + pandas_s,
                "pandas_peak_rss_mb": pandas_peak,
                "pandas_per_customer_sample": min(len(orders_df_ids), PER_CUSTOMER_SAMPLE),
                "pandas_per_customer_sample_s": per_customer_s,
                "pandas_per_customer_scaled_s": per_customer_scaled,
            }
            result.ratios = {
                "pandas_compute_over_duckdb_features": pandas_s / duck_s,
                "pandas_total_over_duckdb_features": (load_s + pandas_s) / duck_s,
                "pandas_per_customer_over_duckdb_features": per_customer_scaled / duck_s,
                "duckdb_features_over_bare_scan": duck_s / bare_s,
                "duckdb_features_over_bare_scan_cpu": features.cpu_seconds / bare_cpu,
                "duckdb_training_cutoff_features_over_bare_scan": training_s / bare_s,
                "order_history_plus_one_feature_build_over_bare_scan":
                    ((history_s or 0.0) + duck_s) / bare_s,
                "feature_ms_per_100k_orders": duck_s * 1000 / max(result.orders, 1) * 100_000,
            }
        finally:
            conn.close()
    result.process_peak_rss_mb = _process_peak_mb()
    return _jsonable(asdict(result))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def format_report(runs: list[dict]) -> str:
    """Human-readable table of one or more bench runs."""
    out: list[str] = []
    for r in runs:
        out.append(
            f"\n== {r['customers']:,} customers ({r['source']}): {r['orders']:,} orders, "
            f"{r['order_lines']:,} lines, {r['feature_rows']:,} feature rows; "
            f"threads={r['threads']} memory_limit={r['memory_limit']}"
        )
        out.append(f"  {'stage':<34}{'wall s':>10}{'cpu s':>10}{'peak RSS MB':>14}")
        for s in r["stages"]:
            peak = "-" if s["peak_rss_mb"] is None else f"{s['peak_rss_mb']:,.0f}"
            cpu = "-" if s["cpu_seconds"] is None else f"{s['cpu_seconds']:.3f}"
            out.append(f"  {s['stage']:<34}{s['seconds']:>10.3f}{cpu:>10}{peak:>14}")
        ref, ratio = r["references"], r["ratios"]
        out.append(f"  {'bare lines group-by':<34}{ref['bare_scan_s']:>10.3f}{ref['bare_scan_cpu_s']:>10.3f}")
        out.append(f"  {'pandas load orders':<34}{ref['pandas_load_s']:>10.3f}")
        out.append(f"  {'pandas RFM/cadence':<34}{ref['pandas_compute_s']:>10.3f}{ref['pandas_compute_cpu_s']:>10.3f}"
                   f"{ref['pandas_peak_rss_mb']:>14,.0f}")
        out.append(f"  {'pandas per customer (seed style)':<34}{ref['pandas_per_customer_scaled_s']:>10.3f}"
                   f"   (measured {ref['pandas_per_customer_sample_s']:.2f} s on "
                   f"{ref['pandas_per_customer_sample']:,} customers, scaled per customer)")
        out.append(
            f"  seed-style pandas / duckdb features: {ratio['pandas_per_customer_over_duckdb_features']:.0f}x")
        out.append(
            f"  vectorized pandas / duckdb features: {ratio['pandas_compute_over_duckdb_features']:.1f}x compute, "
            f"{ratio['pandas_total_over_duckdb_features']:.1f}x incl. load; "
            f"duckdb features / bare scan: {ratio['duckdb_features_over_bare_scan']:.2f}x wall, "
            f"{ratio['duckdb_features_over_bare_scan_cpu']:.2f}x cpu; "
            f"{ratio['feature_ms_per_100k_orders']:.1f} ms per 100k orders"
        )
        out.append(
            f"  features at the training cutoff {ref['training_cutoff']}: "
            f"{ref['duckdb_features_training_cutoff_s']:.3f} s "
            f"({ratio['duckdb_training_cutoff_features_over_bare_scan']:.2f}x bare scan; "
            f"{ref['training_cutoff_recomputed_customers']:,} customers recomputed)"
        )
        if ref.get("order_history_s") is not None:
            out.append(
                f"  staging.order_history (once per staging build, serves every cutoff): {ref['order_history_s']:.3f} s; "
                f"history + one feature build / bare scan: "
                f"{ratio['order_history_plus_one_feature_build_over_bare_scan']:.2f}x"
            )
        agree = r["agreement"]
        out.append(f"  pandas vs SQL features agree: {agree['ok']} (max abs diff {agree['max_abs_diff']:.2g}); "
                   f"seed-style sample agrees: {r['agreement_per_customer'].get('ok')}")
        refresh_peak = r.get("refresh_peak_rss_mb")
        out.append(f"  full refresh (staging → features → models, scoring, drift): {r['refresh_seconds']:.1f} s, "
                   f"peak RSS {'-' if refresh_peak is None else f'{refresh_peak:,.0f} MB'}")
        out.append(f"  process peak RSS (incl. set-up and references): {r['process_peak_rss_mb']:,.0f} MB")
        for todo in r["todo"]:
            out.append(f"  note: {todo}")
    if len(runs) > 1:
        out.append("\n== scaling of the feature build")
        out.append(f"  {'customers':>12}{'orders':>12}{'features s':>12}{'ms/100k orders':>16}")
        for r in runs:
            out.append(f"  {r['customers']:>12,}{r['orders']:>12,}{r['references']['duckdb_features_s']:>12.3f}"
                       f"{r['ratios']['feature_ms_per_100k_orders']:>16.1f}")
    return "\n".join(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, nargs="+", default=[1_000_000],
                        help="store size(s); several values report the scaling (default 1000000)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--source", choices=("demo", "synthetic"), default="demo",
                        help="demo: demo store → raw → staging (default); synthetic: staging tables in SQL")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit (default: the platform's, CLV_DUCKDB_MEMORY_LIMIT or 4GB)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each measured query")
    parser.add_argument("--mode", choices=("full", "nightly"), default="full",
                        help="full: time every stage of a full refresh with the references (default); nightly: a "
                             "full refresh, then one appended day and the nightly run, asset by asset "
                             "(benchmarks/nightly.py)")
    parser.add_argument("--keep-dir", type=Path, default=None,
                        help="nightly mode: copy the store as it stands before the nightly run to this folder "
                             "(for benchmarks/nightly_profile.py)")


def run_from_args(args: argparse.Namespace) -> int:
    if args.mode == "nightly":
        from benchmarks.nightly import format_nightly, run_nightly

        if args.source != "demo":
            raise SystemExit("--mode nightly runs on the demo store (the merge reads raw JSON): drop --source")
        nightly = [run_nightly(n, args.threads or default_threads(), args.memory_limit or default_memory_limit(),
                               keep_dir=args.keep_dir / str(n) if args.keep_dir else None)
                   for n in args.customers]
        print(json.dumps(nightly if len(nightly) > 1 else nightly[0], indent=2) if args.json
              else "\n".join(format_nightly(r) for r in nightly))
        return 0
    runs = [
        run_bench(n, args.json, source=args.source, threads=args.threads,
                  memory_limit=args.memory_limit, repeats=args.repeats)
        for n in args.customers
    ]
    if args.json:
        print(json.dumps(runs if len(runs) > 1 else runs[0], indent=2))
    else:
        print(format_report(runs))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench ARGS=...", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
