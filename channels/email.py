"""Email: one message per subscriber through the city's SMTP relay.

SMTP: RFC 5321 (https://www.rfc-editor.org/rfc/rfc5321), reply codes §4.2 and
enhanced status codes RFC 3463 (https://www.rfc-editor.org/rfc/rfc3463); message
format RFC 5322; ``Auto-Submitted`` RFC 3834. Client: aiosmtplib
(https://aiosmtplib.readthedocs.io/).

One SMTP connection is opened on first use and reused for up to
``messages_per_connection`` messages (relays cap a session: Postfix's
``smtpd_client_message_rate_limit``, Exchange Online's 30 per connection), then closed
politely and reopened; it is dropped and reopened after any connection failure. A lock
keeps one transaction (MAIL/RCPT/DATA) on the wire at a time, since SMTP cannot
interleave them. A ``send`` takes up to ``batch_size`` recipients (one transaction each,
since each mail carries its reader's own links) and answers for each.

Every mail has a plain-text and an HTML part (``multipart/alternative``, the HTML built
from the same text, escaped). Sent to a subscription, it carries the reader's own
signed links (``ChannelContext.links``): a page to change places, language and level
without an account, and one-click unsubscribe by RFC 8058
(https://www.rfc-editor.org/rfc/rfc8058): ``List-Unsubscribe: <https://…>`` with
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``, and the same link in the body.
The relay's STARTTLS (``starttls``) or implicit TLS (``use_tls``) and AUTH
(``username``/``password``) are aiosmtplib's.

How answers become results: 2xx → ``Delivered(Message-ID)``; 4xx, connection
errors and timeouts → ``Retry``; a 5xx refusal of the recipient → ``Reject``,
with ``unsubscribe=True`` only for "no such user" (550/551/553 unless the
enhanced code says policy ``5.7.x`` or full mailbox ``5.2.x``); a refusal of our
sender or of our credentials → ``Retry`` (our configuration, not the resident's).
"""

from __future__ import annotations

import asyncio
import html
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import ClassVar

import aiosmtplib

from channels.base import Channel, ChannelContext, Delivered, Health, Reject, Retry, SendResult
from dispatcher.constraints import between, greater_than, mail_address, non_empty
from dispatcher.model import Message, Recipient

_USER_UNKNOWN = frozenset({550, 551, 553})
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True, slots=True)
class EmailConfig:
    """``[channels.email]``: the SMTP relay and the sender.

    ``use_tls`` is implicit TLS (SMTPS, usually port 465); ``starttls`` upgrades a
    plain connection (submission, port 587). At most one of them.
    """

    host: str = field(default="localhost", metadata=non_empty())
    port: int = field(default=25, metadata=between(1, 65535))
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False
    starttls: bool = False
    sender: str = field(default="沼津市 防災情報 <bousai@city.numazu.example>", metadata=mail_address())
    timeout: float = field(default=10.0, metadata=greater_than(0))
    # Messages sent on one SMTP session before it is closed and a new one opened.
    messages_per_connection: int = field(default=100, metadata=between(1, 100000))
    # Verify the relay's certificate (STARTTLS and implicit TLS); off only for a test relay.
    validate_certs: bool = True
    # CA certificates (PEM) the relay's certificate is checked against (a city's private CA); empty: the system's.
    cert_bundle: str = ""

    def __post_init__(self) -> None:
        # Messages name no section: the loader adds "[channels.email]" and the file.
        if self.use_tls and self.starttls:
            raise ValueError("use_tls and starttls are mutually exclusive")
        if "@" not in parseaddr(self.sender)[1]:
            raise ValueError(f"sender has no address: {self.sender!r}")

    @property
    def sender_address(self) -> str:
        """The bare envelope sender (``MAIL FROM``)."""
        return parseaddr(self.sender)[1]


