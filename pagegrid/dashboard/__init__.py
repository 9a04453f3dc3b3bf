"""Blueprint ``dashboard``: the customer's pages, the public docs and the health probes."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_login import current_user
from flask_login import login_required

from pagegrid import ledger
from pagegrid.catalog import catalog
from pagegrid.pool import upstream_label

bp = Blueprint("dashboard", __name__)


@bp.app_context_processor
def _layout() -> dict:
    """Values every page needs: is any provider answered by the demo upstream?"""
    providers = {m.provider for m in catalog().active()}
    return {"demo_upstream": any(upstream_label(p) == "demo" for p in providers)}


@bp.route("/", methods=["GET", "HEAD"])
def index():  # noqa: ANN201 - a page or a redirect
    """The landing page; ``HEAD /`` is Claude Code's reachability probe."""
    if request.method == "HEAD":
        return Response(status=200)
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.overview"))
    return render_template("index.html", models=catalog().active())


@bp.route("/v1", methods=["GET", "HEAD"])
def api_root() -> Response:
    """``HEAD /v1``: Claude Code probes it before the first request."""
    return Response('{"status":"ok"}', mimetype="application/json")


@bp.get("/dashboard")
@login_required
def overview() -> str:
    """Balance, keys and the latest charges at a glance."""
    summary = ledger.summary(current_user.id)
    recent = ledger.history(current_user.id, ledger.Filters(), page=1, per_page=8)
    return render_template("dashboard/overview.html", summary=summary, recent=recent,
                           labels=ledger.key_labels(current_user.id))


# Views register themselves on ``bp``.
from pagegrid.dashboard import activity  # noqa: E402,F401
from pagegrid.dashboard import alerts  # noqa: E402,F401
from pagegrid.dashboard import auth  # noqa: E402,F401
from pagegrid.dashboard import docs  # noqa: E402,F401
from pagegrid.dashboard import keys  # noqa: E402,F401
from pagegrid.dashboard import reset  # noqa: E402,F401
from pagegrid.dashboard import two_factor  # noqa: E402,F401
from pagegrid.dashboard import usage  # noqa: E402,F401
from pagegrid.dashboard import wallet  # noqa: E402,F401

