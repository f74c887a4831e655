"""companion diff: the verdicts a rule edit changes, across two commits of a temporary git repository."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import fixtures
from engine.cli import cli
from tests.test_fixtures_runner import TINY_RULES, request, write


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                            env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                                 "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(repo), "PATH": "/usr/bin:/bin"})
    return result.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with the tiny catalogue and three fixtures committed."""
    root = tmp_path / "repo"
    for name, text in TINY_RULES.items():
        write(root / "rules" / name, text)
    write(root / "fixtures" / "cases.yaml", f"""\
        cases:
          - name: basic with 8 devices
            request: {request(devices=8)}
            expect: {{valid: true}}
          - name: pro with 50 devices
            request: {request(tier="pro", devices=50)}
            expect: {{valid: true}}
          - name: turbo on basic
            request: {request(addons="[{id: turbo}]")}
            expect: {{valid: false}}
        """)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "rules", "fixtures")
    git(root, "commit", "-q", "-m", "rules")
    return root


def diff(repo: Path, *args: str):
    paths = [arg for arg in args if not arg.startswith("-") and Path(arg).is_absolute()] or [str(repo / "fixtures")]
    options = [arg for arg in args if arg not in paths]
    result = CliRunner().invoke(cli, ["diff", "--base", "HEAD", *paths, "--rules", str(repo / "rules"), *options])
    return result.exit_code, result.stdout, result.stderr


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_no_edit_no_change(repo):
    code, out, _ = diff(repo, "--fail-on-change")
    assert code == 0, out
    assert "no rule edits since HEAD" in out
    assert out.splitlines()[-1] == "0 of 3 requests change verdict"


def test_a_comment_is_not_a_rule_edit(repo):
    tiers = repo / "rules" / "tiers.yaml"
    tiers.write_text("# a comment\n" + tiers.read_text(encoding="utf-8"), encoding="utf-8")
    code, out, _ = diff(repo, "--fail-on-change")
    assert code == 0 and "no rule edits" in out


def test_an_edited_limit_changes_the_verdicts_grouped_by_the_edit_that_causes_them(repo):
    edit(repo / "rules" / "tiers.yaml", "devices: {included: 5, max: 10}", "devices: {included: 5, max: 7}")
    git(repo, "commit", "-q", "-am", "basic allows 7 devices")  # the base is now the edited rules ...
    edit(repo / "rules" / "tiers.yaml", "devices: {included: 5, max: 7}", "devices: {included: 5, max: 10}")
    edit(repo / "rules" / "addons.yaml", "tier: pro", "tier: basic")  # ... and the working tree edits two rules
    code, out, _ = diff(repo)
    assert code == 0, out
    lines = out.splitlines()
    assert "  ~ addon.widget.turbo (changed, " in out and "  ~ tier.widget.basic (changed, " in out
    assert "tier.widget.pro" not in out.split("\n\n")[0]  # untouched rules are not edits
    basic = lines.index("tier.widget.basic: 1 verdict(s) change")
    assert lines[basic + 1].endswith("cases.yaml:2: basic with 8 devices")
    assert lines[basic + 2:basic + 6] == ["      invalid -> valid", "      - violation tier.widget.basic over-limit",
                                          "      + bom 1 x W-BAS-1Y (12 months)", "      + bom 3 x W-DEV-1Y (12 months)"]
    turbo = lines.index("addon.widget.turbo: 1 verdict(s) change")  # the basic tier's edit fired, but is no cause
    assert lines[turbo + 1].endswith("cases.yaml:8: turbo on basic")
    assert "      - violation addon.widget.turbo requires-tier" in lines[turbo + 2:turbo + 7]
    assert lines[-1] == "2 of 3 requests change verdict"
    assert diff(repo, "--fail-on-change")[0] == 1


