"""``dispatcher demo --once``: the newcomer's first command, end to end, as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_once_delivers_every_expected_message(tmp_path: Path) -> None:
    # Its own working directory: a fresh embedded PostgreSQL in ./var, as on a new machine
    # (or $DATABASE_URL's server, where it uses a database of its own).
    proc = subprocess.run(
        [sys.executable, "-m", "dispatcher", "demo", "--once", "--port", "0"],
        cwd=tmp_path,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "OK: every expected delivery was made" in out
    assert "telegrams fetched: 4 (4 parsed)" in out
    telegram_row = next(line for line in out.splitlines() if line.strip().startswith("telegram "))
    assert telegram_row.split()[1:] == ["0", "0", "7", "0", "7", "7"]
    # The log shows an alert arriving and being delivered.
    assert "alert queued" in proc.stderr and "delivered" in proc.stderr, proc.stderr[-4000:]
