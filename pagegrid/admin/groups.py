"""Price groups in the admin console: list, create, edit, and an account's group."""

from __future__ import annotations

from collections.abc import Callable

from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from werkzeug.wrappers import Response
from wtforms import SelectChoice  # type: ignore[attr-defined]  # WTForms 3.3 has it; types-WTForms 3.2 does not yet

from pagegrid import pricegroups
from pagegrid.admin import bp
from pagegrid.admin.forms import PriceGroupForm
from pagegrid.admin.forms import UserGroupForm
from pagegrid.extensions import db
from pagegrid.models import PriceGroup
from pagegrid.models import User


def _render(form: PriceGroupForm) -> str:
    return render_template("admin/groups.html", form=form, rows=[
        (group, users, pricegroups.multiplier_of(group).text()) for group, users in pricegroups.listing()])


def _saved(form: PriceGroupForm, save: Callable[[], PriceGroup], done: str) -> Response | None:
    """For a valid form, ``save`` the group and redirect to the list; otherwise (or when the
    name or multiplier is refused) None, and the form shows why."""
    if form.validate_on_submit():
        try:
            group = save()
        except pricegroups.GroupError as exc:
            db.session.rollback()
            form.multiplier.errors = [str(exc)]
        else:
            flash(f"Price group {group.name} {done}.", "success")
            return redirect(url_for("admin.groups"))
    if form.errors:
        flash("The group was not saved: check the fields below.", "error")
    return None


@bp.route("/groups", methods=["GET", "POST"])
def groups() -> str | Response:
    """Every price group with its multiplier and users, and the form for a new one."""
    form = PriceGroupForm()
    saved = _saved(form, lambda: pricegroups.create_group(form.name.data or "", form.multiplier.data or ""),
                   "created")
    return saved or _render(form)


@bp.route("/groups/<int:group_id>/edit", methods=["GET", "POST"])
def group_edit(group_id: int) -> str | Response:
    """Rename a group or change its multiplier (requests already admitted keep the old one)."""
    group = db.get_or_404(PriceGroup, group_id, description="There is no such price group.")
    form = PriceGroupForm(data={"name": group.name, "multiplier": pricegroups.multiplier_of(group).text()})
    saved = _saved(form, lambda: pricegroups.edit_group(group, name=form.name.data,
                                                        multiplier=form.multiplier.data), "saved")
    return saved or render_template("admin/group_edit.html", form=form, group=group)


def user_group_form(user: User) -> UserGroupForm:
    """The user page's group picker, set to the account's group."""
    form = UserGroupForm(formdata=None, group=str(user.price_group_id or ""))
    form.group.choices = [SelectChoice("", "none (list prices)")] + [
        SelectChoice(str(group.id), f"{group.name} (×{pricegroups.multiplier_of(group).text()})")
        for group, _ in pricegroups.listing()]
    return form


@bp.post("/users/<int:user_id>/price-group")
def user_group(user_id: int) -> Response:
    """Put an account in a price group, or back on list prices; its next request pays it."""
    user = db.get_or_404(User, user_id, description="There is no such user.")
    form = UserGroupForm()
    chosen = form.group.data or ""
    group = db.session.get(PriceGroup, int(chosen)) if chosen.isdigit() else None
    if not form.validate_on_submit() or (chosen and group is None):
        flash("The price group was not saved: pick one of the list.", "error")
    else:
        pricegroups.set_user_group(user, group)
        prices = f"the prices of {group.name}" if group else "list prices"
        flash(f"{user.email} pays {prices} from the next request on.", "success")
    return redirect(url_for("admin.user_detail", user_id=user.id))
