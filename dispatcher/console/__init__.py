"""The staff console's rules, apart from its pages: accounts, message templates, the two-person path.

``config.py`` ([console]), ``accounts.py`` (roles, argon2id passwords, account changes
with their audit entries), ``messages.py`` (the city's message templates,
``config/console/messages.toml``), ``compose.py`` (a message → the Alert it sends, its
retraction, the previews), ``workflow.py`` (draft → submitted → approved and sent |
rejected | returned; cancel; held broadcasts), ``wiring.py`` (what the daemon hands the
pages). The pages themselves are :mod:`dispatcher.web.console` and its neighbours.
"""
