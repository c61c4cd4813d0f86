"""A fake Stripe API on loopback, for the tests (no network): the official client talks to it
through STRIPE_API_BASE, as it would talk to api.stripe.com.

    def test_something(fake_stripe):        # settings point the provider at the server
        ...
        fake_stripe.pay(session_id)         # what the customer does on Stripe's page
        body, header = signed(completed_event(fake_stripe.sessions[session_id]))

It speaks the part of Stripe's API Mockroom uses: Checkout Sessions (create with an
Idempotency-Key: the same key gets the same session back, as Stripe answers), retrieve (with
`expand`), refunds and charges. Requests are recorded (`requests`); `fail_next(n, status)` makes
the next n answers errors. Events are built here and signed with the webhook secret the way
Stripe signs them (stripe.WebhookSignature.generate_signature_header).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe
from pytest_django.fixtures import Settings

WEBHOOK_SECRET = "whsec_test_secret_for_the_suite"
SECRET_KEY = "sk_test_fake_key"

_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_test_{next(_ids):08d}"


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeStripe:
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    base_url: str = ""
    _idempotent: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _failures: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None

    # --- what the test does

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def pay(self, session_id: str, *, delayed: bool = False) -> dict[str, Any]:
        """The customer pays on the hosted page: the session completes, a charge exists
        (`delayed`: a bank debit, paid later by `settle`)."""
        with self._lock:
            session = self.sessions[session_id]
            intent = _id("pi")
            charge = {
                "id": _id("ch"),
                "object": "charge",
                "amount": session["amount_total"],
                "amount_refunded": 0,
                "currency": session["currency"],
                "payment_intent": intent,
                "metadata": dict(session["metadata"]),
                "receipt_url": f"https://pay.stripe.example/receipts/{intent}",
                "refunded": False,
            }
            self.charges[charge["id"]] = charge
            session.update(
                status="complete",
                payment_status="unpaid" if delayed else "paid",
                payment_intent=intent,
                _charge=charge["id"],
            )
            return self._public(session)

    def settle(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            session = self.sessions[session_id]
            session["payment_status"] = "paid"
            return self._public(session)

    def session_for(self, purchase_id: object) -> dict[str, Any]:
        with self._lock:
            for session in self.sessions.values():
                if session["client_reference_id"] == str(purchase_id):
                    return self._public(session)
        raise KeyError(purchase_id)

    def charge_of(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self.charges[self.sessions[session_id]["_charge"]])

    def created(self) -> list[Recorded]:
        return [
            r for r in self.requests if r.method == "POST" and r.path == "/v1/checkout/sessions"
        ]

    @staticmethod
    def _public(session: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in session.items() if not k.startswith("_")}

    # --- the server

    def start(self) -> FakeStripe:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def handle(self, method: str, path: str, params: dict[str, str], headers: dict[str, str]):
        with self._lock:
            self.requests.append(Recorded(method, path, params, headers))
            if self._failures:
                status = self._failures.pop(0)
                return status, _error("api_error", "The fake is failing on purpose.")
            key = headers.get("idempotency-key")
            if method == "POST" and key and key in self._idempotent:
                return self._idempotent[key]
            result = self._route(method, path, params)
            if method == "POST" and key and result[0] == 200:
                self._idempotent[key] = result
            return result

    def _route(self, method: str, path: str, params: dict[str, str]) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["v1", "checkout", "sessions"]:
            return 200, self._public(self._session_create(params))
        if method == "GET" and parts[:3] == ["v1", "checkout", "sessions"] and len(parts) == 4:
            session = self.sessions.get(parts[3])
            if session is None:
                return 404, _error("invalid_request_error", f"No such checkout.session: {parts[3]}")
            public = self._public(session)
            if "payment_intent.latest_charge" in params.values() and session.get("_charge"):
                charge = self.charges[session["_charge"]]
                public["payment_intent"] = {
                    "id": session["payment_intent"],
                    "object": "payment_intent",
                    "latest_charge": dict(charge),
                }
            return 200, public
        if method == "POST" and parts == ["v1", "refunds"]:
            return self._refund(params)
        if method == "GET" and parts[:2] == ["v1", "charges"] and len(parts) == 3:
            found = self.charges.get(parts[2])
            if found is None:
                return 404, _error("invalid_request_error", f"No such charge: {parts[2]}")
            return 200, dict(found)
        return 404, _error("invalid_request_error", f"Unrecognized request URL ({method} {path}).")

    def _session_create(self, params: dict[str, str]) -> dict[str, Any]:
        session_id = _id("cs")
        amount = int(params["line_items[0][price_data][unit_amount]"])
        metadata = {
            key[len("metadata[") : -1]: value
            for key, value in params.items()
            if key.startswith("metadata[")
        }
        session = {
            "id": session_id,
            "object": "checkout.session",
            "url": f"https://checkout.stripe.example/c/pay/{session_id}",
            "mode": params.get("mode"),
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": amount,
            "currency": params["line_items[0][price_data][currency]"],
            "client_reference_id": params.get("client_reference_id"),
            "customer_email": params.get("customer_email"),
            "metadata": metadata,
            "payment_intent": None,
            "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"),
            "expires_at": int(time.time()) + 24 * 3600,
            "_params": dict(params),
        }
        self.sessions[session_id] = session
        return session

    def _refund(self, params: dict[str, str]) -> tuple[int, dict]:
        intent = params.get("payment_intent")
        charge = next((c for c in self.charges.values() if c["payment_intent"] == intent), None)
        if charge is None:
            return 400, _error("invalid_request_error", f"No such payment_intent: {intent}")
        amount = int(params.get("amount") or charge["amount"] - charge["amount_refunded"])
        if charge["amount_refunded"] + amount > charge["amount"]:
            return 400, _error("invalid_request_error", "Refund exceeds the charge.")
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        refund = {"id": _id("re"), "object": "refund", "amount": amount, "charge": charge["id"]}
        self.refunds.append(refund)
        return 200, refund


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


def _handler(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            params = dict(urllib.parse.parse_qsl(url.query + "&" + body, keep_blank_values=True))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = fake.handle(method, url.path, params, headers)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

    return Handler


# --- events, as Stripe sends them ---------------------------------------------------------------


def event(event_type: str, obj: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    return {
        "id": _id("evt"),
        "object": "event",
        "api_version": "2026-11-17",
        "created": created or int(time.time()),
        "livemode": False,
        "type": event_type,
        "data": {"object": obj},
    }


def signed(
    payload: dict[str, Any], *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> tuple[bytes, str]:
    """The body and Stripe-Signature header of a delivery of `payload`."""
    body = json.dumps(payload)
    return body.encode(), stripe.WebhookSignature.generate_signature_header(
        body, secret, timestamp=timestamp
    )


def charge_refunded(charge: dict[str, Any], amount_refunded: int) -> dict[str, Any]:
    return event(
        "charge.refunded",
        charge
        | {"amount_refunded": amount_refunded, "refunded": amount_refunded == charge["amount"]},
    )


def dispute(event_type: str, charge: dict[str, Any], status: str) -> dict[str, Any]:
    return event(
        event_type,
        {
            "id": f"dp_for_{charge['id']}",
            "object": "dispute",
            "amount": charge["amount"],
            "charge": charge["id"],
            "payment_intent": charge["payment_intent"],
            "status": status,
        },
    )


@pytest.fixture(name="fake_stripe")
def fake_stripe_fixture(settings: Settings) -> Iterator[FakeStripe]:
    """A running FakeStripe; the provider is Stripe, pointed at it, with the suite's secrets."""
    server = FakeStripe().start()
    settings.PAYMENTS_PROVIDER = "stripe"
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = server.base_url
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    try:
        yield server
    finally:
        server.stop()
