"""Checkout: hand a reviewed, confirmed bill of materials to the vendor's cart, safely retried.

The order travels as one JSON POST to the cart URL (`COMPANION_CART_URL`, or given) with an `Idempotency-Key`
header. The key is derived from the order itself (purchasing account, project, BOM lines), so sending the same
order again (a retry after a timeout, a partner pressing the button twice) reuses it and the cart can answer
with the first confirmation instead of placing a second order. Connection errors, timeouts and 5xx answers are
retried with exponential backoff, within a bounded number of attempts and a bounded total time (connecting,
sending and reading the answer included); a 4xx answer is final. The cart answers 2xx with
`{"confirmation": "<number>"}`, in at most MAX_ANSWER bytes.

Public API (for the CLI and the web app):
- `prepare_order(compiled, request, project=None)` -> Order (the account checked, the BOM computed) or raises
  CheckoutRefused / ExportRefused
- `place_order(order, cart_url, ...)` -> Confirmation, or raises CheckoutFailed with a message for the partner
- `checkout(compiled, request, cart_url, project=None, **retry)` -> Confirmation: both in one call
- `cart_url_from(explicit=None)` -> the configured cart URL, or raises CompanionError (none, or malformed)
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Callable

from engine.services.exports import ExportRefused, checkout_decision, exports_of
from engine.problem import CompanionError, Location, Problem
from engine.inference.evaluate import evaluate

CART_URL_VARIABLE = "COMPANION_CART_URL"
USER_AGENT = "companion-checkout/1"
MAX_ANSWER = 1024 * 1024  # bytes: a confirmation is a few dozen; a cart streaming gigabytes must not fill memory
MAX_CONFIRMATION = 100  # characters of a confirmation number, printed and stored with the project
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Order:
    """A confirmed-to-be order: what will be sent, and the key that makes sending it again safe."""

    account: str
    project: str | None
    lines: tuple[dict, ...]
    idempotency_key: str
    payload: dict


@dataclass(frozen=True)
class Confirmation:
    """The cart's answer: its confirmation number, for the project record."""

    number: str
    idempotency_key: str
    attempts: int

    def to_json(self) -> dict:
        """Return the confirmation as a JSON-ready dict."""
        return {"confirmation": self.number, "idempotency_key": self.idempotency_key, "attempts": self.attempts}


class CheckoutRefused(CompanionError):
    """The partner may not proceed to checkout (no purchasing account, or one that is not valid)."""


class CheckoutFailed(Exception):
    """The cart did not confirm the order; `message` says what happened and what the partner can do."""

    def __init__(self, message: str, idempotency_key: str, attempts: int, retryable: bool):
        super().__init__(message)
        self.message = message
        self.idempotency_key = idempotency_key
        self.attempts = attempts
        self.retryable = retryable


def cart_url_from(explicit: str | None = None, option: str = "<checkout>") -> str:
    """Return the cart URL given (from `option`), else COMPANION_CART_URL; raise CompanionError if none or malformed."""
    url = explicit or os.environ.get(CART_URL_VARIABLE, "")
    if not url:
        raise CompanionError([Problem("no-cart-url", "no cart URL is configured", Location("<checkout>"),
                                      hint=f"pass --cart-url URL or set {CART_URL_VARIABLE}")])
    check_cart_url(url, option if explicit else "$" + CART_URL_VARIABLE)
    return url


def check_cart_url(url: str, where: str = "<checkout>") -> None:
    """Raise CompanionError (bad-cart-url, located at `where`) unless url is a well-formed http(s) URL."""
    problem = _url_problem(url)
    if problem:
        raise CompanionError([Problem("bad-cart-url", f"cart URL {url!r} {problem}", Location(where),
                                      hint="e.g. https://cart.example.com/api/orders")])


def _url_problem(url: str) -> str:
    """Say what is wrong with a cart URL, or return an empty string."""
    if not url.isascii() or re.search(r"[\x00-\x20\x7f]", url):
        return "has a space, a control or a non-ASCII character (percent-encode them)"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    except ValueError as error:
        return f"cannot be read: {error}"
    if parts.scheme not in ("http", "https"):
        return "is not an http(s) URL"
    return "" if parts.hostname else "names no host"


