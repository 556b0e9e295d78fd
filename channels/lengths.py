"""How each provider counts a message's length: pure functions, one per rule, for the channels and the console.

* **Telegram** counts characters (code points) after entities are parsed: at most 4,096
  (https://core.telegram.org/bots/api#sendmessage): :func:`characters`.
* **LINE** counts UTF-16 code units: at most 5,000 per text message
  (https://developers.line.biz/en/reference/messaging-api/#text-message): :func:`utf16_units`.
* **X** counts weighted characters (twitter-text 3, ``config/v3.json``,
  https://github.com/twitter/twitter-text): code points in the Latin, punctuation and
  typographic ranges weigh 1, everything else (CJK, kana, emoji) 2, and every URL 23,
  whatever its length; at most 280: :func:`x_weighted`.
* **Bluesky** counts graphemes (user-perceived characters, Unicode UAX #29): at most 300
  per post (https://docs.bsky.app/docs/advanced-guides/post-richtext): :func:`graphemes`.
* **Mastodon** counts code points, every URL as 23: at most 500 by default
  (https://docs.joinmastodon.org/user/posting/#text): :func:`mastodon`.

:data:`LIMITS` names each provider's rule and limit, so a channel declares its own
(``Channel.measure``) and the console's previews count as the provider will.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

# twitter-text's URL detection is elaborate; a scheme-led run of non-space characters
# is what our messages contain (the alert's link).
_URL = re.compile(r"https?://[^\s<>\"'）」』】]+")
URL_WEIGHT = 23
# twitter-text v3 ranges of weight 100 (i.e. 1); the default weight is 200 (i.e. 2).
_LIGHT_RANGES = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))


def characters(text: str) -> int:
    """Code points: what Telegram (and most providers) count."""
    return len(text)


def utf16_units(text: str) -> int:
    """UTF-16 code units: LINE's count (a character outside the BMP, e.g. most emoji, is 2)."""
    return len(text.encode("utf-16-le")) // 2


def _weight(ch: str) -> int:
    cp = ord(ch)
    return 1 if any(low <= cp <= high for low, high in _LIGHT_RANGES) else 2


def x_weighted(text: str) -> int:
    """X's weighted length: Latin 1, CJK and everything else 2, each URL 23."""
    total = 0
    pos = 0
    for match in _URL.finditer(text):
        total += sum(_weight(c) for c in text[pos : match.start()]) + URL_WEIGHT
        pos = match.end()
    return total + sum(_weight(c) for c in text[pos:])


def mastodon(text: str) -> int:
    """Mastodon's length: code points, each URL 23."""
    return len(_URL.sub("x" * URL_WEIGHT, text))


_ZWJ = "\u200d"


def _extends(ch: str) -> bool:
    """Joins the previous grapheme: combining marks (Mn, Me, Mc), variation selectors, emoji modifiers, ZWJ."""
    cp = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Me", "Mc")
        or ch == _ZWJ
        or 0xFE00 <= cp <= 0xFE0F
        or 0x1F3FB <= cp <= 0x1F3FF
        or 0xE0020 <= cp <= 0xE007F  # emoji tag sequences (subdivision flags)
        or 0xFF9E <= cp <= 0xFF9F  # half-width (han)dakuten
    )


def _regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def graphemes(text: str) -> int:
    """User-perceived characters, by the main rules of UAX #29.

    CR LF is one; a combining mark, variation selector, emoji modifier or tag joins the
    character before it; a ZWJ joins the next character too (👨‍👩‍👧 is one); regional
    indicators pair into flags. Hangul syllable composition from jamo is not handled
    (precomposed Hangul, which is what text contains, is one code point anyway).
    """
    count = 0
    prev = ""
    regional_run = 0
    for ch in text:
        joins = bool(prev) and (
            (prev == "\r" and ch == "\n")
            or _extends(ch)
            or prev == _ZWJ
            or (_regional(ch) and _regional(prev) and regional_run % 2 == 1)
        )
        regional_run = regional_run + 1 if _regional(ch) else 0
        if not joins:
            count += 1
        prev = ch
    return count


@dataclass(frozen=True, slots=True)
class Limit:
    """A provider's length rule: how it counts, and how much it takes."""

    measure: Callable[[str], int]
    maximum: int
    unit: str


LIMITS: dict[str, Limit] = {
    "telegram": Limit(characters, 4096, "characters"),
    "line": Limit(utf16_units, 5000, "UTF-16 units"),
    "x": Limit(x_weighted, 280, "weighted characters"),
    "bluesky": Limit(graphemes, 300, "graphemes"),
    "mastodon": Limit(mastodon, 500, "characters"),
}
