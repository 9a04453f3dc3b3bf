"""Price groups: a user in a group pays the list cost times the group's multiplier.

The multiplier is an exact fraction (``0.8`` = 4/5), entered as a decimal with at most six
places. A request's charge is its list cost (tokens at the model's prices plus server tool fees)
times the multiplier, rounded *up* to the nano-USD once per request (``Multiplier.apply``); its
hold is the list bound times the multiplier rounded up the same way, so it stays an upper bound
of the charge. Every change here is written to the audit log in its own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from decimal import InvalidOperation
from fractions import Fraction

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from pagegrid import audit
from pagegrid.extensions import db
from pagegrid.models import PriceGroup
from pagegrid.models import User
from pagegrid.money import exact_decimal

MULTIPLIER_DECIMALS = 6


@dataclass(frozen=True)
class Multiplier:
    """A price group's multiplier as an exact fraction ``num / den`` (1/1: list prices)."""

    num: int = 1
    den: int = 1

    def apply(self, list_nanos: int) -> int:
        """``list_nanos`` times the multiplier, rounded up to the nano-USD (never in our favour
        by more than one nano-USD, never below the exact product)."""
        return -(-list_nanos * self.num // self.den)

    @property
    def is_list(self) -> bool:
        """True when it leaves prices as they are."""
        return self.num == self.den

    def text(self) -> str:
        """The multiplier as an exact decimal: ``0.8``, ``1.25``, ``1``."""
        return exact_decimal(self.num, self.den)

    @classmethod
    def parse(cls, text: str) -> Multiplier:
        """``0.8`` -> 4/5; greater than 0, at most 6 decimals and at most 1000, else ValueError."""
        try:
            value = Decimal(str(text).strip())
        except InvalidOperation:
            raise ValueError(f"not a number: {text!r}") from None
        if not value.is_finite() or value <= 0 or value > 1000:
            raise ValueError(f"a multiplier is greater than 0 and at most 1000: {text!r}")
        scaled = value * 10**MULTIPLIER_DECIMALS
        if scaled != scaled.to_integral_value():
            raise ValueError(f"a multiplier has at most {MULTIPLIER_DECIMALS} decimals: {text!r}")
        fraction = Fraction(int(scaled), 10**MULTIPLIER_DECIMALS)
        return cls(fraction.numerator, fraction.denominator)


LIST_PRICES = Multiplier()


class GroupError(ValueError):
    """A group that cannot be created or changed as asked (the message says why)."""


def multiplier_of(group: PriceGroup | None) -> Multiplier:
    """The group's multiplier (list prices without a group)."""
    return Multiplier(group.multiplier_num, group.multiplier_den) if group is not None else LIST_PRICES


def user_prices(user_id: int | None) -> tuple[Multiplier, str | None]:
    """A user's multiplier and group name (list prices and None without a group, or a user)."""
    group = None if user_id is None else db.session.scalar(
        select(PriceGroup).join(User, User.price_group_id == PriceGroup.id).where(User.id == user_id))
    return multiplier_of(group), group.name if group is not None else None


def find(name: str) -> PriceGroup | None:
    """The group called ``name``."""
    return db.session.scalar(select(PriceGroup).where(PriceGroup.name == name.strip()))


def listing() -> list[tuple[PriceGroup, int]]:
    """Every group with its number of users, by name."""
    members = (select(User.price_group_id, func.count().label("users"))
               .group_by(User.price_group_id).subquery())
    return [(group, users or 0) for group, users in db.session.execute(
        select(PriceGroup, members.c.users).outerjoin(members, members.c.price_group_id == PriceGroup.id)
        .order_by(PriceGroup.name)).all()]


def _name(text: str) -> str:
    name = (text or "").strip()
    if not name or len(name) > 100:
        raise GroupError("A group name has 1 to 100 characters.")
    return name


def _multiplier(text: str) -> Multiplier:
    try:
        return Multiplier.parse(text)
    except ValueError as exc:
        raise GroupError(str(exc)) from None


def create_group(name: str, multiplier: str) -> PriceGroup:
    """A new group; GroupError for a bad name or multiplier, or a name in use."""
    factor = _multiplier(multiplier)
    group = PriceGroup(name=_name(name), multiplier_num=factor.num, multiplier_den=factor.den)
    db.session.add(group)
    audit.record_change("price_group.create", group, target=f"price group {group.name}")
    _commit(group.name)
    return group


def edit_group(group: PriceGroup, *, name: str | None = None, multiplier: str | None = None) -> PriceGroup:
    """Rename a group or change its multiplier; requests admitted before keep the old one."""
    if name is not None:
        group.name = _name(name)
    if multiplier is not None:
        factor = _multiplier(multiplier)
        group.multiplier_num, group.multiplier_den = factor.num, factor.den
    audit.record_change("price_group.edit", group, target=f"price group {group.name}")
    _commit(group.name)
    return group


def set_user_group(user: User, group: PriceGroup | None) -> None:
    """Put a user in a group (None: back to list prices); their next request pays its prices."""
    before = db.session.get(PriceGroup, user.price_group_id) if user.price_group_id else None
    user.price_group_id = group.id if group is not None else None
    audit.record("user.price_group", user,
                 before={"price_group": _label(before)}, after={"price_group": _label(group)},
                 commit=False)
    db.session.commit()


def _label(group: PriceGroup | None) -> str | None:
    return f"{group.name} (×{multiplier_of(group).text()})" if group is not None else None


def _commit(name: str) -> None:
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise GroupError(f"There is already a group called {name}.") from None
