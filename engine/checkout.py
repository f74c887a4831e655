"""Checkout: hand a reviewed, confirmed bill of materials to the vendor's cart, safely retried.

The order travels as one JSON POST to the cart URL (`COMPANION_CART_URL`, or given) with an `Idempotency-Key`
header. The key is derived from the order itself (purchasing account, project, BOM lines), so sending the same
order again (a retry after a timeout, a partner pressing the button twice) reuses it and the cart can answer
with the first confirmation instead of placing a second order. Connection errors, timeouts and 5xx answers are
retried with exponential backoff, within a bounded number of attempts and a bounded total time; a 4xx answer
is final. The cart answers 2xx with `{"confirmation": "<number>"}`.

Public API (for the CLI and the web app):
- `prepare_order(compiled, request, project=None)` -> Order (the account checked, the BOM computed) or raises
  CheckoutRefused / ExportRefused
- `place_order(order, cart_url, ...)` -> Confirmation, or raises CheckoutFailed with a message for the partner
- `checkout(compiled, request, cart_url, project=None, **retry)` -> Confirmation: both in one call
- `cart_url_from(explicit=None)` -> the configured cart URL, or raises CompanionError
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Callable

from engine.exports import ExportRefused, checkout_decision, exports_of
from engine.problem import CompanionError, Location, Problem

CART_URL_VARIABLE = "COMPANION_CART_URL"
USER_AGENT = "companion-checkout/1"


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


def cart_url_from(explicit: str | None = None) -> str:
    """Return the cart URL given, else COMPANION_CART_URL; raise CompanionError if none or not http(s)."""
    url = explicit or os.environ.get(CART_URL_VARIABLE, "")
    if not url:
        raise CompanionError([Problem("no-cart-url", "no cart URL is configured", Location("<checkout>"),
                                      hint=f"pass --cart-url URL or set {CART_URL_VARIABLE}")])
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CompanionError([Problem("bad-cart-url", f"cart URL '{url}' is not an http(s) URL", Location("<checkout>"),
                                      hint="e.g. https://cart.example.com/api/orders")])
    return url


def idempotency_key(account: str, project: str | None, lines) -> str:
    """Derive the order's key from what is ordered, by whom, for which project: the same order, the same key."""
    canonical = json.dumps({"account": account, "project": project or "",
                            "lines": [[line["reference"], line["quantity"], line["months"]] for line in lines]},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "companion-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def prepare_order(compiled, request, project: str | None = None) -> Order:
    """Check the purchasing account and the configuration; return the order to review and confirm."""
    from engine.evaluate import evaluate

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
    key = idempotency_key(account, project, lines)
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

    Each attempt waits at most `timeout` seconds (less when the total budget is nearly spent); between
    attempts the wait doubles from `backoff` (with jitter, at most `max_backoff`, or the cart's Retry-After).
    """
    body = json.dumps(order.payload, ensure_ascii=False).encode("utf-8")
    opener = urllib.request.build_opener(_NoRedirect)
    deadline = clock() + total
    last = "no attempt was made"
    attempt = 0
    while attempt < attempts:
        attempt += 1
        remaining = deadline - clock()
        if remaining <= 0:
            break
        request = urllib.request.Request(cart_url, data=body, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8", "Accept": "application/json",
            "Idempotency-Key": order.idempotency_key, "User-Agent": USER_AGENT})
        retry_after = None
        try:
            with opener.open(request, timeout=min(timeout, remaining)) as response:
                return Confirmation(_confirmation(response.read(), order, attempt), order.idempotency_key, attempt)
        except urllib.error.HTTPError as error:
            detail = _error_detail(error)
            if error.code < 500:
                raise CheckoutFailed(
                    f"The vendor's cart refused the order (HTTP {error.code}{': ' + detail if detail else ''}). "
                    "The order was not placed. Check the bill of materials and your purchasing account, or contact "
                    "your sales representative.", order.idempotency_key, attempt, retryable=False) from None
            last = f"HTTP {error.code}{': ' + detail if detail else ''}"
            retry_after = _retry_after(error)
        except (TimeoutError, OSError, http.client.HTTPException) as error:  # URLError is an OSError
            last = _connection_problem(error)
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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: urllib would turn the POST into a GET without the order."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _confirmation(raw: bytes, order: Order, attempt: int) -> str:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data = None
    number = data.get("confirmation") if isinstance(data, dict) else None
    if not isinstance(number, (str, int)) or isinstance(number, bool) or not str(number).strip():
        raise CheckoutFailed(
            "The vendor's cart accepted the request but returned no confirmation number. Do not order again; "
            f"contact your sales representative with the order key {order.idempotency_key}.",
            order.idempotency_key, attempt, retryable=False)
    return str(number).strip()


def _error_detail(error: urllib.error.HTTPError) -> str:
    try:
        raw = error.read(4096)
    except (OSError, http.client.HTTPException):
        return error.reason if isinstance(error.reason, str) else ""
    try:
        data = json.loads(raw.decode("utf-8"))
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return data["error"][:300]
    except (UnicodeDecodeError, ValueError):
        pass
    return str(error.reason)[:300] if error.reason else ""


def _retry_after(error: urllib.error.HTTPError) -> float | None:
    value = error.headers.get("Retry-After", "") if error.headers else ""
    return float(value) if value.strip().isdigit() else None


def _connection_problem(error: BaseException) -> str:
    reason = getattr(error, "reason", error)
    if isinstance(reason, TimeoutError) or isinstance(error, TimeoutError):
        return "no answer in time"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    return f"connection problem ({type(reason).__name__}: {reason})"
