"""The condition language as a user meets it: each operator and each rule kind that takes a condition, held and
not held, through `companion validate` / `check` / `test` / `amend`, and the JSON API of a real `companion serve`.

The rules are written below (the kit catalogue); every line:col asserted was counted by hand against them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from engine import locker
from engine.catalogue.schema import BUNDLED_RULES
from engine.locker import accounts
from engine.locker.db import open_store

sys.path.insert(0, str(Path(__file__).resolve().parent / "web"))
from live_support import serving  # noqa: E402  (the helpers of the live-server tests)
from web_support import PASSWORD  # noqa: E402

COMPANION = Path(sys.executable).with_name("companion")
BADGES = """\
badges:
  - id: seller
    name: Seller
    unlocks:
      - product: kit
        when: {partner.country: [FR, DE, US]}
  - id: reseller
    name: Reseller
    unlocks:
      - product: kit
"""
TIERS = """\
products:
  - id: kit
    name: Kit
    versions: ["1.0", "2.0", "3.0"]
    requires: {min_version: "2.0"}
    licenses:
      subscription:
        terms: [12]
      perpetual:
        when: {partner.purchasing_account: present}
    tiers:
      - id: basic
        name: Basic
        devices: {included: 100, max: 100}
        references: {subscription-12: KIT-B-12, perpetual: KIT-B-P}
      - id: pro
        name: Pro
        when: {configuration.license: subscription}
        requires: {min_version: "3.0"}
        devices: {included: 100, max: 100}
        references: {subscription-12: KIT-P-12, perpetual: KIT-P-P}
    upgrades:
      - {from: basic, to: pro}
"""
ADDONS = """\
addons:
  - id: cloud
    product: kit
    name: Cloud
    when: {date: {before: 2026-01-01}}
    requires: {min_version: "3.0"}
    references: {subscription-12: KIT-C-12, perpetual: KIT-C-P}
"""
# Each operator: a constraint that applies to the partner company named after it (lines 16 + 5k .. 20 + 5k).
OPERATORS = [
    ("op-is", "{configuration.tier: {is: basic}}"),
    ("op-is-not", "{configuration.tier: {is_not: pro}}"),
    ("op-one-of", "{partner.country: [FR, DE]}"),
    ("op-none-of", "{partner.country: {none_of: [US]}}"),
    ("op-at-least", "{configuration.devices: {at_least: 5}}"),
    ("op-at-most", "{configuration.version: {at_most: \"2.0\"}}"),
    ("op-before", "{date: {before: 2025-07-01}}"),
    ("op-after", "{date: {after: 2025-05-31}}"),
    ("op-present", "{partner.purchasing_account: present}"),
    ("op-absent", "{partner.purchasing_account: absent}"),
    ("op-all", "{all: [{configuration.tier: basic}, {configuration.devices: {at_most: 50}}]}"),
    ("op-any", "{any: [{configuration.tier: pro}, {addons: cloud}]}"),
    ("op-not", "{not: {partner.badges: reseller}}"),
]
CONSTRAINTS = """\
availability:
  - id: kit-perpetual-europe
    product: kit
    offer: perpetual
    countries: [FR, DE]
    from: 2025-01-01
    until: 2027-12-31
constraints:
  - id: big-needs-account
    product: kit
    when: {configuration.devices: {at_least: 50}}
    require: {partner.purchasing_account: present}
    code: needs-account
    message: configurations of 50 devices or more need a purchasing account
    hint: ask your vendor for a purchasing account
""" + "".join(f"""\
  - id: {name}
    product: kit
    when: {{partner.company: {name}}}
    require: {require}
    message: {name} refused
""" for name, require in OPERATORS) + """\
notices:
  - id: small-kit
    product: kit
    when: {configuration.devices: {at_most: 5}}
    message: a small kit
"""
SMALL_KIT_LINE = 84  # the notice's `when`: 15 lines, 13 operators of 5 lines, then `notices:`, its id, its product


def require_line(name: str) -> int:
    """The line of an operator constraint's `require` (counted: 15 lines before the first, 5 lines each)."""
    return 19 + 5 * [op for op, _ in OPERATORS].index(name)


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Path:
    """The kit catalogue in a temporary rules directory."""
    rules = tmp_path_factory.mktemp("kit") / "rules"
    rules.mkdir()
    for name, text in (("badges.yaml", BADGES), ("tiers.yaml", TIERS), ("addons.yaml", ADDONS),
                       ("constraints.yaml", CONSTRAINTS)):
        (rules / name).write_text(text)
    return rules