def classify_refusal(code: int, text: str) -> SendResult:
    """Turn an SMTP reply to our RCPT into a result."""
    if 400 <= code < 500:
        return Retry(reason=f"smtp {code} {text}".strip())
    enhanced = _ENHANCED.match(text)
    # 5.7.x is policy (spam filters) and 5.2.x a full or disabled mailbox: the
    # person still exists, so keep the subscription.
    kept = enhanced is not None and enhanced.group(2) in ("2", "7")
    gone = code in _USER_UNKNOWN and not kept
    return Reject(reason=f"smtp {code} {text}".strip(), unsubscribe=gone)


_URL = re.compile(r"https?://[^\s<>\"]+")

# The footer of every mail to a subscription, per language.
FOOTER = {
    "ja": ("配信地域・言語・レベルの変更", "配信停止"),
    "ja-easy": ("ちいき・ことば・レベルを かえる", "メールを とめる"),
    "en": ("Change places, language or level", "Unsubscribe"),
}


def text_to_html(text: str, language: str, title: str = "") -> str:
    """A small, accessible HTML rendering of a plain-text message: escaped, links made links."""

    def linked(line: str) -> str:
        out, last = [], 0
        for m in _URL.finditer(line):
            out.append(html.escape(line[last : m.start()]))
            url = html.escape(m.group())
            out.append(f'<a href="{url}">{url}</a>')
            last = m.end()
        out.append(html.escape(line[last:]))
        return "".join(out)

    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    body = "".join("<p>" + "<br>".join(linked(x) for x in p.split("\n")) + "</p>\n" for p in paragraphs)
    lang = "ja" if language.startswith("ja") else language
    return (
        f'<!doctype html>\n<html lang="{lang}"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>\n'
        f'<body style="font-family: sans-serif; line-height: 1.6; color: #1a1a1a">\n{body}</body></html>\n'
    )


