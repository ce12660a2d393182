"""The web push channel's kept connections: pushes sent on kept connections against a connection per push, in
one run, over plain http and over TLS, to the tests' push service (`tests/support/push_service.py`: it checks
VAPID and decrypts every message) on loopback in a process of its own.

    .venv/bin/python -m bench.push_sessions [--pushes 2000] [--concurrency 20] [--rounds 2]

"A connection per push" is the same channel with a connector that closes each connection after its request
(`force_close`): what it cost before it kept connections, when each message had a ClientSession of its own.
Reported for each: pushes a second, and CPU per push in this process (the worker's side: encryption, VAPID
signing, the request) and in the push service's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import ssl
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import LOOPBACK, cpu_seconds, load, machine, self_signed
from tests.support.push_service import PushService
from touchflow.channels.base import Kept, OutboundMessage
from touchflow.channels.web_push import IDLE_LIMIT, WebPush
from touchflow.temporal import free_port
from touchflow.urls import HostPatterns
from touchflow.vapid import generate

DEVICES = 50


class _TlsPushService(PushService):
    @property
    def origin(self) -> str:
        return f"https://{self.host}:{self.port}"


def _serve(port: int, key: str, tls: tuple[Path, Path] | None, pipe: Connection) -> None:
    async def serve() -> None:
        service = (_TlsPushService if tls else PushService)(LOOPBACK, port, application_server_key=key)
        app = web.Application()
        app.router.add_post("/push/{token}", service._push)
        service.runner = web.AppRunner(app, access_log=None)
        await service.runner.setup()
        context = None
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
        await web.TCPSite(service.runner, LOOPBACK, port, ssl_context=context).start()
        pipe.send([service.subscribe().to_json() for _ in range(DEVICES)])
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, pipe.recv) == "count":
            pipe.send((len(service.received), len(service.refusals)))

    asyncio.run(serve())


async def measure(
    channel: WebPush, devices: list[dict[str, Any]], pushes: int, concurrency: int
) -> tuple[float, float]:
    pending = iter(range(pushes))

    async def lane() -> None:
        for n in pending:
            address = json.dumps(devices[n % len(devices)])
            content = {"title": "Giỏ hàng của bạn", "body": "Bạn vẫn đang phân vân? Giỏ hàng vẫn chờ bạn."}
            await channel.send(OutboundMessage(f"cart:c{n}:1:reminder_1", address, content))

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await channel.aclose()
    return pushes / elapsed, cpu / pushes * 1000


def channel_for(scheme: str, private_key: str, kept: bool) -> WebPush:
    hosts = HostPatterns.parse(LOOPBACK if scheme == "https" else f"http://{LOOPBACK}")
    channel = WebPush(
        private_key=private_key, subject="mailto:ops@shop.example", ttl=60, timeout=30, hosts=hosts
    )
    if not kept:

        def closing_each() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True),
                timeout=aiohttp.ClientTimeout(total=channel.timeout),
                auto_decompress=False,
            )

        channel._http = Kept(closing_each, aiohttp.ClientSession.close)
    return channel


async def one_round(
    round_: int, scheme: str, private_key: str, devices: list[dict[str, Any]], args: Any, server_pid: int
) -> None:
    rates = {}
    for mode, kept in (("a connection per push", False), ("kept", True)):
        spent = cpu_seconds(server_pid)
        rate, client_ms = await measure(
            channel_for(scheme, private_key, kept), devices, args.pushes, args.concurrency
        )
        server_ms = (cpu_seconds(server_pid) - spent) / args.pushes * 1000
        rates[mode] = rate
        print(
            f"round {round_} {scheme} {mode}: {rate:.0f}/s, CPU per push {client_ms:.2f} ms "
            f"client / {server_ms:.2f} ms push service"
        )
    ratio = rates["kept"] / rates["a connection per push"]
    print(f"round {round_} {scheme}: kept / a connection per push {ratio:.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20, help="pushes in flight")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {machine()}; load before: {load()}; kept connections idle up to {IDLE_LIMIT:.0f} s")
    keys = generate()
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = self_signed(Path(tmp))
        # aiohttp verifies with one default context made at import: it is told to trust the loopback's.
        aiohttp.connector._SSL_CONTEXT_VERIFIED.load_verify_locations(cert)
        for scheme, tls in (("http", None), ("https", (cert, key))):
            mine, theirs = multiprocessing.Pipe()
            port = free_port()
            server = multiprocessing.Process(
                target=_serve, args=(port, keys.public_key, tls, theirs), daemon=True
            )
            server.start()
            devices = mine.recv()
            try:
                for round_ in range(1, args.rounds + 1):
                    await one_round(round_, scheme, keys.private_key, devices, args, server.pid or 0)
                mine.send("count")
                received, refused = mine.recv()
                expected = 2 * args.rounds * args.pushes
                assert (received, refused) == (expected, 0), (
                    f"{received} of {expected} taken, {refused} refused"
                )
            finally:
                mine.send("stop")
                server.join(10)
    print(f"load after: {load()}")


if __name__ == "__main__":
    asyncio.run(main())
