"""The onsite inbox for browsers: list, unread count, marks, and a live stream (Server-Sent Events).

A page proves whose inbox it shows with a customer token, not the server's API key: the site's backend
computes hex HMAC-SHA256(TOUCHFLOW_SECRET_KEY, customer_id) and puts it in the page
(docs/channels/onsite.md). The live stream polls the database, so it sees messages stored by any worker,
whichever API process holds the stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, StreamingResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from touchflow.api.deps import InboxTokens, SettingsDep, SignerDep, StoreDep
from touchflow.models import (
    InboxMessage,
    InboxMessagePublic,
    InboxPage,
    InboxToken,
    InboxUnread,
    InboxUpdated,
)
from touchflow.settings import Settings
from touchflow.signing import Signer
from touchflow.store import INBOX_PAGE_MAX, InboxMark, Store

SCRIPT = Path(__file__).resolve().parent.parent / "static" / "inbox.js"
PREFIX = "/v1/inbox"
# Ids come from one sequence but commit in any order across workers: an id counts as settled (no smaller one
# can still appear) only once it has been visible this long. Far above one single-row insert's transaction.
LATE_COMMIT_SECONDS = 10.0
# What EventSource waits before it reconnects after a stream ends, in milliseconds.
RECONNECT_MS = 2000

router = APIRouter(tags=["inbox"])

_UNAUTHORISED = (
    "missing or invalid customer token: send the customer id and its token (hex HMAC-SHA256 of the id "
    "under TOUCHFLOW_SECRET_KEY) as X-Touchflow-Customer and X-Touchflow-Token"
)


def _authorise(signer: Signer, customer: str | None, token: str | None) -> str:
    if not customer or not token or not signer.check_customer_token(customer, token):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, _UNAUTHORISED)
    return customer


def customer_from_headers(
    signer: SignerDep,
    x_touchflow_customer: Annotated[str | None, Header(description="The customer id.")] = None,
    x_touchflow_token: Annotated[str | None, Header(description="The customer's token.")] = None,
) -> str:
    return _authorise(signer, x_touchflow_customer, x_touchflow_token)


def customer_for_stream(
    signer: SignerDep,
    customer: Annotated[
        str | None, Query(description="The customer id (EventSource sends no headers).")
    ] = None,
    token: Annotated[str | None, Query(description="The customer's token.")] = None,
    x_touchflow_customer: Annotated[str | None, Header()] = None,
    x_touchflow_token: Annotated[str | None, Header()] = None,
) -> str:
    if customer is None and token is None:
        return _authorise(signer, x_touchflow_customer, x_touchflow_token)
    return _authorise(signer, customer, token)


CustomerDep = Annotated[str, Depends(customer_from_headers)]


def _public(message: InboxMessage) -> InboxMessagePublic:
    return InboxMessagePublic.model_validate(message)


# -- the page's calls ----------------------------------------------------------------------------------------


@router.get(f"{PREFIX}/messages", response_model=InboxPage)
async def list_messages(
    customer: CustomerDep,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=INBOX_PAGE_MAX)] = 20,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
    archived: Annotated[bool, Query(description="List the archived messages instead.")] = False,
) -> InboxPage:
    """The customer's messages, newest first, a page at a time."""
    try:
        page = await asyncio.to_thread(
            store.list_inbox, customer, limit=limit, cursor=cursor, archived=archived
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return InboxPage(messages=[_public(m) for m in page.messages], next_cursor=page.next_cursor)


@router.get(f"{PREFIX}/unread", response_model=InboxUnread)
async def unread_count(customer: CustomerDep, store: StoreDep) -> InboxUnread:
    """How many messages are neither read nor archived: the number on the bell."""
    return InboxUnread(unread=await asyncio.to_thread(store.inbox_unread_count, customer))


async def _mark(store: Store, customer: str, message_id: int, mark: InboxMark) -> InboxMessagePublic:
    message = await asyncio.to_thread(store.mark_inbox_message, customer, message_id, mark)
    if message is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"message_id: no message {message_id} in this inbox")
    return _public(message)


@router.post(f"{PREFIX}/messages/{{message_id}}/seen", response_model=InboxMessagePublic)
async def mark_seen(message_id: int, customer: CustomerDep, store: StoreDep) -> InboxMessagePublic:
    """The customer saw the message in the list. Marks keep their first time."""
    return await _mark(store, customer, message_id, "seen")


@router.post(f"{PREFIX}/messages/{{message_id}}/read", response_model=InboxMessagePublic)
async def mark_read(message_id: int, customer: CustomerDep, store: StoreDep) -> InboxMessagePublic:
    """The customer opened or clicked the message (also marks it seen)."""
    return await _mark(store, customer, message_id, "read")


