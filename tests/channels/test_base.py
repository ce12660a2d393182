"""The channel contract: each channel declares the template parts it cannot send without."""

from __future__ import annotations

import pytest

from touchflow.channels import REGISTRY


@pytest.mark.parametrize(
    ("name", "required"),
    [
        ("email", ("subject", "text", "html")),
        ("web_push", ("title", "body")),
        ("onsite", ("title", "body")),
        ("zalo_zns", ("template_id",)),
        ("console", ()),
    ],
)
def test_each_channel_declares_the_parts_it_needs(name: str, required: tuple[str, ...]) -> None:
    channel = REGISTRY[name]
    assert channel.required_parts == required
    assert all(channel.accepts(part) for part in required)
    assert channel.missing_parts({part: "x" for part in required}) == []
    assert channel.missing_parts({part: " " for part in required}) == list(required)
