"""The dashboard at any width, measured in a real headless Chromium (Debian's, driven by Playwright).

Nothing may be clipped from 1,280 to 2,560 px: every table fits its box (no hidden columns behind a
scrollbar) and the page itself never scrolls sideways. At 390 px the navigation stays one row and
each ledger row still shows its amount. Screenshots land in ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pagegrid import billing
from tests.fake_upstream import message
from tests.test_browser import CHROMIUM
from tests.test_browser import FLAGS
from tests.test_browser import SHOTS
from tests.test_browser import log_in

PAGES = ("/dashboard", "/wallet", "/usage", "/admin/", "/admin/models", "/docs/models", "/docs/wallet")
WIDE = (1280, 1366, 1440, 1920, 2560)

# Every .table-wrap whose table is wider than its box, and how much of it is hidden.
CLIPPED_TABLES = """() => [...document.querySelectorAll('.table-wrap')]
    .filter(w => w.scrollWidth > w.clientWidth + 1)
    .map(w => `${w.querySelector('table')?.id || 'table'}: ${w.scrollWidth - w.clientWidth}px hidden`)"""
PAGE_OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="needs Debian's chromium (.ci/run installs it)")


@pytest.fixture
def chromium(live_server):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 900})
        yield context.new_page()
        context.close()
        browser.close()


@pytest.fixture
def busy_admin(wallets, sdk, fake_upstream):
    """An admin whose ledger has wide rows: long key names, big token counts, every status."""
    user_id = wallets.user("2500.123456789", email="operations-lead@example-enterprise.com", admin=True)
    client = sdk(wallets.key(user_id, name="production backend (eu-west-1)"))
    for model in ("claude-haiku-4-5-20251001", "claude-sonnet-4-6"):
        fake_upstream.reply(message(model=model, input_tokens=1_234_567, output_tokens=98_765,
                                    cache_write=2_345_678, cache_read=12_345_678))
        client.messages.create(model=model, max_tokens=100, messages=[{"role": "user", "content": "x"}])
    wallets.user("0", email="someone-with-a-long-address@example-enterprise.com")
    return user_id


@needs_chromium
def test_nothing_clips_on_wide_screens(chromium, busy_admin, wallets):
    log_in(chromium, "operations-lead@example-enterprise.com")
    request_id = wallets.charges(busy_admin)[0].request_id
    problems = []
    for width in WIDE:
        chromium.set_viewport_size({"width": width, "height": 900})
        for path in PAGES + (f"/admin/users/{busy_admin}", f"/activity/{request_id}",
                             f"/admin/requests/{request_id}", "/account/alerts"):
            chromium.goto(path)
            clipped = chromium.evaluate(CLIPPED_TABLES)
            overflow = chromium.evaluate(PAGE_OVERFLOW)
            if clipped or overflow > 0:
                problems.append(f"{width}px {path}: {clipped} page overflow {overflow}px")
        chromium.goto("/wallet")
        chromium.screenshot(path=str(SHOTS / f"layout-wallet-{width}.png"), full_page=True)
    assert not problems, "\n".join(problems)


@needs_chromium
def test_phone_width_keeps_one_nav_row_and_the_amounts(chromium, busy_admin):
    log_in(chromium, "operations-lead@example-enterprise.com")
    chromium.set_viewport_size({"width": 390, "height": 844})
    for path in ("/dashboard", "/wallet"):
        chromium.goto(path)
        chromium.screenshot(path=str(SHOTS / f"layout{path.replace('/', '-')}-390.png"), full_page=True)
        assert chromium.evaluate(PAGE_OVERFLOW) <= 0, path
        links = chromium.locator("header .nav a")
        tops = {round(links.nth(i).bounding_box()["y"]) for i in range(links.count())}
        assert len(tops) == 1, f"{path}: the navigation wraps into {len(tops)} rows"
        header = chromium.locator("header.top").bounding_box()
        assert header["height"] <= 110, f"{path}: the header is {header['height']}px tall"
        amounts = chromium.locator("table td.amount")
        assert amounts.count() >= 2
        for i in range(amounts.count()):
            box = amounts.nth(i).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, f"{path}: amount {i} is off screen"


def test_latest_transactions_name_the_key_and_a_zero_balance_reads_zero(wallets, browser, sdk, fake_upstream):
    user_id = wallets.user("0", email="zero@example.com")
    browser.login("zero@example.com")
    page = browser.get("/wallet").get_data(as_text=True)
    assert 'title="$0.000000000">$0.00<' in page and "Exact: $0.000000000" in page and "E-" not in page
    with wallets.app.app_context():
        billing.credit(user_id, 10**9, "test funds")
    client = sdk(wallets.key(user_id, name="ci-runner"))
    fake_upstream.reply(message(model="claude-haiku-4-5-20251001", input_tokens=100, output_tokens=10))
    client.messages.create(model="claude-haiku-4-5", max_tokens=20,
                           messages=[{"role": "user", "content": "x"}])
    for path in ("/dashboard", "/wallet"):
        rows = browser.get(path).get_data(as_text=True).split("<tbody>", 1)[1]
        assert "<td>ci-runner (pg-" in rows, path
        assert '<td class="num amount">-$0.000150000</td>' in rows, path
