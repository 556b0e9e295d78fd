"""Command-line view of the JMA parser: one JSON object per telegram file.

The team wires ``parse_files`` as ``dispatcher parse FILE...``; ``python -m
sources.jma.cli FILE...`` prints the same JSON lines. Format reference:
https://xml.kishou.go.jp/.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .codes import AreaCodes, default_codes
from .parser import Failed, Parsed, parse_telegram

__all__ = ["main", "parse_files"]


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
            "areas": list(a.area_codes),
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
        failed |= "error" in row
        print(json.dumps(row, ensure_ascii=False))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
