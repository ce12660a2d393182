"""The browser inbox API under uvicorn, on SQLite and PostgreSQL: tokens, pages, counts, marks, CORS, SSE.

Messages are added through a store of another engine, as a worker process would add them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import event, insert

from tests.api.conftest import SHOP, RunningApi, customer_headers, customer_token, running_api
from tests.conftest import API_KEY
from touchflow.models import CustomerIn, InboxMessage, utcnow
from touchflow.settings import Settings
from touchflow.signing import Purpose
from touchflow.testing import eventually


def add(api: RunningApi, customer: str, n: int) -> InboxMessage:
    return api.store.inbox.add(
        key=f"{customer}:{n}", customer_id=customer, title=f"t{n}", body=f"b{n}", action_url=None
    )


class EventStream:
    """Reads Server-Sent Events off a streamed response, one field dict per event (comments as `comment`)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()

    async def next(self) -> dict[str, str]:
        event: dict[str, str] = {}
        async for line in self.lines:
            if not line:
                if event:
                    return event
                continue
            if line.startswith(":"):
                event["comment"] = line[1:].strip()
                continue
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")
        raise EOFError("the stream ended")

    async def until(self, wanted: Callable[[dict[str, str]], bool], timeout: float = 5.0) -> dict[str, str]:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next()
                if wanted(event):
                    return event


async def ticket(api: RunningApi, customer: str) -> str:
    """What the page does first: trade the customer token, in headers, for a short-lived stream ticket."""
    response = await api.client.post("/v1/inbox/stream-tickets", headers=customer_headers(customer))
    assert response.status_code == 200, response.text
    assert response.json()["expires_in"] == 60
    value: str = response.json()["ticket"]
    return value


@contextlib.asynccontextmanager
async def stream(
    api: RunningApi, customer: str, headers: dict[str, str] | None = None, **params: Any
) -> AsyncIterator[EventStream]:
    query = {"ticket": await ticket(api, customer), **params}
    async with api.client.stream("GET", "/v1/inbox/stream", params=query, headers=headers) as response:
        assert response.status_code == 200, response.status_code
        assert response.headers["content-type"].startswith("text/event-stream")
        yield EventStream(response)


def is_message(event: dict[str, str]) -> bool:
    return event.get("event") == "message"


# -- who may open an inbox -----------------------------------------------------------------------------------

GOOD = customer_headers("c1")


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/v1/inbox/messages", {}),
        ("GET", "/v1/inbox/messages", {"X-Touchflow-Customer": "c1"}),
        ("GET", "/v1/inbox/messages", {"X-Touchflow-Customer": "c1", "X-Touchflow-Token": "0" * 64}),
        # c2's valid token does not open c1's inbox
        (
            "GET",
            "/v1/inbox/unread",
            {"X-Touchflow-Customer": "c1", "X-Touchflow-Token": customer_token("c2")},
        ),
        (
            "POST",
            "/v1/inbox/read-all",
            {"X-Touchflow-Customer": "c2", "X-Touchflow-Token": GOOD["X-Touchflow-Token"]},
        ),
        (
            "POST",
            "/v1/inbox/messages/1/read",
            {"Authorization": f"Bearer {API_KEY}"},
        ),  # the server key is not it
        ("GET", "/v1/inbox/stream", {}),
        ("GET", "/v1/inbox/stream?customer=c1&token=" + "ab" * 32, {}),
        ("GET", "/v1/inbox/stream?customer=c1&token=" + customer_token("c2"), {}),
        ("GET", "/v1/inbox/stream?ticket=garbage", {}),
        ("POST", "/v1/inbox/stream-tickets", {}),
        ("POST", "/v1/inbox/stream-tickets", {"X-Touchflow-Customer": "c1", "X-Touchflow-Token": "0" * 64}),
        ("GET", "/v1/inbox/tokens/c1", GOOD),  # minting tokens needs the API key
    ],
)
async def test_a_wrong_or_missing_token_is_401(
    inbox_api: RunningApi, method: str, path: str, headers: dict[str, str]
) -> None:
    response = await inbox_api.client.request(method, path, headers=headers)
    assert response.status_code == 401
    assert "c2" not in response.text and customer_token("c1") not in response.text


