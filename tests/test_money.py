"""The one money formatter: cents in summaries, every nano-USD in details, never an exponent."""

from __future__ import annotations

import pytest

from pagegrid.money import format_per_mtok
from pagegrid.money import format_usd
from pagegrid.money import per_mtok_decimal


@pytest.mark.parametrize(("nanos", "summary", "exact"), [
    (0, "$0.00", "$0.000000000"),
    (1, "$0.00", "$0.000000001"),
    (-1, "$0.00", "-$0.000000001"),
    (4_999_999, "$0.00", "$0.004999999"),
    (5_000_000, "$0.01", "$0.005000000"),
    (-5_000_000, "-$0.01", "-$0.005000000"),
    (812_500, "$0.00", "$0.000812500"),
    (9_995_000_000, "$10.00", "$9.995000000"),
    (1_234_567_890_123, "$1,234.57", "$1,234.567890123"),
    (-25 * 10**9, "-$25.00", "-$25.000000000"),
])
def test_summary_and_exact_forms(nanos, summary, exact):
    assert format_usd(nanos) == summary
    assert format_usd(nanos, exact=True) == exact


def test_machine_forms_have_no_separators():
    # the CLI's `balance`
    assert format_usd(1_234_567_890_123, exact=True, grouping=False) == "$1234.567890123"
    assert format_usd(-1_234_567_890_123, exact=True, symbol=False, grouping=False) == "-1234.567890123"


@pytest.mark.parametrize(("nanos_per_token", "decimal", "page"), [
    (0, "0", "$0"), (100, "0.1", "$0.10"), (125, "0.125", "$0.125"), (1000, "1", "$1"),
    (1250, "1.25", "$1.25"), (6250, "6.25", "$6.25"), (100_000_000, "100000", "$100000"),
])
def test_prices_per_million_tokens(nanos_per_token, decimal, page):
    assert per_mtok_decimal(nanos_per_token) == decimal
    assert format_per_mtok(nanos_per_token) == page
