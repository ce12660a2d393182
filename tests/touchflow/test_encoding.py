"""The one base64url helper: unpadded out, strict in."""

from __future__ import annotations

import pytest

from touchflow.encoding import b64url_decode, b64url_encode


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xfb\xff", b"cus_123|2024-01-01T00:00:00+00:00"])
def test_round_trip_without_padding(data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64url_decode(text) == data


@pytest.mark.parametrize("text", ["a+b/", "abc$", "a b", "a"])
def test_b64url_is_strict(text: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(text)
