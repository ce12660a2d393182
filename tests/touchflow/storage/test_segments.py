"""Segments on SQLite and PostgreSQL: the condition language in SQL (API and Python forms agree, case by
case), memberships kept as events and profiles change, entries and exits recorded."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from touchflow.errors import InvalidInput, NotFound
from touchflow.models import Broadcast, CustomerIn, EventIn, utcnow
from touchflow.segments import (
    DOWN,
    STAGES,
    UP,
    Attribute,
    Event,
    LifecycleRules,
    Node,
    Property,
    SegmentConflict,
    in_segment,
    lifecycle,
    moves_with,
    parse_condition,
    reachable,
    segment,
)
from touchflow.storage import Store

DAY = timedelta(days=1)


def _event(event_id: str, customer: str, name: str, days_ago: float = 0, **properties: Any) -> EventIn:
    return EventIn(
        id=event_id,
        customer_id=customer,
        name=name,
        properties=properties,
        timestamp=utcnow() - days_ago * DAY,
    )


@pytest.fixture
def shop(store: Store) -> Store:
    """Four profiles: a (Hà Nội, two recent orders), b (HCM, one old order, no email marketing),
    c (no attributes, opted out of everything), d (Hà Nội, mistyped age, browsing)."""
    up = store.customers.upsert
    up(
        CustomerIn(
            id="a",
            email="a@example.vn",
            attributes={
                "city": "Hà Nội",
                "age": 30,
                "vip": True,
                "tags": ["vip", "new"],
                "signed_up_at": (utcnow() - 400 * DAY).isoformat(),
            },
        )
    )
    up(
        CustomerIn(
            id="b",
            email="b@example.vn",
            attributes={"city": "Hồ Chí Minh", "age": 17, "vip": False},
            consents={"email.marketing": False},
        )
    )
    up(CustomerIn(id="c", phone="+84912345678", consents={"all": False}))
    up(
        CustomerIn(
            id="d",
            attributes={
                "city": "Hà Nội",
                "age": "thirty",
                "tags": "vip-ish",
                "signed_up_at": utcnow().isoformat(),
            },
        )
    )
    store.events.ingest(
        [
            _event("a1", "a", "order_placed", 10, total=500_000),
            _event("a2", "a", "order_placed", 2, total=700_000),
            _event("b1", "b", "order_placed", 200, total=100),
            _event("d1", "d", "product_viewed", 1, sku="X"),
        ],
        relayed_names=(),
    )
    return store


ORDERS = "order_placed"
# (python form, API form, members): both forms must give the same tree and the same members.
CASES: list[tuple[Node, dict[str, Any], set[str]]] = [
    (Attribute("city") == "Hà Nội", {"attribute": "city", "op": "eq", "value": "Hà Nội"}, {"a", "d"}),
    (Attribute("city") != "Hà Nội", {"attribute": "city", "op": "ne", "value": "Hà Nội"}, {"b", "c"}),
    (
        Attribute("city").is_in(["Hà Nội", "Hồ Chí Minh"]),
        {"attribute": "city", "op": "in", "value": ["Hà Nội", "Hồ Chí Minh"]},
        {"a", "b", "d"},
    ),
    (Attribute("tags").contains("vip"), {"attribute": "tags", "op": "contains", "value": "vip"}, {"a", "d"}),
    (Attribute("city").exists(), {"attribute": "city", "op": "exists"}, {"a", "b", "d"}),
    (Attribute("city").exists(False), {"attribute": "city", "op": "exists", "value": False}, {"c"}),
    (Attribute("age") >= 18, {"attribute": "age", "op": "gte", "value": 18}, {"a"}),  # "thirty" is no number
    (Attribute("age") < 18, {"attribute": "age", "op": "lt", "value": 18}, {"b"}),
    (Attribute("vip") == True, {"attribute": "vip", "op": "eq", "value": True}, {"a"}),  # noqa: E712
    (Attribute("signed_up_at").older_than("30d"), {"attribute": "signed_up_at", "older_than": "30d"}, {"a"}),
    (Attribute("signed_up_at").newer_than("30d"), {"attribute": "signed_up_at", "newer_than": "30d"}, {"d"}),
    (Event(ORDERS).performed(), {"event": ORDERS, "count": {"gte": 1}}, {"a", "b"}),
    (Event(ORDERS).not_performed(), {"event": ORDERS, "count": {"eq": 0}}, {"c", "d"}),
    (
        Event(ORDERS, within="90d").count(gte=2),
        {"event": ORDERS, "count": {"gte": 2}, "within": "90d"},
        {"a"},
    ),
    (Event(ORDERS, within="5d").count(eq=1), {"event": ORDERS, "count": {"eq": 1}, "within": "5d"}, {"a"}),
    (
        Event(ORDERS, where=Property("total") > 600_000).performed(),
        {
            "event": ORDERS,
            "count": {"gte": 1},
            "where": [{"property": "total", "op": "gt", "value": 600_000}],
        },
        {"a"},
    ),
    (
        Event(ORDERS).sum("total", gte=1_000_000),
        {"event": ORDERS, "sum": "total", "value": {"gte": 1_000_000}},
        {"a"},
    ),
    (Event("*", within="3d").performed(), {"event": "*", "count": {"gte": 1}, "within": "3d"}, {"a", "d"}),
    (reachable("email"), {"reachable": "email"}, {"a"}),  # b said no to email marketing; d has no email
    (reachable("email", "transactional"), {"reachable": "email", "topic": "transactional"}, {"a", "b"}),
    (reachable("zalo_zns"), {"reachable": "zalo_zns"}, set()),  # c opted out of everything
    (reachable("onsite"), {"reachable": "onsite"}, {"a", "b", "d"}),
    (
        (Attribute("city") == "Hà Nội") & Event(ORDERS, within="90d").count(gte=2),
        {
            "all": [
                {"attribute": "city", "op": "eq", "value": "Hà Nội"},
                {"event": ORDERS, "count": {"gte": 2}, "within": "90d"},
            ]
        },
        {"a"},
    ),
    (
        (Attribute("age") < 18) | ~Attribute("city").exists(),
        {
            "any": [
                {"attribute": "age", "op": "lt", "value": 18},
                {"not": {"attribute": "city", "op": "exists"}},
            ]
        },
        {"b", "c"},
    ),
    (lifecycle("repeat_customer"), {"lifecycle": "repeat_customer"}, {"a"}),
    (lifecycle("lapsed"), {"lifecycle": "lapsed"}, {"b"}),
    (lifecycle("engaged"), {"lifecycle": "engaged"}, {"d"}),
    (lifecycle("new_lead"), {"lifecycle": "new_lead"}, {"c"}),
    (in_segment("hanoi"), {"segment": "hanoi"}, {"a", "d"}),
]


@pytest.mark.parametrize(("python", "api", "members"), CASES, ids=[str(c[1]) for c in CASES])
def test_api_and_python_forms_agree(
    shop: Store, python: Node, api: dict[str, Any], members: set[str]
) -> None:
    shop.segments.create("hanoi", "", {"attribute": "city", "op": "eq", "value": "Hà Nội"})
    assert python.to_json() == parse_condition(api).to_json()
    assert parse_condition(python.to_json()) == python
    assert set(shop.segments.matching(python)) == members
    assert set(shop.segments.matching(parse_condition(api))) == members


def test_membership_follows_events_and_profiles(store: Store) -> None:
    store.segments.declare(
        [segment("hanoi_repeat", (Attribute("city") == "Hà Nội") & Event(ORDERS, within="90d").count(gte=2))],
        relayed=("segment_entered:hanoi_repeat", "segment_exited:hanoi_repeat"),
    )
    store.customers.upsert(CustomerIn(id="u", attributes={"city": "Hà Nội"}))
    store.events.ingest([_event("o1", "u", ORDERS)], relayed_names=store.segments.relayed)
    assert store.segments.member_ids("hanoi_repeat", None, 10) == []
    store.events.ingest([_event("o2", "u", ORDERS)], relayed_names=store.segments.relayed)
    assert store.segments.member_ids("hanoi_repeat", None, 10) == ["u"]
    assert store.segments.size("hanoi_repeat") == 1
    entered = [e for e in store.events.of_customer("u") if e.name == "segment_entered:hanoi_repeat"]
    assert len(entered) == 1 and entered[0].properties == {"segment": "hanoi_repeat"}
    # A profile change moves them out, in the upsert's own transaction.
    store.customers.upsert(CustomerIn(id="u", attributes={"city": "Huế"}))
    assert store.segments.member_ids("hanoi_repeat", None, 10) == []
    moves = [(m.entered, m.customer_id) for m in store.segments.movements("hanoi_repeat")]
    assert moves == [(False, "u"), (True, "u")]
    assert [e.name for e in store.events.of_customer("u")].count("segment_exited:hanoi_repeat") == 1
    # Lifecycle stages are kept too: one stage at a time.
    assert [m.segment for m in store.segments.of_customer("u")] == ["lifecycle:repeat_customer"]


def test_a_new_customer_is_a_new_lead_then_engaged_then_customer(store: Store) -> None:
    store.customers.upsert(CustomerIn(id="n"))
    assert [m.segment for m in store.segments.of_customer("n")] == ["lifecycle:new_lead"]
    store.events.ingest([_event("v", "n", "product_viewed")], relayed_names=())
    assert [m.segment for m in store.segments.of_customer("n")] == ["lifecycle:engaged"]
    store.events.ingest([_event("o", "n", ORDERS)], relayed_names=())
    assert [m.segment for m in store.segments.of_customer("n")] == ["lifecycle:customer"]
    # Created by an event alone, a profile still gets its stage.
    store.events.ingest([_event("w", "fresh", ORDERS)], relayed_names=())
    assert [m.segment for m in store.segments.of_customer("fresh")] == ["lifecycle:customer"]


def test_time_alone_moves_a_segment_on_refresh(store: Store) -> None:
    store.segments.declare([], lifecycle=LifecycleRules(lapsed_after=timedelta(seconds=1)))
    store.events.ingest([_event("o", "t", ORDERS, days_ago=0)], relayed_names=())
    assert [m.segment for m in store.segments.of_customer("t")] == ["lifecycle:customer"]
    store.events.ingest([_event("o-old", "t2", ORDERS, days_ago=1)], relayed_names=())
    assert [m.segment for m in store.segments.of_customer("t2")] == ["lifecycle:lapsed"]
    # Two seconds on, the first order is older than lapsed_after too.
    moves = store.segments.refresh(now=utcnow() + timedelta(seconds=2))
    assert {(m.segment, m.entered) for m in moves} == {
        ("lifecycle:customer", False),
        ("lifecycle:lapsed", True),
    }
    assert [m.segment for m in store.segments.of_customer("t")] == ["lifecycle:lapsed"]


@pytest.mark.parametrize(
    ("condition", "names", "way"),
    [
        (Event("a").performed(), {"a"}, UP),
        (Event("a").performed(), {"b"}, 0),
        (Event("a").not_performed(), {"a"}, DOWN),
        (Event("a").count(lte=2), {"a"}, DOWN),
        (Event("a").count(eq=2), {"a"}, UP | DOWN),
        (Event("a").sum("total", gte=100), {"a"}, UP | DOWN),  # a total may be negative
        (~Event("a").performed() & Event("b").performed(), {"a"}, DOWN),
        (~Event("a").performed() & Event("b").performed(), {"a", "b"}, UP | DOWN),
        (Event("*", within="30d").performed(), {"segment_entered:vip"}, 0),
        (Event("*", within="30d").performed(), {"x"}, UP),
        (Attribute("city") == "Huế", {"a"}, 0),
        (reachable("email"), {"unsubscribed"}, DOWN),
        (lifecycle("engaged"), {"page_viewed"}, UP),  # no order, and active: the visit only adds
        (lifecycle("new_lead"), {"page_viewed"}, DOWN),
    ],
)
def test_which_way_new_events_can_move_a_condition(condition: Node, names: set[str], way: int) -> None:
    definitions = {d.name: d for d in LifecycleRules().definitions}
    assert moves_with(condition, names, definitions) == way


def test_an_ingest_moves_members_out_and_others_in_where_the_events_can(store: Store) -> None:
    """Events are evaluated only where they can move a segment; what they can move still moves both
    ways: a third visit takes a customer out of "at most two visits", an order out of "never ordered"."""
    store.segments.declare(
        [
            segment("browsing", Event("page_viewed").count(lte=2)),
            segment("no_order", Event(ORDERS).not_performed()),
            segment("two_visits", Event("page_viewed").count(gte=2)),
        ]
    )
    store.customers.upsert(CustomerIn(id="k"))
    ingest = store.events.ingest

    def kept() -> set[str]:
        return {m.segment for m in store.segments.of_customer("k")} - {f"lifecycle:{s}" for s in STAGES}

    assert kept() == {"browsing", "no_order"}
    ingest([_event("v1", "k", "page_viewed"), _event("v2", "k", "page_viewed")], relayed_names=())
    assert kept() == {"browsing", "no_order", "two_visits"}
    ingest([_event("v3", "k", "page_viewed")], relayed_names=())
    assert kept() == {"no_order", "two_visits"}
    ingest([_event("o", "k", ORDERS)], relayed_names=())
    assert kept() == {"two_visits"}
    assert [m.segment for m in store.segments.of_customer("k") if m.segment.startswith("lifecycle:")] == [
        "lifecycle:customer"
    ]


def test_api_defined_segments_are_created_filled_changed_and_deleted(shop: Store) -> None:
    definition, moves = shop.segments.create("adults", "18+", {"attribute": "age", "op": "gte", "value": 18})
    assert definition.source == "api" and [(m.customer_id, m.entered) for m in moves] == [("a", True)]
    with pytest.raises(SegmentConflict):
        shop.segments.create("adults", "", {"attribute": "age", "op": "gte", "value": 18})
    with pytest.raises(SegmentConflict, match="built in"):
        shop.segments.replace("lifecycle:lapsed", "", {"attribute": "age", "op": "gte", "value": 1})
    shop.segments.replace("adults", "any age", {"attribute": "age", "op": "gte", "value": 1})
    assert shop.segments.member_ids("adults", None, 10) == ["a", "b"]
    assert shop.segments.member_ids("adults", "a", 10) == ["b"]
    shop.segments.create(
        "adult_hanoi", "", {"all": [{"segment": "adults"}, {"attribute": "city", "op": "exists"}]}
    )
    with pytest.raises(SegmentConflict, match="used by adult_hanoi"):
        shop.segments.delete("adults")
    shop.segments.delete("adult_hanoi")
    shop.segments.delete("adults")
    assert shop.segments.get("adults") is None and shop.segments.size("adults") == 0
    with pytest.raises(NotFound):
        shop.segments.delete("adults")
    with pytest.raises(InvalidInput, match="does not exist"):
        shop.segments.create("x", "", {"segment": "nope"})


def test_deleting_a_segment_is_an_exit_for_each_member_that_journeys_hear(store: Store) -> None:
    store.segments.declare([], relayed=("segment_exited:gold",))
    for customer, tier in (("g1", "gold"), ("g2", "gold"), ("s1", "silver")):
        store.customers.upsert(CustomerIn(id=customer, attributes={"tier": tier}))
    store.segments.create("gold", "", {"attribute": "tier", "op": "eq", "value": "gold"})
    before = store.outbox.size()  # the relay's queue: what the router will hand the journeys
    store.segments.delete("gold")
    exits = {m.customer_id for m in store.segments.movements("gold") if not m.entered}
    assert exits == {"g1", "g2"}
    for customer in ("g1", "g2"):
        [exited] = [e for e in store.events.of_customer(customer) if e.name == "segment_exited:gold"]
        assert exited.properties == {"segment": "gold"}
    assert store.outbox.size() == before + 2
    assert [e.name for e in store.events.of_customer("s1") if e.name.startswith("segment_")] == []


def test_a_segment_a_broadcast_has_yet_to_read_is_not_deleted(store: Store) -> None:
    store.segments.create("gold", "", {"attribute": "tier", "op": "eq", "value": "gold"})
    store.broadcasts.create(
        Broadcast(id="b-later", name="sale", audience={"segment": "gold"}, via=["email"], template="sale")
    )
    with pytest.raises(
        SegmentConflict, match="audience of broadcast b-later, which has not taken its snapshot"
    ):
        store.segments.delete("gold")
    store.broadcasts.finish_snapshot("b-later")  # taken: the broadcast reads its snapshot, not the segment
    store.segments.delete("gold")
    assert store.segments.get("gold") is None


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ([], "condition: a condition is a JSON object"),
        ({"all": []}, "condition.all: a non-empty list"),
        (
            {"all": [{"attribute": "a", "op": "eq", "value": 1}, {"attribute": "b", "op": "like"}]},
            "condition.all[1].op",
        ),
        ({"not": {"event": "x", "count": {"gte": "2"}}}, "condition.not.count.gte: a number"),
        ({"event": "x", "within": "soon"}, "condition.within"),
        ({"event": "x", "where": [{"property": "t", "op": "in", "value": []}]}, "condition.where[0].value"),
        ({"reachable": "fax"}, "condition.reachable: one of"),
        ({"lifecycle": "vip"}, "condition.lifecycle: one of"),
        ({"attribute": "a", "op": "gt", "value": True}, "condition.value: gt compares numbers"),
        ({"colour": "red"}, "condition: a condition has one of the keys"),
    ],
)
def test_a_bad_condition_names_its_node(condition: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_condition(condition)


CONSENTS: list[dict[str, bool]] = [
    {},
    {"all": False},
    {"all": True},
    {"marketing": False},
    {"marketing": False, "email": True},
    {"email": False, "email.marketing": True},
    {"email.marketing": False},
    {"email.transactional": False},
    {"marketing": True, "email.marketing": False},
    {"zalo_zns": False},
]


@pytest.mark.parametrize("default", [True, False])
@pytest.mark.parametrize("topic", ["marketing", "transactional"])
def test_reachable_agrees_with_the_delivery_consent_rules(store: Store, topic: str, default: bool) -> None:
    from touchflow.activities.policy import consent_refusal

    store.segments.declare([], marketing_consent_default=default)
    for i, consents in enumerate(CONSENTS):
        store.customers.upsert(CustomerIn(id=f"p{i}", email=f"p{i}@example.vn", consents=consents))
    expected = {
        f"p{i}" for i, c in enumerate(CONSENTS) if consent_refusal(c, "email", topic, default) is None
    }
    assert set(store.segments.matching(reachable("email", topic))) == expected


# (channel, the customer's address, the suppressions: (channel, address as the bounce gave it), reachable)
SUPPRESSIONS: list[tuple[str, str, list[tuple[str, str]], bool]] = [
    ("email", "an@example.vn", [], True),
    ("email", "an@example.vn", [("email", "an@example.vn")], False),
    ("email", "An@Example.vn", [("email", "an@example.vn")], False),  # the list compares lower-cased
    ("email", "an@example.vn", [("email", "binh@example.vn")], True),
    ("email", "an@example.vn", [("zalo_zns", "an@example.vn")], True),  # another channel's list
    ("email", "Đức@ví-dụ.vn", [("email", "đức@ví-dụ.vn")], False),
    ("zalo_zns", "+84912345678", [], True),
    ("zalo_zns", "+84912345678", [("zalo_zns", "+84912345678")], False),
    ("zalo_zns", "+84912345678", [("email", "+84912345678")], True),
]


@pytest.mark.parametrize(("channel", "address", "suppressed", "reachable_now"), SUPPRESSIONS)
def test_a_suppressed_address_is_not_reachable(
    store: Store, channel: str, address: str, suppressed: list[tuple[str, str]], reachable_now: bool
) -> None:
    contact = {"email": address} if channel == "email" else {"phone": address}
    store.customers.upsert(CustomerIn(id="r", **contact))
    store.customers.upsert(CustomerIn(id="other", email="other@example.vn", phone="+84900000000"))
    store.segments.create("reachable_here", "", {"reachable": channel})
    assert set(store.segments.member_ids("reachable_here", None, 10)) == {"r", "other"}
    for on, bounced in suppressed:
        store.deliveries.suppress(on, bounced, "bounced", customer_id="r")
    expected = {"r", "other"} if reachable_now else {"other"}
    python, api = reachable(channel), parse_condition({"reachable": channel})
    assert set(store.segments.matching(python)) == set(store.segments.matching(api)) == expected
    # The kept membership moved with the suppression, in its transaction.
    assert set(store.segments.member_ids("reachable_here", None, 10)) == expected


def test_a_condition_nested_too_deep_is_refused_not_a_crash() -> None:
    deep: dict[str, Any] = {"attribute": "a", "op": "exists"}
    for _ in range(2000):
        deep = {"not": deep}
    with pytest.raises(InvalidInput, match="nest at most"):
        parse_condition(deep)