def test_added_and_removed_rules_and_json(repo):
    edit(repo / "rules" / "addons.yaml", "  - id: turbo\n", "  - id: turbo-max\n")
    code, out, _ = diff(repo, "--format", "json")
    assert code == 0
    document = json.loads(out)
    edits = {edit["rule"]: edit for edit in document["edits"]}
    assert edits["addon.widget.turbo-max"]["change"] == "added"
    assert edits["addon.widget.turbo"]["change"] == "removed"
    assert edits["addon.widget.turbo"]["where"].startswith("HEAD:")
    (change,) = document["changes"]  # the turbo request now names an unknown add-on
    assert change["name"] == "turbo on basic" and change["causes"] == ["addon.widget.turbo"]
    assert change["after"]["errors"][0]["code"] == "unknown-ref"


def test_an_unknown_revision_is_bad_input(repo):
    result = CliRunner().invoke(cli, ["diff", "--base", "no-such-rev", str(repo / "fixtures"),
                                      "--rules", str(repo / "rules")])
    assert result.exit_code == 2
    assert "error[git]" in result.stderr and "unknown revision 'no-such-rev'" in result.stderr


def test_rules_outside_the_revision_are_bad_input(repo):
    for name, text in TINY_RULES.items():
        write(repo / "new-rules" / name, text)
    result = CliRunner().invoke(cli, ["diff", "--base", "HEAD", str(repo / "fixtures"),
                                      "--rules", str(repo / "new-rules")])
    assert result.exit_code == 2
    assert "new-rules does not exist at HEAD" in result.stderr


@pytest.mark.parametrize("target", ["/etc/hostname", "../shared/tiers.yaml"])
def test_a_link_committed_in_the_rules_is_bad_input_not_invented_edits(repo, target):
    """Regression: an absolute link was error[internal]; a relative one out of rules/ read as a missing file,
    and diff reported every rule of it as added."""
    (repo / "shared").mkdir()
    (repo / "shared" / "tiers.yaml").write_text((repo / "rules" / "tiers.yaml").read_text())
    git(repo, "rm", "-q", "rules/tiers.yaml")
    (repo / "rules" / "tiers.yaml").symlink_to(target)
    git(repo, "add", "rules", "shared")
    git(repo, "commit", "-q", "-m", "link")
    code, out, err = diff(repo)
    assert code == 2 and out == ""
    assert "error[git]: the rules at HEAD hold a link, rules/tiers.yaml" in err


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A git repository holding a copy of the sample rules and of every shipped fixture, committed."""
    root = tmp_path / "sample"
    shutil.copytree(ROOT / "rules", root / "rules")
    shutil.copytree(ROOT / "tests" / "fixtures", root / "fixtures")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "rules", "fixtures")
    git(root, "commit", "-q", "-m", "sample")
    return root


def test_every_shipped_fixture_kind_runs_through_diff(sample):
    """Regression: cover cases' lines have no months, and diff ended in error[internal] (KeyError)."""
    kinds = {case.kind for path in fixtures.find_fixture_files([sample / "fixtures"])
             for case in fixtures.load_fixture_file(path, sample / "rules")}
    assert kinds == set(fixtures.EVALUATORS)
    code, out, err = diff(sample, "--fail-on-change")
    assert code == 0, err
    assert out.startswith("no rule edits since HEAD") and out.splitlines()[-1].endswith("requests change verdict")
    assert out.splitlines()[-1].startswith("0 of ")


def test_a_cover_case_shows_its_changed_voucher_lines(sample):
    edit(sample / "rules" / "tiers.yaml", "devices: {included: 50, max: 500}\n        references:\n"
         "          subscription-12: EPO-ADV", "devices: {included: 40, max: 500}\n        references:\n"
         "          subscription-12: EPO-ADV")
    code, out, err = diff(sample, str(sample / "fixtures" / "vouchers"))
    assert code == 0, err
    assert "EPO 36-month devices are covered by packs of 25 first" in out
    assert "      - bom 10 x EPO-DEV-SUB-3Y" in out and "      + bom 20 x EPO-DEV-SUB-3Y" in out


