"""The daemon's web server: pages for operators and residents, the JSON API, the providers' webhooks.

:func:`dispatcher.web.app.create_app` builds it from a :class:`dispatcher.web.context.WebContext`;
one module per page family, templates under ``templates/``, the stylesheet under ``static/``.
"""
