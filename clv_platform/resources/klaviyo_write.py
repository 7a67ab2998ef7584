"""Klaviyo write client for activation: bulk profile import jobs, plus the reads that make them safe.

Built on a configured `KlaviyoResource` (same key, base URL, revision and the shared retry loop
in `http.py`: 429 with Retry-After, 5xx, resets and timeouts are retried there). Endpoints:

- `GET /api/profiles/?filter=any(id,[...])`: the current `properties` of up to 100 profiles;
  a profile that is not returned was deleted (or erased on request) and is skipped;
- `POST /api/profile-bulk-import-jobs/` (`profile-bulk-import-job`): up to 10,000 profiles and
  5 MB per job; answered 202 with the job, which runs asynchronously;
- `GET /api/profile-bulk-import-jobs/{id}/`: job status (queued, processing, complete, cancelled);
- `GET /api/profile-bulk-import-jobs/{id}/import-errors/`: one error per rejected profile;
- `GET /api/profile-bulk-import-jobs/`: recent jobs, to wait out a job whose id was lost in a crash;
- `PATCH /api/profiles/{id}/` (Update Profile, 75/s burst, 750/min steady): one profile whose update
  removes a property (`meta.patch_properties.unset`). The bulk import cannot clear a property
  (a null there is ignored), so a value the platform withdrew goes this way, with that profile's
  other changed values in the same request.

The key needs `profiles:read` and `profiles:write` (Klaviyo also lists `lists:write`/`lists:read`
for the import endpoints). The import is an upsert: profiles are named by `id` only, never by
email, so a profile deleted in Klaviyo is not re-created by this client.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from clv_platform.resources.http import ConnectorError, HttpClient, RequestRejectedError, parse_json
from clv_platform.resources.klaviyo import KlaviyoResource

JOB_TYPE = "profile-bulk-import-job"
MAX_PROFILES_PER_JOB = 10_000
MAX_JOB_BYTES = 5 * 1024 * 1024
READ_PAGE = 100
TERMINAL = {"complete", "cancelled"}


@dataclass
class ImportError_:
    """One profile Klaviyo rejected inside a job."""

    profile_id: str | None
    reason: str


class KlaviyoWriter:
    """Writes custom profile properties with bulk import jobs. One instance per sync."""

    def __init__(self, resource: KlaviyoResource, log: Any = None):
        self.resource = resource
        self.client: HttpClient = resource._client(log)
        self.client.fatal_hints = {
            401: "Klaviyo rejected the API key (HTTP 401): check KLAVIYO_API_KEY (a private key, pk_…)",
            403: "Klaviyo refused access (HTTP 403): activation needs a KLAVIYO_API_KEY with the profiles:read "
            "and profiles:write scopes (and lists:write for bulk import jobs)",
            404: f"Klaviyo returned HTTP 404 under {resource.base_url}: check the Klaviyo base_url and revision "
            f"({resource.revision})",
        }
        self.base = resource.base_url.rstrip("/")

    def close(self) -> None:
        self.client.session.close()

    # -- reads

    def current_properties(self, profile_ids: list[str]) -> dict[str, dict]:
        """`{profile_id: properties}` for the profiles that still exist (at most 100 per request)."""
        found: dict[str, dict] = {}
        for start in range(0, len(profile_ids), READ_PAGE):
            chunk = profile_ids[start:start + READ_PAGE]
            quoted = ",".join(json.dumps(pid) for pid in chunk)
            url: str | None = f"{self.base}/api/profiles/"
            params: dict | None = {
                "filter": f"any(id,[{quoted}])",
                "page[size]": READ_PAGE,
                "fields[profile]": "properties",
            }
            while url:
                body = self.client.request_json("GET", url, params=params, what="profiles read-back")
                if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                    raise ConnectorError("Klaviyo profiles read-back response has no data list")
                for profile in body["data"]:
                    found[profile["id"]] = dict((profile.get("attributes") or {}).get("properties") or {})
                url, params = (body.get("links") or {}).get("next"), None
        return found

    # -- jobs

    @staticmethod
    def job_body(profiles: list[dict]) -> dict:
        """The JSON:API body of one import job; `profiles` are `{"id": ..., "properties": {...}}`."""
        return {"data": {"type": JOB_TYPE, "attributes": {"profiles": {"data": [
            {"type": "profile", "id": p["id"], "attributes": {"properties": p["properties"]}} for p in profiles
        ]}}}}

    @staticmethod
    def body_size(profiles: list[dict]) -> int:
        return len(json.dumps(KlaviyoWriter.job_body(profiles)).encode())

    def submit_job(self, profiles: list[dict]) -> str:
        """Start one import job and return its id. The caller keeps jobs within the size limits."""
        if not profiles or len(profiles) > MAX_PROFILES_PER_JOB:
            raise ValueError(f"a Klaviyo import job takes 1..{MAX_PROFILES_PER_JOB} profiles, got {len(profiles)}")
        body = self.client.request_json(
            "POST",
            f"{self.base}/api/profile-bulk-import-jobs/",
            json_body=self.job_body(profiles),
            headers={"content-type": "application/vnd.api+json"},
            what=f"profile import job ({len(profiles)} profiles)",
        )
        job_id = ((body or {}).get("data") or {}).get("id")
        if not job_id:
            raise ConnectorError("Klaviyo accepted the import job but returned no job id")
        return str(job_id)

    def update_profile(self, profile_id: str, properties: dict, unset: list[str]) -> RequestRejectedError | None:
        """Set `properties` and remove the `unset` keys of one profile; None when Klaviyo took it.

        A refusal is returned, not raised: a 404 (`status`) is a profile deleted since the read-back,
        any other 4xx a value Klaviyo rejected; both concern this profile only. The client's 404
        hint (a wrong base URL) is not applied here, where a 404 names the profile."""
        body = {"data": {"type": "profile", "id": profile_id, "attributes": {"properties": properties},
                         "meta": {"patch_properties": {"unset": unset}}}}
        try:
            self.client.request(
                "PATCH",
                f"{self.base}/api/profiles/{profile_id}/",
                what=f"profile update ({len(properties)} set, {len(unset)} removed)",
                json_body=body,
                headers={"content-type": "application/vnd.api+json"},
                consume=parse_json,
                fatal_hints={k: v for k, v in self.client.fatal_hints.items() if k != 404},
            )
        except RequestRejectedError as refused:
            return refused
        return None

    def job(self, job_id: str) -> dict:
        body = self.client.request_json(
            "GET", f"{self.base}/api/profile-bulk-import-jobs/{job_id}/", what=f"import job {job_id} status"
        )
        data = (body or {}).get("data") or {}
        return {"id": data.get("id", job_id), **(data.get("attributes") or {})}

    def wait_for_job(self, job_id: str, poll_seconds: float, timeout_seconds: float) -> dict:
        """Poll until the job is complete or cancelled; raise (job left to resume) on timeout."""
        waited = 0.0
        while True:
            job = self.job(job_id)
            if job.get("status") in TERMINAL:
                return job
            if waited >= timeout_seconds:
                raise ConnectorError(
                    f"Klaviyo import job {job_id} still {job.get('status')} after {waited:.0f}s; the next sync "
                    "resumes it"
                )
            self.client.wait(poll_seconds, f"import job {job_id} is {job.get('status')}")
            waited += poll_seconds

    def import_errors(self, job_id: str) -> Iterator[ImportError_]:
        url: str | None = f"{self.base}/api/profile-bulk-import-jobs/{job_id}/import-errors/"
        while url:
            body = self.client.request_json("GET", url, what=f"import job {job_id} errors")
            for error in (body or {}).get("data") or []:
                attributes = error.get("attributes") or {}
                payload = attributes.get("original_payload") or {}
                profile_id = payload.get("id") if isinstance(payload, dict) else None
                reason = " ".join(str(attributes.get(k) or "") for k in ("code", "title", "detail")).strip()
                yield ImportError_(profile_id, reason or "rejected by Klaviyo (no detail)")
            url = ((body or {}).get("links") or {}).get("next")

    def unfinished_jobs(self) -> list[dict]:
        """The newest import jobs (one page) that are still queued or processing."""
        body = self.client.request_json(
            "GET",
            f"{self.base}/api/profile-bulk-import-jobs/",
            params={"sort": "-created_at"},
            what="recent import jobs",
        )
        jobs = [{"id": d.get("id"), **(d.get("attributes") or {})} for d in (body or {}).get("data") or []]
        return [j for j in jobs if j.get("status") not in TERMINAL]


def pack_jobs(profiles: Iterable[dict], max_profiles: int, max_bytes: int) -> Iterator[list[dict]]:
    """Split profiles into jobs of at most `max_profiles` profiles and `max_bytes` of JSON body."""
    job: list[dict] = []
    size = KlaviyoWriter.body_size([])
    for profile in profiles:
        one = len(json.dumps(KlaviyoWriter.job_body([profile])["data"]["attributes"]["profiles"]["data"][0]).encode())
        # json.dumps (and requests) separate list items with ", "
        if job and (len(job) >= max_profiles or size + one + 2 > max_bytes):
            yield job
            job, size = [], KlaviyoWriter.body_size([])
        if size + one > max_bytes:
            raise ConnectorError(f"one Klaviyo profile update is larger than the job limit ({one} bytes)")
        job.append(profile)
        size += one + 2
    if job:
        yield job
