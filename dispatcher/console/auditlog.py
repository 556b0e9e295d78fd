"""The audit log as CSV: what ``/audit.csv`` serves and ``dispatcher audit --csv`` prints.

One row per entry, oldest first: ``id, at`` (ISO 8601, JST), ``actor, role, action,
target, address``, ``before, after`` (JSON). A cell that a spreadsheet would read as a
formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is
prefixed with ``'``, as OWASP advises for CSV exports (CSV injection): the log holds
text staff and senders typed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from datetime import timedelta, timezone
from typing import Any

from dispatcher.store.audit import COLUMNS

JST = timezone(timedelta(hours=9))
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "astimezone"):
        return str(value.astimezone(JST).isoformat(timespec="milliseconds"))
    text = json.dumps(value, ensure_ascii=False, sort_keys=True) if isinstance(value, dict | list) else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def csv_text(rows: Iterable[Mapping[str, Any]]) -> str:
    """The entries as CSV text with a header line (RFC 4180, CRLF line ends)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in COLUMNS])
    return out.getvalue()
