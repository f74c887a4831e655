"""The voucher story from the command line: users, vouchers, locker, licence files; exit codes 0/1/2."""

from __future__ import annotations

import json
from datetime import date

import click
import pytest
from click.testing import CliRunner

from engine.cli import locker as cli_locker
from engine import locker
from engine.services.coverage import Requirement
from engine.problem import CompanionError
from engine.locker.db import open_store


@pytest.fixture
def companion(database_url, tmp_path, monkeypatch):
    """Run `companion ...` with this test's database; return (exit code, stdout, stderr)."""
    monkeypatch.setenv("COMPANION_DATABASE_URL", database_url)
    monkeypatch.setenv("COMPANION_SIGNING_KEY", str(tmp_path / "keys" / "vendor.pem"))

    @click.group()
    def cli():
        """Test entry point."""

    cli_locker.register(cli)
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return run


def catalogue_reference() -> str:
    """Return a commercial reference of the bundled catalogue."""
    return sorted(cli_locker.known_references())[0]


@pytest.fixture
def issue(companion):
    """Issue vouchers with `companion vouchers issue`."""
    reference = catalogue_reference()

    def issue(quantity: int, count: int) -> tuple[str, list[str]]:
        code, out, err = companion("vouchers", "issue", "--reference", reference, "--quantity", str(quantity),
                                   "--count", str(count))
        assert code == 0, err
        return reference, out.split()

    return issue


def test_vouchers_issue_checks_the_reference_against_the_catalogue(companion):
    reference = catalogue_reference()
    code, _, err = companion("vouchers", "issue", "--reference", reference + "X", "--quantity", "1")
    assert code == 2 and "error[unknown-reference]" in err and "did you mean" in err
    code, out, _ = companion("vouchers", "issue", "--reference", reference, "--quantity", "1", "--format", "json")
    assert code == 0 and len(json.loads(out)["codes"]) == 1


@pytest.mark.parametrize("quantity", ["1000001", "9223372036854775807", "9223372036854775808", "0"])
def test_a_voucher_holds_at_most_a_million_units(companion, quantity):
    """Regression: 2**63 - 1 units were issued, and two such vouchers broke their locker for good (overflow)."""
    code, out, err = companion("vouchers", "issue", "--reference", catalogue_reference(), "--quantity", quantity)
    assert code == 2 and out == "" and "Invalid value for '--quantity'" in err and "1<=x<=1000000" in err


def test_the_service_refuses_a_voucher_of_over_a_million_units(database_url):
    with open_store(database_url) as store, pytest.raises(CompanionError) as refused:
        locker.issue_vouchers(store, catalogue_reference(), 1_000_001)
    assert [problem.code for problem in refused.value.problems] == ["bad-quantity"]
    assert "at most 1000000" in refused.value.problems[0].message


def test_users_add_list_set(companion, tag):
    ann = f"ann@{tag}.example"
    assert companion("users", "add", ann, "--company", "Acme", "--badges", "power-management,power-automation",
                     "--country", "us")[0] == 0
    code, out, _ = companion("users", "list", "--format", "json")
    assert code == 0 and {"email": ann, "country": "US"}.items() <= next(
        user for user in json.loads(out) if user["email"] == ann).items()
    code, out, _ = companion("users", "set", ann, "--purchasing-account", "PA-7", "--format", "json")
    assert code == 0 and json.loads(out)["purchasing_account"] == "PA-7"
    badge = ("--badges", "power-management")
    code, _, err = companion("users", "add", ann.upper(), "--company", "A", *badge, "--country", "US")
    assert code == 1 and err.startswith("error[duplicate-user]: ")
    code, _, err = companion("users", "add", "nobody", "--company", "A", *badge, "--country", "US")
    assert code == 2 and err.startswith("error[malformed-email]: ") and "Traceback" not in err
    code, _, err = companion("users", "add", f"x@{tag}.example", "--company", "A", *badge, "--country", "USA")
    assert code == 2 and "error[bad-country]" in err


