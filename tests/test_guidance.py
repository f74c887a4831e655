"""Licence-update guidance: every product and version has steps, chosen by event and mode; bad input refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.catalogue.load import load_catalog, rules_of
from engine.cli import cli
from engine.services.guidance import update_guide
from engine.problem import CompanionError

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(RULES)


# Every product and version of rules/tiers.yaml, and the guide written for it in rules/guidance.yaml.
GUIDES = [
    ("epo", "2024", "guidance.epo.2024"),
    ("epo", "2022", "guidance.epo.2022"),
    ("epo", "2021", "guidance.epo.2021"),
    ("pme", "2021", "guidance.pme.default"),
    ("pme", "2022", "guidance.pme.default"),
    ("pme", "2023", "guidance.pme.default"),
    ("pme", "2024", "guidance.pme.default"),
    ("ebo", "6.0", "guidance.ebo.default"),
    ("ebo", "7.0", "guidance.ebo.default"),
    ("ebo", "7.1", "guidance.ebo.default"),
    ("ebo", "7.2", "guidance.ebo.default"),
]


def test_the_table_lists_every_product_version(catalog):
    assert sorted((product, version) for product, version, _ in GUIDES) == \
        sorted((product.id, version) for product in catalog.products.values() for version in product.versions)


@pytest.mark.parametrize("product, version, rule", GUIDES)
@pytest.mark.parametrize("event, procedure", [("activation", "activate"), ("amendment", "update"),
                                              ("renewal", "update")])
@pytest.mark.parametrize("mode", ["online", "offline"])
def test_every_version_has_steps_for_every_event_and_mode(catalog, product, version, rule, event, procedure, mode):
    guide = update_guide(catalog, product, version, mode, event, activation_id="ACT-7QX2-9KLM")
    assert (guide["rule"], guide["procedure"], guide["version"], guide["mode"]) == (rule, procedure, version, mode)
    assert guide["steps"] and all("{" not in step and "}" not in step for step in guide["steps"])
    assert guide["sample"] is True
    assert version in guide["title"] and catalog.products[product].name in guide["title"]
    text = " ".join(guide["steps"])
    assert "ACT-7QX2-9KLM" in text
    if procedure == "update" and mode == "online":
        assert "Refresh" in text and "return" not in text.lower()
    if procedure == "update" and mode == "offline":
        assert "return" in text.lower() and "activate again" in text.lower()


def test_online_refreshes_offline_returns_and_activates_again(catalog):
    online = update_guide(catalog, "epo", "2024", "online", "renewal")
    offline = update_guide(catalog, "epo", "2024", "offline", "renewal")
    assert online["summary"] == "refresh the licence"
    assert offline["summary"] == "return the licence and activate it again"
    assert online["title"] == ("EcoStruxure Power Operation 2024, after the renewal: refresh the licence "
                               "in License Configuration Tool")


@pytest.mark.parametrize("version", ["2024", "2022", "2021"])
def test_epo_guides_name_the_license_configuration_tool_on_the_power_operation_server(catalog, version):
    for mode in ("online", "offline"):
        for event in ("activation", "amendment"):
            guide = update_guide(catalog, "epo", version, mode, event)
            assert guide["tool"] == "License Configuration Tool"
            assert "Floating License Manager" not in " ".join(guide["steps"]) + guide["title"]
    steps = update_guide(catalog, "epo", version, "online", "activation")["steps"]
    assert any("License Configuration Tool" in step for step in steps)
    if version != "2021":  # the 2021 guide stops the runtime first, then opens the tool
        assert steps[0].startswith("On the PC where the Power Operation Server is installed, open License "
                                   "Configuration Tool")


def test_without_a_version_the_latest_is_assumed(catalog):
    guide = update_guide(catalog, "pme", None, "online")
    assert (guide["version"], guide["version_assumed"], guide["event"]) == ("2024", True, "amendment")


def test_without_an_activation_id_the_steps_say_where_to_find_it(catalog):
    steps = update_guide(catalog, "ebo", "7.2", "offline", "amendment")["steps"]
    assert any("Activation ID shown in Companion" in step for step in steps)


@pytest.mark.parametrize("product, version, mode, event, code, path, hint", [
    ("epx", "2024", "online", "amendment", "unknown-ref", "product", "did you mean 'epo'?"),
    ("epo", "2023", "online", "amendment", "unknown-version", "version", "did you mean '2024'?"),
    ("ebo", "9", "online", "amendment", "unknown-version", "version", "versions: 6.0, 7.0, 7.1, 7.2"),
    ("epo", "2024", "onlin", "amendment", "unknown-mode", "mode", "did you mean 'online'?"),
    ("epo", "2024", "online", "renewl", "unknown-event", "event", "did you mean 'renewal'?"),
])
def test_unknown_input_is_refused_with_a_suggestion(catalog, product, version, mode, event, code, path, hint):
    with pytest.raises(CompanionError) as error:
        update_guide(catalog, product, version, mode, event)
    [problem] = error.value.problems
    assert (problem.code, problem.path, problem.hint) == (code, path, hint)


# --- checks -------------------------------------------------------------------------------------------------

STEPS = """\
    steps:
      activate: {online: [a], offline: [b]}
      update: {online: [c], offline: [d]}
