"""Signed tokens: a purpose per token type, a key id for rotation, expiry on a settable clock."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from itertools import permutations

import pytest

from tests.api.conftest import customer_token
from touchflow.encoding import b64url_encode
from touchflow.signing import Purpose, Signer

OLD = "the-old-secret-key-that-is-long-enough"
NEW = "the-new-secret-key-that-is-long-enough"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def legacy(secret: str, purpose: str, value: str) -> str:
    """A link as touchflow signed them before key ids: `<payload>.<MAC of purpose NUL payload>`."""
    payload = value.encode()
    mac = hmac.new(secret.encode(), purpose.encode() + b"\0" + payload, hashlib.sha256).digest()[:16]
    return f"{b64url_encode(payload)}.{b64url_encode(mac)}"


def test_a_token_opens_only_its_own_purpose() -> None:
    signer = Signer(NEW)
    for made_for, used_for in permutations(Purpose, 2):
        token = signer.sign(made_for, "c1", ttl=timedelta(seconds=60))
        assert signer.unsign(made_for, token) == "c1"
        assert signer.unsign(used_for, token) is None, (made_for, used_for)


def test_a_stream_ticket_and_an_unsubscribe_token_do_not_stand_in_for_each_other() -> None:
    signer = Signer(NEW)
    ticket = signer.sign(Purpose.STREAM_TICKET, "c1", ttl=timedelta(seconds=60))
    unsubscribe = signer.sign(Purpose.UNSUBSCRIBE, "c1")
    assert signer.unsign(Purpose.UNSUBSCRIBE, ticket) is None
    assert signer.unsign(Purpose.STREAM_TICKET, unsubscribe) is None


def test_a_ticket_expires_on_the_clock() -> None:
    clock = Clock()
    signer = Signer(NEW, clock=clock)
    ticket = signer.sign(Purpose.STREAM_TICKET, "c1", ttl=timedelta(seconds=60))
    clock.now += 59
    assert signer.unsign(Purpose.STREAM_TICKET, ticket) == "c1"
    clock.now += 2
    assert signer.unsign(Purpose.STREAM_TICKET, ticket) is None


def test_a_token_signed_with_the_previous_secret_verifies_after_rotation() -> None:
    before = Signer(OLD)
    link = before.sign(Purpose.UNSUBSCRIBE, "c1")
    after = Signer(NEW, previous=[OLD])
    assert after.unsign(Purpose.UNSUBSCRIBE, link) == "c1"
    assert after.check_customer_token("c1", before.customer_token("c1"))
    # New tokens are signed with the new secret, and name it: the old one alone does not open them.
    fresh = after.sign(Purpose.UNSUBSCRIBE, "c1")
    assert fresh.split(".")[0] != link.split(".")[0]
    assert Signer(OLD).unsign(Purpose.UNSUBSCRIBE, fresh) is None


def test_a_token_of_an_unknown_key_does_not_verify() -> None:
    stranger = Signer("a-secret-nobody-configured-here-at-all")
    signer = Signer(NEW, previous=[OLD])
    assert signer.unsign(Purpose.UNSUBSCRIBE, stranger.sign(Purpose.UNSUBSCRIBE, "c1")) is None
    assert not signer.check_customer_token("c1", stranger.customer_token("c1"))
    # Dropped from the previous keys: its tokens stop working.
    assert Signer(NEW).unsign(Purpose.UNSUBSCRIBE, Signer(OLD).sign(Purpose.UNSUBSCRIBE, "c1")) is None


def test_a_forged_key_id_or_mac_does_not_verify() -> None:
    signer = Signer(NEW)
    kid, payload, mac = signer.sign(Purpose.UNSUBSCRIBE, "c1").split(".")
    other = Signer(NEW).sign(Purpose.UNSUBSCRIBE, "c2").split(".")[1]
    for token in (f"AAAA.{payload}.{mac}", f"{kid}.{other}.{mac}", f"{kid}.{payload}.{mac[:-2]}AA", "", "."):
        assert signer.unsign(Purpose.UNSUBSCRIBE, token) is None


def test_links_already_sent_keep_working() -> None:
    """Unsubscribe and tracking links in messages sent before key ids, by either configured secret."""
    signer = Signer(NEW, previous=[OLD])
    for secret in (NEW, OLD):
        assert signer.unsign(Purpose.UNSUBSCRIBE, legacy(secret, "unsubscribe", "c1")) == "c1"
        assert signer.unsign(Purpose.CLICK, legacy(secret, "click", "7|https://shop.example")) is not None
        assert signer.unsign(Purpose.OPEN, legacy(secret, "unsubscribe", "7")) is None
        assert signer.unsign(Purpose.STREAM_TICKET, legacy(secret, "inbox-stream-ticket", "c1")) is None


def test_the_inbox_token_keeps_its_documented_form() -> None:
    """hex HMAC-SHA256(TOUCHFLOW_SECRET_KEY, customer id), as shops compute it (docs/channels/onsite.md)."""
    signer = Signer(NEW)
    assert signer.customer_token("c1") == customer_token("c1", NEW)
    assert signer.check_customer_token("c1", customer_token("c1", NEW).upper())
    assert not signer.check_customer_token("c2", customer_token("c1", NEW))


def test_an_inbox_token_cannot_be_made_into_another_token() -> None:
    """Its MAC input is the bare customer id: an id holding NUL would make it a legacy link's MAC, so such
    ids get no inbox token; derived keys are never HMAC(secret, text), so no id yields one."""
    signer = Signer(NEW)
    with pytest.raises(ValueError, match="customer_id"):
        signer.customer_token("unsubscribe\0c1")
    forged_mac = bytes.fromhex(customer_token("unsubscribe\0c1", NEW))[:16]
    forged = f"{b64url_encode(b'c1')}.{b64url_encode(forged_mac)}"
    assert legacy(NEW, "unsubscribe", "c1") == forged  # the danger is real for such an id...
    assert not signer.check_customer_token("unsubscribe\0c1", customer_token("unsubscribe\0c1", NEW))
    # ...and no customer id's token is a derived key: signing with one gives a token of nobody's.
    for name in ("unsubscribe", "touchflow/unsubscribe", "key id"):
        key = bytes.fromhex(customer_token(name, NEW))
        kid, payload, _ = signer.sign(Purpose.UNSUBSCRIBE, "c1").split(".")
        mac = hmac.new(key, f"{kid}.{payload}".encode(), hashlib.sha256).digest()[:16]
        assert signer.unsign(Purpose.UNSUBSCRIBE, f"{kid}.{payload}.{b64url_encode(mac)}") is None


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="TOUCHFLOW_SECRET_KEY"):
        Signer("")
    with pytest.raises(ValueError, match="TOUCHFLOW_PREVIOUS_SECRET_KEYS"):
        Signer(NEW, previous=[""])
