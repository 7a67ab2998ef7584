"""Libraries a run will need in a late step, loaded in the background while its first steps run.

A scheduled run starts in a fresh process (Dagster's run launcher starts one per run, and the
platform's jobs execute in it). The drift step is one of the last and the only user of Evidently,
whose import and first report (Plotly loads a module per figure property it validates) cost
about 5 s of a 1M-customer nightly, most of it reading `.pyc` files the page cache has dropped.
Reading files and DuckDB's SQL both release the GIL, so that cost overlaps with the staging,
feature and mart steps if it starts when the run does.

A step that needs such a library registers a warm-up for its step key, the op's name
(`register`); the storage resource, which every run sets up once at its start, calls
`start_for_run` with the keys of the steps the run executes, and only their warm-ups start. A warm-up is an
optimisation only: it runs in a daemon thread, once per process, and a failure is logged and
otherwise ignored (the step imports what it needs itself, as before). Python's import lock makes
a step that reaches the same import wait for the warm-up rather than import twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_warmups: dict[str, tuple[frozenset, Callable[[], None]]] = {}
_threads: dict[str, threading.Thread] = {}


def register(name: str, step_keys: Iterable[str], warm: Callable[[], None]) -> None:
    """Warm `name` (a library) with `warm` in runs that execute any of `step_keys`."""
    with _lock:
        _warmups[name] = (frozenset(step_keys), warm)


def _run(name: str, warm: Callable[[], None]) -> None:
    try:
        warm()
    except Exception:  # noqa: BLE001 - an optimisation must never fail a run
        _log.warning("warming %s in the background failed; the step will load it itself", name, exc_info=True)


def start_for_run(selected: Iterable[str] | None) -> list[str]:
    """Start the warm-ups of the steps in `selected` (the step keys a run executes); the names
    started. `None` (steps not known) starts nothing. A warm-up already started in this process
    is not started again."""
    if selected is None:
        return []
    selected = frozenset(selected)
    started = []
    with _lock:
        for name, (keys, warm) in _warmups.items():
            if name in _threads or not keys & selected:
                continue
            thread = threading.Thread(target=_run, args=(name, warm), name=f"warm-{name}", daemon=True)
            _threads[name] = thread
            thread.start()
            started.append(name)
    return started


def wait(name: str, timeout: float | None = None) -> bool:
    """Wait for the warm-up `name` if it was started; True when it is not (or no longer) running."""
    thread = _threads.get(name)
    if thread is None:
        return True
    thread.join(timeout)
    return not thread.is_alive()
