"""The daemon's web server: operators' dashboard, alert pages and JSON API (aiohttp, https://docs.aiohttp.org/).

Routes, by the module that answers them:
    GET /                          dashboard: recent alerts with per-channel delivery counts (dashboard)
    GET /api/alerts                the dashboard's data as JSON (dashboard)
    GET /healthz                   liveness (database reachable; 200 "ok" or "degraded" with every paused
                                   channel, until when and why), this daemon's share among the live ones (health)
    GET /alerts/{id}               one alert as residents read it; their messages link here (public)
    GET /alerts/{id}/deliveries    operators: every delivery's fate, why any failed (?state= &channel= &after=)
    GET /deliveries/{id}           operators: one delivery and each of its transitions (deliveries)
    GET /api/alerts/{id}/deliveries, GET /api/deliveries/{id}: the operators' pages as JSON (deliveries)
    GET /style.css                 the pages' stylesheet, a file (templating)
    POST /hooks/broadcast …        the pushed sources' own routes (``WebContext.routes``)

Pages are Jinja2 templates (:mod:`dispatcher.web.templating`); their data comes from
:mod:`dispatcher.store.reports` and :mod:`dispatcher.store.alerts`. Path ids and query
parameters are checked before any query (:mod:`dispatcher.web.params`). Headers,
timeouts, limits and the last-resort error answers are :mod:`dispatcher.web.hygiene`'s.
"""

from __future__ import annotations

from aiohttp import web

from dispatcher.web import hygiene, templating
from dispatcher.web.context import WEB, WebContext
from dispatcher.web.dashboard import api_alerts, dashboard
from dispatcher.web.deliveries import api_deliveries, api_delivery, deliveries_page, delivery_page
from dispatcher.web.health import healthz
from dispatcher.web.public import alert_page


def create_app(context: WebContext) -> web.Application:
    """The application serving ``context``: every route above, the templates, the hygiene."""
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app[WEB] = context
    hygiene.install(app, body_timeout=context.body_timeout, public=(alert_page, templating.stylesheet))
    templating.setup(app)
    app.router.add_get("/style.css", templating.stylesheet)
    app.router.add_get("/", dashboard)
    app.router.add_get("/alerts/{id}", alert_page)
    app.router.add_get("/alerts/{id}/deliveries", deliveries_page)
    app.router.add_get("/deliveries/{id}", delivery_page)
    app.router.add_get("/api/alerts", api_alerts)
    app.router.add_get("/api/alerts/{id}/deliveries", api_deliveries)
    app.router.add_get("/api/deliveries/{id}", api_delivery)
    app.router.add_get("/healthz", healthz)
    app.router.add_routes(context.routes)
    return app
