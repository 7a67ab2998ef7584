"""The `activation` resource: whether and how scores are written back, defaults from activation.toml.

Off unless turned on; when turned on, `mode` is "dry_run" until someone sets "live". Every
field can be overridden per run in the launchpad (resources.activation.config).
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from clv_platform.activation.sync import SyncOptions


class ActivationResource(dg.ConfigurableResource):
    """Switches and limits of the write-back to Klaviyo and Shopify."""

    klaviyo_enabled: bool = Field(default=False, description="Write clv_* profile properties to Klaviyo.")
    shopify_enabled: bool = Field(default=False, description="Write clv metafields (and tags) to Shopify customers.")
    mode: Literal["dry_run", "live"] = Field(
        default="dry_run", description="dry_run plans into activation.planned_changes only; live sends."
    )
    shopify_tags: bool = Field(default=False, description="Also keep the clv:top-5 / clv:at-risk customer tags.")
    failure_ratio_threshold: float = Field(default=0.02, description="Failed share of customers that fails a run.")
    failure_count_floor: int = Field(default=5, description="Failures always tolerated before the ratio applies.")
    klaviyo_max_profiles_per_job: int = Field(
        default=10_000, description="Profiles per import job (Klaviyo max 10,000)."
    )
    klaviyo_max_job_bytes: int = Field(default=4_750_000, description="JSON bytes per import job (Klaviyo max 5 MB).")
    klaviyo_poll_seconds: float = Field(default=5.0, description="Wait between import job status polls.")
    klaviyo_job_timeout_seconds: float = Field(
        default=1800.0, description="Give up waiting for one job (the next run resumes it)."
    )
    shopify_read_chunk: int = Field(default=25, description="Customers read back per nodes(ids:) query.")
    shopify_bulk_min_customers: int = Field(
        default=5_000,
        description="A Shopify sync planning at least this many customers reads back and writes through bulk "
        "operations (outside the cost bucket) instead of calls; 0 = always, -1 = never.",
    )
    shopify_bulk_max_file_bytes: int = Field(
        default=20_000_000, description="Bytes per bulk mutation file (Shopify's staged upload takes 20 MiB)."
    )
    shopify_bulk_concurrency: int = Field(
        default=5, description="Bulk mutations running at once (Shopify allows 5 from API 2026-01; 1 before, "
        "which an older SHOPIFY_API_VERSION gets whatever this says)."
    )
    batch_items_keep_days: int = Field(
        default=14, description="Days the items (every value) of a settled write batch stay in "
        "activation.sync_batches; then they are emptied and the batch row kept. 0 = kept forever."
    )

    def enabled(self, destination: str) -> bool:
        return {"klaviyo": self.klaviyo_enabled, "shopify": self.shopify_enabled}[destination]

    def options(self) -> SyncOptions:
        return SyncOptions(
            klaviyo_max_profiles_per_job=max(1, min(self.klaviyo_max_profiles_per_job, 10_000)),
            klaviyo_max_job_bytes=max(10_000, min(self.klaviyo_max_job_bytes, 5 * 1024 * 1024)),
            klaviyo_poll_seconds=self.klaviyo_poll_seconds,
            klaviyo_job_timeout_seconds=self.klaviyo_job_timeout_seconds,
            shopify_read_chunk=max(1, min(self.shopify_read_chunk, 250)),
            shopify_bulk_min_customers=self.shopify_bulk_min_customers,
            shopify_bulk_max_file_bytes=max(10_000, min(self.shopify_bulk_max_file_bytes, 20 * 1024 * 1024)),
            shopify_bulk_concurrency=max(1, min(self.shopify_bulk_concurrency, 5)),
            batch_items_keep_days=max(0, self.batch_items_keep_days),
        )


def load_settings(path: str | Path | None = None) -> dict:
    """The keys of activation.toml (the packaged file unless a path is given)."""
    if path is None:
        text = resources.files("clv_platform.activation").joinpath("activation.toml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    settings = tomllib.loads(text)
    unknown = set(settings) - set(ActivationResource.model_fields)
    if unknown:
        raise ValueError(f"activation.toml: unknown keys {sorted(unknown)}")
    return settings


def activation_resource(path: str | Path | None = None) -> ActivationResource:
    return ActivationResource(**load_settings(path))
