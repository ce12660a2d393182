"""The onsite inbox for browsers: list, unread count, marks, and a live stream (Server-Sent Events).

A page proves whose inbox it shows with a customer token, not the server's API key: the site's backend
computes hex HMAC-SHA256(TOUCHFLOW_SECRET_KEY, customer_id) and puts it in the page
(docs/channels/onsite.md). The token goes in headers only: EventSource cannot send headers, so the page
trades it for a stream ticket that expires within a minute, and opens the stream with that. The streams of a
process share one poller (touchflow.api.inbox_hub), and every database call here runs on the inbox's own
threads, never on the pool the rest of the API uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from touchflow.api.deps import InboxTokens, SettingsDep, SignerDep
from touchflow.api.inbox_hub import InboxHub, StreamRefused, Subscription
from touchflow.models import (
    InboxMessage,
    InboxMessagePublic,
    InboxPage,
    InboxStreamTicket,
    InboxToken,
    InboxUnread,
    InboxUpdated,
)
from touchflow.settings import Settings
from touchflow.signing import Purpose, Signer
from touchflow.storage.inbox import INBOX_PAGE_MAX, InboxMark

SCRIPT = Path(__file__).resolve().parent.parent / "static" / "inbox.js"
PREFIX = "/v1/inbox"
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


def get_hub(request: Request) -> InboxHub:
    hub: InboxHub = request.app.state.inbox_hub
    return hub


HubDep = Annotated[InboxHub, Depends(get_hub)]

_NO_TOKEN_IN_URLS = (
    "the customer token is not taken in a URL (logs keep URLs): POST /v1/inbox/stream-tickets with the "
    "X-Touchflow-Customer and X-Touchflow-Token headers, then open /v1/inbox/stream?ticket=<ticket>"
)
_BAD_TICKET = (
    "missing, expired or invalid stream ticket: get a fresh one from POST /v1/inbox/stream-tickets "
    "(a ticket opens a stream within TOUCHFLOW_INBOX_TICKET_TTL of being issued)"
)


def customer_for_stream(
    signer: SignerDep,
    ticket: Annotated[
        str | None, Query(description="From `POST /v1/inbox/stream-tickets` (EventSource sends no headers).")
    ] = None,
    token: Annotated[str | None, Query(include_in_schema=False)] = None,
    x_touchflow_customer: Annotated[str | None, Header()] = None,
    x_touchflow_token: Annotated[str | None, Header()] = None,
) -> str:
    """A ticket in the query (browsers), or the customer's headers (clients that can send them)."""
    if token is not None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, _NO_TOKEN_IN_URLS)
    if ticket is None and (x_touchflow_customer or x_touchflow_token):
        return _authorise(signer, x_touchflow_customer, x_touchflow_token)
    customer = signer.unsign(Purpose.STREAM_TICKET, ticket or "")
    if not customer:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, _BAD_TICKET)
    return customer


CustomerDep = Annotated[str, Depends(customer_from_headers)]


def _public(message: InboxMessage) -> InboxMessagePublic:
    return InboxMessagePublic.model_validate(message)


# -- the page's calls ----------------------------------------------------------------------------------------


@router.get(f"{PREFIX}/messages", response_model=InboxPage)
async def list_messages(
    customer: CustomerDep,
    hub: HubDep,
    limit: Annotated[int, Query(ge=1, le=INBOX_PAGE_MAX)] = 20,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
    archived: Annotated[bool, Query(description="List the archived messages instead.")] = False,
) -> InboxPage:
    """The customer's messages, newest first, a page at a time."""
    page = await hub.run(hub.store.inbox.list, customer, limit=limit, cursor=cursor, archived=archived)
    return InboxPage(messages=[_public(m) for m in page.messages], next_cursor=page.next_cursor)


@router.get(f"{PREFIX}/unread", response_model=InboxUnread)
async def unread_count(customer: CustomerDep, hub: HubDep) -> InboxUnread:
    """How many messages are neither read nor archived: the number on the bell."""
    return InboxUnread(unread=await hub.run(hub.store.inbox.unread_count, customer))


async def _mark(hub: InboxHub, customer: str, message_id: int, mark: InboxMark) -> InboxMessagePublic:
    message = await hub.run(hub.store.inbox.mark, customer, message_id, mark)
    if message is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"message_id: no message {message_id} in this inbox")
    return _public(message)


@router.post(f"{PREFIX}/messages/{{message_id}}/seen", response_model=InboxMessagePublic)
async def mark_seen(message_id: int, customer: CustomerDep, hub: HubDep) -> InboxMessagePublic:
    """The customer saw the message in the list. Marks keep their first time."""
    return await _mark(hub, customer, message_id, "seen")


@router.post(f"{PREFIX}/messages/{{message_id}}/read", response_model=InboxMessagePublic)
async def mark_read(message_id: int, customer: CustomerDep, hub: HubDep) -> InboxMessagePublic:
    """The customer opened or clicked the message (also marks it seen)."""
    return await _mark(hub, customer, message_id, "read")


@router.post(f"{PREFIX}/messages/{{message_id}}/archive", response_model=InboxMessagePublic)
async def archive(message_id: int, customer: CustomerDep, hub: HubDep) -> InboxMessagePublic:
    """Move the message out of the list (it stays listable with `archived=true`)."""
    return await _mark(hub, customer, message_id, "archived")


@router.post(f"{PREFIX}/read-all", response_model=InboxUpdated)
async def read_all(customer: CustomerDep, hub: HubDep) -> InboxUpdated:
    """Mark every unread message read; answers how many changed."""
    return InboxUpdated(updated=await hub.run(hub.store.inbox.read_all, customer))


