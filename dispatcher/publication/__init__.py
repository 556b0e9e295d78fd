"""Publication: the public site, its static copy, the open feeds and e-mail subscriptions.

``config.py`` is the ``[publication]`` section; ``tokens.py`` the signed links and
anonymous forms' CSRF; ``view.py`` what a resident reads of an alert (pure);
``render.py`` the pages from Jinja2 templates; ``feeds.py`` Atom, ``cap.py`` CAP 1.2
out, ``opendata.py`` CSV and JSON, ``svgmap.py`` the district map; ``site.py`` keeps
every public page and feed in memory and writes the static copy on every change.
"""
