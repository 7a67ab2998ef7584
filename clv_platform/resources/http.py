"""Shared HTTP plumbing for the live connectors (Shopify GraphQL, Klaviyo JSON:API).

One retry loop serves both APIs so that every fault is handled the same way and every
wait is logged in one place:

- every request carries a (connect, read) timeout;
- HTTP 429 sleeps `Retry-After` seconds (capped), or a delay the API-specific
  `inspect` hook derives from the body (Shopify's GraphQL cost bucket), then retries;
  rate-limit waits have their own budget because they are not failures;
- 5xx, connection resets, timeouts and truncated or invalid JSON bodies retry with
  bounded exponential backoff and jitter;
- 401/403/404 raise at once a `ConnectorError` subclass whose message names the
  setting to fix. Secret values are redacted from every message and log line.

urllib3's own `Retry` is configured for redirects only. Its status/read retries cannot
see GraphQL-level throttling or invalid JSON bodies, and stacking two retry layers
would multiply the real attempt count beyond `max_attempts`.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import dagster as dg
import requests
from pydantic import Field
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from clv_platform.resources.redaction import excerpt, redact

_module_log = logging.getLogger(__name__)

_BODY_EXCERPT = 300


def sleep(seconds: float) -> None:
    """The one place connectors sleep; tests replace it (with `clock`) to skip real waiting."""
    time.sleep(seconds)


def clock() -> float:
    """Monotonic seconds for rate-limit bookkeeping; replaced together with `sleep` in tests."""
    return time.monotonic()


class ConnectorError(RuntimeError):
    """Any failure of a live connector that retrying inside the connector will not fix."""


class AuthenticationError(ConnectorError):
    """HTTP 401: the credential is missing, wrong or revoked."""


class PermissionDeniedError(ConnectorError):
    """HTTP 403 (or a GraphQL ACCESS_DENIED): the credential lacks a scope."""


class NotFoundError(ConnectorError):
    """HTTP 404: the base URL, shop domain or API version is wrong."""


class RequestRejectedError(ConnectorError):
    """Another 4xx (or a 404 its caller expects, see `request`'s `fatal_hints`): retrying would
    not help. `status` is the HTTP status."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class RetriesExhaustedError(ConnectorError):
    """Transient failures outlasted the retry budget. `status` is the last HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class RateLimited(Exception):
    """Raised by an `inspect` hook: the body says "slow down"; retry the same request after `delay`."""

    def __init__(self, delay: float, reason: str):
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


class TransientBodyError(Exception):
    """Raised by an `inspect` or `consume` hook: the body is unusable but a retry may succeed."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of the retry loop. Tests pass tiny delays."""

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    retry_after_cap: float = 120.0
    max_rate_limit_waits: int = 50

    def backoff(self, failure_number: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, never above max_delay."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** max(failure_number - 1, 0)))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def make_session(headers: Mapping[str, str] | None = None) -> requests.Session:
    """A `requests.Session` with default headers and urllib3 retries limited to redirects."""
    session = requests.Session()
    session.headers.update({"User-Agent": "clv-platform/0.1", **(headers or {})})
    adapter = HTTPAdapter(
        max_retries=Retry(
            total=None,
            connect=0,
            read=0,
            status=0,
            other=0,
            redirect=5,
            raise_on_status=False,
            respect_retry_after_header=False,
        )
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)


def parse_json(response: requests.Response) -> Any:
    """The JSON body, or `TransientBodyError` when it is truncated or not JSON at all."""
    try:
        return json.loads(response.content)
    except ValueError as exc:
        raise TransientBodyError(f"invalid JSON body ({len(response.content)} bytes): {exc}") from None


@dataclass
class HttpClient:
    """Sends requests for one API through the shared retry loop.

    `fatal_hints` maps 401/403/404 to the sentence naming the setting to fix; `secrets` are
    redacted from every message and log line this client produces.
    """

    service: str
    session: requests.Session
    timeout: tuple[float, float]
    retry: RetryPolicy
    fatal_hints: Mapping[int, str]
    secrets: tuple[str, ...] = ()
    log: Any = None
    rate_limit_waits: int = field(default=0, init=False)
    waited_seconds: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = _module_log

    def _clean(self, text: str) -> str:
        return redact(text, self.secrets)

    def info(self, message: str) -> None:
        self.log.info(self._clean(message))

    def warning(self, message: str) -> None:
        self.log.warning(self._clean(message))

    def wait(self, seconds: float, reason: str) -> None:
        """Sleep for a rate limit or a poll interval, and say why in the log."""
        if seconds <= 0:
            return
        self.waited_seconds += seconds
        self.info(f"{self.service}: waiting {seconds:.2f}s ({reason})")
        sleep(seconds)

    def request_json(
        self,
        method: str,
        url: str,
        *,
        what: str,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        inspect: Callable[[Any], None] | None = None,
        rate_limit_delay: Callable[[Any], float | None] | None = None,
    ) -> Any:
        """Send a request and return its parsed JSON body, retrying transient faults.

        `inspect(body)` may raise `RateLimited` (retry after its delay) or `TransientBodyError`
        (retry with backoff) or a `ConnectorError` (give up). `rate_limit_delay(body)` gives a
        429's wait when the response has no `Retry-After` header.
        """

        def consume(response: requests.Response) -> Any:
            body = parse_json(response)
            if inspect is not None and response.status_code < 400:
                inspect(body)
            return body

        return self.request(method, url, what=what, params=params, json_body=json_body, headers=headers,
                            consume=consume, rate_limit_delay=rate_limit_delay)

    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        consume: Callable[[requests.Response], Any],
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        rate_limit_delay: Callable[[Any], float | None] | None = None,
        session: requests.Session | None = None,
        fatal_hints: Mapping[int, str] | None = None,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
    ) -> Any:
        """The retry loop. `consume(response)` turns a 2xx response into the result.

        `consume` runs inside the loop, so a body that breaks while being read or parsed
        (truncated download, invalid JSON) is retried like any other transient fault. `data` is
        sent form-encoded (OAuth token requests); with `files`, as multipart form fields before
        the files (a staged upload).
        """
        failures = 0
        last_status: int | None = None
        sender = session or self.session
        hints = self.fatal_hints if fatal_hints is None else fatal_hints
        while True:
            try:
                response = sender.request(
                    method,
                    url,
                    params=params,
                    json=json_body,
                    data=data,
                    files=files,
                    headers=headers,
                    timeout=self.timeout,
                    stream=stream,
                )
            except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                    requests.exceptions.InvalidSchema) as exc:
                raise ConnectorError(self._clean(f"{self.service}: invalid URL for {what}: {exc}")) from None
            except requests.exceptions.RequestException as exc:
                failures += 1
                self._backoff(failures, what, f"{type(exc).__name__}: {exc}", last_status)
                continue

            with response:
                status = response.status_code
                last_status = status
                if status in hints:
                    raise self._fatal(status, hints[status], response, what)
                if status == 429:
                    self._rate_limited(response, what, rate_limit_delay)
                    continue
                if status >= 500:
                    failures += 1
                    self._backoff(failures, what, f"HTTP {status}: {self._excerpt(response)}", status)
                    continue
                if status >= 400:
                    raise RequestRejectedError(
                        self._clean(f"{self.service} rejected {what} (HTTP {status}): {self._excerpt(response)}"),
                        status=status,
                    )
                try:
                    return consume(response)
                except ConnectorError as exc:
                    # `consume`/`inspect` build messages from response bodies, which may echo
                    # request headers: no error leaves this loop unredacted.
                    exc.args = tuple(self._clean(str(arg)) for arg in exc.args) or exc.args
                    raise
                except RateLimited as limited:
                    self._count_rate_limit_wait(what, status)
                    self.wait(min(limited.delay, self.retry.retry_after_cap), f"{limited.reason}; retrying {what}")
                except TransientBodyError as exc:
                    failures += 1
                    self._backoff(failures, what, str(exc), status)
                except requests.exceptions.RequestException as exc:
                    failures += 1
                    self._backoff(failures, what, f"{type(exc).__name__} while reading body: {exc}", status)

    def _backoff(self, failures: int, what: str, reason: str, status: int | None) -> None:
        if failures >= self.retry.max_attempts:
            raise RetriesExhaustedError(
                self._clean(
                    f"{self.service}: {what} failed {failures} times in a row; last error: {reason}"
                ),
                status=status,
            )
        delay = self.retry.backoff(failures)
        self.warning(
            f"{self.service}: {what} failed ({reason}); retry {failures}/{self.retry.max_attempts - 1} "
            f"in {delay:.2f}s"
        )
        sleep(delay)

    def _count_rate_limit_wait(self, what: str, status: int) -> None:
        self.rate_limit_waits += 1
        if self.rate_limit_waits > self.retry.max_rate_limit_waits:
            raise RetriesExhaustedError(
                f"{self.service}: still rate limited after {self.retry.max_rate_limit_waits} waits ({what})",
                status=status,
            )

    def _rate_limited(
        self,
        response: requests.Response,
        what: str,
        rate_limit_delay: Callable[[Any], float | None] | None,
    ) -> None:
        self._count_rate_limit_wait(what, 429)
        delay = parse_retry_after(response.headers.get("Retry-After"))
        source = "Retry-After"
        if delay is None and rate_limit_delay is not None:
            try:
                delay = rate_limit_delay(json.loads(response.content))
                source = "response body"
            except ValueError:
                delay = None
        if delay is None:
            delay = self.retry.backoff(self.rate_limit_waits)
            source = "backoff"
        self.wait(
            min(delay, self.retry.retry_after_cap), f"HTTP 429 rate limited, delay from {source}; retrying {what}"
        )

    def _fatal(self, status: int, hint: str, response: requests.Response, what: str) -> ConnectorError:
        kind = {401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError}.get(status, ConnectorError)
        return kind(self._clean(f"{hint} [{what}; server said: {self._excerpt(response)}]"))

    def _excerpt(self, response: requests.Response) -> str:
        """The body as one redacted line of at most 300 characters (redacted first, then cut)."""
        try:
            text = response.content.decode("utf-8", errors="replace")
        except requests.exceptions.RequestException:
            return "<unreadable body>"
        return excerpt(text, _BODY_EXCERPT, self.secrets)


