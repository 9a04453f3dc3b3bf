"""Blueprint ``admin``: the operator's console (admins only; everyone else gets 403)."""

from __future__ import annotations

from flask import Blueprint
from flask import abort
from flask_login import current_user
from flask_login import login_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@login_required
def _admins_only() -> None:
    if not current_user.is_admin:
        abort(403)


from pagegrid.admin import overview  # noqa: E402,F401
from pagegrid.admin import views  # noqa: E402,F401
