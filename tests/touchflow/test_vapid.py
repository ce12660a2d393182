"""VAPID keys: generated pairs load back, every accepted format reads, bad ones name the setting only."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from touchflow.encoding import b64url_decode
from touchflow.vapid import generate, load_private_key, public_key


def test_a_generated_pair_belongs_together() -> None:
    keys = generate()
    assert len(b64url_decode(keys.private_key)) == 32
    point = b64url_decode(keys.public_key)
    assert len(point) == 65 and point[0] == 0x04
    assert public_key(load_private_key(keys.private_key)) == keys.public_key


def _formats() -> list[tuple[str, str]]:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    expected = public_key(key)
    return [
        (base64.urlsafe_b64encode(raw).decode().rstrip("="), expected),
        (base64.b64encode(der).decode(), expected),
        (pem.decode(), expected),
    ]


@pytest.mark.parametrize(("text", "expected"), _formats(), ids=["raw", "der", "pem"])
def test_private_keys_read_in_every_format(text: str, expected: str) -> None:
    assert public_key(load_private_key(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "secret-but-wrong",
        base64.urlsafe_b64encode(b"x" * 31).decode(),
        # A key on another curve is no VAPID key.
        ec.generate_private_key(ec.SECP384R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode(),
    ],
    ids=["junk", "short", "p384"],
)
def test_a_bad_key_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(ValueError, match="TOUCHFLOW_VAPID_PRIVATE_KEY is not a P-256 private key") as caught:
        load_private_key(text)
    assert text not in str(caught.value)
