"""The audit log page: every admin and CLI action, newest first, filterable."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import time
from datetime import timedelta

from flask import render_template
from flask import request
from sqlalchemy import select
from wtforms import SelectChoice  # type: ignore[attr-defined]  # WTForms 3.3 has it; types-WTForms 3.2 does not yet

from pagegrid import audit
from pagegrid.admin import bp
from pagegrid.admin.forms import AuditFilterForm
from pagegrid.extensions import db
from pagegrid.models import AuditEntry

PER_PAGE = 50


@bp.get("/audit", endpoint="audit")
def audit_log() -> str:
    """Who did what to what, when, with the values before and after."""
    form = AuditFilterForm(request.args)
    form.action.choices = [SelectChoice("", "Any action")] + [SelectChoice(a, a) for a in audit.ACTIONS]
    query = select(AuditEntry).order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
    used: dict[str, str] = {}
    if form.validate():
        for name, column in (("actor", AuditEntry.actor), ("target", AuditEntry.target)):
            needle = (getattr(form, name).data or "").strip()
            if needle:
                query = query.where(column.contains(needle, autoescape=True))
                used[name] = needle
        if form.action.data:
            query = query.where(AuditEntry.action == form.action.data)
            used["action"] = form.action.data
        if form.start.data:
            since = datetime.combine(form.start.data, time.min, tzinfo=UTC)
            query = query.where(AuditEntry.created_at >= since)
            used["start"] = form.start.data.isoformat()
        if form.end.data:  # through the whole day
            query = query.where(AuditEntry.created_at < datetime.combine(
                form.end.data + timedelta(days=1), time.min, tzinfo=UTC))
            used["end"] = form.end.data.isoformat()
    page = db.paginate(query, page=request.args.get("page", 1, type=int), per_page=PER_PAGE, error_out=False)
    return render_template("admin/audit.html", form=form, page=page, query=used)
