"""Open data: the archive of every public alert as CSV and JSON, under CC BY 4.0.

One row per alert and area (CSV) or one object per alert with its areas (JSON): when
it was sent and received, until when, its type, severity and state, and for each area
its name, codes and 警戒レベル. Content from JMA carries the credit 出典：気象庁, as
JMA's terms of use ask (https://www.jma.go.jp/jma/kishou/info/coment.html).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

LICENCE = "CC BY 4.0 https://creativecommons.org/licenses/by/4.0/"
JMA_CREDIT = "出典：気象庁"
COLUMNS = (
    "public_id", "url", "sent", "received", "expires", "status", "msg_type", "state", "event", "severity",
    "urgency", "certainty", "headline", "source", "sender", "area", "area_codes", "level", "credit",
)  # fmt: skip


def _credit(row: Mapping[str, Any]) -> str:
    return JMA_CREDIT if row["source"] == "jma" else ""


def _iso(value: Any) -> str:
    return value.isoformat() if value is not None else ""


def as_json(rows: Sequence[Mapping[str, Any]], base: str) -> bytes:
    alerts = [
        {
            "public_id": r["public_id"],
            "url": f"{base}/alerts/{r['public_id']}",
            "sent": _iso(r["sent"]),
            "received": _iso(r["received_at"]),
            "expires": _iso(r["expires"]) or None,
            "status": r["status"],
            "msg_type": r["msg_type"],
            "state": r["state"],
            "event": r["event"],
            "severity": r["severity"],
            "urgency": r["urgency"],
            "certainty": r["certainty"],
            "headline": r["headline"],
            "source": r["source"],
            "sender": r["sender"],
            "areas": [
                {
                    "name": a.get("description", ""),
                    "codes": list(a.get("codes", ())),
                    "level": (a.get("details") or {}).get("level"),
                }
                for a in r["areas"]
            ],
            "credit": _credit(r) or None,
        }
        for r in rows
    ]
    doc = {"licence": LICENCE, "credit": f"{JMA_CREDIT}（source = jma の情報）", "count": len(alerts), "alerts": alerts}
    return json.dumps(doc, ensure_ascii=False, indent=1).encode()


def as_csv(rows: Sequence[Mapping[str, Any]], base: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for r in rows:
        areas = list(r["areas"]) or [{}]
        for a in areas:
            writer.writerow(
                (
                    r["public_id"], f"{base}/alerts/{r['public_id']}", _iso(r["sent"]), _iso(r["received_at"]),
                    _iso(r["expires"]), r["status"], r["msg_type"], r["state"], r["event"], r["severity"],
                    r["urgency"], r["certainty"], r["headline"], r["source"], r["sender"], a.get("description", ""),
                    " ".join(a.get("codes", ())), (a.get("details") or {}).get("level", ""), _credit(r),
                )
            )  # fmt: skip
    # A BOM, so that spreadsheet programs in Japan read the UTF-8 as UTF-8.
    return ("\ufeff" + out.getvalue()).encode()