def kit_request(company="none", country="FR", account="PA-1", badges=("seller",), date="2025-06-01", **changes):
    """A kit request, valid as it is (no operator constraint applies to company "none"); None leaves a fact out."""
    partner = {"badges": list(badges), "company": company}
    if country:
        partner["country"] = country
    if account:
        partner["purchasing_account"] = account
    configuration = {"product": "kit", "version": "3.0", "license": "subscription", "term_months": 12,
                     "tier": "basic", "devices": 10, "addons": []}
    configuration.update(changes)
    request = {"partner": partner, "configuration": configuration}
    if date:
        request["date"] = date
    return request


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(COMPANION), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)


def validate(kit: Path, tmp: Path, requests: dict[str, dict]) -> tuple[int, dict[str, dict]]:
    """Run `companion validate --format json` once on every request; return the exit code and verdicts by name."""
    files = []
    for name, request in requests.items():
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(request))
        files.append(path)
    done = run("validate", "--rules", kit, "--format", "json", *files)
    verdicts = json.loads(done.stdout)
    return done.returncode, {Path(item["request"]).stem: item for item in verdicts}


def refusals(verdict: dict) -> set[tuple[str, str]]:
    return {(item["rule"], item["code"]) for item in verdict["violations"]}


def test_the_kit_rules_check_clean_and_a_bad_condition_is_located(kit, tmp_path):
    done = run("check", "--rules", kit)
    assert done.returncode == 0, done.stderr
    for name, when, expected in (
            # line 5 is `    when: {date: {bfore: 2026-01-01}}`: the key `bfore` at column 19
            ("operator", "{date: {bfore: 2026-01-01}}",
             "addons.yaml:5:19: error[unknown-operator]"),
            # `    when: {date: {before: 2026-01-01}, partner.contry: FR}`: the key partner.contry at column 40
            ("fact", "{date: {before: 2026-01-01}, partner.contry: FR}",
             "addons.yaml:5:40: error[unknown-fact] addon.kit.cloud: no fact is called 'partner.contry'; "
             "did you mean 'partner.country'?"),
            # `..., configuration.devices: {at_least: many}}`: `many` at column 74
            ("type", "{date: {before: 2026-01-01}, configuration.devices: {at_least: many}}",
             "addons.yaml:5:74: error[type-mismatch] addon.kit.cloud: configuration.devices is a number, not 'many'"),
            # `    when: {configuration.license: {at_least: subscription}}`: `subscription` at column 46
            ("order", "{configuration.license: {at_least: subscription}}",
             "addons.yaml:5:46: error[type-mismatch] addon.kit.cloud: configuration.license is a choice: it has no "
             "order for at_least")):
        broken = tmp_path / name
        shutil.copytree(kit, broken)
        (broken / "addons.yaml").write_text(ADDONS.replace("{date: {before: 2026-01-01}}", when))
        done = run("check", "--rules", broken)
        assert done.returncode == 1, name
        assert f"{broken}/{expected}" in done.stdout + done.stderr, (name, done.stdout + done.stderr)
        if name == "operator":
            assert "'bfore' is not a comparison; did you mean 'before'?" in done.stdout + done.stderr


# Each operator: (company, changes that meet it, changes that do not, the condition's text, what it saw).
CASES = [
    ("op-is", {}, {"tier": "pro"}, "configuration.tier is basic", "pro"),
    ("op-is-not", {}, {"tier": "pro"}, "configuration.tier is not pro", "pro"),
    ("op-one-of", {}, {"country": "US"}, "partner.country is one of [FR, DE]", "US"),
    ("op-none-of", {}, {"country": "US"}, "partner.country is none of [US]", "US"),
    ("op-at-least", {}, {"devices": 3}, "configuration.devices is at least 5", 3),
    ("op-at-most", {"version": "2.0"}, {}, "configuration.version is at most 2.0", "3.0"),
    ("op-before", {}, {"date": "2025-08-01"}, "date is before 2025-07-01", "2025-08-01"),
    ("op-after", {}, {"date": "2025-05-01"}, "date is after 2025-05-31", "2025-05-01"),
    ("op-present", {}, {"account": None}, "partner.purchasing_account is present", None),
    ("op-absent", {"account": None}, {}, "partner.purchasing_account is absent", "PA-1"),
    ("op-all", {}, {"devices": 60}, "configuration.devices is at most 50", 60),
    ("op-any", {"tier": "pro"}, {}, "configuration.tier is pro", "basic"),
    ("op-not", {}, {"badges": ("seller", "reseller")}, "partner.badges include reseller", ["reseller", "seller"]),
]
PARTNER_KEYS = ("country", "account", "badges", "date")


