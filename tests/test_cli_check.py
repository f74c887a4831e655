"""`companion check` as people run it: the real console script, its exit codes and output, never a traceback.

Each start of the console script costs a process and its imports, so the scenarios below are prepared first
and run side by side; each test then reads its own run. The last tests run the same click
command in-process.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.catalogue.load import load_catalog
from engine.cli import cli
from engine.problem import CompanionError

RULES = Path(__file__).resolve().parent.parent / "rules"
SCRIPT = Path(sys.executable).with_name("companion")
# The console script installed next to this Python, else the same entry point through the interpreter.
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-c", "from engine.cli import main; main()"]
CORE = ("badges.yaml", "tiers.yaml", "addons.yaml")


def edit(path: Path, old: str, new: str) -> int:
    """Replace the first old with new in path and return the 1-based line it is on."""
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


def break_upgrade_path(rules: Path) -> int:
    """Misspell `advanced` in pme's first upgrade path; return its line (`advnced` starts at column 31)."""
    return edit(rules / "tiers.yaml", "      - {from: essential, to: advanced}\n      - {from: advanced, to: expert}",
                "      - {from: essential, to: advnced}\n      - {from: advanced, to: expert}")


def only_core(rules: Path) -> int:
    """Keep badges, tiers and add-ons only, then break the upgrade path."""
    for path in rules.glob("*.yaml"):
        if path.name not in CORE:
            path.unlink()
    return break_upgrade_path(rules)


def duplicate_name(rules: Path) -> int:
    """Give the power-management badge a second `name:`; return that second key's line."""
    return edit(rules / "badges.yaml", "    name: Power Management\n",
                "    name: Power Management\n    name: Power management\n") + 1


# scenario -> (how to break a copy of the shipped rules, or None to use them as shipped; arguments)
SCENARIOS = {
    "clean": (None, ["check"]),
    "clean-json": (None, ["check", "--format", "json"]),
    "typo": (only_core, ["check", "--rules", "{rules}"]),
    "typo-shipped": (break_upgrade_path, ["check", "--rules", "{rules}"]),
    "duplicate-key": (duplicate_name, ["check", "--rules", "{rules}"]),
    "json": (lambda rules: edit(rules / "addons.yaml", "tier: advanced", "tier: advnced"),
             ["check", "--rules", "{rules}", "--format", "json"]),
    "no-directory": (None, ["check", "--rules", "{rules}/nowhere"]),
}


