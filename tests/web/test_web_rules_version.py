"""The web app and the JSON API show the rules version `companion check` shows: the hash of the rule files."""

from __future__ import annotations

import hashlib
import re

from engine.catalogue.schema import BUNDLED_RULES

EPO_ADVANCED = {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36, "tier": "advanced",
                "devices": 150, "addons": [{"id": "insulation-monitoring", "quantity": 1}]}


def expected_version() -> str:
    """SHA-256 over each rule file of the bundled rules, by sorted name: name, length, bytes (README.md)."""
    digest = hashlib.sha256()
    for path in sorted(BUNDLED_RULES.glob("*.yaml"), key=lambda path: path.name):
        data = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest()[:16]


def test_health_validate_options_catalogue_and_pages_show_one_version(client, bearer, manager):
    version = expected_version()
    health = client.get("/api/v1/health").json
    assert health["rules_version"] == health["reload"]["rules_version"] == version
    assert client.post("/api/v1/validate", json={"configuration": EPO_ADVANCED}, headers=bearer).json[
        "rules_version"] == version
    assert client.post("/api/v1/options", json={"configuration": {"product": "epo"}}, headers=bearer).json[
        "rules_version"] == version
    assert client.get("/api/v1/catalogue", headers=bearer).json["rules_version"] == version
    page = manager.get("/catalogue").text
    assert set(re.findall(r'id="rules-version">([^<]*)<', page)) == {version}
