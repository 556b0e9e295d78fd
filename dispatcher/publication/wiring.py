"""What the daemon builds for publication: the signed links, the site, and what the web's forms need."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import asyncpg

from channels.base import SendResult
from channels.templates import Templates
from dispatcher.publication.config import PublicationConfig
from dispatcher.publication.site import Site
from dispatcher.publication.tokens import Links
from dispatcher.store import public
from geo.layers import Feature

if TYPE_CHECKING:
    from dispatcher.settings import Settings

CITY_NAME = "沼津市"


class Mailer(Protocol):
    """What sends the confirmation mails: the e-mail channel's relay connection."""

    async def send_mail(self, mail: EmailMessage, address: str) -> SendResult: ...


@dataclass
class Publication:
    """The public site and the forms' needs, as the web server is given them."""

    site: Site
    links: Links
    config: PublicationConfig
    public_url: str
    # Every code a subscriber may choose, with its name (the city's, then each district's).
    areas: Mapping[str, str]
    mailer: Mailer | None = None
    sender: str = ""
    # Per client address: times of recent subscription requests (the per-client limit).
    recent_requests: dict[str, list[float]] = field(default_factory=dict)

    def area_code(self, value: str) -> str | None:
        """The code a form's ``area`` names: a code, or a name (城 or its district names)."""
        value = value.strip()
        if value in self.areas:
            return value
        return next((code for code, name in self.areas.items() if name == value), None)


async def links_for(pool: asyncpg.Pool, config: PublicationConfig, public_url: str) -> Links:
    """The signed links: the configured secret, else the key every daemon of this database shares."""
    if config.secret:
        return Links(public_url, config.secret.encode())
    async with pool.acquire() as conn:
        return Links(public_url, await public.site_key(conn, "links"))


async def start_publication(
    pool: asyncpg.Pool,
    dsn: str,
    *,
    config: PublicationConfig,
    links: Links,
    templates: Templates,
    public_url: str,
    state_dir: Path,
    districts: list[Feature],
    city_codes: list[str],
    site_name: str,
    mailer: Mailer | None,
    sender: str,
) -> Publication:
    static_dir = Path(config.static_dir) if config.static_dir else state_dir / "site"
    site = Site(
        pool,
        templates=templates,
        config=config,
        public_url=public_url,
        static_dir=static_dir,
        districts=districts,
        city_codes=city_codes,
        site_name=site_name,
    )
    site.copy_stylesheet()
    await site.start(dsn)
    areas = {code: CITY_NAME for code in city_codes[:1]} | {d.code: d.name for d in districts}
    return Publication(site, links, config, public_url.rstrip("/"), areas, mailer, sender)


async def start_for(
    settings: Settings, pool: asyncpg.Pool, dsn: str, links: Links, channels: Mapping[str, Any]
) -> Publication:
    """:func:`start_publication` as the daemon calls it: from its settings and channels."""
    from channels.templates import local_codes_for
    from dispatcher.targeting import geo_index

    s = settings
    index = await asyncio.to_thread(geo_index, s.geo)
    email = channels.get("email")
    return await start_publication(
        pool,
        dsn,
        config=s.publication,
        links=links,
        templates=Templates.load(local_area_codes=local_codes_for(s.service.area_codes)),
        public_url=s.service.public_url,
        state_dir=Path(s.service.state_dir),
        districts=list(index.districts),
        city_codes=list(s.service.area_codes),
        site_name=s.service.name,
        mailer=cast("Mailer", email) if email is not None and hasattr(email, "send_mail") else None,
        sender=str(getattr(getattr(email, "config", None), "sender", "")),
    )
