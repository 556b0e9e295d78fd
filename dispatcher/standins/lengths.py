"""How the social providers measure a post: grapheme clusters, URLs, emoji.

Mastodon counts extended grapheme clusters with every URL as 23 and a remote mention
as its local part (``StatusLengthValidator``,
https://github.com/mastodon/mastodon/blob/main/app/validators/status_length_validator.rb);
Bluesky limits ``app.bsky.feed.post`` text to 300 graphemes and 3,000 UTF-8 bytes
(https://github.com/bluesky-social/atproto/blob/main/lexicons/app/bsky/feed/post.json);
X weighs code points and emoji and counts every URL as 23 (twitter-text, see
:mod:`dispatcher.standins.x_api`). Python's standard library has no UAX #29 grapheme
segmentation, hence the ``regex`` package and its ``\\X``.

URLs are found the way those providers' extractors (twitter-text's, which Mastodon
reuses) find the ones our messages carry: an ``http://`` or ``https://`` scheme not glued
to a preceding ASCII letter, digit, ``@``, ``$`` or ``#`` (Japanese text may run right up
to it), then printable ASCII up to a space, a non-ASCII character or trailing
punctuation. Bare domains without a scheme are not recognised; our messages always
carry the scheme.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import regex

_URL = regex.compile(r"(?<![A-Za-z0-9@$#＠＃])https?://[!-~]+", regex.IGNORECASE)
_TRAILING = ".,:;!?'\")]}>"
_GRAPHEME = regex.compile(r"\X")


def find_urls(text: str) -> list[tuple[int, int]]:
    """(start, end) of each URL in ``text``, as str indices."""
    spans = []
    for match in _URL.finditer(text):
        start, end = match.span()
        url = match.group()
        # A closing bracket stays when the URL opened one, as in Wikipedia links.
        while url and url[-1] in _TRAILING and not (url[-1] == ")" and url.count("(") >= url.count(")")):
            url = url[:-1]
            end -= 1
        if len(url) > len("https://"):
            spans.append((start, end))
    return spans


def graphemes(text: str) -> list[str]:
    """The extended grapheme clusters of ``text`` (UAX #29), e.g. a family emoji is one."""
    found: list[Any] = _GRAPHEME.findall(text)
    return [str(g) for g in found]


def grapheme_count(text: str) -> int:
    return len(graphemes(text))


def replace_spans(text: str, spans: list[tuple[int, int]], replacement: str | Callable[[str], str]) -> str:
    """``text`` with each (start, end) span replaced, spans in order and not overlapping.

    ``replacement`` is a string, or a function of the replaced substring.
    """
    out, last = [], 0
    for start, end in spans:
        out.append(text[last:start])
        out.append(replacement if isinstance(replacement, str) else replacement(text[start:end]))
        last = end
    out.append(text[last:])
    return "".join(out)
