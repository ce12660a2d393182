"""The Zalo OA's state in the database, on both databases: one token rotation per expiry across workers, and
one pause (told once) when several workers hear a balance error at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.zalo import APP_ID, ZaloServer
from touchflow.activities.zalo_tokens import StoreSendingHold, StoreTokenProvider
from touchflow.channels import build_channels
from touchflow.channels.base import OutboundMessage
from touchflow.channels.errors import PermanentDeliveryError
from touchflow.channels.zalo_zns import BALANCE_HOLD, ZaloZns, tracking_id
from touchflow.db import make_engine
from touchflow.settings import Settings
from touchflow.storage import Store

MESSAGES_PER_WORKER = 6


@pytest.fixture
def workers(
    db_url: str, zalo: ZaloServer, make_settings: Callable[..., Settings]
) -> Iterator[list[tuple[Store, ZaloZns]]]:
    """Two "workers": each with its own engine, Store, token provider and channel, on one database."""
    settings = make_settings(**zalo.settings())
    built: list[tuple[Store, ZaloZns]] = []
    for _ in range(2):
        store = Store(make_engine(db_url))
        channel = build_channels(
            settings,
            zalo_tokens=StoreTokenProvider.from_settings(settings, store),
            zalo_hold=StoreSendingHold.from_settings(settings, store),
        )["zalo_zns"]
        assert isinstance(channel, ZaloZns)
        built.append((store, channel))
    yield built
    for store, _ in built:
        store.engine.dispose()


def _message(key: str) -> OutboundMessage:
    content = {"template_id": "231245", "param_order_code": key}
    return OutboundMessage(key=key, address="0912345678", content=content)


async def _burst(workers: list[tuple[Store, ZaloZns]], round_: str) -> list[str]:
    sends = [
        (channel, f"{round_}-w{number}-{n}")
        for number, (_, channel) in enumerate(workers)
        for n in range(MESSAGES_PER_WORKER)
    ]
    await asyncio.gather(*(channel.send(_message(key)) for channel, key in sends))
    return [key for _, key in sends]


async def test_the_token_rotates_exactly_once_per_expiry_across_workers(
    workers: list[tuple[Store, ZaloZns]], zalo: ZaloServer
) -> None:
    zalo.refresh_delay = 0.2  # both workers ask while the first refresh is still in flight
    first = await _burst(workers, "a")
    assert zalo.refreshes == 1  # the seed was used once, by one worker

    zalo.expire_tokens()
    second = await _burst(workers, "b")
    assert zalo.refreshes == 2  # one refresh for the expiry, though twelve sends met -124
    assert zalo.token_errors == []  # nobody presented a used refresh token

    assert zalo.arrivals() == {tracking_id(key): 1 for key in first + second}
    for store, _ in workers:
        stored = store.tokens.get(APP_ID)
        assert stored is not None
        assert stored.refresh_token == zalo.refresh_token
        assert stored.access_token in zalo.access_tokens
        assert stored.rotations == 2


async def test_a_new_seed_restarts_the_chain(
    workers: list[tuple[Store, ZaloZns]], zalo: ZaloServer, make_settings: Callable[..., Settings]
) -> None:
    store, channel = workers[0]
    await channel.send(_message("before"))
    # The operator pastes a fresh refresh token (say the old chain lapsed): it wins over the stored one.
    zalo.refresh_token = "rt-pasted"
    zalo.expire_tokens()
    settings = make_settings(**zalo.settings(zalo_refresh_token="rt-pasted"))
    fresh = build_channels(settings, zalo_tokens=StoreTokenProvider.from_settings(settings, store))
    await fresh["zalo_zns"].send(_message("after"))
    assert zalo.refreshes == 2 and zalo.token_errors == []
    stored = store.tokens.get(APP_ID)
    assert stored is not None and stored.refresh_token == zalo.refresh_token


async def test_a_balance_error_heard_by_two_workers_pauses_zns_once_and_says_so_once(
    workers: list[tuple[Store, ZaloZns]], zalo: ZaloServer, caplog: pytest.LogCaptureFixture
) -> None:
    await workers[0][1].send(_message("warm"))  # the token row exists, as it does after any send
    now = datetime.now(UTC)
    for _, channel in workers:
        channel.clock = lambda: now
    zalo.fail(-115, -137)
    with caplog.at_level(logging.ERROR, logger="touchflow.channels.zalo_zns"):
        results = await asyncio.gather(
            *(channel.send(_message(f"w{n}")) for n, (_, channel) in enumerate(workers)),
            return_exceptions=True,
        )
    assert all(isinstance(result, PermanentDeliveryError) for result in results)
    [loud] = [r for r in caplog.records if r.getMessage() == "zalo zns paused"]
    assert loud.levelno == logging.ERROR and loud.__dict__["zalo_error"] in (-115, -137)
    for store, _ in workers:
        held = store.tokens.held(APP_ID)
        assert held is not None and held[0] == now + BALANCE_HOLD


def test_a_pause_starts_once_and_again_only_after_it_ended(store: Store) -> None:
    store.tokens.rotate(APP_ID, "rt-seed", None, lambda rt: ("at", "rt-2", 3600.0), timedelta(0))
    now = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
    assert store.tokens.held(APP_ID) is None
    assert store.tokens.hold(APP_ID, "-115", now, now + BALANCE_HOLD)
    assert not store.tokens.hold(APP_ID, "-137", now + timedelta(hours=1), now + timedelta(hours=13))
    assert store.tokens.held(APP_ID) == (now + BALANCE_HOLD, "-115")
    later = now + BALANCE_HOLD
    assert store.tokens.hold(APP_ID, "-137", later, later + BALANCE_HOLD)
    assert store.tokens.held(APP_ID) == (later + BALANCE_HOLD, "-137")
