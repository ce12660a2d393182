"""Zalo ZNS: pre-approved template messages to a phone's Zalo account over the Zalo OA OpenAPI (httpx).

Both directions live here: sending (`ZaloZns`, which asks an injected `TokenProvider` for the OA access token
and refreshes it once when Zalo answers -124, and an injected `SendingHold` whether ZNS is paused for the OA),
and Zalo's delivery webhook mapped to a receipt (`parse_webhook`). The OAuth v4 refresh call itself is
`ZaloOAuth`; keeping the rotated tokens (and locking so only one worker refreshes) and the pause is the
providers' job, outside this package.

A template is a file `templates/<journey>/<step>.zalo_zns.<locale>.txt` whose blocks are `template_id` and one
`param_<name>` per template parameter; see docs/channels/zalo-zns.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import Enum
from typing import Any, ClassVar, NamedTuple, Protocol, Self
from zoneinfo import ZoneInfo

import httpx

from touchflow.channels.base import Channel, Kept, OutboundMessage, Reach, Receipt
from touchflow.channels.errors import PermanentDeliveryError, RetryableDeliveryError, parse_retry_after
from touchflow.rendering import PerLanguage
from touchflow.settings import Settings

log = logging.getLogger(__name__)

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
# Zalo's night: ZNS templates may not be sent between 22:00 and 06:00 Vietnam time (-133).
NIGHT_STARTS = time(22, 0)
NIGHT_ENDS = time(6, 0)
# -133 outside the night means another time restriction Zalo does not spell out: ask again in a while.
TIME_WINDOW_RETRY = timedelta(minutes=30)
# After a balance or payment error (-115, -137) nobody asks Zalo for this long: ZNS steps fall back.
BALANCE_HOLD = timedelta(hours=12)
PARAM_PREFIX = "param_"
TRACKING_ID_LENGTH = 32  # Zalo allows 48; a hex digest prefix of the delivery key


class Kind(Enum):
    """What a Zalo error code means for the message."""

    RETRY = "retry"  # try again later (Temporal's retry policy)
    PERMANENT = "permanent"  # will not succeed as sent: the step falls back to the next channel
    TEMPLATE = "template"  # permanent, and someone must fix the template: logged as an error
    SETUP = "setup"  # permanent, and someone must fix the app, the OA or its permissions: logged as an error
    BALANCE = "balance"  # permanent, and ZNS pauses for the whole OA (BALANCE_HOLD): logged as an error
    DEAD_ADDRESS = "dead_address"  # permanent, and the number is suppressed for ZNS
    TOKEN = "token"  # access token refused: refresh once and send again in the same call
    NIGHT = "night"  # a time restriction: 06:00 Vietnam time when it is night, else TIME_WINDOW_RETRY
    QUOTA = "quota"  # a daily quota: retry after midnight Vietnam time
    MONTHLY_QUOTA = "monthly_quota"  # a monthly quota: retry on the first of next month, Vietnam time


class Code(NamedTuple):
    kind: Kind
    meaning: str


# Zalo's ZNS error table ("Cách xử lý mã lỗi", zalo.cloud/zns/guidelines/handle-error-code; the sources are
# named in docs/channels/zalo-zns.md). A code that is not listed is permanent: an unknown refusal should fall
# back to the next channel, not retry for hours.
ERRORS: dict[int, Code] = {
    -100: Code(Kind.RETRY, "unknown error at Zalo"),
    -101: Code(Kind.SETUP, "application invalid: check TOUCHFLOW_ZALO_APP_ID"),
    -102: Code(Kind.SETUP, "application does not exist: check TOUCHFLOW_ZALO_APP_ID"),
    -103: Code(Kind.SETUP, "application not activated: activate it on Zalo for Developers"),
    -104: Code(Kind.SETUP, "app secret key invalid: check TOUCHFLOW_ZALO_SECRET_KEY"),
    -105: Code(Kind.SETUP, "application not linked to an Official Account: link it on Zalo for Developers"),
    -106: Code(Kind.PERMANENT, "method unsupported"),
    -107: Code(Kind.PERMANENT, "message id invalid"),
    -108: Code(Kind.DEAD_ADDRESS, "phone number invalid"),
    -109: Code(Kind.TEMPLATE, "template id invalid: check TOUCHFLOW_ZALO_TEMPLATE_IDS"),
    -1091: Code(Kind.TEMPLATE, "template is not in a state that allows this (not rejected, or made by Zalo)"),
    -110: Code(Kind.PERMANENT, "recipient's Zalo app is too old for ZNS"),
    -111: Code(Kind.TEMPLATE, "template data empty"),
    -112: Code(Kind.TEMPLATE, "template data invalid"),
    -1121: Code(Kind.TEMPLATE, "a parameter is longer than its type allows"),
    -1122: Code(Kind.TEMPLATE, "a parameter of the template is missing"),
    -1123: Code(Kind.TEMPLATE, "Zalo could not make the template's QR code"),
    -1124: Code(Kind.TEMPLATE, "a parameter is not in the format of its type"),
    -113: Code(Kind.TEMPLATE, "button invalid"),
    -1131: Code(Kind.TEMPLATE, "a link is not a valid URL"),
    -114: Code(Kind.PERMANENT, "recipient cannot get ZNS now (account state, ZNS settings, old app, other)"),
    -115: Code(Kind.BALANCE, "the ZNS account's balance is too low: top it up"),
    -116: Code(Kind.TEMPLATE, "content invalid"),
    -117: Code(Kind.TEMPLATE, "the OA or app may not use this template"),
    -118: Code(Kind.PERMANENT, "no Zalo account for this phone number, or it is disabled"),
    -119: Code(Kind.PERMANENT, "account cannot receive ZNS"),
    -120: Code(Kind.SETUP, "the OA has no permission for this feature"),
    -1201: Code(Kind.SETUP, "the OA may not create tag 3 (promotion) templates"),
    -1202: Code(Kind.TEMPLATE, "the OA may not use the template's image or logo"),
    -121: Code(Kind.TEMPLATE, "template has no content"),
    -122: Code(Kind.PERMANENT, "request body is not JSON"),
    -123: Code(Kind.PERMANENT, "Zalo could not decrypt an RSA-encrypted message"),
    -124: Code(Kind.TOKEN, "access token invalid"),
    -1241: Code(Kind.SETUP, "appsecret_proof invalid: check TOUCHFLOW_ZALO_SECRET_KEY"),
    -125: Code(Kind.SETUP, "Official Account id invalid"),
    -126: Code(Kind.SETUP, "development-mode wallet empty (touchflow does not send in development mode)"),
    -127: Code(Kind.TEMPLATE, "a template in test may only be sent to the OA's administrators"),
    -128: Code(Kind.SETUP, "encoding key does not exist"),
    -129: Code(Kind.RETRY, "Zalo could not create the RSA key"),
    -130: Code(Kind.TEMPLATE, "content longer than the template allows"),
    -131: Code(Kind.TEMPLATE, "template not approved"),
    -132: Code(Kind.TEMPLATE, "parameter invalid"),
    -133: Code(Kind.NIGHT, "this template may not be sent now (not at night, 22:00-06:00 Vietnam time)"),
    -134: Code(Kind.PERMANENT, "recipient has not answered the OA's request to receive ZNS"),
    -135: Code(Kind.SETUP, "the OA may not send ZNS yet (not verified, or on the free plan)"),
    -1351: Code(Kind.SETUP, "the OA may not send ZNS: Zalo blocked it for a violation; contact Zalo"),
    -136: Code(Kind.SETUP, "the OA needs a linked Zalo Cloud Account (ZCA) for this"),
    -137: Code(Kind.BALANCE, "payment through the Zalo Cloud Account failed (wallet balance too low, ...)"),
    -138: Code(Kind.SETUP, "the app has no permission for this feature"),
    -1381: Code(Kind.SETUP, "the OA has not let the extension use its Zalo Cloud Account"),
    -139: Code(Kind.PERMANENT, "recipient refuses this type of ZNS"),
    -140: Code(Kind.PERMANENT, "the OA may not send after-sales (promotion) ZNS to this recipient"),
    -141: Code(Kind.DEAD_ADDRESS, "recipient refuses ZNS from this OA"),
    -142: Code(Kind.PERMANENT, "RSA key does not exist"),
    -143: Code(Kind.PERMANENT, "RSA key already exists"),
    -144: Code(Kind.QUOTA, "the OA used up its daily ZNS quota"),
    -1441: Code(Kind.MONTHLY_QUOTA, "the OA used up its monthly promotion quota"),
    -145: Code(Kind.TEMPLATE, "the OA may not send this type of content"),
    -146: Code(Kind.TEMPLATE, "template disabled by Zalo for low sending quality"),
    -147: Code(Kind.QUOTA, "the template used up its daily quota"),
    -1471: Code(Kind.MONTHLY_QUOTA, "the OA used up this month's after-sales ZNS for this recipient"),
    -148: Code(Kind.PERMANENT, "ZNS journey token not found"),
    -149: Code(Kind.PERMANENT, "ZNS journey token invalid"),
    -1491: Code(Kind.PERMANENT, "ZNS journey token type does not fit the template"),
    -150: Code(Kind.PERMANENT, "ZNS journey token expired"),
    -151: Code(Kind.PERMANENT, "not an end-to-end encrypted (E2EE) template"),
    -152: Code(Kind.PERMANENT, "Zalo could not get the E2EE key"),
    -153: Code(Kind.TEMPLATE, "data breaks Zalo's rules"),
    -158: Code(Kind.PERMANENT, "file larger than allowed"),
    -159: Code(Kind.PERMANENT, "file format not allowed"),
    -160: Code(Kind.PERMANENT, "daily quota of template edits or uploads used up"),
    -161: Code(Kind.PERMANENT, "sending_mode has a value Zalo does not allow"),
    -162: Code(Kind.PERMANENT, "over-quota sending (sending_mode 3) is not for tag 1 or 2 templates"),
}
# The sub-codes that say which parameter is wrong (when Zalo's message names it, the reason does too).
PARAMETER_ERRORS = frozenset({-1121, -1122, -1124})
UNDOCUMENTED = Code(Kind.PERMANENT, "not in Zalo's error table")


# ---------------------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------------------


def seconds_until(moment: time, now: datetime) -> float:
    """Seconds from `now` until the next `moment` on the Vietnam clock (never zero: at least a minute)."""
    local = now.astimezone(VIETNAM)
    target = local.replace(hour=moment.hour, minute=moment.minute, second=0, microsecond=0)
    if target <= local:
        target += timedelta(days=1)
    return max((target - local).total_seconds(), 60.0)


def seconds_until_next_month(now: datetime) -> float:
    """Seconds from `now` until 00:00 on the first of next month, Vietnam time."""
    local = now.astimezone(VIETNAM)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return max((datetime(year, month, 1, tzinfo=VIETNAM) - local).total_seconds(), 60.0)


def is_night(now: datetime) -> bool:
    """22:00 to 06:00 on the Vietnam clock."""
    local = now.astimezone(VIETNAM).time()
    return local >= NIGHT_STARTS or local < NIGHT_ENDS


def kind_of(code: int) -> Kind:
    return ERRORS.get(code, UNDOCUMENTED).kind


def classify(
    code: int, now: datetime, *, message: str = "", params: Iterable[str] = ()
) -> RetryableDeliveryError | PermanentDeliveryError:
    """The delivery error for a Zalo `error` code other than 0 (and -124 once a refresh did not help).

    `message` is Zalo's own text and `params` the names of the parameters sent: for a parameter error the
    reason names the parameters Zalo's text mentions. Zalo's text itself never goes into the reason.
    """
    kind, meaning = ERRORS.get(code, UNDOCUMENTED)
    named = [name for name in params if re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", message)]
    if code in PARAMETER_ERRORS and named:
        meaning = f"{meaning} ({', '.join(named)})"
    reason = f"Zalo ZNS error {code}: {meaning}"
    if kind is Kind.NIGHT:
        wait = seconds_until(NIGHT_ENDS, now) if is_night(now) else TIME_WINDOW_RETRY.total_seconds()
        return RetryableDeliveryError(reason, code=str(code), retry_after=wait)
    if kind is Kind.QUOTA:
        return RetryableDeliveryError(reason, code=str(code), retry_after=seconds_until(time(0, 0), now))
    if kind is Kind.MONTHLY_QUOTA:
        return RetryableDeliveryError(reason, code=str(code), retry_after=seconds_until_next_month(now))
    if kind in (Kind.RETRY, Kind.TOKEN):
        return RetryableDeliveryError(reason, code=str(code))
    return PermanentDeliveryError(reason, code=str(code), address_dead=kind is Kind.DEAD_ADDRESS)


# ---------------------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------------------


class ParamType(NamedTuple):
    """One of Zalo's ZNS parameter types that touchflow checks, found by the parameter's name."""

    name: str
    pattern: re.Pattern[str]  # the parameter names of this type
    max_length: int
    form: re.Pattern[str] | None = None  # the shape its value must have


# Zalo's types and their limits ("Số lượng / Số tiền (20)", "Mã số (30)", ...); a template's author picks a
# type per parameter when Zalo approves it, so touchflow knows them by naming convention only. A value over
# the limit is refused before sending (Zalo would refuse it with -1121, a wrong form with -1124):
# truncating a code or an amount would send a wrong one.
PARAM_TYPES = (
    ParamType("customer name", re.compile(r"customer_name"), 30),
    ParamType("code", re.compile(r"(?:.+_)?code"), 30),
    ParamType("amount", re.compile(r"(?:.+_)?(?:total|amount|value|price|points|count)"), 20),
    ParamType(
        "time",
        re.compile(r"(?:.+_)?(?:date|time)"),
        20,
        # Zalo's forms: hh:mm:ss dd/mm/yyyy, hh:mm dd/mm/yyyy, dd/mm/yyyy, mm/yyyy (the zns_date filter).
        re.compile(r"(?:\d{2}:\d{2}(?::\d{2})? )?\d{2}/\d{2}/\d{4}|\d{2}/\d{4}"),
    ),
)


def param_problems(data: dict[str, str]) -> list[str]:
    """What Zalo would refuse in these parameters, by name and limit (never the value itself)."""
    problems = []
    for name, value in data.items():
        kind = next((t for t in PARAM_TYPES if t.pattern.fullmatch(name)), None)
        if kind is None:
            continue
        if len(value) > kind.max_length:
            problems.append(
                f"{name} is {len(value)} characters, Zalo's {kind.name} type takes at most {kind.max_length}"
            )
        elif kind.form is not None and not kind.form.fullmatch(value):
            problems.append(f"{name} is not dd/mm/yyyy (render it with the zns_date filter)")
    return problems


def template_id_for(ids: Mapping[str, str], journey: str, step: str) -> PerLanguage:
    """A step's approved template id in each language, from TOUCHFLOW_ZALO_TEMPLATE_IDS.

    `journey.step.locale=id` is the template Zalo approved in that language; `journey.step=id` the one for
    every other language (Zalo approves a template per language, so a step may have one id per locale).
    """
    prefix = f"{journey}.{step}."
    by_language = {
        key.removeprefix(prefix).lower().replace("_", "-"): value
        for key, value in ids.items()
        if key.startswith(prefix)
    }
    return PerLanguage(by_language, ids.get(f"{journey}.{step}", ""))


def normalize_phone(raw: str) -> str:
    """A Vietnamese mobile number as Zalo wants it: `84` and nine digits.

    Accepts `0912345678`, `+84 912 345 678`, `84912345678` (spaces, dots, dashes, brackets ignored); anything
    else is a PermanentDeliveryError that never quotes the number.
    """
    digits = re.sub(r"[\s().-]", "", raw)
    if digits.startswith("+84"):
        national = digits[3:]
    elif digits.startswith("84") and len(digits) == 11:
        national = digits[2:]
    elif digits.startswith("0"):
        national = digits[1:]
    else:
        raise PermanentDeliveryError("invalid phone: not a Vietnamese mobile number", address_dead=True)
    if not re.fullmatch(r"[35789]\d{8}", national):
        raise PermanentDeliveryError("invalid phone: not a Vietnamese mobile number", address_dead=True)
    return f"84{national}"


def tracking_id(key: str) -> str:
    """Zalo's `tracking_id` for a delivery: derived from its key, without the customer id in clear."""
    return hashlib.sha256(key.encode()).hexdigest()[:TRACKING_ID_LENGTH]


