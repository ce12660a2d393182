"""Email over SMTP (aiosmtplib): multipart text + HTML, Message-ID, Date, RFC 8058 unsubscribe headers.

A worker keeps its SMTP sessions open between messages (`SmtpSessions`): a message on a session already open
costs its transaction (MAIL, RCPT, DATA), not a TCP connection, a greeting, EHLO, STARTTLS and AUTH each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import hashlib
import re
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import ClassVar, Self

import aiosmtplib

from touchflow.channels.base import Channel, Kept, OutboundMessage, Reach, Receipt
from touchflow.channels.errors import PermanentDeliveryError, RetryableDeliveryError
from touchflow.settings import Settings

# SMTP replies that say "this mailbox is gone" rather than "this message was refused".
_DEAD_ADDRESS_CODES = {550, 551, 553}
# Long unbreakable headers (List-Unsubscribe URLs) stay on one line (RFC 5322 allows 998 characters):
# we flatten the message ourselves, since aiosmtplib would refold at 78.
_POLICY = email.policy.SMTP.clone(max_line_length=998)
_ADDRESS = re.compile(r"<?[^\s<>]+@[^\s<>]+>?")
# An open session unused this long is closed: servers drop idle sessions on their own after minutes (Postfix's
# smtpd_timeout is 300 s), so do NAT gateways, silently (AWS's after 350 s), and a quiet worker should not
# hold a provider's connections.
IDLE_LIMIT = 30.0
# Then a fresh session: some providers cap the messages one session may carry.
MESSAGES_PER_SESSION = 100


class Email(Channel):
    name = "email"
    reaches = Reach.EMAIL
    parts: ClassVar[tuple[str, ...]] = ("subject", "text", "html", "preheader")
    required_parts: ClassVar[tuple[str, ...]] = ("subject", "text", "html")
    max_payload = 10 * 1024 * 1024

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str = "",
        password: str = "",
        starttls: bool = False,
        timeout: float = 10.0,
        connections: int = 20,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout = timeout
        self.domain = parseaddr(sender)[1].rpartition("@")[2] or "touchflow.local"
        # Looked up once: aiosmtplib would resolve it again (a DNS round trip) on every connection.
        self.local_hostname = socket.getfqdn()
        self.connections = connections
        self._sessions = Kept(lambda: SmtpSessions(self._open, self.connections), SmtpSessions.aclose)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.email_from,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value(),
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout.total_seconds(),
            connections=settings.smtp_connections,
        )

    def message_id(self, key: str) -> str:
        """Derived from the delivery key: a re-sent attempt carries the same id, so inboxes can dedupe it."""
        return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{self.domain}>"

    def build(self, message: OutboundMessage) -> EmailMessage:
        mail = EmailMessage(policy=_POLICY)
        mail["From"] = self.sender
        mail["To"] = message.address
        mail["Subject"] = one_line(message.content["subject"])
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = self.message_id(message.key)
        if message.marketing and message.unsubscribe_url:
            mail["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        mail.set_content(message.content["text"])
        if message.content.get("html"):
            mail.add_alternative(message.content["html"], subtype="html")
        return mail

    def sessions(self) -> SmtpSessions:
        """This event loop's open sessions to the server."""
        return self._sessions.get()

    def _open(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username or None,
            password=self.password or None,
            start_tls=self.starttls,
            timeout=self.timeout,
            local_hostname=self.local_hostname,
        )

    async def send(self, message: OutboundMessage) -> Receipt:
        try:
            # What RCPT could not carry (a space, or a non-ASCII address without SMTPUTF8): refused here.
            aiosmtplib.email.quote_address(message.address).encode("ascii")
        except ValueError:  # UnicodeEncodeError among them
            raise PermanentDeliveryError(
                "address cannot be sent over SMTP (not ASCII, or not a mailbox)", code="bad_address"
            ) from None
        mail = self.build(message)
        data = mail.as_bytes(policy=_POLICY)
        try:
            await self.sessions().send(parseaddr(self.sender)[1], message.address, data)
        except aiosmtplib.SMTPResponseException as exc:
            raise _classify(exc.code, exc.message) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise RetryableDeliveryError(
                f"SMTP server {self.host}:{self.port} unreachable: {type(exc).__name__}"
            ) from None
        return Receipt(provider_id=mail["Message-ID"])

    async def aclose(self) -> None:
        await self._sessions.aclose()


@dataclass(eq=False)
class _Session:
    smtp: aiosmtplib.SMTP
    messages: int = 0
    expiry: asyncio.TimerHandle | None = None


