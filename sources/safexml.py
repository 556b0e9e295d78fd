"""Safe parsing of untrusted XML: JMA telegrams, CAP alerts, broadcast bodies.

Neither JMA's 防災情報XML (https://xml.kishou.go.jp/) nor CAP 1.2 needs a
DOCTYPE, so any document that carries one is refused outright: that closes entity expansion
bombs (billion laughs, quadratic blow-up) and external entities (XXE via
``file://`` or ``http://``) before libxml2 gets a chance to act on them. The
lxml parser is additionally configured not to resolve entities, load DTDs or
touch the network, and documents above a byte limit are refused before parsing.
See https://lxml.de/FAQ.html#how-do-i-use-lxml-safely-as-a-web-service-endpoint
and https://docs.python.org/3/library/xml.html#xml-vulnerabilities.
"""

from __future__ import annotations

import re
import threading

from lxml import etree

__all__ = ["DEFAULT_MAX_BYTES", "MalformedXmlError", "UnsafeXmlError", "parse_xml"]

DEFAULT_MAX_BYTES = 5_000_000

# A root element starts with "<" followed by a name start character; anything
# before it is the prolog (declaration, comments, PIs, DOCTYPE).
_ELEMENT_START = re.compile(rb"<[A-Za-z_:\x80-\xff]")
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")


class UnsafeXmlError(ValueError):
    """The document is refused for safety (DOCTYPE, entities, size)."""


class MalformedXmlError(ValueError):
    """The document is not well-formed XML."""


_local = threading.local()


def _parser() -> etree.XMLParser:
    # lxml parsers are not thread-safe: one per thread, reused, so that a small
    # telegram does not pay for building a parser as well as for being parsed.
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
            # Whitespace-only text between elements is never read (texts are
            # stripped) and dropping it makes parsing and traversal cheaper.
            remove_blank_text=True,
            collect_ids=False,
        )
        _local.parser = parser
    return parser


def _prolog_has_doctype(data: bytes) -> bool:
    head = data
    if data.startswith(_UTF16_32_BOMS) or b"\x00" in data[:4]:
        # Not ASCII-compatible: decode a bounded prefix to look for DOCTYPE.
        for codec in ("utf-16", "utf-32"):
            try:
                head = data[:65536].decode(codec, errors="ignore").encode("utf-8")
            except (UnicodeError, LookupError):
                continue
            if b"<!DOCTYPE" in head:
                return True
        return False
    match = _ELEMENT_START.search(head)
    prolog = head if match is None else head[: match.start()]
    return b"<!DOCTYPE" in prolog or b"<!ENTITY" in prolog


def parse_xml(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse ``data`` and return the root element, or raise.

    Raises ``UnsafeXmlError`` for documents over ``max_bytes`` or with a DOCTYPE,
    ``MalformedXmlError`` for anything that is not well-formed XML. An
    ``<?xml ?>`` declaration is optional (some real telegrams lack it).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedXmlError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    size = len(data)
    if size > max_bytes:
        raise UnsafeXmlError(f"document is {size} bytes, over the {max_bytes}-byte limit")
    if not data or data.isspace():
        raise MalformedXmlError(f"empty document ({size} bytes)")
    if _prolog_has_doctype(data):
        raise UnsafeXmlError(f"document has a DOCTYPE/ENTITY declaration ({size} bytes); refused")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        where = f" at line {exc.lineno}" if exc.lineno else ""
        if "entity" in str(exc.msg).lower():
            # libxml2's own amplification / loop guards fired: an entity bomb.
            raise UnsafeXmlError(f"entity expansion refused ({size} bytes){where}: {exc.msg}") from None
        raise MalformedXmlError(f"not well-formed XML ({size} bytes){where}: {exc.msg}") from None
    except (ValueError, TypeError) as exc:
        raise MalformedXmlError(f"cannot parse XML ({size} bytes): {exc}") from None
    if root is None:
        raise MalformedXmlError(f"no root element ({size} bytes)")
    docinfo = root.getroottree().docinfo
    # Defence in depth: the prolog scan misses a DOCTYPE hidden behind a
    # comment such as "<!-- <a -->"; the parsed tree does not.
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise UnsafeXmlError(f"document has a DOCTYPE ({size} bytes); refused")
    return root
