"""One rules directory, one rules version: every command, report, record and licence file shows the same one.

The version is the content hash of the directory's rule files (names and bytes); the test computes it on its
own, with hashlib over the files, and asks each command through the real console script.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
EXAMPLES = ROOT / "examples"
RULE_FILES = ("addons.yaml", "badges.yaml", "constraints.yaml", "exports.yaml", "guidance.yaml",
              "subscriptions.yaml", "tiers.yaml", "vouchers.yaml")


def expected_version(directory: Path) -> str:
    """The rules version as documented: SHA-256 over each rule file present, by sorted name: name, length, bytes."""
    digest = hashlib.sha256()
    for name in sorted(RULE_FILES):
        path = directory / name
        if path.exists():
            data = path.read_bytes()
            digest.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest()[:16]


def companion(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from engine.cli import main; main()", *args]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180,
                            env={**os.environ, **(env or {})})
    assert "Traceback" not in result.stdout + result.stderr
    return result


def versions_in(text: str) -> set[str]:
    """Return every `rules version X` a text report shows."""
    return set(re.findall(r"rules version ([0-9a-f]{16})", text))


def test_the_shipped_rules_cover_every_rule_file_companion_reads():
    """The independent hash above must know every rule file: a new one would otherwise go unhashed here."""
    from engine import RULE_FILES as read

    assert sorted(read) == sorted(RULE_FILES)
    assert all((RULES / name).exists() for name in RULE_FILES)


def test_every_command_shows_the_content_hash_of_the_rule_files():
    version = expected_version(RULES)
    check = companion("check")
    assert check.returncode == 0 and versions_in(check.stderr) == {version}
    validate = companion("validate", str(EXAMPLES / "epo-advanced-valid.yaml"))
    assert validate.returncode == 0 and versions_in(validate.stdout) == {version}
    validate = companion("validate", str(EXAMPLES / "epo-advanced-valid.yaml"), "--format", "json")
    assert json.loads(validate.stdout)["rules_version"] == version
    amend = companion("amend", str(EXAMPLES / "amend-epo-combined.yaml"))
    assert amend.returncode == 0 and versions_in(amend.stdout) == {version}
    amend = companion("amend", str(EXAMPLES / "amend-epo-combined.yaml"), "--format", "json")
    assert json.loads(amend.stdout)["rules_version"] == version
    renew = companion("renew", str(EXAMPLES / "renew-epo-downgrade.yaml"))
    assert renew.returncode == 0 and versions_in(renew.stdout) == {version}
    renew = companion("renew", str(EXAMPLES / "renew-epo-downgrade.yaml"), "--format", "json")
    assert json.loads(renew.stdout)["rules_version"] == version


def test_the_fixture_report_names_the_rules_version(tmp_path):
    version = expected_version(RULES)
    fixtures = str(ROOT / "tests" / "fixtures" / "addons")
    text = companion("test", fixtures)
    assert text.returncode == 0 and f"rules version {version} (rules)" in text.stdout.splitlines()
    document = json.loads(companion("test", fixtures, "--format", "json").stdout)
    assert document["rules"] == [{"rules": "rules", "rules_version": version}]
    assert {case["rules_version"] for case in document["cases"]} == {version}
    junit = companion("test", fixtures, "--format", "junit").stdout
    assert set(re.findall(r'name="rules_version" value="([^"]*)"', junit)) == {version}


def test_an_edit_of_an_optional_rule_file_changes_the_version(tmp_path):
    """constraints.yaml is read by a policy after the core files: its bytes count like theirs."""
    copy = tmp_path / "rules"
    shutil.copytree(RULES, copy)
    before = versions_in(companion("check", "--rules", str(copy)).stderr)
    with (copy / "constraints.yaml").open("a", encoding="utf-8") as file:
        file.write("\n# a comment is a change of the file\n")
    after = versions_in(companion("check", "--rules", str(copy)).stderr)
    assert before == {expected_version(RULES)} and after == {expected_version(copy)} and before != after


def test_checkout_activation_and_licence_file_carry_the_same_version(tmp_path):
    version = expected_version(RULES)
    env = {"COMPANION_DATABASE_URL": f"sqlite:///{tmp_path / 'locker.sqlite3'}",
           "COMPANION_SIGNING_KEY": str(tmp_path / "keys" / "vendor.pem")}
    request = tmp_path / "request.yaml"
    request.write_text((EXAMPLES / "epo-advanced-valid.yaml").read_text(encoding="utf-8").replace(
        "  country: US\n", "  country: US\n  purchasing_account: \"12345678\"\n"), encoding="utf-8")
    checkout = companion("checkout", str(request), "--format", "json", env=env)
    assert checkout.returncode == 0, checkout.stderr
    assert json.loads(checkout.stdout)["payload"]["rules_version"] == version
    user = "ann@rules-version.example"
    assert companion("users", "add", user, "--company", "Acme", "--badges", "power-management", "--country", "US",
                     env=env).returncode == 0
    bom = json.loads(companion("validate", str(request), "--format", "json").stdout)["bom"]
    for line in bom:
        code = companion("vouchers", "issue", "--reference", line["reference"], "--quantity", str(line["quantity"]),
                         env=env).stdout.split()[0]
        assert companion("locker", "redeem", code, "--user", user, env=env).returncode == 0
    activated = companion("activate", str(request), "--user", user, "--format", "json", env=env)
    assert activated.returncode == 0, activated.stdout + activated.stderr
    answer = json.loads(activated.stdout)
    assert answer["verdict"]["rules_version"] == version
    assert answer["activation"]["rules_version"] == version
    licence = tmp_path / "licence.json"
    exported = companion("license", "export", answer["activation"]["id"], "--user", user, "-o", str(licence), env=env)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(licence.read_text(encoding="utf-8"))["licence"]["rules_version"] == version


@pytest.mark.parametrize("name", ["README.md", "docs/fixtures.md", "docs/architecture.md", "docs/engine-notes.md"])
def test_the_docs_show_the_placeholder_not_a_stale_rules_version(name):
    """Any edit of the rules changes the version: the docs write `<hash>` (docs/rules.md: tests/test_cookbook.py)."""
    text = (ROOT / name).read_text(encoding="utf-8")
    assert re.findall(r"rules[ _]version\"?:? ?\"?([0-9a-f]{16})", text) == []