def case_request(company: str, changes: dict) -> dict:
    partner = {key: value for key, value in changes.items() if key in PARTNER_KEYS}
    configuration = {key: value for key, value in changes.items() if key not in PARTNER_KEYS}
    return kit_request(company, **partner, **configuration)


def test_each_operator_held_and_not_held_through_validate(kit, tmp_path):
    requests = {"base": kit_request()}
    for company, meets, fails, _, _ in CASES:
        requests[f"{company}-meets"] = case_request(company, meets)
        requests[f"{company}-fails"] = case_request(company, fails)
    code, verdicts = validate(kit, tmp_path, requests)
    assert code == 1  # some are refused
    assert verdicts["base"]["valid"], verdicts["base"]
    for company, _, _, condition, saw in CASES:
        met = verdicts[f"{company}-meets"]
        assert met["valid"] and met["violations"] == [], (company, met)
        failed = verdicts[f"{company}-fails"]
        [mine] = [item for item in failed["violations"] if item["rule"] == f"constraint.{company}"]
        assert (mine["code"], mine["message"]) == ("constraint", f"{company} refused"), company
        assert mine["where"].endswith(f"constraints.yaml:{require_line(company) - 3}:9"), (company, mine["where"])
        [seen] = [item for item in mine["conditions"] if item["condition"] == condition]
        # under a `not`, the comparison that refuses is one that holds
        held = company == "op-not"
        assert (seen["held"], seen["saw"], seen["required"]) == (held, saw, True), (company, mine["conditions"])
        if company == "op-not":
            assert "unless not (partner.badges include reseller)" in mine["condition"], mine["condition"]
        assert f"constraints.yaml:{require_line(company)}:" in seen["where"], (company, seen["where"])
        assert refusals(failed) - {(f"constraint.{company}", "constraint")} <= {
            ("constraint.big-needs-account", "needs-account")}, (company, failed["violations"])


def test_explain_lists_each_condition_held_failed_or_unknown_with_its_place(kit, tmp_path):
    requests = {"tier": case_request("op-is", {"tier": "pro"}),
                "unknown": case_request("op-one-of", {"country": None, "badges": ("reseller",)})}
    files = []
    for name, request in requests.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(request))
        files.append(tmp_path / f"{name}.yaml")
    done = run("validate", "--rules", kit, "--explain", *files)
    assert done.returncode == 1
    out = done.stdout
    # line 19: `    require: {configuration.tier: {is: basic}}`: `basic` at column 40; line 18 `    when: {partner.company: op-is}`: `op-is` at 29
    assert "error[constraint] constraint.op-is: op-is refused" in out
    # the constraint has no hint: no empty "fix:" line follows its message
    after = out.split("error[constraint] constraint.op-is: op-is refused\n", 1)[1]
    assert after.startswith("      rule written at "), after[:80]
    assert "fix: \n" not in out
    assert f"required configuration.tier is basic: fails (saw pro) at {kit}/constraints.yaml:19:40" in out
    assert f"partner.company is op-is: holds (saw op-is) at {kit}/constraints.yaml:18:29" in out
    # line 29: `    require: {partner.country: [FR, DE]}` -> the list at column 32; the partner gave no country
    assert "error[constraint] constraint.op-one-of: op-one-of refused" in out
    assert f"required partner.country is one of [FR, DE]: unknown (saw unknown (not given)) at " \
           f"{kit}/constraints.yaml:29:32" in out


