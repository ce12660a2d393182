"""The README's "Write your own journey" example runs, and the README shows exactly this module's code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from examples.browse_abandonment import BrowseAbandonment
from touchflow.check import check
from touchflow.models import CustomerIn, DeliveryStatus
from touchflow.settings import Settings
from touchflow.testing import JourneyHarness, SmtpInbox, registry_of
from touchflow.workflows.base import sticky_variant
from touchflow.workflows.registry import Registry

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "browse_abandonment.py"


@pytest.fixture
def journey_registry() -> Registry:
    return registry_of(BrowseAbandonment)  # its templates: examples/templates, beside the module


def test_the_example_checks_clean(journey_registry: Registry) -> None:
    # Push first, email as the fallback: each with its templates in both languages.
    assert check(journey_registry, Settings.model_validate({})) == []


VIEWED = {"product_id": "p1", "name": "Nón lá", "price": 120_000, "currency": "VND", "url": "https://x/p1"}


async def test_reminds_of_the_last_product_then_waits_out_the_cooldown(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    journeys.store.customers.upsert(CustomerIn(id="b1", email="b1@example.com", locale="vi"))
    handle = await journeys.post("b1", "product_viewed", {**VIEWED, "name": "Áo dài"})
    await journeys.post("b1", "product_viewed", VIEWED)
    assert handle is not None
    assert (await journeys.outcome(handle)).status == "completed"
    [mail] = smtp.messages
    variant = sticky_variant("b1", "browse_copy", ("a", "b"))
    assert mail["Subject"] == {"a": "Nón lá đang chờ bạn", "b": "Bạn vẫn đang nghĩ về Nón lá?"}[variant]
    assert "120.000\xa0₫" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    [delivery] = journeys.store.deliveries.of_customer("b1")
    assert (delivery.status, delivery.variant) == (DeliveryStatus.SENT, variant)

    # Browsing again within the week: a new run starts, is not admitted, and sends nothing.
    again = await journeys.post("b1", "product_viewed", VIEWED)
    assert again is not None
    assert (await journeys.outcome(again)).status == "not_admitted"
    assert len(smtp.messages) == 1


async def test_adding_to_the_cart_ends_it(journeys: JourneyHarness, smtp: SmtpInbox) -> None:
    journeys.store.customers.upsert(CustomerIn(id="b2", email="b2@example.com"))
    handle = await journeys.post("b2", "product_viewed", VIEWED)
    await journeys.post("b2", "cart_updated", {"cart_id": "k1"})
    assert handle is not None
    assert (await journeys.outcome(handle)).status == "exited"
    assert smtp.messages == []


def test_the_readme_shows_this_module() -> None:
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Write your own journey\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert section is not None, "README.md needs its 'Write your own journey' section"
    code = re.search(r"```python\n(.*?)```", section.group(1), re.S)
    assert code is not None, "the README section needs a ```python block with examples/browse_abandonment.py"
    assert code.group(1).strip() == EXAMPLE.read_text().strip()
