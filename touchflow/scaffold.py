"""`touchflow new journey NAME --trigger EVENT`: a journey module, its templates and a passing test.

What it writes, into the project folder (the working directory):

    journeys/__init__.py                                   (when missing)
    journeys/<name>.py                                     the journey
    journeys/templates/<name>/<step>.email.<lang>.html     per language (vi, en): subject and html
    journeys/templates/<name>/<step>.email.<lang>.txt      the plain-text part
    journeys/templates/<name>/<step>.onsite.<lang>.txt     the inbox fallback: title and body
    tests/test_<name>.py                                   runs it on Temporal's time-skipping server

It never overwrites a file: an existing one is a refusal naming it.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path

from touchflow.errors import ConfigurationError

LANGUAGES = ("en", "vi")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_EVENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")

_MODULE = '''"""{title}: starts on `{trigger}`, waits `{name}_delay`, then sends `{step}` (email, else the inbox)."""

from __future__ import annotations

from touchflow.journeys import Journey, JourneyEvent, Reentry, Stage, Step, Timing, journey


@journey(
    starts_on="{trigger}",
    goals=(),  # events that count as converted and end the run, e.g. ("order_placed",)
    reentry=Reentry.ONE_AT_A_TIME,
    timings={{"{name}_delay": Timing("1d", "{title}: wait after {trigger} before {step}.")}},
)
class {cls}(Journey):
    """{title}: one message a day after {trigger}."""

    {step} = Step(via=("email", "onsite"), stage=Stage.RETENTION)

    async def plan(self, trigger: JourneyEvent) -> None:
        # False when a goal came first: then the customer needs no nudge.
        if await self.wait("{name}_delay"):
            await self.send(self.{step}, event=trigger)
'''

_EMAIL_HTML = {
    "en": """{{% extends "_layouts/email.html" %}}
{{% block subject %}}{{{{ customer.first_name or "Hello" }}}}, we have something for you{{% endblock %}}
{{% block content %}}
<h1 style="font-size:22px;margin:0 0 16px;">Hi{{% if customer.first_name %}} {{{{ customer.first_name }}}}{{% endif %}}!</h1>
<p>Thanks for being with {{{{ brand }}}}. Here is what is new since your last visit.</p>
<p><a href="{{{{ track(public_url) }}}}">Take a look</a></p>
{{% endblock %}}
""",
    "vi": """{{% extends "_layouts/email.html" %}}
{{% block subject %}}{{{{ customer.first_name or "Xin chào" }}}}, có điều mới dành cho bạn{{% endblock %}}
{{% block content %}}
<h1 style="font-size:22px;margin:0 0 16px;">Chào{{% if customer.first_name %}} {{{{ customer.first_name }}}}{{% endif %}}!</h1>
<p>Cảm ơn bạn đã đồng hành cùng {{{{ brand }}}}. Đây là những gì mới kể từ lần ghé trước.</p>
<p><a href="{{{{ track(public_url) }}}}">Xem ngay</a></p>
{{% endblock %}}
""",
}
_EMAIL_TEXT = {
    "en": """Hi{{% if customer.first_name %}} {{{{ customer.first_name }}}}{{% endif %}}!

Thanks for being with {{{{ brand }}}}. Here is what is new since your last visit: {{{{ public_url }}}}

--
{{{{ brand }}}} · Unsubscribe: {{{{ unsubscribe_url }}}}
""",
    "vi": """Chào{{% if customer.first_name %}} {{{{ customer.first_name }}}}{{% endif %}}!

Cảm ơn bạn đã đồng hành cùng {{{{ brand }}}}. Xem những gì mới: {{{{ public_url }}}}

