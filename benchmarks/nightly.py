"""Nightly mode of the bench: what the nightly schedule costs next to a full refresh.

`make bench ARGS="--customers N --mode nightly"` builds a demo store of N customers, runs the
full refresh (staging rebuilt from all of raw, features, model training, scoring, monitoring,
marts, activation plan: the real Dagster assets, one timing per asset), then appends one day of
news to raw with `append_day` (new orders of existing and new customers, about 0.3 % of the
history; refunds, cancellations and discount edits of old orders; Klaviyo profile updates and
new profiles) and runs the nightly selection (the same assets without model training, staging
merged) on it. Both runs report the wall time of each asset and the peak RSS of the whole run;
each runs in a process of its own, as the schedule's runs do.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

NEW_ORDER_ID_BASE = 9_100_000_000_000
NEW_CUSTOMER_ID_BASE = 9_200_000_000_000


@dataclass
class DayAppended:
    """What `append_day` wrote to raw (the expected shape of one day of news)."""

    day: str
    history_orders: int
    new_orders: int
    new_customers: int
    refunds: int
    cancellations: int
    edits: int
    profile_updates: int
    new_profiles: int

    @property
    def order_rows(self) -> int:
        return self.new_orders + self.refunds + self.cancellations + self.edits

    @property
    def profile_rows(self) -> int:
        return self.profile_updates + self.new_profiles


def _payloads(sample_sql: str, table: str, key: str) -> str:
    """The sampled newest versions (``key, _rowid`` of ``table``) with their raw payload and source."""
    return (f"select s.{key}, r.payload, r.source from ({sample_sql}) s "
            f"join (select rowid as _rowid, payload, source from {table}) r using (_rowid)")


def _numbered_orders(sample_sql: str) -> str:
    """The sampled orders' newest payloads, numbered 1..n by order id."""
    return (f"select *, row_number() over (order by order_id) as i "
            f"from ({_payloads(sample_sql, 'raw.shopify_orders', 'order_id')})")


