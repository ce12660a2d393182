"""`touchflow dev` end to end: the real Temporal dev server, worker and API as one process tree.

Every port is picked here, so a developer's own `touchflow dev` on 7233/8233/8000 is left alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY, SECRET
from touchflow.temporal import free_port, temporal_cli
from touchflow.testing import SmtpInbox, eventually

pytestmark = pytest.mark.e2e


@dataclass
class DevStack:
    process: subprocess.Popen[str]
    api_url: str
    temporal_address: str
    ui_port: int
    worker_probe_url: str
    home: Path
    log: Path


async def start_dev(
    tmp_path: Path, env_extra: dict[str, str], *, python: str = sys.executable, cwd: Path | None = None
) -> DevStack:
    """`touchflow dev` on free ports, run by `python` (another environment's, for an installed wheel)."""
    ports = {name: free_port() for name in ("temporal", "ui", "api", "smtp")}
    probe_port = free_port()
    home = tmp_path / ".touchflow"
    env = {key: value for key, value in os.environ.items() if not key.startswith("TOUCHFLOW_")}
    env |= {"TOUCHFLOW_HOME": str(home), "TOUCHFLOW_WORKER_METRICS_PORT": str(probe_port), **env_extra}
    log = tmp_path / "dev.log"
    command = [python, "-m", "touchflow.cli", "dev"]
    command += [f"--{name}-port={port}" for name, port in ports.items()]
    process = subprocess.Popen(
        command, env=env, cwd=cwd or tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True
    )
    stack = DevStack(
        process=process,
        api_url=f"http://127.0.0.1:{ports['api']}",
        temporal_address=f"127.0.0.1:{ports['temporal']}",
        ui_port=ports["ui"],
        worker_probe_url=f"http://127.0.0.1:{probe_port}",
        home=home,
        log=log,
    )
    try:
        await eventually(
            lambda: process.poll() is not None or "Ctrl-C stops everything" in log.read_text(),
            timeout=60,
            what="touchflow dev to come up",
        )
    except AssertionError:
        stop_dev(stack)
        raise
    if process.poll() is not None:
        raise AssertionError(f"touchflow dev exited early:\n{log.read_text()}")
    return stack


def stop_dev(stack: DevStack) -> int:
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGINT)
        try:
            return stack.process.wait(30)
        except subprocess.TimeoutExpired:
            stack.process.kill()
            stack.process.wait()
            raise
    return stack.process.returncode


@pytest.fixture
async def dev_with_smtp(tmp_path: Path, smtp: SmtpInbox) -> AsyncIterator[DevStack]:
    stack = await start_dev(
        tmp_path,
        {
            "TOUCHFLOW_SMTP_HOST": smtp.host,
            "TOUCHFLOW_SMTP_PORT": str(smtp.port),
            "TOUCHFLOW_API_KEYS": API_KEY,
            "TOUCHFLOW_SECRET_KEY": SECRET,
            "TOUCHFLOW_PUBLIC_URL": "https://shop.example",
            "TOUCHFLOW_BRAND_NAME": "Cửa hàng Hoa",
        },
    )
    yield stack
    stop_dev(stack)


