"""The onsite channel: what it stores, what it refuses, and a journey delivering over it end to end."""

from __future__ import annotations

from typing import Any

import pytest

from touchflow.activities.inbox import StoreInbox
from touchflow.channels import OutboundMessage, PermanentDeliveryError, build_channels
from touchflow.channels.onsite import Onsite
from touchflow.models import CustomerIn, DeliveryStatus
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.testing import JourneyHarness


def message(key: str = "k1", **content: str) -> OutboundMessage:
    return OutboundMessage(key=key, address="c1", content={"title": "Hi", "body": "There", **content})


@pytest.mark.parametrize(
    ("content", "stored_url"),
    [
        ({}, None),
        ({"url": "https://shop.example/cart"}, "https://shop.example/cart"),
        ({"url": "/cart?x=1"}, "/cart?x=1"),
        ({"url": "  "}, None),
        ({"title": "<b>kept as text</b>"}, None),
    ],
)
async def test_stores_the_message(
    sqlite_store: Store, content: dict[str, str], stored_url: str | None
) -> None:
    receipt = await Onsite(StoreInbox(sqlite_store)).send(message(**content))
    [stored] = sqlite_store.inbox.list("c1").messages
    assert receipt.provider_id == f"inbox:{stored.id}"
    assert stored.title == content.get("title", "Hi")
    assert (stored.body, stored.action_url, stored.key) == ("There", stored_url, "k1")


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ({"title": ""}, "empty"),
        ({"body": "   "}, "empty"),
        ({"title": "x" * 201}, "too_long"),
        ({"body": "x" * 4001}, "too_long"),
        ({"url": "javascript:alert(1)"}, "bad_url"),
        ({"url": "data:text/html,hi"}, "bad_url"),
        ({"url": "//evil.example/x"}, "bad_url"),
        ({"url": "https:///nohost"}, "bad_url"),
    ],
)
async def test_refuses_what_the_inbox_cannot_show(
    sqlite_store: Store, content: dict[str, str], code: str
) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        await Onsite(StoreInbox(sqlite_store)).send(message(**content))
    assert caught.value.code == code
    assert sqlite_store.inbox.list("c1").messages == []


async def test_a_repeated_send_stores_once(sqlite_store: Store) -> None:
    channel = Onsite(StoreInbox(sqlite_store))
    first = await channel.send(message())
    again = await channel.send(message())
    assert first == again
    assert len(sqlite_store.inbox.list("c1").messages) == 1


def test_built_only_with_an_inbox(make_settings: Any, sqlite_store: Store) -> None:
    settings: Settings = make_settings()
    assert "onsite" not in build_channels(settings)
    assert isinstance(build_channels(settings, inbox=StoreInbox(sqlite_store))["onsite"], Onsite)


async def test_a_journey_delivers_into_the_inbox(journeys: JourneyHarness) -> None:
    journeys.store.customers.upsert(CustomerIn(id="o1", attributes={"first_name": "Lan"}))
    handle = await journeys.post("o1", "probe", {"probe_id": "p1", "via": ["onsite", "email"]})
    assert (await journeys.outcome(handle)).status == "completed"
    [stored] = journeys.store.inbox.list("o1").messages
    assert (stored.title, stored.body) == ("Probe p1", "Hello Lan, this is probe p1.")
    assert stored.action_url == "https://shop.example/probe/p1"
    [delivery] = journeys.store.deliveries.of_customer("o1")
    assert (delivery.channel, delivery.status) == ("onsite", DeliveryStatus.SENT)
    assert delivery.provider_id == f"inbox:{stored.id}"
    assert journeys.store.inbox.unread_count("o1") == 1
