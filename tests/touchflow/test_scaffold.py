"""`touchflow new journey`: what it writes, and what it refuses. (tests/test_packaging.py runs its test.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from touchflow.cli import main


def test_writes_the_module_templates_per_language_and_a_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    main(["new", "journey", "win_back", "--trigger", "order_placed"])
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    templates = [
        f"journeys/templates/win_back/win_back_message.{channel}.{lang}.{ext}"
        for lang in ("en", "vi")
        for channel, ext in (("email", "html"), ("email", "txt"), ("onsite", "txt"))
    ]
    assert written == sorted(
        ["journeys/__init__.py", "journeys/win_back.py", "tests/test_win_back.py", *templates]
    )
    module = (tmp_path / "journeys" / "win_back.py").read_text()
    assert 'starts_on="order_placed"' in module
    assert '"win_back_delay": Timing("1d"' in module
    assert "TOUCHFLOW_JOURNEYS=journeys.win_back touchflow check" in capsys.readouterr().out


def test_never_overwrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    main(["new", "journey", "win_back", "--trigger", "order_placed"])
    with pytest.raises(SystemExit, match=r"not overwriting journeys/win_back\.py"):
        main(["new", "journey", "win_back", "--trigger", "order_placed"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["WinBack", "--trigger", "x"], "journey name 'WinBack': use lower_snake_case"),
        (["class", "--trigger", "x"], "journey name 'class'"),
        (["win_back", "--trigger", "order placed"], "--trigger 'order placed'"),
        (["win_back", "--trigger", "x", "--package", "shop-journeys"], "--package 'shop-journeys'"),
    ],
)
def test_refuses_names_python_or_the_router_could_not_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=message):
        main(["new", "journey", *args])
    assert list(tmp_path.iterdir()) == []


def test_into_a_package_of_the_shops_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    main(["new", "journey", "birthday", "--trigger", "birthday_reached", "--package", "shop.journeys"])
    assert (tmp_path / "shop" / "__init__.py").exists()
    assert (tmp_path / "shop" / "journeys" / "birthday.py").exists()
    assert (
        "from shop.journeys.birthday import Birthday" in (tmp_path / "tests" / "test_birthday.py").read_text()
    )
