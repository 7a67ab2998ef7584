"""Shared fixtures: every test gets its own DuckDB file and data folders under tmp_path."""

import copy
import hashlib

import numpy as np
import pytest

from clv_platform.models import btyd
from clv_platform.settings import clear_forced_environment
from clv_platform_tests import demo_cache


@pytest.fixture(autouse=True)
def _no_forced_environment():
    """`clv-platform demo`/`files` force the source for their process; a test's run must not leak it."""
    clear_forced_environment()
    yield
    clear_forced_environment()


@pytest.fixture
def data_env(tmp_path, monkeypatch):
    """Point the platform's paths at tmp_path and make sure no live credentials leak in."""
    for var in ("SHOPIFY_ACCESS_TOKEN", "SHOPIFY_CLIENT_ID", "SHOPIFY_CLIENT_SECRET", "SHOPIFY_SHOP_DOMAIN",
                "KLAVIYO_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("CLV_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CLV_INBOX_DIR", str(inbox))
    monkeypatch.setenv("CLV_DUCKDB_PATH", str(tmp_path / "clv.duckdb"))
    monkeypatch.setenv("CLV_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("CLV_SOURCE", raising=False)
    # paths derived from the data folder unless set: a developer's (or make's) values must not leak in
    for var in ("CLV_REPORTS_DIR", "CLV_REPORTS_URL", "CLV_REPORT_RETENTION", "CLV_ANALYTICS_PATH", "CLV_EXPORT_DIR"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture(autouse=True, scope="session")
def _demo_store_cache(tmp_path_factory, request):
    """The folder demo_cache.py builds each demo store into once; shared by the xdist workers.

    A worker's base temp is a child of the run's one (pytest-of-<user>/pytest-N/gw0), so the
    parent is the run's folder: every worker of this run sees the same cache, the next run a new one.
    """
    base = tmp_path_factory.getbasetemp()
    root = base.parent if hasattr(request.config, "workerinput") else base
    folder = root / "demo_store_cache"
    folder.mkdir(exist_ok=True)
    demo_cache.CACHE_DIR = folder
    yield folder
    demo_cache.CACHE_DIR = None


@pytest.fixture(autouse=True, scope="session")
def _pareto_fits_once_per_input():
    """Fit each distinct Pareto/NBD input once per test session.

    The Pareto/NBD fit (lifetimes' Nelder-Mead from fixed starts, deterministic) is most of the
    suite's CPU time, and many tests train on the same store and windows. Identical inputs
    (counts, recencies, ages, weights, penalizer) give the identical fitter, so a repeat is
    answered with a deep copy of the first fit: callers may mutate what they get (a test plants
    a degenerate parameter) without touching the stored one. Tests that replace
    ``btyd._fit_transactions`` themselves still see every call, and BG/NBD-family fits (fast,
    gradient-based) always run.
    """
    real = getattr(btyd, "_fit_transactions", None)
    if real is None:  # renamed upstream: no sharing, tests just run slower
        yield
        return
    fits: dict[str, object] = {}

    def fit_once(frequency, recency, T, weights, model, penalizer, pareto_start=None):
        if model != btyd.PARETO_NBD:
            return real(frequency, recency, T, weights, model, penalizer)
        # a warm start (btyd.fit_btyd's pareto_start) is part of the input: it may end elsewhere
        digest = hashlib.sha256(f"{model}|{float(penalizer)!r}|{weights is None}|{sorted((pareto_start or {}).items())}".encode())
        for values in (frequency, recency, T, weights):
            if values is not None:
                digest.update(np.ascontiguousarray(np.asarray(values, dtype=float)).tobytes())
                digest.update(b"|")
        key = digest.hexdigest()
        if key not in fits:
            fits[key] = real(frequency, recency, T, weights, model, penalizer, pareto_start=pareto_start)
        return copy.deepcopy(fits[key])

    mp = pytest.MonkeyPatch()
    mp.setattr(btyd, "_fit_transactions", fit_once)
    yield
    mp.undo()


# The slowest files first. `make test` hands whole files to its workers in collection order
# (`--no-loadscope-reorder`: xdist's default orders files by test count, which put these few-test
# files near the end), so these (each materializes the whole graph or trains on a store for
# minutes; most other files take seconds, see `--durations`) start at once on separate workers
# instead of last on one.
SLOWEST_FIRST = ("test_definitions.py", "test_files_only.py", "models/test_backtest_cli.py", "models/test_clv.py")


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        path = item.path.as_posix()
        return next((i for i, name in enumerate(SLOWEST_FIRST) if path.endswith(f"clv_platform_tests/{name}")),
                    len(SLOWEST_FIRST))

    items.sort(key=rank)  # stable: every other test keeps its place
