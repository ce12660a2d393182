"""touchflow as an installed engine: the wheel, in a fresh environment, beside a shop's own project.

The shop has packages named `api` and `workflows` of its own (as most FastAPI backends and Temporal's samples
do); touchflow claims neither. The shop scaffolds a journey with the installed CLI, checks it, runs its test
with touchflow's testing kit, and runs it under `touchflow dev` beside the built-in journeys.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_KEY, SECRET
from tests.touchflow.test_dev import start_dev, stop_dev
from touchflow.testing import SmtpInbox, eventually

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parents[1]


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def search_path(installed: Path) -> str:
    """The fresh environment's scripts first, then the test environment's (the Temporal binaries, which a
    real install of the dependencies would put beside touchflow's own script)."""
    return f"{installed.parent}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtual environment with touchflow installed from its wheel; returns its python.

    The wheel goes in without its dependencies, which the environment reads from the test environment's
    site-packages by a path entry: touchflow itself (an editable install there) is not visible to it.
    """
    tmp = tmp_path_factory.mktemp("wheel")
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        tmp,
        ROOT,
        cwd=tmp,
    )
    [wheel] = tmp.glob("touchflow-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp)
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp).strip()
    (Path(site) / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield python


@pytest.fixture(scope="module")
def shop(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shop's project with its own `api` and `workflows` packages and a journey scaffolded by touchflow."""
    root = tmp_path_factory.mktemp("shop")
    for package, text in {
        "api": 'SHOP = "Hoa"\n',
        "workflows": "def shop_workflow() -> str:\n    return 'own'\n",
    }.items():
        (root / package).mkdir()
        (root / package / "__init__.py").write_text(text)
    run(installed.parent / "touchflow", "new", "journey", "win_back", "--trigger", "order_placed", cwd=root)
    return root


def test_the_wheel_claims_no_top_level_names_and_brings_its_templates(installed: Path, shop: Path) -> None:
    probe = textwrap.dedent(
        """
        import api, workflows, touchflow, touchflow.api.main, touchflow.workflows.base
        from importlib.resources import files
        print(api.SHOP, workflows.shop_workflow())
        print(touchflow.__file__)
        print(files("touchflow.templates").joinpath("welcome/welcome.email.vi.html").is_file())
        print(files("touchflow.api").joinpath("dashboard/journey.html").is_file())
        """
    )
    shop_api, where, templates, dashboard = run(installed, "-c", probe, cwd=shop).splitlines()
    assert shop_api == "Hoa own"  # the shop's own packages, not shadowed
    assert str(installed.parents[1]) in where  # touchflow from the wheel, not the checkout
    assert templates == "True"
    assert dashboard == "True"  # the dashboard's pages are package data too


def test_the_shop_scaffolds_checks_and_tests_its_journey(installed: Path, shop: Path) -> None:
    env = {"PATH": search_path(installed), "HOME": str(shop), "TOUCHFLOW_JOURNEYS": "journeys.win_back"}
    listed = run(installed.parent / "touchflow", "journeys", cwd=shop, env=env)
    assert "win_back: Win back: one message a day after order_placed.   [journeys.win_back]" in listed
    assert "TOUCHFLOW_WIN_BACK_DELAY             1d" in listed
    assert "welcome:" in listed  # the built-ins stay on
    checked = run(installed.parent / "touchflow", "check", cwd=shop, env=env)
    assert "touchflow check: 5 journeys, 14 steps: no problems" in checked
    tested = run(installed, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=shop, env=env)
    assert "2 passed" in tested


async def test_the_shop_runs_its_journey_under_touchflow_dev(
    installed: Path, shop: Path, smtp: SmtpInbox, tmp_path: Path
) -> None:
    stack = await start_dev(
        tmp_path,
        {
            "TOUCHFLOW_JOURNEYS": "journeys.win_back",
            "TOUCHFLOW_WIN_BACK_DELAY": "1s",
            "TOUCHFLOW_SMTP_HOST": smtp.host,
            "TOUCHFLOW_SMTP_PORT": str(smtp.port),
            "TOUCHFLOW_API_KEYS": API_KEY,
            "TOUCHFLOW_SECRET_KEY": SECRET,
            "PATH": search_path(installed),
        },
        python=str(installed),
        cwd=shop,
    )
    try:
        async with httpx.AsyncClient(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as api:
            customer = {
                "id": "c1",
                "email": "lan@example.com",
                "locale": "vi",
                "attributes": {"first_name": "Lan"},
            }
            assert (await api.post("/v1/customers", json=customer)).status_code == 201
            subjects = lambda: {str(m["Subject"]) for m in smtp.messages}  # noqa: E731
            signup = {"id": "e1", "customer_id": "c1", "name": "signed_up"}
            assert (await api.post("/v1/events", json=signup)).json()["status"] == "accepted"
            welcome = "Chào mừng bạn đến với touchflow, Lan!"
            await eventually(lambda: welcome in subjects(), 60, "the built-in welcome email")
            order = {
                "id": "e2",
                "customer_id": "c1",
                "name": "order_placed",
                "properties": {"order_id": "o1"},
            }
            assert (await api.post("/v1/events", json=order)).json()["status"] == "accepted"
            await eventually(
                lambda: "Lan, có điều mới dành cho bạn" in subjects(), 60, "the shop's win-back email"
            )
            funnel = (await api.get("/v1/journeys/win_back/funnel")).json()
            assert funnel["entered"] == 1

        # The deploy gate: the runs on the server replay on this code, and fail on an incompatible change.
        env = {
            "PATH": search_path(installed),
            "TOUCHFLOW_TEMPORAL_ADDRESS": stack.temporal_address,
            "TOUCHFLOW_JOURNEYS": "journeys.win_back",
        }
        replay = [installed.parent / "touchflow", "replay", "--journey", "win_back"]
        assert "win_back: 1 of 1 run(s) from" in run(*replay, cwd=shop, env=env)
        run(*replay, "--save", tmp_path / "histories", cwd=shop, env=env)
        changed = tmp_path / "changed"
        shutil.copytree(shop, changed)
        module = changed / "journeys" / "win_back.py"
        module.write_text(module.read_text().replace('if await self.wait("win_back_delay"):', "if True:"))
        offline = subprocess.run(
            [*map(str, replay), "--histories", str(tmp_path / "histories")],
            cwd=changed,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert offline.returncode == 1, offline.stdout + offline.stderr
        assert "FAIL win_back:c1: " in offline.stdout
        assert "win_back: 0 of 1 run(s)" in offline.stdout
    finally:
        stop_dev(stack)
