"""Example broadcasts in both forms, and the console side of the signature.

What the README documents, the tests post and ``bench/broadcast_trip.py`` sends: a CAP
1.2 document in the city's profile (https://docs.oasis-open.org/emergency/cap/v1.2/CAP-v1.2.html)
and the JSON form, plus :func:`signed_headers`, which is all a console needs to sign a
request (``dispatcher.signing.sign``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime
from xml.sax.saxutils import escape

from dispatcher.signing import sign


def signed_headers(secret: str, body: bytes, content_type: str, *, timestamp: int | None = None) -> dict[str, str]:
    """Headers for POSTing ``body`` to ``/hooks/broadcast``, signed now (or at ``timestamp``)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {"Content-Type": content_type, "X-Timestamp": ts, "X-Signature-256": sign(secret, ts, body)}


def json_body(
    identifier: str,
    text: str,
    groups: Sequence[str],
    *,
    aired_at: datetime,
    priority: str = "emergency",
    chime: str = "緊急チャイム",
    category: str | None = None,
    exercise: bool = False,
) -> bytes:
    """The JSON form of a broadcast."""
    doc: dict[str, object] = {
        "id": identifier,
        "aired_at": aired_at.isoformat(),
        "priority": priority,
        "chime": chime,
        "groups": list(groups),
        "text": text,
    }
    if category:
        doc["category"] = category
    if exercise:
        doc["exercise"] = True
    return json.dumps(doc, ensure_ascii=False).encode()


def cap_body(
    identifier: str,
    text: str,
    groups: Sequence[str],
    *,
    sent: datetime,
    sender: str = "bousai-musen.city.numazu.shizuoka.jp",
    priority: str = "emergency",
    chime: str = "緊急チャイム",
    category: str | None = None,
    status: str = "Actual",
    msg_type: str = "Alert",
    references: str = "",
    area_desc: str = "",
) -> bytes:
    """A CAP 1.2 broadcast in the city's profile (groups as ``speaker_group`` geocodes)."""
    geocodes = "".join(
        f"<geocode><valueName>speaker_group</valueName><value>{escape(g)}</value></geocode>" for g in groups
    )
    params = f"<parameter><valueName>priority</valueName><value>{escape(priority)}</value></parameter>"
    params += f"<parameter><valueName>chime</valueName><value>{escape(chime)}</value></parameter>"
    if category:
        params += f"<parameter><valueName>category</valueName><value>{escape(category)}</value></parameter>"
    refs = f"<references>{escape(references)}</references>" if references else ""
    urgency, severity = ("Immediate", "Severe") if priority == "emergency" else ("Expected", "Minor")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{escape(identifier)}</identifier>
  <sender>{escape(sender)}</sender>
  <sent>{sent.isoformat(timespec="seconds")}</sent>
  <status>{status}</status>
  <msgType>{msg_type}</msgType>
  <scope>Public</scope>{refs}
  <info>
    <language>ja-JP</language>
    <category>Safety</category>
    <event>防災行政無線</event>
    <urgency>{urgency}</urgency>
    <severity>{severity}</severity>
    <certainty>Observed</certainty>
    <senderName>沼津市 危機管理課</senderName>
    <description>{escape(text)}</description>
    {params}
    <area>
      <areaDesc>{escape(area_desc or "、".join(groups))}</areaDesc>
      {geocodes}
    </area>
  </info>
</alert>
""".encode()
