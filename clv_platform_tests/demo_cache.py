"""One materialized demo store per size for the whole test session, shared by test modules.

Several modules need the same small demo DuckDB (raw tables written as of 2026-11-01, staging
built, optionally the point-in-time features at the scoring cutoff). Building it is the same
work each time, so the first module to ask builds it into a session cache and every caller
gets its own copy of the file: a test that writes to its database never touches what the next
module reads. Under `make test` (pytest-xdist) the cache folder is shared by the workers and a
file lock makes one worker build while the other waits for it.

`CACHE_DIR` is set by the session fixture in conftest.py; outside a pytest session the helpers
build into the target directly.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from datetime import datetime
from pathlib import Path

import duckdb

from clv_platform.ingestion.demo_store import DemoStoreParams, generate
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform.transforms.features import materialize_features
from clv_platform.transforms.staging import build_staging

RAW_WRITTEN_AT = datetime(2026, 11, 1)
CACHE_DIR: Path | None = None


def _build(path: Path, n_customers: int, seed: int, features: bool) -> None:
    store = generate(DemoStoreParams(n_customers=n_customers, seed=seed))
    with duckdb.connect(str(path)) as conn:
        store.write_raw_tables(conn, RAW_WRITTEN_AT)
        build_staging(conn)
        if features:
            materialize_features(conn, scoring_cutoff(conn))
        conn.execute("checkpoint")  # the file alone holds everything: it is copied without a WAL


def demo_database(target: Path, n_customers: int, seed: int = 42, *, features: bool = False) -> Path:
    """Write a demo store's DuckDB (raw + staging, plus features when asked) to `target`.

    The store is generated and built once per session for each (size, seed, features, CLV_AS_OF)
    and copied from there; `target` is the caller's own file to read and write.
    """
    target = Path(target)
    if CACHE_DIR is None:
        _build(target, n_customers, seed, features)
        return target
    # the features' cutoff follows CLV_AS_OF, so a store built under another as-of is another entry
    as_of = os.environ.get("CLV_AS_OF", "").strip() or "today"
    name = f"demo-{n_customers}-{seed}-{'features' if features else 'staging'}-{as_of}"
    cached = CACHE_DIR / f"{name}.duckdb"
    with open(CACHE_DIR / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not cached.exists():
            building = CACHE_DIR / f"{name}.{os.getpid()}.building"
            _build(building, n_customers, seed, features)
            os.replace(building, cached)
    shutil.copyfile(cached, target)
    return target