async def test_the_backend_can_get_a_token_with_its_api_key(inbox_api: RunningApi) -> None:
    response = await inbox_api.client.get(
        "/v1/inbox/tokens/c1", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert response.status_code == 200
    assert response.json() == {"customer_id": "c1", "token": customer_token("c1")}
    upper = {**GOOD, "X-Touchflow-Token": GOOD["X-Touchflow-Token"].upper()}
    assert (await inbox_api.client.get("/v1/inbox/unread", headers=upper)).json() == {"unread": 0}


async def test_minting_tokens_takes_the_inbox_scope_not_ingest(
    make_settings: Callable[..., Settings], sqlite_store: Any
) -> None:
    keys = ["ingest:ingest-only-key", "inbox:inbox-only-key", "read+ingest:server-key-1"]
    async with running_api(make_settings, str(sqlite_store.engine.url), api_keys=keys) as api:

        async def mint(key: str) -> httpx.Response:
            return await api.client.get("/v1/inbox/tokens/c1", headers={"Authorization": f"Bearer {key}"})

        refused = await mint("ingest-only-key")
        assert refused.status_code == 403 and "'inbox' scope" in refused.json()["detail"]
        assert (await mint("server-key-1")).status_code == 403
        served = await mint("inbox-only-key")
        assert served.status_code == 200 and served.json()["token"] == customer_token("c1")
        # ...and the inbox scope is for that alone.
        events = await api.client.post(
            "/v1/events",
            json={"id": "e1", "customer_id": "c1", "name": "x"},
            headers={"Authorization": "Bearer inbox-only-key"},
        )
        assert events.status_code == 403


async def test_without_a_secret_key_the_inbox_says_what_to_set(
    make_settings: Callable[..., Settings], sqlite_store: Any
) -> None:
    url = str(sqlite_store.engine.url)
    async with running_api(make_settings, url, secret_key="") as api:
        response = await api.client.get("/v1/inbox/unread", headers=GOOD)
    assert response.status_code == 503
    assert "TOUCHFLOW_SECRET_KEY" in response.json()["detail"]


# -- pages, counts, marks ------------------------------------------------------------------------------------


async def test_pages_follow_the_cursor_newest_first(inbox_api: RunningApi) -> None:
    made = [add(inbox_api, "c1", n) for n in range(5)]
    add(inbox_api, "c2", 0)
    titles: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        response = await inbox_api.client.get("/v1/inbox/messages", params=params, headers=GOOD)
        assert response.status_code == 200
        page = response.json()
        titles += [m["title"] for m in page["messages"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert titles == [m.title for m in reversed(made)]
    assert set(page["messages"][0]) == {
        "id", "title", "body", "action_url", "created_at", "seen_at", "read_at", "archived_at",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 101}, "limit"), ({"limit": 0}, "limit"), ({"cursor": "garbage!"}, "cursor")],
)
async def test_bad_paging_is_422_naming_the_field(
    inbox_api: RunningApi, params: dict[str, Any], field: str
) -> None:
    response = await inbox_api.client.get("/v1/inbox/messages", params=params, headers=GOOD)
    assert response.status_code == 422
    assert field in response.text