--
{{{{ brand }}}} · Hủy đăng ký: {{{{ unsubscribe_url }}}}
""",
}
_ONSITE = {
    "en": """{{% block title %}}Something new for you{{% endblock %}}
{{% block body %}}Here is what is new at {{{{ brand }}}} since your last visit.{{% endblock %}}
{{% block url %}}{{{{ track(public_url) }}}}{{% endblock %}}
""",
    "vi": """{{% block title %}}Có điều mới dành cho bạn{{% endblock %}}
{{% block body %}}Xem những gì mới tại {{{{ brand }}}} kể từ lần ghé trước.{{% endblock %}}
{{% block url %}}{{{{ track(public_url) }}}}{{% endblock %}}
""",
}

_TEST = '''"""The {name} journey on Temporal's time-skipping server, with touchflow's testing kit."""

from __future__ import annotations

import pytest

from {package}.{name} import {cls}
from touchflow.testing import JourneyHarness, SmtpInbox, registry_of


@pytest.fixture
def journey_registry():  # type: ignore[no-untyped-def]
    return registry_of({cls})


@pytest.mark.asyncio
async def test_{step}_goes_out_after_the_wait(journeys: JourneyHarness, smtp: SmtpInbox) -> None:
    journeys.customer("c1", email="lan@example.com", locale="vi", attributes={{"first_name": "Lan"}})
    run = await journeys.post("c1", "{trigger}")
    assert run is not None

    # The time-skipping server jumps over the wait: no test sleeps for a day.
    assert (await journeys.outcome(run)).status == "completed"
    [mail] = smtp.messages
    assert mail["To"] == "lan@example.com"
    assert mail["Subject"] == "Lan, có điều mới dành cho bạn"
    [delivery] = journeys.deliveries("c1")
    assert (delivery.step, delivery.channel, delivery.status) == ("{step}", "email", "sent")


@pytest.mark.asyncio
async def test_a_customer_without_email_gets_the_inbox_message(journeys: JourneyHarness) -> None:
    journeys.customer("c2", locale="en")
    run = await journeys.post("c2", "{trigger}")
    assert run is not None
    assert (await journeys.outcome(run)).status == "completed"
    [delivery] = journeys.deliveries("c2")
    assert (delivery.channel, delivery.status) == ("onsite", "sent")
'''


@dataclass(frozen=True)
class Written:
    path: Path
    what: str


def new_journey(root: Path, name: str, trigger: str, package: str = "journeys") -> list[Written]:
    """Write a journey called `name` that starts on `trigger` into the project at `root`."""
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise ConfigurationError(
            f"journey name {name!r}: use lower_snake_case letters, digits and _ (e.g. win_back)"
        )
    if not _EVENT.fullmatch(trigger):
        raise ConfigurationError(f"--trigger {trigger!r}: give an event name such as order_placed")
    if not all(_NAME.fullmatch(part) for part in package.split(".")):
        raise ConfigurationError(
            f"--package {package!r}: a dotted module path such as journeys or shop.journeys"
        )
    step = f"{name}_message"
    values = {
        "name": name,
        "trigger": trigger,
        "step": step,
        "cls": "".join(part.capitalize() for part in name.split("_")),
        "title": name.replace("_", " ").capitalize(),
        "package": package,
    }
    folder = root / Path(*package.split("."))
    templates = folder / "templates" / name
    files: list[tuple[Path, str, str]] = [
        (folder / f"{name}.py", _MODULE.format(**values), "the journey"),
        (root / "tests" / f"test_{name}.py", _TEST.format(**values), "its test"),
    ]
    for lang in LANGUAGES:
        files += [
            (
                templates / f"{step}.email.{lang}.html",
                _EMAIL_HTML[lang].format(),
                f"email ({lang}): subject, html",
            ),
            (templates / f"{step}.email.{lang}.txt", _EMAIL_TEXT[lang].format(), f"email ({lang}): text"),
            (templates / f"{step}.onsite.{lang}.txt", _ONSITE[lang].format(), f"inbox ({lang}): title, body"),
        ]
    taken = [path for path, _, _ in files if path.exists()]
    if taken:
        raise ConfigurationError(
            f"not overwriting {', '.join(str(p.relative_to(root)) for p in taken)}: choose another name or move them"
        )
    written: list[Written] = []
    for part in [*reversed(folder.relative_to(root).parents), folder.relative_to(root)]:
        init = root / part / "__init__.py"
        if part != Path(".") and not init.exists():
            init.parent.mkdir(parents=True, exist_ok=True)
            init.write_text("")
            written.append(Written(init, "makes the folder a package"))
    for path, text, what in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(Written(path, what))
    return written
