"""Fixtures for the live-connector tests: a fake clock, the fake API server, the resources.

The fake clock (fake_clock.py) replaces `http.sleep`/`http.clock`, and the fake server's cost
bucket reads the same clock, so throttling and pacing are exercised for real without waiting.
"""

from __future__ import annotations

import logging
import traceback

import pytest

from clv_platform.resources.klaviyo import KlaviyoResource
from clv_platform.resources.shopify import ShopifyResource
from clv_platform_tests.fake_clock import FAST, FakeClock, install_fake_clock
from clv_platform_tests.fake_api import FakeApi, make_order_nodes, make_profiles


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    return install_fake_clock(monkeypatch)


@pytest.fixture(scope="session")
def order_nodes() -> list[dict]:
    return make_order_nodes(60, big_order_lines=75)


@pytest.fixture(scope="session")
def profile_objects() -> list[dict]:
    return make_profiles(350)


@pytest.fixture
def fake(clock, order_nodes, profile_objects):
    with FakeApi(order_nodes, profile_objects, clock=clock.now) as server:
        yield server


@pytest.fixture
def log(caplog) -> logging.Logger:
    """The logger handed to the connectors; caplog sees it and every library logger at DEBUG."""
    caplog.set_level(logging.DEBUG)
    return logging.getLogger("clv_platform_tests.connectors")


@pytest.fixture
def shopify(fake) -> ShopifyResource:
    return ShopifyResource(
        shop_domain=fake.base_url,
        access_token=fake.shopify_token,
        page_size=6,
        bulk_poll_interval_seconds=2.0,
        bulk_busy_wait_seconds=5.0,
        **FAST,
    )


@pytest.fixture
def klaviyo(fake) -> KlaviyoResource:
    return KlaviyoResource(api_key=fake.klaviyo_key, base_url=fake.base_url, page_size=25, **FAST)


@pytest.fixture
def fast() -> dict:
    """Timeout and retry settings that keep fault tests fast."""
    return dict(FAST)


@pytest.fixture
def assert_secret_absent(caplog):
    """Check that a secret appears in no log record and nowhere in an exception chain's text."""

    def check(secret: str, exc: BaseException | None = None) -> None:
        text = caplog.text + "".join(r.getMessage() for r in caplog.records)
        if exc is not None:
            text += "".join(traceback.format_exception(exc)) + repr(exc)
        assert secret not in text

    return check
