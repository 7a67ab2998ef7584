"""The source resources that are not live clients: the demo store, and the stand-ins bound when
a live source is absent (no Klaviyo key, missing credentials, a files-only store).

The demo store is a resource so the asset graph runs with no credentials.

It serves the same records the live clients do (GraphQL order nodes, JSON:API
profiles), so demo and live share one parsing path from raw onwards.
"""


from collections.abc import Iterator
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import dagster as dg

from clv_platform.ingestion.demo_store import DemoStore, DemoStoreParams, generate


@lru_cache(maxsize=4)
def _store(n_customers: int, seed: int, end_date: str | None = None) -> DemoStore:
    if not end_date:
        return generate(DemoStoreParams(n_customers=n_customers, seed=seed))
    # Same length of history as the default store, shifted to end on `end_date`.
    defaults = DemoStoreParams()
    end = date.fromisoformat(end_date)
    start = end - timedelta(days=(defaults.end_date - defaults.start_date).days)
    return generate(DemoStoreParams(n_customers=n_customers, seed=seed, start_date=start, end_date=end))


class DemoStoreResource(dg.ConfigurableResource):
    """A seeded synthetic Shopify + Klaviyo store (see `ingestion/demo_store.py`).

    `end_date` (YYYY-MM-DD) is its last day of history; `definitions.py` sets it to the day
    before the run (or before `CLV_AS_OF`), so the demo's predictions look live. Empty: the
    fixed window of `DemoStoreParams`.
    """

    n_customers: int = 5000
    seed: int = 42
    end_date: str | None = None

    def store(self) -> DemoStore:
        return _store(self.n_customers, self.seed, self.end_date)

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

    def iter_profiles(self, updated_after: datetime | None, log: Any = None) -> Iterator[dict]:
        return iter(())


class MissingCredentialsResource(dg.ConfigurableResource):
    """Bound as `shopify` when `CLV_SOURCE=shopify` but the credentials are not set.

    A missing secret must stop the run with a message naming it, never switch the store to
    the demo (whose rows would replace the live ones). The raw asset checks `missing_credentials`
    before it fetches anything.
    """

    missing_credentials: str

    def iter_orders(self, updated_min: datetime, updated_max: datetime, log: Any = None) -> Iterator[dict]:
        raise dg.Failure(description=f"CLV_SOURCE=shopify but {self.missing_credentials} not set", allow_retries=False)


class FilesOnlyResource(dg.ConfigurableResource):
    """Bound as `shopify` and `klaviyo` in a files-only store: those assets do nothing there."""

    def iter_orders(self, updated_min: datetime, updated_max: datetime, log: Any = None) -> Iterator[dict]:
        return iter(())

    def iter_profiles(self, updated_after: datetime | None, log: Any = None) -> Iterator[dict]:
        return iter(())
