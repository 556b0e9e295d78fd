"""A local SMTP server standing in for the city's mail relay (demo, tests, benchmarks).

Built on aiosmtpd (https://aiosmtpd.aio-libs.org/) speaking RFC 5321
(https://www.rfc-editor.org/rfc/rfc5321): it records every accepted message with
its envelope and the parsed :class:`email.message.EmailMessage`, and can refuse a
recipient permanently (550 user unknown) or temporarily (451), per address.

aiosmtpd's threaded ``Controller`` runs the server on its own thread and event
loop, so the server never competes with the client under test for the loop.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One message the stand-in accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes = field(repr=False)


@dataclass(slots=True)
class _Refusal:
    reply: str
    # How many more RCPTs to refuse; None: until told otherwise.
    remaining: int | None


class _Handler:
    """aiosmtpd handler hooks (called on the controller's thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[ReceivedMail] = []
        self.refusals: dict[str, _Refusal] = {}

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        with self.lock:
            refusal = self.refusals.get(address.lower())
            if refusal is not None:
                if refusal.remaining is not None:
                    refusal.remaining -= 1
                    if refusal.remaining <= 0:
                        del self.refusals[address.lower()]
                return refusal.reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        raw_bytes = raw if isinstance(raw, bytes) else str(raw).encode()
        parsed = BytesParser(policy=policy.default).parsebytes(raw_bytes)
        assert isinstance(parsed, EmailMessage)
        mail = ReceivedMail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            message=parsed,
            raw=raw_bytes,
        )
        with self.lock:
            self.messages.append(mail)
        return "250 2.0.0 Message accepted for delivery"


def _free_port(host: str) -> int:
    # The Controller probes its own port after binding, so it cannot take port 0:
    # ask the OS for a free one first (a tiny race, harmless on 127.0.0.1).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class _Authenticator:
    """AUTH PLAIN/LOGIN against one user and password (aiosmtpd's authenticator hook)."""

    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username.encode(), password.encode()
        self.logins = 0

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.username,
            self.password,
        )
        self.logins += ok
        return AuthResult(success=ok, handled=False)


class SmtpStandIn:
    """An SMTP server on 127.0.0.1 recording what it receives.

    ``refuse(address)`` answers RCPT with ``550 5.1.1 user unknown`` (or another
    5xx); ``defer(address, count=K)`` answers ``451`` for the next K attempts.
    With ``tls_context`` it offers STARTTLS and requires it before MAIL; with
    ``credentials`` (user, password) it requires AUTH (only over TLS when it has TLS),
    as a city's submission relay does.
    """

    def __init__(
        self, *, tls_context: ssl.SSLContext | None = None, credentials: tuple[str, str] | None = None
    ) -> None:
        self.tls_context = tls_context
        self.authenticator = _Authenticator(*credentials) if credentials else None
        self._handler = _Handler()
        self._controller: Controller | None = None
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def messages(self) -> list[ReceivedMail]:
        """Accepted messages, oldest first (a snapshot)."""
        with self._handler.lock:
            return list(self._handler.messages)

    def refuse(self, address: str, code: int = 550, text: str = "5.1.1 User unknown") -> None:
        """Refuse ``address`` permanently with ``code`` (5xx)."""
        with self._handler.lock:
            self._handler.refusals[address.lower()] = _Refusal(f"{code} {text}", None)

    def defer(self, address: str, *, count: int = 1) -> None:
        """Answer ``451`` to the next ``count`` RCPTs of ``address``."""
        reply = "451 4.3.0 Temporary local problem, try again later"
        with self._handler.lock:
            self._handler.refusals[address.lower()] = _Refusal(reply, count)

    def accept(self, address: str) -> None:
        """Stop refusing ``address``."""
        with self._handler.lock:
            self._handler.refusals.pop(address.lower(), None)

    def reset(self) -> None:
        """Forget messages and refusals."""
        with self._handler.lock:
            self._handler.messages.clear()
            self._handler.refusals.clear()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Start listening (``port=0``: a free port); return ``(host, port)``."""
        self.host = host
        self.port = port or _free_port(host)
        extra: dict[str, Any] = {}
        if self.tls_context is not None:
            extra |= {"tls_context": self.tls_context, "require_starttls": True}
        if self.authenticator is not None:
            extra |= {
                "authenticator": self.authenticator,
                "auth_required": True,
                "auth_require_tls": self.tls_context is not None,
            }
        self._controller = Controller(self._handler, hostname=host, port=self.port, **extra)
        await asyncio.to_thread(self._controller.start)
        return self.host, self.port

    async def stop(self) -> None:
        """Stop the server thread."""
        if self._controller is not None:
            await asyncio.to_thread(self._controller.stop)
            self._controller = None