def test_each_rule_kind_that_takes_a_condition(kit, tmp_path):
    requests = {
        # availability: perpetual is sold in FR and DE from 2025-01-01 until 2027-12-31
        "perpetual-fr": kit_request(license="perpetual", term_months=None),
        "perpetual-gb": kit_request(country="GB", badges=("reseller",), license="perpetual", term_months=None),
        "perpetual-no-country": kit_request(country=None, badges=("reseller",), license="perpetual", term_months=None),
        "perpetual-2028": kit_request(date="2028-01-01", license="perpetual", term_months=None),
        # the licence model's `when`: perpetual only with a purchasing account
        "perpetual-no-account": kit_request(account=None, license="perpetual", term_months=None),
        # the product's min_version
        "version-1": kit_request(version="1.0"),
        # tier pro from 3.0, when sold as a subscription
        "pro-2-subscription": kit_request(tier="pro", version="2.0"),
        "pro-2-perpetual": kit_request(tier="pro", version="2.0", license="perpetual", term_months=None),
        # add-on cloud from 3.0, when dated before 2026
        "cloud-2-2025": kit_request(version="2.0", addons=[{"id": "cloud"}]),
        "cloud-2-2026": kit_request(version="2.0", addons=[{"id": "cloud"}], date="2026-06-01"),
        # a badge's unlock `when`: seller unlocks kit in FR, DE and US only
        "seller-gb": kit_request(country="GB"),
        "seller-no-country": kit_request(country=None),
        # a constraint with its own code, message and hint; a notice that does not refuse
        "big-no-account": kit_request(account=None, devices=60),
        "small": kit_request(devices=3),
    }
    for request in requests.values():
        request["configuration"] = {key: value for key, value in request["configuration"].items() if value is not None}
    code, verdicts = validate(kit, tmp_path, requests)
    assert code == 1
    assert verdicts["perpetual-fr"]["valid"], verdicts["perpetual-fr"]
    for name, seen in (("perpetual-gb", "GB"), ("perpetual-no-country", "no country"), ("perpetual-2028", None)):
        [refusal] = verdicts[name]["violations"]
        assert (refusal["rule"], refusal["code"]) == ("availability.kit-perpetual-europe", "not-available"), name
        assert "FR, DE" in refusal["message"] and "2025-01-01" in refusal["message"] \
            and "2027-12-31" in refusal["message"], refusal["message"]
        held = {item["condition"]: item["held"] for item in refusal["conditions"]}
        if name == "perpetual-no-country":
            assert held["partner.country is one of [FR, DE]"] == "unknown"
        if name == "perpetual-2028":
            assert held["date is at most 2027-12-31"] is False
    assert refusals(verdicts["perpetual-no-account"]) == {("license.kit", "not-available")}
    assert refusals(verdicts["version-1"]) == {("product.kit", "version-too-low")}
    assert refusals(verdicts["pro-2-subscription"]) == {("tier.kit.pro", "requires-version")}
    assert verdicts["pro-2-perpetual"]["valid"], verdicts["pro-2-perpetual"]
    [cloud] = verdicts["cloud-2-2025"]["violations"]
    assert (cloud["rule"], cloud["code"]) == ("addon.kit.cloud", "requires-version") and "3.0" in cloud["message"]
    assert verdicts["cloud-2-2026"]["valid"], verdicts["cloud-2-2026"]  # the request's date changes the outcome
    assert refusals(verdicts["seller-gb"]) == {("product.kit", "not-entitled")}
    assert refusals(verdicts["seller-no-country"]) == {("product.kit", "not-entitled")}
    [account] = verdicts["big-no-account"]["violations"]
    assert (account["rule"], account["code"], account["message"], account["hint"]) == (
        "constraint.big-needs-account", "needs-account",
        "configurations of 50 devices or more need a purchasing account", "ask your vendor for a purchasing account")
    small = verdicts["small"]
    assert small["valid"] and small["bom"], small
    [notice] = [item for item in small["notices"] if item["rule"] == "notice.small-kit"]
    assert notice["message"] == "a small kit"
    assert notice["where"].endswith(f"constraints.yaml:{SMALL_KIT_LINE - 2}:9")  # the notice's id, line 82


