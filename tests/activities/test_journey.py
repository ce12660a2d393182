"""deliver_step through a real journey run and alone (ActivityEnvironment): fallback, idempotency, templates
that cannot give a channel its message, and the language a delivery was rendered in."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from tests.support.harness import TEST_REGISTRY, delivery_attempts
from touchflow.activities.journey import JourneyActivities
from touchflow.activities.types import EnterJourneyInput, SendStatus, SendStepInput, SendStepResult
from touchflow.models import CustomerIn, Delivery, DeliveryStatus, JourneyStatus
from touchflow.rendering import Renderer
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.testing import JourneyHarness, SmtpInbox


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """TOUCHFLOW_TEMPLATES_DIR for these tests: searched before the probe's own templates."""
    folder = tmp_path / "templates"
    (folder / "probe").mkdir(parents=True)
    return folder


@pytest.fixture
def journey_settings(templates: Path) -> dict[str, Any]:
    return {"templates_dir": templates}


def write(templates: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        (templates / "probe" / name).write_text(source)


async def deliver(journeys: JourneyHarness, customer_id: str, step: str, via: list[str]) -> SendStepResult:
    """Run deliver_step once, alone, as a journey's step `step` of the probe journey would."""
    journeys.customer(customer_id, email=f"{customer_id.replace(':', '-')}@example.com")
    result: SendStepResult = await ActivityEnvironment().run(
        journeys.activities.deliver_step,
        SendStepInput(
            journey="probe",
            step=step,
            workflow_id=f"probe:{customer_id}",
            customer_id=customer_id,
            key=f"probe:{customer_id}:1:{step}",
            channels=via,
            stage="awareness",
            entered_at=datetime.now(UTC) - timedelta(seconds=1),
        ),
    )
    return result


def delivery(journeys: JourneyHarness, customer_id: str) -> Delivery:
    [found] = journeys.deliveries(customer_id)
    return found


async def test_probe_falls_back_to_the_next_channel(journeys: JourneyHarness, smtp: SmtpInbox) -> None:
    journeys.store.customers.upsert(CustomerIn(id="p1", email="p1@example.com", attributes={"name": "Bi"}))
    handle = await journeys.post("p1", "probe", {"probe_id": "x1", "via": ["zalo_zns", "email"]})
    outcome = await journeys.outcome(handle)
    assert outcome.status == "completed"
    [mail] = smtp.messages
    assert mail["Subject"] == "Probe x1"
    [delivery] = journeys.store.deliveries.of_customer("p1")
    assert delivery.channel == "email"
    assert delivery.status == DeliveryStatus.SENT


async def test_an_email_template_without_its_txt_falls_back_to_the_next_channel(
    journeys: JourneyHarness, smtp: SmtpInbox, templates: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(
        templates,
        {
            "no_text.email.en.html": "{% block subject %}Hi{% endblock %}<p>Hi</p>",
            "no_text.console.en.txt": "Hi",
        },
    )
    result = await deliver(journeys, "t1", "no_text", ["email", "console"])
    assert (result.status, result.channel) == (SendStatus.SENT, "console"), result.reason
    assert smtp.messages == []
    sent = delivery(journeys, "t1")
    assert [(a["channel"], a["outcome"]) for a in sent.attempts] == [
        ("email", "no_template"),
        ("console", "sent"),
    ]
    assert sent.attempts[0]["reason"] == (
        "journey probe, step no_text: the template has no text (add probe/no_text.email.en.txt)"
    )
    [logged] = [r for r in caplog.records if r.getMessage() == "template unusable"]
    assert (logged.levelno, logged.journey, logged.step, logged.channel) == (  # type: ignore[attr-defined]
        logging.ERROR,
        "probe",
        "no_text",
        "email",
    )
    assert logged.missing == ["text"] and logged.template == ["probe/no_text.email.en.html"]  # type: ignore[attr-defined]
    assert "t1@example.com" not in f"{logged.__dict__}"


async def test_an_email_without_a_subject_fails_at_once_and_is_never_retried(
    journeys: JourneyHarness, smtp: SmtpInbox, templates: Path
) -> None:
    # The probe's own step, its templates overridden by copies without the subject block.
    html = '{% extends "_layouts/email.html" %}{% block content %}<p>Probe</p>{% endblock %}'
    write(templates, {"probe.email.en.html": html, "probe.email.en.txt": "Probe {{ event.probe_id }}"})
    journeys.customer("t2", email="t2@example.com")
    handle = await journeys.post("t2", "probe", {"probe_id": "s1", "via": ["email"]})
    assert (await journeys.outcome(handle)).status == "completed"  # the journey goes on without the step
    assert smtp.messages == []
    failed = delivery(journeys, "t2")
    assert failed.status == DeliveryStatus.FAILED
    assert failed.error == (
        "email: journey probe, step probe: the template has no subject (add a non-empty "
        "{% block subject %} to probe/probe.email.en.html or probe/probe.email.en.txt)"
    )
    assert [a["outcome"] for a in failed.attempts] == ["no_template"]
    assert delivery_attempts(await handle.fetch_history()) == [1]  # the step was not retried


async def test_a_template_that_raises_is_permanent_for_that_channel(
    journeys: JourneyHarness, smtp: SmtpInbox, templates: Path
) -> None:
    write(
        templates,
        {
            "raises.email.en.txt": "{% block subject %}Hi{% endblock %}\n{{ 1 // 0 }}",
            "raises.email.en.html": "{% block subject %}Hi{% endblock %}<p>Hi</p>",
            "raises.console.en.txt": "Hi",
        },
    )
    reason = "journey probe, step raises: probe/raises.email.en.txt line 2 raised ZeroDivisionError"
    fell_back = await deliver(journeys, "t3", "raises", ["email", "console"])
    assert (fell_back.status, fell_back.channel) == (SendStatus.SENT, "console")
    assert delivery(journeys, "t3").attempts[0] == {
        "channel": "email",
        "outcome": "no_template",
        "reason": reason,
        "at": delivery(journeys, "t3").attempts[0]["at"],
    }
    alone = await deliver(journeys, "t4", "raises", ["email"])  # returns: nothing for Temporal to retry
    assert (alone.status, alone.reason) == (SendStatus.FAILED, f"email: {reason}")
    assert smtp.messages == []


async def test_a_delivery_records_its_language_and_whether_it_was_a_fallback(
    journeys: JourneyHarness, smtp: SmtpInbox, templates: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(
        templates,
        {
            "probe.email.vi.html": "{% block subject %}Thăm dò{% endblock %}<p>Xin chào</p>",
            "probe.email.vi.txt": "{% block subject %}Thăm dò{% endblock %}Xin chào",
        },
    )
    for customer, locale in (("fr-customer", "fr"), ("vi-customer", "vi")):
        journeys.customer(customer, email=f"{customer}@example.com", locale=locale)
        handle = await journeys.post(customer, "probe", {"probe_id": customer, "via": ["email"]})
        assert (await journeys.outcome(handle)).status == "completed"
    assert [m["Subject"] for m in smtp.messages] == ["Probe fr-customer", "Thăm dò"]
    french, vietnamese = delivery(journeys, "fr-customer"), delivery(journeys, "vi-customer")
    assert (french.locale, french.locale_fallback) == ("en", True)
    assert (vietnamese.locale, vietnamese.locale_fallback) == ("vi", False)
    [warned] = [r for r in caplog.records if r.getMessage() == "template language fallback"]
    assert warned.levelno == logging.WARNING
    assert {k: getattr(warned, k) for k in ("journey", "step", "channel", "wanted_locale", "locale")} == {
        "journey": "probe",
        "step": "probe",
        "channel": "email",
        "wanted_locale": "fr",
        "locale": "en",
    }
    assert "fr-customer@example.com" not in f"{warned.__dict__}"


async def test_a_misspelt_channel_is_named_as_such_not_as_one_that_is_off(journeys: JourneyHarness) -> None:
    result = await deliver(journeys, "m1", "probe", ["emial", "zalo_zns"])
    assert result.status == SendStatus.SKIPPED
    assert result.reason == (
        "emial: no such channel (did you mean 'email'?); channels: console, email, onsite, web_push, "
        "zalo_zns; zalo_zns: channel not configured (see its settings in the README)"
    )


async def test_a_channel_that_raises_unclassified_is_done_for_the_step_not_retried(
    journeys: JourneyHarness,
    templates: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write(
        templates,
        {
            "probe.email.en.html": "{% block subject %}Hi{% endblock %}<p>Hi</p>",
            "probe.email.en.txt": "Hi",
            "probe.console.en.txt": "{% block body %}Hi{% endblock %}",
        },
    )

    async def broken(message: object) -> None:
        raise ValueError("a bug in a channel, quoting m2@example.com")

    monkeypatch.setattr(journeys.activities.channels["email"], "send", broken)
    with caplog.at_level(logging.ERROR):
        result = await deliver(journeys, "m2", "probe", ["email", "console"])
    assert (result.status, result.channel) == (SendStatus.SENT, "console"), result.reason
    [email] = [a for a in delivery(journeys, "m2").attempts if a.get("channel") == "email"]
    assert (email["outcome"], email["reason"]) == ("permanent", "unexpected ValueError in the channel")
    assert "channel raised an unclassified error" in caplog.text
    assert "m2@example.com" not in caplog.text


async def test_a_step_that_fails_for_good_is_tried_once_and_the_journey_goes_on(
    journeys: JourneyHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unusable(*args: object, **kwargs: object) -> None:
        raise ValueError("data the code cannot use")

    monkeypatch.setattr(journeys.activities.store.deliveries, "claim", unusable)
    journeys.customer("m3", email="m3@example.com")
    handle = await journeys.post("m3", "probe", {"probe_id": "x3", "via": ["console"]})
    assert handle is not None
    assert (await journeys.outcome(handle)).status == "completed"  # the run was not failed by its step
    # ValueError is not retryable: one attempt, not twelve hours of them.
    assert delivery_attempts(await handle.fetch_history()) == [1]


# -- links a message may carry (track) -------------------------------------------------------------------


def activities(make_settings: Callable[..., Settings], store: Store, **settings: Any) -> JourneyActivities:
    return JourneyActivities(
        store=store,
        channels={},
        renderer=Renderer(),
        settings=make_settings(**settings),
        journeys=TEST_REGISTRY,
    )


HOSTILE_LINKS = [
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "\x01javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "//evil.example/x",
    "/\\evil.example/x",
    "https:evil.example",
    "https://shop.example@evil.example/",
    "https://shop.example\\@evil.example/",
    "file:///etc/passwd",
]


async def test_a_run_started_on_an_event_that_started_an_earlier_run_is_not_admitted(
    journeys: JourneyHarness,
) -> None:
    """The router skips such a start; a relay retry racing its check is stopped here, at entry."""

    async def enter(run_id: str, trigger: str) -> tuple[bool, str | None]:
        entry = await ActivityEnvironment().run(
            journeys.activities.enter_journey,
            EnterJourneyInput(
                journey="probe",
                workflow_id="probe:c1:x",
                run_id=run_id,
                customer_id="c1",
                entry_key="x",
                reentry="one_at_a_time",
                trigger_event_id=trigger,
            ),
        )
        return entry.admitted, entry.reason

    assert await enter("run-1", "probe-x") == (True, None)
    journeys.store.journeys.leave("run-1", JourneyStatus.COMPLETED, None)
    assert await enter("run-2", "probe-x") == (False, "an earlier run started on this event")
    assert await enter("run-3", "probe-x2") == (True, None)
    assert journeys.store.journeys.runs_started_by("probe-x") == {"probe:c1:x"}


@pytest.mark.parametrize("url", HOSTILE_LINKS)
def test_track_never_gives_a_script_or_an_address_that_hides_its_host(
    make_settings: Callable[..., Settings], sqlite_store: Store, url: str
) -> None:
    """A link that is no web address is left out (an empty href goes nowhere); the message still goes."""
    assert activities(make_settings, sqlite_store).tracked_link(7, url) == ""


@pytest.mark.parametrize(
    ("url", "tracked"),
    [
        ("https://shop.example/cart", True),
        ("http://shop.example/cart", True),
        ("/cart?x=1", False),  # a path on the site: left as it is
        ("mailto:help@shop.example", False),
        ("tel:+84901234567", False),
    ],
)
def test_track_signs_web_links_and_leaves_harmless_ones(
    make_settings: Callable[..., Settings], sqlite_store: Store, url: str, tracked: bool
) -> None:
    link = activities(make_settings, sqlite_store).tracked_link(7, url)
    assert link.startswith("https://shop.example/t/c/") if tracked else link == url


@pytest.mark.parametrize(
    ("domains", "url", "tracked"),
    [
        ("shop.example", "https://shop.example/cart", True),
        ("shop.example", "https://evil.example/", False),
        ("shop.example", "https://www.shop.example/", False),  # a name is that host alone
        ("shop.example", "https://shop.example.evil.example/", False),
        ("shop.example, *.shop.example", "https://www.shop.example/", True),
        ("*.shop.example", "https://shop.example/", False),  # `*.` is the subdomains only
        ("", "https://evil.example/", True),  # empty: any web address
    ],
)
def test_link_domains_limit_where_tracked_links_point(
    make_settings: Callable[..., Settings], sqlite_store: Store, domains: str, url: str, tracked: bool
) -> None:
    link = activities(make_settings, sqlite_store, link_domains=domains).tracked_link(7, url)
    assert link.startswith("https://shop.example/t/c/") if tracked else link == ""


async def test_an_email_with_a_script_link_goes_out_without_it(
    journeys: JourneyHarness, smtp: SmtpInbox, templates: Path
) -> None:
    write(
        templates,
        {
            "links.email.en.txt": "{% block subject %}Links{% endblock %}{{ track('javascript:alert(1)') }}",
            "links.email.en.html": '<a href="{{ track("javascript:alert(1)") }}">a</a>'
            '<a href="{{ track("https://shop.example/ok") }}">b</a>',
        },
    )
    assert (await deliver(journeys, "l1", "links", ["email"])).status == SendStatus.SENT
    [mail] = smtp.messages
    html = mail.get_body(("html",)).get_content()
    assert "javascript" not in html.lower()
    assert '<a href="">a</a>' in html
    assert '<a href="https://shop.example/t/c/' in html


async def test_an_anonymous_visitor_gets_no_email_but_the_next_channel_goes(
    journeys: JourneyHarness, smtp: SmtpInbox, templates: Path
) -> None:
    write(
        templates,
        {
            "probe.email.en.html": "{% block subject %}Hi{% endblock %}<p>Hi</p>",
            "probe.email.en.txt": "Hi",
            "probe.console.en.txt": "{% block body %}Hi{% endblock %}",
        },
    )
    # An identify with only an anonymousId (a newsletter box) put an address on the visitor's profile.
    result = await deliver(journeys, "anon:v8", "probe", ["email", "console"])
    assert (result.status, result.channel) == (SendStatus.SENT, "console"), result.reason
    assert smtp.messages == []
    [email] = [a for a in delivery(journeys, "anon:v8").attempts if a.get("channel") == "email"]
    assert (email["outcome"], email["reason"]) == (
        "anonymous",
        "the visitor is anonymous: email and Zalo wait until they are known",
    )
