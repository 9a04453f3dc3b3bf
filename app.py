"""Entry point for ``flask --app app``."""

from pagegrid import create_app

__all__ = ["create_app"]
