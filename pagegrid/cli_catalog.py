"""Operator commands for the catalog that follows the providers and for reconciliation (issue 11).

``sync-models``, ``set-price-rule``, ``list-price-rules``, ``delete-price-rule`` and
``report-upstreams``; registered by ``pagegrid.cli.register``.
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import with_appcontext

from pagegrid import price_rules
from pagegrid import reconcile
from pagegrid.billing import Price
from pagegrid.billing import price_per_mtok_to_nanos
from pagegrid.catalog_sync import sync_models
from pagegrid.models import utcnow
from pagegrid.money import format_usd
from pagegrid.money import per_mtok_decimal


@click.command("sync-models")
@with_appcontext
def sync_models_command() -> None:
    """Add the models the upstream accounts list that the catalog lacks (never edits existing ones)."""
    reports = sync_models()
    if not reports:
        click.echo("No upstream accounts: add one (admin, add-upstream) or set PAGEGRID_<PROVIDER>_KEY.")
    for report in reports:
        for line in report.lines():
            click.echo(line)


def _prices(text: str) -> Price:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 5:
        raise click.BadParameter("five prices in USD per 1M tokens: input,output,cache_write_5m,"
                                 "cache_write_1h,cache_read", param_hint="--prices")
    try:
        return Price(*(price_per_mtok_to_nanos(p) for p in parts))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--prices") from None


@click.command("set-price-rule")
@with_appcontext
@click.argument("pattern")
@click.option("--like", "like", default=None, help="Copy this model's current catalog (or list) price.")
@click.option("--prices", default=None,
              help="Explicit USD per 1M tokens: input,output,cache_write_5m,cache_write_1h,cache_read.")
def set_price_rule_command(pattern: str, like: str | None, prices: str | None) -> None:
    """Price new models matching PATTERN (claude-opus-*) like a model, or at explicit prices."""
    try:
        rule = price_rules.set_rule(pattern, like=like, prices=_prices(prices) if prices else None)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{rule.pattern}: {price_rules.describe(rule)}")


@click.command("delete-price-rule")
@with_appcontext
@click.argument("pattern")
def delete_price_rule_command(pattern: str) -> None:
    """Remove the rule for PATTERN."""
    if not price_rules.delete_rule(pattern):
        raise click.ClickException(f"no price rule {pattern}")
    click.echo(f"deleted {pattern}")


@click.command("list-price-rules")
@with_appcontext
def list_price_rules_command() -> None:
    """A line per rule, the one that wins first: pattern, what it copies, today's prices."""
    for rule in price_rules.ordered():
        resolved = price_rules.resolve(rule)
        if resolved is None:
            prices = "no price (the model it copies is priced nowhere)"
        else:
            p = resolved.price
            prices = "$/1M " + " / ".join(per_mtok_decimal(n) for n in (
                p.input, p.output, p.cache_write, p.cache_write_1h, p.cache_read))
        click.echo(f"{rule.pattern}\t{price_rules.describe(rule)}\t{prices}")


def _usd(nanos: int) -> str:
    return format_usd(nanos, exact=True, grouping=False)


@click.command("report-upstreams")
@with_appcontext
@click.option("--day", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="UTC day (default: today).")
@click.option("--account", default=None, help="Only this account.")
def report_upstreams_command(day, account: str | None) -> None:  # noqa: ANN001 - click's datetime
    """Per account: requests, tokens by kind, the provider's list-price cost, charged, margin."""
    when = day.date() if day else utcnow().date()
    rows = reconcile.report(reconcile.Period(when, when, account))
    header = ("account", "requests", "input", "output", "write_5m", "write_1h", "read",
              "provider_cost", "charged", "margin")
    table = [header]
    for r in [*rows, reconcile.totals(rows)] if rows else []:
        table.append((r.account, str(r.requests), str(r.input_tokens), str(r.output_tokens),
                      str(r.cache_write_5m_tokens), str(r.cache_write_1h_tokens), str(r.cache_read_tokens),
                      _usd(r.provider_nanos), _usd(r.charged_nanos), _usd(r.margin_nanos)))
    click.echo(f"Upstream accounts on {when.isoformat()} (UTC)")
    if not rows:
        click.echo("no usage")
        return
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
    for r in rows:
        if r.notes():
            click.echo(f"note: {r.account}: {r.notes()}")


COMMANDS = (sync_models_command, set_price_rule_command, delete_price_rule_command,
            list_price_rules_command, report_upstreams_command)


def register(app: Flask) -> None:
    """Add the commands to ``app.cli``."""
    for command in COMMANDS:
        app.cli.add_command(command)
