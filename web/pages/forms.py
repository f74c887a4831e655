"""Forms that change state: once per rendered form, then a redirect to a page showing the stored result.

A form sent twice (Back, then submit; a double click) has one effect and shows the first result.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Callable

from flask import flash, redirect, request

from engine.locker import idempotency
from engine import MAX_DEPTH
from engine.locker.db import Store
from engine.problem import CompanionError, Problem
from web import auth, inputs, services
from web.state import store

UNSIGNED_FIELDS = ("csrf_token", "idempotency_key")
Messages = list[tuple[str, str]]


def new_form_key() -> str:
    """Return a fresh idempotency key for a form being rendered."""
    return secrets.token_urlsafe(18)


def unchanged(location: str, messages: Messages) -> idempotency.Unchanged:
    """Return the signal that a form changed nothing (short of vouchers, say): go to LOCATION, keep nothing."""
    return idempotency.Unchanged(idempotency.Answer(303, {"location": location, "messages": messages}))


def form_fingerprint(path: str, fields) -> str:
    """Return what a form posting FIELDS (name, value pairs; the key and CSRF token left out) to PATH asks."""
    return idempotency.fingerprint("form", path, sorted((name, value) for name, value in fields
                                                        if name not in UNSIGNED_FIELDS))


def form_prefix(asked: str) -> str:
    """Return the start of the idempotency keys of forms asking ASKED."""
    return f"form:{asked[:16]}:"


@dataclasses.dataclass(frozen=True)
class SentBefore:
    """A form shown again that was already sent: its key (sending it again replays) and where its result is."""

    key: str
    location: str


def sent_before(path: str, fields) -> SentBefore | None:
    """Return the earlier sending of the form PATH with FIELDS by this user, if its result is still kept.

    Back does not always show the page the browser had: it may fetch it again, and a new key would make the
    same click a new request. A form found already sent keeps its first key, so sending it replays.
    """
    asked = form_fingerprint(path, fields)
    found = idempotency.earlier(store(), auth.current_account().email, form_prefix(asked), asked)
    if found is None:
        return None
    key, answer = found
    return SentBefore(key[len(form_prefix(asked)):], answer.body["location"])


def once_for_form(work: Callable[[Store], tuple[str, Messages]], by_content: bool = False):
    """Run a form's effect once per rendered form and answer with a redirect to its result.

    WORK returns the result page and the messages to show there. The same form sent again (a resubmission
    after Back, a double click) finds the stored result and changes nothing; a form sent back with other
    values is a new request. BY_CONTENT: the values alone make the request (a voucher code, an invitation
    redeem or accept once however often the form is shown). Refusals raise CompanionError and are not stored.
    """
    asked = form_fingerprint(request.path, request.form.items(multi=True))
    key = "content" if by_content else request.form.get("idempotency_key") or ""
    if not idempotency.KEY_PATTERN.match(key) or len(key) > 200:
        key = new_form_key()  # a form rendered before keys existed: it still works, once

    def effect(database: Store) -> idempotency.Answer:
        location, messages = work(database)
        return idempotency.Answer(303, {"location": location, "messages": messages})

    answer = idempotency.once(store(), auth.current_account().email, form_prefix(asked) + key, asked, effect)
    if answer.replayed:
        flash("You had sent this form already: nothing was done a second time. This is its result.", "info")
    for category, text in answer.body["messages"]:
        flash(text, category)
    return redirect(answer.body["location"], code=303)


def posted_configuration() -> dict:
    """Read the configuration a form posts as JSON, or refuse it at its path."""
    try:
        configuration = json.loads(request.form.get("configuration") or "{}")
        problem = inputs.json_problem(configuration, MAX_DEPTH, "the configuration", ("configuration",))
    except RecursionError:  # Python's JSON decoder recurses once per level of nesting
        configuration, problem = None, inputs.too_deep(MAX_DEPTH, "the configuration", ("configuration",))
    except ValueError:
        configuration, problem = None, None
    if problem is not None:
        raise CompanionError([problem])
    if not isinstance(configuration, dict):
        raise CompanionError([Problem("bad-configuration", "the configuration sent is not a JSON object",
                                      path="configuration")])
    problems = services.configuration_problems(configuration)
    if problems:  # a malformed project would break the Projects page on every visit
        raise CompanionError(problems)
    return configuration


def not_activated(outcome: dict, back: str, what: str) -> idempotency.Unchanged:
    """Return the signal that OUTCOME activated nothing, saying why on the page BACK: short, or refused."""
    if outcome.get("shortfall"):
        missing = ", ".join(f"{count} × {reference}" for reference, count in outcome["shortfall"]["missing"].items())
        return unchanged(back, [("error", f"Not activated: your locker is short of {missing}. Nothing was used.")])
    return unchanged(back, [("error", f"Not activated: the rules refuse {what}. Nothing was used.")])
