"""Usage: spend and tokens per day for the last 30 days, per model and per key."""

from __future__ import annotations

from flask import render_template
from flask_login import current_user
from flask_login import login_required

from pagegrid import ledger
from pagegrid.charts import bar_chart
from pagegrid.dashboard import bp
from pagegrid.money import format_usd

DAYS = 30
RECENT = 10  # the latest charges, each a link to its request


@bp.get("/usage")
@login_required
def usage() -> str:
    """Charts and tables built from the ledger, so their totals match it exactly."""
    days = ledger.daily_usage(current_user.id, DAYS)
    totals = {field: sum(d[field] for d in days) for field in ("spend_nanos", "tokens", "requests")}
    spend_chart = bar_chart([(d["day"], d["spend_nanos"]) for d in days], title="Spend per day",
                            describe=lambda v: format_usd(v, exact=True), axis=format_usd)
    token_chart = bar_chart([(d["day"], d["tokens"]) for d in days], title="Tokens per day",
                            describe=lambda v: f"{v:,}")
    return render_template("dashboard/usage.html", days=days, totals=totals, spend_chart=spend_chart,
                           token_chart=token_chart, by_model=ledger.usage_by(current_user.id, "model", DAYS),
                           by_key=ledger.usage_by(current_user.id, "key", DAYS), window=DAYS,
                           recent=ledger.history(current_user.id, ledger.Filters(kind="usage"), page=1,
                                                 per_page=RECENT),
                           labels=ledger.key_labels(current_user.id))
