"""HMAC signatures with `TOUCHFLOW_SECRET_KEY`: unsubscribe links, tracked links, onsite customer tokens.

A token is `<base64url payload>.<base64url HMAC-SHA256>`; the MAC covers a purpose, so a token made for
one use cannot open another. The onsite customer token is the exception: a plain hex HMAC of the customer id,
because a site's backend must be able to compute it with one line of any language.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("TOUCHFLOW_SECRET_KEY is empty: set it to a long random string")
        self._key = secret.encode()

    def _mac(self, purpose: str, payload: bytes) -> bytes:
        # 128 bits of HMAC-SHA256 keep links short and are far beyond guessing.
        return hmac.new(self._key, purpose.encode() + b"\0" + payload, hashlib.sha256).digest()[:16]

    def sign(self, purpose: str, value: str) -> str:
        payload = value.encode()
        return f"{_b64(payload)}.{_b64(self._mac(purpose, payload))}"

    def unsign(self, purpose: str, token: str) -> str | None:
        """The signed value, or None when the token is malformed or was not signed by us for `purpose`."""
        try:
            payload_b64, mac_b64 = token.split(".", 1)
            payload, mac = _unb64(payload_b64), _unb64(mac_b64)
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(mac, self._mac(purpose, payload)):
            return None
        try:
            return payload.decode()
        except UnicodeDecodeError:
            return None

    def customer_token(self, customer_id: str) -> str:
        """A customer's onsite inbox token: hex HMAC-SHA256 of the id under the secret key.

        Computed by the site's backend the same way (identity verification in Intercom's style), so the page
        can prove which customer it shows without holding any secret; docs/channels/onsite.md has snippets.
        """
        return hmac.new(self._key, customer_id.encode(), hashlib.sha256).hexdigest()

    def check_customer_token(self, customer_id: str, token: str) -> bool:
        """Constant-time: does `token` open this customer's inbox?"""
        expected = self.customer_token(customer_id).encode()
        return hmac.compare_digest(expected, token.strip().lower().encode())
