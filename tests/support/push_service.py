"""A push service on loopback that holds senders to RFC 8030, 8291 and 8292, as a browser vendor's does.

It checks the VAPID JWT (ES256 signature against the `k=` key, `aud` = its own origin, `exp` in the next
24 hours, `sub` present), requires `TTL` and `Content-Encoding: aes128gcm`, and decrypts each message with
the subscriber's private key and auth secret (http_ece). Tests read the decrypted payloads in `received`
and can make it answer a status instead (`answer`, with headers such as a redirect's `Location`, or with a
body far larger than any sender should read), or hold a request until released (`hold`). `requests` counts
every request that reached it, taken or not: a test of a refused endpoint asserts it stays 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import http_ece
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from multidict import CIMultiDict

from touchflow.encoding import b64url_decode, b64url_encode
from touchflow.models import PushKeys, PushSubscriptionIn


@dataclass
class Subscriber:
    """A browser's side of a subscription: its ECDH key pair and auth secret, made as a browser would."""

    token: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def p256dh(self) -> str:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url_encode(point)

    def to_json(self) -> dict[str, Any]:
        """What `subscription.toJSON()` gives in the browser."""
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": self.p256dh, "auth": b64url_encode(self.auth)},
        }

    def subscription_in(self) -> PushSubscriptionIn:
        """For `store.push.save`: built unvalidated, because this service speaks plain http on
        loopback and the API (rightly) takes https endpoints only."""
        keys = PushKeys.model_construct(p256dh=self.p256dh, auth=b64url_encode(self.auth))
        return PushSubscriptionIn.model_construct(
            endpoint=self.endpoint, expirationTime=None, keys=keys, user_agent="test browser"
        )


@dataclass
class Received:
    token: str
    payload: dict[str, Any]
    headers: CIMultiDict[str]  # as sent, read case-insensitively
    claims: dict[str, Any]


@dataclass
class PushService:
    host: str
    port: int
    # The applicationServerKey the subscribers subscribed with: another VAPID key gets 403 (RFC 8292 §4.2).
    application_server_key: str
    subscribers: dict[str, Subscriber] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    # Why requests were refused (401/403/400): tests assert it stays empty when the sender behaves.
    refusals: list[str] = field(default_factory=list)
    answers: dict[str, list[tuple[int, dict[str, str], int]]] = field(default_factory=dict)
    held: asyncio.Event | None = None
    requests: int = 0
    peers: list[Any] = field(default_factory=list)  # each request's client address: its connection
    # Of an answer's body (`answer(..., body_size=...)`): bytes written before the sender hung up, and set
    # when the handler is done writing or gave up.
    body_bytes_sent: int = 0
    body_done: asyncio.Event = field(default_factory=asyncio.Event)
    runner: web.AppRunner | None = None

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def subscribe(self) -> Subscriber:
        token = uuid.uuid4().hex
        subscriber = Subscriber(token=token, endpoint=f"{self.origin}/push/{token}")
        self.subscribers[token] = subscriber
        return subscriber

    def answer(
        self,
        subscriber: Subscriber,
        status: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
        headers: dict[str, str] | None = None,
        body_size: int = 0,
    ) -> None:
        """Answer the subscriber's next `times` messages with `status` (and `headers`, and a body of
        `body_size` bytes streamed in 64 KiB chunks) instead of taking them."""
        headers = {**(headers or {}), **({"Retry-After": retry_after} if retry_after else {})}
        self.answers.setdefault(subscriber.token, []).extend([(status, headers, body_size)] * times)

    def hold(self) -> asyncio.Event:
        """Keep every request waiting until the returned event is set (to test the sender's timeout)."""
        self.held = asyncio.Event()
        return self.held

    def payloads(self, subscriber: Subscriber) -> list[dict[str, Any]]:
        return [r.payload for r in self.received if r.token == subscriber.token]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/push/{token}", self._push)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self.held is not None:
            self.held.set()
        if self.runner is not None:
            await self.runner.cleanup()

    async def _push(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        if self.held is not None:
            await self.held.wait()
        subscriber = self.subscribers.get(request.match_info["token"])
        if subscriber is None:
            return web.Response(status=404, text="no such subscription")
        queued = self.answers.get(subscriber.token)
        if queued:
            status, headers, body_size = queued.pop(0)
            if body_size:
                return await self._stream(request, status, headers, body_size)
            return web.Response(status=status, headers=headers)
        body = await request.read()
        try:
            claims = self._check_vapid(request.headers.get("Authorization", ""))
        except PermissionError as exc:
            return self._refuse(403, str(exc))
        except ValueError as exc:
            return self._refuse(401, str(exc))
        ttl = request.headers.get("TTL", "")
        if not ttl.isdigit():
            return self._refuse(400, f"TTL header missing or not a number: {ttl!r}")
        if request.headers.get("Content-Encoding") != "aes128gcm":
            return self._refuse(400, f"Content-Encoding is {request.headers.get('Content-Encoding')!r}")
        if len(body) > 4096:
            return self._refuse(413, f"body of {len(body)} bytes")
        try:
            plain = http_ece.decrypt(
                body, private_key=subscriber.private_key, auth_secret=subscriber.auth, version="aes128gcm"
            )
        except Exception as exc:
            return self._refuse(400, f"cannot decrypt: {exc!r}")
        self.received.append(
            Received(subscriber.token, json.loads(plain), CIMultiDict(request.headers), claims)
        )
        return web.Response(status=201, headers={"Location": f"{self.origin}/messages/{uuid.uuid4().hex}"})

    async def _stream(
        self, request: web.Request, status: int, headers: dict[str, str], size: int
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = size
        chunk = b"x" * 65536
        try:
            await response.prepare(request)
            while self.body_bytes_sent < size:
                await response.write(chunk[: size - self.body_bytes_sent])
                self.body_bytes_sent += min(len(chunk), size - self.body_bytes_sent)
            await response.write_eof()
        except ConnectionError:
            pass  # the sender hung up: what it did not read was never written
        finally:
            self.body_done.set()
        return response

    def _refuse(self, status: int, reason: str) -> web.Response:
        self.refusals.append(f"{status}: {reason}")
        return web.Response(status=status, text=reason)

    def _check_vapid(self, authorization: str) -> dict[str, Any]:
        """RFC 8292 §3: `vapid t=<JWT>, k=<public key>`; raises ValueError (401) or PermissionError (403)."""
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise ValueError(f"Authorization scheme is {scheme!r}, not vapid")
        fields = dict(part.strip().split("=", 1) for part in params.split(",") if "=" in part)
        token, key = fields.get("t", ""), fields.get("k", "")
        try:
            header_b64, claims_b64, signature_b64 = token.split(".")
            header = json.loads(b64url_decode(header_b64))
            claims: dict[str, Any] = json.loads(b64url_decode(claims_b64))
            signature = b64url_decode(signature_b64)
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
        except ValueError as exc:
            raise ValueError(f"malformed VAPID token or key: {exc}") from None
        if header.get("alg") != "ES256" or len(signature) != 64:
            raise ValueError(f"JWT is not ES256: {header}")
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise ValueError("JWT signature does not verify against k") from None
        if claims.get("aud") != self.origin:
            raise ValueError(f"aud is {claims.get('aud')!r}, not {self.origin!r}")
        now = time.time()
        if not now < float(claims.get("exp", 0)) <= now + 24 * 3600:
            raise ValueError(f"exp {claims.get('exp')} is not within the next 24 hours")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            raise ValueError(f"sub is {claims.get('sub')!r}")
        if key.rstrip("=") != self.application_server_key:
            raise PermissionError("k is not the key this subscription was made with")
        return claims
