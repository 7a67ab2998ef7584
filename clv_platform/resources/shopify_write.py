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

A large sync goes through bulk operations instead, which Shopify runs outside the cost bucket
(shopify.dev, "Bulk import data with the GraphQL Admin API"): `bulk_customers_file` reads every
customer's `clv` metafields and tags with one `bulkOperationRunQuery`, and `start_bulk_mutation`
runs one of the mutations above once per line of a JSONL file of variables, uploaded first with
`stagedUploadsCreate` (resource BULK_MUTATION_VARIABLES) to the URL and form fields it returns.
The result is a JSONL file with one line per input line, in any order, keyed by `__lineNumber`;
a line carries that call's payload (with its `userErrors`) or top-level `errors`.

The app needs the `write_customers` scope (which includes reading customers).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clv_platform.resources.http import (
    ConnectorError,
    HttpClient,
    PermissionDeniedError,
    TransientBodyError,
    make_session,
)
from clv_platform.resources.shopify import ShopifyResource, _CostPacer, _object_count

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
# The mutation a bulk operation runs once per JSONL line, by its root field.
BULK_MUTATIONS = {"metafieldsSet": SET_MUTATION, "metafieldsDelete": DELETE_MUTATION, "tagsAdd": TAGS_ADD,
                  "tagsRemove": TAGS_REMOVE}
BULK_READ_QUERY = (
    "{ customers { edges { node { __typename id tags "
    f'metafields(namespace: "{NAMESPACE}") {{ edges {{ node {{ __typename key value }} }} }} }} }} }} }}'
)
STAGED_UPLOAD = (
    "mutation ClvStagedUpload($input: [StagedUploadInput!]!) { stagedUploadsCreate(input: $input) { "
    "stagedTargets { url resourceUrl parameters { name value } } userErrors { field message } } }"
)
BULK_MUTATION_RUN = (
    "mutation ClvBulkMutation($mutation: String!, $stagedUploadPath: String!, $clientIdentifier: String) { "
    "bulkOperationRunMutation(mutation: $mutation, stagedUploadPath: $stagedUploadPath, "
    "clientIdentifier: $clientIdentifier) { bulkOperation { id status } userErrors { code field message } } }"
)
CURRENT_BULK_MUTATION = "query ClvCurrentBulkMutation { currentBulkOperation(type: MUTATION) { id status } }"


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

    # ------------------------------------------------------------------ bulk operations

    @contextmanager
    def bulk_customers_file(self) -> Iterator[Path | None]:
        """Every customer's `clv` metafields and tags through one bulk query: yields the downloaded
        JSONL (customer lines with `id` and `tags`, metafield lines with `key`, `value` and their
        customer in `__parentId`, in any order), or None when the shop has no customer; the file is
        removed afterwards. A customer missing from it was deleted upstream.
        """
        resource, client = self.resource, self.client
        operation = resource._completed_bulk_operation(client, self.pacer, BULK_READ_QUERY)
        if not operation.get("url"):
            if _object_count(operation) == 0:
                yield None
                return
            raise ConnectorError(f"Shopify bulk operation {operation.get('id')} completed with objects but no "
                                 "result URL")
        with resource._downloaded(client, operation["url"], _object_count(operation), "bulk-customers") as path:
            yield path

    def stage_upload(self, jsonl: bytes, filename: str) -> str:
        """Upload a JSONL file of mutation variables; returns its `stagedUploadPath` (the form's `key`)."""
        data = self._call("staged upload", STAGED_UPLOAD, {"input": [{
            "resource": "BULK_MUTATION_VARIABLES", "filename": filename, "mimeType": "text/jsonl",
            "httpMethod": "POST"}]})
        result = data.get("stagedUploadsCreate") or {}
        if result.get("userErrors"):
            raise ConnectorError(f"Shopify refused the staged upload: {json.dumps(result['userErrors'])[:500]}")
        targets = result.get("stagedTargets") or []
        if not targets or not targets[0].get("url"):
            raise ConnectorError("Shopify stagedUploadsCreate returned no upload target")
        fields = {p["name"]: p["value"] for p in targets[0].get("parameters") or []}
        if not fields.get("key"):
            raise ConnectorError("Shopify stagedUploadsCreate returned no `key` parameter (the staged upload path)")
        plain = make_session()
        try:  # the upload URL is the storage service's: no Shopify token goes there
            self.client.request(
                "POST", targets[0]["url"], what="staged upload of bulk mutation variables", session=plain,
                data=fields, files={"file": (filename, jsonl, "text/jsonl")}, consume=lambda response: None,
                fatal_hints={s: f"the staged upload URL answered HTTP {s} (expired or refused)" for s in (401, 403)},
            )
        finally:
            plain.close()
        return fields["key"]

    def start_bulk_mutation(self, mutation: str, staged_path: str, client_identifier: str) -> str:
        """Start `mutation` (a key of BULK_MUTATIONS) over a staged file; waits while another runs."""

        def attempt() -> dict:
            data = self._call("bulk mutation start", BULK_MUTATION_RUN, {
                "mutation": BULK_MUTATIONS[mutation], "stagedUploadPath": staged_path,
                "clientIdentifier": client_identifier})
            return data.get("bulkOperationRunMutation") or {}

        return self.resource.start_when_free(
            self.client, attempt, f"bulk {mutation}",
            lambda errors: bool({e.get("code") for e in errors} & {"OPERATION_IN_PROGRESS", "LIMIT_REACHED"}))

    def bulk_mutation_running(self) -> bool:
        """Whether the shop's latest bulk mutation is still created or running."""
        data = self._call("bulk mutation status", CURRENT_BULK_MUTATION, {})
        return ((data.get("currentBulkOperation") or {}).get("status")) in {"CREATED", "RUNNING", "CANCELING"}

    def finished_bulk_mutation(self, operation_id: str) -> tuple[dict, dict[int, dict]]:
        """Wait for the operation to end; returns it and its result lines by `__lineNumber`.

        A failed operation's processed lines come from `partialDataUrl` when Shopify left one;
        lines without a result were not (knowably) run.
        """
        operation = self.resource._poll_bulk(self.client, self.pacer, operation_id)
        url = operation.get("url") or operation.get("partialDataUrl")
        results: dict[int, dict] = {}
        if url:
            with tempfile.TemporaryFile(mode="w+b") as spool:
                self.resource._download(self.client, url, spool, None)
                for raw in spool:
                    if not raw.strip():
                        continue
                    record = json.loads(raw)
                    if isinstance(record.get("__lineNumber"), int):
                        results[record["__lineNumber"]] = record
        return operation, results
