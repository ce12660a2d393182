"""Parsing TOUCHFLOW_API_KEYS: plain or hashed keys, scopes, and the errors an operator sees."""

from __future__ import annotations

import pytest

from touchflow.apikeys import Scope, digest, match, new_key, parse_keys


@pytest.mark.parametrize(
    ("entry", "scopes"),
    [
        ("plainkey-123", {Scope.ADMIN}),
        ("ingest:plainkey-123", {Scope.INGEST}),
        ("read+ingest:plainkey-123", {Scope.READ, Scope.INGEST}),
        (f"read:sha256={digest('plainkey-123').hex()}", {Scope.READ}),
    ],
)
def test_entries_give_the_key_its_scopes(entry: str, scopes: set[Scope]) -> None:
    [key] = parse_keys([entry])
    assert key.scopes == scopes
    assert match("plainkey-123", [key]) == key
    assert match("plainkey-124", [key]) is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("short", "at least 8 characters"),
        ("sha256=abcd", "64 hex digits"),
        ("sha256=" + "zz" * 32, "64 hex digits"),
        ("write:plainkey-123", "unknown scope in 'write'"),
    ],
)
def test_bad_entries_say_what_is_wrong(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        parse_keys([entry])
    assert "TOUCHFLOW_API_KEYS" in str(raised.value)


def test_admin_allows_everything_and_others_only_their_scope() -> None:
    admin, ingest = parse_keys(["admin-key-1", "ingest:ingest-key-1"])
    assert all(admin.allows(scope) for scope in Scope)
    assert ingest.allows(Scope.INGEST) and not ingest.allows(Scope.READ)


def test_a_new_key_is_stored_only_as_its_hash() -> None:
    key, entry = new_key([Scope.INGEST])
    assert key not in entry and entry.startswith("ingest:sha256=")
    assert match(key, parse_keys([entry])) is not None
