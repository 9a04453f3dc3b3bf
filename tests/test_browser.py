"""The whole customer journey in a real headless Chromium (Debian's, driven by Playwright).

Screenshots of every page land in ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import anthropic
import pytest

from tests.conftest import PASSWORD
from tests.fake_upstream import message

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="needs Debian's chromium (.ci/run installs it)")


@pytest.fixture
def page(live_server):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        tab.on("dialog", lambda dialog: dialog.accept())  # the revoke confirmation
        yield tab
        context.close()
        browser.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page, email: str) -> None:
    page.goto("/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url("**/dashboard")


def test_admin_to_customer_journey(page, live_server, wallets, fake_upstream):
    admin_id = wallets.user("0", email="boss@example.com", admin=True)
    assert admin_id
    page.goto("/login")
    shot(page, "01-login")
    log_in(page, "boss@example.com")

    page.goto("/admin/users/new")
    page.fill("input[name=email]", "ada@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_selector("form[action$='/credit'] input[name=amount]")
    page.fill("form[action$='/credit'] input[name=amount]", "5")
    page.fill("form[action$='/credit'] input[name=note]", "Welcome credit")
    page.click("form[action$='/credit'] button[type=submit]")
    page.wait_for_selector(".flash.success")
    assert "$5.000000000" in page.inner_text(".flash.success")
    shot(page, "02-admin-user-credited")
    page.goto("/admin/")
    shot(page, "03-admin-users")
    page.click("text=Log out")
    page.wait_for_url("**/login")

    log_in(page, "ada@example.com")
    assert page.inner_text("#balance") == "$5.00"
    shot(page, "04-dashboard")

    page.goto("/keys")
    page.fill("input[name=name]", "laptop")
    page.click("form[action$='/keys'] button[type=submit]")
    secret = page.inner_text("#secret-value")
    assert secret.startswith("pg-") and len(secret) == 67
    assert "shown only once" in page.inner_text("#new-key")
    shot(page, "05-key-created")
    page.reload()  # the secret is gone for good, and no second key appears
    assert secret not in page.content()
    assert page.locator("#keys tbody tr").count() == 1

    fake_upstream.reply(message("Hello Ada!", input_tokens=1200, output_tokens=300,
                                model="claude-sonnet-4-6"))
    client = anthropic.Anthropic(api_key=secret, base_url=f"{live_server}/v1", max_retries=0)
    reply = client.messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=500, messages=[{"role": "user", "content": "Hi"}])
    assert reply.parse().content[0].text == "Hello Ada!"
    request_id = reply.headers["request-id"]
    cost = 1200 * 3000 + 300 * 15000  # Sonnet 4.6: $3 / $15 per 1M tokens
    page.goto("/wallet")
    for _ in range(100):  # the charge lands right after the reply (the hold may show first)
        if request_id in page.content() and page.inner_text("#balance") != "$5.00":
            break
        page.wait_for_timeout(100)
        page.reload()
    assert request_id in page.content()
    assert page.inner_text("#balance") == "$4.99"
    assert f"$-{cost / 1e9:.6f}".replace("$-", "-$") in page.content()
    shot(page, "06-wallet")

    page.goto("/usage")
    assert page.inner_text("#total-requests") == "1"
    assert page.inner_text("#total-tokens") == "1,500"
    assert page.locator("#spend-chart rect.bar").count() == 30
    assert "claude-sonnet-4-6" in page.inner_text("#by-model")
    shot(page, "07-usage")

    page.goto("/keys")
    page.click("form[action$='/revoke'] button")
    page.wait_for_selector(".flash.success")
    assert "revoked" in page.inner_text("#keys")
    shot(page, "08-key-revoked")
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=10,
                               messages=[{"role": "user", "content": "again"}])

    for name in ("getting-started", "claude-code", "models"):
        page.goto(f"/docs/{name}")
        assert page.locator("article").count() == 1
        shot(page, f"09-docs-{name}")


def test_two_factor_enrol_and_login(page, wallets):
    import pyotp

    from pagegrid import clock

    wallets.user("1", email="grace@example.com")
    log_in(page, "grace@example.com")
    page.goto("/account/password")
    page.click("text=Turn on two-factor login")
    page.wait_for_url("**/account/two-factor")
    qr = page.locator(".qr-box svg.qr")  # drawn on the server, no script
    assert qr.is_visible() and qr.bounding_box()["width"] >= 150
    shot(page, "10-two-factor-enrol")
    secret = page.inner_text("#totp-secret").replace(" ", "")
    totp = pyotp.TOTP(secret)
    page.fill("form[action$='/enable'] input[name=password]", PASSWORD)
    page.fill("form[action$='/enable'] input[name=code]", totp.at(clock.now()))
    page.click("form[action$='/enable'] button[type=submit]")
    page.wait_for_selector("#recovery-codes")
    codes = page.inner_text("#recovery-codes").split()
    assert len(codes) == 10 and page.inner_text("#two-factor-status") == "on"
    shot(page, "11-two-factor-recovery-codes")
    page.reload()
    assert page.locator("#recovery-codes").count() == 0  # shown once

    page.click("text=Log out")
    page.wait_for_url("**/login")
    page.fill("input[name=email]", "grace@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url("**/login/code")
    shot(page, "12-two-factor-code")
    # The code of the next step (the one used to enrol is spent; the window allows one step of drift).
    code = totp.at(clock.now().timestamp() + 30)
    page.fill("input[name=code]", code)
    page.click("main form button[type=submit]")
    page.wait_for_url("**/dashboard")

    page.click("text=Log out")
    page.wait_for_url("**/login")
    page.fill("input[name=email]", "grace@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url("**/login/code")
    page.fill("input[name=code]", code)  # the same code again (still inside the window)
    page.click("main form button[type=submit]")
    page.wait_for_selector(".flash.error")
    assert "used already" in page.inner_text(".flash.error")
    page.fill("input[name=code]", codes[0])
    page.click("main form button[type=submit]")
    page.wait_for_url("**/dashboard")
    assert "9 are left" in page.inner_text(".flash")
