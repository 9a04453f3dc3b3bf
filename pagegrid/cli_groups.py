"""Operator commands for price groups (issue 14): ``create-group``, ``set-group``,
``list-groups`` and ``set-user-group``; registered by ``pagegrid.cli.register``."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import with_appcontext
from sqlalchemy import select

from pagegrid import pricegroups
from pagegrid.extensions import db
from pagegrid.models import PriceGroup
from pagegrid.models import User


def _group(name: str) -> PriceGroup:
    group = pricegroups.find(name)
    if group is None:
        raise click.ClickException(f"no price group called {name}")
    return group


@click.command("create-group")
@with_appcontext
@click.argument("name")
@click.option("--multiplier", required=True,
              help="What the group pays per dollar of list price: 0.8, 1.25 (> 0, at most 6 decimals).")
def create_group_command(name: str, multiplier: str) -> None:
    """Create a price group whose users pay the list cost times MULTIPLIER."""
    try:
        group = pricegroups.create_group(name, multiplier)
    except pricegroups.GroupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{group.name}\t×{pricegroups.multiplier_of(group).text()}")


@click.command("set-group")
@with_appcontext
@click.argument("name")
@click.option("--multiplier", default=None, help="A new multiplier.")
@click.option("--rename", default=None, help="A new name.")
def set_group_command(name: str, multiplier: str | None, rename: str | None) -> None:
    """Change a price group's multiplier or name (requests already admitted keep the old one)."""
    try:
        group = pricegroups.edit_group(_group(name), name=rename, multiplier=multiplier)
    except pricegroups.GroupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{group.name}\t×{pricegroups.multiplier_of(group).text()}")


@click.command("list-groups")
@with_appcontext
def list_groups_command() -> None:
    """One line per price group: name, multiplier, users."""
    for group, users in pricegroups.listing():
        click.echo(f"{group.name}\t×{pricegroups.multiplier_of(group).text()}\tusers={users}")


@click.command("set-user-group")
@with_appcontext
@click.argument("email")
@click.argument("name", required=False)
@click.option("--none", "clear", is_flag=True, help="Take the user out of their group (list prices).")
def set_user_group_command(email: str, name: str | None, clear: bool) -> None:
    """Put EMAIL's account in price group NAME, or (--none) back on list prices."""
    if clear == (name is not None):
        raise click.UsageError("give a group NAME or --none")
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise click.ClickException(f"no user with email {email}")
    group = None if clear else _group(name or "")
    pricegroups.set_user_group(user, group)
    click.echo(f"{user.email}\t{group.name if group else 'list prices'}\t"
               f"×{pricegroups.multiplier_of(group).text()}")


def register(app: Flask) -> None:
    """Add the commands to ``app.cli``."""
    for command in (create_group_command, set_group_command, list_groups_command,
                    set_user_group_command):
        app.cli.add_command(command)
