"""The one redaction function every error path and log line of the platform goes through.

`redact` removes the known secret values (exact match) and then anything shaped like a
credential (Shopify `shp…_` tokens, Klaviyo `pk_` keys, `Authorization`/`token=` pairs, URL
passwords, long opaque letter+digit strings). `excerpt` redacts *before* it shortens a
text: cutting first would leave the front part of a secret that straddles the cut, which
exact-match redaction then no longer recognises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from clv_platform.settings import SECRET_ENV_VARS  # noqa: F401 (re-exported)

REDACTED = "***"

# SECRET_ENV_VARS (declared in settings.py, re-exported here): the run-failure sensor redacts
# their values; the connectors pass their own credentials directly.

_SECRET_PATTERNS: list[tuple[re.Pattern, str]] = [
    # Shopify Admin API tokens and Klaviyo private keys have recognisable prefixes.
    (re.compile(r"\bshp(?:at|ca|pa|ss)_[A-Za-z0-9]+"), REDACTED),
    (re.compile(r"\bpk_[A-Za-z0-9]{10,}"), REDACTED),
    (re.compile(r"(?i)\b(bearer|basic|klaviyo-api-key)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {REDACTED}"),
    # key=value / "key": "value" / Header: value, for anything named like a credential.
    (
        re.compile(
            r"(?i)((?:access[_-]?token|api[_-]?key|apikey|client[_-]?secret|secret|password|passwd|token|"
            r"authorization|x-shopify-access-token|klaviyo-api-key)[\"']?\s*[:=]\s*[\"']?)([^\s\"',;&)}\]]+)"
        ),
        rf"\1{REDACTED}",
    ),
    # Credentials inside URLs: scheme://user:password@host
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), rf"\1{REDACTED}@"),
    # Long opaque strings mixing letters and digits (keys, hashes); UUIDs keep their dashes and survive.
    (
        re.compile(r"(?<![A-Za-z0-9_])(?=[A-Za-z0-9_]*\d)(?=[A-Za-z0-9_]*[A-Za-z])[A-Za-z0-9_]{32,}(?![A-Za-z0-9_])"),
        REDACTED,
    ),
]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every value in `secrets` (4+ chars) and every credential-shaped string replaced by `***`.

    Longer secrets go first so that a secret containing a shorter one is removed whole.
    """
    text = str(text)
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def excerpt(text: str, limit: int, secrets: Iterable[str] = ()) -> str:
    """A one-line excerpt of at most `limit` characters (+ "…"), redacted before it is cut."""
    clean = " ".join(redact(text, secrets).split())
    return clean[:limit] + ("…" if len(clean) > limit else "")


def env_secrets(env: Mapping[str, str]) -> tuple[str, ...]:
    """The values of the credential environment variables present in `env`."""
    return tuple(v for v in (env.get(name) for name in SECRET_ENV_VARS) if v)
