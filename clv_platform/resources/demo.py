"""The built-in demo store as a resource, so the asset graph runs with no credentials.

It serves the same records the live clients do (GraphQL order nodes, JSON:API
profiles), so demo and live share one parsing path from raw onwards.
"""


from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from typing import Any

import dagster as dg

from clv_platform.ingestion.demo_store import DemoStore, DemoStoreParams, generate


@lru_cache(maxsize=4)
def _store(n_customers: int, seed: int) -> DemoStore:
    return generate(DemoStoreParams(n_customers=n_customers, seed=seed))


class DemoStoreResource(dg.ConfigurableResource):
    """A seeded synthetic Shopify + Klaviyo store (see `ingestion/demo_store.py`)."""

    n_customers: int = 5000
    seed: int = 42

    @property
    def source_name(self) -> str:
        return "demo"

    def store(self) -> DemoStore:
        return _store(self.n_customers, self.seed)

    def iter_orders(self, updated_min: datetime, updated_max: datetime, log: Any = None) -> Iterator[dict]:
        yield from self.store().order_nodes(updated_min, updated_max)

    def shop_info(self, log: Any = None) -> dict:
        """What `shop { ianaTimezone currencyCode }` answers for the demo store."""
        params = self.store().params
        return {"ianaTimezone": params.shop_timezone, "currencyCode": params.shop_currency}

    def iter_profiles(self, updated_after: datetime | None, log: Any = None) -> Iterator[dict]:
        yield from self.store().profile_objects(updated_after)


class NoProfilesResource(dg.ConfigurableResource):
    """Stands in for Klaviyo when a live Shopify store has no Klaviyo key: no profiles.

    Mixing demo profiles into a real store's customers would be worse than none.
    """

    @property
    def source_name(self) -> str:
        return "klaviyo"

    def iter_profiles(self, updated_after: datetime | None, log: Any = None) -> Iterator[dict]:
        return iter(())
