"""Activation on the demo store against the loopback fakes: the figures of the README/closing note.

    CLV_DEMO_CUSTOMERS=2000 .venv/bin/python -m clv_platform_tests.activation.demo_against_fakes

`CLV_DEMO_SHOPIFY_BULK_MIN` sets `shopify_bulk_min_customers` (0: the Shopify write-back through
bulk operations whatever the size; default the resource's 5,000).
Builds the demo store end to end (`refresh_everything`) in a temporary folder, starts the fake
Shopify + Klaviyo with the demo's customers and profiles, then materializes both activation
assets: a dry run, a live run, and a second live run (nothing changed, nothing sent).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from clv_platform.activation.assets import ACTIVATION_ASSETS
from clv_platform.activation.settings import ActivationResource
from clv_platform.ingestion.source_resources import DemoStoreResource
from clv_platform.resources.klaviyo import KlaviyoResource
from clv_platform.resources.shopify import ShopifyResource
from clv_platform_tests.fake_api import SHOPIFY, FakeApi

COUNTS = ("planned_customers", "planned_values", "sent_customers", "sent_values", "write_requests",
          "already_upstream_values", "skipped_customers", "failed_customers", "rate_limit_waits", "bulk_operations")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        os.environ["CLV_DATA_DIR"] = folder
        os.environ.setdefault("CLV_DEMO_CUSTOMERS", "2000")
        for var in ("SHOPIFY_ACCESS_TOKEN", "SHOPIFY_SHOP_DOMAIN", "KLAVIYO_API_KEY"):
            os.environ.pop(var, None)
        from clv_platform.definitions import build_definitions
        from clv_platform.ingestion.assets import shopify_daily_partitions

        db = str(Path(folder) / "clv.duckdb")
        defs = build_definitions(database=db)
        keys = shopify_daily_partitions.get_partition_keys()
        result = defs.resolve_job_def("refresh_everything").execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        )
        assert result.success
        demo: DemoStoreResource = defs.resources["shopify"]
        conn = duckdb.connect(db, read_only=True)
        customers = [r[0] for r in conn.execute(
            "select shopify_customer_id from staging.customers where shopify_customer_id is not null").fetchall()]
        scored = conn.execute("select count(*) from marts.customer_scores").fetchone()[0]
        conn.close()
        with FakeApi(profiles=list(demo.iter_profiles(None))) as fake:
            fake.add_customers(customers)
            resources = {
                "duckdb": DuckDBResource(database=db),
                "klaviyo": KlaviyoResource(api_key=fake.klaviyo_key, base_url=fake.base_url),
                "shopify": ShopifyResource(shop_domain=fake.base_url, access_token=fake.shopify_token),
            }
            print(f"demo store: {demo.n_customers} customers, {scored} scored, {len(fake.profiles)} Klaviyo "
                  f"profiles, {len(customers)} Shopify customers")
            bulk_min = int(os.environ.get("CLV_DEMO_SHOPIFY_BULK_MIN",
                                          ActivationResource.model_fields["shopify_bulk_min_customers"].default))
            for label, mode in (("dry run", "dry_run"), ("live run", "live"), ("second live run", "live")):
                before, requests_before = len(fake.received), len(fake.requests)
                activation = ActivationResource(klaviyo_enabled=True, shopify_enabled=True, mode=mode,
                                                shopify_tags=True, klaviyo_poll_seconds=0.2,
                                                shopify_bulk_min_customers=bulk_min)
                run = dg.materialize(ACTIVATION_ASSETS, resources={**resources, "activation": activation})
                for event in run.get_asset_materialization_events():
                    meta = {k: v.value for k, v in event.materialization.metadata.items()}
                    shown = ", ".join(f"{k}={meta[k]}" for k in COUNTS if k in meta)
                    print(f"{label:16s} {event.asset_key.to_user_string():30s} {shown}")
                received = fake.received[before:]
                print(f"{label:16s} fake received: {sum(r['dest'] == 'klaviyo' for r in received)} Klaviyo profile "
                      f"updates, {sum(r['dest'] == 'shopify' for r in received)} metafields, "
                      f"{sum(r['dest'] == 'shopify_tags' for r in received)} tag changes; "
                      f"{sum(r.route == SHOPIFY for r in fake.requests[requests_before:])} Shopify GraphQL requests")


if __name__ == "__main__":
    main()
