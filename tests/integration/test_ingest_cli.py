"""``dispatcher ingest FILE...``: telegrams from disk take the feed's own path, and the same telegram is stored once."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg

from tests.samples import NUMAZU, add_subscribers

REPO = Path(__file__).resolve().parents[2]
QUAKE = "jma/official_samples/32-35_06_03_240613_VXSE53.xml"


def _run(config: Path, env: dict[str, str], *files: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", "--config", str(config), "ingest", *files],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_ingest_stores_and_fans_out_once(database: str, tmp_path: Path, shared_data: Path) -> None:
    await add_subscribers(database, "telegram", ["300001"], areas=[NUMAZU])
    config = tmp_path / "dispatcher.toml"
    config.write_text(
        f'[service]\nstate_dir = "{tmp_path}"\n[channels.telegram]\nenabled = true\ntoken_env = "TG"\n'
        'base_url = "http://127.0.0.1:9/bot"\n',
        encoding="utf-8",
    )
    env = {"DATABASE_URL": database, "TG": "42:TEST"}
    copy = tmp_path / "renamed.xml"
    shutil.copy(shared_data / QUAKE, copy)
    broken = tmp_path / "broken.xml"
    broken.write_bytes(b"<Report><Control>")

    first = await asyncio.to_thread(_run, config, env, str(shared_data / QUAKE))
    assert first.returncode == 0, first.stderr
    [line] = [json.loads(x) for x in first.stdout.splitlines()]
    assert line["outcome"] == "alert" and line["deliveries"] == 1 and line["state"] == "active"
    assert line["public_id"] and line["document"].startswith("file:sha256:")

    again = await asyncio.to_thread(_run, config, env, str(copy), str(broken), str(tmp_path / "missing.xml"))
    assert again.returncode == 1, "a broken or missing file is a failure"
    replay, bad, missing = (json.loads(x) for x in again.stdout.splitlines())
    assert replay["outcome"] == "already stored", "the same bytes under another name are the same telegram"
    assert bad["outcome"] == "error" and "error" in bad
    assert "cannot read" in missing["error"]

    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM alerts") == 1
        assert await conn.fetchval("SELECT count(*) FROM deliveries WHERE state = 'queued'") == 1
    finally:
        await conn.close()
