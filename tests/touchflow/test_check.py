"""`touchflow check`: each mistake a journey or its templates can hold, found before anything starts; the
built-in journeys check clean; `worker` and `dev` refuse to start on an error."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from touchflow.check import CheckFailed, Problem, check
from touchflow.cli import _checked_registry, _run_worker, main
from touchflow.settings import Settings, get_settings
from touchflow.testing import TEST_SECRET
from touchflow.workflows.registry import load_registry

JOURNEY = '''
from touchflow.journeys import Journey, JourneyEvent, Stage, Step, journey


@journey(starts_on="order_placed", {ends})
class WinBack(Journey):
    """Brings a customer back after an order."""

{steps}

    async def plan(self, order: JourneyEvent) -> None:
        await self.send(self.win_back, event=order)
'''
WIN_BACK = '    win_back = Step(via=("email",), stage=Stage.RETENTION)'
REMINDER = '    reminder = Step(via=("email",), stage=Stage.RETENTION)'
HTML = """{% extends "_layouts/email.html" %}
{% block subject %}We miss you, {{ customer.first_name }}{% endblock %}
{% block content %}
<p>Your last order was {{ event.order_id }} ({{ event.total | money(event.currency) }}).</p>
{% endblock %}
"""
TEXT = "Your last order was {{ event.order_id }}.\n\n--\n{{ brand }} · Unsubscribe: {{ unsubscribe_url }}\n"
FOLDER = Path("shop/templates/win_back")
EMIAL = (
    "unknown channel 'emial' (did you mean 'email'?); channels: console, email, onsite, web_push, zalo_zns"
)


@dataclass
class Shop:
    """A shop's project as the working directory: `shop/journeys.py` and its `shop/templates/win_back/`."""

    root: Path

    def journey(self, steps: str = WIN_BACK, ends: str = 'goals=("order_placed",)') -> None:
        source = textwrap.dedent(JOURNEY).format(ends=ends, steps=steps)
        (self.root / "shop" / "journeys.py").write_text(source)

    def template(self, name: str, text: str) -> None:
        (self.root / FOLDER / name).write_text(text)

    def email(self, step: str = "win_back", locale: str = "en") -> None:
        self.template(f"{step}.email.{locale}.html", HTML)
        self.template(f"{step}.email.{locale}.txt", TEXT)

    def check(self, **settings: object) -> list[Problem]:
        values = {"journeys": "shop.journeys", "builtin_journeys": "none", **settings}
        config = Settings.model_validate(values)
        return check(load_registry(config, environ={}), config)


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shop]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [name for name in os.environ if name.startswith("TOUCHFLOW_")]:
        monkeypatch.delenv(name)
    (tmp_path / FOLDER).mkdir(parents=True)
    (tmp_path / "shop" / "__init__.py").touch()
    before = set(sys.modules)
    get_settings.cache_clear()
    yield Shop(tmp_path)
    get_settings.cache_clear()
    for name in set(sys.modules) - before:
        del sys.modules[name]


