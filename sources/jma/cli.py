"""Command-line view of the JMA parser: one JSON object per telegram file.

The team wires ``parse_files`` as ``dispatcher parse FILE...``; ``python -m
sources.jma.cli FILE...`` prints the same JSON lines. Both exit 1 when any file
failed or could not be read (each still has its line, with ``error``).
Format reference: https://xml.kishou.go.jp/.

Per alert: ``level`` (the highest 警戒レベル, or null) and ``areas`` as objects
``{"code", "name", "kinds", "level"}``: the area's first JMA code, its name,
the warning kinds in force there (or the family's category for it, e.g. the
tsunami grade or the flood kind) and its 警戒レベル (int or null).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dispatcher.model import Area
from sources.outcome import Failed, Parsed

from .codes import AreaCodes, default_codes
from .parser import parse_telegram

__all__ = ["is_failure", "main", "parse_files"]


# Area details naming what applies there, by family, in order of preference.
_KIND_KEYS = ("warnings", "category", "kind", "lifted")


def _area(area: Area) -> dict[str, Any]:
    d = area.details
    kinds = next((d[k] for k in _KIND_KEYS if d.get(k)), "")
    level = d.get("level")
    return {
        "code": area.codes[0] if area.codes else None,
        "name": area.description,
        "kinds": [k for k in kinds.split(",") if k] if kinds else [],
        "level": int(level) if level else None,
    }


def is_failure(row: dict[str, Any]) -> bool:
    """Whether a ``parse_files`` row is a file that failed or could not be read."""
    return "error" in row


def _row(path: Path, codes: AreaCodes) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return {"file": str(path), "error": f"cannot read: {exc.strerror or exc}"}
    outcome = parse_telegram(data, url=path.name, codes=codes)
    if isinstance(outcome, Failed):
        return {"file": str(path), "error": outcome.error}
    if isinstance(outcome, Parsed):
        a = outcome.alert
        return {
            "file": str(path),
            "supported": True,
            "kind": a.kind,
            "identifier": a.identifier,
            "series_key": a.series_key,
            "sent": a.sent.isoformat(),
            "status": a.status.value,
            "msg_type": a.msg_type.value,
            "event": a.event,
            "severity": a.severity.value,
            "urgency": a.urgency.value,
            "certainty": a.certainty.value,
            "priority": a.priority.name.lower(),
            "headline": a.headline,
            "level": a.details.get("level"),
            "areas": [_area(area) for area in a.areas],
            "references": list(a.references),
            "expires": a.expires.isoformat() if a.expires else None,
        }
    return {
        "file": str(path),
        "supported": False,
        "kind": outcome.kind,
        "title": outcome.title,
        "head_title": outcome.head_title,
        "reason": outcome.reason,
        "identifier": None,
        "series_key": outcome.series_key,
        "status": outcome.status.value if outcome.status else None,
        "msg_type": outcome.msg_type.value if outcome.msg_type else None,
        "event": outcome.head_title or outcome.title,
        "severity": outcome.rating.severity.value,
        "headline": "",
        "level": None,
        "areas": [],
        "references": [],
    }


def parse_files(paths: Iterable[str | Path], codes: AreaCodes | None = None) -> Iterator[dict[str, Any]]:
    """Yield one JSON-serialisable summary per file; broken files yield ``file`` + ``error``."""
    table = codes or default_codes()
    for path in paths:
        yield _row(Path(path), table)


def main(argv: Sequence[str] | None = None) -> int:
    """Print one JSON line per file; exit 1 if any file failed."""
    args = list(sys.argv[1:] if argv is None else argv)
    failed = False
    for row in parse_files(args):
        failed |= is_failure(row)
        print(json.dumps(row, ensure_ascii=False))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
