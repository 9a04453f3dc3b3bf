"""Forms the dashboard and the admin console share (CSRF comes with FlaskForm)."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import IntegerField
from wtforms import SelectMultipleField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import NumberRange
from wtforms.validators import Optional

from pagegrid import allowlist


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
