"""The email channel's SMTP sessions: messages sent on sessions kept open against a session per message, in
one run, on plain SMTP and with STARTTLS, to an SMTP server (aiosmtpd) on loopback in a process of its own.

    .venv/bin/python -m bench.smtp_sessions [--messages 3000] [--concurrency 20] [--rounds 2]

"A session per message" is the same channel with `MESSAGES_PER_SESSION = 1` (what it did before it kept
sessions: each message connects, reads the greeting, says EHLO, with STARTTLS upgrades and says EHLO again,
sends, and QUITs). Reported for each: messages a second, and CPU per message in this process (the worker's
side) and in the server's (the provider's side). On loopback a round trip costs next to nothing; to a
provider across a network, each of the round trips a kept session saves costs the network's round-trip time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from bench.common import LOOPBACK, cpu_seconds, load, machine, self_signed
from bench.smtp import SmtpServer
from touchflow.channels import email as email_channel
from touchflow.channels.base import OutboundMessage
from touchflow.channels.email import Email
from touchflow.temporal import free_port

# About the size of the welcome email as rendered (text and HTML, Vietnamese).
_TEXT = "Xin chào An, chào mừng bạn đến với cửa hàng. Khám phá sản phẩm mới của tuần này.\n" * 12
_HTML = "<p>Xin chào <b>An</b>, chào mừng bạn đến với cửa hàng của chúng tôi.</p>\n" * 40
# Round trips per message to the server: TCP, EHLO, [STARTTLS, the TLS 1.3 handshake, EHLO,] MAIL, RCPT,
# DATA and its content, QUIT for a session per message; MAIL, RCPT, DATA and its content on a kept one.
ROUND_TRIPS = {("per message", False): 7, ("per message", True): 10, ("kept", False): 4, ("kept", True): 4}


async def measure(server: SmtpServer, starttls: bool, messages: int, concurrency: int) -> dict[str, float]:
    channel = Email(
        host=LOOPBACK, port=server.port, sender="Shop <hi@shop.example>", starttls=starttls, timeout=30
    )
    pending = iter(range(messages))

    async def lane() -> None:
        for n in pending:
            content = {"subject": f"Chào mừng An ({n})", "text": _TEXT, "html": _HTML}
            await channel.send(OutboundMessage(f"welcome:c{n}:1:welcome", f"c{n}@example.com", content))

    await asyncio.gather(*(lane() for _ in range(concurrency)))  # warm-up: imports, the first sessions
    pending = iter(range(messages))
    server.reset()
    mine, theirs, started = time.process_time(), cpu_seconds(server.pid), time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    mine, theirs = time.process_time() - mine, cpu_seconds(server.pid) - theirs
    await channel.aclose()
    received, _ = server.count()
    assert received == messages, f"{received} of {messages} messages arrived"
    per_message = 1000 / messages
    return {"rate": messages / elapsed, "client_ms": mine * per_message, "server_ms": theirs * per_message}


def report(round_: int, starttls: bool, results: dict[str, dict[str, float]]) -> None:
    kind = "STARTTLS" if starttls else "plain"
    for mode, r in results.items():
        print(
            f"round {round_} {kind} {mode}: {r['rate']:.0f}/s, CPU per message {r['client_ms']:.2f} ms "
            f"client / {r['server_ms']:.2f} ms server, {ROUND_TRIPS[mode, starttls]} round trips"
        )
    ratio = results["kept"]["rate"] / results["per message"]["rate"]
    print(f"round {round_} {kind}: kept / per message {ratio:.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=20, help="sends in flight")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {machine()}; load before: {load()}")
    kept = email_channel.MESSAGES_PER_SESSION
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = self_signed(Path(tmp))
        os.environ["SSL_CERT_FILE"] = str(cert)
        server = SmtpServer(free_port(), tls=(cert, key))
        try:
            for round_ in range(1, args.rounds + 1):
                for starttls in (False, True):
                    results = {}
                    for mode, per_session in (("per message", 1), ("kept", kept)):
                        email_channel.MESSAGES_PER_SESSION = per_session
                        results[mode] = await measure(server, starttls, args.messages, args.concurrency)
                    report(round_, starttls, results)
        finally:
            email_channel.MESSAGES_PER_SESSION = kept
            server.stop()
    print(f"load after: {load()}")


if __name__ == "__main__":
    asyncio.run(main())
