"""base64url without padding (RFC 4648 §5): the one helper for tokens, cursors and keys in URLs."""

from __future__ import annotations

import base64
import binascii
import re

_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Strict base64url (padding optional): raises ValueError on any character outside the alphabet."""
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url: use only A-Z, a-z, 0-9, '-' and '_'")
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except binascii.Error:
        raise ValueError("not base64url: wrong length") from None
