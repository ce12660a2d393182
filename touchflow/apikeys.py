"""API keys: parsed from TOUCHFLOW_API_KEYS, kept only as SHA-256 hashes, each with its scopes.

An entry is `[scopes:]secret`, where `secret` is the key itself or its hash written `sha256=<64 hex>` (so the
plain key need not sit in the environment), and `scopes` is `+`-joined from `track`, `ingest`, `read`,
`inbox`, `admin` (no scopes means `admin`). Several entries at once allow rotation: add the new key, move the
clients, then drop the old one.

    TOUCHFLOW_API_KEYS="ingest:tfk_site_backend, read+ingest:sha256=9f86d0…, tfk_admin"
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    # The Segment Tracking API only, as a browser page sends it: a key that may be public. It can speak for a
    # known customer (change their profile, merge a visitor into them) only with that customer's token.
    TRACK = "track"
    INGEST = "ingest"  # send profiles, events, push subscriptions (and all `track` may)
    READ = "read"  # read profiles, deliveries, journeys and funnels
    INBOX = "inbox"  # mint onsite inbox customer tokens (GET /v1/inbox/tokens/{id}): they open any inbox
    ADMIN = "admin"  # everything, erasure included


@dataclass(frozen=True)
class ApiKey:
    id: str  # the first 12 hex digits of the hash: names the key in logs and rate limits, reveals nothing
    digest: bytes
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        if scope is Scope.TRACK and Scope.INGEST in self.scopes:
            return True
        return Scope.ADMIN in self.scopes or scope in self.scopes


def digest(key: str) -> bytes:
    # surrogatepass: a presented key is untrusted text (a `writeKey` may hold a lone surrogate); it hashes
    # to no key rather than failing.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def split_entry(entry: str) -> tuple[str, str]:
    """`read+ingest:tfk_…` → ("read+ingest", "tfk_…"); an entry without scopes has ""."""
    scopes_text, _, secret = entry.rpartition(":") if ":" in entry else ("", "", entry)
    return scopes_text, secret


def parse_keys(entries: list[str]) -> list[ApiKey]:
    keys = []
    for entry in entries:
        scopes_text, secret = split_entry(entry)
        if secret.startswith("sha256="):
            hex_digest = secret.removeprefix("sha256=")
            try:
                raw = bytes.fromhex(hex_digest)
            except ValueError:
                raw = b""
            if len(raw) != 32:
                raise ValueError("TOUCHFLOW_API_KEYS: a hashed key is written sha256=<64 hex digits>")
        else:
            if len(secret) < 8:
                raise ValueError("TOUCHFLOW_API_KEYS: every key needs at least 8 characters")
            raw = digest(secret)
        try:
            scopes = frozenset(Scope(s) for s in scopes_text.split("+") if s) or frozenset({Scope.ADMIN})
        except ValueError:
            raise ValueError(
                f"TOUCHFLOW_API_KEYS: unknown scope in {scopes_text!r}; "
                "use track, ingest, read, inbox or admin"
            ) from None
        keys.append(ApiKey(id=raw.hex()[:12], digest=raw, scopes=scopes))
    return keys


def match(presented: str, keys: list[ApiKey]) -> ApiKey | None:
    """The key whose hash matches; every configured key is compared, in constant time."""
    candidate = digest(presented)
    found = None
    for key in keys:
        if hmac.compare_digest(candidate, key.digest):
            found = key
    return found


def new_key(scopes: list[Scope]) -> tuple[str, str]:
    """A fresh key and the TOUCHFLOW_API_KEYS entry that holds only its hash."""
    key = "tfk_" + secrets.token_urlsafe(24)
    prefix = "+".join(scopes) + ":" if scopes else ""
    return key, f"{prefix}sha256={digest(key).hex()}"
