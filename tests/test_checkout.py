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

from engine.services.checkout import (CheckoutFailed, CheckoutRefused, cart_url_from, checkout, idempotency_key,
                             place_order, prepare_order)
from engine.cli import cli
from engine.inference.compile import load
from engine.services.exports import ExportRefused
from engine.problem import CompanionError
from engine.inference.request import request_from_data

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
    monkeypatch.setattr("engine.services.checkout.random.uniform", lambda low, high: 1.0)
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


# --- regression: a misbehaving cart or a malformed cart URL hung, crashed or printed raw bytes --------------

class RawCart:
    """A cart on 127.0.0.1 that answers every request with bytes written by `answer(connection)`."""

    def __init__(self, answer):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/orders"
        self.answer = answer
        self.requests = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return  # closed at the end of the test
            self.requests += 1
            threading.Thread(target=self._reply, args=(connection,), daemon=True).start()

    def _reply(self, connection):
        with connection:
            try:
                self._read_request(connection)  # all of it: closing with bytes unread would reset the connection
                self.answer(connection)
            except OSError:
                pass  # the client gave up

    @staticmethod
    def _read_request(connection):
        data, length = b"", None
        while length is None or len(data) < length:
            chunk = connection.recv(65536)
            if not chunk:
                raise ConnectionResetError("the client left")
            data += chunk
            if length is None and b"\r\n\r\n" in data:
                head, data = data.split(b"\r\n\r\n", 1)
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.close()


def trickle(head: bytes, tail: bytes, pause: float = 0.1):
    """Answer with `head` at once, then `tail` one byte per `pause` seconds."""
    def answer(connection):
        connection.sendall(head)
        for byte in tail:
            time.sleep(pause)
            connection.sendall(bytes([byte]))
    return answer


