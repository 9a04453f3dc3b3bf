"""Entry point for ``gunicorn wsgi:app`` (the gevent worker has patched the stdlib by now)."""

import logging

from pagegrid import create_app

app = create_app()

_log = logging.getLogger("gunicorn.error")
for _provider in ("anthropic", "openai"):
    if not app.config.get(f"PAGEGRID_{_provider.upper()}_KEY"):
        _log.warning("PAGEGRID_%s_KEY is not set: %s models are answered by the built-in DEMO "
                     "upstream unless an upstream account is configured in the admin console",
                     _provider.upper(), _provider)
