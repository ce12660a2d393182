"""`touchflow journeys`: every journey with its triggers, goals, exits, steps, channels and stages."""

from __future__ import annotations

import json

import pytest

from touchflow.cli import main
from workflows import REGISTRY


def test_journeys_text_names_everything_a_marketer_asks(capsys: pytest.CaptureFixture[str]) -> None:
    main(["journeys"])
    out = capsys.readouterr().out
    for spec in REGISTRY.values():
        assert f"{spec.name}: {spec.description}" in out
        for step in spec.steps:
            assert step.name in out
    assert "triggers   cart_updated   (re-entry: once per cart_id)" in out
    assert "exits      cart_cleared" in out
    assert "cart_reminder_1          consideration  web_push → email   [A/B cart_reminder_copy: a/b]" in out
    assert "order_confirmation       purchase       email   [transactional]" in out


def test_journeys_json(capsys: pytest.CaptureFixture[str]) -> None:
    main(["journeys", "--json"])
    rows = {row["journey"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(REGISTRY)
    cart = rows["abandoned_cart"]
    assert (cart["starts_on"], cart["goals"], cart["exits_on"]) == (
        ["cart_updated"],
        ["order_placed"],
        ["cart_cleared"],
    )
    assert cart["steps"][0] == {
        "step": "cart_reminder_1",
        "stage": "consideration",
        "channels": ["web_push", "email"],
        "transactional": False,
        "experiment": "cart_reminder_copy",
        "variants": ["a", "b"],
    }
    assert rows["loyalty"]["starts_on"] == ["order_placed", "loyalty_points_changed"]