async def test_counts_and_marks(inbox_api: RunningApi) -> None:
    one, two, three = (add(inbox_api, "c1", n) for n in range(3))
    theirs = add(inbox_api, "c2", 0)
    client = inbox_api.client

    async def unread() -> int:
        response = await client.get("/v1/inbox/unread", headers=GOOD)
        count: int = response.json()["unread"]
        return count

    assert await unread() == 3
    seen = (await client.post(f"/v1/inbox/messages/{one.id}/seen", headers=GOOD)).json()
    assert seen["seen_at"] is not None and seen["read_at"] is None
    read = (await client.post(f"/v1/inbox/messages/{one.id}/read", headers=GOOD)).json()
    assert read["read_at"] is not None and read["seen_at"] == seen["seen_at"]
    assert await unread() == 2

    archived = await client.post(f"/v1/inbox/messages/{two.id}/archive", headers=GOOD)
    assert archived.json()["archived_at"] is not None
    assert await unread() == 1
    listed = (await client.get("/v1/inbox/messages", headers=GOOD)).json()["messages"]
    assert [m["id"] for m in listed] == [three.id, one.id]
    listed = (await client.get("/v1/inbox/messages?archived=true", headers=GOOD)).json()["messages"]
    assert [m["id"] for m in listed] == [two.id]

    # Another customer's message looks just like a missing one.
    for message_id in (theirs.id, 999_999):
        response = await client.post(f"/v1/inbox/messages/{message_id}/read", headers=GOOD)
        assert response.status_code == 404
    assert (await client.post("/v1/inbox/read-all", headers=GOOD)).json() == {"updated": 1}
    assert await unread() == 0
    assert inbox_api.store.inbox.unread_count("c2") == 1


# -- CORS and the script -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "origin", "allowed"),
    [
        ("/v1/inbox/messages", SHOP, True),
        ("/v1/inbox/messages", "https://evil.example", False),
        ("/v1/events", SHOP, False),  # the server API is not for browsers
    ],
)
async def test_cors_only_for_the_inbox_and_the_allowed_sites(
    inbox_api: RunningApi, path: str, origin: str, allowed: bool
) -> None:
    preflight = await inbox_api.client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-touchflow-customer,x-touchflow-token",
        },
    )
    assert (preflight.headers.get("access-control-allow-origin") == origin) is allowed
    simple = await inbox_api.client.get(path, headers={**GOOD, "Origin": origin})
    assert (simple.headers.get("access-control-allow-origin") == origin) is allowed


