"""Activity: the customer's own requests from the request log, refused ones included."""

from __future__ import annotations

from flask import abort
from flask import flash
from flask import render_template
from flask import request
from flask_login import current_user
from flask_login import login_required

from pagegrid import activity as requests_read
from pagegrid import ledger
from pagegrid import request_detail
from pagegrid.dashboard import bp


@bp.get("/activity")
@login_required
def activity() -> str:
    """Every request of the customer's keys for the last days, newest first, with filters."""
    filters = requests_read.parse_filters(request.args, allow_user=False)
    if filters.problems:
        flash(f"Ignored filters that were not understood: {', '.join(filters.problems)}.", "error")
    page = requests_read.page(filters, number=request.args.get("page", 1, type=int),
                              user_id=current_user.id)
    query = {k: v for k, v in request.args.items() if k in requests_read.FILTER_NAMES and k != "user" and v}
    return render_template("dashboard/activity.html", page=page, query=query,
                           labels=ledger.key_labels(current_user.id))


@bp.get("/activity/<path:request_id>")
@login_required
def request_page(request_id: str) -> str:
    """One of the customer's own requests in full; anyone else's is 404."""
    record = request_detail.find(request_id, user_id=current_user.id)
    if record is None:
        abort(404)
    return render_template("dashboard/request.html", record=record)
