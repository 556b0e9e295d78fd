"""The daemon's web server: residents' pages, the staff console, the operators' dashboard and JSON API.

Routes, by the module that answers them (every route needs a staff login unless marked
public; roles in brackets, viewer by default: :mod:`dispatcher.web.auth`):

    GET /login, POST /login        public: the staff login (a 303 when it succeeds); POST /logout (auth)
    GET /                          dashboard: recent alerts with per-channel delivery counts (dashboard)
    GET /api/alerts                the dashboard's data as JSON (dashboard)
    GET /healthz                   public: liveness (database reachable; 200 "ok" or "degraded" with every
                                   paused channel, until when and why), this daemon's share (health)
    GET /metrics                   public: Prometheus metrics, no personal data (metrics)
    GET /alerts/{id}               public: one alert as residents read it; their messages link here (public)
    GET /reconcile, /api/reconcile operators: what providers confirm against what the database calls
                                   delivered (?since=), as `dispatcher reconcile` (reconcile)
    GET /alerts/{id}/deliveries    operators: every delivery's fate, why any failed (?state= &channel= &after=)
    GET /deliveries/{id}           operators: one delivery and each of its transitions (deliveries)
    GET /api/alerts/{id}/deliveries, GET /api/deliveries/{id}: the operators' pages as JSON (deliveries)
    /console…, /exercise…          the staff console, live and exercise (console, compose)
    /staff, /audit, /audit.csv     [admin] accounts and the audit log; POST /channels/{name}/pause|resume
                                   [approver] (admin)
    GET /style.css, /static/{name} public: the stylesheet and the console's script (templating)
    POST /hooks/broadcast …        the pushed sources' own routes (``WebContext.routes``), public: signed
    GET /public/ … /feeds/ … /open-data/ …   public: the public site and open feeds (site)
    GET|POST /subscribe …          public: e-mail subscriptions: opt-in, own page, one-click unsubscribe
                                   (subscribe; its forms carry their own signed CSRF token)

Pages are Jinja2 templates (:mod:`dispatcher.web.templating`); their data comes from
:mod:`dispatcher.store.reports` and :mod:`dispatcher.store.alerts`. Path ids and query
parameters are checked before any query (:mod:`dispatcher.web.params`). Headers,
timeouts, limits and the last-resort error answers are :mod:`dispatcher.web.hygiene`'s.
"""

from __future__ import annotations

from aiohttp import web

from dispatcher.web import admin, auth, console, hygiene, reconcile, site, subscribe, templating
from dispatcher.web.context import WEB, WebContext
from dispatcher.web.dashboard import api_alerts, dashboard
from dispatcher.web.deliveries import api_deliveries, api_delivery, deliveries_page, delivery_page
from dispatcher.web.health import healthz
from dispatcher.web.metrics import metrics
from dispatcher.web.public import alert_page

# Open to anyone: what residents read, the liveness probe, the stylesheet and script.
PUBLIC = (alert_page, site.alert, healthz, metrics, templating.stylesheet, templating.static_file, templating.favicon)


def create_app(context: WebContext) -> web.Application:
    """The application serving ``context``: every route above, the templates, the hygiene, the login."""
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app[WEB] = context
    hygiene.install(app, body_timeout=context.body_timeout, public=(alert_page, site.alert, templating.stylesheet))
    auth.install(app)
    templating.setup(app)
    for handler in PUBLIC:
        auth.public(handler)
    app.router.add_get("/style.css", templating.stylesheet)
    app.router.add_get("/static/{name}", templating.static_file)
    app.router.add_get("/favicon.ico", templating.favicon)
    app.router.add_get("/login", auth.login_form)
    app.router.add_post("/login", auth.login)
    app.router.add_post("/logout", auth.logout)
    app.router.add_get("/", dashboard)
    app.router.add_get("/alerts/{id}", site.alert)
    app.router.add_get("/alerts/{id}/deliveries", deliveries_page)
    app.router.add_get("/deliveries/{id}", delivery_page)
    app.router.add_get("/api/alerts", api_alerts)
    app.router.add_get("/api/alerts/{id}/deliveries", api_deliveries)
    app.router.add_get("/api/deliveries/{id}", api_delivery)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    reconcile.add_routes(app)
    console.add_routes(app)
    admin.add_routes(app)
    app.router.add_routes(context.routes)
    # The public site, its feeds and residents' own subscription pages need no login.
    for route in (*site.routes(), *subscribe.routes()):
        auth.public(route.handler)
        app.router.add_route(route.method, route.path, route.handler)
    return app
