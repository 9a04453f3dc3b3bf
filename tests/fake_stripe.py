"""A fake Stripe API on loopback, and webhook events signed the way Stripe signs them.

The fake answers what PageGrid calls (create a Checkout Session; list sessions by payment intent;
list a charge's refunds), records each call, and lets a test play Stripe's side: ``pay(session)``,
``refund(session, cents)``, each returning the object a webhook event would carry. Its hosted
Checkout page (``/pay/<session id>``) lets a browser pay: it posts the signed event to
``webhook_url`` and sends the browser to the session's success URL, as Stripe does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time

import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

WEBHOOK_SECRET = "whsec_test_" + "s3cr3t" * 4
SECRET_KEY = "sk_test_fake_" + "k" * 24


def _nest(form: dict[str, str]) -> dict:
    """Stripe's form encoding (``line_items[0][price_data][currency]=usd``) back into a dict."""
    out: dict = {}
    for key, value in form.items():
        parts = re.findall(r"[^\[\]]+", key)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


class FakeStripe:
    """The few Stripe endpoints PageGrid uses, with in-memory state."""

    def __init__(self) -> None:
        self.url = ""
        self.webhook_url = ""  # where the fake Checkout page posts its event
        self.reset()

    def reset(self) -> None:
        self.calls: list[dict] = []
        self.sessions: dict[str, dict] = {}
        self.refunds: dict[str, list[dict]] = {}  # charge id -> refunds
        self.failures = 0  # answer this many calls with a 500 first

    # Stripe's side of the story -------------------------------------------------------------
    def pay(self, session_id: str) -> dict:
        """The customer pays: the session is complete and paid, with a payment intent and charge."""
        session = self.sessions[session_id]
        session.update(status="complete", payment_status="paid",
                       payment_intent=f"pi_{secrets.token_hex(12)}")
        session["_charge"] = f"ch_{secrets.token_hex(12)}"
        return self.public(session)

    def refund(self, session_id: str, cents: int, *, embed: bool = True) -> dict:
        """Refund ``cents`` of the session's charge; return the charge as ``charge.refunded`` carries it."""
        session = self.sessions[session_id]
        charge_id = session["_charge"]
        refunds = self.refunds.setdefault(charge_id, [])
        refunds.insert(0, {"id": f"re_{secrets.token_hex(12)}", "object": "refund", "amount": cents,
                           "currency": "usd", "charge": charge_id, "status": "succeeded",
                           "payment_intent": session["payment_intent"]})
        refunded = sum(r["amount"] for r in refunds)
        charge = {"id": charge_id, "object": "charge", "amount": session["amount_total"], "currency": "usd",
                  "payment_intent": session["payment_intent"], "amount_refunded": refunded,
                  "refunded": refunded == session["amount_total"], "metadata": {}}
        if embed:
            charge["refunds"] = {"object": "list", "data": list(refunds), "has_more": False,
                                 "url": f"/v1/charges/{charge_id}/refunds"}
        return charge

    @staticmethod
    def public(session: dict) -> dict:
        return {k: v for k, v in session.items() if not k.startswith("_")}

    # The HTTP API ---------------------------------------------------------------------------
    def __call__(self, environ, start_response):  # noqa: ANN001, ANN204 - WSGI
        request = Request(environ)
        self.calls.append({"method": request.method, "path": request.path, "form": _nest(request.form),
                           "args": dict(request.args), "authorization": request.headers.get("Authorization"),
                           "idempotency_key": request.headers.get("Idempotency-Key")})
        if self.failures:
            self.failures -= 1
            return self._json({"error": {"type": "api_error", "message": "fake outage"}}, 500)(
                environ, start_response)
        if request.method == "POST" and request.path == "/v1/checkout/sessions":
            response = self._json(self._create_session(_nest(request.form)))
        elif request.method == "GET" and request.path == "/v1/checkout/sessions":
            intent = request.args.get("payment_intent")
            found = [self.public(s) for s in self.sessions.values() if s.get("payment_intent") == intent]
            response = self._json(self._list(found, "/v1/checkout/sessions"))
        elif request.path.startswith("/pay/") and request.path[5:] in self.sessions:
            response = self._checkout_page(request.path[5:], paying=request.method == "POST")
        elif request.method == "GET" and request.path == "/v1/refunds":
            response = self._json(self._list(self.refunds.get(request.args.get("charge"), []), "/v1/refunds"))
        else:
            response = self._json({"error": {"type": "invalid_request_error", "message": "no route"}}, 404)
        return response(environ, start_response)

    def _checkout_page(self, session_id: str, *, paying: bool) -> Response:
        """The hosted Checkout page: paying posts the signed event to ``webhook_url``, then returns."""
        session = self.sessions[session_id]
        if not paying:
            cents = session["amount_total"]
            return Response(f'<!doctype html><title>Fake Checkout</title><h1>Pay PageGrid</h1>'
                            f'<p id="amount">${cents // 100}.{cents % 100:02d}</p>'
                            f'<form method="post"><button id="pay" type="submit">Pay</button></form>',
                            mimetype="text/html")
        payload = event("checkout.session.completed", self.pay(session_id))
        requests.post(self.webhook_url, data=payload, timeout=30,
                      headers={"Stripe-Signature": signature(payload), "Content-Type": "application/json"})
        return Response(status=303, headers={"Location": session["success_url"]})

    def _create_session(self, form: dict) -> dict:
        item = form["line_items"]["0"]
        # Real ids run to 66 characters, longer than a ledger request id.
        session_id = f"cs_test_{secrets.token_hex(29)}"
        session = {"id": session_id, "object": "checkout.session", "mode": form.get("mode"),
                   "amount_total": int(item["price_data"]["unit_amount"]) * int(item["quantity"]),
                   "currency": item["price_data"]["currency"],
                   "client_reference_id": form.get("client_reference_id"),
                   "customer_email": form.get("customer_email"), "metadata": form.get("metadata", {}),
                   "payment_status": "unpaid", "status": "open", "payment_intent": None,
                   "success_url": form.get("success_url"), "cancel_url": form.get("cancel_url"),
                   "url": f"{self.url}/pay/{session_id}"}
        self.sessions[session_id] = session
        return session

    @staticmethod
    def _list(data: list, url: str) -> dict:
        return {"object": "list", "data": data, "has_more": False, "url": url}

    @staticmethod
    def _json(body: dict, status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, mimetype="application/json",
                        headers={"Request-Id": f"req_{secrets.token_hex(6)}"})


def serve(fake: FakeStripe):
    """Serve ``fake`` on 127.0.0.1 from a daemon thread; return the server."""
    server = make_server("127.0.0.1", 0, fake, threaded=True)
    fake.url = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def event(kind: str, obj: dict) -> str:
    """A webhook event's JSON body, as Stripe posts it."""
    return json.dumps({"id": f"evt_{secrets.token_hex(12)}", "object": "event", "api_version": "2025-01-27",
                       "created": int(time.time()), "livemode": False, "pending_webhooks": 1, "type": kind,
                       "request": {"id": None, "idempotency_key": None}, "data": {"object": obj}})


def signature(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header: ``t=<unix time>,v1=HMAC-SHA256(secret, "<t>.<payload>")``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"
