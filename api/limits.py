"""Limits on a request before any route sees it: a body over TOUCHFLOW_MAX_BODY_BYTES gets 413 before it is
read in full, and a URL holding a NUL character (`%00`) gets 422 (no route takes one, and PostgreSQL
refuses NUL in text: a lookup by it would be a 500)."""

from __future__ import annotations

import json
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """Pure ASGI middleware: checks Content-Length up front and counts streamed bytes as they come.

    The paths in `as_bad_request` answer 400 rather than 413: Segment's libraries treat a 413 as worth
    resending, and the Tracking API answers an oversized body 400.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, as_bad_request: Collection[str] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.as_bad_request = as_bad_request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        status = 400 if scope["path"] in self.as_bad_request else 413
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, status)
            return
        seen = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Answer now and tell the app the client left: whatever it sends next is dropped.
                    refused = True
                    await self._refuse(send, status)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _refuse(self, send: Send, status: int) -> None:
        limit = f"request body over {self.max_bytes} bytes (TOUCHFLOW_MAX_BODY_BYTES)"
        detail = f"{limit}: send fewer events per batch"
        await send_json(send, status, {"detail": detail})


class RefuseNulInUrl:
    """Pure ASGI middleware: 422 for a NUL character in the path or the query string, whichever route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = "path" if "\x00" in scope["path"] else None
            if where is None and b"%00" in scope["query_string"]:
                where = "query"
            if where is not None:
                await self._refuse(send, where)
                return
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send, where: str) -> None:
        msg = "must not hold a NUL character (%00): no database stores it; remove it"
        detail = [{"loc": [where], "msg": msg, "type": "unstorable_text"}]
        await send_json(send, 422, {"message": f"{where}: {msg}", "detail": detail})


async def send_json(send: Send, status: int, payload: object) -> None:
    """Answer from a pure ASGI middleware, before any route: a JSON body with its length."""
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
