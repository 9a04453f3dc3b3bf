"""Money as text: the one formatter for nano-USD amounts, used by every page, export and command.

The rule (README "Money on screen"):

- Summaries (balances, money on hold, spend totals, top-up amounts) show cents, rounded half away
  from zero: ``$1,234.57``. Wherever a summary is shown, its exact value is one hover away
  (``title``) or on an "Exact" line.
- Details (each ledger row, a request's cost, tooltips, the CLI, CSV exports) show every nano-USD:
  ``-$0.000812500``. Nothing is ever rounded there, so rows add up to the balance digit for digit.

Integers only: no ``Decimal`` exponent can leak into the text (``$0E-9``), no float can round.
"""

from __future__ import annotations

NANOS_PER_USD = 10**9
NANOS_PER_CENT = 10**7


def format_usd(nanos: int, *, exact: bool = False, symbol: bool = True, grouping: bool = True) -> str:
    """Render nano-USD as dollars: ``$12.35`` (cents) or, ``exact``, ``$12.345678901``.

    ``grouping`` adds thousands separators (pages); machine-read text (CLI, CSV) turns it off,
    and CSV also drops the ``$`` (``symbol=False``).
    """
    magnitude = abs(int(nanos))
    if exact:
        whole, frac = divmod(magnitude, NANOS_PER_USD)
        digits = f"{frac:09d}"
    else:
        cents = (magnitude + NANOS_PER_CENT // 2) // NANOS_PER_CENT
        whole, frac = divmod(cents, 100)
        digits = f"{frac:02d}"
    sign = "-" if nanos < 0 and (whole or int(digits)) else ""
    number = f"{whole:,}" if grouping else str(whole)
    return f"{sign}{'$' if symbol else ''}{number}.{digits}"
