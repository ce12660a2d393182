"""Email over SMTP (aiosmtplib): multipart text + HTML, Message-ID, Date, RFC 8058 unsubscribe headers."""

from __future__ import annotations

import email.policy
import hashlib
import re
import socket
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import ClassVar, Self

import aiosmtplib

from touchflow.channels.base import Channel, OutboundMessage, Reach, Receipt
from touchflow.channels.errors import PermanentDeliveryError, RetryableDeliveryError
from touchflow.settings import Settings

# SMTP replies that say "this mailbox is gone" rather than "this message was refused".
_DEAD_ADDRESS_CODES = {550, 551, 553}
# Long unbreakable headers (List-Unsubscribe URLs) stay on one line (RFC 5322 allows 998 characters):
# we flatten the message ourselves, since aiosmtplib would refold at 78.
_POLICY = email.policy.SMTP.clone(max_line_length=998)
_ADDRESS = re.compile(r"<?[^\s<>]+@[^\s<>]+>?")


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

    async def send(self, message: OutboundMessage) -> Receipt:
        mail = self.build(message)
        try:
            await aiosmtplib.send(
                mail.as_bytes(policy=_POLICY),
                sender=parseaddr(self.sender)[1],
                recipients=[message.address],
                hostname=self.host,
                port=self.port,
                username=self.username or None,
                password=self.password or None,
                start_tls=self.starttls,
                timeout=self.timeout,
                local_hostname=self.local_hostname,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            raise _classify(refused.code, refused.message) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _classify(exc.code, exc.message) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise RetryableDeliveryError(
                f"SMTP server {self.host}:{self.port} unreachable: {type(exc).__name__}"
            ) from None
        return Receipt(provider_id=mail["Message-ID"])


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
