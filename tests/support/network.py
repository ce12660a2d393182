"""A guard for tests of addresses touchflow must refuse: every name lookup and connection attempt is recorded
and fails, so such a test sends no traffic anywhere, even while the code under test is wrong."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class NetworkGuard:
    attempts: list[str] = field(default_factory=list)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> NetworkGuard:
    guard = NetworkGuard()

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        guard.attempts.append(f"resolve {host}")
        raise OSError(f"test guard: no name lookups ({host})")

    def connect(self: socket.socket, address: Any) -> Any:
        guard.attempts.append(f"connect {address}")
        raise OSError(f"test guard: no connections ({address})")

    # asyncio and aiohttp resolve through socket.getaddrinfo and connect through socket.connect.
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    return guard
