"""The channel contract: each channel declares the template parts it cannot send without, and finds its own
recipients by what it reaches (the store behind a `Directory`)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from touchflow.channels import REGISTRY, Channel, Reach, Recipient
from touchflow.channels.console import Console
from touchflow.channels.email import Email


@pytest.mark.parametrize(
    ("name", "required"),
    [
        ("email", ("subject", "text", "html")),
        ("web_push", ("title", "body")),
        ("onsite", ("title", "body")),
        ("zalo_zns", ("template_id",)),
        ("console", ()),
    ],
)
def test_each_channel_declares_the_parts_it_needs(name: str, required: tuple[str, ...]) -> None:
    channel = REGISTRY[name]
    assert channel.required_parts == required
    assert all(channel.accepts(part) for part in required)
    assert channel.missing_parts({part: "x" for part in required}) == []
    assert channel.missing_parts({part: " " for part in required}) == list(required)


EMAIL = Email(host="localhost", port=25, sender="a@b.example")


class _Directory:
    """An in-memory `Directory`: what a channel may look up besides the profile."""

    def __init__(self, subscriptions: list[Recipient], suppressed: set[tuple[str, str]]) -> None:
        self.subscriptions, self.suppressed = subscriptions, suppressed

    async def push_subscriptions(self, customer_id: str) -> list[Recipient]:
        return self.subscriptions

    async def is_suppressed(self, channel: str, address: str) -> bool:
        return (channel, address) in self.suppressed


@dataclass
class _Customer:
    id: str = "c1"
    email: str | None = "c1@example.com"
    phone: str | None = None


@pytest.mark.parametrize(
    ("channel", "customer", "suppressed", "expected"),
    [
        (Console(), _Customer(), set(), [Recipient("c1")]),
        (
            EMAIL,
            _Customer(),
            set(),
            [Recipient("c1@example.com")],
        ),
        (
            EMAIL,
            _Customer(),
            {("email", "c1@example.com")},
            [],
        ),
        (EMAIL, _Customer(email=None), set(), []),
    ],
)
async def test_each_channel_finds_its_recipients_by_what_it_reaches(
    channel: Channel, customer: _Customer, suppressed: set[tuple[str, str]], expected: list[Recipient]
) -> None:
    assert await channel.recipients(customer, _Directory([], suppressed)) == expected


async def test_a_push_channel_reaches_every_subscription() -> None:
    devices = [Recipient('{"endpoint": "a"}', 1), Recipient('{"endpoint": "b"}', 2)]

    class Push(Console):
        reaches = Reach.PUSH_SUBSCRIPTION

    assert await Push().recipients(_Customer(), _Directory(devices, set())) == devices