def processes_with_env(entry: str) -> list[int]:
    """Live processes whose environment holds `entry` (Linux /proc)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if entry.encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def workflow_list(address: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [temporal_cli(), "workflow", "list", "--address", address, "--output", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    runs: list[dict[str, Any]] = json.loads(out)
    return runs


async def test_signup_to_email_through_the_dev_stack(dev_with_smtp: DevStack, smtp: SmtpInbox) -> None:
    stack = dev_with_smtp
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=10) as client:
        customer = {
            "id": "cus_42",
            "email": "lan@example.com",
            "locale": "en",
            "attributes": {"first_name": "Lan"},
        }
        assert (await client.post("/v1/customers", json=customer)).status_code == 201
        event = {"id": "evt_1", "customer_id": "cus_42", "name": "signed_up"}
        assert (await client.post("/v1/events", json=event)).json()["status"] == "accepted"

        [mail] = await smtp.wait_for(1, timeout=30)
        assert smtp.envelopes[0][1] == ["lan@example.com"]
        assert mail["To"] == "lan@example.com"
        assert mail["Subject"] == "Welcome to Cửa hàng Hoa, Lan!"
        assert mail["Message-ID"].endswith("@touchflow.local>")
        assert mail["Date"]
        assert mail["List-Unsubscribe"].startswith("<https://shop.example/unsubscribe/")
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        text = mail.get_body(("plain",)).get_content()
        html = mail.get_body(("html",)).get_content()
        assert "Welcome, Lan!" in text and "Thanks for joining Cửa hàng Hoa" in text
        assert "<h1" in html and "Welcome, Lan!" in html

        runs = workflow_list(stack.temporal_address)
        assert [(r["execution"]["workflowId"], r["type"]["name"]) for r in runs] == [
            ("welcome:cus_42", "welcome")
        ]

        # The welcome series also puts a message in the onsite inbox, right after the email.
        steps: list[tuple[str, str, str]] = []

        async def both_steps() -> bool:
            profile = (await client.get("/v1/customers/cus_42")).json()
            steps[:] = sorted((d["step"], d["status"], d["channel"]) for d in profile["deliveries"])
            return len(steps) >= 2

        await eventually(both_steps, timeout=30, what="the welcome's two steps")
        assert steps == [("welcome", "sent", "email"), ("welcome_inbox", "sent", "onsite")]
    assert stop_dev(stack) == 0


async def test_dev_keeps_mail_in_its_own_inbox_and_stops_every_child(tmp_path: Path) -> None:
    stack = await start_dev(tmp_path, {"TOUCHFLOW_API_KEYS": API_KEY, "TOUCHFLOW_SECRET_KEY": SECRET})
    try:
        text = stack.log.read_text()
        assert f"http://localhost:{stack.ui_port}" in text and API_KEY in text
        # Both metrics endpoints are printed, and the worker's probe port answers for the worker process.
        assert f"{stack.api_url.replace('127.0.0.1', 'localhost')}/metrics" in text
        assert f"{stack.worker_probe_url}/metrics" in text
        assert f"{stack.api_url.replace('127.0.0.1', 'localhost')}/dashboard" in text
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=10) as client:
            await client.post("/v1/customers", json={"id": "c1", "email": "c1@example.com", "locale": "vi"})
            await client.post("/v1/events", json={"id": "e1", "customer_id": "c1", "name": "signed_up"})
            mail_dir = stack.home / "mail"
            await eventually(lambda: any(mail_dir.glob("*.eml")), timeout=30, what="the welcome mail")
            [eml] = list(mail_dir.glob("*.eml"))
            page = (await client.get("/dev/mail")).text
            assert "Chào mừng bạn đến với touchflow" in page and eml.name in page
            shown = await client.get(f"/dev/mail/{eml.name}")
            assert shown.status_code == 200 and "Xin chào" in shown.text
            # web push works out of the box: dev made a VAPID key of its own
            vapid = await client.get("/v1/push/vapid-public-key")
            assert vapid.status_code == 200 and len(vapid.json()["public_key"]) == 87
            ready = httpx.get(f"{stack.worker_probe_url}/readyz", timeout=10)
            assert ready.status_code == 200 and ready.json()["worker"] == "ok", ready.text
            assert "touchflow_deliveries_total{" in httpx.get(f"{stack.worker_probe_url}/metrics").text
            assert (await client.get("/readyz")).json()["status"] == "ready"
            # The dashboard's links to runs go to this dev server's own Temporal UI.
            journeys = (await client.get("/dashboard/journeys/welcome")).text
            assert f"http://localhost:{stack.ui_port}/namespaces/" in journeys
    finally:
        assert stop_dev(stack) == 0
    # Temporal's dev server was a child: after Ctrl-C nothing answers on its port.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{stack.ui_port}", timeout=2)
    # ... and so was the worker process: none is left with this stack's settings.
    assert processes_with_env(f"TOUCHFLOW_HOME={stack.home}") == []
    assert (stack.home / "temporal.db").exists()