def utc_iso(value: datetime) -> str:
    """ISO-8601 UTC with a `Z`; naive datetimes are taken as UTC (the assets pass naive UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RecentKeys:
    """Keys seen on the current and previous page, to drop a record repeated across adjacent pages.

    Keeping two pages bounds memory on multi-million-record syncs; with results sorted by
    update time a record can only reappear on the neighbouring page.
    """

    def __init__(self) -> None:
        self._previous: set = set()
        self._current: set = set()

    def new_page(self) -> None:
        self._previous, self._current = self._current, set()

    def first_time(self, key: Any) -> bool:
        if key in self._current or key in self._previous:
            return False
        self._current.add(key)
        return True


class HttpConnectorResource(dg.ConfigurableResource):
    """Timeout and retry settings shared by the live API resources (one definition, one loop)."""

    connect_timeout_seconds: float = Field(default=10.0, description="TCP/TLS connect timeout per request.")
    timeout_seconds: float = Field(default=60.0, description="Read timeout per request (between bytes).")
    max_retries: int = Field(default=5, description="Retries of a transient failure (5xx, reset, timeout, bad JSON).")
    backoff_base_seconds: float = Field(default=1.0, description="First backoff delay; doubles per retry.")
    backoff_max_seconds: float = Field(default=60.0, description="Upper bound of one backoff delay.")
    retry_after_cap_seconds: float = Field(default=120.0, description="Longest rate-limit wait honoured at once.")
    max_rate_limit_waits: int = Field(default=100, description="Rate-limit waits allowed in one sync.")

    def _retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_retries + 1,
            base_delay=self.backoff_base_seconds,
            max_delay=self.backoff_max_seconds,
            retry_after_cap=self.retry_after_cap_seconds,
            max_rate_limit_waits=self.max_rate_limit_waits,
        )

    def _http_client(
        self,
        service: str,
        headers: Mapping[str, str],
        fatal_hints: Mapping[int, str],
        secrets: tuple[str, ...],
        log: Any,
    ) -> HttpClient:
        return HttpClient(
            service=service,
            session=make_session(headers),
            timeout=(self.connect_timeout_seconds, self.timeout_seconds),
            retry=self._retry_policy(),
            fatal_hints=fatal_hints,
            secrets=secrets,
            log=log,
        )
