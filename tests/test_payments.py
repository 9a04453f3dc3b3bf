"""Stripe top-ups against a fake Stripe API on loopback, with webhook events signed like Stripe's.

Duplicate, out-of-order and concurrent deliveries credit once; a wrong signature credits nothing;
each refund debits once. Every test ends with balance == sum(ledger) (conftest checks it too).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anthropic
import pytest
import requests
from sqlalchemy import select

from pagegrid.extensions import db
from pagegrid.models import LedgerEntry
from pagegrid.models import StripeTopUp
from tests import fake_stripe
from tests.fake_stripe import FakeStripe
from tests.fake_stripe import event
from tests.fake_stripe import signature
from tests.fake_upstream import message
from tests.test_browser import CHROMIUM
from tests.test_browser import FLAGS
from tests.test_browser import SHOTS
from tests.test_browser import log_in

PUBLIC_URL = "https://gateway.example.com"
WEBHOOK = "/billing/stripe/webhook"


@pytest.fixture(scope="session")
def stripe_server():
    fake = FakeStripe()
    server = fake_stripe.serve(fake)
    yield fake
    server.shutdown()


@pytest.fixture
def stripe_api(app, stripe_server: FakeStripe) -> FakeStripe:
    """The fake Stripe, reset, with the app configured to use it."""
    stripe_server.reset()
    app.config.update(PAGEGRID_STRIPE_SECRET_KEY=fake_stripe.SECRET_KEY,
                      PAGEGRID_STRIPE_WEBHOOK_SECRET=fake_stripe.WEBHOOK_SECRET,
                      PAGEGRID_STRIPE_API_BASE=stripe_server.url, PAGEGRID_PUBLIC_URL=PUBLIC_URL,
                      PAGEGRID_TOPUP_MIN_USD="5", PAGEGRID_TOPUP_MAX_USD="500")
    return stripe_server


@pytest.fixture
def customer(wallets, browser):
    """A logged-in customer with an empty wallet: (user_id, browser)."""
    user_id = wallets.user("0")
    assert browser.login(wallets.email(user_id)).status_code == 302
    return user_id, browser


def deliver(client, kind: str, obj: dict, **sign) -> tuple[int, dict]:
    """POST a signed webhook event; return (status, JSON body)."""
    payload = event(kind, obj)
    response = client.post(WEBHOOK, data=payload, content_type="application/json",
                           headers={"Stripe-Signature": signature(payload, **sign)})
    return response.status_code, response.get_json()


def checkout(browser, amount: str):
    return browser.post("/wallet/checkout", {"amount": amount}, token_from="/wallet")


def start(stripe_api: FakeStripe, browser, amount: str = "25") -> dict:
    """Add funds through the dashboard; return the session the fake Stripe created."""
    response = checkout(browser, amount)
    assert response.status_code == 303, response.get_data(as_text=True)
    session_id = response.headers["Location"].rsplit("/", 1)[1]
    return stripe_api.sessions[session_id]


def topup(app, topup_id: int) -> StripeTopUp:
    with app.app_context():
        row = db.session.get(StripeTopUp, topup_id)
        db.session.expunge(row)
        return row


def ledger(app, user_id: int) -> list[tuple[str, str, int]]:
    with app.app_context():
        return [tuple(r) for r in db.session.execute(
            select(LedgerEntry.kind, LedgerEntry.request_id, LedgerEntry.amount_nanos)
            .where(LedgerEntry.user_id == user_id).order_by(LedgerEntry.id))]


def test_off_without_stripe_keys(app, customer, client, runner, wallets):
    user_id, browser = customer
    page = browser.get("/wallet").get_data(as_text=True)
    assert 'id="checkout-form"' not in page and "Pay by card" not in page
    assert checkout(browser, "25").status_code == 302
    assert client.post(WEBHOOK, data="{}", content_type="application/json").status_code == 404
    result = runner.invoke(args=["checkout", wallets.email(user_id), "25"])
    assert result.exit_code != 0 and "PAGEGRID_STRIPE_SECRET_KEY" in result.output
    assert "Pay by card" not in client.get("/docs/wallet").get_data(as_text=True)


def test_the_docs_explain_card_payments_when_they_are_on(stripe_api, client):
    page = client.get("/docs/wallet").get_data(as_text=True)
    assert "<em>Pay by card</em>" in page and "$5.00 to $500.00" in page


def test_add_funds_creates_a_pending_top_up_and_a_checkout_session(app, stripe_api, customer, wallets):
    user_id, browser = customer
    page = browser.get("/wallet").get_data(as_text=True)
    assert 'id="checkout-form"' in page and "$5.00 to $500.00" in page
    response = checkout(browser, "25.50")
    assert response.status_code == 303
    (call,) = stripe_api.calls
    assert call["method"] == "POST" and call["path"] == "/v1/checkout/sessions"
    assert call["authorization"] == f"Bearer {fake_stripe.SECRET_KEY}"
    form = call["form"]
    with app.app_context():
        row = db.session.scalar(select(StripeTopUp).where(StripeTopUp.user_id == user_id))
    assert form["mode"] == "payment" and form["client_reference_id"] == str(row.id)
    assert form["line_items"] == {"0": {"quantity": "1", "price_data": {
        "currency": "usd", "unit_amount": "2550", "product_data": {"name": "PageGrid wallet top-up"}}}}
    assert form["success_url"].startswith(f"{PUBLIC_URL}/wallet?checkout=success")
    assert form["cancel_url"].startswith(f"{PUBLIC_URL}/wallet?checkout=cancelled")
    assert form["customer_email"] == wallets.email(user_id)
    session = stripe_api.sessions[row.session_id]
    assert response.headers["Location"] == session["url"] == row.checkout_url
    assert (row.status, row.amount_nanos) == ("pending", 25_500_000_000)
    page = browser.get("/wallet").get_data(as_text=True)
    assert "pending" in page and "$25.50" in page and "Pay now" in page
    assert wallets.balance(user_id) == 0


@pytest.mark.parametrize(("amount", "message"), [
    ("lots", "Enter an amount"), ("4.99", "from $5.00 to $500.00"), ("500.01", "from $5.00 to $500.00"),
    ("10.005", "whole cents"), ("-10", "from $5.00"),
])
def test_amounts_outside_the_rules_are_refused(app, stripe_api, customer, amount, message):
    user_id, browser = customer
    response = checkout(browser, amount)
    assert response.status_code == 302
    assert message in browser.get("/wallet").get_data(as_text=True)
    assert stripe_api.calls == []
    with app.app_context():
        assert db.session.scalar(select(StripeTopUp.id)) is None


def test_a_stripe_hiccup_is_retried_with_the_same_idempotency_key(app, stripe_api, customer):
    user_id, browser = customer
    stripe_api.failures = 1
    assert checkout(browser, "25").status_code == 303
    first, retry = stripe_api.calls
    assert first["path"] == retry["path"] == "/v1/checkout/sessions"
    assert first["idempotency_key"] and first["idempotency_key"] == retry["idempotency_key"]
    assert len(stripe_api.sessions) == 1


def test_a_stripe_outage_marks_the_top_up_failed(app, stripe_api, customer, wallets):
    user_id, browser = customer
    stripe_api.failures = 10
    assert checkout(browser, "25").status_code == 302
    assert "Stripe did not accept" in browser.get("/wallet").get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(StripeTopUp.status)) == "failed"
    assert wallets.balance(user_id) == 0


def test_cli_prints_the_checkout_url(app, stripe_api, runner, wallets):
    user_id = wallets.user("0", email="cli-pay@example.com")
    result = runner.invoke(args=["checkout", "cli-pay@example.com", "40"])
    assert result.exit_code == 0, result.output
    (session,) = stripe_api.sessions.values()
    assert result.output.strip() == session["url"]
    assert session["amount_total"] == 4000 and session["success_url"].startswith(PUBLIC_URL)
    assert runner.invoke(args=["checkout", "cli-pay@example.com", "1"]).exit_code != 0
    with app.app_context():
        assert db.session.scalar(select(StripeTopUp.user_id)) == user_id


def test_duplicate_and_out_of_order_deliveries_credit_once(app, stripe_api, customer, client, wallets):
    user_id, browser = customer
    session = start(stripe_api, browser, "25")
    topup_id = int(session["client_reference_id"])
    # A bank debit: completed but unpaid first, then the async success, then everything again.
    assert deliver(client, "checkout.session.completed", stripe_api.public(session)) == (
        200, {"received": True, "result": "awaiting payment"})
    assert wallets.balance(user_id) == 0
    paid = stripe_api.pay(session["id"])
    status, body = deliver(client, "checkout.session.async_payment_succeeded", paid)
    assert status == 200 and body["result"].startswith("credited $25.000000000")
    for kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded") * 2:
        assert deliver(client, kind, paid) == (200, {"received": True, "result": "already credited"})
    assert deliver(client, "checkout.session.expired", paid)[1]["result"] == "unchanged"
    assert wallets.balance(user_id) == 25 * 10**9
    assert ledger(app, user_id) == [("topup", f"stripe-topup:{topup_id}", 25 * 10**9)]
    row = topup(app, topup_id)
    assert (row.status, row.payment_intent_id) == ("paid", paid["payment_intent"])
    assert "being confirmed" in browser.get("/wallet?checkout=success").get_data(as_text=True)
    page = browser.get(f"/wallet?checkout=success&topup={topup_id}").get_data(as_text=True)
    assert "$25.00 was added" in page
    assert 'id="checkout-return"' in page and ">paid<" in page and 'id="balance"' in page
    assert 'title="$25.000000000">$25.00<' in page
    wallets.assert_consistent(user_id)


def test_concurrent_deliveries_credit_once(app, stripe_api, customer, live_server, wallets):
    user_id, browser = customer
    session = start(stripe_api, browser, "100")
    paid = stripe_api.pay(session["id"])
    payloads = [event(kind, paid) for kind in ("checkout.session.completed",
                                               "checkout.session.async_payment_succeeded") * 4]
    barrier = threading.Barrier(len(payloads))
    results = []

    def post(payload: str) -> None:
        barrier.wait()
        response = requests.post(f"{live_server}{WEBHOOK}", data=payload, timeout=30,
                                 headers={"Stripe-Signature": signature(payload),
                                          "Content-Type": "application/json"})
        results.append((response.status_code, response.json()["result"]))

    threads = [threading.Thread(target=post, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r[0] for r in results) == [200] * len(payloads)
    outcomes = [r[1] for r in results]
    assert sum(o.startswith("credited") for o in outcomes) == 1, outcomes
    assert outcomes.count("already credited") == len(payloads) - 1
    assert wallets.balance(user_id) == 100 * 10**9
    assert len(ledger(app, user_id)) == 1
    wallets.assert_consistent(user_id)


@pytest.mark.parametrize("forge", ["wrong secret", "tampered", "stale", "missing", "not json"])
def test_a_bad_signature_credits_nothing(app, stripe_api, customer, client, wallets, forge):
    user_id, browser = customer
    session = start(stripe_api, browser, "25")
    payload = event("checkout.session.completed", stripe_api.pay(session["id"]))
    header = signature(payload)
    if forge == "wrong secret":
        header = signature(payload, secret="whsec_someone_else")
    elif forge == "tampered":
        payload = payload.replace('"amount_total": 2500', '"amount_total": 250000')
    elif forge == "stale":
        header = signature(payload, timestamp=int(time.time()) - 3600)
    elif forge == "missing":
        header = None
    elif forge == "not json":
        payload = "credit me"
        header = signature(payload)
    response = client.post(WEBHOOK, data=payload, content_type="application/json",
                           headers={"Stripe-Signature": header} if header else {})
    assert response.status_code == 400
    assert response.get_json()["error"]["type"] == "invalid_request_error"
    assert wallets.balance(user_id) == 0 and ledger(app, user_id) == []
    assert topup(app, int(session["client_reference_id"])).status == "pending"


def test_a_session_that_does_not_match_its_top_up_credits_nothing(app, stripe_api, customer, client, wallets):
    user_id, browser = customer
    session = start(stripe_api, browser, "25")
    paid = stripe_api.pay(session["id"])
    for wrong in ({"amount_total": 250000}, {"currency": "eur"}, {"id": "cs_test_other"}):
        status, body = deliver(client, "checkout.session.completed", {**paid, **wrong})
        assert status == 400 and "does not match" in body["error"]["message"]
    assert deliver(client, "checkout.session.completed",
                   {**paid, "client_reference_id": None, "metadata": {}})[1]["result"].startswith("ignored")
    assert wallets.balance(user_id) == 0


@pytest.mark.parametrize("embed", [True, False], ids=["refunds-in-charge", "refunds-from-api"])
def test_each_refund_debits_once(app, stripe_api, customer, client, wallets, embed):
    user_id, browser = customer
    session = start(stripe_api, browser, "25")
    topup_id = int(session["client_reference_id"])
    assert deliver(client, "checkout.session.completed", stripe_api.pay(session["id"]))[0] == 200
    charge = stripe_api.refund(session["id"], 1000, embed=embed)
    for _ in range(3):
        status, body = deliver(client, "charge.refunded", charge)
        assert status == 200
    assert wallets.balance(user_id) == 15 * 10**9
    row = topup(app, topup_id)
    assert (row.status, row.refunded_nanos) == ("paid", 10 * 10**9)
    assert ">partly refunded<" in browser.get("/wallet").get_data(as_text=True)

    charge = stripe_api.refund(session["id"], 1500, embed=embed)  # the rest; the event lists both
    assert deliver(client, "charge.refunded", charge)[1]["result"].startswith("debited $15.000000000")
    assert deliver(client, "charge.refunded", charge)[1]["result"] == "no new refunds"
    assert wallets.balance(user_id) == 0
    refunds = [r for r in ledger(app, user_id) if r[0] == "refund"]
    assert sorted(r[2] for r in refunds) == [-15 * 10**9, -10 * 10**9]
    assert {r[1] for r in refunds} == {f"stripe-refund:{r['id']}" for r in stripe_api.refunds[charge["id"]]}
    assert topup(app, topup_id).status == "refunded"
    page = browser.get("/wallet").get_data(as_text=True)
    assert ">refunded<" in page and "-$10.000000000" in page
    # A completed event arriving after the refunds never credits the top-up again.
    completed = stripe_api.public(stripe_api.sessions[session["id"]])
    assert deliver(client, "checkout.session.completed", completed)[1]["result"] == "already credited"
    assert wallets.balance(user_id) == 0
    wallets.assert_consistent(user_id)


def test_a_refund_before_the_payment_event_waits_for_it(app, stripe_api, customer, client, wallets):
    user_id, browser = customer
    session = start(stripe_api, browser, "25")
    paid = stripe_api.pay(session["id"])
    charge = stripe_api.refund(session["id"], 2500)
    status, body = deliver(client, "charge.refunded", charge)  # found through Stripe's session list
    assert status == 409 and "not credited yet" in body["error"]["message"]
    assert wallets.balance(user_id) == 0
    assert deliver(client, "checkout.session.completed", paid)[0] == 200
    assert deliver(client, "charge.refunded", charge)[0] == 200  # Stripe's redelivery
    assert wallets.balance(user_id) == 0
    assert [r[0] for r in ledger(app, user_id)] == ["topup", "refund"]
    assert deliver(client, "charge.refunded", {**charge, "payment_intent": "pi_not_ours"})[1][
        "result"].startswith("ignored")
    wallets.assert_consistent(user_id)


def test_a_refund_stripe_cannot_list_is_redelivered_later(app, stripe_api, customer, client, wallets):
    user_id, browser = customer
    session = start(stripe_api, browser, "25")
    assert deliver(client, "checkout.session.completed", stripe_api.pay(session["id"]))[0] == 200
    charge = stripe_api.refund(session["id"], 500, embed=False)
    stripe_api.failures = 10  # the refund list is out of reach: no debit, and a non-2xx for Stripe
    status, body = deliver(client, "charge.refunded", charge)
    assert status == 502 and body["error"]["type"] == "api_error"
    assert wallets.balance(user_id) == 25 * 10**9
    stripe_api.failures = 0
    assert deliver(client, "charge.refunded", charge)[0] == 200
    assert wallets.balance(user_id) == 20 * 10**9
    wallets.assert_consistent(user_id)


def test_an_expired_checkout_is_shown_and_never_credited(app, stripe_api, customer, client, wallets):
    user_id, browser = customer
    session = start(stripe_api, browser, "25")
    assert deliver(client, "checkout.session.expired", stripe_api.public(session))[1]["result"] == (
        f"top-up {session['client_reference_id']} expired")
    assert ">expired<" in browser.get("/wallet").get_data(as_text=True)
    assert wallets.balance(user_id) == 0


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)")
@pytest.mark.parametrize("width", [390, 1366, 1920])
def test_browser_journey_through_the_fake_checkout(app, stripe_api, live_server, wallets, fake_upstream,
                                                    width):
    """Top up through the fake Checkout, make a key with a dollar budget, spend it through the real
    SDK until the budget refuses, and open the charge's request page from the wallet, at three widths."""
    from playwright.sync_api import sync_playwright

    app.config["PAGEGRID_PUBLIC_URL"] = live_server
    stripe_api.webhook_url = f"{live_server}{WEBHOOK}"
    user_id = wallets.user("0", email=f"card-{width}@example.com")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_context(base_url=live_server, viewport={"width": width, "height": 900}).new_page()
        log_in(page, f"card-{width}@example.com")
        page.goto("/wallet")
        assert page.inner_text("#balance") == "$0.00"
        assert "Exact: $0.000000000" in page.inner_text("main")
        page.fill("#checkout-form input[name=amount]", "25")
        page.click("#checkout-form button[type=submit]")
        page.wait_for_selector("#pay")
        assert page.url.startswith(stripe_api.url) and page.inner_text("#amount") == "$25.00"
        page.click("#pay")
        page.wait_for_url("**/wallet?checkout=success*")
        assert "$25.00 was added" in page.inner_text("#checkout-return")
        assert page.inner_text("#balance") == "$25.00"
        assert page.inner_text("#topups tbody tr").count("paid") == 1
        assert page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 0
        page.screenshot(path=str(SHOTS / f"payments-wallet-paid-{width}.png"), full_page=True)

        page.goto("/keys")
        page.fill("input[name=name]", "budgeted")
        page.fill("input[name=budget_nanos]", "0.005")
        page.select_option("select[name=budget_period]", "day")
        page.click("form[action$='/keys'] button[type=submit]")
        secret = page.inner_text("#secret-value")
        assert "$0.01 / day" in page.inner_text("#keys")  # the summary rounds; the title is exact
        fake_upstream.reply(message("Paid for", input_tokens=1200, output_tokens=300,
                                    model="claude-sonnet-4-6"))
        client = anthropic.Anthropic(api_key=secret, base_url=live_server, max_retries=0)
        ask = {"model": "claude-sonnet-4-6", "max_tokens": 500,
               "messages": [{"role": "user", "content": "Hi"}]}
        reply = client.messages.with_raw_response.create(**ask)
        cost = 1200 * 3000 + 300 * 15000  # $0.0081: over the $0.005 budget, by less than one hold
        assert reply.headers["pagegrid-cost-usd"] == f"{cost / 1e9:.9f}"
        with pytest.raises(anthropic.RateLimitError, match="budget"):
            client.messages.create(**ask)

        page.goto("/wallet")
        link = page.locator(f"a:has-text('{reply.headers['request-id']}')").first
        for _ in range(50):  # settlement follows the reply
            if link.count():
                break
            page.wait_for_timeout(100)
            page.reload()
        link.click()
        page.wait_for_selector("#request-cost")
        assert page.inner_text("#request-cost") == f"${cost / 1e9:.9f}"
        assert page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 0
        page.screenshot(path=str(SHOTS / f"payments-request-{width}.png"), full_page=True)
        browser.close()
    assert wallets.balance(user_id) == 25 * 10**9 - cost
    wallets.assert_consistent(user_id)
