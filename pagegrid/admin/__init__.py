"""Blueprint ``admin``: the operator's console (admins only; everyone else gets 403)."""

from __future__ import annotations

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import url_for
from flask_login import current_user
from flask_login import login_required
from werkzeug.wrappers import Response

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@login_required
def _admins_only() -> Response | None:
    if not current_user.is_admin:
        abort(403)
    if current_app.config["PAGEGRID_REQUIRE_ADMIN_2FA"] and not current_user.totp_enabled:
        flash("This deployment requires two-factor login for admins: turn it on here to open the "
              "admin console.", "error")
        return redirect(url_for("dashboard.two_factor"))
    return None


from pagegrid.admin import audit_log  # noqa: E402,F401
from pagegrid.admin import catalog_sync  # noqa: E402,F401
from pagegrid.admin import groups  # noqa: E402,F401
from pagegrid.admin import overview  # noqa: E402,F401
from pagegrid.admin import reconcile  # noqa: E402,F401
from pagegrid.admin import views  # noqa: E402,F401