@router.post(f"{PREFIX}/messages/{{message_id}}/archive", response_model=InboxMessagePublic)
async def archive(message_id: int, customer: CustomerDep, store: StoreDep) -> InboxMessagePublic:
    """Move the message out of the list (it stays listable with `archived=true`)."""
    return await _mark(store, customer, message_id, "archived")


@router.post(f"{PREFIX}/read-all", response_model=InboxUpdated)
async def read_all(customer: CustomerDep, store: StoreDep) -> InboxUpdated:
    """Mark every unread message read; answers how many changed."""
    return InboxUpdated(updated=await asyncio.to_thread(store.read_all_inbox, customer))


# -- the live stream -----------------------------------------------------------------------------------------


class _Sent:
    """Which messages a stream has sent: everything up to `settled`, plus the recent ids above it."""

    def __init__(self, settled: int) -> None:
        self.settled = settled
        self.recent: dict[int, float] = {}

    def fresh(self, ids: list[int], now: float) -> list[int]:
        new = [i for i in ids if i > self.settled and i not in self.recent]
        self.recent.update(dict.fromkeys(new, now))
        while self.recent:
            lowest = min(self.recent)
            if now - self.recent[lowest] < LATE_COMMIT_SECONDS:
                break
            self.settled = lowest
            del self.recent[lowest]
        return new


def _event(data: str, *, event: str, ident: int | None = None) -> str:
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


async def _stream(
    request: Request, store: Store, settings: Settings, customer: str, after: int
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    started = last_write = loop.time()
    sent = _Sent(after)
    unread: int | None = None
    yield f"retry: {RECONNECT_MS}\n\n"
    while not await request.is_disconnected():
        now = loop.time()
        # Rows above `settled` include the recent ones sent already: ask for that many more than a page.
        limit = len(sent.recent) + INBOX_PAGE_MAX
        messages = await asyncio.to_thread(store.inbox_after, customer, sent.settled, limit)
        by_id = {m.id: m for m in messages if m.id is not None}
        for ident in sent.fresh(sorted(by_id), now):
            last_write = now
            yield _event(_public(by_id[ident]).model_dump_json(), event="message", ident=ident)
        count = await asyncio.to_thread(store.inbox_unread_count, customer)
        if count != unread:
            unread, last_write = count, now
            yield _event(json.dumps({"unread": count}), event="unread")
        if now - last_write >= settings.inbox_heartbeat.total_seconds():
            last_write = now
            yield ": heartbeat\n\n"
        if now - started >= settings.inbox_stream_max_age.total_seconds():
            return  # the browser reconnects with Last-Event-ID; lets a stopping server drain its streams
        await asyncio.sleep(settings.inbox_poll_interval.total_seconds())


@router.get(
    f"{PREFIX}/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events."}},
)
async def stream(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    customer: Annotated[str, Depends(customer_for_stream)],
    after: Annotated[
        int | None, Query(ge=0, description="Send messages with a higher id; default: only new ones.")
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """New messages as they arrive (`event: message`, `id:` the message id) and the unread count whenever it
    changes (`event: unread`), with a heartbeat comment on a quiet line. A reconnecting EventSource sends
    `Last-Event-ID` and gets what it missed."""
    if last_event_id is not None:
        if not last_event_id.isdigit():
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "Last-Event-ID: must be a message id")
        after = int(last_event_id)
    if after is None:
        after = await asyncio.to_thread(store.latest_inbox_id, customer)
    return StreamingResponse(
        _stream(request, store, settings, customer, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# -- for the site's backend, and the script ------------------------------------------------------------------


@router.get(f"{PREFIX}/tokens/{{customer_id}}", response_model=InboxToken, dependencies=[InboxTokens])
async def customer_token(customer_id: str, signer: SignerDep) -> InboxToken:
    """A customer's inbox token, for a backend that holds an API key (scope `inbox`) but not
    TOUCHFLOW_SECRET_KEY. A token opens that customer's inbox, so minting them is a scope of its own."""
    try:
        token = signer.customer_token(customer_id)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return InboxToken(customer_id=customer_id, token=token)


@router.get("/inbox.js", include_in_schema=False)
async def script() -> FileResponse:
    return FileResponse(
        SCRIPT, media_type="text/javascript; charset=utf-8", headers={"Cache-Control": "public, max-age=300"}
    )


class InboxCORS:
    """CORS for the inbox API alone, for the sites in TOUCHFLOW_INBOX_ALLOWED_ORIGINS; none elsewhere."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["X-Touchflow-Customer", "X-Touchflow-Token", "Last-Event-ID", "Content-Type"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope["path"]).startswith(PREFIX + "/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
