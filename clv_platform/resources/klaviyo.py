"""Live Klaviyo client: profiles from `GET /api/profiles/`, oldest update first.

Faults are handled by the shared loop in `http.py`. Klaviyo-specific behaviour:

- `links.next` is followed exactly as returned (it carries `page[cursor]` and the filters);
- `predictive_analytics` is known to be unstable (503s). When a page keeps failing with it,
  that page and the rest of the sync are fetched without it and a warning is logged: the
  profiles are never lost, only their (nullable) predictive fields for this run;
- a profile version repeated on two adjacent pages is yielded once;
- `profiles_by_id` re-requests given profiles (`filter=any(id,[…])`) with
  `predictive_analytics`: the raw asset uses it on later runs for the profiles whose stored
  version lacks the field, until it arrives (the `updated` watermark has moved past them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field

from clv_platform.resources.http import (
    ConnectorError,
    HttpClient,
    HttpConnectorResource,
    RecentKeys,
    RetriesExhaustedError,
    utc_iso,
)

ADDITIONAL_FIELDS = "additional-fields[profile]"
PREDICTIVE = "predictive_analytics"


def without_predictive(url: str) -> str:
    """`url` with `predictive_analytics` removed from `additional-fields[profile]`, all else kept."""
    parts = urlsplit(url)
    query = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == ADDITIONAL_FIELDS:
            value = ",".join(f for f in value.split(",") if f and f != PREDICTIVE)
            if not value:
                continue
        query.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(query)))


class KlaviyoResource(HttpConnectorResource):
    """Klaviyo profiles API client. Bind the secret with `api_key=dg.EnvVar("KLAVIYO_API_KEY")`."""

    api_key: str = Field(repr=False, description="Private API key (pk_…) with profiles:read; bind with EnvVar.")
    base_url: str = Field(default="https://a.klaviyo.com", description="API root; a fake server in tests.")
    revision: str = Field(
        default="2026-10-15",
        description="Pinned API revision header: the current stable one (quarterly; each supported 2 years, "
        "retired revisions fall forward or answer 410).",
    )
    page_size: int = Field(default=100, description="Profiles per page (max 100).")
    include_predictive_analytics: bool = Field(
        default=True, description="Ask for predictive_analytics (falls back to without it if it keeps failing)."
    )
    include_subscriptions: bool = Field(default=True, description="Ask for subscriptions (consent).")
    predictive_refetch_max_profiles: int = Field(
        default=30000,
        description="Profiles lacking predictive_analytics re-requested by id per run (100 per request; "
        "Klaviyo allows ~150 such requests a minute). The rest wait for the next run.",
    )

    def profiles_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/api/profiles/"

    def _client(self, log: Any) -> HttpClient:
        if not self.api_key:
            raise ConnectorError("KLAVIYO_API_KEY is empty: set it to a private API key with profiles:read")
        return self._http_client(
            service="Klaviyo",
            headers={
                "Authorization": f"Klaviyo-API-Key {self.api_key}",
                "revision": self.revision,
                "accept": "application/vnd.api+json",
            },
            fatal_hints={
                401: "Klaviyo rejected the API key (HTTP 401): check KLAVIYO_API_KEY (a private key, pk_…)",
                403: "Klaviyo refused access (HTTP 403): the key in KLAVIYO_API_KEY needs the profiles:read scope",
                404: f"Klaviyo returned HTTP 404 for {self.profiles_url()}: check the Klaviyo base_url and "
                f"revision ({self.revision})",
            },
            secrets=(self.api_key,),
            log=log,
        )

    def _first_params(self, updated_after: datetime | None, predictive: bool) -> dict[str, Any]:
        fields = [f for f, on in (("subscriptions", self.include_subscriptions), (PREDICTIVE, predictive)) if on]
        params: dict[str, Any] = {"page[size]": max(1, min(self.page_size, 100)), "sort": "updated"}
        if fields:
            params[ADDITIONAL_FIELDS] = ",".join(fields)
        if updated_after is not None:
            params["filter"] = f"greater-than(updated,{utc_iso(updated_after)})"
        return params

    def profiles_by_id(self, profile_ids: Sequence[str], log: Any = None) -> Iterator[dict]:
        """The current version of each given profile, with `predictive_analytics`, 100 ids per request.

        No fallback here: if predictive_analytics keeps failing, the connector error is raised
        and the caller keeps the profiles on its list for the next run.
        """
        client = self._client(log)
        chunk_size = max(1, min(self.page_size, 100))
        fields = ",".join(f for f, on in (("subscriptions", self.include_subscriptions), (PREDICTIVE, True)) if on)
        try:
            for offset in range(0, len(profile_ids), chunk_size):
                chunk = list(profile_ids[offset:offset + chunk_size])
                url: str | None = self.profiles_url()
                params: dict[str, Any] | None = {
                    "filter": f"any(id,{json.dumps(chunk, separators=(',', ':'))})",
                    "page[size]": chunk_size,
                    ADDITIONAL_FIELDS: fields,
                }
                while url:
                    body = client.request_json("GET", url, params=params,
                                               what=f"profiles by id ({offset + 1}..{offset + len(chunk)})")
                    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                        raise ConnectorError("Klaviyo profiles response has no data list")
                    yield from body["data"]
                    url = (body.get("links") or {}).get("next")
                    params = None
        finally:
            client.session.close()

    def iter_profiles(self, updated_after: datetime | None, log: Any = None) -> Iterator[dict]:
        """JSON:API profile objects updated after `updated_after` (all when None), by `updated`."""
        client = self._client(log)
        predictive = self.include_predictive_analytics
        url = self.profiles_url()
        params: dict[str, Any] | None = self._first_params(updated_after, predictive)
        recent = RecentKeys()
        pages = yielded = repeats = 0
        try:
            while url:
                try:
                    body = client.request_json("GET", url, params=params, what=f"profiles page {pages + 1}")
                except RetriesExhaustedError as exc:
                    if not (predictive and (exc.status or 0) >= 500):
                        raise
                    predictive = False
                    client.warning(
                        f"Klaviyo: profiles page {pages + 1} kept failing with predictive_analytics "
                        f"(last HTTP {exc.status}); fetching it and the rest of this sync without "
                        "predictive_analytics. Those profiles get their predictions on a later update."
                    )
                    if params is not None:
                        params = self._first_params(updated_after, predictive=False)
                    else:
                        url = without_predictive(url)
                    continue
                if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                    raise ConnectorError("Klaviyo profiles response has no data list")
                pages += 1
                recent.new_page()
                for profile in body["data"]:
                    key = (profile.get("id"), (profile.get("attributes") or {}).get("updated"))
                    if not recent.first_time(key):
                        repeats += 1
                        continue
                    yield profile
                    yielded += 1
                client.info(f"Klaviyo profiles: page {pages} done, {yielded} profiles so far")
                url = (body.get("links") or {}).get("next")
                params = None
        finally:
            client.session.close()
        client.info(
            f"Klaviyo profiles: {yielded} profiles in {pages} pages, {repeats} repeated records dropped, "
            f"{client.rate_limit_waits} rate-limit waits, {client.waited_seconds:.1f}s waited"
        )
