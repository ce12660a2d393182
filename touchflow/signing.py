"""Signed tokens under `TOUCHFLOW_SECRET_KEY`: unsubscribe links, tracked links, inbox stream tickets, the
dashboard's session cookie, and the onsite customer token.

A token is `<key id>.<base64url payload>.<base64url MAC>`. Each purpose has a key of its own, derived from
the secret (HKDF-SHA256, RFC 5869: extract with a fixed salt, expand with the purpose), so a token made for
one use cannot open another. The key id names the secret that signed it, so `TOUCHFLOW_PREVIOUS_SECRET_KEYS`
keeps old links working after the secret changes; a token of any other key is refused. The payload holds an
expiry when the token has one (stream tickets).

Two older forms are still accepted, for verifying only:
- links sent before key ids existed, `<payload>.<HMAC-SHA256(secret, purpose NUL payload)>`, for the purposes
  that were in messages then (unsubscribe, open, click): an unsubscribe link never expires;
- the onsite customer token, as documented for shops: hex HMAC-SHA256(secret, customer id), which a site's
  backend computes in one line of any language. Its MAC input is the bare id, so ids holding NUL (every older
  link's MAC input holds one) get no token, and no derived key is ever HMAC(secret, text) of anything.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from touchflow.encoding import b64url_decode, b64url_encode
from touchflow.errors import ConfigurationError, InvalidInput

if TYPE_CHECKING:
    from touchflow.settings import Settings

_SALT = b"touchflow signing v1"
# 128 bits of HMAC-SHA256 keep links short and are far beyond guessing.
_MAC_BYTES = 16


class Purpose(StrEnum):
    UNSUBSCRIBE = "unsubscribe"  # an unsubscribe link: the customer id; never expires
    OPEN = "open"  # the open pixel: the delivery id
    CLICK = "click"  # a tracked link: `<delivery id>|<url>`
    STREAM_TICKET = "inbox-stream-ticket"  # opens one customer's inbox stream for a minute: the customer id
    DASHBOARD_SESSION = "dashboard-session"  # the dashboard's session cookie: the id of the API key signed in


# The purposes whose tokens went out in messages before key ids, in the form they had then.
_LEGACY = frozenset({Purpose.UNSUBSCRIBE, Purpose.OPEN, Purpose.CLICK})


def _hkdf(prk: bytes, info: bytes) -> bytes:
    """HKDF-Expand (RFC 5869) for one block of SHA-256."""
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


class _Key:
    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        prk = hmac.new(_SALT, self.secret, hashlib.sha256).digest()  # HKDF-Extract
        self.id = b64url_encode(_hkdf(prk, b"key id")[:3])
        self.purposes = {purpose: _hkdf(prk, b"purpose " + purpose.encode()) for purpose in Purpose}

    def mac(self, purpose: Purpose, signed: bytes) -> bytes:
        return hmac.new(self.purposes[purpose], signed, hashlib.sha256).digest()[:_MAC_BYTES]

    def legacy_mac(self, purpose: Purpose, payload: bytes) -> bytes:
        message = purpose.encode() + b"\0" + payload
        return hmac.new(self.secret, message, hashlib.sha256).digest()[:_MAC_BYTES]

    def customer_token(self, customer_id: str) -> str:
        return hmac.new(self.secret, customer_id.encode(), hashlib.sha256).hexdigest()


class Signer:
    """Signs with `secret`, verifies with it and the `previous` ones; `clock` (unix seconds) judges expiry."""

    def __init__(
        self, secret: str, previous: Iterable[str] = (), *, clock: Callable[[], float] = time.time
    ) -> None:
        if not secret:
            raise ConfigurationError("TOUCHFLOW_SECRET_KEY is empty: set it to a long random string")
        previous = list(previous)
        if not all(previous):
            raise ConfigurationError(
                "TOUCHFLOW_PREVIOUS_SECRET_KEYS: an entry is empty; list old secrets, comma-separated"
            )
        self._current = _Key(secret)
        self._keys = [self._current, *(_Key(old) for old in previous)]
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> Signer:
        """The signer of TOUCHFLOW_SECRET_KEY and TOUCHFLOW_PREVIOUS_SECRET_KEYS; ValueError when unset."""
        previous = [old.get_secret_value() for old in settings.previous_secret_keys]
        return cls(settings.secret_key.get_secret_value(), previous)

    def sign(self, purpose: Purpose, value: str, *, ttl: timedelta | None = None) -> str:
        expires = "" if ttl is None else str(math.ceil(self.clock() + ttl.total_seconds()))
        payload = b64url_encode(f"{expires}:{value}".encode())
        head = f"{self._current.id}.{payload}"
        return f"{head}.{b64url_encode(self._current.mac(purpose, head.encode()))}"

    def unsign(self, purpose: Purpose, token: str) -> str | None:
        """The signed value, or None when the token is malformed, expired, or was not signed for `purpose` by
        one of our keys."""
        parts = token.split(".")
        if len(parts) == 2 and purpose in _LEGACY:
            return self._unsign_legacy(purpose, *parts)
        if len(parts) != 3:
            return None
        kid, payload_b64, mac_b64 = parts
        try:
            mac, payload = b64url_decode(mac_b64), b64url_decode(payload_b64)
        except ValueError:
            return None
        head = f"{kid}.{payload_b64}".encode()
        if not any(hmac.compare_digest(mac, k.mac(purpose, head)) for k in self._keys if k.id == kid):
            return None
        try:
            expires, _, value = payload.decode().partition(":")
        except UnicodeDecodeError:
            return None
        if expires and (not expires.isdigit() or int(expires) <= self.clock()):
            return None
        return value

    def _unsign_legacy(self, purpose: Purpose, payload_b64: str, mac_b64: str) -> str | None:
        try:
            payload, mac = b64url_decode(payload_b64), b64url_decode(mac_b64)
        except ValueError:
            return None
        if not any(hmac.compare_digest(mac, k.legacy_mac(purpose, payload)) for k in self._keys):
            return None
        try:
            return payload.decode()
        except UnicodeDecodeError:
            return None

    def customer_token(self, customer_id: str) -> str:
        """A customer's onsite inbox token: hex HMAC-SHA256 of the id under the current secret key.

        Computed by the site's backend the same way (identity verification in Intercom's style), so the page
        can prove which customer it shows without holding any secret; docs/channels/onsite.md has snippets.
        """
        if "\0" in customer_id:
            raise InvalidInput("customer_id: an inbox token is not made for an id holding a NUL character")
        return self._current.customer_token(customer_id)

    def check_customer_token(self, customer_id: str, token: str) -> bool:
        """Constant-time: does `token` open this customer's inbox (under the current or a previous key)?"""
        if "\0" in customer_id:
            return False
        presented = token.strip().lower().encode()
        found = False
        for key in self._keys:  # every key compared, so the time says nothing of which one matched
            found |= hmac.compare_digest(key.customer_token(customer_id).encode(), presented)
        return found
