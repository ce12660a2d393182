"""The onsite inbox in the store, on SQLite and PostgreSQL: idempotent adds, cursor pages, counts, marks."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlmodel import Session

from touchflow.models import InboxMessage
from touchflow.storage import Store


def add(store: Store, customer: str, n: int, url: str | None = None) -> InboxMessage:
    return store.inbox.add(
        key=f"{customer}:{n}", customer_id=customer, title=f"t{n}", body=f"b{n}", action_url=url
    )


def test_add_is_idempotent_by_key(store: Store) -> None:
    first = add(store, "c1", 1, url="https://shop.example/x")
    again = store.inbox.add(key="c1:1", customer_id="c1", title="changed", body="changed", action_url=None)
    assert again.id == first.id
    assert (again.title, again.action_url) == ("t1", "https://shop.example/x")
    assert [m.id for m in store.inbox.list("c1").messages] == [first.id]


def test_pages_newest_first_with_an_opaque_cursor(store: Store) -> None:
    made = [add(store, "c1", n) for n in range(7)]
    add(store, "other", 0)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.inbox.list("c1", limit=3, cursor=cursor)
        seen += [m.title for m in page.messages]
        pages += 1
        if page.next_cursor is None:
            break
        assert "|" not in page.next_cursor  # opaque: no raw timestamp or id
        cursor = page.next_cursor
    assert pages == 3
    assert seen == [m.title for m in reversed(made)]


def test_pages_break_ties_on_the_same_instant_by_id(store: Store) -> None:
    made = [add(store, "c1", n) for n in range(4)]
    with Session(store.engine) as session:
        for message in made:
            message.created_at = made[0].created_at
            session.add(message)
        session.commit()
    first = store.inbox.list("c1", limit=2)
    second = store.inbox.list("c1", limit=2, cursor=first.next_cursor)
    assert [m.title for m in first.messages + second.messages] == ["t3", "t2", "t1", "t0"]
    assert second.next_cursor is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "bm9waXBl"}, "cursor"),  # base64 of "nopipe"
    ],
)
def test_bad_limit_or_cursor_names_the_field(store: Store, kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        store.inbox.list("c1", **kwargs)  # type: ignore[arg-type]


def test_marks_counts_and_archive_filter(store: Store) -> None:
    one, two, three = (add(store, "c1", n) for n in range(3))
    add(store, "c2", 9)
    assert store.inbox.unread_count("c1") == 3

    seen = store.inbox.mark("c1", one.id or 0, "seen")
    assert seen is not None and seen.seen_at is not None and seen.read_at is None
    assert store.inbox.unread_count("c1") == 3

    read = store.inbox.mark("c1", one.id or 0, "read")
    assert read is not None and read.read_at is not None
    assert read.seen_at == seen.seen_at  # a mark keeps its first time
    assert store.inbox.unread_count("c1") == 2

    archived = store.inbox.mark("c1", two.id or 0, "archived")
    assert archived is not None and archived.archived_at is not None
    assert store.inbox.unread_count("c1") == 1
    assert [m.id for m in store.inbox.list("c1").messages] == [three.id, one.id]
    assert [m.id for m in store.inbox.list("c1", archived=True).messages] == [two.id]


def test_a_customer_cannot_mark_anothers_message(store: Store) -> None:
    theirs = add(store, "c2", 1)
    assert store.inbox.mark("c1", theirs.id or 0, "read") is None
    assert store.inbox.mark("c1", 999_999, "read") is None
    assert store.inbox.unread_count("c2") == 1


def test_read_all_marks_only_the_customers_unread_unarchived(store: Store) -> None:
    made = [add(store, "c1", n) for n in range(3)]
    store.inbox.mark("c1", made[0].id or 0, "read")
    store.inbox.mark("c1", made[1].id or 0, "archived")
    add(store, "c2", 1)
    assert store.inbox.read_all("c1") == 1
    assert store.inbox.unread_count("c1") == 0
    assert store.inbox.unread_count("c2") == 1
    assert all(m.seen_at is not None for m in store.inbox.list("c1").messages)
    assert store.inbox.read_all("c1") == 0


def test_after_and_latest_serve_the_live_stream(store: Store) -> None:
    assert store.inbox.latest_id("c1") == 0
    made = [add(store, "c1", n) for n in range(3)]
    add(store, "c2", 1)
    store.inbox.mark("c1", made[2].id or 0, "archived")
    assert store.inbox.latest_id("c1") == made[2].id
    assert [m.id for m in store.inbox.after("c1", made[0].id or 0)] == [made[1].id]


def test_news_for_many_customers_in_three_statements(store: Store) -> None:
    """What the shared poller of the live streams asks each interval, however many customers are open."""
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    mine = [add(store, f"c{n % 3}", n) for n in range(6)]
    theirs = add(store, "elsewhere", 99)
    store.inbox.mark("c0", mine[0].id or 0, "read")
    store.inbox.mark("c1", mine[1].id or 0, "archived")
    event.listen(store.engine, "before_cursor_execute", count)
    try:
        newest, messages, unread = store.inbox.news(["c0", "c1", "c2", "empty"], mine[1].id or 0, limit=3)
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert len(statements) == 3
    assert newest == theirs.id
    assert [m.title for m in messages] == ["t2", "t3", "t4"]  # oldest first, after the id, not archived
    assert unread == {"c0": 1, "c1": 1, "c2": 2}
    assert store.inbox.news([], 0, limit=3) == (theirs.id, [], {})
    assert store.inbox.news(["c2", "nobody"], theirs.id or 0, limit=3) == (theirs.id, [], {"c2": 2})
    assert store.inbox.latest_id() == theirs.id and store.inbox.latest_id("c0") == mine[3].id