class EmailChannel(Channel):
    """Plain-text and HTML UTF-8 mail to each subscriber, marked as automatic (RFC 3834)."""

    name: ClassVar[str] = "email"
    config_class: ClassVar[type[EmailConfig]] = EmailConfig
    config: EmailConfig
    max_text_length: ClassVar[int] = 20000
    # A typical relay's comfortable pace; raise it in the config for a bigger relay.
    rate_per_second: ClassVar[float] = 10.0
    # Recipients per send: each is its own transaction on the one connection.
    batch_size: ClassVar[int] = 20

    def __init__(self, config: EmailConfig, context: ChannelContext) -> None:
        super().__init__(config, context)
        self._smtp: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()
        self._domain = config.sender_address.rpartition("@")[2]
        self._sent_on_connection = 0

    def __repr__(self) -> str:
        return f"EmailChannel(host={self.config.host!r}, port={self.config.port})"

    async def close(self) -> None:
        """Say QUIT and drop the connection (it is opened on first use, not by ``open``)."""
        async with self._lock:
            await self._drop(polite=True)
        await super().close()

    async def healthcheck(self) -> Health:
        """Connect (if needed) and send NOOP."""
        async with self._lock:
            try:
                smtp = await self._connected()
                response = await smtp.noop()
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                await self._drop()
                return Health(ok=False, detail=f"{type(exc).__name__}: {exc}")
        return Health(ok=True, detail=f"{response.code} {response.message}")

    def build(self, message: Message, recipient: Recipient) -> EmailMessage:
        """The RFC 5322 message for one recipient."""
        mail = EmailMessage()
        mail["From"] = self.config.sender
        mail["To"] = Address(addr_spec=recipient.address)
        mail["Subject"] = message.subject or message.text.partition("\n")[0]
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail["Message-ID"] = self._message_id(message, recipient)
        # RFC 3834: stops vacation auto-replies from answering an alert.
        mail["Auto-Submitted"] = "auto-generated"
        identifier = message.extra.get("alert_identifier")
        if identifier:
            mail["X-Alert-Identifier"] = str(identifier)
        mail["Content-Language"] = "ja" if message.language.startswith("ja") else message.language
        text = message.text[: self.max_text_length]
        links = self.context.links
        if links is not None and recipient.subscription_id is not None:
            unsubscribe = links.unsubscribe_url(recipient.subscription_id)
            manage = links.manage_url(recipient.subscription_id)
            # RFC 8058 §3.1: an HTTPS URI, and the POST that acts on it without a page.
            mail["List-Unsubscribe"] = f"<{unsubscribe}>"
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            change, stop = FOOTER.get(message.language, FOOTER["ja"])
            text = f"{text}\n\n--\n{change}: {manage}\n{stop}: {unsubscribe}\n"
        mail.set_content(text, charset="utf-8")
        mail.add_alternative(
            text_to_html(text, message.language, str(mail["Subject"])), subtype="html", charset="utf-8"
        )
        return mail

    def _message_id(self, message: Message, recipient: Recipient) -> str:
        if message.idempotency_key:
            # Stable across re-sends, so a duplicate after a crash threads as one.
            key = re.sub(r"[^A-Za-z0-9._-]", "-", message.idempotency_key)
            return f"<{recipient.delivery_id}.{key}@{self._domain}>"
        return make_msgid(idstring=str(recipient.delivery_id), domain=self._domain)

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            if self._sent_on_connection < self.config.messages_per_connection:
                return self._smtp
            # The relay's cap per session: say goodbye and start a new one.
            await self._drop(polite=True)
        self._sent_on_connection = 0
        cfg = self.config
        smtp = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            username=cfg.username,
            password=cfg.password,
            use_tls=cfg.use_tls,
            start_tls=cfg.starttls,
            timeout=cfg.timeout,
            validate_certs=cfg.validate_certs,
            cert_bundle=cfg.cert_bundle or None,
        )
        await smtp.connect()
        self._smtp = smtp
        return smtp

    async def _drop(self, *, polite: bool = False) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        if polite and smtp.is_connected:
            try:
                await smtp.quit()
                return
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                pass
        smtp.close()

    async def send_one(self, message: Message, recipient: Recipient) -> SendResult:
        """One SMTP transaction, on the shared connection."""
        return await self.send_mail(self.build(message, recipient), recipient.address)

    async def send_mail(self, mail: EmailMessage, address: str) -> SendResult:
        """One SMTP transaction for ``mail`` to ``address`` (also the subscription's confirmation mails)."""
        async with self._lock:
            try:
                smtp = await self._connected()
                self._sent_on_connection += 1
                await smtp.send_message(mail, sender=self.config.sender_address, recipients=[address])
            except aiosmtplib.SMTPRecipientsRefused as exc:
                await self._reset()
                refused = exc.recipients[0]
                return classify_refusal(refused.code, refused.message)
            except aiosmtplib.SMTPRecipientRefused as exc:
                await self._reset()
                return classify_refusal(exc.code, exc.message)
            except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPAuthenticationError) as exc:
                await self._reset()
                return Retry(reason=f"smtp refused our sender or login: {exc.code} {exc.message}")
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, OSError, TimeoutError) as exc:
                # SMTPTimeoutError is a TimeoutError; connection refused is an OSError.
                await self._drop()
                return Retry(reason=f"smtp connection: {type(exc).__name__}: {exc}")
            except aiosmtplib.SMTPResponseException as exc:
                await self._reset()
                if 400 <= exc.code < 500:
                    return Retry(reason=f"smtp {exc.code} {exc.message}")
                return Reject(reason=f"smtp {exc.code} {exc.message}", unsubscribe=False)
            except aiosmtplib.SMTPException as exc:
                await self._drop()
                return Retry(reason=f"smtp error: {type(exc).__name__}: {exc}")
        return Delivered(remote_id=str(mail["Message-ID"]))

    async def _reset(self) -> None:
        """Abort a half-done transaction so the connection can be reused."""
        if self._smtp is None:
            return
        try:
            await self._smtp.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            await self._drop()