FIXTURES = """\
cases:
  - name: one of, met
    request:
      partner: {badges: [seller], country: FR, company: op-one-of}
      configuration: {product: kit, version: "3.0", license: subscription, term_months: 12, tier: basic}
      date: 2025-06-01
    expect: {valid: true}
  - name: one of, not met
    request:
      partner: {badges: [seller], country: US, company: op-one-of}
      configuration: {product: kit, version: "3.0", license: subscription, term_months: 12, tier: basic}
      date: 2025-06-01
    expect:
      valid: false
      violations:
        - {rule: constraint.op-one-of, code: constraint, message: op-one-of refused}
  - name: perpetual without a country is not available
    request:
      partner: {badges: [reseller], purchasing_account: PA-1}
      configuration: {product: kit, version: "3.0", license: perpetual, tier: basic}
      date: 2025-06-01
    expect:
      valid: false
      violations:
        - {rule: availability.kit-perpetual-europe, code: not-available}
  - name: a small kit is noticed, not refused
    request:
      partner: {badges: [seller], country: FR}
      configuration: {product: kit, version: "3.0", license: subscription, term_months: 12, tier: basic, devices: 3}
      date: 2025-06-01
    expect:
      valid: true
      notices:
        - {rule: notice.small-kit, message: a small kit}
"""


def test_fixtures_of_conditions_pass_and_a_wrong_expectation_is_shown_at_its_case(kit, tmp_path):
    cases = tmp_path / "fixtures"
    cases.mkdir()
    (cases / "conditions.yaml").write_text(FIXTURES)
    done = run("test", "--rules", kit, cases)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed, 0 failed" in done.stdout + done.stderr
    # the second case expects the wrong refusal code: it fails at its line (8: `  - name: one of, not met`)
    (cases / "conditions.yaml").write_text(FIXTURES.replace("code: constraint, message", "code: unmet, message"))
    done = run("test", "--rules", kit, cases)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "3 passed, 1 failed" in out
    assert f"{cases}/conditions.yaml:8" in out and "one of, not met" in out, out
    assert "unmet" in out and "constraint" in out


def test_an_upgrade_path_when_decides_the_amendment(tmp_path):
    """`companion amend` asks the engine's change rules whether a declared path is open for this partner."""
    rules = tmp_path / "rules"
    shutil.copytree(BUNDLED_RULES, rules)
    tiers = (rules / "tiers.yaml").read_text().split("\n")
    assert tiers[79] == "      - {from: essential, to: advanced}"  # PME's first path, line 80
    tiers[79] = "      - {from: essential, to: advanced, when: {partner.country: [FR, DE]}}"  # the list at 80:65
    (rules / "tiers.yaml").write_text("\n".join(tiers))
    files = []
    for country in ("FR", "US", None):
        partner = {"badges": ["power-management"], **({"country": country} if country else {})}
        request = {"partner": partner, "subscription": {"product": "pme", "version": "2024", "license": "subscription",
                                                        "term_months": 12, "start": "2025-03-15", "tier": "essential",
                                                        "devices": 25},
                   "change": {"date": "2025-07-01", "tier": "advanced"}}
        files.append(tmp_path / f"{country or 'nowhere'}.yaml")
        files[-1].write_text(yaml.safe_dump(request))
    done = run("amend", "--rules", rules, "--format", "json", *files)
    assert done.returncode == 1
    answers = {Path(item["request"]).stem: item for item in json.loads(done.stdout)}
    assert answers["FR"]["valid"] and answers["FR"]["violations"] == [], answers["FR"]
    for name, held, saw in (("US", False, "US"), ("nowhere", "unknown", None)):
        [refusal] = answers[name]["violations"]
        # a declared path whose condition does not hold: its own rule refuses the move
        assert (refusal["rule"], refusal["code"]) == ("upgrade.pme.essential.advanced", "not-an-upgrade-path"), name
        assert "open only when partner.country is one of [FR, DE]" in refusal["message"], refusal["message"]
        [country] = [item for item in refusal["conditions"] if item["fact"] == "partner.country"]
        assert (country["held"], country["saw"]) == (held, saw), (name, country)
        assert country["where"].endswith("tiers.yaml:80:65"), country["where"]


KIT_USERS = {  # email -> (badges, country, company, purchasing account): the partner of every API request
    "fr@kit.example": (["seller"], "FR", "op-one-of", "PA-1"),
    "us@kit.example": (["seller"], "US", "op-one-of", None),
    "gb@kit.example": (["reseller"], "GB", "none", "PA-2"),
}


