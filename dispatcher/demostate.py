"""Where a running ``dispatcher demo`` keeps its data, so that the other commands find it.

The demo writes its own database (``dispatcher_demo``), not the one ``dispatcher status``
reads by default. While it runs it leaves ``<state_dir>/demo.json`` (its process id, the
database's name, the dashboard's address, its Mastodon stand-in's address for
``dispatcher reconcile``'s read-back; no secrets: only the embedded server's database is
named, never a URL, and the stand-ins take any token); the CLI reads the demo's database
when that process is alive and neither ``DATABASE_URL`` nor the configuration names a
database, and says so on stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE = "demo.json"


@dataclass(frozen=True, slots=True)
class DemoState:
    """A running demo: its process, its database on the embedded server, its dashboard."""

    pid: int
    database: str
    web_url: str
    path: Path
    # The demo's provider stand-ins that can be read back: channel name → base_url.
    read_back: dict[str, str] = field(default_factory=dict)


def write(state_dir: Path, *, database: str, web_url: str, read_back: dict[str, str] | None = None) -> Path:
    """Record this process as the running demo (readable by the owner only)."""
    path = state_dir / FILE
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"pid": os.getpid(), "database": database, "web_url": web_url, "read_back": read_back or {}}),
        encoding="utf-8",
    )
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def remove(state_dir: Path) -> None:
    """Forget the demo (only if the file is this process's)."""
    found = read(state_dir, alive_only=False)
    if found is not None and found.pid == os.getpid():
        with contextlib.suppress(OSError):
            found.path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read(state_dir: Path, *, alive_only: bool = True) -> DemoState | None:
    """The running demo recorded in ``state_dir`` (None: none, or its process is gone)."""
    path = state_dir / FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        read_back = {str(k): str(v) for k, v in dict(data.get("read_back") or {}).items()}
        state = DemoState(int(data["pid"]), str(data["database"]), str(data.get("web_url", "")), path, read_back)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if alive_only and not _alive(state.pid):
        return None
    return state


def in_use(settings: Any) -> DemoState | None:
    """The running demo whose database the CLI reads with ``settings`` (none if they name a database)."""
    from dispatcher.settings import DatabaseConfig

    if settings.database_url() is not None or settings.database.embedded_database != DatabaseConfig().embedded_database:
        return None
    return read(settings.service.state_dir)
