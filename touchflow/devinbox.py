"""The dev SMTP inbox: an aiosmtpd server that keeps every message as an .eml file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session


class SaveToFolder:
    """aiosmtpd handler: one file per message, named so the newest sorts last."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._count = 0

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self._count += 1
        name = f"{time.time_ns()}-{self._count:06d}.eml"
        content = envelope.original_content or envelope.content or b""
        data = content if isinstance(content, bytes) else content.encode()
        (self.folder / name).write_bytes(data)
        return "250 Message accepted for delivery"


def start_inbox(folder: Path, host: str, port: int) -> Controller:
    controller = Controller(SaveToFolder(folder), hostname=host, port=port)
    controller.start()
    return controller
