"""The web push channel against a loopback push service that checks VAPID and decrypts, then end to end:
the `probe` journey pushing to a customer's devices, dropping gone subscriptions, falling back to email."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.network import NetworkGuard
from tests.support.push_service import PushService, Subscriber
from touchflow.channels import REGISTRY, OutboundMessage, PermanentDeliveryError, RetryableDeliveryError
from touchflow.channels.errors import parse_retry_after
from touchflow.channels.web_push import WebPush, classify
from touchflow.models import CustomerIn, DeliveryStatus
from touchflow.settings import Settings
from touchflow.temporal import free_port
from touchflow.testing import JourneyHarness, SmtpInbox, eventually
from touchflow.vapid import VapidKeys, generate

SUBJECT = "mailto:ops@shop.example"
CONTENT = {"title": "Your cart", "body": "Still thinking it over?", "url": "https://shop.example/cart"}
# The loopback push service speaks plain http: allowed only because it is listed as `http://`.
LOOPBACK = {"push_service_hosts": "http://127.0.0.1"}


@pytest.fixture
async def web_push(
    make_settings: Callable[..., Settings], vapid: VapidKeys
) -> AsyncIterator[Callable[..., WebPush]]:
    made: list[WebPush] = []

    def make(**overrides: Any) -> WebPush:
        values = {"vapid_private_key": vapid.private_key, "vapid_subject": SUBJECT, **LOOPBACK} | overrides
        made.append(WebPush.from_settings(make_settings(**values)))
        return made[-1]

    yield make
    for channel in made:  # as a worker stopping does: the kept connections close
        await channel.aclose()


def message(
    subscriber: Subscriber, content: dict[str, str] | None = None, key: str = "j:c1:1:s"
) -> OutboundMessage:
    return OutboundMessage(key=key, address=json.dumps(subscriber.to_json()), content=content or CONTENT)


# -- sending --------------------------------------------------------------------------------------------


async def test_push_arrives_encrypted_with_vapid_and_a_ttl(
    web_push: Callable[..., WebPush], push_service: PushService
) -> None:
    channel = web_push()
    device = push_service.subscribe()

    receipt = await channel.send(message(device, {**CONTENT, "icon": "https://shop.example/i.png"}))

    assert push_service.refusals == []
    [received] = push_service.received
    assert received.payload == {
        **CONTENT,
        "icon": "https://shop.example/i.png",
        "tag": WebPush.tag("j:c1:1:s"),
    }
    assert received.headers["TTL"] == str(24 * 3600)
    assert received.headers["Topic"] == WebPush.tag("j:c1:1:s")
    assert received.claims["sub"] == SUBJECT
    assert receipt.provider_id is not None
    assert receipt.provider_id.startswith(f"{push_service.origin}/messages/")


async def test_each_send_signs_for_its_own_push_service(
    web_push: Callable[..., WebPush], push_service: PushService, vapid: VapidKeys
) -> None:
    """pywebpush writes `aud` into the claims it gets: a reused dict would sign for the first origin only."""
    other = PushService("127.0.0.1", free_port(), application_server_key=vapid.public_key)
    await other.start()
    try:
        channel = web_push()
        await channel.send(message(push_service.subscribe()))
        await channel.send(message(other.subscribe()))
    finally:
        await other.stop()
    assert push_service.refusals == other.refusals == []
    assert [r.claims["aud"] for r in push_service.received + other.received] == [
        push_service.origin,
        other.origin,
    ]


@pytest.mark.parametrize(
    ("settings", "ttl"),
    [({}, "86400"), ({"push_ttl": "1h"}, "3600"), ({"push_ttl": "0s"}, "0"), ({"push_ttl": "P2D"}, "172800")],
)
async def test_ttl_follows_the_setting(
    web_push: Callable[..., WebPush], push_service: PushService, settings: dict[str, str], ttl: str
) -> None:
    await web_push(**settings).send(message(push_service.subscribe()))
    [received] = push_service.received
    assert received.headers["TTL"] == ttl


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"vapid_private_key": "not-a-key"}, "TOUCHFLOW_VAPID_PRIVATE_KEY is not a P-256 private key"),
        ({"vapid_subject": ""}, "TOUCHFLOW_VAPID_SUBJECT is empty"),
    ],
)
def test_bad_settings_stop_the_channel_at_start(
    web_push: Callable[..., WebPush], settings: dict[str, str], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        web_push(**settings)
    assert "not-a-key" not in str(caught.value)


def test_the_subject_must_be_a_mailto_or_https_url(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ValueError, match="vapid_subject"):
        make_settings(vapid_subject="ops@shop.example")


async def test_without_keys_the_channel_refuses_and_says_what_to_set(
    web_push: Callable[..., WebPush], push_service: PushService
) -> None:
    with pytest.raises(PermanentDeliveryError, match="TOUCHFLOW_VAPID_PRIVATE_KEY") as caught:
        await web_push(vapid_private_key="").send(message(push_service.subscribe()))
    assert not caught.value.address_dead
    assert push_service.received == []


async def test_a_payload_over_the_limit_is_refused_before_sending(
    web_push: Callable[..., WebPush], push_service: PushService
) -> None:
    with pytest.raises(PermanentDeliveryError, match="at most 3993") as caught:
        await web_push().send(message(push_service.subscribe(), {"title": "t", "body": "x" * 4000}))
    assert caught.value.code == "payload_too_large"
    assert push_service.received == push_service.refusals == []


async def test_a_push_with_another_vapid_key_is_refused(
    web_push: Callable[..., WebPush], push_service: PushService
) -> None:
    with pytest.raises(PermanentDeliveryError, match="403"):
        await web_push(vapid_private_key=generate().private_key).send(message(push_service.subscribe()))
    assert push_service.refusals == ["403: k is not the key this subscription was made with"]


async def test_an_address_that_is_no_subscription_is_dead(web_push: Callable[..., WebPush]) -> None:
    broken = OutboundMessage(key="k", address='{"endpoint": "https://push.example/x"}', content=CONTENT)
    with pytest.raises(PermanentDeliveryError) as caught:
        await web_push().send(broken)
    assert caught.value.address_dead


# -- how answers are classified ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after", "kind", "dead", "after"),
    [
        (404, None, PermanentDeliveryError, True, None),
        (410, None, PermanentDeliveryError, True, None),
        (413, None, PermanentDeliveryError, False, None),
        (400, None, PermanentDeliveryError, False, None),
        (401, None, PermanentDeliveryError, False, None),
        (403, None, PermanentDeliveryError, False, None),
        (429, "120", RetryableDeliveryError, False, 120.0),
        (500, None, RetryableDeliveryError, False, None),
        (503, "30", RetryableDeliveryError, False, 30.0),
    ],
)
async def test_push_service_answers_are_classified(
    web_push: Callable[..., WebPush],
    push_service: PushService,
    status: int,
    retry_after: str | None,
    kind: type[Exception],
    dead: bool,
    after: float | None,
) -> None:
    device = push_service.subscribe()
    push_service.answer(device, status, retry_after=retry_after)
    with pytest.raises(kind) as caught:
        await web_push().send(message(device))
    error = caught.value
    assert isinstance(error, PermanentDeliveryError | RetryableDeliveryError)
    assert error.code == str(status)
    assert device.endpoint not in str(error)
    if isinstance(error, PermanentDeliveryError):
        assert error.address_dead is dead
    else:
        assert error.retry_after == after


@pytest.mark.parametrize(
    ("status", "retryable", "dead"),
    [(408, True, False), (425, True, False), (502, True, False), (406, False, False), (422, False, False)],
)
def test_other_statuses(status: int, retryable: bool, dead: bool) -> None:
    error = classify(status)
    assert isinstance(error, RetryableDeliveryError) is retryable
    assert getattr(error, "address_dead", False) is dead


async def test_an_unreachable_push_service_is_retryable(web_push: Callable[..., WebPush]) -> None:
    nowhere = Subscriber(token="t", endpoint=f"http://127.0.0.1:{free_port()}/push/t")
    with pytest.raises(RetryableDeliveryError, match="unreachable"):
        await web_push().send(message(nowhere))


async def test_a_push_service_that_does_not_answer_in_time_is_retryable(
    web_push: Callable[..., WebPush], push_service: PushService
) -> None:
    release = push_service.hold()
    try:
        with pytest.raises(RetryableDeliveryError, match="unreachable"):
            await web_push(push_timeout="200ms").send(message(push_service.subscribe()))
    finally:
        release.set()


# -- where the worker sends, and what it reads back ---------------------------------------------------------


def stored(endpoint: str) -> OutboundMessage:
    """A subscription as the store holds it, whatever the API would say about it today."""
    return message(Subscriber(token="t", endpoint=endpoint))


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://169.254.169.254/latest/meta-data/",
        "https://internal.shop.example/push/x",
        "https://fcm.googleapis.com.internal.shop.example/fcm/send/x",
        "https://10.0.0.8:8443/push/x",
        "https://[::1]/push/x",
    ],
)
async def test_a_stored_endpoint_off_the_list_is_refused_before_any_connection(
    make_settings: Callable[..., Settings], vapid: VapidKeys, no_network: NetworkGuard, endpoint: str
) -> None:
    """With the default TOUCHFLOW_PUSH_SERVICE_HOSTS: refused before a name lookup or a connection."""
    channel = WebPush.from_settings(make_settings(vapid_private_key=vapid.private_key, vapid_subject=SUBJECT))
    with pytest.raises(PermanentDeliveryError, match="TOUCHFLOW_PUSH_SERVICE_HOSTS") as caught:
        await channel.send(stored(endpoint))
    assert caught.value.code == "host_not_allowed"
    assert not caught.value.address_dead  # kept: allowing the host again brings the device back
    assert endpoint not in str(caught.value)
    assert no_network.attempts == []


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://user:secret@fcm.googleapis.com/fcm/send/x",
        "https://internal.shop.example@fcm.googleapis.com/fcm/send/x",
        "https://fcm.googleapis.com\\@internal.shop.example/fcm/send/x",
        "ftp://fcm.googleapis.com/fcm/send/x",
    ],
)
async def test_a_stored_endpoint_with_user_info_or_another_scheme_is_refused(
    make_settings: Callable[..., Settings], vapid: VapidKeys, no_network: NetworkGuard, endpoint: str
) -> None:
    channel = WebPush.from_settings(make_settings(vapid_private_key=vapid.private_key, vapid_subject=SUBJECT))
    with pytest.raises(PermanentDeliveryError) as caught:
        await channel.send(stored(endpoint))
    assert caught.value.code == "bad_endpoint"
    assert no_network.attempts == []


@pytest.mark.parametrize(
    ("hosts", "says"),
    [
        ("fcm.googleapis.com", "127.0.0.1 is not a push service host"),  # no longer listed
        ("127.0.0.1", "plain http only to hosts listed as http://"),  # listed, but for https only
    ],
)
async def test_the_worker_rechecks_the_host_before_sending(
    web_push: Callable[..., WebPush], push_service: PushService, hosts: str, says: str
) -> None:
    with pytest.raises(PermanentDeliveryError, match=says) as caught:
        await web_push(push_service_hosts=hosts).send(message(push_service.subscribe()))
    assert caught.value.code == "host_not_allowed"
    assert push_service.requests == 0


async def test_a_listed_host_is_reached_on_a_private_address(
    web_push: Callable[..., WebPush], push_service: PushService
) -> None:
    """127.0.0.1 is as private as addresses get: named in the setting, it is a push service like any other."""
    await web_push(push_service_hosts="fcm.googleapis.com, http://127.0.0.1").send(
        message(push_service.subscribe())
    )
    assert len(push_service.received) == 1


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_from_the_push_service_is_not_followed(
    web_push: Callable[..., WebPush], push_service: PushService, vapid: VapidKeys, status: int
) -> None:
    elsewhere = PushService("127.0.0.1", free_port(), application_server_key=vapid.public_key)
    await elsewhere.start()
    try:
        device = push_service.subscribe()
        target = elsewhere.subscribe()
        push_service.answer(device, status, headers={"Location": target.endpoint})
        with pytest.raises(PermanentDeliveryError, match="redirects are not followed") as caught:
            await web_push().send(message(device))
    finally:
        await elsewhere.stop()
    assert caught.value.code == str(status)
    assert not caught.value.address_dead
    assert push_service.requests == 1
    assert elsewhere.requests == 0


BIG = 32 * 1024 * 1024


@pytest.mark.parametrize("status", [201, 400])
async def test_a_huge_answer_is_not_read_whole(
    web_push: Callable[..., WebPush], push_service: PushService, status: int
) -> None:
    device = push_service.subscribe()
    push_service.answer(device, status, headers={"Location": f"{push_service.origin}/m/1"}, body_size=BIG)
    channel = web_push()
    if status == 201:
        receipt = await channel.send(message(device))
        assert receipt.provider_id == f"{push_service.origin}/m/1"
    else:
        with pytest.raises(PermanentDeliveryError, match="400"):
            await channel.send(message(device))
    await asyncio.wait_for(push_service.body_done.wait(), 10)
    # What loopback socket buffers hold is all the service could write once the sender stopped reading.
    assert push_service.body_bytes_sent < BIG // 2
    # The rest of that answer is never read as the next one's: the connection was closed, not kept.
    await channel.send(message(device))
    first, then = push_service.peers
    assert first != then


async def test_pushes_to_a_service_share_a_connection_until_the_channel_closes(
    web_push: Callable[..., WebPush], push_service: PushService
) -> None:
    channel = web_push()
    devices = [push_service.subscribe() for _ in range(3)]
    for device in devices:
        await channel.send(message(device))
    assert len(push_service.received) == 3
    assert len(set(push_service.peers)) == 1
    await channel.aclose()  # a worker stopping
    await channel.send(message(devices[0]))
    assert len(set(push_service.peers)) == 2


async def test_a_cookie_from_one_answer_goes_with_no_later_push(
    web_push: Callable[..., WebPush], vapid: VapidKeys
) -> None:
    # By name: aiohttp's cookie jar would take no cookie from an IP address anyway.
    service = PushService(host="localhost", port=free_port(), application_server_key=vapid.public_key)
    await service.start()
    try:
        channel = web_push(push_service_hosts="http://localhost")
        first, second = service.subscribe(), service.subscribe()
        service.answer(first, 201, headers={"Set-Cookie": "session=for-the-first-device; Path=/"})
        await channel.send(message(first))
        await channel.send(message(second))
        [received] = service.received
        assert "Cookie" not in received.headers
    finally:
        await service.stop()


async def test_pushes_in_flight_are_not_capped_by_the_kept_connections(
    web_push: Callable[..., WebPush], push_service: PushService
) -> None:
    """More pushes at once than an HTTP client's usual pool (100): each gets a connection, none waits for
    one inside its timeout (a step reaches every device of a customer at once, a broadcast many)."""
    channel = web_push()
    device = push_service.subscribe()
    release = push_service.hold()
    sending = [asyncio.create_task(channel.send(message(device, key=f"j:c{n}:1:s"))) for n in range(120)]
    try:
        await eventually(lambda: push_service.requests == 120, 10, "120 pushes at the push service at once")
    finally:
        release.set()
    await asyncio.gather(*sending)
    assert len(push_service.received) == 120


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", " javascript:alert(1)", "data:text/html,hi", "//evil.example/x"]
)
async def test_a_url_that_is_no_web_address_is_refused_before_sending(
    web_push: Callable[..., WebPush], push_service: PushService, url: str
) -> None:
    with pytest.raises(PermanentDeliveryError, match="`url` must be an http") as caught:
        await web_push().send(message(push_service.subscribe(), {**CONTENT, "url": url}))
    assert caught.value.code == "bad_url"
    assert push_service.requests == 0


async def test_a_path_as_url_is_sent_as_it_is(
    web_push: Callable[..., WebPush], push_service: PushService
) -> None:
    """The service worker opens it relative to the site's own origin."""
    device = push_service.subscribe()
    await web_push().send(message(device, {**CONTENT, "url": "/cart?x=1"}))
    [payload] = push_service.payloads(device)
    assert payload["url"] == "/cart?x=1"


NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        ("Thu, 26 Nov 2026 12:01:30 GMT", 90.0),
        ("Thu, 26 Nov 2026 11:00:00 GMT", 0.0),
        ("soon", None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_web_push_is_registered() -> None:
    assert REGISTRY["web_push"] is WebPush


# -- end to end: the probe journey over web push -----------------------------------------------------------


@pytest.fixture
def journey_settings(vapid: VapidKeys) -> dict[str, Any]:
    return {"vapid_private_key": vapid.private_key, "vapid_subject": SUBJECT, **LOOPBACK}


def customer_with_devices(
    journeys: JourneyHarness, service: PushService, customer: str, count: int
) -> list[Subscriber]:
    journeys.store.customers.upsert(
        CustomerIn(id=customer, email=f"{customer}@example.com", attributes={"name": "Bi"})
    )
    devices = [service.subscribe() for _ in range(count)]
    for device in devices:
        journeys.store.push.save(customer, device.subscription_in())
    return devices


async def test_a_journey_pushes_to_every_device_of_the_customer(
    journeys: JourneyHarness, push_service: PushService, smtp: SmtpInbox
) -> None:
    phone, laptop = customer_with_devices(journeys, push_service, "wp1", 2)

    handle = await journeys.post("wp1", "probe", {"probe_id": "x1", "via": ["web_push", "email"]})
    assert (await journeys.outcome(handle)).status == "completed"

    expected = {
        "title": "Probe x1",
        "body": "Hello Bi, this is probe x1.",
        "url": "https://shop.example/probe/x1",
        "icon": "https://shop.example/icon.png",
    }
    for device in (phone, laptop):
        [payload] = push_service.payloads(device)
        assert {k: v for k, v in payload.items() if k != "tag"} == expected
    assert push_service.refusals == []
    assert smtp.messages == []
    [delivery] = journeys.store.deliveries.of_customer("wp1")
    assert (delivery.channel, delivery.status) == ("web_push", DeliveryStatus.SENT)
    assert all(s.last_success_at is not None for s in journeys.store.push.of_customer("wp1"))


async def test_a_gone_device_is_forgotten_and_the_others_still_get_it(
    journeys: JourneyHarness, push_service: PushService
) -> None:
    gone, alive = customer_with_devices(journeys, push_service, "wp2", 2)
    push_service.answer(gone, 410)

    handle = await journeys.post("wp2", "probe", {"probe_id": "x2", "via": ["web_push", "email"]})
    await journeys.outcome(handle)

    assert len(push_service.payloads(alive)) == 1
    assert [s.endpoint for s in journeys.store.push.of_customer("wp2")] == [alive.endpoint]
    [delivery] = journeys.store.deliveries.of_customer("wp2")
    assert (delivery.channel, delivery.status) == ("web_push", DeliveryStatus.SENT)


async def test_when_every_device_is_gone_the_step_falls_back_to_email(
    journeys: JourneyHarness, push_service: PushService, smtp: SmtpInbox
) -> None:
    [device] = customer_with_devices(journeys, push_service, "wp3", 1)
    push_service.answer(device, 410)

    handle = await journeys.post("wp3", "probe", {"probe_id": "x3", "via": ["web_push", "email"]})
    await journeys.outcome(handle)

    assert journeys.store.push.of_customer("wp3") == []
    [mail] = smtp.messages
    assert mail["Subject"] == "Probe x3"
    [delivery] = journeys.store.deliveries.of_customer("wp3")
    assert (delivery.channel, delivery.status) == ("email", DeliveryStatus.SENT)
    assert [(a["channel"], a["outcome"]) for a in delivery.attempts] == [
        ("web_push", "permanent"),
        ("email", "sent"),
    ]
    assert "subscription gone" in delivery.attempts[0]["reason"]
    assert device.endpoint not in json.dumps(delivery.attempts)


async def test_without_subscriptions_the_step_falls_back_to_email(
    journeys: JourneyHarness, push_service: PushService, smtp: SmtpInbox
) -> None:
    customer_with_devices(journeys, push_service, "wp4", 0)

    handle = await journeys.post("wp4", "probe", {"probe_id": "x4", "via": ["web_push", "email"]})
    await journeys.outcome(handle)

    assert len(smtp.messages) == 1
    [delivery] = journeys.store.deliveries.of_customer("wp4")
    assert delivery.channel == "email"
    assert delivery.attempts[0] == {
        "channel": "web_push",
        "outcome": "unreachable",
        "reason": "web_push: customer has no usable push_subscription",
    }


async def test_a_push_service_error_is_retried_by_temporal(
    journeys: JourneyHarness, push_service: PushService, smtp: SmtpInbox
) -> None:
    [device] = customer_with_devices(journeys, push_service, "wp5", 1)
    push_service.answer(device, 503)

    handle = await journeys.post("wp5", "probe", {"probe_id": "x5", "via": ["web_push", "email"]})
    await journeys.outcome(handle)

    assert len(push_service.payloads(device)) == 1
    assert smtp.messages == []
    [delivery] = journeys.store.deliveries.of_customer("wp5")
    assert (delivery.channel, delivery.status) == ("web_push", DeliveryStatus.SENT)
    assert [a["outcome"] for a in delivery.attempts] == ["retryable", "sent"]
    [subscription] = journeys.store.push.of_customer("wp5")
    assert subscription.failures == 0
