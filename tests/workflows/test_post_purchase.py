"""The post-purchase journey: confirmation, review request, a single-use coupon, its reminder, redemption."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support import rows
from touchflow.models import CustomerIn, DeliveryStatus
from touchflow.testing import JourneyHarness, SmtpInbox, eventually

ORDER = {
    "order_id": "o-1",
    "items": [{"name": "Cap", "price": 12.5, "quantity": 1}],
    "total": 12.5,
    "currency": "USD",
}


def steps(journeys: JourneyHarness, customer_id: str, order_id: str = "o-1") -> dict[str, DeliveryStatus]:
    prefix = f"post_purchase:{customer_id}:{order_id}"
    return {
        d.step: d.status
        for d in journeys.store.deliveries.of_customer(customer_id)
        if d.workflow_id == prefix
    }


async def test_unused_coupon_gets_a_reminder_before_it_expires(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    journeys.store.customers.upsert(CustomerIn(id="p1", email="p1@example.com", locale="en"))
    handle = await journeys.post("p1", "order_placed", ORDER)
    assert handle is not None and handle.id == "post_purchase:p1:o-1"

    assert (await journeys.outcome(handle)).status == "completed"
    [coupon] = rows.coupons_of(journeys.store, "p1")
    subjects = [str(m["Subject"]) for m in smtp.messages]
    assert subjects == [
        "Order o-1 confirmed",
        "How was your order?",
        "10% off your next order",
        "Your 10% coupon expires soon",
    ]
    assert "Total: $12.50" in smtp.messages[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert coupon.code in smtp.messages[2].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert coupon.redeemed_at is None and (coupon.value, coupon.unit) == (10, "percent")
    assert steps(journeys, "p1") == {
        "order_confirmation": DeliveryStatus.SENT,
        # No Zalo here (and the customer has no phone): the ZNS copy is skipped, the email went.
        "order_confirmation_zns": DeliveryStatus.SKIPPED,
        "review_request": DeliveryStatus.SENT,
        "coupon": DeliveryStatus.SENT,
        "coupon_reminder": DeliveryStatus.SENT,
    }


async def test_redeeming_ends_the_journey_and_a_second_use_is_refused(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    journeys.store.customers.upsert(CustomerIn(id="p2", email="p2@example.com", locale="vi"))
    handle = await journeys.post("p2", "order_placed", {**ORDER, "total": 1_250_000, "currency": "VND"})
    assert handle is not None
    # Skip past the review request to the coupon.
    await journeys.env.sleep(timedelta(days=6))
    state = await journeys.state_when(handle, lambda s: "coupon" in s.sent)
    [coupon] = rows.coupons_of(journeys.store, "p2")
    assert state.data["coupon_id"] == coupon.id
    assert "1.250.000\xa0₫" in smtp.messages[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]

    await journeys.post("p2", "order_placed", {"order_id": "o-2", "total": 10, "coupon_code": coupon.code})
    outcome = await journeys.outcome(handle)
    assert (outcome.status, outcome.ended_by) == ("converted", "coupon_redeemed")
    await journeys.post("p2", "order_placed", {"order_id": "o-3", "total": 10, "coupon_code": coupon.code})

    redeemed = rows.coupon_by_code(journeys.store, coupon.code)
    assert redeemed is not None and redeemed.redeemed_order_id == "o-2"
    uses = [(r.order_id, r.accepted, r.reason) for r in rows.coupon_redemptions(journeys.store, coupon.code)]
    assert uses == [("o-2", True, None), ("o-3", False, "already redeemed")]
    assert "coupon_reminder" not in steps(journeys, "p2")


async def test_one_run_per_order(journeys: JourneyHarness) -> None:
    journeys.store.customers.upsert(CustomerIn(id="p3", email="p3@example.com"))
    first = await journeys.post("p3", "order_placed", ORDER)
    again = await journeys.post("p3", "order_placed", ORDER)  # the same order told twice (new event id)
    other = await journeys.post("p3", "order_placed", {**ORDER, "order_id": "o-2"})
    assert first is not None and again is not None and other is not None
    assert first.id == again.id != other.id
    await journeys.state_when(first, lambda s: " UTC" in s.detail)
    assert list(steps(journeys, "p3")).count("order_confirmation") == 1


@pytest.mark.parametrize(
    "odd",
    [
        {"total": "lots", "currency": 5, "items": "many"},
        {"total": 1e100, "currency": "XX", "items": [1, "two", {"name": None, "price": "free"}, None]},
        {"total": None, "currency": None, "items": {"name": "not a list"}},
    ],
)
async def test_the_order_confirmation_goes_out_whatever_the_properties(
    journeys: JourneyHarness, smtp: SmtpInbox, odd: dict[str, object]
) -> None:
    """A transactional message must not be lost to an odd property: the template shows what it was given."""
    journeys.customer("p9", email="p9@example.com", locale="vi")
    await journeys.post("p9", "order_placed", {"order_id": "o\r\nBcc: evil@example.com", **odd})
    [mail] = await smtp.wait_for(1)
    assert mail["Subject"] == "Đơn hàng o Bcc: evil@example.com đã được xác nhận"  # one line, no new header
    assert mail["Bcc"] is None
    assert mail.get_body(("plain",)) is not None

    def confirmed() -> bool:
        return any(
            d.step == "order_confirmation" and d.status == DeliveryStatus.SENT
            for d in journeys.deliveries("p9")
        )

    await eventually(confirmed, 10, "the confirmation to be recorded sent")