def answer_with(status: str, body: bytes, headers: bytes = b""):
    """Answer at once with a status line, headers and a body."""
    return lambda connection: connection.sendall(
        f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n".encode() + headers + b"\r\n" + body)


@pytest.mark.parametrize("answer", [
    trickle(b"HTTP/1.1 201 Created\r\nContent-Length: 200\r\n\r\n", b" " * 200),  # the body, 1 byte a tick
    trickle(b"HTTP/1.1 201 Created\r\n", b"X-Slow: " + b"x" * 200 + b"\r\n\r\n"),  # the headers likewise
], ids=["body", "headers"])
def test_a_cart_that_trickles_its_answer_is_given_up_on_within_the_total_time(compiled, answer):
    order = prepare_order(compiled, make_request(compiled))
    started = time.monotonic()
    with RawCart(answer) as cart:
        with pytest.raises(CheckoutFailed) as error:
            place_order(order, cart.url, timeout=0.5, attempts=3, total=1.2, backoff=0.01)
    assert time.monotonic() - started < 2.0  # the trickle lasts 20 s
    assert error.value.retryable and "last problem: no answer in time" in error.value.message
    assert cart.requests == error.value.attempts >= 2


def test_a_cart_answer_over_1_mib_is_refused_not_read_into_memory(compiled):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"  # no length: it ends when the cart closes
    order = prepare_order(compiled, make_request(compiled))
    with RawCart(lambda connection: connection.sendall(head + b"[" * (3 * 1024 * 1024))) as cart:
        with pytest.raises(CheckoutFailed) as error:
            place_order(order, cart.url, timeout=10.0, total=10.0)  # time to read a megabyte on a busy machine
    assert not error.value.retryable and cart.requests == 1
    assert "answered with more than 1024 KiB" in error.value.message and order.idempotency_key in error.value.message


@pytest.mark.parametrize("value", ["\xb2".encode("latin-1"), b"1.5", b"Wed, 21 Oct 2015 07:28:00 GMT", b"-1"])
def test_a_retry_after_that_is_not_ascii_digits_falls_back_to_the_backoff(compiled, monkeypatch, value):
    answers = [answer_with("503 Service Unavailable", b"", b"Retry-After: " + value + b"\r\n"),
               answer_with("201 Created", b'{"confirmation": "SO-7"}')]
    waits: list[float] = []
    monkeypatch.setattr("engine.services.checkout.random.uniform", lambda low, high: 1.0)
    order = prepare_order(compiled, make_request(compiled))
    with RawCart(lambda connection: answers.pop(0)(connection)) as cart:
        confirmation = place_order(order, cart.url, **FAST, sleep=waits.append)
    assert (confirmation.number, confirmation.attempts, waits) == ("SO-7", 2, [0.01])


@pytest.mark.parametrize("number", ["SO-1\u0000", "SO-1\nOrder placed", "SO-1\u001b]0;owned\u0007", "S" * 1000,
                                    "SO-1\u202e"])
def test_a_confirmation_number_that_is_not_short_printable_text_is_refused(number):
    body = json.dumps({"confirmation": number}).encode()
    with RawCart(answer_with("201 Created", body)) as cart:
        result = run("checkout", str(GOLDEN / "epo-power-management-us.yaml"), "--confirm", "--cart-url", cart.url)
    assert result.exit_code == 1 and cart.requests == 1 and not result.stdout
    assert "returned a confirmation number that is not printable text of at most 100 characters" in result.stderr
    assert "Do not order again" in result.stderr and "\u001b" not in result.stderr


def test_what_a_refusing_cart_says_is_escaped():
    body = json.dumps({"error": "unknown SKU\u001b[2J"}).encode()
    with RawCart(answer_with("422 Unprocessable Entity", body)) as cart:
        result = run("checkout", str(GOLDEN / "epo-power-management-us.yaml"), "--confirm", "--cart-url", cart.url)
    assert result.exit_code == 1 and "refused the order (HTTP 422: 'unknown SKU\\x1b[2J')" in result.stderr


@pytest.mark.parametrize("url, says", [
    ("http://[::1", "cannot be read: Invalid IPv6 URL"),
    ("http://a b/", "has a space, a control or a non-ASCII character"),
    ("http://cart.example/\u001b[2J", "has a space, a control or a non-ASCII character"),
    ("http://cart.example:99999/", "cannot be read: Port out of range"),
    ("http:///orders", "names no host"),
    ("mailto:orders@example.com", "is not an http(s) URL"),
])
@pytest.mark.parametrize("confirm", [True, False])
def test_a_malformed_cart_url_is_refused_before_anything_is_sent(url, says, confirm):
    result = run("checkout", str(GOLDEN / "epo-power-management-us.yaml"), "--cart-url", url,
                 *(["--confirm"] if confirm else []))
    assert result.exit_code == 2 and not result.stdout
    assert result.stderr.startswith("--cart-url: error[bad-cart-url]: cart URL ") and says in result.stderr
    assert "\u001b" not in result.stderr


def test_a_malformed_cart_url_in_the_environment_is_located_there():
    result = run("checkout", str(GOLDEN / "epo-power-management-us.yaml"), env={"COMPANION_CART_URL": "http://[::1"})
    assert result.exit_code == 2 and result.stderr.startswith("$COMPANION_CART_URL: error[bad-cart-url]")


# --- regression: control characters in --project reached the terminal raw -----------------------------------

HOSTILE_PROJECT = "Wing B\x1b]0;owned\x07\r\u009b2J"


def test_the_review_escapes_control_characters_of_the_project():
    result = run("checkout", str(GOLDEN / "epo-power-management-us.yaml"), "--project", HOSTILE_PROJECT)
    assert result.exit_code == 0
    assert "Order for purchasing account 12345678, project 'Wing B\\x1b]0;owned\\x07\\r\\x9b2J'" in result.stdout
    assert '"project": "Wing B\\u001b]0;owned\\u0007\\r\\u009b2J"' in result.stdout
    assert not {"\x1b", "\x07", "\r", "\u009b"} & set(result.stdout)


def test_the_json_review_escapes_c1_controls_of_the_project():
    result = run("checkout", str(GOLDEN / "epo-power-management-us.yaml"), "--project", HOSTILE_PROJECT,
                 "--format", "json")
    assert result.exit_code == 0 and "\u009b" not in result.stdout
    assert json.loads(result.stdout)["payload"]["project"] == HOSTILE_PROJECT


def test_a_project_that_is_not_utf8_text_is_refused():
    result = run("checkout", str(GOLDEN / "epo-power-management-us.yaml"), "--project", "Wing \udcff")
    assert result.exit_code == 2 and not result.stdout
    assert result.stderr.startswith("--project: error[bad-option]: 'Wing \\udcff' is not UTF-8 text")