def companion(*args: str) -> subprocess.CompletedProcess:
    """Run `companion ARGS` and return the finished process."""
    return subprocess.run(COMMAND + list(args), capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Prepare every scenario, run them side by side; scenario -> (rules dir, setup's result, process)."""
    prepared = {}
    for name, (breaks, args) in SCENARIOS.items():
        rules = tmp_path_factory.mktemp(name) / "rules"
        shutil.copytree(RULES, rules, ignore=shutil.ignore_patterns("schemas"))
        found = breaks(rules) if breaks else None
        prepared[name] = (rules, found, [arg.format(rules=rules) for arg in args])
    with ThreadPoolExecutor(max_workers=len(prepared)) as pool:
        futures = {name: pool.submit(companion, *args) for name, (_, _, args) in prepared.items()}
    return {name: (rules, found, futures[name].result()) for name, (rules, found, _) in prepared.items()}


def error_lines(output: str) -> list[str]:
    """Return the lines that report a problem."""
    return [line for line in output.splitlines() if re.search(r": (error|warning)\[[\w-]+\]", line)]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_no_traceback(runs, name):
    _, _, result = runs[name]
    assert "Traceback" not in result.stdout + result.stderr
    assert "error[internal]" not in result.stderr


def test_shipped_rules_are_clean(runs):
    _, _, result = runs["clean"]
    assert result.returncode == 0
    assert error_lines(result.stdout + result.stderr) == []
    assert "rules OK" in result.stderr


def test_json_format_when_clean(runs):
    _, _, result = runs["clean-json"]
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"problems": []}


def test_upgrade_typo_is_one_located_error_with_a_did_you_mean(runs):
    rules, line, result = runs["typo"]
    assert result.returncode == 1
    [only] = error_lines(result.stdout + result.stderr)
    assert only.startswith(f"{rules / 'tiers.yaml'}:{line}:31: error[unknown-ref] upgrade.pme.essential.advnced: ")
    assert "did you mean 'advanced'?" in only


def test_upgrade_typo_in_the_shipped_rules_is_one_error(runs):
    """Regression: subscriptions.yaml's checks echoed the typo as two more errors."""
    _, _, result = runs["typo-shipped"]
    assert result.returncode == 1
    assert len(error_lines(result.stdout + result.stderr)) == 1


def test_duplicate_key_is_reported_at_the_second_key(runs):
    rules, line, result = runs["duplicate-key"]
    assert result.returncode == 1
    [only] = error_lines(result.stderr)
    assert only.startswith(f"{rules / 'badges.yaml'}:{line}:5: error[duplicate-key]")


def test_json_format_parses(runs):
    _, _, result = runs["json"]
    assert result.returncode == 1
    problems = json.loads(result.stdout)["problems"]
    # insulation-monitoring needs the misspelt tier; backup-power-testing needs insulation-monitoring
    assert [(problem["code"], problem["rule"]) for problem in problems] == [
        ("impossible-prerequisite", "addon.epo.insulation-monitoring"),
        ("impossible-prerequisite", "addon.epo.backup-power-testing")]
    assert all(problem["line"] >= 1 and problem["column"] >= 1 for problem in problems)


def test_missing_directory_is_a_usage_error(runs):
    _, _, result = runs["no-directory"]
    assert result.returncode == 2
    assert "error[no-rules]" in result.stderr


def check_in_process(*args: str):
    """Run `companion check ARGS` in this process and return click's result."""
    result = CliRunner().invoke(cli, ["check", *args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


@pytest.fixture
def rules(tmp_path) -> Path:
    """Return a copy of the shipped rules to break."""
    directory = tmp_path / "rules"
    shutil.copytree(RULES, directory, ignore=shutil.ignore_patterns("schemas"))
    return directory


def test_unknown_format_is_a_usage_error():
    assert check_in_process("--format", "xml").exit_code == 2


def test_a_warning_alone_passes(rules):
    (rules / "tiers-old.yaml").write_text("products: []\n", encoding="utf-8")
    result = check_in_process("--rules", str(rules))
    assert result.exit_code == 0
    [only] = error_lines(result.output)
    assert "warning[unknown-file]" in only and "did you mean 'tiers.yaml'?" in only


def test_a_rule_file_that_is_a_directory_is_reported_not_a_crash(rules):
    (rules / "addons.yaml").unlink()
    (rules / "addons.yaml").mkdir()
    result = check_in_process("--rules", str(rules))
    assert result.exit_code == 1
    [only] = error_lines(result.output)
    assert "addons.yaml: error[file]: cannot read file" in only


def test_problems_are_sorted_by_location(rules):
    edit(rules / "tiers.yaml", "to: expert}", "to: exprt}")
    edit(rules / "badges.yaml", "- product: epo", "- product: ep0")
    edit(rules / "addons.yaml", "tier: expert", "tier: exprt")
    keys = []
    for line in error_lines(check_in_process("--rules", str(rules)).output):
        path, row, column = re.match(r"^(.+?):(\d+):(\d+):", line).groups()
        keys.append((path, int(row), int(column)))
    assert len(keys) >= 3 and keys == sorted(keys)


def test_check_loads_no_database_code():
    """`companion check` imports only what reading rules needs: SQLAlchemy and the locker cost it 0.5 s."""
    probe = ("import sys\nfrom engine.cli import main\nsys.argv = ['companion', 'check']\ntry:\n    main()\n"
             "except SystemExit as done:\n    assert done.code in (0, None), done.code\n"
             "print(sorted(name for name in sys.modules if name.split('.')[0] == 'sqlalchemy' "
             "or name in ('engine.locker', 'engine.locker.db', 'engine.activation')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "rules OK" in result.stderr and result.stdout.strip() == "[]"


def test_every_verb_is_listed_and_runs_its_help():
    """Verbs of other modules are registered when asked for; help lists them all and each one answers."""
    runner = CliRunner()
    listed = runner.invoke(cli, ["--help"])
    assert listed.exit_code == 0
    verbs = ["activate", "amend", "bom", "check", "checkout", "diff", "license", "locker", "options", "renew",
             "serve", "test", "update-guide", "users", "validate", "vouchers"]
    for verb in verbs:
        assert re.search(rf"^  {re.escape(verb)}\s", listed.output, re.M), verb
        assert runner.invoke(cli, [verb, "--help"]).exit_code == 0, verb
    users = runner.invoke(cli, ["users", "--help"]).output
    for sub in ("add", "audit", "list", "set", "set-password", "set-role"):
        assert re.search(rf"^  {sub}\s", users, re.M), sub


def test_a_rules_directory_no_file_system_can_hold_is_no_such_directory():
    """Regression: a name too long for the file system raised OSError out of the loader (error[internal])."""
    result = CliRunner().invoke(cli, ["check", "--rules", "x" * 5000])
    assert result.exit_code == 2 and "error[no-rules]: no such rules directory" in result.stderr
    with pytest.raises(CompanionError) as error:
        load_catalog("a\x00b")  # a NUL byte cannot come from a shell, but can from a fixture or a config file
    assert [problem.code for problem in error.value.problems] == ["no-rules"]


# Mistakes product managers make in conditions, each (written text, its line in constraints.yaml, its code).
CONDITION_MISTAKES = """\
constraints:
  - id: france-only
    product: epo
    when: {partner.contry: FR}
    require: {configuration.tier: {at_least: advnced}}
    message: France asks for Advanced
  - id: expert-ebo
    product: ebo
    require: {configuration.tier: {at_least: expert}}
    message: no such tier
  - id: lower-case
    product: pme
    require: {partner.country: fr}
    message: France
  - id: any-devices
    product: pme
    require: {configuration.devices: {at_least: 0}}
    message: never refuses
  - id: any-devices-again
    product: pme
    require: {configuration.devices: {at_least: 0}}
    message: the same
"""


def test_every_condition_mistake_is_reported_in_one_run(rules):
    (rules / "constraints.yaml").write_text(CONDITION_MISTAKES, encoding="utf-8")
    line = edit(rules / "addons.yaml", "    product: pme\n", "    product: pme\n    when: {change.kind: renewl}\n") + 1
    result = check_in_process("--rules", str(rules))
    assert result.exit_code == 1, result.output
    shown = [re.sub(r"^.*/", "", entry) for entry in error_lines(result.output)]
    assert shown == [
        f"addons.yaml:{line}:25: error[unknown-value] addon.pme.energy-analysis: 'renewl' is not a value of "
        "change.kind; did you mean 'renewal'?",
        "constraints.yaml:4:12: error[unknown-fact] constraint.france-only: no fact is called 'partner.contry'; "
        "did you mean 'partner.country'?",
        "constraints.yaml:5:46: error[unknown-value] constraint.france-only: 'advnced' is not a tier of epo; "
        "did you mean 'advanced'?",
        "constraints.yaml:9:46: error[unknown-value] constraint.expert-ebo: 'expert' is not a tier of ebo "
        "(it is a tier of pme, epo); tiers of ebo: essential, advanced, advanced-plus",
        "constraints.yaml:13:32: error[bad-value] constraint.lower-case: 'fr' is not a country code; "
        "write FR: country codes are in capitals",
        "constraints.yaml:17:49: warning[condition-always-holds] constraint.any-devices: 'configuration.devices "
        "is at least 0' always holds for pme; the constraint never refuses anything",
        "constraints.yaml:19:9: warning[duplicate-rule] constraint.any-devices-again: constraint any-devices-again "
        "has the same conditions as any-devices (line 15); remove one of them, or merge their messages",
        "constraints.yaml:21:49: warning[condition-always-holds] constraint.any-devices-again: "
        "'configuration.devices is at least 0' always holds for pme; the constraint never refuses anything",
    ]
