"""WTForms for the admin console (CSRF comes with FlaskForm)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask_wtf import FlaskForm
from wtforms import BooleanField
from wtforms import DateField
from wtforms import EmailField
from wtforms import Field
from wtforms import IntegerField
from wtforms import PasswordField
from wtforms import RadioField
from wtforms import SelectChoice  # type: ignore[attr-defined]  # WTForms 3.3 has it; types-WTForms 3.2 does not yet
from wtforms import SelectField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import Length
from wtforms.validators import NumberRange
from wtforms.validators import Optional
from wtforms.validators import ValidationError

from pagegrid import passwords
from pagegrid.billing import price_per_mtok_to_nanos
from pagegrid.billing import usd_to_nanos
from pagegrid.forms import NewPasswordForm
from pagegrid.models import utcnow

EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]*")
# SelectChoice, not tuples: WTForms 3.3 deprecates tuple choices.
PROVIDERS = [SelectChoice("anthropic", "Anthropic"), SelectChoice("openai", "OpenAI")]
# One entry at most; catches a pasted nano amount and keeps sums far inside BIGINT.
MAX_AMOUNT_NANOS = 1_000_000 * 10**9
MAX_PRICE_NANOS = 100_000 * 1000  # nano-USD per token, i.e. $100,000 per 1M tokens


def positive_usd(form: FlaskForm, field: Field) -> None:
    """An exact USD amount above zero with at most 9 decimals."""
    try:
        nanos = usd_to_nanos(field.data or "")
    except ValueError:
        raise ValidationError("Enter an amount in USD with at most 9 decimals, e.g. 12.5.") from None
    if nanos <= 0:
        raise ValidationError("The amount must be more than $0.")
    if nanos > MAX_AMOUNT_NANOS:
        raise ValidationError("The amount can be at most $1,000,000.")


def price_per_mtok(form: FlaskForm, field: Field) -> None:
    """A list price in USD per 1M tokens: not negative, at most 3 decimals."""
    try:
        nanos = price_per_mtok_to_nanos(field.data or "")
    except ValueError:
        raise ValidationError("Enter USD per 1M tokens with at most 3 decimals, e.g. 1.125.") from None
    if nanos > MAX_PRICE_NANOS:
        raise ValidationError("A price can be at most $100,000 per 1M tokens.")


def email_address(form: FlaskForm, field: Field) -> None:
    """Something that looks like an email address."""
    if not EMAIL.fullmatch((field.data or "").strip()):
        raise ValidationError("Enter an email address.")


def http_url(form: FlaskForm, field: Field) -> None:
    """An absolute http(s) URL."""
    parts = urlsplit((field.data or "").strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError("Enter an http:// or https:// URL.")


class UserSearchForm(FlaskForm):
    """Search the user list by email (GET, so no CSRF)."""

    class Meta:
        csrf = False

    q = StringField("Email contains", validators=[Optional(), Length(max=255)])


class AuditFilterForm(FlaskForm):
    """Filter the audit log (GET, so no CSRF): who, which action, on what, between which days."""

    class Meta:
        csrf = False

    actor = StringField("Actor contains", validators=[Optional(), Length(max=255)])
    action = SelectField("Action", choices=[], validate_choice=False, validators=[Optional()])
    target = StringField("Target contains", validators=[Optional(), Length(max=255)])
    start = DateField("From (UTC)", validators=[Optional()])
    end = DateField("To (UTC)", validators=[Optional()])


class NewUserForm(FlaskForm):
    """A new account."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=255), email_address])
    password = PasswordField("Initial password", validators=[DataRequired()])
    admin = BooleanField("Administrator (can open this console)")

    def validate_password(self, field: Field) -> None:
        """Long, not the email, not easy to guess (passwords.py)."""
        for problem in passwords.problems(field.data or "", self.email.data or ""):
            raise ValidationError(problem)


class ResetPasswordForm(NewPasswordForm):
    """An admin sets a user's new password."""


class CeilingsForm(FlaskForm):
    """What the customer's own keys may not exceed (empty = no ceiling)."""

    max_rpm = IntegerField("Max requests per minute per key", validators=[Optional(), NumberRange(1, 10**6)])
    max_concurrency = IntegerField("Max requests at once per key",
                                   validators=[Optional(), NumberRange(1, 10**5)])
    may_lift_quotas = BooleanField("The customer may raise or remove daily and monthly limits")


