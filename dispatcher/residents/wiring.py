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
from dispatcher.store import residents as store
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


def district_follows(settings: Settings, config: TelegramConfig) -> dict[str, list[str]]:
    """Chat → the codes each configured district channel follows ("all": every district and the city)."""
    index = geo_index(settings.geo)
    districts = [d.code for d in index.districts]
    follows: dict[str, list[str]] = {}
    for district, chat in config.district_channels.items():
        if district == "all":
            codes = [*settings.service.area_codes, *districts]
        elif district in districts:
            codes = [district]
        else:
            raise ValueError(f"[channels.telegram] district_channels: unknown district {district!r}")
        follows.setdefault(chat, [])
        follows[chat] = list(dict.fromkeys([*follows[chat], *codes]))
    return follows


async def sync_district_channels(settings: Settings, pool: asyncpg.Pool, config: TelegramConfig) -> int:
    """Keep the district channels' subscriptions as configured (each posted to once per alert)."""
    follows = district_follows(settings, config)
    async with pool.acquire() as conn:
        return await store.sync_district_channels(conn, "telegram", follows)
