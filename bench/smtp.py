"""An SMTP server (aiosmtpd on loopback) in a process of its own, so it shares no interpreter with what is
measured: it counts messages and stamps each address's first arrival (wall clock, `time.time()`)."""

from __future__ import annotations

import multiprocessing
import ssl
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class _Sink:
    def __init__(self) -> None:
        self.total = 0
        self.first: dict[str, float] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.time()
        self.total += len(envelope.rcpt_tos)
        for rcpt in envelope.rcpt_tos:
            self.first.setdefault(rcpt, now)
        return "250 OK"


def _serve(port: int, pipe: Connection, tls: tuple[Path, Path] | None) -> None:
    sink = _Sink()
    context = None
    if tls is not None:  # STARTTLS offered, as a provider's submission port does
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
    controller = Controller(sink, hostname="127.0.0.1", port=port, tls_context=context)
    controller.start()
    pipe.send("ready")
    while True:
        command = pipe.recv()
        if command == "count":
            pipe.send((sink.total, len(sink.first)))
        elif command == "arrivals":
            pipe.send(dict(sink.first))
        elif command == "reset":
            sink.total = 0
            sink.first.clear()
            pipe.send("ok")
        else:
            controller.stop()
            pipe.send("stopped")
            return


class SmtpServer:
    """`count()` → (messages, distinct addresses); `arrivals()` → address → first arrival; `stop()`.
    `tls` (certificate and key files): the server offers STARTTLS with them."""

    def __init__(self, port: int, tls: tuple[Path, Path] | None = None) -> None:
        self.port = port
        self._pipe, theirs = multiprocessing.Pipe()
        self._process = multiprocessing.Process(target=_serve, args=(port, theirs, tls), daemon=True)
        self._process.start()
        if self._pipe.recv() != "ready":
            raise RuntimeError("the SMTP server did not start")

    @property
    def pid(self) -> int:
        return self._process.pid or 0

    def _ask(self, command: str) -> Any:
        self._pipe.send(command)
        return self._pipe.recv()

    def count(self) -> tuple[int, int]:
        total, distinct = self._ask("count")
        return int(total), int(distinct)

    def arrivals(self) -> dict[str, float]:
        arrivals: dict[str, float] = self._ask("arrivals")
        return arrivals

    def reset(self) -> None:
        self._ask("reset")

    def stop(self) -> None:
        if self._process.is_alive():
            self._ask("stop")
            self._process.join(10)
