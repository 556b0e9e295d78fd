"""Structured logging: ``key=value`` text for people, JSON lines for machines (``[service] log_format``).

Fields passed through ``extra=`` (``alert_id``, ``delivery_id``, ``channel``…)
are appended to every line; a line about a delivery carries all three, a line about an
alert its ``alert_id`` once it has one. Secrets are never passed to the logger.

Every JSON line has an ``event``: one name per kind of line, to filter and count by
(``delivery.delivered``, ``alert.queued``…). A call names it with ``extra={"event": …}``;
otherwise it is derived from the logger and the message's template (before ``%``
formatting), ``worker.channel_budget_shared``, so it stays the same for every line of
that kind. Text lines leave it out.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")}


_PREFIXES = ("dispatcher.", "sources.", "channels.")


def event_name(record: logging.LogRecord) -> str:
    """The line's ``event``: given in ``extra``, else ``<module>.<words of the message template>``."""
    given = record.__dict__.get("event")
    if isinstance(given, str) and given:
        return given
    module = record.name
    for prefix in _PREFIXES:
        if module.startswith(prefix):
            module = module[len(prefix) :]
            break
    template = re.sub(r"%[-#0 +]*\d*(?:\.\d+)?[sdifr]", " ", str(record.msg).lower())
    words = re.sub(r"[^a-z0-9]+", "_", template).strip("_")
    return f"{module}.{words[:60].rstrip('_')}"


def _json_value(value: Any) -> Any:
    if isinstance(value, int | float | bool | None | str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, int | float | str) for v in value):
        return list(value)
    return str(value)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).astimezone().strftime("%H:%M:%S.%f")[:-3]
        parts = [ts, f"{record.levelname:<7}", f"{record.name}:", record.getMessage()]
        for key, value in _extras(record).items():
            if key == "event":
                continue
            text = str(value)
            parts.append(f"{key}={json.dumps(text, ensure_ascii=False) if ' ' in text else text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "event": event_name(record),
            "msg": record.getMessage(),
        }
        obj.update({k: _json_value(v) for k, v in _extras(record).items() if k != "event"})
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False)


def setup(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "apscheduler", "httpx", "httpcore", "telegram", "mail.log", "pgserver"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