def test_a_badge_the_catalogue_does_not_define_is_refused(companion, tag):
    """A typo in a badge used to be stored, and quietly withheld the partner's products later."""
    code, _, err = companion("users", "add", f"x@{tag}.example", "--company", "A", "--badges",
                             "power-management,power-managment", "--country", "US")
    assert code == 2 and "error[unknown-badge]: 'power-managment' is not a badge" in err
    assert "did you mean 'power-management'" in err
    assert companion("users", "list", "--format", "json")[1].count(f"x@{tag}.example") == 0
    companion("users", "add", f"y@{tag}.example", "--company", "A", "--badges", "power-management", "--country", "US")
    code, _, err = companion("users", "set", f"y@{tag}.example", "--badges", "gold")
    assert code == 2 and "error[unknown-badge]" in err
    code, _, err = companion("users", "set", f"y@{tag}.example")
    assert code == 2 and "error[nothing-to-change]" in err


def test_voucher_story(companion, issue, database_url, tag, tmp_path):
    ann, bob = f"ann@{tag}.example", f"bob@{tag}.example"
    for email in (ann, bob):
        companion("users", "add", email, "--company", "Acme", "--badges", "power-management", "--country", "US")
    reference, issued = issue(2, 3)
    assert len(issued) == 3
    code, out, _ = companion("locker", "redeem", issued[0].lower(), "--user", ann, "--format", "json")
    assert code == 0 and json.loads(out)["balance"] == 2
    assert companion("locker", "redeem", issued[1], "--user", ann)[0] == 0
    assert companion("locker", "redeem", issued[2], "--user", bob)[0] == 0
    code, _, err = companion("locker", "redeem", issued[0], "--user", ann)
    assert code == 1 and err.startswith("error[already-redeemed]")
    code, _, err = companion("locker", "redeem", issued[0][:-1] + "Q" if issued[0][-1] != "Q" else
                             issued[0][:-1] + "R", "--user", ann)
    assert code == 2 and err.startswith("error[malformed-code]")
    code, out, err = companion("locker", "invite", bob, "--user", ann, "--format", "json")
    assert code == 0
    invitation = json.loads(out)["id"]
    code, _, err = companion("locker", "invite", f"cat@{tag}.example", "--user", bob)
    assert code == 0  # bob is not in ann's locker yet: he owns his own
    code, out, _ = companion("locker", "accept", invitation, "--user", bob)
    assert code == 0 and "joined locker" in out
    code, _, err = companion("locker", "invite", f"dan@{tag}.example", "--user", bob)
    assert code == 1 and err.startswith("error[not-owner]")
    code, out, _ = companion("locker", "show", "--user", bob, "--format", "json")
    shown = json.loads(out)
    assert code == 0 and shown["balances"] == {reference: 6} and shown["owner"] == ann and shown["shared"]
    with open_store(database_url) as store:
        activation = locker.activate(store, bob, {"product": "epo"}, "v1", [Requirement(reference, 5)], {},
                                     on=date(2025, 6, 1))
    code, out, _ = companion("locker", "audit", "--user", ann, "--format", "json")
    actions = [event["action"] for event in json.loads(out)]
    assert code == 0 and actions.count("redemption") == 3 and "activation" in actions and "acceptance" in actions
    license_file = tmp_path / "out" / "licence.json"
    code, out, _ = companion("license", "export", activation.id, "--user", ann, "-o", str(license_file))
    assert code == 0 and license_file.exists()
    public = tmp_path / "keys" / "vendor.pub.pem"
    code, out, _ = companion("license", "verify", str(license_file), "--public-key", str(public))
    assert code == 0 and activation.id in out
    license_file.write_bytes(license_file.read_bytes().replace(b'"units":5', b'"units":9'))
    code, _, err = companion("license", "verify", str(license_file), "--public-key", str(public))
    assert code == 1 and err.startswith("error[bad-signature]")
    code, _, err = companion("license", "export", activation.id, "--user", f"cat@{tag}.example", "-o",
                             str(license_file))
    assert code == 1 and "error[unknown-user]" in err


def test_unreachable_database_is_a_clean_error(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")

    @click.group()
    def cli():
        """Test entry point."""

    cli_locker.register(cli)
    result = CliRunner().invoke(cli, ["users", "list"])
    assert result.exit_code == 1 and result.stderr.startswith("error[database]: ")
