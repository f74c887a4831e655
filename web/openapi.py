"""The OpenAPI 3.1 document of /api/v1/. Request bodies reuse the engine's own JSON Schemas (request and
amendment), so the document and the validation the engine performs cannot drift apart."""

from __future__ import annotations

import copy
import functools
import json

from engine import SCHEMA_DIR

STATUS_TEXT = {
    400: "Malformed JSON body", 401: "Not signed in, or wrong credentials", 403: "Forbidden (another user's locker, "
    "a template not offered to you, or a missing CSRF token on a cookie-authenticated write)", 404: "Unknown id",
    409: "Conflict (already done)",
    413: "Body too large", 415: "Body is not JSON", 422: "Bad input: each problem has a code and a JSON path",
    429: "Too many attempts", 501: "Not available in this version", 503: "No rules loaded",
}


def _rewrite(node, prefix: str):
    """Point `#/$defs/x` references at `#/components/schemas/<prefix>x`."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                out[key] = "#/components/schemas/" + prefix + value[len("#/$defs/"):]
            elif key in ("$schema", "$id"):
                continue
            else:
                out[key] = _rewrite(value, prefix)
        return out
    if isinstance(node, list):
        return [_rewrite(value, prefix) for value in node]
    return node


def _engine_schema(file: str, prefix: str) -> tuple[dict, dict]:
    schema = json.loads((SCHEMA_DIR / file).read_text(encoding="utf-8"))
    defs = {prefix + name: _rewrite(value, prefix) for name, value in schema.get("$defs", {}).items()}
    top = _rewrite({key: value for key, value in schema.items() if key != "$defs"}, prefix)
    return top, defs


def _responses(ok_schema: dict, *statuses: int) -> dict:
    responses = {"200": {"description": "OK", "content": {"application/json": {"schema": ok_schema}}}}
    for status in statuses:
        responses[str(status)] = {"description": STATUS_TEXT[status], "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return responses


def _body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _csv_responses(*statuses: int) -> dict:
    responses = _responses({}, *statuses)
    responses["200"] = {"description": "The CSV file (UTF-8 with a byte order mark, CRLF, RFC 4180), as an attachment",
                        "content": {"text/csv": {"schema": {"type": "string"}}}}
    return responses


TEMPLATE = {"name": "template", "in": "query", "required": False, "schema": {"type": "string"},
            "description": "a template id offered to you (GET /api/v1/channels); default: the recommended one"}
READ = (401, 429, 503)
WRITE = (400, 401, 403, 413, 415, 422, 429, 503)
EXPLAIN = {"name": "explain", "in": "query", "required": False, "schema": {"type": "boolean"},
           "description": "add the rules that fired and why"}
IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
                   "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
                   "description": "a new random key per request (a UUID): sending the same request again with it "
                                  "returns the first answer (header Idempotent-Replayed: true) and changes nothing; "
                                  "the key with another request is 422 idempotency-key-reused"}


@functools.lru_cache(maxsize=1)
def _document() -> dict:
    request_top, request_defs = _engine_schema("request.schema.json", "")
    amendment_top, amendment_defs = _engine_schema("amendment.schema.json", "Amendment_")
    props = amendment_top["properties"]
    schemas = {
        **request_defs, **amendment_defs,
        "Error": {"type": "object", "required": ["error"], "properties": {
            "error": {"type": "object", "required": ["status", "code", "message"], "properties": {
                "status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"},
                "path": {"type": "string"}, "hint": {"type": "string"}, "incident": {"type": "string"}}},
            "problems": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}}}},
        "Problem": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"},
            "path": {"type": ["string", "null"], "description": "JSON path into the request body"},
            "hint": {"type": "string"}, "where": {"type": "string"}, "rule": {"type": "string"}}},
        "ConfigurationBody": {"type": "object", "additionalProperties": False, "required": ["configuration"],
                              "properties": {"configuration": {"$ref": "#/components/schemas/configuration"},
                                             "partner": {"description": "ignored: the signed-in user's stored "
                                                         "badges, country and purchasing account are used"}}},
        "Verdict": {"type": "object", "required": ["valid", "violations", "notices", "bom", "rules_version"],
                    "properties": {"valid": {"type": "boolean"}, "violations": {"type": "array"},
                                   "notices": {"type": "array"}, "bom": {"type": "array"},
                                   "rules_version": {"type": "string"}, "explanation": {"type": "array"}}},
        "Options": {"type": "object", "required": ["rules_version", "product", "possible"],
                    "properties": {"rules_version": {"type": "string"}, "possible": {"type": "boolean"},
                                   "product": {"type": "object"}}},
        "SubscriptionBody": {"type": "object", "additionalProperties": False, "properties": {
            "activation_id": {"type": "string", "description": "one of your activations (or give subscription)"},
            "subscription": props["subscription"],
            "change": props["change"], "renewal": props["renewal"],
            "activate": {"type": "boolean", "description": "also activate it from your locker (needs activation_id)"},
            "partner": {"description": "ignored: the stored partner is used"}}},
        "SubscriptionOutcome": {"type": "object", "required": ["kind", "valid", "violations", "notices", "term"],
                                "properties": {"kind": {"enum": ["amendment", "renewal"]}, "valid": {"type": "boolean"},
                                               "violations": {"type": "array"}, "notices": {"type": "array"},
                                               "lines": {"type": "array"}, "bom": {"type": "array"},
                                               "term": {"type": "object"}, "subscription": {"type": "object"},
                                               "activation": {"type": "object"}}},
        "Locker": {"type": "object", "required": ["id", "owner", "members", "shared", "balances", "activations"],
                   "properties": {"id": {"type": "integer"}, "owner": {"type": "string"},
                                  "members": {"type": "array", "items": {"type": "string"}},
                                  "shared": {"type": "boolean"},
                                  "balances": {"type": "object", "additionalProperties": {"type": "integer"}},
                                  "activations": {"type": "array"}, "invitations": {"type": "array"}}},
        "Redemption": {"type": "object", "required": ["code", "reference", "quantity", "locker_id", "balance"],
                       "properties": {"code": {"type": "string"}, "reference": {"type": "string"},
                                      "quantity": {"type": "integer"}, "locker_id": {"type": "integer"},
                                      "at": {"type": "string"}, "balance": {"type": "integer"}}},
        "ActivationOutcome": {"type": "object", "required": ["activated", "verdict"],
                              "properties": {"activated": {"type": "boolean"}, "verdict": {"type": "object"},
                                             "activation": {"type": "object"}, "shortfall": {"type": "object"},
                                             "notices": {"type": "array"}}},
        "Catalogue": {"type": "object", "required": ["rules_version", "products", "badges", "reload"],
                      "properties": {"rules_version": {"type": "string"}, "products": {"type": "array"},
                                     "badges": {"type": "array"}, "reload": {"type": "object"}}},
        "BomBody": {"type": "object", "additionalProperties": False, "required": ["configuration"],
                    "properties": {"configuration": {"$ref": "#/components/schemas/configuration"},
                                   "template": {"type": "string", "description": "a template id offered to you "
                                                "(GET /api/v1/channels); default: the recommended one"},
                                   "partner": {"description": "ignored: the stored partner is used"}}},
        "Channels": {"type": "object", "required": ["templates", "recommended", "hidden", "checkout"],
                     "properties": {
                         "templates": {"type": "array", "items": {
                             "type": "object", "required": ["id", "name", "recommended", "rule"],
                             "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                                            "description": {"type": "string"}, "recommended": {"type": "boolean"},
                                            "rule": {"type": "string"}, "channel": {"type": "string"}}}},
                         "recommended": {"type": ["string", "null"]},
                         "hidden": {"type": "array", "items": {"type": "object", "required": ["id", "reason"]}},
                         "checkout": {"type": "object", "required": ["allowed", "message"],
                                      "properties": {"allowed": {"type": "boolean"}, "rule": {"type": "string"},
                                                     "message": {"type": "string"}}}}},
        "UpdateGuide": {"type": "object", "required": ["product", "version", "mode", "event", "title", "steps", "rule"],
                        "properties": {"product": {"type": "string"}, "product_name": {"type": "string"},
                                       "version": {"type": "string"}, "version_assumed": {"type": "boolean"},
                                       "mode": {"enum": ["online", "offline"]},
                                       "event": {"enum": ["activation", "amendment", "renewal"]},
                                       "procedure": {"type": "string"}, "summary": {"type": "string"},
                                       "title": {"type": "string"}, "tool": {"type": "string"},
                                       "steps": {"type": "array", "items": {"type": "string"}},
                                       "rule": {"type": "string"}, "where": {"type": "string"},
                                       "sample": {"type": "boolean"}}},
        "Health": {"type": "object", "required": ["status", "reload"],
                   "properties": {"status": {"enum": ["ok", "degraded", "down"]},
                                  "rules_version": {"type": ["string", "null"]}, "reload": {"type": "object"}}},
    }
    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731
    paths = {
        "/api/v1/health": {"get": {
            "operationId": "health", "summary": "Rules loaded, their version, and the last reload's problems",
            "security": [], "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": ref("Health")}}},
                "503": {"description": "No rules loaded", "content": {"application/json": {"schema": ref("Health")}}}}}},
        "/api/v1/tokens": {"post": {
            "operationId": "createToken", "summary": "Exchange email and password for a bearer token",
            "security": [], "requestBody": _body({"type": "object", "additionalProperties": False,
                                                  "required": ["email", "password"],
                                                  "properties": {"email": {"type": "string"},
                                                                 "password": {"type": "string"}}}),
            "responses": _responses({"type": "object", "required": ["token", "token_type", "expires_in"],
                                     "properties": {"token": {"type": "string"}, "token_type": {"const": "Bearer"},
                                                    "expires_in": {"type": "integer"}, "email": {"type": "string"},
                                                    "role": {"type": "string"}}},
                                    400, 401, 413, 415, 422, 429)}},
        "/api/v1/validate": {"post": {
            "operationId": "validate", "summary": "Validate a configuration for the signed-in partner",
            "parameters": [EXPLAIN], "requestBody": _body(ref("ConfigurationBody")),
            "responses": _responses(ref("Verdict"), *WRITE)}},
        "/api/v1/options": {"post": {
            "operationId": "options", "summary": "What can still be chosen, and why not the rest",
            "requestBody": _body(ref("ConfigurationBody")), "responses": _responses(ref("Options"), *WRITE)}},
        "/api/v1/amend": {"post": {
            "operationId": "amend", "summary": "A mid-term amendment: lines charged for the remaining months",
            "parameters": [EXPLAIN, IDEMPOTENCY_KEY], "requestBody": _body(ref("SubscriptionBody")),
            "responses": _responses(ref("SubscriptionOutcome"), *WRITE, 404, 409, 501)}},
        "/api/v1/renew": {"post": {
            "operationId": "renew", "summary": "A renewal: the new term and its bill of materials",
            "parameters": [EXPLAIN, IDEMPOTENCY_KEY], "requestBody": _body(ref("SubscriptionBody")),
            "responses": _responses(ref("SubscriptionOutcome"), *WRITE, 404, 409, 501)}},
        "/api/v1/catalogue": {"get": {
            "operationId": "catalogue", "summary": "Products, tiers, upgrades, add-ons, badges with rule ids and places",
            "responses": _responses(ref("Catalogue"), *READ)}},
        "/api/v1/locker": {"get": {
            "operationId": "locker", "summary": "Your locker: balances by reference, members, activations",
            "parameters": [{"name": "locker_id", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 0},
                            "description": "refused with 403 unless it is your (shared) locker"}],
            "responses": _responses(ref("Locker"), 401, 403, 422, 429)}},
        "/api/v1/redeem": {"post": {
            "operationId": "redeem", "summary": "Redeem a voucher code into your locker",
            "parameters": [IDEMPOTENCY_KEY], "requestBody": _body({"type": "object", "additionalProperties": False, "required": ["code"],
                                  "properties": {"code": {"type": "string"}}}),
            "responses": _responses(ref("Redemption"), *WRITE, 404, 409)}},
        "/api/v1/activate": {"post": {
            "operationId": "activate", "summary": "Activate a configuration from your locker: Activation ID or shortfall",
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": _body({"type": "object", "additionalProperties": False, "required": ["configuration"],
                                  "properties": {"configuration": ref("configuration"),
                                                 "date": {"type": "string", "format": "date",
                                                          "description": "optional; if given it must be the server's "
                                                                         "date (422 date-not-today otherwise)"},
                                                 "partner": {"description": "ignored"}}}),
            "responses": _responses(ref("ActivationOutcome"), *WRITE, 404, 409)}},
        "/api/v1/projects/{project_id}/bom.csv": {"get": {
            "operationId": "projectBom", "summary": "A saved project's bill of materials as a CSV file",
            "parameters": [{"name": "project_id", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 0}, "description": "one of your projects"},
                           TEMPLATE],
            "responses": _csv_responses(401, 403, 404, 422, 429, 503)}},
        "/api/v1/bom": {"post": {
            "operationId": "bom", "summary": "The bill of materials of a configuration as a CSV file",
            "requestBody": _body(ref("BomBody")), "responses": _csv_responses(*WRITE)}},
        "/api/v1/channels": {"get": {
            "operationId": "channels",
            "summary": "Your export templates (recommended first), the hidden ones and why, and checkout",
            "parameters": [{"name": "product", "in": "query", "required": False, "schema": {"type": "string"},
                            "description": "the project's product: the template of the badge that unlocks it is "
                                           "recommended"}],
            "responses": _responses(ref("Channels"), 401, 422, 429, 503)}},
        "/api/v1/update-guide": {"get": {
            "operationId": "updateGuide",
            "summary": "How to update the installed system after an activation, amendment or renewal",
            "parameters": [
                {"name": "product", "in": "query", "required": True, "schema": {"type": "string"}},
                {"name": "version", "in": "query", "required": False, "schema": {"type": "string"},
                 "description": "default: the latest version"},
                {"name": "mode", "in": "query", "required": True, "schema": {"enum": ["online", "offline"]}},
                {"name": "event", "in": "query", "required": False,
                 "schema": {"enum": ["activation", "amendment", "renewal"], "default": "amendment"}},
                {"name": "activation_id", "in": "query", "required": False, "schema": {"type": "string"},
                 "description": "written into the steps"}],
            "responses": _responses(ref("UpdateGuide"), 401, 422, 429, 503)}},
        "/api/v1/session": {"get": {
            "operationId": "session", "summary": "Who is signed in (and the CSRF token of a cookie session)",
            "responses": _responses({"type": "object", "required": ["email", "role"],
                                     "properties": {"email": {"type": "string"}, "role": {"type": "string"},
                                                    "csrf_token": {"type": "string"}}}, 401, 429)}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Companion API", "version": "1.0.0",
                 "description": "Validate, guide, amend, renew and activate licence configurations. Authenticate with "
                                "a bearer token from POST /api/v1/tokens. Browser sessions may use the session "
                                "cookie instead; their writes need the X-CSRFToken header."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "companion_session"}}},
        "security": [{"bearer": []}, {"cookie": []}],
    }


def document() -> dict:
    """Return the OpenAPI document (a fresh copy)."""
    return copy.deepcopy(_document())
