"""What the daemon hands the console's pages: the path (:class:`~dispatcher.console.workflow.Console`), the renderers.

:func:`console_setup` is called by ``Service.web_context``; the pages never see the
Service. The console hands alerts to the pipeline through :class:`PipelineDispatch`,
the same ``emit`` every source uses (impatient: a person is waiting for the answer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from dispatcher.console.compose import Renderer
from dispatcher.console.messages import load_messages
from dispatcher.console.workflow import Console, Dispatched
from dispatcher.model import Alert
from dispatcher.settings import Settings


class Emitter(Protocol):
    """``ServiceContext.emit``: the pipeline's front door, waiting out a short database outage."""

    async def emit(self, alert: Alert, *, patient: bool = True) -> Any: ...


class Releaser(Protocol):
    """The pipeline: what releases a held alert, and the targeter that says whom an alert reaches."""

    targeter: Any

    async def release(self, alert_id: int) -> Any: ...


class PipelineDispatch:
    """:class:`~dispatcher.console.workflow.Dispatch` over the daemon's pipeline."""

    def __init__(self, emitter: Emitter, pipeline: Releaser) -> None:
        self._emitter = emitter
        self._pipeline = pipeline

    async def emit(self, alert: Alert) -> Dispatched:
        result: Dispatched = await self._emitter.emit(alert, patient=False)
        return result

    async def release(self, alert_id: int) -> Dispatched:
        result: Dispatched = await self._pipeline.release(alert_id)
        return result

    def target_codes(self, alert: Alert) -> list[str]:
        codes, _unknown = self._pipeline.targeter.target_codes(alert)
        return list(codes)


@dataclass(frozen=True, slots=True)
class ConsoleSetup:
    """The console's part of the web context: the path, and every enabled channel for the previews."""

    console: Console
    renderers: Mapping[str, Renderer]


def console_setup(
    settings: Settings, pool: asyncpg.Pool, emitter: Emitter, pipeline: Releaser, channels: Mapping[str, Renderer]
) -> ConsoleSetup:
    """Build the console from the configuration (the message templates are read here: a bad file is refused)."""
    from dispatcher.targeting import geo_index

    messages = load_messages(settings.console.messages or None)
    dispatch = PipelineDispatch(emitter, pipeline)
    console = Console(pool, settings.console, messages, geo_index(settings.geo), dispatch)
    return ConsoleSetup(console, dict(channels))
