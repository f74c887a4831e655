"""Error responses: a JSON body with a code (and JSON paths) under /api/, a plain page elsewhere; never a trace.

Every unexpected exception becomes a 500 with an incident id; the traceback goes to the log under that id.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from engine.problem import CompanionError, Problem, http_status
from web.inputs import echo_path

log = logging.getLogger("companion.web")

CODES = {
    400: "bad-request", 401: "unauthenticated", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
    409: "conflict", 413: "too-large", 415: "unsupported-media-type", 422: "bad-input", 429: "rate-limited",
    500: "internal", 501: "not-available", 503: "unavailable",
}
# An answer stays about as small as its request: 20,000 unknown keys were 20,000 problems (2 MB), a list of
# 20,000 add-ons was echoed whole in one message (520 KB).
MAX_PROBLEMS = 50
MAX_MESSAGE = 200


def wants_json() -> bool:
    """Return whether the response should be JSON (the API, or a client that asks for JSON only)."""
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def clip(text: str) -> str:
    """Cut the middle out of a message over MAX_MESSAGE characters: only an echoed value makes one that long."""
    if len(text) <= MAX_MESSAGE:
        return text
    return f"{text[:100]} … {text[-80:]}"  # the end often says what is wrong ("... is too long")


def for_client(problems: list[Problem]) -> list[Problem]:
    """Return at most MAX_PROBLEMS problems with long messages cut, then one that counts the rest."""
    shown = [dataclasses.replace(problem, message=clip(problem.message), hint=clip(problem.hint),
                                 path=echo_path(problem.path)) for problem in problems[:MAX_PROBLEMS]]
    if len(problems) > MAX_PROBLEMS:
        shown.append(Problem("more-problems", f"… and {len(problems) - MAX_PROBLEMS} more problems",
                             hint="fix these and send it again"))
    return shown


def problem_json(problem: Problem) -> dict:
    """Return a problem as the API shows it: code, message, JSON path, hint and, for rule files, where."""
    data = {"code": problem.code, "message": problem.message, "path": problem.path or None, "hint": problem.hint}
    if problem.where.file and not problem.where.file.startswith("<"):
        data["where"] = str(problem.where)
    if problem.rule:
        data["rule"] = problem.rule
    return data


def error_body(status: int, code: str, message: str, problems: list[Problem] = (), **extra) -> dict:
    """Return the JSON error document every failing API call answers with."""
    body = {"error": {"status": status, "code": code, "message": clip(message)}}
    problems = for_client(problems)
    if problems:
        body["problems"] = [problem_json(problem) for problem in problems]
        paths = [problem.path for problem in problems if problem.path]
        if paths:
            body["error"]["path"] = paths[0]
    body["error"].update(extra)
    return body


def respond(status: int, code: str, message: str, problems: list[Problem] = (), **extra):
    """Answer with JSON under /api/ and an error page elsewhere."""
    if wants_json():
        response = jsonify(error_body(status, code, message, problems, **extra))
        response.status_code = status
        return response
    return render_template("error.html", status=status, code=code, message=clip(message),
                           problems=for_client(problems), **extra), status


def register(app: Flask) -> None:
    """Install the error handlers."""

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return respond(403, "csrf", f"the form or request was refused: {error.description}",
                       hint="reload the page and try again; API clients send the X-CSRFToken header or a bearer token")

    @app.errorhandler(CompanionError)
    def companion_error(error: CompanionError):
        first = error.problems[0] if error.problems else Problem("bad-input", "bad input")
        return respond(http_status(error.problems), first.code, first.message, error.problems)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        code = CODES.get(status, "http-error")
        message = error.description or error.name
        if status == 413:
            message = f"the request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes"
        if status == 429:
            message = "too many attempts; wait a minute and try again"
        response = respond(status, code, message)
        if hasattr(error, "get_headers") and status in (405, 429):
            headers = dict(error.get_headers())
            headers.pop("Content-Type", None)
            if isinstance(response, tuple):
                return response[0], response[1], headers
            response.headers.update(headers)
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception):  # noqa: BLE001 - the web boundary: never show a traceback
        incident = uuid.uuid4().hex[:12]
        log.error("incident %s: %s %s", incident, request.method, request.path, exc_info=error)
        return respond(500, "internal", f"unexpected failure; incident {incident}", incident=incident)
