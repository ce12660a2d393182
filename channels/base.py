"""The contract every channel adapter follows: what it needs from a customer, its limits, one `send`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Self

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

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build the channel from touchflow's settings; channels that need none just construct."""
        return cls()

    @abstractmethod
    async def send(self, message: OutboundMessage) -> Receipt:
        """Deliver one message, or raise RetryableDeliveryError / PermanentDeliveryError."""