@pytest.fixture
def cli(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str]]:
    """`touchflow check` with TOUCHFLOW_JOURNEYS=shop.journeys: (exit code, what it printed)."""
    monkeypatch.setenv("TOUCHFLOW_JOURNEYS", "shop.journeys")

    def run(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
        get_settings.cache_clear()
        try:
            main(["check", *args])
        except SystemExit as exc:
            return int(exc.code or 0), capsys.readouterr().out
        return 0, capsys.readouterr().out

    return run


def errors(problems: list[Problem]) -> list[Problem]:
    return [problem for problem in problems if problem.level == "error"]


# -- the built-ins, and a journey without mistakes ----------------------------------------------------------


def test_the_builtin_journeys_check_clean(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("TOUCHFLOW_JOURNEYS", "TOUCHFLOW_BUILTIN_JOURNEYS", "TOUCHFLOW_TEMPLATES_DIR"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    main(["check"])  # no SystemExit: exit status 0
    assert capsys.readouterr().out == "touchflow check: 4 journeys, 13 steps: no problems\n"
    main(["check", "--json"])
    assert json.loads(capsys.readouterr().out) == {"ok": True, "errors": 0, "warnings": 0, "problems": []}
    get_settings.cache_clear()


def test_a_journey_with_its_templates_checks_clean(shop: Shop) -> None:
    shop.journey()
    shop.email()
    assert shop.check() == []


# -- channels -----------------------------------------------------------------------------------------------


def test_an_unknown_channel_is_an_error_with_a_did_you_mean(
    shop: Shop, cli: Callable[..., tuple[int, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    shop.journey(steps=WIN_BACK.replace('"email"', '"emial"'))
    shop.email()
    [problem] = shop.check()
    assert (problem.level, problem.journey, problem.step, problem.file) == (
        "error",
        "win_back",
        "win_back",
        "shop/journeys.py",
    )
    assert problem.message == EMIAL
    code, out = cli(capsys=capsys)
    assert code == 1
    assert (
        f"error: journey win_back, step win_back: {EMIAL} (in shop/journeys.py); "
        "fix: write 'email' in the step's via\n"
    ) in out
    assert out.splitlines()[-1].startswith("touchflow check: 1 error, 0 warnings")


def test_a_step_without_channels_is_an_error(shop: Shop) -> None:
    shop.journey(steps=WIN_BACK.replace('("email",)', "()"))
    [problem] = shop.check()
    assert problem.level == "error"
    assert "the step has no channels" in problem.message


def test_a_journey_without_steps_is_a_warning(shop: Shop) -> None:
    shop.journey(steps="    pass")  # its plan would fail on self.win_back: that is for a run to find
    [problem] = shop.check()
    assert (problem.level, problem.journey, problem.step) == ("warning", "win_back", None)
    assert "declares no Step" in problem.message


# -- templates ----------------------------------------------------------------------------------------------


def test_an_email_without_its_text_file_is_an_error_naming_the_file(shop: Shop) -> None:
    shop.journey()
    shop.template("win_back.email.en.html", HTML)
    [problem] = shop.check()
    assert problem.level == "error"
    assert problem.file == "shop/templates/win_back/win_back.email.en.txt"
    assert problem.message == (
        "email needs a plain-text part: there is no shop/templates/win_back/win_back.email.en.txt"
    )
    assert problem.fix == "add shop/templates/win_back/win_back.email.en.txt"


def test_an_email_without_a_subject_block_is_an_error(shop: Shop) -> None:
    shop.journey()
    shop.email()
    shop.template("win_back.email.en.html", HTML.replace("block subject", "block heading"))
    [problem] = shop.check()
    assert problem.level == "error"
    assert problem.message.startswith("email needs a 'subject' part:")
    assert "defines no {% block subject %}" in problem.message
    assert "add {% block subject %}...{% endblock %} to shop/templates/win_back/" in problem.fix


def test_the_default_language_missing_is_an_error(shop: Shop) -> None:
    shop.journey()
    shop.email(locale="vi")  # nothing to fall back to for an en (or any other) customer
    [problem] = shop.check()
    assert problem.level == "error"
    assert problem.message.startswith("no 'en' template for email")
    assert problem.fix == (
        "add shop/templates/win_back/win_back.email.en.html and shop/templates/win_back/win_back.email.en.txt"
    )


def test_a_template_that_does_not_compile_is_an_error_with_file_and_line(shop: Shop) -> None:
    shop.journey()
    shop.email()
    shop.template("win_back.email.en.txt", "Hello\n{{ customer.first_name }\n\n--\n{{ brand }}\n")
    [problem] = shop.check()
    assert problem.level == "error"
    assert problem.message.startswith("template does not compile:")
    assert (problem.file, problem.line) == ("shop/templates/win_back/win_back.email.en.txt", 2)
    assert "(in shop/templates/win_back/win_back.email.en.txt:2)" in problem.as_line()


def test_a_template_that_fails_to_render_is_an_error_with_file_and_line(shop: Shop) -> None:
    shop.journey()
    shop.email()
    shop.template("win_back.email.en.txt", "Hello\n{{ custmer.first_name }}\n")  # a typo: no such variable
    [problem] = shop.check()
    assert problem.level == "error"
    assert problem.message == "template fails to render: UndefinedError: 'custmer' is undefined"
    assert (problem.file, problem.line) == ("shop/templates/win_back/win_back.email.en.txt", 2)


def test_event_items_is_the_mappings_method_and_the_fix_says_so(shop: Shop) -> None:
    shop.journey()
    shop.email()
    shop.template("win_back.email.en.txt", "{{ event.items | length }} items\n")
    [problem] = shop.check()
    assert problem.message.startswith("template fails to render: TypeError:")
    assert problem.fix.startswith(
        'event.items, .keys, .values and .get are the mapping\'s methods: write event.get("items", [])'
    )


def test_a_template_may_use_event_properties_the_sample_does_not_know(shop: Shop) -> None:
    shop.journey()
    shop.email()
    shop.template(
        "win_back.email.en.txt",
        "{{ event.products | length }} items, {{ (event.total * 1.1) | money(event.currency) }}, "
        "{{ data.points | number(locale) }} points, {{ event.code[:4] }}, "
        "{{ customer.attributes.tier.name }}\n",
    )
    assert shop.check() == []


def test_a_language_missing_for_one_step_only_is_a_warning(
    shop: Shop, cli: Callable[..., tuple[int, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    shop.journey(steps=f"{WIN_BACK}\n{REMINDER}")
    shop.email("win_back", "en")
    shop.email("win_back", "vi")
    shop.email("reminder", "en")
    [problem] = shop.check()
    assert (problem.level, problem.journey, problem.step) == ("warning", "win_back", "reminder")
    assert problem.message == "no 'vi' template for email; customers with locale vi get the en one"
    code, out = cli(capsys=capsys)
    assert code == 0
    assert "warning: journey win_back, step reminder: no 'vi' template for email" in out
    assert out.splitlines()[-1].startswith("touchflow check: 0 errors, 1 warning")


def test_a_zns_template_needs_a_template_id_block(shop: Shop) -> None:
    shop.journey(steps=WIN_BACK.replace('"email"', '"zalo_zns"'))
    shop.template(
        "win_back.zalo_zns.en.txt", "{% block param_name %}{{ customer.first_name }}{% endblock %}\n"
    )
    [problem] = shop.check()
    assert problem.level == "error"
    assert "zalo_zns needs a 'template_id' part" in problem.message


def test_a_zns_template_id_left_unset_is_a_warning_once_zalo_is_configured(shop: Shop) -> None:
    shop.journey(steps=WIN_BACK.replace('"email"', '"zalo_zns"'))
    shop.template("win_back.zalo_zns.en.txt", "{% block template_id %}{{ zalo_template_id }}{% endblock %}\n")
    shop.template("win_back.zalo_zns.vi.txt", "{% block template_id %}{{ zalo_template_id }}{% endblock %}\n")
    assert shop.check() == []  # Zalo is off: the channel falls through, the id does not matter
    zalo = {"zalo_app_id": "app", "zalo_secret_key": "secret", "zalo_refresh_token": "token"}
    [problem] = shop.check(**zalo)  # once for the step, not once per language
    assert problem.level == "warning"
    assert problem.message == "zalo_zns step win_back has no template id"
    assert problem.fix.startswith("set TOUCHFLOW_ZALO_TEMPLATE_IDS=win_back.win_back=<id>")
    assert shop.check(**zalo, zalo_template_ids="win_back.win_back=231245") == []


def test_every_variant_of_an_experiment_is_rendered(shop: Shop) -> None:
    shop.journey(steps=WIN_BACK.replace("stage=", 'experiment="copy", stage='))
    shop.email()
    shop.template("win_back.email.en.txt", '{% if variant == "b" %}{{ nope }}{% endif %}\n')
    [problem] = shop.check()
    assert problem.message == "template fails to render (variant 'b'): UndefinedError: 'nope' is undefined"


# -- events and settings ------------------------------------------------------------------------------------


def test_a_trigger_that_is_also_an_exit_is_an_error_that_says_what_was_meant(shop: Shop) -> None:
    shop.journey(ends='ends_on=("order_placed",)')
    shop.email()
    [problem] = shop.check()
    assert (problem.level, problem.journey, problem.step) == ("error", "win_back", None)
    assert problem.message == "'order_placed' both starts and ends the journey"
    assert problem.fix == (
        "to count a later 'order_placed' as converted, list it in goals=(...); "
        "to restart the wait on a newer one, use self.wait(..., restart_on=('order_placed',))"
    )


def test_a_trigger_that_is_also_a_goal_is_fine(shop: Shop) -> None:
    shop.journey(ends='goals=("order_placed",)')
    shop.email()
    assert shop.check() == []


def test_a_setting_that_does_not_parse_is_one_error_line_not_a_traceback(
    shop: Shop,
    cli: Callable[..., tuple[int, str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shop.journey()
    shop.email()
    monkeypatch.setenv("TOUCHFLOW_CART_REMINDER_DELAY", "soon")
    code, out = cli(capsys=capsys)
    assert code == 1
    assert out.splitlines() == [
        "error: TOUCHFLOW_CART_REMINDER_DELAY='soon': Input should be a valid timedelta, invalid digit in "
        "duration (expected a duration such as 30s, 15m, 1h, 2d)",
        "touchflow check: 1 error, 0 warnings (the journeys could not be loaded)",
    ]


def test_json_lists_the_problems_for_ci(
    shop: Shop, cli: Callable[..., tuple[int, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    shop.journey()
    shop.template("win_back.email.en.html", HTML)
    code, out = cli("--json", capsys=capsys)
    report = json.loads(out)
    assert code == 1
    assert (report["ok"], report["errors"], report["warnings"]) == (False, 1, 0)
    assert report["problems"][0] | {"message": "", "fix": ""} == {
        "level": "error",
        "journey": "win_back",
        "step": "win_back",
        "message": "",
        "fix": "",
        "file": "shop/templates/win_back/win_back.email.en.txt",
        "line": None,
    }


# -- at start -----------------------------------------------------------------------------------------------


def test_the_worker_refuses_to_start_on_an_error(
    shop: Shop, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shop.journey(steps=WIN_BACK.replace('"email"', '"emial"'))
    shop.email()

    async def no_temporal(*args: object) -> None:
        raise AssertionError("the worker connected to Temporal")

    monkeypatch.setattr("touchflow.temporal.connect", no_temporal)
    settings = Settings.model_validate({"journeys": "shop.journeys", "secret_key": TEST_SECRET})
    with pytest.raises(CheckFailed) as failed:
        asyncio.run(_run_worker(settings))
    assert [problem.message for problem in errors(failed.value.problems)] == [EMIAL]
    assert "1 error in the journeys; not starting:\n  error: journey win_back, step win_back: unknown" in str(
        failed.value
    )

    monkeypatch.setenv("TOUCHFLOW_JOURNEYS", "shop.journeys")
    monkeypatch.setenv("TOUCHFLOW_SECRET_KEY", TEST_SECRET)
    get_settings.cache_clear()
    with pytest.raises(SystemExit) as exited:
        main(["worker"])
    assert "touchflow: 1 error in the journeys; not starting" in str(exited.value.code)
    assert "unknown channel 'emial'" in str(exited.value.code)


def test_dev_refuses_to_start_on_an_error_before_starting_anything(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop.journey(ends='ends_on=("order_placed",)')
    shop.email()

    async def no_server(*args: object) -> None:
        raise AssertionError("dev started the Temporal dev server")

    monkeypatch.setattr("touchflow.temporal.DevServer.start", no_server)
    monkeypatch.setenv("TOUCHFLOW_JOURNEYS", "shop.journeys")
    get_settings.cache_clear()
    with pytest.raises(SystemExit) as exited:
        main(["dev"])
    assert "'order_placed' both starts and ends the journey" in str(exited.value.code)
    assert not (shop.root / ".touchflow").exists()


def test_warnings_are_logged_and_the_worker_goes_on(shop: Shop, caplog: pytest.LogCaptureFixture) -> None:
    shop.journey(steps=f"{WIN_BACK}\n{REMINDER}")
    shop.email("win_back", "en")
    shop.email("win_back", "vi")
    shop.email("reminder", "en")
    with caplog.at_level(logging.WARNING, logger="touchflow"):
        registry = _checked_registry(Settings.model_validate({"journeys": "shop.journeys"}))
    assert "win_back" in registry
    assert "warning: journey win_back, step reminder: no 'vi' template for email" in caplog.text
