"""KlaviyoResource against the fake Klaviyo over real HTTP: paging, faults, predictive fallback, auth.

Every fault test requires exactly the source profiles (count + sha256 of canonical JSON),
with no duplicates.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from clv_platform.resources.http import (
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RetriesExhaustedError,
)
from clv_platform.resources.klaviyo import KlaviyoResource, without_predictive
from clv_platform_tests.fake_api import KLAVIYO, FakeApi, checksum


def _assert_exact(got: list[dict], expected: list[dict]) -> None:
    assert checksum(got) == checksum(expected)
    assert len({(p["id"], p["attributes"]["updated"]) for p in got}) == len(got)


def _without(profiles: list[dict], attribute: str) -> list[dict]:
    return [{**p, "attributes": {k: v for k, v in p["attributes"].items() if k != attribute}} for p in profiles]


def _copy(resource: KlaviyoResource, **changes) -> KlaviyoResource:
    return KlaviyoResource(**{**resource.model_dump(), **changes})


def test_profiles_match_source_across_many_pages(fake, klaviyo, profile_objects, log):
    got = list(klaviyo.iter_profiles(None, log))

    _assert_exact(got, profile_objects)
    updated = [p["attributes"]["updated"] for p in got]
    assert updated == sorted(updated, key=lambda u: datetime.fromisoformat(u))
    calls = fake.requests_for(KLAVIYO)
    assert len(calls) == -(-len(profile_objects) // 25) >= 10
    first = calls[0]
    assert first.headers["authorization"] == f"Klaviyo-API-Key {fake.klaviyo_key}"
    assert first.headers["revision"] == "2026-10-15"
    assert first.headers["accept"] == "application/vnd.api+json"
    assert first.query == {
        "page[size]": "25",
        "sort": "updated",
        "additional-fields[profile]": "subscriptions,predictive_analytics",
    }
    assert all("page[cursor]" in c.query for c in calls[1:])


def test_updated_after_filter(fake, klaviyo, profile_objects):
    cut = datetime(2024, 10, 1)

    got = list(klaviyo.iter_profiles(cut))

    expected = [p for p in profile_objects
                if datetime.fromisoformat(p["attributes"]["updated"]) > cut.replace(tzinfo=timezone.utc)]
    assert 0 < len(expected) < len(profile_objects)
    _assert_exact(got, expected)
    assert fake.requests_for(KLAVIYO)[0].query["filter"] == "greater-than(updated,2024-10-01T00:00:00Z)"


FAULTS = {
    "429 with Retry-After": dict(kind="status", at={2, 5}, status=429, retry_after=1),
    "500 twice": dict(kind="status", times=2, status=500),
    "502": dict(kind="status", at={3}, status=502),
    "503": dict(kind="status", at={4, 5}, status=503),
    "slower than the read timeout": dict(kind="slow", at={2}, delay=5.0),
    "truncated JSON body": dict(kind="truncated", at={2}),
    "body shorter than Content-Length": dict(kind="truncated", at={3}, mode="short_read"),
    "connection reset": dict(kind="reset", at={2, 6}),
    "record repeated on adjacent pages": dict(kind="duplicate", at={1, 2, 3, 7}),
    "predictive_analytics 503 once": dict(kind="predictive_503", at={3}),
}


@pytest.mark.parametrize("name", FAULTS)
def test_profiles_exact_under_fault(fake, klaviyo, profile_objects, clock, log, name):
    spec = dict(FAULTS[name])
    fault = fake.fault(KLAVIYO, spec.pop("kind"), **spec)

    got = list(klaviyo.iter_profiles(None, log))

    _assert_exact(got, profile_objects)
    assert fault.fired >= 1


def test_repeated_records_are_dropped(fake, klaviyo, profile_objects, log, caplog):
    fake.fault(KLAVIYO, "duplicate", at={1, 2, 3})

    _assert_exact(list(klaviyo.iter_profiles(None, log)), profile_objects)

    assert "3 repeated records dropped" in caplog.text


def test_retry_after_is_slept_and_capped(fake, klaviyo, profile_objects, clock):
    fake.fault(KLAVIYO, "status", at={2}, status=429, retry_after=1)
    fake.fault(KLAVIYO, "status", at={4}, status=429, retry_after=900)

    _assert_exact(list(_copy(klaviyo, retry_after_cap_seconds=4).iter_profiles(None)), profile_objects)

    assert 1 in clock.sleeps and 4 in clock.sleeps and 900 not in clock.sleeps


def test_retry_after_really_waits(profile_objects):
    """No fake clock here: the client must really pause for `Retry-After: 1`."""
    with FakeApi(profiles=profile_objects[:30]) as server:
        server.fault(KLAVIYO, "status", at={1}, status=429, retry_after=1)
        resource = KlaviyoResource(api_key=server.klaviyo_key, base_url=server.base_url, timeout_seconds=2)
        started = time.monotonic()
        got = list(resource.iter_profiles(None))
        elapsed = time.monotonic() - started
    _assert_exact(got, profile_objects[:30])
    assert 1.0 <= elapsed < 5.0


def test_predictive_analytics_failing_falls_back_without_losing_profiles(
    fake, klaviyo, profile_objects, clock, log, caplog
):
    fault = fake.fault(KLAVIYO, "predictive_503", times=None)

    got = list(klaviyo.iter_profiles(None, log))

    _assert_exact(got, _without(profile_objects, "predictive_analytics"))
    assert fault.fired == klaviyo.max_retries + 1
    assert "without predictive_analytics" in caplog.text
    later = fake.requests_for(KLAVIYO)[fault.fired:]
    assert later and all(c.query["additional-fields[profile]"] == "subscriptions" for c in later)


def test_predictive_analytics_failing_mid_sync_keeps_every_profile(fake, klaviyo, profile_objects, clock, log):
    fake.fault(KLAVIYO, "predictive_503", at=range(4, 100))

    got = list(klaviyo.iter_profiles(None, log))

    assert checksum({"id": p["id"]} for p in got) == checksum({"id": p["id"]} for p in profile_objects)
    with_predictions = [p for p in got if "predictive_analytics" in p["attributes"]]
    assert len(with_predictions) == 3 * 25
    calls = fake.requests_for(KLAVIYO)
    resumed = calls[3 + klaviyo.max_retries + 1]
    assert resumed.query["page[cursor]"] == calls[3].query["page[cursor]"]
    assert resumed.query["sort"] == "updated" and resumed.query["page[size]"] == "25"


def test_predictive_analytics_can_be_switched_off(fake, klaviyo, profile_objects):
    got = list(_copy(klaviyo, include_predictive_analytics=False).iter_profiles(None))

    _assert_exact(got, _without(profile_objects, "predictive_analytics"))
    assert all("predictive_analytics" not in c.query["additional-fields[profile]"] for c in fake.requests_for(KLAVIYO))


def test_outage_outlasting_retries_raises(fake, klaviyo, clock, log, assert_secret_absent):
    fake.fault(KLAVIYO, "status", times=None, status=502)

    with pytest.raises(RetriesExhaustedError) as info:
        list(_copy(klaviyo, include_predictive_analytics=False).iter_profiles(None, log))

    assert len(fake.requests_for(KLAVIYO)) == klaviyo.max_retries + 1
    assert_secret_absent(fake.klaviyo_key, info.value)


@pytest.mark.parametrize(
    "case, error, setting",
    [
        ("wrong key", AuthenticationError, "KLAVIYO_API_KEY"),
        ("missing scope", PermissionDeniedError, "profiles:read"),
        ("wrong base url", NotFoundError, "base_url"),
    ],
)
def test_auth_errors_fail_fast_naming_the_setting(
    fake, klaviyo, clock, log, assert_secret_absent, case, error, setting
):
    secret = fake.klaviyo_key
    resource = klaviyo
    if case == "wrong key":
        secret = "pk_wrong_but_still_secret_13579"
        resource = _copy(klaviyo, api_key=secret)
    elif case == "missing scope":
        fake.klaviyo_forbidden = True
    else:
        resource = _copy(klaviyo, base_url=f"{fake.base_url}/v2")

    with pytest.raises(error) as info:
        list(resource.iter_profiles(None, log))

    assert setting in str(info.value)
    assert len(fake.requests) == 1 and clock.sleeps == []
    assert_secret_absent(secret, info.value)
    assert secret not in repr(resource)


def test_without_predictive_keeps_every_other_parameter():
    url = ("https://a.klaviyo.com/api/profiles/?additional-fields%5Bprofile%5D=subscriptions%2Cpredictive_analytics"
           "&page%5Bcursor%5D=abc&page%5Bsize%5D=100&sort=updated&filter=greater-than%28updated%2C2024-01-01T00%3A00"
           "%3A00Z%29")
    assert without_predictive(url) == (
        "https://a.klaviyo.com/api/profiles/?additional-fields%5Bprofile%5D=subscriptions&page%5Bcursor%5D=abc"
        "&page%5Bsize%5D=100&sort=updated&filter=greater-than%28updated%2C2024-01-01T00%3A00%3A00Z%29"
    )
    assert "additional-fields" not in without_predictive(
        "https://a.klaviyo.com/api/profiles/?additional-fields%5Bprofile%5D=predictive_analytics&page%5Bcursor%5D=x"
    )


def test_demo_store_profiles_round_trip(clock, fast):
    demo_store = pytest.importorskip("clv_platform.ingestion.demo_store")
    store = demo_store.generate(demo_store.DemoStoreParams(n_customers=150, seed=3))
    with FakeApi(profiles=store.profile_objects(), clock=clock.now) as server:
        server.fault(KLAVIYO, "status", at={2}, status=503)
        server.fault(KLAVIYO, "duplicate", at={3})
        resource = KlaviyoResource(api_key=server.klaviyo_key, base_url=server.base_url, page_size=40, **fast)
        got = list(resource.iter_profiles(None))
        expected = server.profiles
    _assert_exact(got, expected)
