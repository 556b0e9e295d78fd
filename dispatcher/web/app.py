"""The daemon's web server: residents' pages, the staff console, the operators' dashboard and JSON API.

Routes, by the module that answers them (every route needs a staff login unless marked
public; roles in brackets, viewer by default: :mod:`dispatcher.web.auth`):

    GET /login, POST /login        public: the staff login (a 303 when it succeeds); POST /logout (auth)
    GET /                          dashboard: per alert and channel a live progress bar, the channels' health,
                                   pause/resume [approver] (dashboard; live updates: live, dashboard.js)
    GET /api/live                  Server-Sent Events: the live view's snapshot, then what changes (live)
    GET /api/dashboard             the live view as JSON; GET /api/alerts: recent alerts and totals (dashboard)
    GET /alerts/{id}/timeline      issue → receipt → storage → first/last delivery per channel, SVG (timeline)
    GET /api/alerts/{id}/timeline  the same figures as JSON (timeline)
    POST /deliveries/{id}/retry, POST /alerts/{id}/deliveries/retry   [approver] requeue failed ones (retry)
    GET /healthz                   public: liveness (database reachable; 200 "ok" or "degraded" with every
                                   paused channel, until when and why), this daemon's share (health)
    GET /metrics                   public: Prometheus metrics, no personal data (metrics)
    GET /alerts/{id}               public: one alert as residents read it; their messages link here (public)
    GET /reconcile, /api/reconcile operators: what providers confirm against what the database calls
                                   delivered (?since=), as `dispatcher reconcile` (reconcile)
    GET /alerts/{id}/deliveries    operators: every delivery's fate, why any failed
                                   (?state= &channel= &recipient= &after=)
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

from dispatcher.web import admin, auth, console, hygiene, live, reconcile, retry, site, subscribe, templating
from dispatcher.web.context import WEB, WebContext
from dispatcher.web.dashboard import api_alerts, api_dashboard, dashboard
from dispatcher.web.deliveries import api_deliveries, api_delivery, deliveries_page, delivery_page
from dispatcher.web.health import healthz
from dispatcher.web.metrics import metrics
from dispatcher.web.public import alert_page
from dispatcher.web.timeline import api_timeline, timeline_page

# Open to anyone: what residents read, the liveness probe, the stylesheet and script.
PUBLIC = (alert_page, site.alert, healthz, metrics, templating.stylesheet, templating.static_file, templating.favicon)


def create_app(context: WebContext) -> web.Application:
    """The application serving ``context``: every route above, the templates, the hygiene, the login."""
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app[WEB] = context
    hygiene.install(app, body_timeout=context.body_timeout, public=(alert_page, site.alert, templating.stylesheet))
    auth.install(app)
    templating.setup(app)
    live.install(app)
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
    app.router.add_get("/api/dashboard", api_dashboard)
    app.router.add_get("/api/live", live.live_events)
    app.router.add_get("/alerts/{id}/timeline", timeline_page)
    app.router.add_get("/api/alerts/{id}/timeline", api_timeline)
    app.router.add_get("/api/alerts/{id}/deliveries", api_deliveries)
    app.router.add_get("/api/deliveries/{id}", api_delivery)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    reconcile.add_routes(app)
    console.add_routes(app)
    admin.add_routes(app)
    retry.add_routes(app)
    app.router.add_routes(context.routes)
    # The public site, its feeds and residents' own subscription pages need no login.
    for route in (*site.routes(), *subscribe.routes()):
        auth.public(route.handler)
        app.router.add_route(route.method, route.path, route.handler)
    return app
