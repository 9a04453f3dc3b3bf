"""Admin: add a model by hand, sync the catalog with the accounts' model lists, family price rules."""

from __future__ import annotations

from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from pagegrid import audit
from pagegrid import billing
from pagegrid import price_rules
from pagegrid.admin import bp
from pagegrid.admin.catalog_forms import PRICE_NAMES
from pagegrid.admin.catalog_forms import NewModelForm
from pagegrid.admin.catalog_forms import PriceRuleForm
from pagegrid.catalog_sync import sync_models
from pagegrid.extensions import db
from pagegrid.models import CatalogModel
from pagegrid.models import PriceRule


def _names_taken(model_id: str, aliases: list[str]) -> tuple[list[str], list[str]]:
    """Problems with the new id and with its aliases (names another model already answers to)."""
    taken: dict[str, str] = {}
    for other in db.session.scalars(select(CatalogModel)):
        for name in (other.id, *(other.aliases or [])):
            taken.setdefault(name, other.id)
    id_problems = [f"{model_id} already names {taken[model_id]}."] if model_id in taken else []
    return id_problems, [f"{a} already names {taken[a]}." for a in aliases if a in taken]


@bp.route("/models/new", methods=["GET", "POST"])
def model_new() -> str | Response:
    """Add a catalog model with its limits, flags and five prices (priced by the operator)."""
    form = NewModelForm()
    if form.validate_on_submit():
        model_id = (form.model_id.data or "").strip()
        aliases = [a for a in form.alias_list() if a != model_id]
        id_problems, alias_problems = _names_taken(model_id, aliases)
        if not id_problems and not alias_problems:
            nanos = [billing.price_per_mtok_to_nanos(getattr(form, n).data) for n in PRICE_NAMES]
            db.session.add(CatalogModel(
                id=model_id, provider=form.provider.data, upstream_id=(form.upstream_id.data or "").strip(),
                display_name=(form.display_name.data or "").strip(), aliases=aliases,
                context_window=form.context_window.data, max_output=form.max_output.data,
                vision=form.vision.data, tools=form.tools.data, thinking=form.thinking.data,
                active=form.active.data, input_nanos=nanos[0], output_nanos=nanos[1],
                cache_write_nanos=nanos[2], cache_write_1h_nanos=nanos[3], cache_read_nanos=nanos[4],
                auto_priced=False, price_source="set by the operator", needs_price=False))
            try:
                db.session.commit()
            except IntegrityError:  # added by someone else a moment ago
                db.session.rollback()
                id_problems = [f"{model_id} exists already."]
            else:
                audit.created("catalog.create", db.session.get(CatalogModel, model_id))
                current_app.extensions["pagegrid.catalog"].invalidate()
                flash(f"{model_id} added.", "success")
                return redirect(url_for("admin.models"))
        form.model_id.errors = [*form.model_id.errors, *id_problems]
        form.aliases.errors = [*form.aliases.errors, *alias_problems]
    if form.errors:
        flash("Nothing was saved: check the fields marked below.", "error")
    return render_template("admin/model_new.html", form=form)


@bp.post("/models/sync")
def models_sync() -> Response:
    """Read every account's model list now and add what the catalog lacks (``sync-models``)."""
    for report in sync_models():
        lines = report.lines()
        flash(" · ".join(lines), "error" if report.error else "success")
    return redirect(url_for("admin.models"))


def _rule_rows() -> list[tuple[PriceRule, str, price_rules.RulePrice | None]]:
    return [(rule, price_rules.describe(rule), price_rules.resolve(rule)) for rule in price_rules.ordered()]


@bp.route("/models/rules", methods=["GET", "POST"])
def models_rules() -> str | Response:
    """Family price rules: list them (the one that wins first) and add or replace one."""
    form = PriceRuleForm()
    if form.validate_on_submit():
        given = form.given_prices()
        prices = billing.Price(*(billing.price_per_mtok_to_nanos(p) for p in given)) if given else None
        like = (form.like_model.data or "").strip() or None
        try:
            rule = price_rules.set_rule(form.pattern.data or "", like=like, prices=prices)
        except ValueError as exc:
            form.like_model.errors = [*form.like_model.errors, str(exc)]
        else:
            flash(f"Rule {rule.pattern} saved: {price_rules.describe(rule)}.", "success")
            return redirect(url_for("admin.models_rules"))
    if form.errors:
        flash("Nothing was saved: check the fields marked below.", "error")
    return render_template("admin/price_rules.html", form=form, rows=_rule_rows())


@bp.post("/models/rules/<int:rule_id>/delete")
def models_rule_delete(rule_id: int) -> Response:
    """Remove a rule."""
    rule = db.get_or_404(PriceRule, rule_id, description="There is no such price rule.")
    pattern = rule.pattern
    db.session.delete(rule)
    audit.record("price_rule.delete", f"price rule {pattern}", before=price_rules.summary(rule), commit=False)
    db.session.commit()
    flash(f"Rule {pattern} deleted.", "success")
    return redirect(url_for("admin.models_rules"))
