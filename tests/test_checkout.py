"""Checkout: the account is checked, the order is reviewed, then handed to a cart that fails on purpose."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.checkout import (CheckoutFailed, CheckoutRefused, cart_url_from, checkout, idempotency_key,
                             place_order, prepare_order)
from engine.cli import cli
from engine.compile import load
from engine.exports import ExportRefused
from engine.problem import CompanionError
from engine.request import request_from_data

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
FAST = {"timeout": 0.3, "backoff": 0.01, "max_backoff": 0.05, "total": 5.0}


class Cart:
    """A vendor cart on 127.0.0.1: follows a script of answers, then confirms; deduplicates by idempotency key."""

    def __init__(self, script=()):
        self.script = list(script)  # per request: "500", "503", "422", "timeout", "no-number", then "ok" forever
        self.received: list[dict] = []  # every request: headers and body
        self.orders: dict[str, str] = {}  # idempotency key -> confirmation number: orders placed
        self.lock = threading.Lock()
        cart = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers.get("Idempotency-Key")
                with cart.lock:
                    cart.received.append({"key": key, "type": self.headers.get("Content-Type"), "body": body})
                    action = cart.script.pop(0) if cart.script else "ok"
                    if action in ("ok", "timeout"):  # a timeout: the order arrives, the answer does not
                        cart.orders.setdefault(key, f"SO-{len(cart.orders) + 1:06d}")
                if action == "timeout":
                    time.sleep(1.0)
                if action in ("500", "503", "422"):
                    self._answer(int(action), {"error": "warehouse offline" if action != "422" else "unknown SKU"})
                elif action == "no-number":
                    self._answer(200, {"status": "queued"})
                else:
                    self._answer(201, {"confirmation": cart.orders[key]})

            def _answer(self, status, data):
                try:
                    raw = json.dumps(data).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/orders"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def compiled():
    return load(ROOT / "rules")


def make_request(compiled, account="12345678", **configuration):
    data = {"partner": {"badges": ["power-management"], "country": "US", "company": "Müller & Söhne"},
            "configuration": {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36,
                              "tier": "advanced", "devices": 150, "addons": [{"id": "insulation-monitoring"}],
                              **configuration}}
    if account is not None:
        data["partner"]["purchasing_account"] = account
    return request_from_data(data, compiled.catalog)


def test_a_cart_that_fails_then_times_out_gets_one_order_and_the_partner_its_confirmation(compiled):
    order = prepare_order(compiled, make_request(compiled))
    with Cart(["500", "timeout", "ok"]) as cart:
        confirmation = place_order(order, cart.url, **FAST)
    assert confirmation.number == "SO-000001" and confirmation.attempts == 3
    assert len(cart.received) == 3 and len(cart.orders) == 1  # three requests, one order
    assert {item["key"] for item in cart.received} == {order.idempotency_key}
    assert {json.dumps(item["body"], sort_keys=True) for item in cart.received} == \
        {json.dumps(order.payload, sort_keys=True)}


def test_the_order_sent_is_the_reviewed_bill_of_materials(compiled):
    order = prepare_order(compiled, make_request(compiled), project="Hospital wing B")
    with Cart() as cart:
        place_order(order, cart.url, **FAST)
    [sent] = cart.received
    assert sent["type"] == "application/json; charset=utf-8"
    body = sent["body"]
    assert body["idempotency_key"] == sent["key"] == order.idempotency_key
    assert (body["account"], body["project"], body["company"]) == ("12345678", "Hospital wing B", "Müller & Söhne")
    assert [(line["reference"], line["quantity"], line["months"]) for line in body["lines"]] == [
        ("EPO-ADV-SUB-3Y", 1, 36), ("EPO-DEV-SUB-3Y", 100, 36), ("EPO-IMS-SUB-3Y", 1, 36)]


def test_placing_the_same_order_twice_places_it_once(compiled):
    with Cart() as cart:
        first = checkout(compiled, make_request(compiled), cart.url, **FAST)
        again = checkout(compiled, make_request(compiled), cart.url, **FAST)
    assert first.number == again.number and first.idempotency_key == again.idempotency_key
    assert len(cart.received) == 2 and len(cart.orders) == 1


def test_the_key_follows_the_order_account_and_project(compiled):
    base = prepare_order(compiled, make_request(compiled)).idempotency_key
    assert prepare_order(compiled, make_request(compiled)).idempotency_key == base
    assert prepare_order(compiled, make_request(compiled, account="87654321")).idempotency_key != base
    assert prepare_order(compiled, make_request(compiled), project="p2").idempotency_key != base
    assert prepare_order(compiled, make_request(compiled, devices=160)).idempotency_key != base
    assert idempotency_key("1", None, [{"reference": "A", "quantity": 1, "months": None}]).startswith("companion-")


def test_when_every_attempt_fails_the_partner_is_told_clearly(compiled):
    order = prepare_order(compiled, make_request(compiled))
    with Cart(["503"] * 10) as cart:
        with pytest.raises(CheckoutFailed) as error:
            place_order(order, cart.url, attempts=3, **FAST)
    assert len(cart.received) == 3 and not cart.orders
    failure = error.value
    assert failure.retryable and failure.attempts == 3
    assert "did not confirm the order after 3 attempts (last problem: HTTP 503: warehouse offline)" in failure.message
    assert "safe to try again" in failure.message and order.idempotency_key in failure.message
    assert "contact your sales representative" in failure.message


def test_a_4xx_answer_is_never_retried(compiled):
    order = prepare_order(compiled, make_request(compiled))
    with Cart(["422"]) as cart:
        with pytest.raises(CheckoutFailed) as error:
            place_order(order, cart.url, **FAST)
    assert len(cart.received) == 1 and not error.value.retryable
    assert "refused the order (HTTP 422: unknown SKU)" in error.value.message


def test_a_2xx_without_confirmation_number_is_not_retried(compiled):
    order = prepare_order(compiled, make_request(compiled))
    with Cart(["no-number"]) as cart:
        with pytest.raises(CheckoutFailed) as error:
            place_order(order, cart.url, **FAST)
    assert len(cart.received) == 1 and "no confirmation number" in error.value.message


def test_a_cart_that_is_down_is_retried_then_reported(compiled):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    order = prepare_order(compiled, make_request(compiled))
    with pytest.raises(CheckoutFailed) as error:
        place_order(order, f"http://127.0.0.1:{port}/orders", attempts=3, **FAST)
    assert error.value.attempts == 3 and "connection refused" in error.value.message


def test_retries_stop_within_the_total_time(compiled):
    order = prepare_order(compiled, make_request(compiled))
    started = time.monotonic()
    with Cart(["timeout"] * 20) as cart:
        with pytest.raises(CheckoutFailed) as error:
            place_order(order, cart.url, timeout=0.2, attempts=20, total=0.7, backoff=0.01)
    assert time.monotonic() - started < 2.0  # 20 attempts of 0.2 s would take 4 s and more
    assert error.value.attempts < 20 and "no answer in time" in error.value.message
    assert len(cart.orders) == 1  # the timed-out attempts all carried the same key


def test_backoff_doubles_between_attempts(compiled, monkeypatch):
    monkeypatch.setattr("engine.checkout.random.uniform", lambda low, high: 1.0)
    waits: list[float] = []
    order = prepare_order(compiled, make_request(compiled))
    with Cart(["500", "500", "500"]) as cart:
        place_order(order, cart.url, timeout=1.0, attempts=4, total=10.0, backoff=0.5, max_backoff=1.5,
                    sleep=waits.append)
    assert waits == [0.5, 1.0, 1.5]


def test_without_a_purchasing_account_nothing_is_sent(compiled):
    with Cart() as cart:
        with pytest.raises(CheckoutRefused) as error:
            checkout(compiled, make_request(compiled, account=None), cart.url, **FAST)
    [problem] = error.value.problems
    assert (problem.code, problem.rule, problem.path) == ("no-account", "checkout.account-required",
                                                          "partner.purchasing_account")
    assert "contact your sales" in problem.message and not cart.received


def test_an_account_in_the_wrong_format_is_refused(compiled):
    with pytest.raises(CheckoutRefused) as error:
        prepare_order(compiled, make_request(compiled, account="ACCT-42"))
    assert error.value.problems[0].rule == "checkout.account-format"


def test_a_refused_configuration_cannot_be_ordered(compiled):
    with pytest.raises(ExportRefused):
        prepare_order(compiled, make_request(compiled, tier="essential"))


@pytest.mark.parametrize("url, code", [(None, "no-cart-url"), ("ftp://cart.example/orders", "bad-cart-url")])
def test_the_cart_url_must_be_configured(monkeypatch, url, code):
    monkeypatch.delenv("COMPANION_CART_URL", raising=False)
    with pytest.raises(CompanionError) as error:
        cart_url_from(url)
    assert error.value.problems[0].code == code


def test_the_cart_url_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("COMPANION_CART_URL", "https://cart.example/orders")
    assert cart_url_from() == "https://cart.example/orders"
    assert cart_url_from("http://127.0.0.1:9/x") == "http://127.0.0.1:9/x"


# --- command line -------------------------------------------------------------------------------------------

def run(*args: str, env=None):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)


def test_checkout_without_confirm_shows_the_order_and_sends_nothing():
    with Cart() as cart:
        result = run("checkout", str(GOLDEN / "epo-power-management-us.yaml"), "--cart-url", cart.url)
    assert result.exit_code == 0 and not cart.received
    assert "100 x EPO-DEV-SUB-3Y" in result.stdout and "Nothing was sent" in result.stdout
    assert f"Would be sent to: {cart.url}" in result.stdout


def test_checkout_with_confirm_prints_the_confirmation_number():
    with Cart(["500"]) as cart:
        result = run("checkout", str(GOLDEN / "epo-power-management-us.yaml"), "--confirm",
                     env={"COMPANION_CART_URL": cart.url})
    assert result.exit_code == 0, result.output
    assert "Order placed: confirmation number SO-000001" in result.stdout and "2 attempts" in result.stdout


def test_checkout_json_reports_the_confirmation():
    with Cart() as cart:
        result = run("checkout", str(GOLDEN / "epo-power-management-us.yaml"), "--confirm", "--cart-url", cart.url,
                     "--format", "json")
    data = json.loads(result.stdout)
    assert (data["sent"], data["confirmation"], data["attempts"]) == (True, "SO-000001", 1)


def test_checkout_without_account_exits_1_with_the_message():
    result = run("checkout", str(GOLDEN / "ebo-building-automation-us.yaml"), "--confirm",
                 "--cart-url", "http://127.0.0.1:9/orders")
    assert result.exit_code == 1
    assert "error[no-account] checkout.account-required" in result.stderr
    assert "contact your sales representative" in result.stderr


def test_checkout_confirm_without_cart_url_exits_2():
    result = run("checkout", str(GOLDEN / "epo-power-management-us.yaml"), "--confirm", env={"COMPANION_CART_URL": ""})
    assert result.exit_code == 2 and "error[no-cart-url]" in result.stderr
