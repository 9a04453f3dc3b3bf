"""Forms the dashboard and the admin console share (CSRF comes with FlaskForm)."""

from __future__ import annotations

from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from typing import Any

from flask_wtf import FlaskForm
from wtforms import DateField
from wtforms import Field
from wtforms import IntegerField
from wtforms import PasswordField
from wtforms import SelectChoice  # type: ignore[attr-defined]  # WTForms 3.3 has it; types-WTForms 3.2 does not yet
from wtforms import SelectField
from wtforms import SelectMultipleField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import EqualTo
from wtforms.validators import Length
from wtforms.validators import NumberRange
from wtforms.validators import Optional
from wtforms.validators import ValidationError

from pagegrid import allowlist
from pagegrid import passwords
from pagegrid.billing import usd_to_nanos
from pagegrid.keys import BUDGET_PERIODS
from pagegrid.models import utcnow
from pagegrid.money import NANOS_PER_USD
from pagegrid.money import exact_decimal


class NewPasswordForm(FlaskForm):
    """A new password typed twice, held to the password rules (passwords.py) against ``email``:
    the base of changing one's own, a reset link's and the admin's reset."""

    new = PasswordField("New password", validators=[DataRequired()])
    confirm = PasswordField("Repeat the new password",
                            validators=[DataRequired(), EqualTo("new", message="The passwords differ.")])

    def __init__(self, *args: Any, email: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.email = email

    def validate_new(self, field: Field) -> None:
        """Long, not the email, not easy to guess (passwords.py)."""
        for problem in passwords.problems(field.data or "", self.email):
            raise ValidationError(problem)


class IpRangesField(StringField):
    """CIDR ranges, comma- or space-separated in the form, a normalised list in ``data``."""

    data: Any  # the list once parsed, the text as typed while it has an error (StringField: str)

    def _value(self) -> str:
        return ", ".join(self.data) if isinstance(self.data, list) else (self.data or "")

    def process_formdata(self, valuelist: list) -> None:
        """Parse the text; a bad entry becomes the field's error (never a 500)."""
        if not valuelist:  # a form without the field keeps the key's list
            return
        text = valuelist[0]
        try:
            self.data = allowlist.parse(text)
        except ValueError:
            self.data = text  # shown back as typed, with the error
            raise


class UsdField(StringField):
    """An exact USD amount (up to 9 decimals) in the form, nano-USD in ``data`` (empty: 0)."""

    data: Any  # nano-USD once parsed, the text as typed while it has an error

    def _value(self) -> str:
        return exact_decimal(self.data, NANOS_PER_USD) if isinstance(self.data, int) else (self.data or "")

    def process_formdata(self, valuelist: list) -> None:
        """Parse the amount; a bad or negative one becomes the field's error (never a 500)."""
        if not valuelist:
            return
        text = valuelist[0].strip()
        try:
            self.data = usd_to_nanos(text) if text else 0
        except ValueError:
            self.data = text
            raise ValueError("An amount in USD with at most 9 decimals, such as 25 or 0.5.") from None
        if self.data < 0:
            self.data = text
            raise ValueError("A budget is not negative.")


class KeyLimitsForm(FlaskForm):
    """Per-key limits and model restrictions (0 = unlimited)."""

    rpm = IntegerField("Requests per minute", default=10,
                       validators=[DataRequired(), NumberRange(1, 100_000)])
    daily_request_limit = IntegerField("Requests per day", default=0,
                                       validators=[Optional(), NumberRange(0, 10**9)])
    monthly_token_limit = IntegerField("Tokens per month", default=0,
                                       validators=[Optional(), NumberRange(0, 10**15)])
    concurrency = IntegerField("Requests at once", default=16,
                               validators=[DataRequired(), NumberRange(1, 10_000)])
    allowed_models = SelectMultipleField("Allowed models (none selected = all)", choices=[])
    allowed_ips = IpRangesField("Allowed IPs (CIDR ranges; empty = anywhere)",
                                default=list)  # type: ignore[arg-type]  # the stub wants text
    # Named like the key's columns, so an edit form fills itself from the key (``obj=key``).
    budget_nanos = UsdField("Budget (USD)", default=0)  # type: ignore[arg-type]  # nano-USD, not text
    budget_period = SelectField("Budget per", default="month", choices=[
        SelectChoice(p, {"day": "UTC day", "week": "week (from Monday, UTC)", "month": "calendar month (UTC)",
                         "total": "all time"}[p]) for p in BUDGET_PERIODS])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.budget_period.data:  # a key without a budget: offer the month
            self.budget_period.data = "month"

    def budget(self) -> dict[str, Any]:
        """The budget as ``create_key`` / ``update_settings`` take it (0: none)."""
        return {"budget_nanos": self.budget_nanos.data or 0,
                "budget_period": self.budget_period.data or "month"}


def last_valid_day(expires_at: datetime | None) -> date | None:
    """The last UTC day on which a key with this expiry still works (the form's date)."""
    return (expires_at.astimezone(UTC) - timedelta(microseconds=1)).date() if expires_at else None


class KeySettingsForm(KeyLimitsForm):
    """A key's name, expiry and limits: the key's own page (dashboard) and the admin's edit page."""

    name = StringField("Name", validators=[Optional(), Length(max=100)])
    expires = DateField("Works through (UTC date; empty = never expires)", validators=[Optional()])

    def validate_expires(self, field: Field) -> None:
        """The last valid day is today or later (UTC), unless it is the key's unchanged date.

        Build the form with ``expires=last_valid_day(key.expires_at)``: a form without the
        field then keeps the key's expiry."""
        if field.data and field.data < utcnow().date() and field.data != field.object_data:
            raise ValidationError("The date is in the past: pick today or a later day.")

    def settings(self, current_expiry: datetime | None) -> dict[str, Any]:
        """What the form holds, as ``keys.update_settings`` keyword arguments."""
        return {"name": (self.name.data or "").strip(), "rpm": self.rpm.data,
                "daily_request_limit": self.daily_request_limit.data or 0,
                "monthly_token_limit": self.monthly_token_limit.data or 0,
                "allowed_models": list(self.allowed_models.data or []),
                "concurrency": self.concurrency.data, "allowed_ips": self.allowed_ips.data,
                "expires_at": self.expires_at(current_expiry), "never_expires": self.expires.data is None,
                **self.budget()}

    def expires_at(self, current: datetime | None = None) -> datetime | None:
        """The moment the key stops working: the end of the chosen UTC day, or None (never).
        The unchanged date of an expiry set to the minute (CLI) keeps that exact moment."""
        chosen = self.expires.data
        if chosen is None:
            return None
        if current is not None and chosen == last_valid_day(current):
            return current
        return datetime.combine(chosen + timedelta(days=1), time.min, tzinfo=UTC)
