"""Logging: one structured line per API request, JSON (``PAGEGRID_LOG_FORMAT=json``) or text.

PageGrid's loggers (``pagegrid.*``) write to stderr, which gunicorn and systemd collect. The
per-request line goes to ``pagegrid.requests`` with its fields in ``extra={"fields": …}``;
fields are ids, names, numbers and error types only: never a key, a header or a prompt.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC
from datetime import datetime

from flask import Flask

REQUEST_LOGGER = "pagegrid.requests"
_HANDLER_NAME = "pagegrid-stderr"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one line of JSON."""
        line = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), default=str)


class TextFormatter(logging.Formatter):
    """Readable lines: ``time level logger message key=value …``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` with its fields as ``key=value`` pairs."""
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            text += " " + " ".join(f"{name}={value}" for name, value in fields.items()
                                   if value is not None)
        return text


def init_app(app: Flask) -> None:
    """Send ``pagegrid.*`` logs to stderr in the configured format (once per process)."""
    logger = logging.getLogger("pagegrid")
    if app.testing:
        return  # pytest's capture shows the records; the formatters are tested on their own
    formatter = JsonFormatter() if app.config["PAGEGRID_LOG_FORMAT"] == "json" else TextFormatter()
    handler = next((h for h in logger.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        logger.addHandler(handler)
    handler.setFormatter(formatter)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def request_line(fields: dict) -> None:
    """Log the line of one finished API request."""
    logger = logging.getLogger(REQUEST_LOGGER)
    if logger.isEnabledFor(logging.INFO):
        logger.info("%s %s %s", fields.get("method"), fields.get("route"), fields.get("status"),
                    extra={"fields": fields})
