"""Residents' addresses kept out of what operators read: masking and redaction.

Operators need to tell recipients apart, not to know who they are: a chat id or an
e-mail address is shown as its last four characters, or its first two and the domain
(:func:`mask`). Providers' error texts quote the address they refused (``550 5.1.1
<yamada.hanako@example.jp>: User unknown``, Telegram's ``new_chat_id=-1001234567890``):
:func:`redact` masks the recipient's own address in such a text, and any other e-mail
address or number long enough to be a chat id. The worker applies it where a provider's
answer comes in, so what is logged, stored and shown is already masked.

A leaf module (standard library only).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, TypeVar, cast

__all__ = ["mask", "redact", "redact_reason"]

R = TypeVar("R")

# Loose on purpose: what a provider quotes back, not RFC 5321 validation (\w: Unicode too).
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
# Telegram chat ids (groups: -100…), phone numbers: six digits or more standing alone.
# Status codes (550), enhanced codes (5.1.1), ports and waits in seconds are shorter.
_LONG_NUMBER = re.compile(r"(?<![\w.])-?\d{6,}(?![\w.])")


def mask(address: str) -> str:
    """Enough of an address to tell recipients apart: ``ya…@example.jp``, ``…7890``."""
    if "@" in address:
        user, _, domain = address.partition("@")
        return user[:2] + "…@" + domain
    return address if len(address) <= 4 else "…" + address[-4:]


def redact(text: str, address: str = "") -> str:
    """``text`` with ``address`` and any e-mail address or long number in it masked."""
    if len(address) > 4:
        text = re.sub(re.escape(address), mask(address), text, flags=re.IGNORECASE)
    text = _EMAIL.sub(lambda m: mask(m.group()), text)
    return _LONG_NUMBER.sub(lambda m: mask(m.group()), text)


def redact_reason(result: R, address: str) -> R:
    """A channel's answer with its ``reason`` redacted for ``address``; one without a reason as it is."""
    reason = getattr(result, "reason", None)
    if not isinstance(reason, str):
        return result
    cleaned = redact(reason, address)
    if cleaned == reason:
        return result
    return cast(R, dataclasses.replace(cast(Any, result), reason=cleaned))
