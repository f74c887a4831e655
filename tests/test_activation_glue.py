"""Activation glue: rules verdict -> bill of materials -> voucher packs -> locker debit, on a real SQLite file."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import locker
from engine.activation import activate_change, activate_configuration, activate_lines, matching
from engine.catalogue.load import load_catalog
from engine.inference.compile import load
from engine.problem import OUTCOME_OF, OUTCOMES, CompanionError, Problem, exit_status, http_status
from engine.locker.db import open_store

ROOT = Path(__file__).resolve().parent.parent
EPO = {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36, "tier": "advanced",
       "devices": 150, "addons": [{"id": "insulation-monitoring"}]}
JUNE = datetime.date(2025, 6, 1)


@pytest.fixture()
def store(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'locker.sqlite3'}")
    locker.add_user(store, "alice@acme.example", company="Acme", badges=["power-management"], country="US")
    locker.add_user(store, "bob@acme.example", company="Acme", badges=["building-automation"], country="US")
    return store


@pytest.fixture(scope="module")
def compiled():
    return load(None)


def change_on_its_date(store, compiled, user, activation_id, change, kind="amendment"):
    """Amend or renew on a server whose date is the change's own (debits are dated by the server)."""
    return activate_change(store, compiled, user, activation_id, change, kind,
                           today=datetime.date.fromisoformat(change["date"]))


def fill(store, user, *items):
    for reference, quantity in items:
        [code] = locker.issue_vouchers(store, reference, quantity)
        locker.redeem(store, user, code)


def test_packs_are_matching_options_before_the_line_own_reference(compiled):
    options = matching(compiled.catalog)["EPO-DEV-SUB-3Y"]
    assert [(option.voucher_reference, option.units_per_voucher) for option in options] == [
        ("EPO-DEV-SUB-3Y-P25", 25), ("EPO-DEV-SUB-3Y", 1)]
    assert compiled.catalog.references["EPO-DEV-SUB-3Y-P25"].kind == "voucher-pack"


def test_activation_debits_exactly_the_bill_of_materials(store, compiled):
    # 150 devices on advanced (50 included) need 100 device units: 3 packs of 25 + 25 single vouchers.
    fill(store, "alice@acme.example", ("EPO-ADV-SUB-3Y", 1), ("EPO-DEV-SUB-3Y-P25", 3), ("EPO-DEV-SUB-3Y", 30),
         ("EPO-IMS-SUB-3Y", 1))
    outcome = activate_configuration(store, compiled, "alice@acme.example", EPO, today=JUNE)
    assert outcome.activated
    activation = outcome.activation
    assert activation.id.startswith("ACT-") and activation.term_start == JUNE
    assert activation.debits == {"EPO-ADV-SUB-3Y": 1, "EPO-DEV-SUB-3Y": 25, "EPO-DEV-SUB-3Y-P25": 3,
                                 "EPO-IMS-SUB-3Y": 1}
    assert locker.balances(store, "alice@acme.example") == {"EPO-DEV-SUB-3Y": 5}
    assert activation.badges == ("power-management",)


def test_shortfall_names_what_is_missing_and_debits_nothing(store, compiled):
    fill(store, "alice@acme.example", ("EPO-ADV-SUB-3Y", 1), ("EPO-DEV-SUB-3Y-P25", 3))
    outcome = activate_configuration(store, compiled, "alice@acme.example", EPO, today=JUNE)
    assert not outcome.activated
    # 100 device units less 75 from packs = 25 missing, exactly one more pack of 25 (packs are preferred);
    # insulation monitoring is missing entirely.
    assert outcome.shortfall.missing == {"EPO-DEV-SUB-3Y-P25": 1, "EPO-IMS-SUB-3Y": 1}
    assert locker.balances(store, "alice@acme.example") == {"EPO-ADV-SUB-3Y": 1, "EPO-DEV-SUB-3Y-P25": 3}


def test_stored_badges_decide_not_the_request(store, compiled):
    fill(store, "bob@acme.example", ("EPO-ADV-SUB-3Y", 1), ("EPO-DEV-SUB-3Y", 100), ("EPO-IMS-SUB-3Y", 1))
    outcome = activate_configuration(store, compiled, "bob@acme.example", EPO, today=JUNE)
    assert not outcome.activated and outcome.shortfall is None
    assert [item["code"] for item in outcome.verdict["violations"]] == ["not-entitled"]
    assert locker.balances(store, "bob@acme.example") == {"EPO-ADV-SUB-3Y": 1, "EPO-DEV-SUB-3Y": 100,
                                                          "EPO-IMS-SUB-3Y": 1}


