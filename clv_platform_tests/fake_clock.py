"""The connector tests' fake clock and fast retry settings, shared by resources/ and activation/.

The fake clock replaces `http.sleep`/`http.clock` (and the fake server's cost bucket reads it),
so backoff, throttling and polling are exercised for real without waiting.
"""

from __future__ import annotations

import pytest

from clv_platform.resources import http

FAST = {
    "connect_timeout_seconds": 2.0,
    "timeout_seconds": 2.0,  # generous: a loaded CI machine must not turn a normal reply into a timeout
    "max_retries": 4,
    "backoff_base_seconds": 0.01,
    "backoff_max_seconds": 0.05,
}


class FakeClock:
    """Monotonic time that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.t = 1_000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def install_fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A FakeClock that `http` sleeps on and reads the time from, for one test."""
    fake_clock = FakeClock()
    monkeypatch.setattr(http, "sleep", fake_clock.sleep)
    monkeypatch.setattr(http, "clock", fake_clock.now)
    return fake_clock
