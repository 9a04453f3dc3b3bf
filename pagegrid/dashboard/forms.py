"""WTForms for the customer dashboard (CSRF comes with FlaskForm)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField
from wtforms import EmailField
from wtforms import Field
from wtforms import HiddenField
from wtforms import PasswordField
from wtforms import SelectField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import Length
from wtforms.validators import Optional
from wtforms.validators import ValidationError

from pagegrid.forms import KeySettingsForm
from pagegrid.forms import NewPasswordForm


class LoginForm(FlaskForm):
    """Email and password."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=255)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])


class CodeForm(FlaskForm):
    """The second login step: a code from the authenticator app, or a recovery code."""

    code = StringField("Code", validators=[DataRequired(), Length(max=40)])


class TwoFactorForm(FlaskForm):
    """Turning two-factor login on or off, or new recovery codes: the password and a code."""

    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])
    code = StringField("Code from the app", validators=[DataRequired(), Length(max=40)])


class PasswordForm(NewPasswordForm):
    """Change one's own password."""

    current = PasswordField("Current password", validators=[DataRequired()])


class AlertForm(FlaskForm):
    """The low-balance alert: a threshold in USD (empty: off) and an optional webhook URL."""

    threshold = StringField("Alert below (USD)", validators=[Optional(), Length(max=20)])
    webhook_url = StringField("Webhook URL (optional)", validators=[Optional(), Length(max=2000)])


class ForgotForm(FlaskForm):
    """The email of an account whose password is forgotten."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=255)])


class ResetForm(NewPasswordForm):
    """A new password, set through a reset link (the token travels in a hidden field)."""

    token = HiddenField(validators=[DataRequired(), Length(max=100)])


class NewKeyForm(KeySettingsForm):
    """A new key: a name (required here), its expiry and its limits."""

    name = StringField("Name", validators=[DataRequired(), Length(max=100)])


class RedeemForm(FlaskForm):
    """A top-up code."""

    code = StringField("Top-up code", validators=[DataRequired(), Length(max=64)])


class CheckoutForm(FlaskForm):
    """An amount to pay by card through Stripe Checkout."""

    amount = StringField("Amount (USD)", validators=[DataRequired(), Length(max=20)])


class LedgerFilterForm(FlaskForm):
    """Transaction history filters (GET, so no CSRF)."""

    class Meta:
        csrf = False

    key = SelectField("Key", choices=[], validate_choice=False)
    model = SelectField("Model", choices=[], validate_choice=False)
    start = DateField("From", validators=[Optional()])
    end = DateField("To", validators=[Optional()])


class UsageFilterForm(FlaskForm):
    """The Usage page's range and key (GET, so no CSRF); UTC days, both ends included."""

    class Meta:
        csrf = False

    MAX_DAYS = 366

    key = SelectField("Key", choices=[], validate_choice=False)
    start = DateField("From", validators=[Optional()])
    end = DateField("To", validators=[Optional()])

    def validate_end(self, field: Field) -> None:
        """From no later than To, and at most a year and a day between them."""
        start = self.start.data
        if start is None or field.data is None:
            return
        if field.data < start:
            raise ValidationError("“To” is before “From”.")
        if (field.data - start).days + 1 > self.MAX_DAYS:
            raise ValidationError(f"Pick at most {self.MAX_DAYS} days.")