def test_malformed_configuration_is_a_request_error(store, compiled):
    with pytest.raises(CompanionError) as raised:
        activate_configuration(store, compiled, "alice@acme.example", {**EPO, "tier": "advnced"}, today=JUNE)
    assert [(problem.code, problem.path) for problem in raised.value.problems] == [
        ("unknown-ref", "configuration.tier")]


def test_a_pack_covering_an_unsold_reference_is_located(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    text = (rules / "vouchers.yaml").read_text().replace("covers: EPO-DEV-SUB-3Y\n", "covers: EPO-DEV-SUB-3X\n")
    (rules / "vouchers.yaml").write_text(text)
    with pytest.raises(CompanionError) as raised:
        load_catalog(rules)
    [problem] = raised.value.errors
    # `    covers: EPO-DEV-SUB-3X` is line 15 of vouchers.yaml; the value starts at column 13.
    assert (Path(problem.where.file).name, problem.where.line, problem.where.column, problem.code) == (
        "vouchers.yaml", 15, 13, "unknown-ref")
    assert problem.hint == "did you mean 'EPO-DEV-SUB-3Y'?"


def test_a_pack_reusing_a_sold_reference_is_a_duplicate(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    text = (rules / "vouchers.yaml").read_text().replace("reference: PME-DEV-PERP-P50", "reference: PME-DEV-PERP")
    (rules / "vouchers.yaml").write_text(text)
    with pytest.raises(CompanionError) as raised:
        load_catalog(rules)
    assert [problem.code for problem in raised.value.errors] == ["duplicate-reference"]
    assert raised.value.errors[0].rule == "voucher.pme-dev-perp"


def companion(*args, env):
    result = subprocess.run([sys.executable, "-c", "from engine.cli import main; main()", *args], cwd=ROOT,
                            capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def test_activate_command_end_to_end(tmp_path):
    env = {**os.environ, "COMPANION_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}"}
    assert companion("users", "add", "carol@acme.example", "--company", "Acme", "--badges", "power-management",
                     "--country", "US", env=env).returncode == 0
    request = str(ROOT / "examples" / "epo-advanced-valid.yaml")
    short = companion("activate", request, "--user", "carol@acme.example", "--date", "2025-06-01", env=env)
    assert short.returncode == 1 and "short: 1 x EPO-ADV-SUB-3Y" in short.stdout
    for reference, quantity in (("EPO-ADV-SUB-3Y", 1), ("EPO-DEV-SUB-3Y-P25", 4), ("EPO-IMS-SUB-3Y", 1)):
        code = companion("vouchers", "issue", "--reference", reference, "--quantity", str(quantity), env=env)
        assert companion("locker", "redeem", code.stdout.strip(), "--user", "carol@acme.example",
                         env=env).returncode == 0
    done = companion("activate", request, "--user", "carol@acme.example", "--date", "2025-06-01", env=env)
    assert done.returncode == 0 and "ACTIVATED: ACT-" in done.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("configuration:\n  product: epo\n  license: subscription\n  tier: advnced\n")
    refused = companion("activate", str(bad), "--user", "carol@acme.example", env=env)
    assert refused.returncode == 2
    assert "bad.yaml:4:9: error[unknown-ref] at configuration.tier" in refused.stderr


def test_the_vendor_amendment_is_activated_for_33_months_of_vouchers(store, compiled):
    start = {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36,
             "tier": "essential", "devices": 100}
    fill(store, "alice@acme.example", ("EPO-ESS-SUB-3Y", 1), ("EPO-DEV-SUB-3Y", 75))
    first = activate_configuration(store, compiled, "alice@acme.example", start, today=JUNE)
    assert first.activated
    change = {"date": "2025-09-01", "tier": "advanced"}
    short = change_on_its_date(store, compiled, "alice@acme.example", first.activation.id, change)
    # 36-month term from 2025-06-01, amended 2025-09-01: 36 - 3 = 33 months of essential->advanced.
    assert short.shortfall.missing == {"EPO-AMD-ESS-ADV": 33}
    fill(store, "alice@acme.example", ("EPO-AMD-ESS-ADV", 33))
    amended = change_on_its_date(store, compiled, "alice@acme.example", first.activation.id, change)
    assert amended.activated
    assert (amended.activation.kind, amended.activation.parent) == ("amendment", first.activation.id)
    assert amended.activation.term_start == JUNE and amended.activation.activated_on == datetime.date(2025, 9, 1)
    assert amended.activation.debits == {"EPO-AMD-ESS-ADV": 33}
    assert amended.activation.configuration["tier"] == "advanced"


def test_a_renewal_starts_a_new_term_at_the_old_end(store, compiled):
    start = {"product": "epo", "version": "2024", "license": "subscription", "term_months": 12,
             "tier": "advanced", "devices": 50}
    fill(store, "alice@acme.example", ("EPO-ADV-SUB-1Y", 2))
    first = activate_configuration(store, compiled, "alice@acme.example", start, today=JUNE)
    renewal = change_on_its_date(store, compiled, "alice@acme.example", first.activation.id,
                              {"date": "2026-05-15", "term_months": 12}, kind="renewal")
    assert renewal.activated and renewal.activation.kind == "renewal"
    # The 12-month term from 2025-06-01 ends on 2026-06-01: the renewed term starts there.
    assert renewal.activation.term_start == datetime.date(2026, 6, 1)
    assert renewal.activation.debits == {"EPO-ADV-SUB-1Y": 1}
    assert locker.balances(store, "alice@acme.example") == {}


def test_someone_else_cannot_amend_my_activation(store, compiled):
    fill(store, "alice@acme.example", ("EPO-ADV-SUB-1Y", 1))
    first = activate_configuration(store, compiled, "alice@acme.example",
                                   {"product": "epo", "license": "subscription", "term_months": 12,
                                    "tier": "advanced"}, today=JUNE)
    with pytest.raises(CompanionError) as raised:
        change_on_its_date(store, compiled, "bob@acme.example", first.activation.id, {"date": "2025-09-01",
                                                                                   "tier": "expert"})
    assert [problem.code for problem in raised.value.problems] == ["forbidden"]


def test_an_activation_is_changed_once_then_its_latest_change_is_amended(store, compiled):
    """Regression: amending the same activation twice debited the upgrade twice (66 months for one upgrade)."""
    start = {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36,
             "tier": "essential", "devices": 100}
    fill(store, "alice@acme.example", ("EPO-ESS-SUB-3Y", 1), ("EPO-DEV-SUB-3Y", 75), ("EPO-AMD-ESS-ADV", 100),
         ("EPO-AMD-ADV-EXP", 100), ("EPO-ESS-SUB-3Y", 1))
    first = activate_configuration(store, compiled, "alice@acme.example", start, today=JUNE)
    change = {"date": "2025-09-01", "tier": "advanced"}
    amended = change_on_its_date(store, compiled, "alice@acme.example", first.activation.id, change)
    assert amended.activation.debits == {"EPO-AMD-ESS-ADV": 33}
    for kind, again in (("amendment", change), ("renewal", {"date": "2028-05-01", "term_months": 36})):
        with pytest.raises(CompanionError) as refused:
            change_on_its_date(store, compiled, "alice@acme.example", first.activation.id, again, kind=kind)
        [problem] = refused.value.problems
        assert problem.code == "already-changed" and amended.activation.id in problem.message
        assert problem.hint.endswith(f"{amended.activation.id}, the subscription as it stands now")
    assert locker.balances(store, "alice@acme.example")["EPO-AMD-ESS-ADV"] == 100 - 33  # debited once
    # The amendment itself is the subscription as it stands: advanced -> expert from 2026-06-01, 24 months left.
    later = change_on_its_date(store, compiled, "alice@acme.example", amended.activation.id,
                            {"date": "2026-06-01", "tier": "expert"})
    assert later.activated and later.activation.debits == {"EPO-AMD-ADV-EXP": 24}
    with pytest.raises(CompanionError) as refused:
        change_on_its_date(store, compiled, "alice@acme.example", amended.activation.id, {"date": "2026-07-01",
                                                                                       "devices": 200})
    assert later.activation.id in refused.value.problems[0].message  # the latest in the chain is named


def test_racing_amendments_of_one_activation_debit_once(tmp_path, compiled):
    """Eight threads amend the same activation at once: exactly one amendment is recorded and charged."""
    from concurrent.futures import ThreadPoolExecutor

    store = open_store(f"sqlite:///{tmp_path / 'race.sqlite3'}")
    locker.add_user(store, "alice@acme.example", company="Acme", badges=["power-management"], country="US")
    fill(store, "alice@acme.example", ("EPO-ESS-SUB-3Y", 1), ("EPO-DEV-SUB-3Y", 75), ("EPO-AMD-ESS-ADV", 330))
    first = activate_configuration(store, compiled, "alice@acme.example",
                                   {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36,
                                    "tier": "essential", "devices": 100}, today=JUNE)

    def amend_once(_):
        try:
            return change_on_its_date(store, compiled, "alice@acme.example", first.activation.id,
                                   {"date": "2025-09-01", "tier": "advanced"}).activated
        except CompanionError as error:
            return error.problems[0].code

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(amend_once, range(8)))
    assert results.count(True) == 1 and results.count("already-changed") == 7, results
    assert locker.balances(store, "alice@acme.example")["EPO-AMD-ESS-ADV"] == 330 - 33


@pytest.mark.parametrize("day", [datetime.date(9999, 12, 31), datetime.date(1999, 12, 31)])
def test_an_activation_date_outside_the_business_calendar_is_refused(store, compiled, day):
    """Regression: activating on 9999-12-31 worked, then every amendment or renewal of it was a 500."""
    fill(store, "alice@acme.example", ("EPO-ADV-SUB-1Y", 1))
    with pytest.raises(CompanionError) as refused:
        activate_configuration(store, compiled, "alice@acme.example",
                               {"product": "epo", "license": "subscription", "term_months": 12, "tier": "advanced"},
                               today=JUNE, on=day, operator="cli:test")  # even an operator cannot date it so
    assert [problem.code for problem in refused.value.problems] == ["bad-date"]
    assert locker.balances(store, "alice@acme.example") == {"EPO-ADV-SUB-1Y": 1}


def test_a_change_dated_before_the_change_it_follows_is_refused(store, compiled):
    """Regression: amending an amendment of 2026-01-01 as of 2025-07-01 charged Expert from month 2, while
    Essential -> Advanced was paid only from 2026-01."""
    fill(store, "alice@acme.example", ("EPO-ESS-SUB-3Y", 1), ("EPO-DEV-SUB-3Y", 75), ("EPO-AMD-ESS-ADV", 100),
         ("EPO-AMD-ADV-EXP", 100))
    first = activate_configuration(store, compiled, "alice@acme.example",
                                   {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36,
                                    "tier": "essential", "devices": 100}, today=JUNE)
    amended = change_on_its_date(store, compiled, "alice@acme.example", first.activation.id,
                              {"date": "2026-01-01", "tier": "advanced"})
    assert amended.activation.debits == {"EPO-AMD-ESS-ADV": 29}  # 2026-01-01 is anniversary 7: 36 - 7 = 29
    with pytest.raises(CompanionError) as refused:
        change_on_its_date(store, compiled, "alice@acme.example", amended.activation.id,
                        {"date": "2025-07-01", "tier": "expert"})
    [problem] = refused.value.problems
    assert (problem.code, problem.path) == ("before-parent", "change.date")
    assert problem.hint == "date the change on or after 2026-01-01"
    assert locker.balances(store, "alice@acme.example")["EPO-AMD-ADV-EXP"] == 100  # nothing debited
    same_day = change_on_its_date(store, compiled, "alice@acme.example", amended.activation.id,
                               {"date": "2026-01-01", "tier": "expert"})
    assert same_day.activation.debits == {"EPO-AMD-ADV-EXP": 29}


def test_the_command_line_dates_debits_today_and_journals_an_operators_backdating(tmp_path):
    """Finding 2 of the money-safety issue, on the command line: a change block's own date never sets a charge."""
    env = {**os.environ, "COMPANION_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}", "COMPANION_TIME_ZONE": "UTC"}
    companion("users", "add", "dora@acme.example", "--company", "Acme", "--badges", "power-management",
              "--country", "US", env=env)
    for reference, quantity in (("EPO-ESS-SUB-3Y", 1), ("EPO-DEV-SUB-3Y", 75), ("EPO-AMD-ESS-ADV", 40)):
        code = companion("vouchers", "issue", "--reference", reference, "--quantity", str(quantity), env=env)
        companion("locker", "redeem", code.stdout.strip(), "--user", "dora@acme.example", env=env)
    start = tmp_path / "start.yaml"
    start.write_text('configuration: {product: epo, version: "2024", license: subscription, term_months: 36,'
                     ' tier: essential, devices: 100}\n')
    first = companion("activate", str(start), "--user", "dora@acme.example", "--date", "2025-06-01",
                      "--format", "json", env=env)
    assert first.returncode == 0, first.stderr
    parent = json.loads(first.stdout)["activation"]
    assert parent["term_start"] == "2025-06-01"
    future = tmp_path / "future.yaml"
    future.write_text("change: {date: 2028-05-31, tier: advanced}\n")
    refused = companion("activate", str(future), "--user", "dora@acme.example", "--amend", parent["id"], env=env)
    assert refused.returncode == 2 and "future.yaml:1:16: error[date-not-today] at change.date" in refused.stderr
    assert "pass --date" in refused.stderr
    conflict = companion("activate", str(future), "--user", "dora@acme.example", "--amend", parent["id"],
                         "--date", "2025-09-01", env=env)
    assert conflict.returncode == 2 and "date-conflict" in conflict.stderr
    undated = tmp_path / "undated.yaml"
    undated.write_text("change: {tier: advanced}\n")
    backdated = companion("activate", str(undated), "--user", "dora@acme.example", "--amend", parent["id"],
                          "--date", "2025-09-01", env=env)
    assert backdated.returncode == 0 and "debited 33 x EPO-AMD-ESS-ADV" in backdated.stdout
    audit = companion("users", "audit", "dora@acme.example", "--format", "json", env=env)
    entries = [entry for entry in json.loads(audit.stdout) if entry["action"] == "backdated-activation"]
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    assert [(entry["details"]["date"], entry["details"]["kind"], entry["details"]["server_date"])
            for entry in entries] == [("2025-06-01", "activation", today), ("2025-09-01", "amendment", today)]
    assert all(entry["actor"].startswith("cli:") for entry in entries)


LAST_MONTH_CHANGE = "change: {date: 2028-05-15, tier: advanced}\n"  # inside month 36 of 36 from 2025-06-01


def last_month_rules(tmp_path, last_month: str | None) -> Path:
    """The bundled rules with partial_month free and LAST_MONTH as the policy's last_month (None: no such key)."""
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    path = rules / "subscriptions.yaml"
    lines = [line for line in path.read_text().splitlines(keepends=True) if not line.startswith("  last_month:")]
    text = "".join(lines).replace("  partial_month: charge\n", "  partial_month: free\n"
                                  + (f"  last_month: {last_month}\n" if last_month else ""))
    path.write_text(text)
    return rules


def activated_essential(tmp_path, rules: Path) -> tuple[dict, str]:
    """A user with EPO Essential, 100 devices, activated on 2025-06-01 from their locker: (env, Activation ID)."""
    env = {**os.environ, "COMPANION_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}"}
    assert companion("users", "add", "dan@acme.example", "--company", "Acme", "--badges", "power-management",
                     "--country", "US", env=env).returncode == 0
    for reference, quantity in (("EPO-ESS-SUB-3Y", 1), ("EPO-DEV-SUB-3Y", 75)):
        code = companion("vouchers", "issue", "--reference", reference, "--quantity", str(quantity), env=env)
        assert companion("locker", "redeem", code.stdout.strip(), "--user", "dan@acme.example", env=env).returncode == 0
    request = tmp_path / "essential.yaml"
    request.write_text('configuration: {product: epo, version: "2024", license: subscription, term_months: 36, '
                       "tier: essential, devices: 100}\n")
    first = companion("activate", str(request), "--user", "dan@acme.example", "--date", "2025-06-01",
                      "--rules", str(rules), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    return env, first.stdout.split("ACTIVATED: ")[1].split()[0]


def amend_in_the_last_month(tmp_path, rules: Path, env: dict, activation_id: str):
    request = tmp_path / "amend.yaml"
    request.write_text(LAST_MONTH_CHANGE)
    # --date says the same day as the request: how an operator dates a change that is not today's.
    return companion("activate", str(request), "--amend", activation_id, "--user", "dan@acme.example",
                     "--date", "2028-05-15", "--rules", str(rules), env=env)


def test_an_upgrade_in_the_last_month_is_not_a_free_activation_by_default(tmp_path):
    """Regression: with partial_month free, `activate --amend` in the last month issued an ID that debited nothing."""
    rules = last_month_rules(tmp_path, None)
    env, first = activated_essential(tmp_path, rules)
    short = amend_in_the_last_month(tmp_path, rules, env, first)
    assert short.returncode == 1 and "ACTIVATED" not in short.stdout.replace("NOT ACTIVATED", "")
    assert "short: 1 x EPO-AMD-ESS-ADV" in short.stdout  # one month of Essential to Advanced is charged
    code = companion("vouchers", "issue", "--reference", "EPO-AMD-ESS-ADV", "--quantity", "1", env=env)
    assert companion("locker", "redeem", code.stdout.strip(), "--user", "dan@acme.example", env=env).returncode == 0
    done = amend_in_the_last_month(tmp_path, rules, env, first)
    assert done.returncode == 0 and "ACTIVATED: ACT-" in done.stdout and "debited 1 x EPO-AMD-ESS-ADV" in done.stdout


def test_an_upgrade_in_the_last_month_is_refused_when_the_policy_says_refuse(tmp_path):
    rules = last_month_rules(tmp_path, "refuse")
    env, first = activated_essential(tmp_path, rules)
    refused = amend_in_the_last_month(tmp_path, rules, env, first)
    assert refused.returncode == 1 and "NOT ACTIVATED: the rules refuse" in refused.stdout
    assert "error[last-month] policy.last-month" in refused.stdout and "renew" in refused.stdout
    shown = companion("locker", "show", "--user", "dan@acme.example", env=env).stdout
    assert "amendment" not in shown  # no Activation ID was issued


def test_an_upgrade_in_the_last_month_the_policy_makes_free_says_no_voucher_is_debited(tmp_path):
    rules = last_month_rules(tmp_path, "free")
    env, first = activated_essential(tmp_path, rules)
    free = amend_in_the_last_month(tmp_path, rules, env, first)
    assert free.returncode == 0 and "ACTIVATED: ACT-" in free.stdout
    assert "notice: no voucher is debited" in free.stdout and "last_month free" in free.stdout
    assert "debited nothing" in free.stdout
    assert "debited 1" not in free.stdout


def zero_unit_amendment(notices: list[dict]) -> dict:
    """An amendment document whose only line is 0 units, as the rules would answer it."""
    return {"kind": "amendment", "valid": True, "violations": [], "notices": notices,
            "lines": [{"reference": "EPO-AMD-ESS-ADV", "description": "EPO: amendment Essential to Advanced",
                       "quantity": 1, "months": 0, "units": 0, "derivation": "0 months x epo essential->advanced"}]}


def test_an_amendment_that_debits_nothing_is_refused_unless_the_policy_made_it_free(store, compiled):
    fill(store, "alice@acme.example", ("EPO-ESS-SUB-3Y", 1), ("EPO-DEV-SUB-3Y", 75))
    first = activate_configuration(store, compiled, "alice@acme.example",
                                   {"product": "epo", "version": "2024", "license": "subscription", "term_months": 36,
                                    "tier": "essential", "devices": 100}, today=JUNE)
    document = zero_unit_amendment([])
    configuration = {**first.activation.configuration, "tier": "advanced"}
    with pytest.raises(CompanionError) as refused:
        activate_lines(store, compiled, "alice@acme.example", configuration, document, document["lines"],
                       on=datetime.date(2028, 5, 15), kind="amendment", parent=first.activation.id)
    [problem] = refused.value.problems
    assert problem.code == "nothing-to-activate" and "debits nothing" in problem.message
    assert [item["id"] for item in locker.show_locker(store, "alice@acme.example").activations] == [
        first.activation.id]  # no Activation ID was issued
    notice = {"rule": "policy.last-month", "code": "last-month-free", "where": "rules/subscriptions.yaml:21:15",
              "message": "2028-05-15 is inside the last month of the term: last_month free, nothing is charged"}
    free = activate_lines(store, compiled, "alice@acme.example", configuration, zero_unit_amendment([notice]),
                          document["lines"], on=datetime.date(2028, 5, 15), kind="amendment",
                          parent=first.activation.id)
    assert free.activated and free.activation.debits == {}
    assert any(text.startswith("no voucher is debited") for text in free.notices)


def test_one_table_says_what_a_refusal_means_to_the_command_line_and_the_web(tmp_path):
    """Regression: bad-date was 422 (bad input) from the web app but exit 1, "refused", from the command line."""
    for code, meaning in OUTCOME_OF.items():
        assert (exit_status([Problem(code, "x")]), http_status([Problem(code, "x")])) == OUTCOMES[meaning]
    env = {**os.environ, "COMPANION_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}"}
    companion("users", "add", "erin@acme.example", "--company", "Acme", "--badges", "power-management",
              "--country", "US", env=env)
    request = str(ROOT / "examples" / "epo-advanced-valid.yaml")
    refused = companion("activate", request, "--user", "erin@acme.example", "--date", "1999-12-31", env=env)
    assert refused.returncode == 2 and "error[bad-date]" in refused.stderr
    assert http_status([Problem("bad-date", "x")]) == 422
