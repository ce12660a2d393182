"""touchflow.segment: what each Segment message means for touchflow (table-driven, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from touchflow.models import ANONYMOUS_PREFIX
from touchflow.segment import Merge, MessageType, translate

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def one(message: dict[str, Any], **options: Any) -> Any:
    return translate([message], received_at=NOW, **options)


def test_track_is_an_event_named_as_sent_with_its_context() -> None:
    context = {"ip": "203.0.113.9", "library": {"name": "analytics-python", "version": "2.3"}}
    result = one(
        {
            "type": "track",
            "messageId": "m-1",
            "userId": "u-1",
            "event": "Order Completed",
            "properties": {"total": 120},
            "context": context,
        }
    )
    [(index, event)] = result.events
    assert (index, event.id, event.customer_id, event.name) == (0, "m-1", "u-1", "Order Completed")
    assert event.properties == {"total": 120}
    assert event.context == context
    assert not result.dropped and not result.profiles and not result.merges


def test_an_anonymous_visitor_is_a_profile_of_their_own() -> None:
    result = one({"type": "track", "messageId": "m", "anonymousId": "a-9", "event": "cart_updated"})
    assert result.events[0][1].customer_id == ANONYMOUS_PREFIX + "a-9"


@pytest.mark.parametrize("junk", ["null", "anonymous", "0", "-1", "", "  ", "undefined", None, True])
def test_junk_ids_name_nobody(junk: Any) -> None:
    result = one({"type": "track", "messageId": "m", "userId": junk, "event": "x"})
    assert not result.events
    assert "needs a userId or an anonymousId" in result.dropped[0].reason
    # Beside a real anonymous id, a junk user id is no id at all: the event is the visitor's.
    result = one({"type": "track", "messageId": "m", "userId": junk, "anonymousId": "a-1", "event": "x"})
    assert result.events[0][1].customer_id == "anon:a-1"


def test_numeric_user_ids_are_written_as_text() -> None:
    result = one({"type": "track", "messageId": "m", "userId": 42, "event": "x"})
    assert result.events[0][1].customer_id == "42"


def test_page_and_screen_are_view_events_with_their_name() -> None:
    page = one(
        {"type": "page", "messageId": "p", "anonymousId": "a", "name": "Home", "properties": {"url": "/"}}
    )
    assert page.events[0][1].name == "page_viewed"
    assert page.events[0][1].properties == {"url": "/", "name": "Home"}
    screen = one({"messageId": "s", "userId": "u", "name": "Cart"}, kind=MessageType.SCREEN)
    assert (screen.events[0][1].name, screen.events[0][1].properties) == ("screen_viewed", {"name": "Cart"})


def test_identify_maps_reserved_traits_onto_the_profile() -> None:
    result = one(
        {
            "type": "identify",
            "userId": "u-1",
            "traits": {
                "email": "lan@example.vn",
                "phone": "+84901234567",
                "firstName": "Lan",
                "lastName": "Nguyen",
                "plan": "gold",
            },
            "context": {"locale": "vi-VN", "timezone": "Asia/Ho_Chi_Minh"},
        }
    )
    [(_, profile)] = result.profiles
    assert profile.email == "lan@example.vn" and profile.phone == "+84901234567"
    assert (profile.locale, profile.timezone) == ("vi-VN", "Asia/Ho_Chi_Minh")
    assert profile.attributes == {"first_name": "Lan", "last_name": "Nguyen", "plan": "gold"}
    assert not result.merges and not result.events


def test_a_reserved_trait_that_does_not_validate_is_kept_as_an_attribute() -> None:
    result = one({"type": "identify", "userId": "u", "traits": {"email": "not an email", "plan": "x"}})
    [(_, profile)] = result.profiles
    assert profile.email is None
    assert profile.attributes == {"email": "not an email", "plan": "x"}


def test_identify_with_both_ids_merges_the_visitor_into_the_customer() -> None:
    result = one({"type": "identify", "userId": "u-1", "anonymousId": "a-1", "traits": {}})
    assert result.merges == [Merge(0, "anon:a-1", "u-1")]


def test_alias_merges_the_previous_id() -> None:
    result = one({"type": "alias", "userId": "u-1", "previousId": "a-1"})
    assert result.merges == [Merge(0, "anon:a-1", "u-1", previous_id="a-1")]
    assert one({"type": "alias", "userId": "u-1", "previousId": "null"}).dropped


def test_group_puts_the_group_on_the_profile() -> None:
    result = one(
        {"type": "group", "userId": "u", "groupId": "g-7", "traits": {"name": "Acme", "plan": "pro"}}
    )
    assert result.profiles[0][1].attributes == {"group": {"id": "g-7", "name": "Acme", "plan": "pro"}}


def test_the_clock_of_the_sender_is_corrected_with_sent_at() -> None:
    # The phone's clock runs two hours fast; the event happened 30 s before the batch was sent.
    sent = NOW + timedelta(hours=2)
    message = {
        "type": "track",
        "messageId": "m",
        "userId": "u",
        "event": "x",
        "timestamp": (sent - timedelta(seconds=30)).isoformat(),
    }
    result = translate([message], received_at=NOW, sent_at=sent.isoformat().replace("+00:00", "Z"))
    assert result.events[0][1].timestamp == NOW - timedelta(seconds=30)
    # Without sentAt the timestamp stands as sent; without a timestamp it is when received.
    assert one(message).events[0][1].timestamp == sent - timedelta(seconds=30)
    assert one({**message, "timestamp": None}).events[0][1].timestamp == NOW


def test_batch_context_lies_under_each_message_context() -> None:
    messages = [
        {"type": "track", "messageId": "m", "userId": "u", "event": "x", "context": {"ip": "1.2.3.4"}}
    ]
    result = translate(messages, received_at=NOW, context={"ip": "9.9.9.9", "library": {"name": "x"}})
    assert result.events[0][1].context == {"ip": "1.2.3.4", "library": {"name": "x"}}


def test_message_ids_that_cannot_be_event_ids_are_hashed_the_same_way_every_time() -> None:
    message = {"type": "track", "messageId": "has spaces/and slashes", "userId": "u", "event": "x"}
    first, second = one(message).events[0][1].id, one(dict(message)).events[0][1].id
    assert first == second and first.startswith("seg-")
    no_id = {"type": "track", "userId": "u", "event": "x", "timestamp": "2026-12-01T11:00:00Z"}
    assert one(no_id).events[0][1].id == one(dict(no_id)).events[0][1].id


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("text", "a message is a JSON object"),
        ({"type": "purchase", "userId": "u"}, "`type` must be one of"),
        ({"type": "track", "userId": "u"}, "needs an `event` name"),
        ({"type": "track", "userId": "u", "event": "x", "timestamp": "1999-01-01T00:00:00Z"}, "timestamp"),
        ({"type": "track", "userId": "u" * 200, "event": "x"}, "userId cannot name a customer"),
        ({"type": "identify", "userId": "u", "anonymousId": "a" * 124}, "anonymousId cannot name a customer"),
        ({"type": "alias", "userId": "u", "previousId": "p/1"}, "previousId cannot name a customer"),
        ({"type": "track", "userId": "anon:x", "event": "x"}, "must not start with 'anon:'"),
        ({"type": "group", "userId": "u"}, "needs a groupId"),
        ({"type": "track", "userId": {"id": 1}, "event": "x"}, "userId must be a string or a number"),
    ],
)
def test_unusable_messages_are_dropped_with_their_reason(message: Any, reason: str) -> None:
    good = {"type": "track", "messageId": "ok", "userId": "u", "event": "x"}
    result = translate([good, message], received_at=NOW)
    assert [index for index, _ in result.events] == [0]
    [dropped] = result.dropped
    assert dropped.index == 1 and reason in dropped.reason


@pytest.mark.parametrize("name", ["segment_entered:vip", "segment_exited:lifecycle:lapsed"])
def test_a_segment_event_a_client_sends_is_dropped_as_reserved(name: str) -> None:
    result = one({"type": "track", "messageId": "m", "userId": "u", "event": name})
    assert result.events == []
    [dropped] = result.dropped
    assert dropped.code == "reserved_name" and "a client cannot send them" in dropped.reason


def test_a_message_over_the_limit_is_dropped_alone() -> None:
    big = {"type": "track", "messageId": "big", "userId": "u", "event": "x", "properties": {"x": "y" * 2000}}
    small = {"type": "track", "messageId": "small", "userId": "u", "event": "x"}
    result = translate([big, small], received_at=NOW, max_message_bytes=1024)
    assert [event.id for _, event in result.events] == ["small"]
    assert "TOUCHFLOW_TRACK_MAX_MESSAGE_BYTES" in result.dropped[0].reason
