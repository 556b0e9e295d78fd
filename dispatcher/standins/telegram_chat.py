"""``dispatcher standin-chat URL CHAT``: be a resident talking to the bot through the Telegram stand-in.

Reads lines from the terminal and plays them as the resident of chat ``CHAT`` on the
stand-in at ``URL`` (what ``dispatcher demo`` prints), then prints what the bot answers,
with its buttons numbered:

* any text, or a command (``/start``, ``/latest``…): typed into the chat;
* ``1``, ``2``…: press that button of the bot's last keyboard;
* ``@ 35.10 138.86``: share a location;
* an empty line: show what arrived meanwhile; ``quit`` (or end of input): stop.

It only speaks the stand-in's control routes (``/_standin/chats/…``, see
:mod:`dispatcher.standins.telegram_updates`), the same ones a curl line can use.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp


def _root(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class StandinChat:
    """One resident's chat on the stand-in; :meth:`transcript` holds every line said."""

    def __init__(self, url: str, chat: str, http: aiohttp.ClientSession) -> None:
        self.base = f"{_root(url)}/_standin/chats/{chat}"
        self.http = http
        self.seen: dict[int, int] = {}
        self.keyboard: list[str] = []
        self.transcript: list[str] = []

    async def _post(self, action: str, body: dict[str, Any]) -> None:
        async with self.http.post(f"{self.base}/{action}", json=body) as resp:
            if resp.status != 200:
                raise RuntimeError(f"stand-in answered {resp.status}: {await resp.text()}")

    async def say(self, line: str) -> None:
        """Play one input line (see the module docstring)."""
        line = line.strip()
        if not line:
            return
        if line.isdigit() and 1 <= int(line) <= len(self.keyboard):
            data = self.keyboard[int(line) - 1]
            self.transcript.append(f"> [press {line}: {data}]")
            await self._post("press", {"data": data})
        elif line.startswith("@"):
            lat, lon = (float(x) for x in line[1:].split())
            self.transcript.append(f"> [location {lat} {lon}]")
            await self._post("location", {"lat": lat, "lon": lon})
        else:
            self.transcript.append(f"> {line}")
            await self._post("type", {"text": line})

    async def news(self, wait: float = 3.0) -> list[str]:
        """The bot's messages (new or edited) that arrive within ``wait`` seconds, rendered."""
        out: list[str] = []
        deadline = asyncio.get_running_loop().time() + wait
        quiet_since = None
        while asyncio.get_running_loop().time() < deadline:
            async with self.http.get(f"{self.base}/messages") as resp:
                messages = (await resp.json())["messages"]
            fresh = [m for m in messages if self.seen.get(m["message_id"]) != m["edits"]]
            for m in fresh:
                self.seen[m["message_id"]] = m["edits"]
                out.append(self._render(m))
            if fresh:
                quiet_since = asyncio.get_running_loop().time()
            elif out and quiet_since is not None and asyncio.get_running_loop().time() - quiet_since > 1.5:
                break
            await asyncio.sleep(0.1)
        self.transcript.extend(out)
        return out

    def _render(self, m: dict[str, Any]) -> str:
        lines = [("(edited) " if m["edits"] else "") + "bot: " + m["text"].replace("\n", "\n     ")]
        buttons = [b for row in m["buttons"] for b in row]
        if buttons:
            self.keyboard = [b.get("callback_data", "") for b in buttons]
            lines.append("     " + "  ".join(f"[{i}] {b.get('text', '')}" for i, b in enumerate(buttons, 1)))
        return "\n".join(lines)


async def converse(url: str, chat: str, lines: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    """The interactive loop of ``dispatcher standin-chat``."""
    async with aiohttp.ClientSession() as http:
        chat_ = StandinChat(url, chat, http)
        print(f"chat {chat} on {_root(url)}: type text or /commands, a button number, '@ LAT LON'", file=out)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, lines.readline)
            if not line or line.strip() == "quit":
                return 0
            try:
                await chat_.say(line)
            except (RuntimeError, ValueError, aiohttp.ClientError) as exc:
                print(f"error: {exc}", file=out)
                continue
            for text in await chat_.news():
                print(text, file=out, flush=True)