def idempotency_key(account: str, project: str | None, lines) -> str:
    """Derive the order's key from what is ordered, by whom, for which project: the same order, the same key."""
    canonical = json.dumps({"account": account, "project": project or "",
                            "lines": [[line["reference"], line["quantity"], line["months"]] for line in lines]},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "companion-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def prepare_order(compiled, request, project: str | None = None, project_since: str = "") -> Order:
    """Check the purchasing account and the configuration; return the order to review and confirm.

    PROJECT_SINCE (when the project was created) goes into the order's key only: a database may give a deleted
    project's id to a new one, whose order must not pass for the old one at the cart.
    """
    catalog = compiled.catalog
    decision = checkout_decision(exports_of(catalog), request.partner.purchasing_account)
    if not decision["allowed"]:
        code = "no-account" if decision["rule"].endswith("account-required") else "bad-account"
        raise CheckoutRefused([Problem(code, decision["message"], Location(request.file), rule=decision["rule"],
                                       path="partner.purchasing_account")])
    verdict = evaluate(compiled, request)
    if not verdict.valid:
        raise ExportRefused(verdict)
    account = request.partner.purchasing_account.strip()
    lines = tuple({"line": number, "reference": line["reference"], "description": line["description"],
                   "quantity": line["quantity"], "months": line["months"]}
                  for number, line in enumerate(verdict.bom, start=1))
    key = idempotency_key(account, f"{project} since {project_since}" if project_since else project, lines)
    payload = {
        "idempotency_key": key,
        "account": account,
        "company": request.partner.company,
        "country": request.partner.country,
        "project": project,
        "configuration": request.configuration.to_json(),
        "lines": list(lines),
        "rules_version": verdict.rules_version,
    }
    return Order(account, project, lines, key, payload)


def place_order(order: Order, cart_url: str, *, timeout: float = 10.0, attempts: int = 4, total: float = 30.0,
                backoff: float = 0.5, max_backoff: float = 8.0, sleep: Callable[[float], None] = time.sleep,
                clock: Callable[[], float] = time.monotonic) -> Confirmation:
    """POST the order to the cart; retry connection errors, timeouts and 5xx within `attempts` and `total` seconds.

    Each attempt (connecting, sending, reading the answer) takes at most `timeout` seconds, less when the total
    budget is nearly spent; between attempts the wait doubles from `backoff` (with jitter, at most
    `max_backoff`, or the cart's Retry-After). A malformed cart_url raises CompanionError before anything is sent.
    """
    check_cart_url(cart_url)
    body = json.dumps(order.payload, ensure_ascii=False).encode("utf-8")
    deadline = clock() + total
    last = "no attempt was made"
    attempt = 0
    while attempt < attempts and clock() < deadline:
        attempt += 1
        retry_after = None
        try:
            raw = _send(cart_url, body, order.idempotency_key, min(timeout, deadline - clock()))
            return Confirmation(_confirmation(raw, order, attempt), order.idempotency_key, attempt)
        except _Final as final:
            raise CheckoutFailed(final.message, order.idempotency_key, attempt, retryable=False) from None
        except _Retry as failure:
            last, retry_after = failure.problem, failure.retry_after
        if attempt < attempts:
            wait = retry_after if retry_after is not None else \
                min(max_backoff, backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            if clock() + wait >= deadline:
                break
            sleep(wait)
    raise CheckoutFailed(
        f"The vendor's cart did not confirm the order after {attempt} attempt{'s' if attempt != 1 else ''} "
        f"(last problem: {last}). It may or may not have arrived. It is safe to try again later: the same order "
        f"is sent with the same order key ({order.idempotency_key}), so it cannot be placed twice. If this keeps "
        "happening, contact your sales representative.", order.idempotency_key, attempt, retryable=True)


def checkout(compiled, request, cart_url: str | None = None, project: str | None = None, **retry) -> Confirmation:
    """Prepare the order of a request and place it: the web app's one call after the partner confirms."""
    order = prepare_order(compiled, request, project)
    return place_order(order, cart_url_from(cart_url), **retry)


class _Retry(Exception):
    """One attempt failed; another may not: what happened, and how long the cart asked us to wait."""

    def __init__(self, problem: str, retry_after: float | None = None):
        super().__init__(problem)
        self.problem = _printable(problem)
        self.retry_after = retry_after


class _Final(Exception):
    """The cart's answer ends the checkout: a refusal, or an answer no retry can improve."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _send(cart_url: str, body: bytes, key: str, seconds: float) -> bytes:
    """POST the order once within `seconds` in all; return the body of a 2xx answer, else raise _Retry or _Final."""
    request = urllib.request.Request(cart_url, data=body, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8", "Accept": "application/json",
        "Idempotency-Key": key, "User-Agent": USER_AGENT})
    cutoff = _Cutoff(seconds)
    try:
        with cutoff.opener().open(request, timeout=seconds) as response:
            return _read(response, cutoff, key)
    except urllib.error.HTTPError as error:
        raise _answer_problem(error) from None
    except (OSError, http.client.HTTPException) as error:  # URLError and TimeoutError are OSErrors
        raise _Retry("no answer in time" if cutoff.expired else _connection_problem(error)) from None
    finally:
        cutoff.stop()


def _read(response, cutoff: _Cutoff, key: str) -> bytes:
    """Read a 2xx answer chunk by chunk, at most MAX_ANSWER bytes, until the attempt's cutoff."""
    chunks, size = [], 0
    while chunk := response.read1(CHUNK):
        size += len(chunk)
        if size > MAX_ANSWER:
            raise _Final(f"The vendor's cart accepted the request but answered with more than {MAX_ANSWER // 1024} "
                         "KiB instead of a confirmation number. Do not order again; contact your sales "
                         f"representative with the order key {key}.")
        chunks.append(chunk)
    if cutoff.expired:
        raise TimeoutError("the answer did not arrive in time")
    if response.length:  # the connection closed before the announced Content-Length
        raise http.client.IncompleteRead(b"".join(chunks), response.length)
    return b"".join(chunks)


def _answer_problem(error: urllib.error.HTTPError) -> Exception:
    """Turn a non-2xx answer into _Final (4xx, or a redirect) or _Retry (5xx)."""
    detail = _error_detail(error)
    said = f"HTTP {error.code}{': ' + detail if detail else ''}"
    if error.code < 500:
        return _Final(f"The vendor's cart refused the order ({said}). The order was not placed. Check the bill of "
                      "materials and your purchasing account, or contact your sales representative.")
    return _Retry(said, _retry_after(error))


class _Cutoff:
    """End an attempt when its time is up: a socket timeout bounds each read, not a cart that trickles bytes."""

    def __init__(self, seconds: float):
        self.expired = False
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.timer = threading.Timer(max(seconds, 0.0), self.cut)
        self.timer.daemon = True
        self.timer.start()

    def opener(self) -> urllib.request.OpenerDirector:
        """Return an opener whose connections this cutoff ends, and that follows no redirect."""
        return urllib.request.build_opener(_NoRedirect, _WatchedHTTP(self), _WatchedHTTPS(self))

    def watch(self, sock: socket.socket) -> None:
        """End this connection at the cutoff, or now if the time is already up."""
        with self.lock:
            self.sockets.append(sock)
            if self.expired:
                _shut(sock)

    def cut(self) -> None:
        """Shut every watched connection down: a blocked read returns at once."""
        with self.lock:
            self.expired = True
            for sock in self.sockets:
                _shut(sock)

    def stop(self) -> None:
        """Cancel the cutoff: the attempt is over."""
        self.timer.cancel()


def _shut(sock: socket.socket) -> None:
    """Shut a socket down for reading and writing; an SSL socket's own shutdown would drop its state under a reader."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class _Watched:
    """A urllib handler whose connections are watched by an attempt's cutoff once connected."""

    def __init__(self, cutoff: _Cutoff):
        super().__init__()
        self.cutoff = cutoff

    def do_open(self, http_class, req, **kwargs):
        """Open the request on a connection that the cutoff watches."""
        cutoff = self.cutoff

        class Connection(http_class):
            def connect(self):
                super().connect()
                cutoff.watch(self.sock)

        return super().do_open(Connection, req, **kwargs)


class _WatchedHTTP(_Watched, urllib.request.HTTPHandler):
    """Plain http connections, watched."""


class _WatchedHTTPS(_Watched, urllib.request.HTTPSHandler):
    """TLS connections, watched."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: urllib would turn the POST into a GET without the order."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _confirmation(raw: bytes, order: Order, attempt: int) -> str:
    """Return the confirmation number of a 2xx answer; raise CheckoutFailed when it has no usable one."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
    number = data.get("confirmation") if isinstance(data, dict) else None
    if not isinstance(number, (str, int)) or isinstance(number, bool) or not str(number).strip():
        problem = "returned no confirmation number"
    elif len(str(number).strip()) > MAX_CONFIRMATION or not str(number).strip().isprintable():
        problem = f"returned a confirmation number that is not printable text of at most {MAX_CONFIRMATION} characters"
    else:
        return str(number).strip()
    raise CheckoutFailed(f"The vendor's cart accepted the request but {problem}. Do not order again; contact your "
                         f"sales representative with the order key {order.idempotency_key}.",
                         order.idempotency_key, attempt, retryable=False)


def _error_detail(error: urllib.error.HTTPError) -> str:
    """Return what a non-2xx answer says: its JSON `error`, else the status line's reason (shortened, printable)."""
    try:
        raw = error.read(4096)
    except (OSError, http.client.HTTPException):
        return _printable(error.reason) if isinstance(error.reason, str) else ""
    try:
        data = json.loads(raw.decode("utf-8"))
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return _printable(data["error"][:300])
    except (UnicodeDecodeError, ValueError, RecursionError):
        pass
    return _printable(str(error.reason)[:300]) if error.reason else ""


def _retry_after(error: urllib.error.HTTPError) -> float | None:
    """Return the cart's Retry-After in seconds; None for a date or anything but ASCII digits (`²` is a digit too)."""
    value = (error.headers.get("Retry-After", "") if error.headers else "").strip()
    return float(value) if re.fullmatch(r"[0-9]{1,9}", value) else None


def _connection_problem(error: BaseException) -> str:
    """Say in a few words why an attempt got no answer."""
    reason = getattr(error, "reason", error)
    if isinstance(reason, TimeoutError) or isinstance(error, TimeoutError):
        return "no answer in time"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    return f"connection problem ({type(reason).__name__}: {reason})"


def _printable(text: str) -> str:
    """Return the cart's text as it is when printable, else escaped: it ends up on the partner's terminal."""
    return text if text.isprintable() else repr(text)
