"""Usage: spend and tokens per day over a range of UTC days (default: the last 30), per model and
per key, for all of one's keys or one of them."""

from __future__ import annotations

from datetime import date
from datetime import timedelta

from flask import abort
from flask import render_template
from flask import request
from flask_login import current_user
from flask_login import login_required

from pagegrid import ledger
from pagegrid.charts import bar_chart
from pagegrid.dashboard import bp
from pagegrid.dashboard.forms import UsageFilterForm
from pagegrid.models import utcnow
from pagegrid.money import format_usd

DAYS = 30
RECENT = 10  # the latest charges, each a link to its request


def _range(form: UsageFilterForm) -> tuple[date, date]:
    """The valid range the form asks for; a missing or invalid end falls back to the default."""
    today = utcnow().date()
    if form.start.errors or form.end.errors:
        return today - timedelta(days=DAYS - 1), today
    end = form.end.data or (min(form.start.data + timedelta(days=DAYS - 1), today)
                            if form.start.data else today)
    start = form.start.data or end - timedelta(days=DAYS - 1)
    return start, end


@bp.get("/usage")
@login_required
def usage() -> str:
    """Charts and tables built from the ledger, so their totals match it exactly. Another
    user's key id is 404, like the key itself."""
    form = UsageFilterForm(request.args)
    labels = ledger.key_labels(current_user.id)
    form.key.choices = [("", "All keys")] + [(str(k), v) for k, v in labels.items()]
    form.validate()
    key_id = None
    if form.key.data:
        if not form.key.data.isdigit() or int(form.key.data) not in labels:
            abort(404)
        key_id = int(form.key.data)
    start, end = _range(form)
    days = ledger.daily_usage(current_user.id, start, end, key_id)
    totals = {field: sum(d[field] for d in days) for field in ("spend_nanos", "tokens", "requests")}
    every = max(1, len(days) // 6)
    spend_chart = bar_chart([(d["day"], d["spend_nanos"]) for d in days], title="Spend per day",
                            describe=lambda v: format_usd(v, exact=True), axis=format_usd, every=every)
    token_chart = bar_chart([(d["day"], d["tokens"]) for d in days], title="Tokens per day",
                            describe=lambda v: f"{v:,}", every=every)
    return render_template("dashboard/usage.html", form=form, days=days, totals=totals,
                           spend_chart=spend_chart, token_chart=token_chart,
                           by_model=ledger.usage_by(current_user.id, "model", start, end, key_id),
                           by_key=ledger.usage_by(current_user.id, "key", start, end, key_id),
                           start=start, end=end, key_label=labels.get(key_id) if key_id else None,
                           recent=ledger.history(current_user.id,
                                                 ledger.Filters(key_id=key_id, start=start, end=end,
                                                                kind="usage"),
                                                 page=1, per_page=RECENT),
                           labels=labels)
