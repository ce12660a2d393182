"""Web push: RFC 8030 delivery, RFC 8291 (aes128gcm) encryption and RFC 8292 VAPID.

The address is a browser's subscription as JSON (`{"endpoint": ..., "keys": {"p256dh": ..., "auth": ...}}`).
The service worker receives JSON: `title`, `body`, and when given `icon` and `url` (where a click goes), plus
`tag`, derived from the delivery key so a repeated send replaces the notification instead of adding one.

pywebpush encrypts and py_vapid signs; the request itself is ours, so that it goes only to a host in
TOUCHFLOW_PUSH_SERVICE_HOSTS (checked again here, before any connection), never follows a redirect, and reads
at most `MAX_ANSWER_BYTES` of the answer. Connections to a push service are kept between messages (HTTP
keep-alive), so a broadcast pays one TLS handshake per connection, not one per device.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

import aiohttp
from py_vapid import Vapid, VapidException
from pywebpush import WebPusher, WebPushException

from touchflow.channels.base import Channel, Kept, OutboundMessage, Reach, Receipt
from touchflow.channels.errors import PermanentDeliveryError, RetryableDeliveryError, parse_retry_after
from touchflow.encoding import b64url_encode
from touchflow.settings import Settings
from touchflow.urls import HostPatterns, linkable, push_endpoint_problem
from touchflow.vapid import load_private_key

# Answers that mean "this subscription no longer exists" (RFC 8030 §6.2 uses 404 and 410).
_GONE = {404, 410}
# Answers worth trying again; every other 4xx will fail the same way next time.
_RETRY = {408, 425, 429}
_REASONS = {
    400: "request refused as malformed",
    401: "VAPID authorization refused: check TOUCHFLOW_VAPID_PRIVATE_KEY and TOUCHFLOW_VAPID_SUBJECT",
    403: "VAPID key refused: the subscription was made with another applicationServerKey",
    404: "subscription gone",
    410: "subscription gone",
    413: "payload too large",
    429: "rate limited",
}
# A push service answers 201 with an empty body; more than this is read no further (and never kept).
MAX_ANSWER_BYTES = 64 * 1024
# A kept connection unused this long is closed; push services keep idle connections open longer (nginx's
# default is 75 s), so the sender lets go first and does not post on a connection the service is closing.
IDLE_LIMIT = 15.0
# RFC 8292 §2: a VAPID token lives at most 24 hours; 12 leaves room for clocks that disagree.
_VAPID_LIFETIME = 12 * 3600


class WebPush(Channel):
    name = "web_push"
    reaches = Reach.PUSH_SUBSCRIPTION
    parts: ClassVar[tuple[str, ...]] = ("title", "body", "url", "icon")
    required_parts: ClassVar[tuple[str, ...]] = ("title", "body")
    # RFC 8291 §4: one 4096-byte record, less the 86-byte header, the 16-byte tag and the padding delimiter.
    max_payload = 3_993

    def __init__(
        self,
        *,
        private_key: str,
        subject: str,
        ttl: int,
        timeout: float,
        hosts: HostPatterns,
    ) -> None:
        # Parsed once here so a bad key stops the worker at start, with the setting's name.
        self.vapid = Vapid(private_key=load_private_key(private_key)) if private_key else None
        self.subject = subject
        self.ttl = ttl
        self.timeout = timeout
        self.hosts = hosts
        self._http = Kept(self._client, aiohttp.ClientSession.close)
        if self.vapid is not None and not subject:
            raise ValueError(
                "TOUCHFLOW_VAPID_SUBJECT is empty: set it to a mailto: or https: URL where push services "
                "can reach you (required with TOUCHFLOW_VAPID_PRIVATE_KEY)"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            private_key=settings.vapid_private_key.get_secret_value(),
            subject=settings.vapid_subject,
            ttl=int(settings.push_ttl.total_seconds()),
            timeout=settings.push_timeout.total_seconds(),
            hosts=settings.push_service_hosts,
        )

    @staticmethod
    def tag(key: str) -> str:
        """22 base64url characters: fits the Topic header (at most 32) and a notification tag."""
        return b64url_encode(hashlib.sha256(key.encode()).digest()[:16])

    def payload(self, message: OutboundMessage) -> bytes:
        body: dict[str, str] = {
            part: message.content[part] for part in self.parts if message.content.get(part)
        }
        body["tag"] = self.tag(message.key)
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    async def send(self, message: OutboundMessage) -> Receipt:
        if self.vapid is None:
            raise PermanentDeliveryError(
                "web push is not configured: set TOUCHFLOW_VAPID_PRIVATE_KEY and TOUCHFLOW_VAPID_SUBJECT "
                "(`touchflow vapid-keys` makes them)",
                code="not_configured",
            )
        subscription = _subscription(message.address)
        endpoint = subscription["endpoint"]
        refusal = push_endpoint_problem(endpoint, self.hosts)
        if refusal is not None:
            # Not `address_dead`: the subscription is kept, and works again once its host is allowed.
            code, reason = refusal
            raise PermanentDeliveryError(f"web push endpoint {reason}", code=code)
        url = message.content.get("url", "").strip()
        if url and not linkable(url):
            # The service worker opens it on a click: only web addresses, never `javascript:` or `data:`.
            raise PermanentDeliveryError("web push: `url` must be an http(s) URL or a path", code="bad_url")
        payload = self.payload(message)
        if len(payload) > self.max_payload:
            raise PermanentDeliveryError(
                f"payload is {len(payload)} bytes, web push carries at most {self.max_payload}: "
                "shorten the step's title or body",
                code="payload_too_large",
            )
        tag = self.tag(message.key)
        try:
            body = WebPusher(subscription).encode(payload, "aes128gcm")["body"]
        except (WebPushException, ValueError, TypeError):
            # cryptography refuses a p256dh that is not a point on the curve: the subscription is junk.
            raise PermanentDeliveryError(
                "subscription keys unusable", code="bad_subscription", address_dead=True
            ) from None
        parts = urlsplit(endpoint)
        try:
            # A fresh claims dict each time, with this endpoint's origin as the audience (RFC 8292 §2).
            authorization = self.vapid.sign(
                {
                    "sub": self.subject,
                    "aud": f"{parts.scheme}://{parts.netloc}",
                    "exp": int(time.time()) + _VAPID_LIFETIME,
                }
            )
        except VapidException:
            raise PermanentDeliveryError(
                "web push endpoint has an origin VAPID cannot sign for", code="bad_endpoint"
            ) from None
        headers = {
            **authorization,
            "TTL": str(self.ttl),
            "Content-Encoding": "aes128gcm",
            # Topic: a message still waiting at the push service is replaced by a re-send, not doubled.
            "Topic": tag,
            "Urgency": "normal",
        }
        return await self._post(endpoint, body, headers)

    def _client(self) -> aiohttp.ClientSession:
        # No cap on connections (aiohttp's 100 would make pushes wait inside their timeout: a step reaches
        # every device of a customer at once) and no cookies (one device's answer is none of another's).
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=IDLE_LIMIT),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            auto_decompress=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, endpoint: str, body: bytes, headers: dict[str, str]) -> Receipt:
        """POST to the push service: no redirects, no proxies from the environment, the answer read only
        up to MAX_ANSWER_BYTES and not decompressed, all within the push timeout. An answer not read to its
        end closes its connection rather than keeping it."""
        try:
            async with self._http.get().post(
                endpoint, data=body, headers=headers, allow_redirects=False
            ) as response:
                await _read_at_most(response.content, MAX_ANSWER_BYTES)
                status = response.status
                answer = response.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RetryableDeliveryError(f"push service unreachable: {type(exc).__name__}") from None
        if not 200 <= status < 300:
            raise classify(status, answer.get("Retry-After"))
        # RFC 8030 §5: 201 Created with the push message resource in Location.
        return Receipt(provider_id=answer.get("Location") or None)


def classify(status: int, retry_after: str | None = None) -> RetryableDeliveryError | PermanentDeliveryError:
    """The error a push service's answer means (RFC 8030 §5, §6.2; RFC 8292 §4)."""
    reason = f"push service answered {status}"
    if status in _REASONS:
        reason += f": {_REASONS[status]}"
    elif 300 <= status < 400:
        # Where it points is not a push service we checked: the request is not repeated there.
        reason += ": redirects are not followed"
    if status >= 500 or status in _RETRY:
        return RetryableDeliveryError(reason, code=str(status), retry_after=parse_retry_after(retry_after))
    return PermanentDeliveryError(reason, code=str(status), address_dead=status in _GONE)


def _subscription(address: str) -> dict[str, Any]:
    try:
        data = json.loads(address)
        keys = data["keys"]
        subscription = {
            "endpoint": str(data["endpoint"]),
            "keys": {"p256dh": str(keys["p256dh"]), "auth": str(keys["auth"])},
        }
    except (ValueError, TypeError, KeyError):
        raise PermanentDeliveryError(
            "address is not a push subscription (JSON with endpoint and keys)",
            code="bad_subscription",
            address_dead=True,
        ) from None
    return subscription


async def _read_at_most(stream: aiohttp.StreamReader, limit: int) -> None:
    read = 0
    while read < limit and (chunk := await stream.read(limit - read)):
        read += len(chunk)
