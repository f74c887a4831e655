"""The OpenAPI document matches the API: schemathesis generates requests from it and checks every answer
(no server errors, documented status codes, content types and response schemas)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from web_support import PASSWORD, PARTNER


@pytest.fixture(scope="module")
def api_schema(app):
    """The app's own OpenAPI document, served over WSGI."""
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


OPERATIONS = ["GET /api/v1/health", "POST /api/v1/validate", "POST /api/v1/options", "POST /api/v1/amend",
              "POST /api/v1/renew", "GET /api/v1/catalogue", "GET /api/v1/locker", "POST /api/v1/redeem",
              "POST /api/v1/activate", "GET /api/v1/session", "GET /api/v1/projects/{project_id}/bom.csv",
              "POST /api/v1/bom", "GET /api/v1/channels", "GET /api/v1/update-guide"]
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance]


@pytest.fixture(scope="module")
def auth_header(app):
    response = app.test_client().post("/api/v1/tokens", json={"email": PARTNER, "password": PASSWORD})
    return {"Authorization": f"Bearer {response.json['token']}"}


def test_every_operation_is_checked(api_schema):
    labels = {result.ok().label for result in api_schema.get_all_operations()}
    assert labels == set(OPERATIONS) | {"POST /api/v1/tokens"}


@pytest.mark.parametrize("label", OPERATIONS)
def test_api_conforms_to_its_openapi_document(api_schema, auth_header, label):
    operation = api_schema.find_operation_by_label(label)

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def check(case):
        case.call_and_validate(headers=auth_header, checks=CHECKS)

    check()


def test_document_reuses_the_engine_request_schema(client):
    document = client.get("/api/v1/openapi.json").json
    configuration = document["components"]["schemas"]["configuration"]
    assert configuration["additionalProperties"] is False and "addons" in configuration["properties"]
    body = document["paths"]["/api/v1/validate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ConfigurationBody"}
