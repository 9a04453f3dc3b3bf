"""The dashboard at any width and in either colour scheme, measured in a real headless Chromium
(Debian's, driven by Playwright).

Nothing may be clipped from 1,280 to 2,560 px: every table fits its box (no hidden columns behind a
scrollbar), no box hides overflowing content and the page itself never scrolls sideways. At 390 px
the navigation folds behind a Menu button (mouse, keyboard, and a plain row without JavaScript) and
every amount stays on screen. In the system's dark mode the background turns dark and every kind of
text keeps a contrast of at least 4.5:1. ``PAGES`` is the table of pages every check runs over: add
a page there. Screenshots land in ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from pagegrid import billing
from pagegrid.extensions import db
from pagegrid.models import ApiKey
from tests.fake_upstream import message
from tests.test_browser import CHROMIUM
from tests.test_browser import FLAGS
from tests.test_browser import SHOTS
from tests.test_browser import log_in

ADMIN = "operations-lead@example-enterprise.com"
# (name, path, amounts): the path may name {user} (the admin's own account), {key} (one of its
# keys) and {request} (one of its charged requests); ``amounts`` is how many ledger amounts the
# page shows at least (checked on screen at 390 px).
PAGES = (
    ("dashboard", "/dashboard", 2),
    ("keys", "/keys", 0),
    ("key", "/keys/{key}/edit", 0),
    ("wallet", "/wallet", 2),
    ("usage", "/usage", 0),
    ("activity", "/activity", 2),
    ("account", "/account/password", 0),
    ("alerts", "/account/alerts", 0),
    ("request", "/activity/{request}", 0),
    ("admin-users", "/admin/", 0),
    ("admin-overview", "/admin/overview", 0),
    ("admin-requests", "/admin/requests", 2),
    ("admin-user", "/admin/users/{user}", 2),
    ("admin-request", "/admin/requests/{request}", 0),
    ("admin-groups", "/admin/groups", 0),
    ("admin-key", "/admin/keys/{key}/edit", 0),
    ("admin-models", "/admin/models", 0),
    ("admin-upstreams", "/admin/upstreams", 0),
    ("admin-codes", "/admin/topup-codes", 0),
    ("admin-audit", "/admin/audit", 0),
    ("admin-reconcile", "/admin/reconcile", 0),
    ("docs-models", "/docs/models", 0),
    ("docs-wallet", "/docs/wallet", 0),
    ("docs-sdk-examples", "/docs/sdk-examples", 0),
)
WIDE = (1280, 1366, 1440, 1920, 2560)
PHONE = {"width": 390, "height": 844}
PAGE_PARAMS = [pytest.param(path, amounts, id=name) for name, path, amounts in PAGES]

# Every .table-wrap whose table is wider than its box, and every box that hides what overflows it.
CLIPPED = """() => {
  const name = (e) => e.id || e.querySelector('table')?.id || e.className || e.tagName;
  const tables = [...document.querySelectorAll('.table-wrap')]
    .filter(w => w.scrollWidth > w.clientWidth + 1)
    .map(w => `${name(w)}: ${w.scrollWidth - w.clientWidth}px hidden behind a scrollbar`);
  const hidden = [...document.querySelectorAll('main *, header *')]
    .filter(e => ['hidden', 'clip'].includes(getComputedStyle(e).overflowX) && e.offsetParent !== null
                 && getComputedStyle(e).textOverflow !== 'ellipsis' && e.scrollWidth > e.clientWidth + 1)
    .map(e => `${name(e)}: ${e.scrollWidth - e.clientWidth}px cut off`);
  return [...tables, ...hidden];
}"""
PAGE_OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"
# What reaches past the right edge outside any scrolling box: the cause of a sideways page.
OFF_SCREEN = """() => [...document.querySelectorAll('body *')].filter(e => {
    if (e.getBoundingClientRect().right <= window.innerWidth + 1) return false;
    for (let p = e.parentElement; p; p = p.parentElement)
      if (['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(p).overflowX)) return false;
    return true;
  }).slice(0, 5)
    .map(e => `${e.tagName.toLowerCase()}.${e.className}: ${(e.textContent || '').slice(0, 40)}`)"""
# Text of every kind against the background it is drawn on (the first opaque one up the tree),
# as WCAG contrast ratios: (selector, ratio, colour, background) of those under 4.5.
LOW_CONTRAST = """() => {
  const rgb = (c) => { const p = c.match(/[\\d.]+/g).map(Number); return p.length > 3 ? p : [...p, 1]; };
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = (c) => 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  const behind = (e) => { for (; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
                                                          if (c[3] > 0.5) return c; }
                          return [255, 255, 255, 1]; };
  const selectors = ['body', 'h1', 'h2', 'main p', 'th', 'td', '.muted', '.help', 'main a', '.nav a', 'code',
    'pre code', '.flash', '.badge', 'input', 'select', 'button', '.button', '.stat .label', '.stat .value',
    '.chart text', '.banner', '.doc-note', 'label', 'summary'];
  const low = [];
  for (const sel of selectors) {
    for (const e of [...document.querySelectorAll(sel)].filter(e => e.getClientRects().length).slice(0, 5)) {
      const style = getComputedStyle(e);
      const ink = rgb(e instanceof SVGElement ? style.fill : style.color);
      const [a, b] = [lum(ink), lum(behind(e instanceof SVGElement ? e.closest('.card') : e))];
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      if (ratio < 4.5) low.push(`${sel} ${ratio.toFixed(2)} ${style.color} on ${behind(e)}`);
    }
  }
  return [...new Set(low)];
}"""
BACKGROUND = "() => getComputedStyle(document.body).backgroundColor"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="needs Debian's chromium (.ci/run installs it)")


@pytest.fixture(scope="module")
def chromium_browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def open_context(chromium_browser, live_server):
    """``open_context(**options)``: a fresh browser context on the live server (closed after)."""
    contexts = []

    def make(**options):
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = chromium_browser.new_context(base_url=live_server, **options)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def chromium(open_context):
    return open_context()


@pytest.fixture
def busy_admin(app, wallets, sdk, fake_upstream):
    """An admin whose ledger has wide rows: long key names, big token counts, every status.
    Returns the path parameters of ``PAGES``."""
    user_id = wallets.user("2500.123456789", email=ADMIN, admin=True)
    client = sdk(wallets.key(user_id, name="production backend (eu-west-1)"))
    for model in ("claude-haiku-4-5-20251001", "claude-sonnet-4-6"):
        fake_upstream.reply(message(model=model, input_tokens=1_234_567, output_tokens=98_765,
                                    cache_write=2_345_678, cache_read=12_345_678))
        client.messages.create(model=model, max_tokens=100, messages=[{"role": "user", "content": "x"}])
    wallets.user("0", email="someone-with-a-long-address@example-enterprise.com")
    with app.app_context():
        key_id = db.session.scalar(select(ApiKey.id).where(ApiKey.user_id == user_id))
    return {"user": user_id, "key": key_id, "request": wallets.charges(user_id)[0].request_id}


@needs_chromium
@pytest.mark.parametrize(("path", "amounts"), PAGE_PARAMS)
def test_nothing_clips_on_wide_screens(chromium, busy_admin, path, amounts):
    log_in(chromium, ADMIN)
    url = path.format(**busy_admin)
    problems = []
    for width in WIDE:
        chromium.set_viewport_size({"width": width, "height": 900})
        assert chromium.goto(url).status == 200, url
        clipped = chromium.evaluate(CLIPPED)
        overflow = chromium.evaluate(PAGE_OVERFLOW)
        if clipped or overflow > 0:
            problems.append(f"{width}px {url}: {clipped} page overflow {overflow}px")
        if width in (1366, 1920):
            chromium.screenshot(path=str(SHOTS / f"layout{_slug(url)}-{width}.png"), full_page=True)
    assert not problems, "\n".join(problems)


@needs_chromium
@pytest.mark.parametrize(("path", "amounts"), PAGE_PARAMS)
def test_phone_width_folds_the_nav_and_keeps_the_amounts(open_context, busy_admin, path, amounts):
    page = open_context(viewport=PHONE)
    log_in(page, ADMIN)
    url = path.format(**busy_admin)
    assert page.goto(url).status == 200, url
    page.screenshot(path=str(SHOTS / f"layout{_slug(url)}-390.png"), full_page=True)
    assert page.evaluate(PAGE_OVERFLOW) <= 0, f"{url} scrolls sideways: {page.evaluate(OFF_SCREEN)}"
    assert not page.locator("#main-nav").is_visible(), f"{url}: the navigation is not folded"
    assert page.locator("header.top").bounding_box()["height"] <= 70
    cells = page.locator("table td.amount")
    assert cells.count() >= amounts, f"{url}: {cells.count()} amounts"
    for i in range(cells.count()):
        box = cells.nth(i).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"{url}: amount {i} is off screen"


@needs_chromium
@pytest.mark.parametrize(("path", "amounts"), PAGE_PARAMS)
def test_dark_mode_follows_the_system_and_text_stays_readable(open_context, busy_admin, path, amounts):
    url = path.format(**busy_admin)
    backgrounds = {}
    for scheme in ("light", "dark"):
        page = open_context(color_scheme=scheme, viewport={"width": 1366, "height": 900})
        log_in(page, ADMIN)
        assert page.goto(url).status == 200, url
        page.locator("details").evaluate_all("(all) => all.forEach(d => d.open = true)")
        backgrounds[scheme] = page.evaluate(BACKGROUND)
        assert page.evaluate(LOW_CONTRAST) == [], f"{scheme} {url}"
        if scheme == "dark":
            page.screenshot(path=str(SHOTS / f"layout{_slug(url)}-dark.png"), full_page=True)
    assert backgrounds["light"] != backgrounds["dark"]
    assert backgrounds["dark"] == "rgb(15, 20, 26)"  # --bg of the dark scheme


@needs_chromium
def test_the_menu_opens_by_click_and_keyboard_and_shows_without_javascript(open_context, busy_admin):
    page = open_context(viewport=PHONE)
    log_in(page, ADMIN)
    page.goto("/wallet")
    nav, button = page.locator("#main-nav"), page.locator("button.menu-toggle")
    assert button.is_visible() and not nav.is_visible()
    assert button.get_attribute("aria-expanded") == "false"
    button.click()
    assert nav.is_visible() and button.get_attribute("aria-expanded") == "true"
    page.screenshot(path=str(SHOTS / "layout-menu-open-390.png"), full_page=True)
    links = nav.locator("a")
    for i in range(links.count()):  # one link a row, all on screen
        box = links.nth(i).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert page.evaluate(PAGE_OVERFLOW) <= 0
    nav.get_by_text("Usage").click()
    page.wait_for_url("**/usage")
    assert not page.locator("#main-nav").is_visible()  # folded again on the next page

    page.locator("button.menu-toggle").focus()
    page.keyboard.press("Enter")
    assert page.locator("#main-nav").is_visible()
    page.keyboard.press("Tab")  # into the first link
    assert page.evaluate("document.activeElement.closest('#main-nav') !== null")
    page.keyboard.press("Escape")
    assert not page.locator("#main-nav").is_visible()
    assert page.evaluate("document.activeElement.classList.contains('menu-toggle')")

    wide = open_context(viewport={"width": 1280, "height": 900})
    log_in(wide, ADMIN)
    assert wide.locator("#main-nav").is_visible() and not wide.locator("button.menu-toggle").is_visible()

    plain = open_context(viewport=PHONE, java_script_enabled=False)
    log_in(plain, ADMIN)
    plain.goto("/wallet")
    assert plain.locator("#main-nav").is_visible() and not plain.locator("button.menu-toggle").is_visible()
    assert plain.evaluate(PAGE_OVERFLOW) <= 0


def _slug(url: str) -> str:
    return url.rstrip("/").replace("/", "-")


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
