"""Money as text: the one formatter for nano-USD amounts, used by every page, export and command.

The rule (README "Money on screen"):

- Summaries (balances, money on hold, spend totals, top-up amounts) show cents, rounded half away
  from zero: ``$1,234.57``. Wherever a summary is shown, its exact value is one hover away
  (``title``) or on an "Exact" line.
- Details (each ledger row, a request's cost, tooltips, the CLI, CSV exports) show every nano-USD:
  ``-$0.000812500``. Nothing is ever rounded there, so rows add up to the balance digit for digit.

Prices are nano-USD per token and read as dollars per 1M tokens: ``$1.25``, ``$0.10``, ``$0.125``
on pages (``format_per_mtok``), ``0.1`` in forms and JSON (``per_mtok_decimal``); both exact.

Integers only: no ``Decimal`` exponent can leak into the text (``$0E-9``), no float can round.
The app factory registers ``format_usd`` as the ``usd`` template filter and ``format_per_mtok`` as
``per_mtok``; nothing else formats money.
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


def exact_decimal(numerator: int, denominator: int) -> str:
    """``numerator / denominator`` as an exact decimal without padding (``5, 4`` -> ``"1.25"``).

    The denominator must divide a power of ten (2s and 5s only), so the decimal ends.
    """
    places, scale = 0, 1
    while (numerator * scale) % denominator:
        places, scale = places + 1, scale * 10
        if places > 30:
            raise ValueError(f"{numerator}/{denominator} has no exact decimal")
    whole, frac = divmod(abs(numerator) * scale // denominator, scale)
    digits = f"{frac:0{places}d}".rstrip("0") if places else ""
    sign = "-" if numerator * denominator < 0 else ""
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def per_mtok_decimal(nanos_per_token: int, num: int = 1, den: int = 1) -> str:
    """A per-token price (times a price group's multiplier ``num / den``) as dollars per 1M
    tokens, exact and without padding: 6250 -> ``"6.25"``; 3000 × 5/4 -> ``"3.75"``."""
    # 1M tokens at n nano-USD = n/1000 USD.
    return exact_decimal(int(nanos_per_token) * num, 1000 * den)


def format_per_mtok(nanos_per_token: int, num: int = 1, den: int = 1) -> str:
    """A per-token price for pages, at least to the cent: ``$1``, ``$1.25``, ``$0.10``, ``$0.125``."""
    text = per_mtok_decimal(nanos_per_token, num, den)
    sign = "-" if text.startswith("-") else ""
    whole, _, cents = text.lstrip("-").partition(".")
    return f"{sign}${whole}.{cents.ljust(2, '0')}" if cents else f"{sign}${whole}"
