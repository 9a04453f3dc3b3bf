"""Admin: reconciliation per upstream account and UTC day (page and CSV, from ``pagegrid.reconcile``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta

from flask import flash
from flask import render_template
from flask import request
from werkzeug.wrappers import Response

from pagegrid import reconcile
from pagegrid.admin import bp
from pagegrid.admin.catalog_forms import MAX_REPORT_DAYS
from pagegrid.admin.catalog_forms import ReconcileFilterForm
from pagegrid.spreadsheet import safe_row


def _period() -> tuple[ReconcileFilterForm, reconcile.Period]:
    """The filters from the query string; bad ones fall back to the last 7 days, with a message."""
    form = ReconcileFilterForm(request.args)
    names = reconcile.accounts()
    form.account.choices = [("", "All accounts"), *((n, n) for n in names)]
    default = reconcile.Period.last_days(7)
    if not form.validate():
        problems = " ".join(e for errs in form.errors.values() for e in errs)
        flash(f"Showing the last 7 days: {problems}", "error")
        return form, default
    account = form.account.data or None
    if account is not None and account not in names:
        flash("No charges name that account; showing all accounts.", "error")
        account = None
    start = form.start.data or (form.end.data or default.end) - (default.end - default.start)
    end = form.end.data or max(start, default.end)
    if (end - start).days >= MAX_REPORT_DAYS:
        end = start + timedelta(days=MAX_REPORT_DAYS - 1)
    return form, reconcile.Period(start, end, account)


@bp.get("/reconcile")
def reconcile_page() -> str:
    """Per account and day: requests, tokens by kind, provider's list-price cost, charged, margin."""
    form, period = _period()
    rows = reconcile.report(period)
    return render_template("admin/reconcile.html", form=form, period=period, rows=rows,
                           total=reconcile.totals(rows), query=request.args.to_dict())


@bp.get("/reconcile.csv")
def reconcile_csv() -> Response:
    """The same rows as CSV, exact amounts, formula cells neutralised."""
    _, period = _period()
    rows = reconcile.report(period)

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for row in (reconcile.CSV_COLUMNS, *reconcile.csv_rows(rows)):
            writer.writerow(safe_row(row))
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()

    name = f"pagegrid-upstreams-{period.start.isoformat()}-{period.end.isoformat()}.csv"
    return Response(lines(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