# -- the live stream -----------------------------------------------------------------------------------------


def _event(data: str, *, event: str, ident: int | None = None) -> str:
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


@router.post(f"{PREFIX}/stream-tickets", response_model=InboxStreamTicket)
async def stream_ticket(customer: CustomerDep, signer: SignerDep, settings: SettingsDep) -> InboxStreamTicket:
    """A short-lived ticket that opens this customer's live stream: what goes in the stream's URL instead
    of the customer token (which never expires, and URLs end up in logs)."""
    ttl = settings.inbox_ticket_ttl
    ticket = signer.sign(Purpose.STREAM_TICKET, customer, ttl=ttl)
    return InboxStreamTicket(ticket=ticket, expires_in=int(ttl.total_seconds()))


class _EventStream(StreamingResponse):
    """Gives the stream's place back however the response ends, even before its first line."""

    def __init__(self, content: AsyncIterator[str], hub: InboxHub, subscription: Subscription) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.hub, self.subscription = hub, subscription

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.hub.unsubscribe(self.subscription)


async def _catch_up(hub: InboxHub, customer: str, after: int) -> AsyncIterator[InboxMessage]:
    """The customer's messages above `after` that are there already (a resumed stream), a page at a time."""
    while True:
        page = await hub.run(hub.store.inbox.after, customer, after, INBOX_PAGE_MAX)
        for message in page:
            yield message
        if len(page) < INBOX_PAGE_MAX:
            return
        after = page[-1].id or after


async def _stream(
    hub: InboxHub, subscription: Subscription, settings: Settings, after: int, catch_up: bool
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    heartbeat = settings.inbox_heartbeat.total_seconds()
    ends = subscription.started + settings.inbox_stream_max_age.total_seconds()
    sent: set[int] = set()  # by the catch-up: the poller may hand them out too
    unread: int | None = None
    yield f"retry: {RECONNECT_MS}\n\n"
    if catch_up:
        async for message in _catch_up(hub, subscription.customer_id, after):
            if message.id is not None:
                sent.add(message.id)
                yield _event(_public(message).model_dump_json(), event="message", ident=message.id)
    last_write = loop.time()
    while True:
        now = loop.time()
        if subscription.ended or now >= ends:
            return  # the browser reconnects where it left off; lets a stopping server drain its streams
        subscription.wake.clear()
        wrote = False
        for message in subscription.take():
            if message.id is not None and message.id > after and message.id not in sent:
                wrote = True
                yield _event(_public(message).model_dump_json(), event="message", ident=message.id)
        if subscription.unread is not None and subscription.unread != unread:
            unread, wrote = subscription.unread, True
            yield _event(json.dumps({"unread": unread}), event="unread")
        if wrote:
            last_write = now
        elif now - last_write >= heartbeat:
            last_write = now
            yield ": heartbeat\n\n"
        timeout = max(0.0, min(last_write + heartbeat, ends) - loop.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(subscription.wake.wait(), timeout)


@router.get(
    f"{PREFIX}/stream",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events."},
        401: {"description": "No valid ticket (or customer headers)."},
        429: {"description": "This customer has its 10 streams open in this process; see Retry-After."},
        503: {"description": "This process holds TOUCHFLOW_INBOX_MAX_STREAMS streams; see Retry-After."},
    },
)
async def stream(
    hub: HubDep,
    settings: SettingsDep,
    customer: Annotated[str, Depends(customer_for_stream)],
    after: Annotated[
        int | None, Query(ge=0, description="Send messages with a higher id; default: only new ones.")
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """New messages as they arrive (`event: message`, `id:` the message id) and the unread count whenever it
    changes (`event: unread`), with a heartbeat comment on a quiet line. A reconnecting EventSource sends
    `Last-Event-ID` and gets what it missed. Open with `?ticket=` from `POST /v1/inbox/stream-tickets`."""
    if last_event_id is not None:
        if not last_event_id.isdigit():
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "Last-Event-ID: must be a message id")
        after = int(last_event_id)
    try:
        subscription = hub.subscribe(customer)
    except StreamRefused as refused:
        raise HTTPException(
            refused.status, refused.detail, headers={"Retry-After": str(refused.retry_after)}
        ) from None
    try:
        # Taken after subscribing: whatever is stored from here on, the poller hands out.
        catch_up = after is not None
        if after is None:
            after = await hub.run(hub.store.inbox.latest_id, customer)
    except BaseException:
        hub.unsubscribe(subscription)
        raise
    return _EventStream(_stream(hub, subscription, settings, after, catch_up), hub, subscription)


# -- for the site's backend, and the script ------------------------------------------------------------------


@router.get(f"{PREFIX}/tokens/{{customer_id}}", response_model=InboxToken, dependencies=[InboxTokens])
async def customer_token(customer_id: str, signer: SignerDep) -> InboxToken:
    """A customer's inbox token, for a backend that holds an API key (scope `inbox`) but not
    TOUCHFLOW_SECRET_KEY. A token opens that customer's inbox, so minting them is a scope of its own."""
    return InboxToken(customer_id=customer_id, token=signer.customer_token(customer_id))


@router.get("/inbox.js", include_in_schema=False)
async def script() -> FileResponse:
    return FileResponse(
        SCRIPT, media_type="text/javascript; charset=utf-8", headers={"Cache-Control": "public, max-age=300"}
    )


def is_inbox_path(path: str) -> bool:
    return path.startswith(PREFIX + "/")


# What a page's script may send across origins (api/cors.py).
CORS_HEADERS = ["X-Touchflow-Customer", "X-Touchflow-Token", "Last-Event-ID", "Content-Type"]
