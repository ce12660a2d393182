"""touchflow.attribution (the last-touch rule) and the A/B verdict of touchflow.insight, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from touchflow.attribution import Conversion, Touchpoint, attribute, conversion_names, revenue
from touchflow.insight import two_proportion_z, verdict
from touchflow.models import VariantResult

T0 = datetime(2026, 11, 1, tzinfo=UTC)
WINDOW = timedelta(days=3)
GOALS = {"welcome": ("order_placed",), "abandoned_cart": ("order_placed", "cart_cleared"), "loyalty": ()}


def touch(delivery_id: int, journey: str, hours: float, customer: str = "c1") -> Touchpoint:
    return Touchpoint(
        delivery_id, customer, journey, "step", "email", None, None, T0 + timedelta(hours=hours)
    )


def order(hours: float, name: str = "order_placed", customer: str = "c1", total: float = 10.0) -> Conversion:
    return Conversion(f"e{hours}", customer, name, T0 + timedelta(hours=hours), total)


@pytest.mark.parametrize(
    ("touches", "conversion", "credited_to"),
    [
        ([touch(1, "welcome", 0)], order(5), 1),
        ([touch(1, "welcome", 0), touch(2, "abandoned_cart", 4)], order(5), 2),  # the last touch wins
        ([touch(1, "welcome", 0)], order(72), 1),  # the window's edge is inside it
        ([touch(1, "welcome", 0)], order(72.01), None),  # past the window
        ([touch(1, "welcome", 6)], order(5), None),  # sent after the conversion
        ([touch(1, "welcome", 0, customer="c2")], order(5), None),  # someone else's message
        ([touch(1, "loyalty", 1)], order(5), 1),  # an order is credited to any message, goal or not
        # A goal other than order_placed only to a journey that has it: the older cart message, not loyalty.
        ([touch(1, "abandoned_cart", 0), touch(2, "loyalty", 4)], order(5, "cart_cleared"), 1),
        ([touch(1, "loyalty", 4)], order(5, "cart_cleared"), None),
        # The same instant: the later delivery (higher id) is the last touch.
        ([touch(3, "welcome", 1), touch(2, "abandoned_cart", 1)], order(5), 3),
    ],
)
def test_last_touch_within_the_window(
    touches: list[Touchpoint], conversion: Conversion, credited_to: int | None
) -> None:
    found = attribute([conversion], touches, WINDOW, GOALS)
    assert [a.touchpoint.delivery_id for a in found] == ([credited_to] if credited_to else [])


def test_conversions_are_orders_and_goals_and_revenue_is_an_untrusted_total() -> None:
    assert conversion_names(GOALS) == ["cart_cleared", "order_placed"]
    totals = [{"total": 12.5}, {"total": "7"}, {"total": "lots"}, {"total": -3}, {"total": True}, {}]
    assert [revenue(p) for p in totals] == [12.5, 7.0, 0.0, 0.0, 0.0, 0.0]
    assert revenue({"total": float("inf")}) == 0.0


def test_two_proportion_z_test() -> None:
    z, p = two_proportion_z(60, 200, 30, 200) or (0.0, 1.0)
    assert round(z, 3) == 3.592 and round(p, 5) == 0.00033  # 0.3 vs 0.15, pooled 0.225
    assert two_proportion_z(1, 0, 1, 10) is None and two_proportion_z(0, 10, 0, 10) is None


def variant(name: str, sent: int, won: int) -> VariantResult:
    return VariantResult(
        variant=name,
        sent=sent,
        opened=0,
        clicked=0,
        attributed_conversions=won,
        revenue=0.0,
        conversion_rate=won / sent if sent else 0.0,
    )


def test_a_winner_only_when_significant() -> None:
    clear = verdict("copy", "s", [variant("a", 200, 30), variant("b", 200, 60)])
    assert (clear.winner, clear.p_value is not None and clear.p_value < 0.05) == ("b", True)
    close = verdict("copy", "s", [variant("a", 100, 10), variant("b", 100, 12)])
    assert close.winner is None and close.p_value is not None and close.p_value > 0.05
    assert "z-test" in close.test
    assert verdict("copy", "s", [variant("a", 0, 0), variant("b", 0, 0)]).p_value is None
