"""Public docs pages (placeholder until the docs land)."""

from __future__ import annotations

from flask import abort

from pagegrid.dashboard import bp


@bp.get("/docs/", defaults={"name": "getting-started"})
@bp.get("/docs/<name>")
def docs(name: str) -> str:
    """One docs page."""
    abort(404)
