"""The Zalo ZNS channel against a loopback Zalo server: request shape, error codes, token refresh."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.zalo import SEED_REFRESH_TOKEN, ZaloServer
from touchflow.activities.zalo_tokens import StoreSendingHold, StoreTokenProvider
from touchflow.channels import build_channels
from touchflow.channels.base import Channel, OutboundMessage
from touchflow.channels.errors import PermanentDeliveryError, RetryableDeliveryError
from touchflow.channels.zalo_zns import (
    BALANCE_HOLD,
    ERRORS,
    NIGHT_ENDS,
    TIME_WINDOW_RETRY,
    VIETNAM,
    Kind,
    ZaloOAuth,
    ZaloZns,
    classify,
    is_night,
    normalize_phone,
    seconds_until,
    seconds_until_next_month,
    tracking_id,
)
from touchflow.models import CustomerIn, Delivery, DeliveryStatus
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.testing import JourneyHarness, SmtpInbox, eventually

PHONE = "0912345678"
NORMALISED = "84912345678"


def message(key: str = "probe:c1:x1:1:probe", phone: str = PHONE, **content: str) -> OutboundMessage:
    parts = content or {"template_id": "231245", "param_customer_name": "Bi", "param_order_code": "A-1"}
    return OutboundMessage(key=key, address=phone, content=parts, locale="vi")


@pytest.fixture
async def make_channel(sqlite_store: Store) -> AsyncIterator[Callable[[Settings], ZaloZns]]:
    made: list[Channel] = []

    def make(settings: Settings) -> ZaloZns:
        channels = build_channels(
            settings,
            zalo_tokens=StoreTokenProvider.from_settings(settings, sqlite_store),
            zalo_hold=StoreSendingHold.from_settings(settings, sqlite_store),
        )
        made.extend(channels.values())
        channel = channels["zalo_zns"]
        assert isinstance(channel, ZaloZns)
        return channel

    yield make
    for each in made:  # as a worker stopping does: the kept connections close
        await each.aclose()


@pytest.fixture
def channel(
    zalo: ZaloServer, make_settings: Callable[..., Settings], make_channel: Callable[[Settings], ZaloZns]
) -> ZaloZns:
    return make_channel(make_settings(**zalo.settings()))


# -- phone numbers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0912345678", "84912345678"),
        ("+84912345678", "84912345678"),
        ("84912345678", "84912345678"),
        ("+84 91 234 5678", "84912345678"),
        ("091.234.5678", "84912345678"),
        ("(+84) 912-345-678", "84912345678"),
        ("0312345678", "84312345678"),
        ("0987654321", "84987654321"),
        ("912345678", None),  # no prefix: ambiguous
        ("+14155550123", None),  # not Vietnam
        ("0212345678", None),  # not a mobile range
        ("091234567", None),  # too short
        ("09123456789", None),  # too long
        ("8491234567", None),  # 84 with too few digits
        ("+849123456789", None),
        ("hello", None),
        ("", None),
    ],
)
def test_phone_normalisation(raw: str, expected: str | None) -> None:
    if expected is not None:
        assert normalize_phone(raw) == expected
        return
    with pytest.raises(PermanentDeliveryError) as caught:
        normalize_phone(raw)
    assert caught.value.reason.startswith("invalid phone")
    assert raw not in caught.value.reason or not raw


# -- classification ---------------------------------------------------------------------------------------

NIGHT = datetime(2026, 3, 10, 16, 30, tzinfo=UTC)  # 23:30 in Vietnam (UTC+7)


@pytest.mark.parametrize(
    ("code", "expected", "retry_after"),
    [
        (-124, RetryableDeliveryError, None),  # only after the one refresh did not help
        (-118, PermanentDeliveryError, None),
        (-108, PermanentDeliveryError, None),
        (-133, RetryableDeliveryError, 6.5 * 3600),  # until 06:00 Vietnam time
        (-144, RetryableDeliveryError, 0.5 * 3600),  # daily quota: until midnight Vietnam time
        (-147, RetryableDeliveryError, 0.5 * 3600),
        (-131, PermanentDeliveryError, None),
        (-146, PermanentDeliveryError, None),
        (-100, RetryableDeliveryError, None),
        (-109, PermanentDeliveryError, None),
        (-999, PermanentDeliveryError, None),  # undocumented: fall back rather than retry for hours
    ],
)
def test_error_codes_classify(code: int, expected: type[Exception], retry_after: float | None) -> None:
    error = classify(code, NIGHT)
    assert type(error) is expected
    assert error.code == str(code)
    assert getattr(error, "retry_after", None) == retry_after


DAY = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)  # 10:00 in Vietnam
APRIL_FIRST = (datetime(2026, 4, 1, tzinfo=VIETNAM) - DAY).total_seconds()


# Zalo's current table (zalo.cloud "Cách xử lý mã lỗi"; see docs/channels/zalo-zns.md for the sources).
@pytest.mark.parametrize(
    ("code", "now", "expected", "retry_after", "address_dead", "meaning"),
    [
        # Balance and payment: no retry, the step falls back (and ZNS pauses, see the hold tests).
        (-115, DAY, PermanentDeliveryError, None, False, "balance is too low"),
        (-137, DAY, PermanentDeliveryError, None, False, "Zalo Cloud Account failed"),
        # A time restriction: 06:00 at night, half an hour otherwise.
        (-133, NIGHT, RetryableDeliveryError, 6.5 * 3600, False, "not at night"),
        (-133, DAY, RetryableDeliveryError, 30 * 60, False, "not at night"),
        # The parameter sub-codes are template errors.
        (-1121, DAY, PermanentDeliveryError, None, False, "longer than its type allows"),
        (-1122, DAY, PermanentDeliveryError, None, False, "parameter of the template is missing"),
        (-1124, DAY, PermanentDeliveryError, None, False, "not in the format of its type"),
        # Set-up faults.
        (-1351, DAY, PermanentDeliveryError, None, False, "blocked it for a violation"),
        (-1241, DAY, PermanentDeliveryError, None, False, "appsecret_proof invalid"),
        # Monthly quotas: until the first of next month, Vietnam time.
        (-1441, DAY, RetryableDeliveryError, APRIL_FIRST, False, "monthly promotion quota"),
        (-1471, DAY, RetryableDeliveryError, APRIL_FIRST, False, "this month's after-sales ZNS"),
        # The recipient refuses this OA: the number is done for ZNS.
        (-141, DAY, PermanentDeliveryError, None, True, "refuses ZNS from this OA"),
        # Meanings corrected against the table.
        (-121, DAY, PermanentDeliveryError, None, False, "template has no content"),
        (-123, DAY, PermanentDeliveryError, None, False, "could not decrypt"),
        (-126, DAY, PermanentDeliveryError, None, False, "development-mode wallet empty"),
        (-128, DAY, PermanentDeliveryError, None, False, "encoding key does not exist"),
        (-149, DAY, PermanentDeliveryError, None, False, "journey token invalid"),
        (-150, DAY, PermanentDeliveryError, None, False, "journey token expired"),
        (-151, DAY, PermanentDeliveryError, None, False, "not an end-to-end encrypted (E2EE) template"),
        (-152, DAY, PermanentDeliveryError, None, False, "could not get the E2EE key"),
        (-9999, DAY, PermanentDeliveryError, None, False, "not in Zalo's error table"),
    ],
)
def test_zalos_current_error_table(
    code: int,
    now: datetime,
    expected: type[Exception],
    retry_after: float | None,
    address_dead: bool,
    meaning: str,
) -> None:
    error = classify(code, now)
    assert type(error) is expected
    assert error.code == str(code)
    assert getattr(error, "retry_after", None) == retry_after
    assert getattr(error, "address_dead", False) is address_dead
    assert meaning in error.reason


@pytest.mark.parametrize(
    ("message", "named"),
    [
        ("Param order_code exceeds max length", "(order_code)"),  # Zalo names it: so does the reason
        ("customer_name, order_code: wrong format", "(customer_name, order_code)"),
        ("Template data invalid", None),  # Zalo does not say which
        ("Param order_codes too long", None),  # a whole name, not a part of another word
    ],
)
@pytest.mark.parametrize("code", [-1121, -1122, -1124])
def test_a_parameter_error_names_the_parameter_when_zalo_does(
    code: int, message: str, named: str | None
) -> None:
    error = classify(code, DAY, message=message, params=["customer_name", "order_code"])
    assert isinstance(error, PermanentDeliveryError)
    assert (named in error.reason) if named else ("(" not in error.reason)
    assert message not in error.reason  # Zalo's own text stays out: it may quote the data


@pytest.mark.parametrize(
    ("now_utc", "night"),
    [
        (datetime(2026, 3, 10, 14, 59, tzinfo=UTC), False),  # 21:59 VN
        (datetime(2026, 3, 10, 15, 0, tzinfo=UTC), True),  # 22:00 VN
        (datetime(2026, 3, 10, 22, 59, tzinfo=UTC), True),  # 05:59 VN
        (datetime(2026, 3, 10, 23, 0, tzinfo=UTC), False),  # 06:00 VN
    ],
)
def test_night_is_twenty_two_to_six_vietnam_time(now_utc: datetime, night: bool) -> None:
    assert is_night(now_utc) is night
    wait = classify(-133, now_utc).retry_after  # type: ignore[union-attr]
    assert wait == (seconds_until(NIGHT_ENDS, now_utc) if night else TIME_WINDOW_RETRY.total_seconds())


@pytest.mark.parametrize(
    ("now_utc", "first"),
    [
        (datetime(2026, 3, 10, 3, 0, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=VIETNAM)),
        (datetime(2026, 12, 31, 16, 59, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=VIETNAM)),  # 23:59 VN
        (datetime(2026, 12, 31, 17, 0, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=VIETNAM)),  # 1 Jan 00:00 VN
    ],
)
def test_a_monthly_quota_waits_for_the_first_of_next_month(now_utc: datetime, first: datetime) -> None:
    assert seconds_until_next_month(now_utc) == (first - now_utc).total_seconds()


@pytest.mark.parametrize("code", sorted(ERRORS))
def test_every_documented_code_is_one_of_the_two_errors(code: int) -> None:
    kind, _ = ERRORS[code]
    error = classify(code, NIGHT)
    retryable = kind in (Kind.RETRY, Kind.TOKEN, Kind.NIGHT, Kind.QUOTA, Kind.MONTHLY_QUOTA)
    assert isinstance(error, RetryableDeliveryError if retryable else PermanentDeliveryError)
    assert str(code) in error.reason


@pytest.mark.parametrize(
    ("now_utc", "hours"),
    [
        (datetime(2026, 3, 10, 15, 0, tzinfo=UTC), 8.0),  # 22:00 VN -> 06:00 next day
        (datetime(2026, 3, 10, 16, 30, tzinfo=UTC), 6.5),  # 23:30 VN
        (datetime(2026, 3, 10, 17, 0, tzinfo=UTC), 6.0),  # 00:00 VN
        (datetime(2026, 3, 10, 22, 0, tzinfo=UTC), 1.0),  # 05:00 VN -> 06:00 the same day
        (datetime(2026, 3, 10, 22, 59, 30, tzinfo=UTC), 60 / 3600),  # 05:59:30: at least a minute
    ],
)
def test_night_window_ends_at_six_vietnam_time(now_utc: datetime, hours: float) -> None:
    assert seconds_until(NIGHT_ENDS, now_utc) == pytest.approx(hours * 3600)


# -- over the wire ----------------------------------------------------------------------------------------


async def test_sends_the_real_request_shape(channel: ZaloZns, zalo: ZaloServer) -> None:
    key = "probe:customer-with-a-long-identifier@example.com:1:probe"
    receipt = await channel.send(message(key=key))
    [body] = zalo.sent
    assert body == {
        "phone": NORMALISED,
        "template_id": "231245",
        "template_data": {"customer_name": "Bi", "order_code": "A-1"},
        "tracking_id": tracking_id(key),
    }
    assert len(body["tracking_id"]) <= 48 and "example.com" not in body["tracking_id"]
    headers = zalo.headers[-1]
    assert headers["access_token"] in zalo.access_tokens
    assert "authorization" not in headers
    assert receipt.provider_id


@pytest.mark.parametrize(
    ("params", "refused"),
    [
        ({"order_code": "C" * 30, "total": "1" * 20, "expiry_date": "31/12/2026"}, None),
        ({"order_code": "C" * 31}, "order_code is 31 characters, Zalo's code type takes at most 30"),
        ({"coupon_code": "C" * 40}, "coupon_code is 40 characters"),
        ({"cart_total": "9" * 21}, "cart_total is 21 characters, Zalo's amount type takes at most 20"),
        ({"coupon_value": "1" * 21}, "coupon_value is 21 characters"),
        ({"customer_name": "N" * 31}, "customer_name is 31 characters"),
        ({"expiry_date": "Dec 31, 2026"}, "expiry_date is not dd/mm/yyyy"),
        ({"expiry_date": "2026-12-31"}, "expiry_date is not dd/mm/yyyy"),
        ({"delivery_time": "09:30 31/12/2026"}, None),  # Zalo's other time forms
        ({"delivery_time": "09:30:15 31/12/2026"}, None),
        ({"expiry_date": "12/2026"}, None),
        ({"product_name": "P" * 150, "note": "x" * 300}, None),  # types touchflow does not know: Zalo judges
    ],
)
async def test_parameters_zalo_would_refuse_are_refused_before_sending(
    params: dict[str, str],
    refused: str | None,
    channel: ZaloZns,
    zalo: ZaloServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    content = {"template_id": "231245", **{f"param_{name}": value for name, value in params.items()}}
    if refused is None:
        await channel.send(message(**content))
        assert [body["template_data"] for body in zalo.sent] == [params]
        return
    with (
        caplog.at_level(logging.ERROR, logger="touchflow.channels.zalo_zns"),
        pytest.raises(PermanentDeliveryError) as caught,
    ):
        await channel.send(message(**content))
    assert refused in caught.value.reason
    assert zalo.headers == []  # Zalo was not asked
    [record] = caplog.records
    assert record.getMessage() == "zalo template rejected" and record.__dict__["template_id"] == "231245"
    for value in params.values():
        assert value not in caught.value.reason and value not in str(record.__dict__)


async def test_a_template_without_template_id_is_permanent(channel: ZaloZns, zalo: ZaloServer) -> None:
    with pytest.raises(PermanentDeliveryError, match="template_id"):
        await channel.send(message(param_name="Bi"))
    assert zalo.sent == []


@pytest.mark.parametrize(
    ("answer", "expected", "code"),
    [
        (-118, PermanentDeliveryError, "-118"),
        (-108, PermanentDeliveryError, "-108"),
        (-131, PermanentDeliveryError, "-131"),
        (-146, PermanentDeliveryError, "-146"),
        (-133, RetryableDeliveryError, "-133"),
        (-144, RetryableDeliveryError, "-144"),
        (-147, RetryableDeliveryError, "-147"),
        ("503", RetryableDeliveryError, "503"),
        ("429", RetryableDeliveryError, "429"),
        ("slow", RetryableDeliveryError, None),  # the client's timeout
    ],
)
async def test_zalo_answers_classify(
    answer: int | str,
    expected: type[Exception],
    code: str | None,
    zalo: ZaloServer,
    make_settings: Callable[..., Settings],
    make_channel: Callable[[Settings], ZaloZns],
) -> None:
    channel = make_channel(make_settings(**zalo.settings(zalo_timeout="500ms")))
    zalo.fail(answer)
    with pytest.raises(expected) as caught:
        await channel.send(message())
    assert caught.value.code == code  # type: ignore[attr-defined]
    assert NORMALISED not in str(caught.value) and PHONE not in str(caught.value)
    assert zalo.sent == []


async def test_sends_share_a_connection_until_the_channel_closes(zalo: ZaloServer, channel: ZaloZns) -> None:
    for n in range(3):
        await channel.send(message(key=f"probe:c{n}:x1:1:probe"))
    assert len(zalo.sent) == 3
    assert len(set(zalo.peers)) == 1
    await channel.aclose()  # a worker stopping
    await channel.send(message(key="probe:c9:x1:1:probe"))
    assert len(set(zalo.peers)) == 2


async def test_night_window_asks_to_come_back_at_six(
    zalo: ZaloServer, make_settings: Callable[..., Settings], make_channel: Callable[[Settings], ZaloZns]
) -> None:
    channel = make_channel(make_settings(**zalo.settings()))
    channel.clock = lambda: NIGHT
    zalo.fail(-133)
    with pytest.raises(RetryableDeliveryError) as caught:
        await channel.send(message())
    assert caught.value.retry_after == 6.5 * 3600


async def test_template_errors_are_logged_loudly_without_pii(
    channel: ZaloZns, zalo: ZaloServer, caplog: pytest.LogCaptureFixture
) -> None:
    zalo.fail(-131)
    with (
        caplog.at_level(logging.ERROR, logger="touchflow.channels.zalo_zns"),
        pytest.raises(PermanentDeliveryError),
    ):
        await channel.send(message())
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.__dict__["template_id"] == "231245" and record.__dict__["zalo_error"] == -131
    text = str(record.__dict__)
    assert NORMALISED not in text and PHONE not in text and "Bi" not in text.replace("Bin", "")


@pytest.mark.parametrize(
    ("answer", "logged", "in_reason"),
    [
        ((-1121, "Param order_code exceeds max length"), "zalo template rejected", "(order_code)"),
        (-1122, "zalo template rejected", "missing"),
        (-1351, "zalo set-up fault", "blocked it for a violation"),
        (-1241, "zalo set-up fault", "appsecret_proof"),
    ],
)
async def test_template_and_set_up_faults_are_logged_loudly_with_what_to_do(
    answer: int | tuple[int, str],
    logged: str,
    in_reason: str,
    channel: ZaloZns,
    zalo: ZaloServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    zalo.fail(answer)
    with (
        caplog.at_level(logging.ERROR, logger="touchflow.channels.zalo_zns"),
        pytest.raises(PermanentDeliveryError) as caught,
    ):
        await channel.send(message())
    assert in_reason in caught.value.reason
    [record] = caplog.records
    assert (record.levelno, record.getMessage()) == (logging.ERROR, logged)
    code = answer[0] if isinstance(answer, tuple) else answer
    assert record.__dict__["zalo_error"] == code and record.__dict__["action"]
    text = str(record.__dict__)
    assert NORMALISED not in text and PHONE not in text and "A-1" not in text


@pytest.mark.parametrize("code", [-115, -137])
async def test_a_balance_error_pauses_zns_for_twelve_hours_and_says_so_once(
    code: int, channel: ZaloZns, zalo: ZaloServer, caplog: pytest.LogCaptureFixture
) -> None:
    await channel.send(message(key="before"))
    now = DAY
    channel.clock = lambda: now
    zalo.fail(code)
    with caplog.at_level(logging.ERROR, logger="touchflow.channels.zalo_zns"):
        with pytest.raises(PermanentDeliveryError, match=f"{code}.*ZNS paused until 2026-03-10 22:00"):
            await channel.send(message(key="k1"))
        asked = len(zalo.headers)
        # Meanwhile nobody asks Zalo: every ZNS step falls back at once, naming the pause.
        now = DAY + BALANCE_HOLD - timedelta(minutes=1)
        with pytest.raises(PermanentDeliveryError, match=f"paused until .* after error {code}"):
            await channel.send(message(key="k2"))
        assert len(zalo.headers) == asked
    [record] = caplog.records
    assert (record.levelno, record.getMessage()) == (logging.ERROR, "zalo zns paused")
    assert record.__dict__["zalo_error"] == code
    assert record.__dict__["held_until"] == (DAY + BALANCE_HOLD).isoformat()
    assert "top up" in record.__dict__["action"]
    assert NORMALISED not in str(record.__dict__) and PHONE not in str(record.__dict__)

    # Twelve hours on, ZNS is tried again.
    now = DAY + BALANCE_HOLD
    await channel.send(message(key="k3"))
    assert set(zalo.arrivals()) == {tracking_id("before"), tracking_id("k3")}


async def test_expired_token_is_refreshed_once_and_the_send_goes_through(
    channel: ZaloZns, zalo: ZaloServer, sqlite_store: Store
) -> None:
    await channel.send(message(key="k1"))
    assert zalo.refreshes == 1  # the seed, on first use
    zalo.expire_tokens()
    await channel.send(message(key="k2"))
    assert zalo.refreshes == 2
    assert zalo.arrivals() == {tracking_id("k1"): 1, tracking_id("k2"): 1}
    stored = sqlite_store.tokens.get("1234567890123456789")
    assert stored is not None and stored.refresh_token == zalo.refresh_token and stored.rotations == 2


async def test_a_used_refresh_token_is_refused_with_zalos_error(channel: ZaloZns, zalo: ZaloServer) -> None:
    await channel.send(message())
    oauth = ZaloOAuth(oauth_base=zalo.url, app_id="1234567890123456789", secret_key="app-secret-key")
    with pytest.raises(PermanentDeliveryError, match="TOUCHFLOW_ZALO_REFRESH_TOKEN") as caught:
        oauth.refresh(SEED_REFRESH_TOKEN)  # already rotated away
    assert caught.value.code == "-14014"
    assert zalo.token_errors[-1]["error_reason"] == "Invalid refresh token"


# -- settings -> behaviour --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "outcome"),
    [
        ({}, "sent"),
        ({"zalo_api_base": "{url}/"}, "sent"),  # a trailing slash is fine
        ({"zalo_app_id": ""}, "off"),
        ({"zalo_secret_key": ""}, "off"),
        ({"zalo_refresh_token": ""}, "off"),
        ({"zalo_secret_key": "wrong"}, "TOUCHFLOW_ZALO_SECRET_KEY"),
        ({"zalo_refresh_token": "rt-not-issued"}, "TOUCHFLOW_ZALO_REFRESH_TOKEN"),
        ({"zalo_api_base": "{url}/nowhere"}, "TOUCHFLOW_ZALO_API_BASE"),  # HTTP 404
        ({"zalo_oauth_base": "http://127.0.0.1:1"}, "unreachable"),
    ],
)
async def test_settings_decide_the_behaviour(
    overrides: dict[str, Any],
    outcome: str,
    zalo: ZaloServer,
    make_settings: Callable[..., Settings],
    sqlite_store: Store,
) -> None:
    values = {key: value.format(url=zalo.url) for key, value in overrides.items()}
    settings = make_settings(**zalo.settings(**values))
    channels = build_channels(settings, zalo_tokens=StoreTokenProvider.from_settings(settings, sqlite_store))
    if outcome == "off":
        assert "zalo_zns" not in channels
        return
    channel = channels["zalo_zns"]
    try:
        if outcome == "sent":
            await channel.send(message())
            assert len(zalo.sent) == 1
            return
        with pytest.raises((PermanentDeliveryError, RetryableDeliveryError), match=outcome):
            await channel.send(message())
        assert zalo.sent == []
    finally:
        await channel.aclose()


def test_no_token_provider_leaves_zalo_off(zalo: ZaloServer, make_settings: Callable[..., Settings]) -> None:
    assert "zalo_zns" not in build_channels(make_settings(**zalo.settings()))


# -- in a journey: fallback, night window, retries --------------------------------------------------------


@pytest.fixture
def journey_settings(zalo: ZaloServer) -> dict[str, Any]:
    """The `journeys` worker talks to the loopback Zalo server; the order confirmation has a template per
    language (Zalo approves each language apart)."""
    ids = "post_purchase.order_confirmation_zns=111, post_purchase.order_confirmation_zns.en=222"
    return zalo.settings(zalo_template_ids=ids)


async def _delivery_when(
    journeys: JourneyHarness, customer_id: str, condition: Callable[[Delivery], bool]
) -> Delivery:
    found: list[Delivery] = []

    def matched() -> bool:
        found[:] = journeys.store.deliveries.of_customer(customer_id)
        return bool(found) and condition(found[0])

    await eventually(matched, what=f"the delivery of {customer_id}")
    return found[0]


async def test_a_probe_goes_out_over_zalo(journeys: JourneyHarness, zalo: ZaloServer) -> None:
    journeys.store.customers.upsert(CustomerIn(id="z1", phone="+84 912 345 678", attributes={"name": "Bi"}))
    handle = await journeys.post("z1", "probe", {"probe_id": "x1", "via": ["zalo_zns", "email"]})
    assert (await journeys.outcome(handle)).status == "completed"
    [body] = zalo.sent
    assert body["phone"] == NORMALISED and body["template_id"] == "231245"
    assert body["template_data"] == {"customer_name": "Bi", "probe_id": "x1"}
    [delivery] = journeys.store.deliveries.of_customer("z1")
    assert (delivery.status, delivery.channel) == (DeliveryStatus.SENT, "zalo_zns")
    assert delivery.provider_id and delivery.provider_id != body["tracking_id"]


@pytest.mark.parametrize(
    ("phone", "zalo_outcome"),
    [(None, "unreachable"), (PHONE, "permanent")],  # no phone; a phone without a Zalo account (-118)
)
async def test_fallback_to_email(
    phone: str | None, zalo_outcome: str, journeys: JourneyHarness, zalo: ZaloServer, smtp: SmtpInbox
) -> None:
    zalo.not_on_zalo.add(NORMALISED)
    journeys.store.customers.upsert(CustomerIn(id="z2", email="z2@example.com", phone=phone))
    handle = await journeys.post("z2", "probe", {"probe_id": "x2", "via": ["zalo_zns", "email"]})
    assert (await journeys.outcome(handle)).status == "completed"
    [mail] = smtp.messages
    assert mail["Subject"] == "Probe x2"
    assert zalo.sent == []
    [delivery] = journeys.store.deliveries.of_customer("z2")
    assert (delivery.status, delivery.channel) == (DeliveryStatus.SENT, "email")
    assert [(a["channel"], a["outcome"]) for a in delivery.attempts] == [
        ("zalo_zns", zalo_outcome),
        ("email", "sent"),
    ]
    reason = delivery.attempts[0]["reason"]
    assert NORMALISED not in reason and PHONE not in reason
    assert ("-118" in reason) == (zalo_outcome == "permanent")


def _zalo_clock(journeys: JourneyHarness, now: datetime) -> None:
    """The worker's zalo_zns channel judges Zalo's answers as if it were `now`."""
    channel = journeys.activities.channels["zalo_zns"]
    assert isinstance(channel, ZaloZns)
    channel.clock = lambda: now


@pytest.mark.parametrize(
    ("now", "until"),
    [
        (NIGHT, lambda started: started.astimezone(VIETNAM).strftime("%H:%M") == "06:00"),
        (DAY, None),  # another time restriction: asks again in half an hour
    ],
)
async def test_a_time_restriction_defers_the_step(
    now: datetime,
    until: Callable[[datetime], bool] | None,
    journeys: JourneyHarness,
    zalo: ZaloServer,
) -> None:
    journeys.store.customers.upsert(CustomerIn(id="z3", phone=PHONE))
    _zalo_clock(journeys, now)
    zalo.fail(-133)
    started = datetime.now(UTC)
    handle = await journeys.post("z3", "probe", {"probe_id": "x3", "via": ["zalo_zns", "email"]})
    deferred = await _delivery_when(journeys, "z3", lambda d: d.status == DeliveryStatus.DEFERRED)
    wait = seconds_until(NIGHT_ENDS, now) if until else TIME_WINDOW_RETRY.total_seconds()
    assert deferred.retry_at is not None
    assert abs((deferred.retry_at - (started + timedelta(seconds=wait))).total_seconds()) < 30
    assert zalo.sent == []

    # The journey sleeps (skipped time) and asks again with the same key.
    assert (await journeys.outcome(handle)).status == "completed"
    [delivery] = journeys.store.deliveries.of_customer("z3")
    assert (delivery.status, delivery.channel) == (DeliveryStatus.SENT, "zalo_zns")
    assert [a["outcome"] for a in delivery.attempts] == ["retryable", "sent"]
    assert len(zalo.sent) == 1


async def test_a_number_that_refuses_the_oa_is_suppressed_for_zns(
    journeys: JourneyHarness, zalo: ZaloServer, smtp: SmtpInbox
) -> None:
    journeys.store.customers.upsert(CustomerIn(id="z4", email="z4@example.com", phone=PHONE))
    zalo.fail(-141)
    first = await journeys.post("z4", "probe", {"probe_id": "x4", "via": ["zalo_zns", "email"]})
    assert (await journeys.outcome(first)).status == "completed"
    assert journeys.store.deliveries.is_suppressed("zalo_zns", PHONE)
    second = await journeys.post("z4", "probe", {"probe_id": "x5", "via": ["zalo_zns", "email"]})
    assert (await journeys.outcome(second)).status == "completed"

    # Zalo was asked once; the second step went straight to email.
    assert len(zalo.headers) == 1 and zalo.sent == []
    assert [mail["Subject"] for mail in smtp.messages] == ["Probe x4", "Probe x5"]
    by_probe = {d.key.split(":")[2]: d for d in journeys.store.deliveries.of_customer("z4")}
    assert [a["outcome"] for a in by_probe["x4"].attempts] == ["permanent", "sent"]
    assert [a["outcome"] for a in by_probe["x5"].attempts] == ["unreachable", "sent"]


async def test_a_balance_error_makes_every_zns_step_fall_back_without_asking_zalo(
    journeys: JourneyHarness, zalo: ZaloServer, smtp: SmtpInbox
) -> None:
    for customer in ("z5", "z6"):
        journeys.store.customers.upsert(CustomerIn(id=customer, email=f"{customer}@example.com", phone=PHONE))
    zalo.fail(-115)
    for customer in ("z5", "z6"):
        handle = await journeys.post(customer, "probe", {"probe_id": customer, "via": ["zalo_zns", "email"]})
        assert (await journeys.outcome(handle)).status == "completed"
    assert len(zalo.headers) == 1  # the second step did not ask
    assert sorted(mail["Subject"] for mail in smtp.messages) == ["Probe z5", "Probe z6"]
    for customer in ("z5", "z6"):
        [delivery] = journeys.store.deliveries.of_customer(customer)
        assert (delivery.status, delivery.channel) == (DeliveryStatus.SENT, "email")
        first = delivery.attempts[0]
        assert (first["channel"], first["outcome"]) == ("zalo_zns", "permanent")
        assert "-115" in first["reason"] and "paused until" in first["reason"]
    assert not journeys.store.deliveries.is_suppressed("zalo_zns", PHONE)  # the number itself is fine


@pytest.mark.parametrize(
    ("locale", "template_id"),
    [
        ("en", "222"),
        ("en-GB", "222"),  # the English template (no en-gb one), so the English id
        ("vi", "111"),  # no .vi id: journey.step's
        (None, "222"),  # no language: TOUCHFLOW_DEFAULT_LOCALE's (en)
    ],
)
async def test_a_step_takes_the_template_id_of_its_language(
    locale: str | None, template_id: str, journeys: JourneyHarness, zalo: ZaloServer, smtp: SmtpInbox
) -> None:
    journeys.store.customers.upsert(
        CustomerIn(id="z7", email="z7@example.com", phone=PHONE, locale=locale, attributes={"name": "Lan"})
    )
    await journeys.post("z7", "order_placed", {"order_id": "O-7", "total": 10, "currency": "VND"})
    await eventually(lambda: bool(zalo.sent), what="the order confirmation over ZNS")
    [body] = zalo.sent
    assert body["template_id"] == template_id
    assert body["template_data"]["order_code"] == "O-7"


async def test_a_burst_of_503_and_expired_tokens_delivers_every_message_exactly_once(
    journeys: JourneyHarness, zalo: ZaloServer
) -> None:
    journeys.store.customers.upsert(CustomerIn(id="warm", phone=PHONE))
    await journeys.outcome(await journeys.post("warm", "probe", {"probe_id": "w", "via": ["zalo_zns"]}))
    assert zalo.refreshes == 1

    zalo.expire_tokens()
    zalo.fail(*["503"] * 6)
    customers = [f"b{n}" for n in range(5)]
    handles = []
    for customer in customers:
        journeys.store.customers.upsert(CustomerIn(id=customer, phone=PHONE))
        handles.append(await journeys.post(customer, "probe", {"probe_id": customer, "via": ["zalo_zns"]}))
    for handle in handles:
        assert (await journeys.outcome(handle)).status == "completed"

    assert zalo.refreshes == 2  # every -124 of the burst shared one refresh
    assert zalo.faults == []
    assert set(zalo.arrivals().values()) == {1} and len(zalo.sent) == 6
    probes = sorted(body["template_data"]["probe_id"] for body in zalo.sent)
    assert probes == sorted([*customers, "w"])
    for customer in customers:
        [delivery] = journeys.store.deliveries.of_customer(customer)
        assert (delivery.status, delivery.channel) == (DeliveryStatus.SENT, "zalo_zns")