class SmtpSessions:
    """At most `limit` SMTP sessions open to one server, reused message after message.

    A send takes an idle session, else opens one (while fewer than `limit` are open), else waits for one. A
    session goes back idle after a transaction the server answered (accepted, or refused with the envelope
    reset); one that failed otherwise (a timeout, a lost connection, a cancelled send) is closed, since what
    it was in the middle of is unknown. A session idle for `IDLE_LIMIT` or that carried `MESSAGES_PER_SESSION`
    is closed with QUIT.

    A session the server closed while it was idle fails at MAIL, before the message was given: then, and only
    then, the message is tried once more on a fresh session, so it is never handed to the server twice.
    """

    def __init__(self, open_session: Callable[[], aiosmtplib.SMTP], limit: int) -> None:
        self._open = open_session
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[_Session] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False  # closing: a session still sending is quit when it is done, not kept

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def send(self, sender: str, recipient: str, data: bytes) -> None:
        async with self._slots:
            async with self._session() as session:
                if await self._transact(session, sender, recipient, data):
                    return
            # The kept session proved closed at MAIL: once more, on a new one. One try, not every idle
            # session in turn: a server answering 421 to throttle would otherwise end them all.
            async with self._session(fresh=True) as session:
                await self._transact(session, sender, recipient, data)

    @contextlib.asynccontextmanager
    async def _session(self, fresh: bool = False) -> AsyncIterator[_Session]:
        session = None if fresh else self._take()
        if session is None:
            session = _Session(self._open())
            try:
                await session.smtp.connect()
                await _greet(session.smtp)
            except BaseException:
                session.smtp.close()
                raise
        try:
            yield session
        except aiosmtplib.SMTPResponseException:
            self._give_back(session)  # the server answered: the session is in a known state
            raise
        except BaseException:
            session.smtp.close()
            raise
        self._give_back(session)

    async def _transact(self, session: _Session, sender: str, recipient: str, data: bytes) -> bool:
        """One mail transaction; False when a reused session proved closed before the message was given."""
        smtp = session.smtp
        reused = session.messages > 0
        session.messages += 1
        # RFC 1870: the size up front, so a server refuses a message too large before taking it.
        options = [f"SIZE={len(data)}"] if smtp.supports_extension("size") else []
        try:
            await smtp.mail(sender, options=options)
        except ConnectionError:  # aiosmtplib's SMTPServerDisconnected among them
            if reused:
                smtp.close()
                return False  # closed while idle: nothing was sent on it
            raise
        except aiosmtplib.SMTPResponseException as exc:
            if reused and exc.code == 421:  # "closing the channel": the server ended the idle session
                smtp.close()
                return False
            await self._reset(smtp)
            raise
        try:
            await smtp.rcpt(recipient)
            await smtp.data(data)
        except aiosmtplib.SMTPResponseException:
            await self._reset(smtp)
            raise
        return True

    @staticmethod
    async def _reset(smtp: aiosmtplib.SMTP) -> None:
        """RSET after a refusal, so the next message starts a clean envelope; one that cannot is closed."""
        try:
            await smtp.rset()
        except aiosmtplib.SMTPException:
            smtp.close()

    def _take(self) -> _Session | None:
        while self._idle:
            session = self._idle.pop()
            if session.expiry is not None:
                session.expiry.cancel()
            if session.smtp.is_connected:
                return session
        return None

    def _give_back(self, session: _Session) -> None:
        if not session.smtp.is_connected:
            return
        if self._closed or session.messages >= MESSAGES_PER_SESSION:
            self._quit(session)
            return
        session.expiry = asyncio.get_running_loop().call_later(IDLE_LIMIT, self._expire, session)
        self._idle.append(session)

    def _expire(self, session: _Session) -> None:
        with contextlib.suppress(ValueError):
            self._idle.remove(session)
            self._quit(session)

    def _quit(self, session: _Session) -> None:
        task = asyncio.get_running_loop().create_task(self._say_goodbye(session.smtp))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _say_goodbye(smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            smtp.close()

    async def aclose(self) -> None:
        """QUIT every idle session (a worker stopping), and each one still sending once it is done."""
        self._closed = True
        while self._idle:
            session = self._idle.pop()
            if session.expiry is not None:
                session.expiry.cancel()
            self._quit(session)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


async def _greet(smtp: aiosmtplib.SMTP) -> None:
    """EHLO (HELO for a server without ESMTP) on a new session, unless connecting did (STARTTLS, AUTH): what
    the server supports (SIZE) is known before the first MAIL."""
    if smtp.is_ehlo_or_helo_needed:
        try:
            await smtp.ehlo()
        except aiosmtplib.SMTPHeloError:
            await smtp.helo()


def _classify(code: int, text: str) -> RetryableDeliveryError | PermanentDeliveryError:
    # The server's text often quotes the address back: it must not reach logs or the history.
    reason = f"SMTP {code}: {_ADDRESS.sub('<address>', ' '.join(text.split()))[:200]}"
    if 400 <= code < 500:
        return RetryableDeliveryError(reason, code=str(code))
    return PermanentDeliveryError(reason, code=str(code), address_dead=code in _DEAD_ADDRESS_CODES)


def one_line(text: str) -> str:
    """A header value from rendered text: line breaks and other control characters become one space, so a
    property with CR/LF (an order id, a name) can neither break the message nor add a header of its own."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
