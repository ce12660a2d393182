"""The contract every channel adapter follows: what it needs from a customer, its limits, one `send`."""

from __future__ import annotations

import asyncio
import weakref
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar

if TYPE_CHECKING:
    from touchflow.settings import Settings


class Reach(StrEnum):
    """What a channel needs to know about a customer to reach them."""

    EMAIL = "email"
    PHONE = "phone"
    PUSH_SUBSCRIPTION = "push_subscription"
    CUSTOMER_ID = "customer_id"


@dataclass(frozen=True)
class OutboundMessage:
    """A rendered message for one recipient on one channel.

    `key` is the business idempotency key of the delivery (journey, customer, entry, step); channels derive
    the provider's own idempotency handle from it (SMTP Message-ID, Zalo tracking_id).
    `content` holds the rendered template parts the channel accepts (`Channel.parts`, `Channel.accepts`).
    """

    key: str
    address: str
    content: dict[str, str]
    marketing: bool = True
    unsubscribe_url: str | None = None
    locale: str = "en"
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    provider_id: str | None = None


@dataclass(frozen=True)
class Recipient:
    """One address to send a step to; a push subscription (a customer may have several) carries its id."""

    address: str
    subscription_id: int | None = None


class Addressee(Protocol):
    """What a channel may read of a customer to reach them (the profile; never more)."""

    id: str
    email: str | None
    phone: str | None


class Directory(Protocol):
    """Where a channel looks up what the profile does not hold: the worker's store, behind this seam."""

    async def push_subscriptions(self, customer_id: str) -> list[Recipient]: ...

    async def is_suppressed(self, channel: str, address: str) -> bool: ...


T = TypeVar("T")


class Kept(Generic[T]):
    """What a channel keeps open between sends (its connections to the provider), one per event loop, since
    connections belong to the loop that opened them: made on first use, let go of by `aclose` (the channel's
    own, when its worker stops)."""

    def __init__(self, make: Callable[[], T], close: Callable[[T], Awaitable[object]]) -> None:
        self._make = make
        self._close = close
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        # What a loop that has ended kept refers to that loop: the weak key alone would never let go of it.
        for ended in [each for each in self._by_loop if each.is_closed()]:
            del self._by_loop[ended]
        kept = self._by_loop.get(loop)
        if kept is None:
            kept = self._by_loop[loop] = self._make()
        return kept

    async def aclose(self) -> None:
        kept = self._by_loop.pop(asyncio.get_running_loop(), None)
        if kept is not None:
            await self._close(kept)


class Channel(ABC):
    """One delivery channel. Subclasses declare their needs and limits as class attributes.

    `parts` are the rendered template parts the channel takes; `required_parts` those it cannot send without.
    The delivery code checks `missing_parts` once per step, before `send`, so `send` may rely on them.
    """

    name: ClassVar[str]
    reaches: ClassVar[Reach]
    parts: ClassVar[tuple[str, ...]]
    required_parts: ClassVar[tuple[str, ...]] = ()
    max_payload: ClassVar[int | None] = None

    @classmethod
    def accepts(cls, part: str) -> bool:
        """Whether a rendered template part is for this channel (`parts`; a channel may take a family)."""
        return part in cls.parts

    @classmethod
    def missing_parts(cls, content: Mapping[str, str]) -> list[str]:
        """The `required_parts` that rendered `content` lacks or renders blank, in declared order."""
        return [part for part in cls.required_parts if not content.get(part, "").strip()]

    async def recipients(self, customer: Addressee, directory: Directory) -> list[Recipient]:
        """Every address of the customer on this channel, by what it `reaches`: one at most, except one per
        push subscription; none when the address is suppressed (a hard bounce, an invalid number)."""
        if self.reaches is Reach.PUSH_SUBSCRIPTION:
            return await directory.push_subscriptions(customer.id)
        address = {Reach.EMAIL: customer.email, Reach.PHONE: customer.phone}.get(self.reaches, customer.id)
        if address is None:
            return []
        if self.reaches in (Reach.EMAIL, Reach.PHONE) and await directory.is_suppressed(self.name, address):
            return []  # nothing bypasses a suppression
        return [Recipient(address)]

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build the channel from touchflow's settings; channels that need none just construct."""
        return cls()

    @abstractmethod
    async def send(self, message: OutboundMessage) -> Receipt:
        """Deliver one message, or raise RetryableDeliveryError / PermanentDeliveryError."""

    async def aclose(self) -> None:
        """Let go of what the channel keeps open between sends (`Kept`: SMTP sessions, HTTP connections),
        when its worker stops; a channel that keeps nothing open has nothing to do."""
        return None