def append_day(conn: duckdb.DuckDBPyConnection, fraction: float = 0.003, seed: float = 0.21) -> DayAppended:
    """Append one day of news to raw after the newest order version, shaped like the demo store's.

    New orders copy sampled existing payloads under new ids (no refunds, not cancelled, placed on
    the new day); one in ten goes to a new customer (new Shopify id and e-mail, with a new Klaviyo
    profile). Old orders get new versions: an amount-only refund of 30 % (a fifth as many as new
    orders), a cancellation (a twentieth) and a discount edit (a twentieth). As many profiles as
    new orders get an update (a new city and `updated` time).
    """
    conn.execute("select setseed(?)", [seed])
    history, day = conn.execute(
        "select count(distinct order_id), max(updated_at)::date + 1 from raw.shopify_orders"
    ).fetchone()
    # days appended before (a --repeat --advance-day run, a profiled store): tonight's new orders,
    # customers, e-mails and profiles are numbered after theirs, so a second day is news and not
    # new versions of the first day's orders under other customers' e-mails
    serial = int(conn.execute(
        "select count(distinct order_id) from raw.shopify_orders "
        "where try_cast(regexp_extract(order_id, '/(\\d+)$', 1) as hugeint) > ?", [NEW_ORDER_ID_BASE]).fetchone()[0])
    n_new = max(1, math.ceil(history * fraction))
    n_refund, n_cancel, n_edit = max(1, n_new // 5), max(1, n_new // 20), max(1, n_new // 20)
    n_new_customers = max(1, n_new // 10)
    at = datetime(day.year, day.month, day.day, 15)  # mid-afternoon UTC: the same day in the shop's zone
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    ingested = datetime.now().replace(microsecond=0)
    # the newest version of each order, the population the day's news is drawn from: its rowid and
    # the flags the samples need, not its payload (a copy of every payload spilled to temp files at
    # 3M customers until the disk, 56 GB free, was full); the sampled rows' payloads are read after
    conn.execute("""
        create or replace temp table _latest as
        select order_id, _rowid, copyable, untouched
        from (select order_id, rowid as _rowid, updated_at, ingested_at,
                     coalesce(payload ->> '$.test', 'false') <> 'true' as copyable,
                     payload ->> '$.cancelledAt' is null
                         and json_array_length(coalesce(payload -> '$.refunds', '[]')) = 0 as untouched
              from raw.shopify_orders)
        qualify row_number() over (partition by order_id order by updated_at desc, ingested_at desc) = 1
    """)
    # samples by a seeded hash order, not DuckDB's reservoir sample: a seeded SAMPLE repeats only
    # single-threaded, and the day must be the same on every run (and test orders are never copied)
    picked = f"select order_id, _rowid from _latest where copyable order by hash(order_id || '#7') limit {n_new}"
    conn.execute(f"create or replace temp table _picked as {_numbered_orders(picked)}")
    conn.execute(
        """
        insert into raw.shopify_orders
        select
            'gid://shopify/Order/' || ($base + $serial + i) as order_id,
            $at as updated_at, $at::date as partition_date,
            json_merge_patch(
                json_merge_patch(payload, json_object(
                    'id', 'gid://shopify/Order/' || ($base + $serial + i), 'name', '#N' || ($serial + i),
                    'createdAt', $stamp, 'processedAt', $stamp, 'updatedAt', $stamp,
                    'cancelledAt', null, 'refunds', [], 'displayFinancialStatus', 'PAID')),
                case when i <= $n_new_customers then json_object(
                    'email', 'nightly-' || ($serial + i) || '@example.com',
                    'customer', json_object('id', 'gid://shopify/Customer/' || ($customer_base + $serial + i),
                                            'email', 'nightly-' || ($serial + i) || '@example.com'))
                else '{}'::json end) as payload,
            source, $ingested as ingested_at
        from _picked
        """,
        {"base": NEW_ORDER_ID_BASE, "customer_base": NEW_CUSTOMER_ID_BASE, "serial": serial, "at": at, "stamp": stamp,
         "n_new_customers": n_new_customers, "ingested": ingested},
    )
    # old orders: a refund, a cancellation or a discount edit each (disjoint samples of paid orders)
    old = (f"select order_id, _rowid from _latest where untouched and copyable "
           f"order by hash(order_id || '#11') limit {n_refund + n_cancel + n_edit}")
    conn.execute(f"create or replace temp table _old as {_numbered_orders(old)}")
    conn.execute(
        """
        insert into raw.shopify_orders
        select
            order_id, $at, $at::date,
            json_merge_patch(payload, case
                when i <= $n_refund then json_object(
                    'updatedAt', $stamp, 'displayFinancialStatus', 'PARTIALLY_REFUNDED',
                    'refunds', [json_object(
                        'id', 'gid://shopify/Refund/' || ($base + $serial + i), 'createdAt', $stamp,
                        'totalRefundedSet', json_object('shopMoney', json_object(
                            'amount', round(try_cast(payload ->> '$.totalPriceSet.shopMoney.amount' as double) * 0.3, 2)::varchar,
                            'currencyCode', payload ->> '$.totalPriceSet.shopMoney.currencyCode')),
                        'refundLineItems', json_object('nodes', []))])
                when i <= $n_refund + $n_cancel then json_object(
                    'updatedAt', $stamp, 'cancelledAt', $stamp, 'displayFinancialStatus', 'VOIDED')
                else json_object(
                    'updatedAt', $stamp,
                    'totalDiscountsSet', json_object('shopMoney', json_object(
                        'amount', (coalesce(try_cast(payload ->> '$.totalDiscountsSet.shopMoney.amount' as double), 0)
                                   + 1)::decimal(18, 2)::varchar,
                        'currencyCode', payload ->> '$.totalPriceSet.shopMoney.currencyCode')))
            end),
            source, $ingested
        from _old
        """,
        {"at": at, "stamp": stamp, "n_refund": n_refund, "n_cancel": n_cancel, "base": NEW_ORDER_ID_BASE,
         "serial": serial,
         "ingested": ingested},
    )
    edits = conn.execute("select count(*) from _old").fetchone()[0] - n_refund - n_cancel
    # profiles: updates of existing ones, and one new profile per new customer
    conn.execute("""
        create or replace temp table _profiles as
        select profile_id, _rowid
        from (select profile_id, rowid as _rowid, updated_at, ingested_at from raw.klaviyo_profiles)
        qualify row_number() over (partition by profile_id order by updated_at desc, ingested_at desc) = 1
    """)
    n_profiles = int(conn.execute("select count(*) from _profiles").fetchone()[0])
    if n_profiles:
        stamp_tz = at.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        updated = _payloads(
            f"select * from _profiles order by hash(profile_id || '#13') limit {min(n_new, n_profiles)}",
            "raw.klaviyo_profiles", "profile_id")
        copied = _payloads("select * from _profiles order by profile_id limit $n", "raw.klaviyo_profiles", "profile_id")
        conn.execute(
            f"""
            insert into raw.klaviyo_profiles
            select profile_id, $at,
                   json_merge_patch(payload, json_object('attributes', json_object(
                       'updated', $stamp, 'location', json_object('city', 'Nightly City')))),
                   source, $ingested
            from ({updated})
            """,
            {"at": at, "stamp": stamp_tz, "ingested": ingested},
        )
        conn.execute(
            f"""
            insert into raw.klaviyo_profiles
            select 'NIGHTLY' || ($serial + i), $at,
                   json_merge_patch(payload, json_object('id', 'NIGHTLY' || ($serial + i), 'attributes', json_object(
                       'email', 'nightly-' || ($serial + i) || '@example.com', 'external_id', null,
                       'created', $stamp, 'updated', $stamp))),
                   source, $ingested
            from (select *, row_number() over (order by profile_id) as i
                  from ({copied}))
            """,
            {"at": at, "stamp": stamp_tz, "ingested": ingested, "n": n_new_customers, "serial": serial},
        )
    for temp in ("_latest", "_picked", "_old", "_profiles"):
        conn.execute(f"drop table if exists temp.{temp}")
    return DayAppended(
        day=day.isoformat(), history_orders=int(history), new_orders=n_new, new_customers=n_new_customers,
        refunds=n_refund, cancellations=n_cancel, edits=int(edits),
        profile_updates=min(n_new, n_profiles), new_profiles=n_new_customers if n_profiles else 0,
    )


@dataclass
class RunTiming:
    """One Dagster run of the bench: total wall time, peak RSS and each asset step's time."""

    name: str
    seconds: float
    peak_rss_mb: float | None
    steps: dict[str, float] = field(default_factory=dict)
    step_peak_rss_mb: dict[str, float] = field(default_factory=dict)
    """Per step: the highest RSS sampled while it ran (every `RSS_SAMPLE_SECONDS`; the run's
    peak_rss_mb is the exact VmHWM): which step sets the peak."""
    step_cpu_seconds: dict[str, float] = field(default_factory=dict)
    """Per step: CPU seconds of the process (DuckDB's threads included) while it ran, a figure
    that does not grow when other jobs share the cores (wall times do)."""
    staging_mode: str | None = None
    merged: dict[str, int] = field(default_factory=dict)
    interval_keys: dict[str, int] = field(default_factory=dict)
    """ml/btyd_scores' interval keys: total, reused from the interval cache, drawn in this run."""
    fits: dict[str, str] = field(default_factory=dict)  # asset -> "reused" / "refitted" (stored_fits)
    process_start_seconds: float | None = None
    """From launching the run's process to the run's start (interpreter, imports, definitions,
    connection): the run worker's start, outside the run's seconds."""


@dataclass
class NightlyResult:
    customers: int
    threads: int
    memory_limit: str
    orders: int = 0
    setup_seconds: float = 0.0
    full: RunTiming | None = None
    appended: dict[str, Any] = field(default_factory=dict)
    append_seconds: float = 0.0
    nightly: RunTiming | None = None
    nightly_over_full: float | None = None
    staging_merged_keys: dict[str, int] = field(default_factory=dict)


def _dagster_run(conn, workdir: Path, name: str, selection, run_config: dict | None,
                 memory_limit: str | None = None) -> RunTiming:
    """Materialize `selection` of the real assets on the bench's connection; time every step.

    With `memory_limit` (the connection's), each step's connection releases DuckDB's block cache
    when it closes, as the platform's own connections do (`bench.release_buffer_cache`)."""
    import dagster as dg

    from benchmarks import bench
    from clv_platform.definitions import ASSET_CHECKS, ASSETS, source_resources
    from clv_platform.settings import using_settings

    key = str(workdir / "bench.duckdb")
    settings = bench.bench_settings(workdir, Path(key))
    bench._SHARED_CONNECTIONS[key] = conn
    if memory_limit:
        bench._SHARED_MEMORY_LIMITS[key] = memory_limit
        bench.release_buffer_cache(conn, memory_limit)  # the set-up's blocks (writing raw)
    bench._release_freed_memory()
    can_reset = bench._reset_peak_rss()
    instance = dg.DagsterInstance.ephemeral()
    sampler = _RssSampler()
    started = time.perf_counter()
    sampler.start()
    try:
        with using_settings(settings):
            result = dg.materialize(
                [*ASSETS, *ASSET_CHECKS],  # a scheduled job runs the selected assets' checks too
                selection=selection,
                resources={"duckdb": bench._SharedDuckDB.from_settings(settings), **source_resources(settings),
                           "activation": _activation()},
                run_config=run_config,
                instance=instance,
            )
    finally:
        sampler.stop()
        bench._SHARED_CONNECTIONS.pop(key, None)
        bench._SHARED_MEMORY_LIMITS.pop(key, None)
    seconds = time.perf_counter() - started
    timing = RunTiming(name, seconds, bench._peak_rss_mb() if can_reset else None)
    for event in result.get_step_success_events():
        timing.steps[event.step_key.replace("__", "/")] = event.event_specific_data.duration_ms / 1000
    for step, (begin, end) in _step_windows(instance, result.run_id).items():
        peak, cpu = sampler.during(begin, end)
        if peak is not None:
            timing.step_peak_rss_mb[step.replace("__", "/")] = peak
        if cpu is not None:
            timing.step_cpu_seconds[step.replace("__", "/")] = cpu
    for event in result.get_asset_materialization_events():
        meta = event.materialization.metadata
        if "fit" in meta:
            timing.fits[event.asset_key.to_user_string()] = meta["fit"].value
        if "interval_keys" in meta:
            timing.interval_keys = {k: meta[k].value for k in ("interval_keys", "interval_keys_reused",
                                                              "interval_keys_drawn") if k in meta}
    for mat in result.asset_materializations_for_node("staging_tables"):
        if tuple(mat.asset_key.path) == ("staging", "orders"):
            timing.staging_mode = mat.metadata["build_mode"].value
            merged = mat.metadata.get("merged_keys")
            timing.merged = merged.value if merged is not None else {}
    return timing


RSS_SAMPLE_SECONDS = 0.2


class _RssSampler:
    """Samples (time, RSS, process CPU seconds) in a background thread while a run executes."""

    def __init__(self, every: float = RSS_SAMPLE_SECONDS) -> None:
        import threading

        self.every = every
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss-sampler", daemon=True)

    def _sample(self) -> None:
        from benchmarks import bench

        rss = bench._read_status_kb("VmRSS")
        self.samples.append((time.time(), (rss or 0) / 1024, time.process_time()))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def during(self, begin: float, end: float) -> tuple[float | None, float | None]:
        """Highest RSS sampled in [begin, end] and the CPU seconds between the samples around it."""
        inside = [s for s in self.samples if begin <= s[0] <= end]
        before = [s for s in self.samples if s[0] <= begin]
        after = [s for s in self.samples if s[0] >= end]
        peak = max((s[1] for s in inside), default=None)
        cpu = after[0][2] - before[-1][2] if before and after else None
        return peak, cpu


def _step_windows(instance, run_id: str) -> dict[str, tuple[float, float]]:
    """(start, end) wall-clock times of each step of a run, from its event log."""
    import dagster as dg

    starts: dict[str, float] = {}
    windows: dict[str, tuple[float, float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS and event.step_key in starts:
            windows[event.step_key] = (starts[event.step_key], entry.timestamp)
    return windows


def _activation():
    from clv_platform.activation.settings import activation_resource

    return activation_resource()


def run_nightly(customers: int, threads: int, memory_limit: str, keep_dir: Path | None = None) -> dict:
    """Full refresh, then one appended day and the nightly run, on a demo store of `customers`.

    Each Dagster run executes in a process of its own (`_run_in_own_process`), as the schedule's
    runs do: Dagster's run launcher starts one process per run, and the platform's jobs execute
    in it (`in_process_executor`). The nightly therefore does not start with what the full
    refresh left behind in the bench's process (the generator's and the training's heap, DuckDB's
    state after writing the whole store), which made it cost about a third more CPU than the
    same nightly in a fresh process.

    With `keep_dir`, the store as it stands before the nightly run (full refresh done, day
    appended) is copied there as `before_nightly.duckdb`, with the run's data folder, so the
    nightly can be profiled again and again on the same data (`benchmarks/nightly_profile.py`).
    """
    from clv_platform.ingestion.demo_store import DemoStoreParams, generate

    result = NightlyResult(customers=customers, threads=threads, memory_limit=memory_limit)
    with tempfile.TemporaryDirectory(prefix="clv-bench-nightly-") as tmp:
        workdir = Path(tmp)
        conn = _open(workdir, threads, memory_limit)
        try:
            started = time.perf_counter()
            generate(DemoStoreParams(n_customers=customers)).write_raw_tables(
                conn, datetime.now().replace(microsecond=0))
            result.setup_seconds = time.perf_counter() - started
        finally:
            conn.close()
        result.full = _run_in_own_process(workdir, "full", threads, memory_limit)
        conn = _open(workdir, threads, memory_limit)
        try:
            result.orders = int(conn.execute("select count(*) from staging.orders").fetchone()[0])
            started = time.perf_counter()
            result.appended = asdict(append_day(conn))
            result.append_seconds = time.perf_counter() - started
            if keep_dir is not None:
                _keep(conn, workdir, Path(keep_dir))
        finally:
            conn.close()
        result.nightly = _run_in_own_process(workdir, "nightly", threads, memory_limit)
        result.staging_merged_keys = result.nightly.merged
        result.nightly_over_full = result.nightly.seconds / result.full.seconds
    from benchmarks import bench

    return bench._jsonable(asdict(result))


RUNS = ("full", "nightly")
"""The bench's two Dagster runs: the full refresh (staging rebuilt from all of raw, models trained)
and the nightly selection (staging merged, the registered models, no training)."""


def run_selection(run: str):
    """(asset selection, run config) of one of `RUNS`: everything from staging down, staging
    rebuilt from all of raw for the full refresh; without model training for the nightly."""
    import dagster as dg

    from clv_platform.automation.jobs import MODEL_TRAINING

    from_staging = dg.AssetSelection.groups("staging").downstream()
    if run == "full":
        return from_staging, {"ops": {"staging_tables": {"config": {"full_rebuild": True}}}}
    return from_staging - MODEL_TRAINING, None


def _open(workdir: Path, threads: int, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """The bench's connection to `workdir/bench.duckdb`, with its threads and memory limit."""
    conn = duckdb.connect(str(workdir / "bench.duckdb"))
    conn.execute(f"set threads = {int(threads)}")
    conn.execute("set memory_limit = ?", [memory_limit])
    conn.execute("set preserve_insertion_order = false")
    conn.execute("set enable_progress_bar = false")
    return conn


def _run_in_own_process(workdir: Path, run: str, threads: int, memory_limit: str) -> RunTiming:
    """Run `run` (one of `RUNS`) on the store in `workdir` in a new Python process; its timing.

    The child's output goes to this process's stderr, so `--json` stays clean on stdout. The
    child's start (interpreter, Dagster and the platform imported, definitions loaded) is the
    run worker's start, before a Dagster run begins: it is reported as `process_start_seconds`,
    not counted in the run's seconds."""
    import json
    import subprocess
    import sys

    out = workdir / f"{run}.timing.json"
    started = time.time()
    subprocess.run([sys.executable, "-m", "benchmarks.nightly", "--run", run, "--workdir", str(workdir),
                    "--threads", str(threads), "--memory-limit", memory_limit, "--out", str(out),
                    "--launched-at", repr(started)],
                   check=True, stdout=sys.stderr)
    return RunTiming(**json.loads(out.read_text()))


def _child_main(argv: list[str] | None = None) -> int:
    """The child process of `_run_in_own_process`: one run on the store, its timing to `--out`.

    The run ends by closing the connection, which checkpoints what the write-ahead log still
    holds (a platform step's own connection closes the same way when the step ends), so that
    write is timed as `close (checkpoint)` and counted in the run's seconds."""
    import argparse
    import json

    from clv_platform.definitions import ASSETS  # noqa: F401  (loaded before the run, as a run worker does)

    parser = argparse.ArgumentParser(description="one bench run in its own process")
    parser.add_argument("--run", choices=RUNS, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--memory-limit", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--launched-at", type=float, required=True)
    args = parser.parse_args(argv)

    selection, run_config = run_selection(args.run)
    conn = _open(args.workdir, args.threads, args.memory_limit)
    process_start = time.time() - args.launched_at
    try:
        timing = _dagster_run(conn, args.workdir, args.run, selection, run_config, args.memory_limit)
    finally:
        closing = time.perf_counter()
        conn.close()
    timing.steps["close (checkpoint)"] = time.perf_counter() - closing
    timing.seconds += timing.steps["close (checkpoint)"]
    timing.process_start_seconds = process_start
    args.out.write_text(json.dumps(asdict(timing)))
    return 0


def _keep(conn, workdir: Path, keep_dir: Path) -> None:
    """Copy the checkpointed store and its data folder (stored reports, registry files) to `keep_dir`."""
    import shutil

    conn.execute("checkpoint")
    keep_dir.mkdir(parents=True, exist_ok=True)
    for item in workdir.iterdir():
        target = keep_dir / ("before_nightly.duckdb" if item.name == "bench.duckdb" else item.name)
        if item.name.startswith("bench.duckdb."):
            continue  # the WAL is empty after the checkpoint
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)


def format_nightly(r: dict) -> str:
    full, nightly = r["full"], r["nightly"]
    out = [
        f"\n== nightly vs full refresh, {r['customers']:,} customers ({r['orders']:,} orders); "
        f"threads={r['threads']} memory_limit={r['memory_limit']}",
        f"  set-up (demo store → raw): {r['setup_seconds']:.1f} s; appended day {r['appended']['day']}: "
        f"{r['appended']['new_orders']:,} new orders ({r['appended']['new_customers']:,} new customers), "
        f"{r['appended']['refunds']:,} refunds, {r['appended']['cancellations']:,} cancellations, "
        f"{r['appended']['edits']:,} edits of old orders, {r['appended']['profile_updates']:,} profile updates, "
        f"{r['appended']['new_profiles']:,} new profiles ({r['append_seconds']:.1f} s)",
        f"  {'asset':<44}{'full s':>10}{'nightly s':>12}",
    ]
    for step in sorted(set(full["steps"]) | set(nightly["steps"]), key=lambda s: list(full["steps"]).index(s)
                       if s in full["steps"] else 10 ** 6):
        f_s, n_s = full["steps"].get(step), nightly["steps"].get(step)
        out.append(f"  {step:<44}{'-' if f_s is None else f'{f_s:.1f}':>10}{'-' if n_s is None else f'{n_s:.1f}':>12}")
    peak = lambda t: "-" if t["peak_rss_mb"] is None else f"{t['peak_rss_mb']:,.0f} MB"  # noqa: E731
    out.append(f"  {'total (staging ' + str(full['staging_mode']) + ' / ' + str(nightly['staging_mode']) + ')':<44}"
               f"{full['seconds']:>10.1f}{nightly['seconds']:>12.1f}")
    out.append(f"  peak RSS: full {peak(full)}, nightly {peak(nightly)}; nightly / full = {r['nightly_over_full']:.3f}")
    starts = [f"{run} {r[run]['process_start_seconds']:.1f} s" for run in ("full", "nightly")
              if r[run].get("process_start_seconds") is not None]
    if starts:
        out.append("  each run's own process started in (imports, outside the run's seconds): " + ", ".join(starts))
    for run in ("full", "nightly"):
        if r[run].get("fits"):
            out.append(f"  stored fits, {run}: " + ", ".join(f"{k} {v}" for k, v in r[run]["fits"].items()))
    if r.get("staging_merged_keys"):
        out.append(f"  staging merge touched: {r['staging_merged_keys']}")
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    sys.exit(_child_main())
