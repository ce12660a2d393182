"""The journey registry: built-ins and the user's modules, journeys' own settings, mistakes at start."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from touchflow.errors import ConfigurationError
from touchflow.settings import Settings
from touchflow.workflows.registry import BUILTIN_JOURNEYS, RegistryError, load_registry

WIN_BACK = '''
from datetime import timedelta

from temporalio import activity

from touchflow.journeys import Journey, JourneyEvent, Stage, Step, journey


@activity.defn
async def score_customer(customer_id: str) -> int:
    return len(customer_id)


@journey(starts_on="order_placed", goals=("order_placed",), timings={"win_back_delay": "30d"})
class WinBack(Journey):
    """Brings a customer back a month after their last order."""

    win_back = Step(via=("email",), stage=Stage.RETENTION)

    async def plan(self, order: JourneyEvent) -> None:
        if await self.wait("win_back_delay"):
            await self.send(self.win_back, event=order)
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """A shop's project folder as the working directory; `write(module, source)` adds a module to it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)

    def write(module: str, source: str) -> None:
        path = tmp_path / Path(*module.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(tmp_path).parents:
            if parent != Path("."):
                (tmp_path / parent / "__init__.py").touch()
        path.write_text(textwrap.dedent(source))

    yield write
    for name in set(sys.modules) - before:
        del sys.modules[name]


def settings(**values: object) -> Settings:
    return Settings.model_validate(values)


def test_builtins_by_default_and_by_choice() -> None:
    assert list(load_registry(settings(), environ={})) == list(BUILTIN_JOURNEYS)
    assert list(load_registry(settings(builtin_journeys="welcome,loyalty"), environ={})) == [
        "welcome",
        "loyalty",
    ]
    assert list(load_registry(settings(builtin_journeys="none"), environ={})) == []
    with pytest.raises(RegistryError, match=r"no built-in journey 'welcom'.*choose from welcome"):
        load_registry(settings(builtin_journeys="welcom"), environ={})


def test_a_users_module_is_registered_beside_the_builtins(project: Callable[[str, str], None]) -> None:
    project("shop.journeys", WIN_BACK)
    registry = load_registry(settings(journeys="shop.journeys"), environ={})
    assert list(registry) == [*BUILTIN_JOURNEYS, "win_back"]
    assert [a.__name__ for a in registry.activities] == ["score_customer"]
    assert registry.timings_for("win_back") == {"win_back_delay": timedelta(days=30).total_seconds()}
    assert "order_placed" in registry.routed


def test_journey_settings_come_from_their_own_variables(project: Callable[[str, str], None]) -> None:
    project("shop.journeys", WIN_BACK)
    environ = {"TOUCHFLOW_WIN_BACK_DELAY": "20s", "TOUCHFLOW_CART_REMINDER_DELAY": "15m"}
    registry = load_registry(settings(journeys="shop.journeys"), environ=environ)
    win_back = registry.settings["win_back_delay"]
    assert (win_back.value, win_back.source) == (timedelta(seconds=20), "TOUCHFLOW_WIN_BACK_DELAY")
    assert registry.timings_for("abandoned_cart")["cart_reminder_delay"] == 15 * 60
    assert registry.settings["cart_second_reminder_delay"].source == "default"


def test_builtin_parameters_keep_their_variables_and_checks() -> None:
    registry = load_registry(
        settings(),
        environ={"TOUCHFLOW_LOYALTY_TIERS": "silver:100, gold:500", "TOUCHFLOW_COUPON_UNIT": "usd"},
    )
    assert registry.params_for("loyalty")["loyalty_tiers"] == {"silver": 100, "gold": 500}
    assert registry.params_for("post_purchase") == {"coupon_unit": "USD", "coupon_value": 10}
    with pytest.raises(RegistryError, match=r"TOUCHFLOW_LOYALTY_TIERS='gold'.*'name:value'"):
        load_registry(settings(), environ={"TOUCHFLOW_LOYALTY_TIERS": "gold"})
    with pytest.raises(RegistryError, match=r"TOUCHFLOW_COUPON_UNIT='euros'.*3-letter currency code"):
        load_registry(settings(), environ={"TOUCHFLOW_COUPON_UNIT": "euros"})
    with pytest.raises(RegistryError, match=r"TOUCHFLOW_CART_REMINDER_DELAY='soon'.*duration"):
        load_registry(settings(), environ={"TOUCHFLOW_CART_REMINDER_DELAY": "soon"})


def test_a_module_that_fails_to_import_stops_the_start(project: Callable[[str, str], None]) -> None:
    with pytest.raises(RegistryError, match=r"no module named 'shop.missing'"):
        load_registry(settings(journeys="shop.missing"), environ={})
    project("shop.broken", "import nothing_here\n")
    with pytest.raises(
        RegistryError, match=r"'shop.broken' failed to import: ModuleNotFoundError.*nothing_here"
    ):
        load_registry(settings(journeys="shop.broken"), environ={})
    project("shop.empty", "X = 1\n")
    with pytest.raises(RegistryError, match="defines no @journey class"):
        load_registry(settings(journeys="shop.empty"), environ={})


def test_two_journeys_with_one_name_stop_the_start(project: Callable[[str, str], None]) -> None:
    project("shop.one", WIN_BACK)
    project("shop.two", WIN_BACK.replace("a month", "two months"))
    with pytest.raises(
        RegistryError, match=r"two journeys are named 'win_back': shop.one.WinBack and shop.two"
    ):
        load_registry(settings(journeys="shop.one,shop.two"), environ={})


def test_one_setting_name_with_two_defaults_is_an_error(project: Callable[[str, str], None]) -> None:
    project("shop.one", WIN_BACK)
    project(
        "shop.two",
        WIN_BACK.replace("class WinBack", "class WinBackAgain").replace('"30d"', '"60d"'),
    )
    with pytest.raises(RegistryError, match="both declare 'win_back_delay' with different defaults"):
        load_registry(settings(journeys="shop.one,shop.two"), environ={})


def test_a_journey_setting_may_not_shadow_an_engine_setting(project: Callable[[str, str], None]) -> None:
    project("shop.one", WIN_BACK.replace("win_back_delay", "smtp_timeout"))
    with pytest.raises(RegistryError, match="'smtp_timeout' is already an engine setting"):
        load_registry(settings(journeys="shop.one"), environ={})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            'await self.wait("win_back_dealy")',
            r"self.wait\('win_back_dealy'\).*did you mean 'win_back_delay'",
        ),
        ('self.timing("nope")', r"self.timing\('nope'\) in WinBack .* names no declared timing"),
        ('await self.wait_for("x", timeout="later")', r"self.wait_for\('later'\)"),
        ('self.param("colour")', r"self.param\('colour'\).*params=\{'colour': <default>\}"),
    ],
)
def test_an_undeclared_setting_fails_when_the_class_is_defined(
    project: Callable[[str, str], None], call: str, message: str
) -> None:
    project("shop.typo", WIN_BACK.replace("await self.send(self.win_back, event=order)", call))
    with pytest.raises(ConfigurationError, match=message):
        load_registry(settings(journeys="shop.typo"), environ={})


def test_the_readme_lists_every_builtin_journey_setting_with_its_default() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("### Journey settings", 1)[1].split("\n## ", 1)[0]
    rows = {
        (cells[0].strip("` "), cells[1].strip("` "), cells[2].strip("` "))
        for cells in (line.strip("|").split("|") for line in table.splitlines() if line.startswith("| `"))
    }
    registry = load_registry(settings(), environ={})
    declared = {
        (setting.variable, setting.as_text(setting.default), journey)
        for setting in registry.settings.values()
        for journey in setting.journeys
    }
    assert rows == declared