@pytest.fixture(scope="module")
def kit_server(kit, tmp_path_factory):
    """`companion serve` on 127.0.0.1 with the kit rules and a temporary database holding the kit partners."""
    root = tmp_path_factory.mktemp("kit-serve")
    url = f"sqlite:///{root / 'kit.sqlite3'}"
    with open_store(url) as store:
        for email, (badges, country, company, account) in KIT_USERS.items():
            locker.add_user(store, email, company=company, badges=badges, country=country, purchasing_account=account)
            accounts.set_password(store, email, PASSWORD)
    with serving(root, url, kit, workers=1) as base:
        yield base


def api(base: str, path: str, body: dict, email: str | None = None) -> tuple[int, dict]:
    """POST JSON to the live server (with EMAIL's bearer token); return the status and the JSON answer."""
    headers = {"Content-Type": "application/json"}
    if email:
        _, token = api(base, "/api/v1/tokens", {"email": email, "password": PASSWORD})
        headers["Authorization"] = f"Bearer {token['token']}"
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def kit_configuration(**changes) -> dict:
    configuration = {"product": "kit", "version": "3.0", "license": "subscription", "term_months": 12, "tier": "basic",
                     "devices": 10, "addons": []}
    configuration.update(changes)
    return {key: value for key, value in configuration.items() if value is not None}


def test_the_api_decides_conditions_on_the_signed_in_partner(kit_server):
    """The partner of an API request is the stored user: country, company and account decide the conditions."""
    status, verdict = api(kit_server, "/api/v1/validate?explain=true", {"configuration": kit_configuration()},
                          "fr@kit.example")
    assert (status, verdict["valid"], verdict["violations"]) == (200, True, [])
    status, verdict = api(kit_server, "/api/v1/validate", {"configuration": kit_configuration()}, "us@kit.example")
    assert status == 200 and not verdict["valid"]
    [refusal] = verdict["violations"]
    assert (refusal["rule"], refusal["code"], refusal["message"]) == ("constraint.op-one-of", "constraint",
                                                                     "op-one-of refused")
    [country] = [item for item in refusal["conditions"] if item["fact"] == "partner.country"]
    assert (country["held"], country["saw"]) == (False, "US") and country["where"].endswith("constraints.yaml:29:32")
    # availability: perpetual is sold in FR and DE only (the server's date is inside the window until 2027-12-31)
    perpetual = kit_configuration(license="perpetual", term_months=None)
    status, verdict = api(kit_server, "/api/v1/validate", {"configuration": perpetual}, "gb@kit.example")
    [refusal] = verdict["violations"]
    assert (refusal["rule"], refusal["code"]) == ("availability.kit-perpetual-europe", "not-available")
    assert "FR, DE" in refusal["message"], refusal["message"]
    status, verdict = api(kit_server, "/api/v1/validate", {"configuration": perpetual}, "fr@kit.example")
    assert verdict["valid"], verdict
    # a constraint with its own code, message and hint; a notice that does not refuse
    status, verdict = api(kit_server, "/api/v1/validate", {"configuration": kit_configuration(devices=60)},
                          "us@kit.example")
    assert {(item["rule"], item["code"], item["hint"]) for item in verdict["violations"]} >= {
        ("constraint.big-needs-account", "needs-account", "ask your vendor for a purchasing account")}
    status, verdict = api(kit_server, "/api/v1/validate", {"configuration": kit_configuration(devices=3)},
                          "fr@kit.example")
    assert verdict["valid"] and [item["message"] for item in verdict["notices"]
                                 if item["rule"] == "notice.small-kit"] == ["a small kit"]
    # A quote for another day: the request's date decides the availability window (from 2025-01-01)
    status, verdict = api(kit_server, "/api/v1/validate", {"configuration": perpetual, "date": "2024-12-31"},
                          "fr@kit.example")
    [refusal] = verdict["violations"]
    assert (status, refusal["rule"], refusal["code"]) == (200, "availability.kit-perpetual-europe", "not-available")
    assert "the date 2024-12-31" in refusal["message"], refusal["message"]
    status, verdict = api(kit_server, "/api/v1/validate", {"configuration": perpetual, "date": "2025-06-01"},
                          "fr@kit.example")
    assert (status, verdict["valid"]) == (200, True), verdict
    status, answer = api(kit_server, "/api/v1/validate", {"configuration": perpetual, "date": "2025-02-30"},
                         "fr@kit.example")
    assert (status, answer["error"]["path"]) == (422, "date"), answer
