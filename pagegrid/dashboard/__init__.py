"""Blueprint ``dashboard``: the web pages (for now the landing page and health probes)."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import render_template

from pagegrid.api.relay import upstream_target
from pagegrid.catalog import catalog

bp = Blueprint("dashboard", __name__)


@bp.route("/", methods=["GET", "HEAD"])
def index() -> str:
    """The landing page; ``HEAD /`` is Claude Code's reachability probe."""
    models = catalog().active()
    demo = any(upstream_target(m.provider).provider == "demo" for m in models)
    return render_template("index.html", models=models, demo=demo)


@bp.route("/v1", methods=["GET", "HEAD"])
def api_root() -> Response:
    """``HEAD /v1``: Claude Code probes it before the first request."""
    return Response('{"status":"ok"}', mimetype="application/json")
