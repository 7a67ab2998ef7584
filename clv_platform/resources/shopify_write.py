"""Shopify write client for activation: customer metafields (`metafieldsSet`) and tags.

Built on a configured `ShopifyResource` (its credentials, API version and the shared retry
loop of `http.py`), and paced on the same cost bucket as the readers: `THROTTLED` (HTTP 200
or 429) waits for the bucket to refill and retries the same call, 5xx/timeouts back off.

- `nodes(ids:)` reads the customers' current `clv` metafields and tags; an id that comes back
  null is a customer that was deleted (or erased on a GDPR request) and is skipped;
- `metafieldsSet` writes at most 25 metafields per call and is atomic: when Shopify answers
  with `userErrors`, nothing of that call was saved;
- `metafieldsDelete` removes metafields (by owner, namespace and key; one that does not exist
  comes back null and is no error): a value the platform withdrew is deleted, not left stale;
- `tagsAdd` / `tagsRemove` put or take the `clv:` tags used by customer segments.

The app needs the `write_customers` scope (which includes reading customers).
"""

from __future__ import annotations

import json
from typing import Any

from clv_platform.resources.http import (
    ConnectorError,
    HttpClient,
    PermissionDeniedError,
    TransientBodyError,
)
from clv_platform.resources.shopify import ShopifyResource, _CostPacer

NAMESPACE = "clv"
MAX_METAFIELDS_PER_CALL = 25

READ_QUERY = (
    "query ClvActivationRead($ids: [ID!]!) { nodes(ids: $ids) { ... on Customer { id tags "
    f'metafields(first: 12, namespace: "{NAMESPACE}") {{ nodes {{ key value }} }} }} }} }}'
)
SET_MUTATION = (
    "mutation ClvMetafieldsSet($metafields: [MetafieldsSetInput!]!) { metafieldsSet(metafields: $metafields) { "
    "metafields { key namespace value } userErrors { field message code elementIndex } } }"
)
DELETE_MUTATION = (
    "mutation ClvMetafieldsDelete($metafields: [MetafieldIdentifierInput!]!) { metafieldsDelete(metafields: "
    "$metafields) { deletedMetafields { key namespace ownerId } userErrors { field message } } }"
)
TAGS_ADD = (
    "mutation ClvTagsAdd($id: ID!, $tags: [String!]!) { tagsAdd(id: $id, tags: $tags) { node { id } "
    "userErrors { field message } } }"
)
TAGS_REMOVE = (
    "mutation ClvTagsRemove($id: ID!, $tags: [String!]!) { tagsRemove(id: $id, tags: $tags) { node { id } "
    "userErrors { field message } } }"
)


class ShopifyWriter:
    """Sets `clv` customer metafields and tags. One instance per sync."""

    def __init__(self, resource: ShopifyResource, log: Any = None):
        self.resource = resource
        self.client: HttpClient = resource._client(log)
        self.client.fatal_hints = {
            401: f"Shopify rejected the access token (HTTP 401): check {resource._setting()}",
            403: "Shopify refused access (HTTP 403): activation needs the write_customers scope on the app "
            f"behind {resource._setting()}",
            404: f"Shopify returned HTTP 404 for {resource.graphql_url()}: check SHOPIFY_SHOP_DOMAIN and "
            f"SHOPIFY_API_VERSION ({resource.api_version})",
        }
        self.pacer = _CostPacer(self.client, resource.bucket_size, resource.restore_rate)

    def close(self) -> None:
        self.client.session.close()

    def _call(self, kind: str, query: str, variables: dict) -> dict:
        """One paced GraphQL call; THROTTLED retried in place, ACCESS_DENIED names write_customers."""
        resource, pacer = self.resource, self.pacer

        def inspect(body: Any) -> None:
            pacer.observe(kind, body)
            errors, codes = resource.raise_if_throttled(body, pacer)
            if "ACCESS_DENIED" in codes:
                raise PermissionDeniedError(
                    "Shopify denied access: activation needs the write_customers scope on the app behind "
                    f"{resource._setting()}. Shopify said: {errors[codes.index('ACCESS_DENIED')].get('message')}"
                )
            if any(c in {"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT"} for c in codes):
                raise TransientBodyError(f"GraphQL error {codes}")
            if errors:
                raise ConnectorError(f"Shopify GraphQL error ({kind}): {json.dumps(errors)[:500]}")
            if not isinstance(body.get("data"), dict):
                raise TransientBodyError("GraphQL response has no data")

        def delay_from_body(body: Any) -> float | None:
            pacer.observe(kind, body)
            return resource._throttle_delay(body, pacer)

        pacer.before(kind)
        body = self.client.request_json(
            "POST",
            resource.graphql_url(),
            what=f"GraphQL {kind}",
            json_body={"query": query, "variables": variables},
            # the run's token: static, or granted by client credentials and renewed when due
            headers={"X-Shopify-Access-Token": resource._token.get()},
            inspect=inspect,
            rate_limit_delay=delay_from_body,
        )
        return body["data"]

    def current(self, customer_ids: list[str]) -> dict[str, dict]:
        """`{gid: {"metafields": {key: value}, "tags": set}}` for customers that still exist."""
        data = self._call("customer read", READ_QUERY, {"ids": customer_ids})
        found: dict[str, dict] = {}
        for node in data.get("nodes") or []:
            if not node or not node.get("id"):
                continue
            metafields = {m["key"]: m["value"] for m in ((node.get("metafields") or {}).get("nodes") or [])}
            found[node["id"]] = {"metafields": metafields, "tags": set(node.get("tags") or [])}
        return found

    def set_metafields(self, metafields: list[dict]) -> list[dict]:
        """Send one `metafieldsSet` call; returns its userErrors (empty: every metafield was saved)."""
        if not metafields or len(metafields) > MAX_METAFIELDS_PER_CALL:
            raise ValueError(f"metafieldsSet takes 1..{MAX_METAFIELDS_PER_CALL} metafields, got {len(metafields)}")
        data = self._call("metafields set", SET_MUTATION, {"metafields": metafields})
        return list(((data.get("metafieldsSet") or {}).get("userErrors")) or [])

    def delete_metafields(self, identifiers: list[dict]) -> list[dict]:
        """Send one `metafieldsDelete` call (`ownerId`, `namespace`, `key` each); returns its userErrors."""
        if not identifiers or len(identifiers) > MAX_METAFIELDS_PER_CALL:
            raise ValueError(f"metafieldsDelete is sent 1..{MAX_METAFIELDS_PER_CALL} metafields, got {len(identifiers)}")
        data = self._call("metafields delete", DELETE_MUTATION, {"metafields": identifiers})
        return list(((data.get("metafieldsDelete") or {}).get("userErrors")) or [])

    def change_tags(self, customer_id: str, add: list[str], remove: list[str]) -> list[dict]:
        """`tagsAdd` then `tagsRemove` for one customer; returns the userErrors of both."""
        errors: list[dict] = []
        if add:
            data = self._call("tags add", TAGS_ADD, {"id": customer_id, "tags": add})
            errors += list(((data.get("tagsAdd") or {}).get("userErrors")) or [])
        if remove:
            data = self._call("tags remove", TAGS_REMOVE, {"id": customer_id, "tags": remove})
            errors += list(((data.get("tagsRemove") or {}).get("userErrors")) or [])
        return errors