def groups(out: str) -> dict[str, list[str]]:
    """The changed verdicts of a text report: group title -> the names of its cases."""
    found: dict[str, list[str]] = {}
    title = None
    for line in out.splitlines():
        if line.endswith(" verdict(s) change"):
            title = line.rsplit(": ", 1)[0]
            found[title] = []
        elif title and line.startswith("  ") and not line.startswith("      "):
            found[title].append(line.split(": ", 1)[1])
        elif not line:
            title = None
    return found


def edit_lines(out: str) -> list[str]:
    """The rule edits a text report lists."""
    return out.split("\n\n")[0].splitlines()[1:]


PARTIAL_MONTH = ("  partial_month: charge", "  partial_month: free")


def test_editing_one_policy_setting_is_one_edit_blamed_for_its_verdicts(sample):
    """Regression: every `policy.*` rule was listed as changed, and blamed for the verdicts partial_month changed."""
    edit(sample / "rules" / "subscriptions.yaml", *PARTIAL_MONTH)
    code, out, err = diff(sample)
    assert code == 0, err
    (line,) = edit_lines(out)
    assert line.startswith("  ~ policy.partial-month (changed, ") and line.endswith("subscriptions.yaml:30:18)")
    assert groups(out) == {"policy.partial-month": ["15 more PME devices in the first month",
                                                    "EPO Advanced to Expert mid-month, the started month is charged"]}


def test_two_edits_at_once_each_verdict_is_blamed_on_its_own_edit(sample):
    edit(sample / "rules" / "subscriptions.yaml", *PARTIAL_MONTH)
    edit(sample / "rules" / "tiers.yaml", "devices: {included: 50, max: 500}\n        references:\n"
         "          subscription-12: PME-ADV", "devices: {included: 50, max: 100}\n        references:\n"
         "          subscription-12: PME-ADV")
    code, out, err = diff(sample, "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    assert sorted(edit["rule"] for edit in document["edits"]) == ["policy.partial-month", "tier.pme.advanced"]
    blamed = {change["name"]: change["causes"] for change in document["changes"]}
    assert blamed == {"15 more PME devices in the first month": ["policy.partial-month"],
                      "EPO Advanced to Expert mid-month, the started month is charged": ["policy.partial-month"],
                      "PME perpetual devices in packs of 50": ["tier.pme.advanced"]}
    assert not any(change["together"] for change in document["changes"])


def test_a_renamed_upgrade_reference_is_an_edit_of_the_upgrade_path(sample):
    """Regression: the amendment reference of a tier change was blamed on amendment.pme.devices."""
    edit(sample / "rules" / "subscriptions.yaml", "reference: PME-AMD-ESS-ADV}", "reference: PME-AMD-ESS-ADV2}")
    code, out, err = diff(sample)
    assert code == 0, err
    (line,) = edit_lines(out)
    assert line.startswith("  ~ upgrade.pme.essential.advanced (changed, ") and "subscriptions.yaml:60:" in line
    assert groups(out) == {"upgrade.pme.essential.advanced": ["PME Essential to Advanced, started on a leap day"]}
    assert "      + bom 1 x PME-AMD-ESS-ADV2 (11 months)" in out


def test_a_verdict_no_edit_changes_alone_is_blamed_on_the_edits_together(repo):
    # Renaming a tier is five edits; removing the old tier does not load alone (its upgrade path still names it).
    for name in ("tiers.yaml", "addons.yaml"):
        text = (repo / "rules" / name).read_text(encoding="utf-8")
        (repo / "rules" / name).write_text(text.replace("id: pro", "id: premium").replace("to: pro", "to: premium")
                                           .replace("tier: pro", "tier: premium"), encoding="utf-8")
    code, out, err = diff(repo, "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    blamed = {change["name"]: (change["causes"], change["together"]) for change in document["changes"]}
    renamed = sorted(edit["rule"] for edit in document["edits"])
    assert blamed["pro with 50 devices"] == (renamed, True)
    text = diff(repo)[1]
    assert ", ".join(renamed) + " (together: no one of these edits alone changes them): " in text
