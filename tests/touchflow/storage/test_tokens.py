"""store.tokens.rotate on SQLite and PostgreSQL: seed once, reuse while fresh, keep the pair on errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from touchflow.storage import Store

FRESH_FOR = timedelta(minutes=5)


class Issuer:
    """Stands in for Zalo's OAuth call: hands out numbered pairs and remembers what it was given."""

    def __init__(self, expires_in: float = 3600) -> None:
        self.given: list[str] = []
        self.expires_in = expires_in

    def __call__(self, refresh_token: str) -> tuple[str, str, float]:
        self.given.append(refresh_token)
        n = len(self.given)
        return f"at-{n}", f"rt-{n}", self.expires_in


def test_seeds_once_and_reuses_a_fresh_token(store: Store) -> None:
    issuer = Issuer()
    first = store.tokens.rotate("app", "rt-seed", None, issuer, FRESH_FOR)
    again = store.tokens.rotate("app", "rt-seed", None, issuer, FRESH_FOR)
    assert (first.access_token, again.access_token) == ("at-1", "at-1")
    assert issuer.given == ["rt-seed"]


@pytest.mark.parametrize(
    ("expires_in", "rejected", "refreshed"),
    [
        (3600, "at-1", True),  # Zalo refused the token we hold
        (3600, "at-0", False),  # refused an older one: somebody already refreshed, take theirs
        (60, None, True),  # about to expire
    ],
)
def test_refreshes_only_when_the_stored_token_is_the_refused_or_stale_one(
    store: Store, expires_in: float, rejected: str | None, refreshed: bool
) -> None:
    issuer = Issuer(expires_in)
    store.tokens.rotate("app", "rt-seed", None, issuer, FRESH_FOR)
    token = store.tokens.rotate("app", "rt-seed", rejected, issuer, FRESH_FOR)
    assert (token.access_token == "at-2") is refreshed
    assert issuer.given == (["rt-seed", "rt-1"] if refreshed else ["rt-seed"])
    stored = store.tokens.get("app")
    assert stored is not None and stored.rotations == (2 if refreshed else 1)


def test_a_failed_refresh_keeps_the_stored_pair(store: Store) -> None:
    store.tokens.rotate("app", "rt-seed", None, Issuer(), FRESH_FOR)

    def refused(refresh_token: str) -> tuple[str, str, float]:
        raise RuntimeError("Zalo said no")

    with pytest.raises(RuntimeError):
        store.tokens.rotate("app", "rt-seed", "at-1", refused, FRESH_FOR)
    stored = store.tokens.get("app")
    assert stored is not None
    assert (stored.access_token, stored.refresh_token, stored.rotations) == ("at-1", "rt-1", 1)


def test_without_a_seed_or_a_row_it_names_the_setting(store: Store) -> None:
    with pytest.raises(LookupError, match="TOUCHFLOW_ZALO_REFRESH_TOKEN"):
        store.tokens.rotate("app", "", None, Issuer(), FRESH_FOR)
