"""Admin views (placeholder until the console lands)."""

from __future__ import annotations

from flask import abort

from pagegrid.admin import bp


@bp.get("/")
def users() -> str:
    """The user list."""
    abort(404)