async def test_the_script_is_served(inbox_api: RunningApi) -> None:
    response = await inbox_api.client.get("/inbox.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in response.text
    assert "innerHTML" not in response.text


# -- the live stream -----------------------------------------------------------------------------------------


async def test_stream_delivers_what_another_process_stores(inbox_api: RunningApi) -> None:
    old = add(inbox_api, "c1", 0)
    async with stream(inbox_api, "c1") as events:
        assert (await events.next()) == {"retry": "2000"}
        assert (await events.until(lambda e: e.get("event") == "unread"))["data"] == '{"unread": 1}'
        add(inbox_api, "c2", 1)  # someone else's: never on this stream
        new = add(inbox_api, "c1", 2)
        event = await events.until(lambda e: e.get("event") in ("message", "unread"))
        assert event["event"] == "message" and event["id"] == str(new.id)
        assert '"title":"t2"' in event["data"] and '"read_at":null' in event["data"]
        assert (await events.until(lambda e: e.get("event") == "unread"))["data"] == '{"unread": 2}'
    assert old.id is not None and new.id is not None and new.id > old.id


async def test_stream_resumes_after_last_event_id(inbox_api: RunningApi) -> None:
    first = add(inbox_api, "c1", 1)
    async with stream(inbox_api, "c1", after=0) as events:
        assert (await events.until(is_message))["id"] == str(first.id)
    missed = [add(inbox_api, "c1", n) for n in (2, 3)]  # while the browser was away
    async with stream(inbox_api, "c1", after=0, headers={"Last-Event-ID": str(first.id)}) as events:
        got = [(await events.until(is_message))["id"] for _ in missed]
    assert got == [str(m.id) for m in missed]


async def test_stream_sends_a_burst_larger_than_a_page(inbox_api: RunningApi) -> None:
    made = [add(inbox_api, "c1", n) for n in range(130)]
    async with stream(inbox_api, "c1", after=0) as events:
        got = [(await events.until(is_message))["id"] for _ in made]
    assert got == [str(m.id) for m in made]


async def test_stream_sends_a_live_burst_larger_than_a_poll_reads(inbox_api: RunningApi) -> None:
    async with stream(inbox_api, "c1") as events:
        await events.until(lambda e: e.get("event") == "unread")
        made = [add(inbox_api, "c1", n) for n in range(130)]
        got = [(await events.until(is_message))["id"] for _ in made]
    assert got == [str(m.id) for m in made]


async def test_stream_sends_a_message_whose_commit_came_late(
    make_settings: Callable[..., Settings], postgres_schema_url: str
) -> None:
    """Two workers: the one that took the lower id commits after the other. The stream still sends both."""
    customer = f"late-{uuid.uuid4().hex[:8]}"
    async with running_api(make_settings, postgres_schema_url) as api, stream(api, customer) as events:
        with api.store.engine.connect() as slow_worker:
            pending = slow_worker.begin()
            slow_worker.execute(
                insert(InboxMessage).values(
                    key=f"{customer}:slow", customer_id=customer, title="slow", body="b", created_at=utcnow()
                )
            )
            fast = add(api, customer, 1)
            assert json.loads((await events.until(is_message))["data"])["title"] == "t1"
            pending.commit()
        slow = json.loads((await events.until(is_message))["data"])
    assert slow["title"] == "slow" and slow["id"] < (fast.id or 0)


async def test_stream_sends_a_heartbeat_when_quiet(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    async with (
        running_api(make_settings, db_url, inbox_heartbeat="100ms") as api,
        stream(api, "quiet") as events,
    ):
        assert (await events.until(lambda e: "comment" in e))["comment"] == "heartbeat"


async def test_stream_ends_at_its_max_age_for_the_browser_to_reconnect(
    make_settings: Callable[..., Settings], sqlite_store: Any
) -> None:
    url = str(sqlite_store.engine.url)
    async with (
        running_api(make_settings, url, inbox_stream_max_age="200ms") as api,
        stream(api, "c1") as events,
    ):
        with pytest.raises(EOFError):
            await events.until(lambda e: False)


async def test_stream_rejects_a_last_event_id_that_is_no_id(inbox_api: RunningApi) -> None:
    response = await inbox_api.client.get(
        "/v1/inbox/stream", params={"ticket": await ticket(inbox_api, "c1")}, headers={"Last-Event-ID": "x"}
    )
    assert response.status_code == 422
    assert "Last-Event-ID" in response.text


# -- what a stream may cost --------------------------------------------------------------------------------


async def test_the_customer_token_is_refused_in_a_url(inbox_api: RunningApi) -> None:
    """URLs end up in access logs, and the customer token never expires: the stream takes a ticket."""
    response = await inbox_api.client.get(
        "/v1/inbox/stream", params={"customer": "c1", "token": customer_token("c1")}
    )
    assert response.status_code == 401
    assert "/v1/inbox/stream-tickets" in response.json()["detail"]
    assert customer_token("c1") not in response.text


async def test_an_expired_ticket_is_refused(
    make_settings: Callable[..., Settings], sqlite_store: Any
) -> None:
    url = str(sqlite_store.engine.url)
    async with running_api(make_settings, url, inbox_ticket_ttl="60s") as api:
        signer = api.app.state.signer
        issued = 1_700_000_000.0
        signer.clock = lambda: issued
        old = await ticket(api, "c1")
        signer.clock = lambda: issued + 61
        response = await api.client.get("/v1/inbox/stream", params={"ticket": old})
        assert response.status_code == 401 and "expired" in response.json()["detail"]
        signer.clock = lambda: issued + 59  # still good a second before
        async with api.client.stream("GET", "/v1/inbox/stream", params={"ticket": old}) as fresh:
            assert fresh.status_code == 200


async def test_a_ticket_and_an_unsubscribe_link_do_not_stand_in_for_each_other(
    inbox_api: RunningApi,
) -> None:
    inbox_api.store.customers.upsert(CustomerIn(id="c1", consents={"marketing": True}))
    signer = inbox_api.app.state.signer
    as_link = await inbox_api.client.post(
        f"/unsubscribe/{await ticket(inbox_api, 'c1')}", data={"List-Unsubscribe": "One-Click"}
    )
    assert as_link.status_code == 404
    link_token = signer.sign(Purpose.UNSUBSCRIBE, "c1")
    as_ticket = await inbox_api.client.get("/v1/inbox/stream", params={"ticket": link_token})
    assert as_ticket.status_code == 401
    customer = inbox_api.store.customers.get("c1")
    assert customer is not None and customer.consents == {"marketing": True}


@contextlib.asynccontextmanager
async def open_streams(api: RunningApi, customers: list[str]) -> AsyncIterator[list[EventStream]]:
    """One open stream per entry of `customers`, each past its first line."""
    async with contextlib.AsyncExitStack() as stack:
        streams = [await stack.enter_async_context(stream(api, customer)) for customer in customers]
        for events in streams:
            assert await events.next() == {"retry": "2000"}
        yield streams


async def test_the_11th_stream_of_a_customer_gets_429(inbox_api: RunningApi) -> None:
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(open_streams(inbox_api, ["c1"] * 10))
        refused = await inbox_api.client.get(
            "/v1/inbox/stream", params={"ticket": await ticket(inbox_api, "c1")}
        )
        assert refused.status_code == 429
        assert "10 live inbox streams" in refused.json()["detail"]
        # Until the oldest stream reaches TOUCHFLOW_INBOX_STREAM_MAX_AGE (5 minutes) and ends.
        assert 1 <= int(refused.headers["retry-after"]) <= 300
        async with open_streams(inbox_api, ["c2"]):  # another customer's are not counted
            pass
        await stack.aclose()  # the ten close: their places come back
        await eventually(lambda: inbox_api.app.state.inbox_hub.open_streams == 0, 5, "the streams to close")
    async with open_streams(inbox_api, ["c1"] * 10):
        pass


async def test_past_the_process_cap_a_stream_gets_503(
    make_settings: Callable[..., Settings], sqlite_store: Any
) -> None:
    async with (
        running_api(make_settings, str(sqlite_store.engine.url), inbox_max_streams=3) as api,
        open_streams(api, ["a", "b", "c"]),
    ):
        refused = await api.client.get("/v1/inbox/stream", params={"ticket": await ticket(api, "d")})
        assert refused.status_code == 503
        assert "TOUCHFLOW_INBOX_MAX_STREAMS" in refused.json()["detail"]
        assert int(refused.headers["retry-after"]) >= 1


async def test_open_streams_cost_one_poll_per_interval_not_one_each(inbox_api: RunningApi) -> None:
    """Eight streams of four customers: the database sees the few statements of one poll an interval, all
    on the inbox's own threads (as are the page's other calls), not two queries per stream."""
    engine = inbox_api.app.state.store.engine
    seen: list[tuple[str, str]] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "inbox_messages" in statement:
            seen.append((threading.current_thread().name, statement))

    customers = ["p1", "p2", "p3", "p4"] * 2
    for n, customer in enumerate(customers):
        add(inbox_api, customer, n)
    async with open_streams(inbox_api, customers) as streams:
        for events in streams:
            await events.until(lambda e: e.get("event") == "unread")
        event.listen(engine, "before_cursor_execute", record)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await asyncio.sleep(1.0)
            await inbox_api.client.get("/v1/inbox/unread", headers=customer_headers("p1"))
            elapsed = loop.time() - started
        finally:
            event.remove(engine, "before_cursor_execute", record)
    intervals = elapsed / inbox_api.settings.inbox_poll_interval.total_seconds()
    # One poll is three statements (store.inbox.news); a stream each would be 2 x 8 an interval.
    assert 3 <= len(seen) <= 3 * (intervals + 2) + 1, len(seen)
    assert {thread.rsplit("_", 1)[0] for thread, _ in seen} == {"touchflow-inbox"}
