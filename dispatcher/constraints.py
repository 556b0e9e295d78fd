"""What values a configuration field allows, declared beside the field.

A section's dataclass says it in the field's metadata::

    port: int = field(default=8080, metadata=between(0, 65535))

and :func:`dispatcher.config.build_dataclass` checks every key an operator sets
against it, after the type, so every section and every channel's own config class
refuses a bad value the same way, naming the file, the key and what is allowed::

    site.toml: [web] port = 99999: must be between 0 and 65535

A value that passes here must also be one the daemon can run with: a port the
socket accepts, a log level ``logging`` knows, a lease a worker can renew. Checks
that relate two keys stay in the section's ``__post_init__``.

A leaf module (standard library and :mod:`dispatcher.limits` only), so channels and sources declare their limits
without importing the loader.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

from dispatcher.limits import bad_character

__all__ = [
    "KEY",
    "REPLACED_WHOLE",
    "Constraint",
    "at_least",
    "between",
    "greater_than",
    "http_url",
    "mail_address",
    "non_empty",
    "one_of",
    "problem",
    "replaced_whole",
    "shaped_name",
    "signing_secret",
]

# The metadata key a field's constraint is stored under.
KEY = "constraint"
# The metadata key of a table that is data rather than settings (see replaced_whole).
REPLACED_WHOLE = "replaced_whole"
# Shared secrets we sign or verify HMAC-SHA256 with: at least the hash's output
# size (RFC 2104 §3: keys shorter than that weaken the MAC), counted in bytes.
MIN_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class Constraint:
    """A test of one value and the words for what it allows (``between 0 and 65535``).

    ``each``: the field is a list, and every item must pass. ``hidden``: a secret;
    the message never shows the value.
    """

    allowed: str
    test: Callable[[Any], bool]
    each: bool = False
    hidden: bool = False

    def problem(self, value: Any) -> str | None:
        """``None`` when ``value`` is allowed, else what is wrong with it."""
        items = value if self.each and isinstance(value, list | tuple) else [value]
        if all(self.test(item) for item in items):
            return None
        if self.hidden:
            size = len(str(value).encode("utf-8"))
            return f"the secret must be {self.allowed} (it has {size})"
        return f"must be {self.allowed}"


def _meta(constraint: Constraint) -> Mapping[str, Any]:
    return {KEY: constraint}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def between(low: float, high: float) -> Mapping[str, Any]:
    """A number from ``low`` to ``high``, both included."""
    return _meta(Constraint(f"between {_show(low)} and {_show(high)}", lambda v: _number(v) and low <= v <= high))


def at_least(low: float) -> Mapping[str, Any]:
    """A number of at least ``low``."""
    return _meta(Constraint(f"at least {_show(low)}", lambda v: _number(v) and v >= low))


def greater_than(low: float) -> Mapping[str, Any]:
    """A number strictly greater than ``low`` (a timeout, an interval)."""
    return _meta(Constraint(f"greater than {_show(low)}", lambda v: _number(v) and v > low))


def one_of(*choices: str, ignore_case: bool = False) -> Mapping[str, Any]:
    """One of ``choices`` (``ignore_case``: in any case, as ``logging`` takes level names)."""
    allowed = {c.casefold() if ignore_case else c for c in choices}

    def test(value: Any) -> bool:
        return isinstance(value, str) and (value.casefold() if ignore_case else value) in allowed

    return _meta(Constraint("one of " + ", ".join(choices), test))


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str) or _has_control(value) or value != value.strip():
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def http_url(*, empty: bool = False, each: bool = False) -> Mapping[str, Any]:
    """An ``http://`` or ``https://`` URL with a host (``empty``: or nothing, meaning off)."""
    words = "an http(s) URL with a host" + (" (or empty)" if empty else "")
    return _meta(Constraint(words, lambda v: (empty and v == "") or _is_http_url(v), each=each))


def _has_control(text: str) -> bool:
    # Controls (NUL, C1), format characters (bidi overrides), surrogates, unassigned points.
    return bad_character(text) is not None


def _is_mail_address(value: Any) -> bool:
    if not isinstance(value, str) or _has_control(value):
        return False
    address = parseaddr(value)[1]
    local, at, domain = address.rpartition("@")
    # A dotless domain (bousai@localhost) is a valid envelope sender for a local relay.
    return bool(at and local and domain and not any(ch.isspace() for ch in address))


def mail_address() -> Mapping[str, Any]:
    """A mail address, optionally with a display name (``沼津市 <bousai@example.jp>``)."""
    return _meta(Constraint("a mail address such as '沼津市 防災情報 <bousai@city.numazu.example>'", _is_mail_address))


def non_empty() -> Mapping[str, Any]:
    """A string with something in it but no control characters."""
    return _meta(
        Constraint(
            "a non-empty string without control characters",
            lambda v: isinstance(v, str) and bool(v.strip()) and not _has_control(v),
        )
    )


def shaped_name(max_length: int = 200, *, each: bool = False) -> Mapping[str, Any]:
    """A name we store and index (a sender, an identifier): printable, at most ``max_length`` characters."""
    return _meta(
        Constraint(
            f"at most {max_length} printable characters, not empty",
            lambda v: isinstance(v, str) and 0 < len(v) <= max_length and bool(v.strip()) and not _has_control(v),
            each=each,
        )
    )


def signing_secret(min_bytes: int = MIN_SECRET_BYTES) -> Mapping[str, Any]:
    """A shared signing secret of at least ``min_bytes`` bytes (UTF-8); empty means not configured."""
    return _meta(
        Constraint(
            f"at least {min_bytes} bytes",
            lambda v: v in ("", None) or (isinstance(v, str) and len(v.encode("utf-8")) >= min_bytes),
            hidden=True,
        )
    )


def replaced_whole() -> Mapping[str, Any]:
    """A table an operator's file replaces whole instead of merging into (a mapping such as
    ``[broadcast.groups]``), so that a city's own mapping does not inherit the examples."""
    return {REPLACED_WHOLE: True}


def problem(f: dataclasses.Field[Any], value: Any) -> str | None:
    """What is wrong with ``value`` for field ``f``, or ``None`` (also when ``f`` declares nothing)."""
    constraint = f.metadata.get(KEY)
    if constraint is None or value is None:
        return None
    assert isinstance(constraint, Constraint)
    return constraint.problem(value)
