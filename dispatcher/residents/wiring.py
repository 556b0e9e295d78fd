"""Building the residents' bots from the configuration (the daemon's side, :mod:`dispatcher.app`)."""

from __future__ import annotations

import asyncpg

from channels.telegram import TelegramConfig
from channels.templates import Templates
from dispatcher.residents.directory import GeoDirectory
from dispatcher.residents.service import ResidentService
from dispatcher.residents.telegram import WEBHOOK_PATH, TelegramBot
from dispatcher.residents.texts import load_ui_texts
from dispatcher.settings import Settings
from dispatcher.targeting import geo_index


def resident_service(settings: Settings, pool: asyncpg.Pool, templates: Templates) -> ResidentService:
    """The conversation core over the configured geo layers, the bot texts and the message templates."""
    return ResidentService(
        pool,
        directory=GeoDirectory(geo_index(settings.geo)),
        ui=load_ui_texts(),
        templates=templates,
        public_url=settings.service.public_url,
    )


def telegram_bot(settings: Settings, pool: asyncpg.Pool, config: TelegramConfig, templates: Templates) -> TelegramBot:
    """The Telegram bot; its webhook is ``[service] public_url`` + /hooks/telegram unless configured."""
    url = settings.service.public_url.rstrip("/") + WEBHOOK_PATH
    return TelegramBot(config, pool, resident_service(settings, pool, templates), webhook_url=url)
