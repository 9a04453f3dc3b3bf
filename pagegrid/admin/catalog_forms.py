"""Admin forms for adding models, family price rules and the reconciliation filters."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField
from wtforms import Field
from wtforms import SelectField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import Length
from wtforms.validators import Optional
from wtforms.validators import ValidationError

from pagegrid.admin.forms import MODEL_NAME
from pagegrid.admin.forms import PROVIDERS
from pagegrid.admin.forms import ModelForm
from pagegrid.admin.forms import price_per_mtok
from pagegrid.price_rules import PATTERN

PRICE_NAMES = ("input", "output", "cache_write", "cache_write_1h", "cache_read")
MAX_REPORT_DAYS = 366


class NewModelForm(ModelForm):
    """A catalog entry the operator adds by hand: the edit form plus its id and provider."""

    model_id = StringField("Model id (what clients send)", validators=[DataRequired(), Length(max=100)])
    provider = SelectField("Provider", choices=PROVIDERS, validators=[DataRequired()])

    def validate_model_id(self, field: Field) -> None:
        """A plain model name: letters, digits and . _ : / @ -."""
        if not MODEL_NAME.fullmatch((field.data or "").strip()):
            raise ValidationError("Use letters, digits and . _ : / @ - only, e.g. claude-opus-5-5.")


OPTIONAL_PRICE = [Optional(), Length(max=40), price_per_mtok]


class PriceRuleForm(FlaskForm):
    """A family rule: a pattern and the model it copies, or five explicit prices."""

    pattern = StringField("Pattern (* and ? wildcards)", validators=[DataRequired(), Length(max=100)])
    like_model = StringField("Priced like model (empty: the family's current model)",
                             validators=[Optional(), Length(max=100)])
    input = StringField("Input", validators=OPTIONAL_PRICE)
    output = StringField("Output", validators=OPTIONAL_PRICE)
    cache_write = StringField("Cache write (5 min)", validators=OPTIONAL_PRICE)
    cache_write_1h = StringField("Cache write (1 h)", validators=OPTIONAL_PRICE)
    cache_read = StringField("Cache read", validators=OPTIONAL_PRICE)

    def validate_pattern(self, field: Field) -> None:
        """A model id with wildcards."""
        if not PATTERN.fullmatch((field.data or "").strip()):
            raise ValidationError("Use a model id with * or ? wildcards, e.g. claude-opus-*.")

    def given_prices(self) -> list[str]:
        """The price fields that were filled in."""
        values = ((getattr(self, name).data or "").strip() for name in PRICE_NAMES)
        return [value for value in values if value]

    def validate(self, extra_validators: dict | None = None) -> bool:
        """The fields, then: either no price or all five (an empty field skips its own checks)."""
        valid = super().validate(extra_validators)
        if 0 < len(self.given_prices()) < len(PRICE_NAMES):
            problem = "Give all five prices, or none and a model to copy."
            self.cache_read.errors = [*self.cache_read.errors, problem]
            return False
        return valid


class ReconcileFilterForm(FlaskForm):
    """Day range (UTC, both ends included) and account (GET, so no CSRF)."""

    class Meta:
        csrf = False

    start = DateField("From (UTC)", validators=[Optional()])
    end = DateField("To (UTC)", validators=[Optional()])
    account = SelectField("Account", validators=[Optional()], validate_choice=False)

    def validate_end(self, field: Field) -> None:
        """The range runs forwards and spans at most a year."""
        if field.data and self.start.data:
            if field.data < self.start.data:
                raise ValidationError("The last day is before the first.")
            if (field.data - self.start.data).days >= MAX_REPORT_DAYS:
                raise ValidationError(f"Pick at most {MAX_REPORT_DAYS} days.")
