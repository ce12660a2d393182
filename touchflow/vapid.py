"""VAPID (RFC 8292) keys: make a pair, read the private key from settings, derive the public key.

The private key travels as base64url of its 32 raw bytes (the form `touchflow vapid-keys` prints and the
`web-push` tools use); PEM and base64 DER are read too. The public key is base64url of the 65-byte
uncompressed P-256 point: what a browser's `pushManager.subscribe({applicationServerKey})` takes.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from touchflow.encoding import b64url_decode, b64url_encode

_SETTING = "TOUCHFLOW_VAPID_PRIVATE_KEY"


@dataclass(frozen=True)
class VapidKeys:
    private_key: str
    public_key: str


def generate() -> VapidKeys:
    key = ec.generate_private_key(ec.SECP256R1())
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    return VapidKeys(private_key=b64url_encode(raw), public_key=public_key(key))


def load_private_key(text: str) -> ec.EllipticCurvePrivateKey:
    """The P-256 private key in `text`; the ValueError names the setting, never the value."""
    text = text.strip()
    invalid = ValueError(
        f"{_SETTING} is not a P-256 private key (base64url raw, base64 DER or PEM): "
        "generate one with `touchflow vapid-keys`"
    )
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            raw = b64url_decode(text.replace("\n", "").replace("+", "-").replace("/", "_"))
            if len(raw) == 32:
                key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
            else:
                key = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError):
        raise invalid from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise invalid
    return key


def public_key(key: ec.EllipticCurvePrivateKey) -> str:
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url_encode(point)
