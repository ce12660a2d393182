"""A Zalo OA OpenAPI on loopback: ZNS template sends and the OAuth v4 refresh, with Zalo's shapes and codes.

- `POST /message/template` wants the bare `access_token` header and the JSON `phone` / `template_id` /
  `template_data` / `tracking_id`; answers HTTP 200 with `{"error": 0, "message": "Success", "data": {...}}`
  or `{"error": <code>, "message": ...}` (-124 for an unknown or expired token).
- `POST /v4/oa/access_token` wants the `secret_key` header and the form `refresh_token`, `app_id`,
  `grant_type=refresh_token`; a refresh token works once and is replaced (rotation), an old one is refused
  with Zalo's OAuth error shape.
- `fail(...)` queues answers for the next sends: a Zalo error code, a (code, message) pair, or "503" / "429" /
  "slow" (answers after the client gave up); `expire_tokens()` ends every access token; `not_on_zalo` holds
  numbers answering -118.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from touchflow.channels.zalo_zns import webhook_signature
from touchflow.temporal import free_port

APP_ID = "1234567890123456789"
SECRET_KEY = "app-secret-key"
OA_SECRET_KEY = "oa-secret-key"
SEED_REFRESH_TOKEN = "rt-seed"
# The `message` of the codes the tests use: Zalo's English "Mô tả lỗi" where the stored copy of
# zalo.cloud/zns/guidelines/handle-error-code shows it (to -118), a paraphrase of its table after that.
# touchflow reads this text only to find the name of a parameter in it.
_MESSAGES = {
    -100: "Unknown error",
    -108: "Phone number invalid",
    -115: "Out of quota",
    -118: "Zalo account not existed",
    -124: "Access token invalid",
    -131: "Template not approved",
    -133: "Sending ZNS at night is not allowed",
    -137: "Charge ZCA failed",
    -141: "User refuses to receive ZNS from this OA",
    -144: "OA exceeded maximum number of ZNS messages per day",
    -146: "Template disabled",
    -147: "Template exceeded maximum number of messages per day",
    -1351: "OA has no permission to send ZNS",
}
Fault = int | str | tuple[int, str]


@dataclass
class ZaloServer:
    host: str
    port: int
    refresh_token: str = SEED_REFRESH_TOKEN  # the one refresh token that works now
    access_tokens: set[str] = field(default_factory=set)
    refreshes: int = 0
    refresh_delay: float = 0.0  # seconds the token endpoint takes (widens races on purpose)
    sent: list[dict[str, Any]] = field(default_factory=list)  # accepted send bodies
    headers: list[dict[str, str]] = field(default_factory=list)  # headers of every send request
    peers: list[Any] = field(default_factory=list)  # each send request's client address: its connection
    faults: list[Fault] = field(default_factory=list)
    not_on_zalo: set[str] = field(default_factory=set)
    token_errors: list[dict[str, Any]] = field(default_factory=list)  # OAuth errors answered
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counter: Iterator[int] = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """`make_settings` overrides that point touchflow at this server."""
        return {
            "zalo_app_id": APP_ID,
            "zalo_secret_key": SECRET_KEY,
            "zalo_refresh_token": SEED_REFRESH_TOKEN,
            "zalo_oa_secret_key": OA_SECRET_KEY,
            "zalo_api_base": self.url,
            "zalo_oauth_base": self.url,
            "zalo_timeout": "2s",
            **overrides,
        }

    def fail(self, *answers: Fault) -> None:
        with self._lock:
            self.faults.extend(answers)

    def expire_tokens(self) -> None:
        with self._lock:
            self.access_tokens.clear()

    def arrivals(self) -> Counter[str]:
        """How many times each tracking id was accepted."""
        with self._lock:
            return Counter(body["tracking_id"] for body in self.sent)

    @staticmethod
    def sign(body: bytes, timestamp: str) -> str:
        return webhook_signature(APP_ID, body, timestamp, OA_SECRET_KEY)

    # -- the two endpoints ----------------------------------------------------------------------------------

    async def send(self, request: Request) -> Response:
        token = request.headers.get("access_token", "")
        body = await request.json()
        with self._lock:
            self.headers.append(dict(request.headers))
            self.peers.append(request.client)
            fault = self.faults.pop(0) if self.faults else None
        if fault == "503":
            return Response("Service Unavailable", status_code=503)
        if fault == "429":
            return Response("Too Many Requests", status_code=429, headers={"Retry-After": "3"})
        if fault == "slow":
            await asyncio.sleep(1.5)  # a provider slower than the channel's timeout
            return _error(-100)
        if token not in self.access_tokens:
            return _error(-124)
        if isinstance(fault, int):
            return _error(fault)
        if isinstance(fault, tuple):
            return _error(*fault)
        phone, template_id = body.get("phone"), body.get("template_id")
        if not isinstance(phone, str) or not (phone.startswith("84") and len(phone) == 11):
            return _error(-108)
        if not isinstance(template_id, str) or not template_id:
            return _error(-109)
        if not isinstance(body.get("template_data"), dict):
            return _error(-112)
        if len(str(body.get("tracking_id", ""))) > 48:
            return _error(-132)
        if phone in self.not_on_zalo:
            return _error(-118)
        with self._lock:
            self.sent.append(body)
        return JSONResponse(
            {
                "error": 0,
                "message": "Success",
                "data": {
                    "msg_id": uuid.uuid4().hex[:20],
                    "sent_time": str(int(time.time() * 1000)),
                    "quota": {"dailyQuota": "500", "remainingQuota": str(499 - len(self.sent))},
                },
            }
        )

    async def token(self, request: Request) -> Response:
        form = {key: values[0] for key, values in parse_qs((await request.body()).decode()).items()}
        if self.refresh_delay:
            await asyncio.sleep(self.refresh_delay)
        with self._lock:
            if request.headers.get("secret_key") != SECRET_KEY or form.get("app_id") != APP_ID:
                return self._token_error(-14002, "Invalid app id or secret key")
            if form.get("grant_type") != "refresh_token":
                return self._token_error(-14003, "Invalid grant type")
            if form.get("refresh_token") != self.refresh_token:
                return self._token_error(-14014, "Invalid refresh token")
            number = next(self._counter)
            access, refresh = f"at-{number}-{secrets.token_hex(8)}", f"rt-{number}-{secrets.token_hex(8)}"
            self.access_tokens.add(access)
            self.refresh_token = refresh
            self.refreshes += 1
        return JSONResponse({"access_token": access, "refresh_token": refresh, "expires_in": "90000"})

    def _token_error(self, code: int, reason: str) -> Response:
        error = {
            "error_name": "Invalid parameter",
            "error_reason": reason,
            "ref_doc": "https://developers.zalo.me/docs/official-account/bat-dau/xac-thuc-va-uy-quyen-cho-ung-dung-new",
            "error_description": reason,
            "error": code,
        }
        self.token_errors.append(error)
        return JSONResponse(error)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/message/template", self.send, methods=["POST"]),
                Route("/v4/oa/access_token", self.token, methods=["POST"]),
            ]
        )


def _error(code: int, message: str | None = None) -> Response:
    return JSONResponse({"error": code, "message": message or _MESSAGES.get(code, "Error")})


@pytest.fixture
def zalo() -> Iterator[ZaloServer]:
    """The Zalo server under uvicorn in a thread of its own, on a free loopback port."""
    server = ZaloServer(host="127.0.0.1", port=free_port())
    uv = uvicorn.Server(
        uvicorn.Config(server.app(), host=server.host, port=server.port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=uv.run, name="zalo-server", daemon=True)
    thread.start()
    # A bounded wait for the server thread to come up (synchronous tests use this fixture too).
    deadline = time.monotonic() + 10
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the loopback Zalo server did not start")
        time.sleep(0.01)
    yield server
    uv.should_exit = True
    thread.join(10)