"""


def guidance_rules(tmp_path: Path, guides: str) -> Path:
    directory = tmp_path / "rules"
    shutil.copytree(RULES, directory, ignore=shutil.ignore_patterns("schemas"))
    text = "events: {activation: activate, amendment: update, renewal: update}\nguides:\n" + guides
    (directory / "guidance.yaml").write_text(text, encoding="utf-8")
    return directory


def test_checks_locate_every_problem_of_guidance_yaml(tmp_path):
    guides = (
        "  - {id: default, product: pme, tool: T, steps: {activate: {online: [a], offline: [b]}, "
        "update: {online: [c], offline: [d]}}}\n"                                                      # line 3
        "  - id: new\n    product: epo\n    versions: [\"2024\", \"2023\"]\n    tool: T\n" + STEPS +   # lines 4-10
        "  - id: old\n    product: epo\n    versions: [\"2024\"]\n    tool: T\n"                      # lines 11-14
        "    steps:\n      activate: {online: [\"Open {tol}\"], offline: [b]}\n"                      # lines 15-16
        "      update: {online: [c], offline: [d]}\n"                                                 # line 17
        "  - id: default\n    product: ebox\n    tool: T\n" + STEPS)                                    # lines 18-
    directory = guidance_rules(tmp_path, guides)
    with pytest.raises(CompanionError) as error:
        load_catalog(directory)
    tiers = (directory / "tiers.yaml").read_text(encoding="utf-8").splitlines()
    ebo = 1 + tiers.index('    versions: ["6.0", "7.0", "7.1", "7.2"]      # oldest first; compared part by part as numbers')
    epo = 1 + tiers.index('    versions: ["2021", "2022", "2024"]')
    found = [(problem.where.file.rsplit("/", 1)[-1], problem.where.line, problem.where.column, problem.code,
              problem.rule) for problem in error.value.problems]
    assert found == [
        ("guidance.yaml", 6, 24, "unknown-version", "guidance.epo.new"),
        ("guidance.yaml", 13, 16, "duplicate-version", "guidance.epo.old"),
        ("guidance.yaml", 16, 27, "unknown-placeholder", "guidance.epo.old"),
        ("guidance.yaml", 19, 14, "unknown-ref", "guidance.ebox.default"),
        # no guide covers EBO at all, nor EPO 2021 and 2022: located at those versions in tiers.yaml
        ("tiers.yaml", ebo, 16, "no-guidance", "product.ebo"),
        ("tiers.yaml", ebo, 23, "no-guidance", "product.ebo"),
        ("tiers.yaml", ebo, 30, "no-guidance", "product.ebo"),
        ("tiers.yaml", ebo, 37, "no-guidance", "product.ebo"),
        ("tiers.yaml", epo, 16, "no-guidance", "product.epo"),
        ("tiers.yaml", epo, 24, "no-guidance", "product.epo"),
    ]
    hints = {problem.code: problem.hint for problem in error.value.problems}
    assert hints["unknown-version"] == "did you mean '2024'?"
    assert hints["unknown-placeholder"] == "did you mean 'tool'?"
    assert hints["unknown-ref"] == "did you mean 'ebo'?"


def test_guide_rule_ids_are_listed(catalog):
    assert {rule for rule in rules_of(catalog) if rule.startswith("guidance.")} == {
        "guidance.epo.2024", "guidance.epo.2022", "guidance.epo.2021", "guidance.pme.default", "guidance.ebo.default"}


# --- command line -------------------------------------------------------------------------------------------

def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_update_guide_prints_numbered_steps():
    result = run("update-guide", "--product", "epo", "--version", "2022", "--mode", "offline", "--event", "renewal")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("EcoStruxure Power Operation 2022, after the renewal: return the licence")
    assert lines[1].startswith("  1. ") and "rule guidance.epo.2022" in lines[-1] and "SAMPLE" in lines[-1]


def test_update_guide_json_is_the_web_panel_document():
    result = run("update-guide", "--product", "pme", "--mode", "online", "--format", "json")
    data = json.loads(result.stdout)
    assert (data["rule"], data["version"], data["version_assumed"]) == ("guidance.pme.default", "2024", True)


def test_update_guide_refuses_an_unknown_version_with_exit_2():
    result = run("update-guide", "--product", "epo", "--version", "2023", "--mode", "online")
    assert result.exit_code == 2 and "error[unknown-version]" in result.stderr and "did you mean '2024'?" in result.stderr


# --- regression: a step's placeholder with a conversion or a format crashed or blew up every guide ---------

REFRESH_STEP = "- Select the licence of Activation ID {activation_id} and choose Refresh."


@pytest.mark.parametrize("step", ['"Select {version:d} x"', '"{version!z}"', '"{version:{tool}}"',
                                  '"{version:>300000000}"', '"{activation_id!r}"'])
def test_check_refuses_a_placeholder_with_a_conversion_or_format_at_the_step(tmp_path, step):
    directory = tmp_path / "rules"
    shutil.copytree(RULES, directory, ignore=shutil.ignore_patterns("schemas"))
    path = directory / "guidance.yaml"
    text = path.read_text(encoding="utf-8")
    line = 1 + text[:text.index(REFRESH_STEP)].count("\n")
    path.write_text(text.replace(REFRESH_STEP, "- " + step, 1), encoding="utf-8")
    checked = run("check", "--rules", str(directory))
    guide = run("update-guide", "--product", "epo", "--mode", "online", "--rules", str(directory))
    assert checked.exit_code == 1 and f"guidance.yaml:{line}:13: error[bad-placeholder] guidance.epo.2024" in \
        checked.stderr
    assert "a placeholder is a plain {name}" in checked.stderr
    assert guide.exit_code == 1 and "error[bad-placeholder]" in guide.stderr and not guide.stdout


# --- regression: control characters in --activation-id and the other options reached the terminal raw -----

def test_update_guide_escapes_control_characters_of_the_activation_id():
    result = run("update-guide", "--product", "epo", "--mode", "online", "--activation-id", "ACT-1\x1b]0;owned\x07\r")
    assert result.exit_code == 0
    assert "Select the licence of Activation ID 'ACT-1\\x1b]0;owned\\x07\\r' and choose Refresh." in result.stdout
    assert not {"\x1b", "\x07", "\r"} & set(result.stdout)


def test_update_guide_json_escapes_every_control_character_and_keeps_the_value():
    result = run("update-guide", "--product", "epo", "--mode", "online", "--activation-id", "ACT-1\x1b\u009b2J",
                 "--format", "json")
    assert result.exit_code == 0 and not {"\x1b", "\u009b"} & set(result.stdout)
    assert any("Activation ID ACT-1\x1b\u009b2J and" in step for step in json.loads(result.stdout)["steps"])


def test_update_guide_refuses_an_activation_id_that_is_not_utf8_text():
    result = run("update-guide", "--product", "epo", "--mode", "online", "--activation-id", "ACT-\udcff",
                 "--format", "json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["problems"][0]["where"] == "--activation-id"


def test_update_guide_escapes_control_characters_of_unknown_input():
    result = run("update-guide", "--product", "epo\x1b]0;owned\x07", "--mode", "online\r", "--event", "x\x07")
    assert result.exit_code == 2 and not {"\x1b", "\x07", "\r"} & set(result.stderr)
    assert "unknown product 'epo\\x1b]0;owned\\x07'" in result.stderr and "unknown mode 'online\\r'" in result.stderr
