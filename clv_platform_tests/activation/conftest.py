"""Fixtures for activation: a small scored customer base in DuckDB and the fake APIs that receive it.

The customer base is written straight into `staging.customers` and `marts.customer_scores`
(the columns activation reads), so these tests do not need the model pipeline.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import duckdb
import pytest

from clv_platform.resources.klaviyo import KlaviyoResource
from clv_platform.resources.shopify import ShopifyResource
from clv_platform_tests.fake_clock import FAST, FakeClock, install_fake_clock  # noqa: F401 (re-exported)
from clv_platform_tests.fake_api import FakeApi, make_profiles

N_CUSTOMERS = 120
SCORED_AT = datetime(2026, 11, 30, 4, 0, 0)


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    return install_fake_clock(monkeypatch)


def customer_rows(n: int = N_CUSTOMERS) -> list[dict]:
    """n scored customers. Every 4th has no Shopify customer (Klaviyo-only person), every 5th
    no Klaviyo profile; some scores are null (never sent)."""
    profiles = make_profiles(n)
    rows = []
    for i in range(n):
        shopify = i % 4 != 3
        klaviyo = i % 5 != 4
        pid = profiles[i]["id"]
        customer_id = f"gid://shopify/Customer/{9000 + i}" if shopify else f"klaviyo:{pid}"
        rows.append({
            "customer_id": customer_id,
            "shopify_customer_id": customer_id if shopify else None,
            "klaviyo_profile_id": pid if klaviyo else None,
            "predicted_clv": 10 + i * 3.33337,
            "p_alive": 0.05 + (i % 10) / 10,
            "predicted_next_purchase_date": None if i % 7 == 0 else date(2026, 12, 1) + timedelta(days=i),
            "p_purchase_30d": (i % 9) / 9,
            "rfm_segment": ["Champions", "Loyal", "At risk", "Hibernating"][i % 4],
            "lifecycle_stage": "at_risk" if i % 6 == 0 else "active",
            "clv_tier": "1-5%" if i >= n - 6 else "Rest",
            "model_version": "clv-20261129",
            "scored_at": SCORED_AT,
        })
    return rows


def write_base(path: str, rows: list[dict]) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows)
    conn = duckdb.connect(path)
    try:
        conn.execute("create schema if not exists staging")
        conn.execute("create schema if not exists marts")
        conn.register("_rows", frame)
        conn.execute(
            "create or replace table staging.customers as select customer_id, null::varchar as email, "
            "shopify_customer_id, klaviyo_profile_id from _rows"
        )
        conn.execute(
            "create or replace table marts.customer_scores as select customer_id, null::varchar as email, "
            "predicted_clv, p_alive, 0.5::double as expected_purchases, predicted_next_purchase_date::date "
            "as predicted_next_purchase_date, p_purchase_30d, rfm_segment, lifecycle_stage, 0 as cluster_id, "
            "row_number() over (order by predicted_clv desc) as clv_rank, 50.0 as clv_percentile, clv_tier, "
            "model_version, scored_at, 0.6 as p_purchase_90d from _rows"
        )
        conn.unregister("_rows")
    finally:
        conn.close()


@pytest.fixture
def base(tmp_path) -> str:
    path = str(tmp_path / "clv.duckdb")  # not "activation.duckdb": that catalog name would shadow the schema
    write_base(path, customer_rows())
    return path


def make_fake(clock: FakeClock | None = None) -> FakeApi:
    """Fake Shopify + Klaviyo that know every customer and profile of `customer_rows`.

    With a fake clock the server's cost bucket refills on the same time the client sleeps on."""
    fake = FakeApi(profiles=make_profiles(N_CUSTOMERS), **({"clock": clock.now} if clock else {}))
    fake.add_customers(r["shopify_customer_id"] for r in customer_rows() if r["shopify_customer_id"])
    return fake


@pytest.fixture
def fake(clock):
    with make_fake(clock) as server:
        yield server


def resources_for(fake: FakeApi) -> tuple[KlaviyoResource, ShopifyResource]:
    return (
        KlaviyoResource(api_key=fake.klaviyo_key, base_url=fake.base_url, **FAST),
        ShopifyResource(shop_domain=fake.base_url, access_token=fake.shopify_token, **FAST),
    )
