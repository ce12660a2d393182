"""The email channel against a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from touchflow.channels import email as email_channel
from touchflow.channels.base import Kept, OutboundMessage
from touchflow.channels.email import Email
from touchflow.channels.errors import PermanentDeliveryError, RetryableDeliveryError
from touchflow.settings import Settings
from touchflow.temporal import free_port
from touchflow.testing import SmtpInbox, eventually

CONTENT = {"subject": "Chào An", "text": "Xin chào An!", "html": "<h1>Xin chào An!</h1>"}


def message(key: str = "welcome:c1:1:welcome", **fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "key": key,
        "address": "an@example.com",
        "content": CONTENT,
        "unsubscribe_url": "https://shop.example/unsubscribe/tok",
    }
    return OutboundMessage(**(values | fields))


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {},
            {"host": "127.0.0.1", "port": 1, "starttls": False, "username": "", "domain": "touchflow.local"},
        ),
        (
            {"smtp_host": "smtp.example.net", "smtp_port": 587, "smtp_starttls": True},
            {"host": "smtp.example.net", "port": 587, "starttls": True},
        ),
        (
            {"smtp_username": "apikey", "smtp_password": "s3cret", "email_from": "Shop <hi@shop.example>"},
            {
                "username": "apikey",
                "password": "s3cret",
                "sender": "Shop <hi@shop.example>",
                "domain": "shop.example",
            },
        ),
        ({"smtp_timeout": "30s"}, {"timeout": 30.0}),
    ],
)
def test_settings_configure_the_channel(
    make_settings: Callable[..., Settings], settings: dict[str, Any], expected: dict[str, Any]
) -> None:
    channel = Email.from_settings(make_settings(**settings))
    assert {name: getattr(channel, name) for name in expected} == expected


@pytest.mark.parametrize(
    ("content", "missing"),
    [
        (CONTENT, []),
        ({"subject": "Hi", "html": "<p>Hi</p>"}, ["text"]),  # the step has no .txt file
        ({"text": "Hi", "html": "<p>Hi</p>"}, ["subject"]),  # no subject block
        ({**CONTENT, "subject": "  "}, ["subject"]),  # a block that renders blank is missing too
        ({}, ["subject", "text", "html"]),
    ],
)
def test_an_email_needs_a_subject_a_text_and_an_html_part(
    content: dict[str, str], missing: list[str]
) -> None:
    assert Email.missing_parts(content) == missing


async def test_a_multipart_message_with_the_headers_inboxes_need(
    make_settings: Callable[..., Settings], smtp: SmtpInbox
) -> None:
    channel = Email.from_settings(make_settings(smtp_port=smtp.port, email_from="Shop <hi@shop.example>"))
    receipt = await channel.send(message())
    [mail] = smtp.messages
    assert smtp.envelopes == [("hi@shop.example", ["an@example.com"])]
    assert (mail["From"], mail["To"], mail["Subject"]) == (
        "Shop <hi@shop.example>",
        "an@example.com",
        "Chào An",
    )
    assert mail["Message-ID"] == receipt.provider_id and mail["Message-ID"].endswith("@shop.example>")
    assert mail["Date"] is not None
    assert mail["List-Unsubscribe"] == "<https://shop.example/unsubscribe/tok>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.get_body(("plain",)).get_content().strip() == "Xin chào An!"
    assert mail.get_body(("html",)).get_content().strip() == "<h1>Xin chào An!</h1>"


async def test_the_same_step_keeps_its_message_id_and_receipts_carry_no_unsubscribe(
    make_settings: Callable[..., Settings], smtp: SmtpInbox
) -> None:
    channel = Email.from_settings(make_settings(smtp_port=smtp.port))
    await channel.send(message())
    await channel.send(message())  # a retry after an interrupted send
    await channel.send(message(key="order:c1:1:order_confirmation", marketing=False))
    first, retry, receipt = smtp.messages
    assert first["Message-ID"] == retry["Message-ID"] != receipt["Message-ID"]
    assert receipt["List-Unsubscribe"] is None and receipt["List-Unsubscribe-Post"] is None


@pytest.mark.parametrize(
    ("reply", "error", "address_dead"),
    [
        ("451 4.7.1 Greylisted, try again later", RetryableDeliveryError, False),
        ("421 4.3.2 Service not available", RetryableDeliveryError, False),
        ("452 4.2.2 Mailbox full", RetryableDeliveryError, False),
        ("550 5.1.1 <an@example.com>: user unknown", PermanentDeliveryError, True),
        ("553 5.1.3 Bad recipient address syntax", PermanentDeliveryError, True),
        ("552 5.3.4 Message size exceeds limit", PermanentDeliveryError, False),
        ("554 5.7.1 Rejected by policy", PermanentDeliveryError, False),
    ],
)
async def test_server_answers_are_classified(
    make_settings: Callable[..., Settings],
    smtp: SmtpInbox,
    reply: str,
    error: type[Exception],
    address_dead: bool,
) -> None:
    smtp.refuse = [reply]
    channel = Email.from_settings(make_settings(smtp_port=smtp.port))
    with pytest.raises(error) as raised:
        await channel.send(message())
    assert raised.value.code == reply[:3]  # type: ignore[attr-defined]
    assert getattr(raised.value, "address_dead", False) is address_dead
    assert "an@example.com" not in str(raised.value)  # the address never reaches logs or history
    assert smtp.messages == []


async def test_an_unreachable_server_is_retryable(make_settings: Callable[..., Settings]) -> None:
    channel = Email.from_settings(make_settings(smtp_port=free_port(), smtp_timeout="2s"))
    with pytest.raises(RetryableDeliveryError, match="unreachable"):
        await channel.send(message())


class _Authenticator:
    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"apikey", b"s3cret")
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def auth_smtp() -> Iterator[SmtpInbox]:
    inbox = SmtpInbox(host="127.0.0.1", port=free_port())
    controller = Controller(
        inbox,
        hostname=inbox.host,
        port=inbox.port,
        authenticator=_Authenticator(),
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    yield inbox
    controller.stop()


# Plain AUTH on loopback is what this test is about; aiosmtpd warns about it for real servers.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_smtp_auth_by_settings(make_settings: Callable[..., Settings], auth_smtp: SmtpInbox) -> None:
    good = Email.from_settings(
        make_settings(smtp_port=auth_smtp.port, smtp_username="apikey", smtp_password="s3cret")
    )
    await good.send(message())
    assert len(auth_smtp.messages) == 1
    wrong = Email.from_settings(
        make_settings(smtp_port=auth_smtp.port, smtp_username="apikey", smtp_password="x")
    )
    with pytest.raises(PermanentDeliveryError, match="535"):
        await wrong.send(message())


# -- sessions kept open between messages -------------------------------------------------------------------


@dataclass
class _Sessions(SmtpInbox):
    """An SMTP server that tells its sessions apart (by the client's port) and can end one at MAIL."""

    peers: list[Any] = field(default_factory=list)  # the session of each message it took
    end_at_mail: str | None = None  # "421": answer the next MAIL so; "drop": close the connection instead
    throttling: bool = False  # answer every MAIL with 421 meanwhile
    quits: int = 0
    mails: list[list[str]] = field(default_factory=list)  # each MAIL's options

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.mails.append(list(options))
        if self.throttling:
            return "421 4.7.0 Too many messages, slow down"
        if self.end_at_mail == "drop":
            self.end_at_mail = None
            server.transport.close()
            return "421 4.4.2 Timeout"
        if self.end_at_mail == "421":
            self.end_at_mail = None
            return "421 4.4.2 Idle too long, closing connection"
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.peers.append(session.peer)
        return await super().handle_DATA(server, session, envelope)

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.quits += 1
        return "221 Bye"


@pytest.fixture
def sessions_smtp() -> Iterator[_Sessions]:
    inbox = _Sessions(host="127.0.0.1", port=free_port())
    controller = Controller(inbox, hostname=inbox.host, port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


async def test_messages_share_one_session_until_the_channel_closes(
    make_settings: Callable[..., Settings], sessions_smtp: _Sessions
) -> None:
    channel = Email.from_settings(make_settings(smtp_port=sessions_smtp.port))
    for n in range(3):
        await channel.send(message(key=f"welcome:c{n}:1:welcome"))
    assert len(sessions_smtp.messages) == 3
    assert len(set(sessions_smtp.peers)) == 1
    assert channel.sessions().idle == 1
    await channel.aclose()
    assert sessions_smtp.quits == 1  # closed with QUIT, as a worker stopping closes them
    await channel.send(message(key="welcome:c9:1:welcome"))  # after closing, a send opens a new session
    assert len(set(sessions_smtp.peers)) == 2


async def test_a_refusal_resets_the_envelope_and_keeps_the_session(
    make_settings: Callable[..., Settings], sessions_smtp: _Sessions
) -> None:
    channel = Email.from_settings(make_settings(smtp_port=sessions_smtp.port))
    await channel.send(message(address="first@example.com"))
    sessions_smtp.refuse = ["550 5.1.1 user unknown"]
    with pytest.raises(PermanentDeliveryError):
        await channel.send(message(address="gone@example.com"))
    await channel.send(message(address="next@example.com"))
    # The refused recipient left nothing in the next message's envelope, on the same session.
    assert [rcpts for _, rcpts in sessions_smtp.envelopes] == [["first@example.com"], ["next@example.com"]]
    assert len(set(sessions_smtp.peers)) == 1


@pytest.mark.parametrize("how", ["421", "drop"])
async def test_a_session_the_server_ended_is_replaced_and_the_message_given_once(
    make_settings: Callable[..., Settings], sessions_smtp: _Sessions, how: str
) -> None:
    channel = Email.from_settings(make_settings(smtp_port=sessions_smtp.port))
    await channel.send(message(key="welcome:c1:1:welcome"))
    sessions_smtp.end_at_mail = how  # the idle session was ended before the client noticed
    await channel.send(message(key="welcome:c2:1:welcome"))
    assert len(sessions_smtp.messages) == 2
    assert len(set(sessions_smtp.peers)) == 2


async def test_a_fresh_session_ended_at_mail_is_a_retryable_failure(
    make_settings: Callable[..., Settings], sessions_smtp: _Sessions
) -> None:
    """Only a reused session is retried at once: a server ending a new one is a provider failure."""
    channel = Email.from_settings(make_settings(smtp_port=sessions_smtp.port))
    sessions_smtp.end_at_mail = "421"
    with pytest.raises(RetryableDeliveryError, match="SMTP 421"):
        await channel.send(message())
    assert sessions_smtp.messages == []


@pytest.mark.parametrize("how", ["timed out", "cancelled"])
async def test_a_session_left_mid_message_is_not_reused(
    make_settings: Callable[..., Settings], sessions_smtp: _Sessions, how: str
) -> None:
    """A send that timed out, or was cancelled (its activity timed out, its worker stopping), leaves its
    session in the middle of DATA: the server's late answer must not be read as the next message's."""
    # Cancelled: the SMTP timeout would not fire, the send is cancelled from outside.
    timeout = "0.2s" if how == "timed out" else "10s"
    channel = Email.from_settings(make_settings(smtp_port=sessions_smtp.port, smtp_timeout=timeout))
    await channel.send(message(key="welcome:c1:1:welcome"))
    sessions_smtp.data_latency = 0.5  # the server takes the message but answers late
    if how == "timed out":
        with pytest.raises(RetryableDeliveryError, match="unreachable"):
            await channel.send(message(key="welcome:c2:1:welcome"))
    else:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(channel.send(message(key="welcome:c2:1:welcome")), 0.2)
    sessions_smtp.data_latency = 0.0
    assert channel.sessions().idle == 0
    await channel.send(message(key="welcome:c3:1:welcome"))
    assert sessions_smtp.peers[0] == sessions_smtp.peers[1] != sessions_smtp.peers[2]


async def test_sessions_are_capped_and_sends_wait_for_one(
    make_settings: Callable[..., Settings], sessions_smtp: _Sessions
) -> None:
    channel = Email.from_settings(make_settings(smtp_port=sessions_smtp.port, smtp_connections=2))
    sessions_smtp.latency = 0.05  # each RCPT takes a moment: the six sends overlap
    await asyncio.gather(*(channel.send(message(key=f"welcome:c{n}:1:welcome")) for n in range(6)))
    assert len(sessions_smtp.messages) == 6
    assert len(set(sessions_smtp.peers)) == 2


async def test_a_session_is_quit_when_idle_or_after_its_messages(
    make_settings: Callable[..., Settings], sessions_smtp: _Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(email_channel, "MESSAGES_PER_SESSION", 2)
    channel = Email.from_settings(make_settings(smtp_port=sessions_smtp.port))
    for n in range(3):
        await channel.send(message(key=f"welcome:c{n}:1:welcome"))
    first, second, third = sessions_smtp.peers
    assert first == second != third
    await eventually(lambda: sessions_smtp.quits == 1, 5, "the full session quit")
    monkeypatch.setattr(email_channel, "MESSAGES_PER_SESSION", 100)
    monkeypatch.setattr(email_channel, "IDLE_LIMIT", 0.05)
    await channel.send(message(key="welcome:c4:1:welcome"))  # on the third's session, given back idle
    await eventually(lambda: sessions_smtp.quits == 2, 5, "the idle session quit")
    assert channel.sessions().idle == 0


async def test_a_throttling_server_costs_one_retry_not_every_kept_session(
    make_settings: Callable[..., Settings], sessions_smtp: _Sessions
) -> None:
    channel = Email.from_settings(make_settings(smtp_port=sessions_smtp.port))
    sessions_smtp.latency = 0.05  # the three sends overlap: three sessions are kept
    await asyncio.gather(*(channel.send(message(key=f"welcome:c{n}:1:welcome")) for n in range(3)))
    assert channel.sessions().idle == 3
    sessions_smtp.mails.clear()
    sessions_smtp.throttling = True
    with pytest.raises(RetryableDeliveryError, match="SMTP 421"):
        await channel.send(message(key="welcome:c4:1:welcome"))
    assert len(sessions_smtp.mails) == 2  # the kept session, then one new session
    assert channel.sessions().idle == 2  # the other kept sessions were not spent on it


@pytest.mark.parametrize("address", ["josé@example.com", "a b@example.com"])
async def test_an_address_smtp_cannot_carry_is_refused_before_a_session(
    make_settings: Callable[..., Settings], sessions_smtp: _Sessions, address: str
) -> None:
    channel = Email.from_settings(make_settings(smtp_port=sessions_smtp.port))
    await channel.send(message())
    with pytest.raises(PermanentDeliveryError, match="cannot be sent over SMTP") as refused:
        await channel.send(message(address=address))
    assert refused.value.code == "bad_address" and not refused.value.address_dead
    assert address not in str(refused.value)
    assert len(sessions_smtp.mails) == 1 and channel.sessions().idle == 1


async def test_the_size_is_declared_at_mail(
    make_settings: Callable[..., Settings], sessions_smtp: _Sessions
) -> None:
    """RFC 1870: a server refuses a message too large before it is sent, on a new session's first too."""
    channel = Email.from_settings(make_settings(smtp_port=sessions_smtp.port))
    await channel.send(message())
    await channel.send(message())
    [size], [again] = sessions_smtp.mails
    assert size == again and size.upper().startswith("SIZE=") and int(size[5:]) > 500


async def test_a_session_still_sending_when_the_channel_closes_is_quit_after(
    make_settings: Callable[..., Settings], sessions_smtp: _Sessions
) -> None:
    channel = Email.from_settings(make_settings(smtp_port=sessions_smtp.port))
    sessions_smtp.latency = 0.2
    sending = asyncio.create_task(channel.send(message()))
    await eventually(lambda: len(sessions_smtp.mails) == 1, 5, "the send under way")
    sessions = channel.sessions()
    await channel.aclose()
    await sending
    await eventually(lambda: sessions_smtp.quits == 1, 5, "the session quit once its message went")
    assert sessions.idle == 0


def test_what_an_ended_loop_kept_is_let_go() -> None:
    """A channel outliving event loops (tests; a worker has one) does not hold on to them."""
    # What is kept refers to its loop, as SMTP sessions, aiohttp and httpx clients do.
    kept: Kept[list[object]] = Kept(lambda: [asyncio.get_running_loop()], lambda _: asyncio.sleep(0))
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def use() -> None:
        kept.get()
        loops.append(weakref.ref(asyncio.get_running_loop()))

    for _ in range(3):
        asyncio.run(use())
    gc.collect()
    assert sum(ref() is not None for ref in loops) <= 1  # only the last, until the next use