class CreditForm(FlaskForm):
    """Credit or debit a wallet by an exact USD amount, with the reason."""

    direction = RadioField("Direction", default="credit", validators=[DataRequired()], choices=[
        SelectChoice("credit", "Credit (add)"), SelectChoice("debit", "Debit (remove)")])
    amount = StringField("Amount (USD)", validators=[DataRequired(), Length(max=40), positive_usd])
    note = StringField("Note (shown in the user's history)", validators=[DataRequired(), Length(max=500)])


class TopUpCodeForm(FlaskForm):
    """A new single-use top-up code."""

    amount = StringField("Amount (USD)", validators=[DataRequired(), Length(max=40), positive_usd])
    expires = DateField("Valid through (UTC date, optional)", validators=[Optional()])
    note = StringField("Note (for operators)", validators=[Optional(), Length(max=500)])

    def validate_expires(self, field: Field) -> None:
        """The last valid day is today or later (UTC)."""
        if field.data and field.data < utcnow().date():
            raise ValidationError("The date is in the past.")


PRICE = [DataRequired(), Length(max=40), price_per_mtok]


class ModelForm(FlaskForm):
    """A catalog entry's settings and its five prices in USD per 1M tokens."""

    display_name = StringField("Display name", validators=[DataRequired(), Length(max=100)])
    upstream_id = StringField("Upstream model id", validators=[DataRequired(), Length(max=100)])
    aliases = StringField("Aliases (comma-separated)", validators=[Optional(), Length(max=1000)])
    context_window = IntegerField("Context window (tokens)",
                                  validators=[DataRequired(), NumberRange(1, 100_000_000)])
    max_output = IntegerField("Max output (tokens)", validators=[DataRequired(), NumberRange(1, 100_000_000)])
    vision = BooleanField("Vision")
    tools = BooleanField("Tools")
    thinking = BooleanField("Thinking")
    active = BooleanField("Active (listed and callable)")
    input = StringField("Input", validators=PRICE)
    output = StringField("Output", validators=PRICE)
    cache_write = StringField("Cache write (5 min)", validators=PRICE)
    cache_write_1h = StringField("Cache write (1 h)", validators=PRICE)
    cache_read = StringField("Cache read", validators=PRICE)

    def alias_list(self) -> list[str]:
        """The aliases as a list, blanks and repeats dropped, order kept."""
        names = (a.strip() for a in (self.aliases.data or "").split(","))
        return list(dict.fromkeys(a for a in names if a))

    def validate_aliases(self, field: Field) -> None:
        """Each alias is a plain model name of at most 100 characters."""
        for alias in self.alias_list():
            if len(alias) > 100 or not MODEL_NAME.fullmatch(alias):
                raise ValidationError(f"Not a valid alias: {alias}")

    def validate_max_output(self, field: Field) -> None:
        """The output allowance fits in the context window."""
        if field.data and self.context_window.data and field.data > self.context_window.data:
            raise ValidationError("Max output cannot exceed the context window.")


class UpstreamForm(FlaskForm):
    """A provider account. The key field is write-only: it is never filled from the database."""

    provider = SelectField("Provider", choices=PROVIDERS, validators=[DataRequired()])
    name = StringField("Name", validators=[DataRequired(), Length(max=100)])
    base_url = StringField("Base URL", validators=[DataRequired(), Length(max=255), http_url])
    # No Optional(): adding an account appends DataRequired as an extra validator.
    api_key = PasswordField("API key", validators=[Length(max=4000)])
    priority = IntegerField("Priority", default=0, validators=[
        Optional(), NumberRange(-1_000_000, 1_000_000, "Between -1000000 and 1000000.")])
    weight = IntegerField("Weight", default=1, validators=[
        Optional(), NumberRange(0, 10_000, "Between 0 and 10000.")])
    models = StringField("Models", validators=[Optional(), Length(max=4000)])
    max_concurrency = IntegerField("Concurrency cap", validators=[
        Optional(), NumberRange(1, 1_000_000, "At least 1, or empty for no cap.")])
    enabled = BooleanField("Enabled", default=True)


class PriceGroupForm(FlaskForm):
    """A price group: its name and the multiplier its users pay on list prices."""

    name = StringField("Name", validators=[DataRequired(), Length(max=100)])
    multiplier = StringField("Multiplier", validators=[DataRequired(), Length(max=20)],
                             description="0.8 = 20% below list, 1.25 = 25% above; > 0, at most 6 decimals")


class UserGroupForm(FlaskForm):
    """Which price group an account is in ("" = list prices)."""

    group = SelectField("Price group", default="", validate_choice=False)