# ---------------------------------------------------------------------------------------------------------
# Access tokens (OAuth v4)
# ---------------------------------------------------------------------------------------------------------


class TokenPair(NamedTuple):
    access_token: str
    refresh_token: str
    expires_in: float  # seconds


class TokenProvider(Protocol):
    """Where the channel gets the OA access token. The worker wires one backed by the database."""

    async def access_token(self) -> str:
        """A token believed valid (refreshing first when none is stored or it is about to expire)."""
        ...

    async def refresh(self, rejected: str) -> str:
        """A token other than `rejected`, which Zalo refused: refreshed now, or by another worker already."""
        ...


class Hold(NamedTuple):
    until: datetime
    because: str  # Zalo's code that started it


class SendingHold(Protocol):
    """Where the channel keeps a pause of ZNS for the whole OA, seen by every worker (the database)."""

    async def held(self) -> Hold | None:
        """The pause in force or last in force; None when there never was one."""
        ...

    async def hold(self, because: str, now: datetime, until: datetime) -> bool:
        """Pause until `until` unless paused already at `now`; True when this call started the pause."""
        ...


class ZaloOAuth:
    """`POST {oauth_base}/v4/oa/access_token` with a refresh token: the new access and refresh token.

    Synchronous on purpose: the caller runs it in a thread while holding a database lock.
    """

    def __init__(self, *, oauth_base: str, app_id: str, secret_key: str, timeout: float = 10.0) -> None:
        self.url = f"{oauth_base.rstrip('/')}/v4/oa/access_token"
        self.app_id = app_id
        self.secret_key = secret_key
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            oauth_base=settings.zalo_oauth_base,
            app_id=settings.zalo_app_id,
            secret_key=settings.zalo_secret_key.get_secret_value(),
            timeout=settings.zalo_timeout.total_seconds(),
        )

    def refresh(self, refresh_token: str) -> TokenPair:
        try:
            with httpx.Client(timeout=self.timeout) as client:
                response = client.post(
                    self.url,
                    headers={"secret_key": self.secret_key},
                    data={
                        "refresh_token": refresh_token,
                        "app_id": self.app_id,
                        "grant_type": "refresh_token",
                    },
                )
        except httpx.HTTPError as exc:
            raise RetryableDeliveryError(f"Zalo OAuth unreachable: {type(exc).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableDeliveryError(f"Zalo OAuth answered HTTP {response.status_code}")
        body = _json(response)
        if body is None:
            raise RetryableDeliveryError(f"Zalo OAuth answered HTTP {response.status_code} without JSON")
        if body.get("access_token") and body.get("refresh_token"):
            return TokenPair(
                str(body["access_token"]), str(body["refresh_token"]), float(body.get("expires_in") or 3600)
            )
        code = body.get("error")
        name = str(body.get("error_name") or body.get("error_reason") or "refused")[:100]
        log.error("zalo token refresh refused", extra={"zalo_error": code, "zalo_error_name": name})
        raise PermanentDeliveryError(
            f"Zalo OAuth refused the token refresh (error {code}: {name}): check TOUCHFLOW_ZALO_APP_ID and "
            "TOUCHFLOW_ZALO_SECRET_KEY, or set TOUCHFLOW_ZALO_REFRESH_TOKEN to a new refresh token",
            code=str(code),
        )


# ---------------------------------------------------------------------------------------------------------
# Sending
# ---------------------------------------------------------------------------------------------------------


class _Answer(NamedTuple):
    code: int
    data: dict[str, Any]
    message: str = ""  # Zalo's text: it may name a parameter; never logged or stored (it may quote data)


# What an operator reads in the error log line of a code that needs someone (ids and codes, never data).
_LOUD = {
    Kind.TEMPLATE: (
        "zalo template rejected",
        "fix the template or its parameters, or TOUCHFLOW_ZALO_TEMPLATE_IDS; the step falls back meanwhile",
    ),
    Kind.SETUP: (
        "zalo set-up fault",
        "fix the Zalo app, OA or permission named in the reason; until then every ZNS step falls back",
    ),
    Kind.BALANCE: (
        "zalo zns paused",
        "top up the ZNS balance or the Zalo Cloud Account wallet of the OA; ZNS steps fall back to their "
        "next channel until held_until, then ZNS is tried again",
    ),
}


class ZaloZns(Channel):
    name = "zalo_zns"
    reaches = Reach.PHONE
    # Rendered parts: `template_id` and every `param_<name>` block (see `accepts`).
    parts: ClassVar[tuple[str, ...]] = ("template_id",)
    required_parts: ClassVar[tuple[str, ...]] = ("template_id",)

    def __init__(
        self,
        *,
        api_base: str,
        tokens: TokenProvider,
        hold: SendingHold | None = None,
        timeout: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Without a `hold`, a balance error still falls back, but each step asks Zalo again."""
        self.url = f"{api_base.rstrip('/')}/message/template"
        self.tokens = tokens
        self.hold = hold
        self.timeout = timeout
        self.clock = clock
        # Connections to Zalo's API are kept between messages: one TLS handshake per connection, not per
        # message (httpx drops a kept connection Zalo closed before it sends on it).
        self._http = Kept(self._client, httpx.AsyncClient.aclose)

    def _client(self) -> httpx.AsyncClient:
        # No cap on connections (httpx's 100 would make sends wait, then fail, behind a slow Zalo).
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=20)
        return httpx.AsyncClient(timeout=self.timeout, limits=limits)

    async def aclose(self) -> None:
        await self._http.aclose()

    @classmethod
    def accepts(cls, part: str) -> bool:
        return part in cls.parts or part.startswith(PARAM_PREFIX)

    @staticmethod
    def configured(settings: Settings) -> bool:
        """Zalo needs an app id, its secret key and a refresh token; without them the channel stays off."""
        return bool(
            settings.zalo_app_id
            and settings.zalo_secret_key.get_secret_value()
            and settings.zalo_refresh_token.get_secret_value()
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, tokens: TokenProvider | None = None, hold: SendingHold | None = None
    ) -> Self:
        if tokens is None:
            raise ValueError("the zalo_zns channel needs a token provider (the worker builds one)")
        return cls(
            api_base=settings.zalo_api_base,
            tokens=tokens,
            hold=hold,
            timeout=settings.zalo_timeout.total_seconds(),
        )

    def request(self, message: OutboundMessage) -> dict[str, Any]:
        """The JSON body of `POST /message/template` for this message."""
        template_id = message.content.get("template_id", "").strip()
        if not template_id:
            raise PermanentDeliveryError("zalo_zns template has no `template_id` block")
        data = {
            part.removeprefix(PARAM_PREFIX): value
            for part, value in message.content.items()
            if part.startswith(PARAM_PREFIX)
        }
        problems = param_problems(data)
        if problems:
            reason = f"zalo_zns parameters Zalo would refuse: {'; '.join(problems)}"
            what, action = _LOUD[Kind.TEMPLATE]
            log.error(what, extra={"template_id": template_id, "reason": reason, "action": action})
            raise PermanentDeliveryError(reason)
        return {
            "phone": normalize_phone(message.address),
            "template_id": template_id,
            "template_data": data,
            "tracking_id": tracking_id(message.key),
        }

    async def send(self, message: OutboundMessage) -> Receipt:
        body = self.request(message)
        await self._not_held()
        token = await self.tokens.access_token()
        answer = await self._post(token, body)
        if answer.code == -124:
            # Expired or revoked: refresh once (or take the token another worker just got) and send again.
            token = await self.tokens.refresh(token)
            answer = await self._post(token, body)
        if answer.code == 0:
            return Receipt(provider_id=str(answer.data.get("msg_id") or "") or None)
        now = self.clock()
        error = classify(answer.code, now, message=answer.message, params=body["template_data"])
        kind = kind_of(answer.code)
        extra: dict[str, Any] = {}
        if kind is Kind.BALANCE:
            until = now + BALANCE_HOLD
            extra["held_until"] = until.isoformat()
            paused = f"{error.reason}; ZNS paused until {_shown(until)}"
            error = PermanentDeliveryError(paused, code=error.code)
            if self.hold is not None and not await self.hold.hold(str(answer.code), now, until):
                raise error  # another worker started the pause a moment ago, and said so
        loud = _LOUD.get(kind)
        if loud is not None:
            # Someone has to act: say so loudly, with ids and codes only (never the data or the phone).
            what, action = loud
            log.error(
                what,
                extra={
                    "zalo_error": answer.code,
                    "template_id": body["template_id"],
                    "reason": error.reason,
                    "action": action,
                    **extra,
                },
            )
        raise error

    async def _not_held(self) -> None:
        """Refuse at once, without asking Zalo, while ZNS is paused for the OA (the step falls back)."""
        held = await self.hold.held() if self.hold is not None else None
        if held is not None and held.until > self.clock():
            meaning = ERRORS.get(int(held.because), UNDOCUMENTED).meaning if held.because else "balance"
            raise PermanentDeliveryError(
                f"Zalo ZNS paused until {_shown(held.until)} after error {held.because} ({meaning})",
                code=held.because or None,
            )

    async def _post(self, token: str, body: dict[str, Any]) -> _Answer:
        try:
            response = await self._http.get().post(self.url, headers={"access_token": token}, json=body)
        except httpx.HTTPError as exc:
            raise RetryableDeliveryError(f"Zalo ZNS unreachable: {type(exc).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = _retry_after(response)
            raise RetryableDeliveryError(
                f"Zalo ZNS answered HTTP {response.status_code}",
                code=str(response.status_code),
                retry_after=retry_after,
            )
        if response.status_code >= 400:
            raise PermanentDeliveryError(
                f"Zalo ZNS answered HTTP {response.status_code}: check TOUCHFLOW_ZALO_API_BASE",
                code=str(response.status_code),
            )
        answer = _json(response)
        if answer is None or not isinstance(answer.get("error"), int):
            raise RetryableDeliveryError("Zalo ZNS answered without an error code")
        data = answer.get("data")
        text = str(answer.get("message") or "")
        return _Answer(answer["error"], data if isinstance(data, dict) else {}, text)


def _shown(moment: datetime) -> str:
    """A time as an operator in Vietnam reads it."""
    return moment.astimezone(VIETNAM).strftime("%Y-%m-%d %H:%M Vietnam time")


def _json(response: httpx.Response) -> dict[str, Any] | None:
    try:
        value = response.json()
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("retry-after"))


# ---------------------------------------------------------------------------------------------------------
# The delivery webhook (Zalo -> us)
# ---------------------------------------------------------------------------------------------------------

DELIVERED_EVENT = "user_received_message"


class WebhookError(ValueError):
    """The body is not a Zalo event we can read, so not one Zalo signed (answered 422)."""


class WebhookSignatureError(WebhookError):
    """`X-ZEvent-Signature` is missing or does not match (answered 401)."""


class WebhookStale(WebhookSignatureError):
    """Signed, but its `timestamp` is outside the freshness window: a replay, not Zalo (answered 401)."""


@dataclass(frozen=True)
class DeliveryReceipt:
    """Zalo reports a ZNS message on the recipient's device."""

    msg_id: str
    tracking_id: str | None
    delivered_at: datetime


@dataclass(frozen=True)
class Ignored:
    """A correctly signed, fresh event touchflow has no use for (answered 200: Zalo disables a webhook that
    keeps failing). `reason` names the event or the field, never a value."""

    reason: str


def webhook_signature(app_id: str, body: bytes, timestamp: str, oa_secret_key: str) -> str:
    """`mac=` + hex SHA-256 of app id + raw body + the body's `timestamp` + OA Secret Key, as Zalo signs."""
    digest = hashlib.sha256(app_id.encode() + body + timestamp.encode() + oa_secret_key.encode())
    return f"mac={digest.hexdigest()}"


def parse_webhook(
    body: bytes,
    signature: str | None,
    *,
    app_id: str,
    oa_secret_key: str,
    now: datetime,
    max_age: timedelta,
) -> DeliveryReceipt | Ignored:
    """Check Zalo's signature and the event's age, then map it: a delivery receipt, or what is ignored.

    The signature covers the body's `timestamp` (milliseconds since the epoch), so an event further than
    `max_age` from `now` either way was captured and replayed, or comes from a clock far off: refused.
    """
    try:
        event = json.loads(body)
    except ValueError:
        raise WebhookError("body: not JSON") from None
    if not isinstance(event, dict):
        raise WebhookError("body: not a JSON object")
    timestamp = str(event.get("timestamp", ""))
    expected = webhook_signature(app_id, body, timestamp, oa_secret_key)
    presented = (signature or "").strip()
    if not presented.startswith("mac="):
        presented = f"mac={presented}"
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise WebhookSignatureError("X-ZEvent-Signature does not match")
    sent_at = _epoch_ms(timestamp)
    if sent_at is None:
        raise WebhookStale("timestamp: missing or not milliseconds since the epoch, so its age is unknown")
    age = now - sent_at
    if abs(age) > max_age:
        direction = "old" if age >= timedelta(0) else "ahead of this server's clock"
        raise WebhookStale(
            f"timestamp: the event is {_minutes(age)} {direction}, outside the {_minutes(max_age)} window "
            "(TOUCHFLOW_ZALO_WEBHOOK_MAX_AGE)"
        )
    name = event.get("event_name")
    if name != DELIVERED_EVENT:
        return Ignored(f"event_name: {str(name)[:64]!r} is not used")
    message = event.get("message")
    if not isinstance(message, dict) or not message.get("msg_id"):
        return Ignored("message.msg_id: missing")
    delivered_at = _epoch_ms(str(message.get("delivery_time") or timestamp))
    if delivered_at is None:
        return Ignored("message.delivery_time: not milliseconds since the epoch")
    return DeliveryReceipt(
        msg_id=str(message["msg_id"]),
        tracking_id=str(message["tracking_id"]) if message.get("tracking_id") else None,
        delivered_at=delivered_at,
    )


def _epoch_ms(value: str) -> datetime | None:
    """Zalo's timestamps: milliseconds since the epoch, as digits (a number Python's datetime can hold)."""
    if not value.isdigit() or len(value) > 15:
        return None
    return datetime.fromtimestamp(int(value) / 1000, UTC)


def _minutes(span: timedelta) -> str:
    return f"{abs(span).total_seconds() / 60:.0f} min"
