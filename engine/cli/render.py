"""What the command line prints: problems as text or JSON, and each verb's results as text for people."""

from __future__ import annotations

import json
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn
from xml.etree import ElementTree

import click

from engine.catalogue.source import display_path
from engine.inference.request import dump_json
from engine.problem import Problem, exit_status

# --- problems ------------------------------------------------------------------------------------------


def print_problems(problems: list[Problem], output_format: str, stream=None) -> None:
    """Print problems as text lines or as a JSON document (on standard output unless STREAM)."""
    stream = stream or sys.stdout
    if output_format == "json":
        click.echo(json.dumps({"problems": [problem.to_json() for problem in problems]}, indent=2), file=stream)
    else:
        for problem in problems:
            click.echo(problem.render(), file=stream)


def exit_with(problems: list[Problem], output_format: str, status: int) -> NoReturn:
    """Print problems, JSON on standard output or text on standard error, and exit with STATUS."""
    print_problems(problems, output_format, sys.stdout if output_format == "json" else sys.stderr)
    sys.exit(status)


def render_problem(problem: Problem) -> str:
    """Return `error[code]: message; hint`, with the location first when there is one."""
    text = problem.render()
    return text[2:] if text.startswith(": ") else text


def report(problems: list[Problem], output_format: str) -> int:
    """Print problems to standard error (JSON to standard output) and return their exit code (the locker's verbs)."""
    if output_format == "json":
        print_problems(problems, "json")
    else:
        for problem in problems:
            click.echo(render_problem(problem), err=True)
    return exit_status(problems)


def emit(data, output_format: str, text: str) -> None:
    """Print DATA as JSON, or TEXT."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False) if output_format == "json" else text)


def print_sorted_problems(problems: list[Problem]) -> None:
    """Print located problems on stderr, sorted, each once."""
    seen: set[str] = set()
    for problem in sorted(problems, key=Problem.sort_key):
        text = problem.render()
        if text not in seen:
            seen.add(text)
            click.echo(text, err=True)


# --- validate, options, activate, amend and renew ------------------------------------------------------


def render_verdict(name: str, verdict, explain_rules: bool = False) -> str:
    """Render a verdict for people: the outcome, each refusal with its reason and fix, the BOM."""
    lines = [f"{name}: {'VALID' if verdict.valid else 'INVALID'} (rules version {verdict.rules_version})"]
    for item in verdict.violations:
        lines.append(f"  error[{item['code']}] {item['rule']}: {item['message']}")
        if item["hint"]:  # a constraint of constraints.yaml may come with no hint
            lines.append(f"      fix: {item['hint']}")
        lines.append(f"      rule written at {item['where']}")
        if explain_rules:
            lines.append(f"      why: {item['condition']}")
            lines.extend(render_conditions(item["conditions"], "        "))
    for item in verdict.notices:
        lines.append(f"  notice[{item['code']}] {item['rule']}: {item['message']} ({item['where']})")
    if verdict.bom:
        lines.append("  bill of materials:")
        for line in verdict.bom:
            lines.append(f"    {line['quantity']:>5} x {line['reference']:<18} {line['description']}")
    if explain_rules:
        lines.append("  rules that fired, in order:")
        for number, item in enumerate(verdict.trace, 1):
            seen = ", ".join(f"{key}={value}" for key, value in item["saw"].items())
            lines.append(f"    {number:>2}. {item['rule']} [{item['kind']}] at {item['where']}")
            lines.append(f"        matched: {item['condition']}")
            lines.append(f"        saw: {seen}")
            lines.extend(render_conditions(item["conditions"], "          "))
            for line in item.get("yields", []):
                lines.append(f"        yields: {line['quantity']} x {line['reference']} ({line['rule']})")
    return "\n".join(lines)


def shown_value(value) -> str:
    """Show a fact's value: a list as its items, a missing fact as unknown."""
    if value is None:
        return "unknown (not given)"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value) or "none"
    return str(value)


def render_conditions(items: list[dict], indent: str) -> list[str]:
    """Render each condition of a rule: whether it held, the value seen, where it is written."""
    held = {True: "holds", False: "fails", "unknown": "unknown"}
    return [f"{indent}{'required ' if item['required'] else ''}{item['condition']}: {held[item['held']]} "
            f"(saw {shown_value(item['saw'])}) at {item['where']}" for item in items]


def render_options(result: dict) -> str:
    """Render guided-configuration options: each choice, its possible values, and why not the others."""
    lines = []
    for name in ("product", "license", "term_months", "tier", "addons"):
        if name not in result:
            continue
        block = result[name]
        chosen = block["chosen"]
        if name == "addons":
            chosen = ", ".join(f"{item['id']} x{item['quantity']}" for item in chosen) or "none"
        lines.append(f"{name}: {chosen if chosen not in (None, '') else '(open)'}")
        for entry in block["options"]:
            mark = "+" if entry["allowed"] else "-"
            lines.append(f"  {mark} {entry['value']}")
            for reason in entry.get("reasons", []):
                lines.append(f"      why not: [{reason['code']}] {reason['message']}")
    if "devices" in result:
        devices = result["devices"]
        lines.append(f"devices: {devices['chosen']} (included {devices['included']}, at most {devices['max']})")
    lines.append("a valid configuration is still possible" if result["possible"]
                 else "no valid configuration is possible from these choices")
    return "\n".join(lines)


def render_outcome(outcome) -> str:
    """Render an activation outcome (engine.activation.ActivationOutcome) for people."""
    lines = [f"notice: {notice}" for notice in outcome.notices]
    if outcome.activation:
        activation = outcome.activation
        lines.append(f"ACTIVATED: {activation.id} ({activation.kind}, term starts {activation.term_start})")
        for reference, count in activation.debits.items():
            lines.append(f"  debited {count} x {reference}")
        if not activation.debits:
            lines.append("  debited nothing")
    elif outcome.shortfall:
        lines.append("NOT ACTIVATED: the locker does not cover this configuration; nothing was debited")
        for line in outcome.shortfall.coverage.lines:
            if line.short:
                bought = " + ".join(f"{item.quantity} x {item.voucher_reference}" for item in line.purchase)
                lines.append(f"  short: {bought} for {line.reference} ({line.uncovered} of {line.units} units missing)")
                lines.append(f"      what to do: {line.advice}")
    else:
        lines.append("NOT ACTIVATED: the rules refuse this configuration; nothing was debited")
        for item in outcome.verdict["violations"]:
            lines.append(f"  error[{item['code']}] {item['rule']}: {item['message']}")
            lines.append(f"      fix: {item['hint']}")
    return "\n".join(lines)


def render_change(name: str, result, amendment: bool, explain_rules: bool = False) -> str:
    """Render an amendment (AMENDMENT) or a renewal for people: the outcome, each refusal, the lines, the end state."""
    kind = "AMENDMENT" if amendment else "RENEWAL"
    lines = [f"{name}: {kind} {'VALID' if result.valid else 'REFUSED'} (rules version {result.rules_version})"]
    term = result.term
    if amendment and "months" in term:
        lines.append(f"  term: {term['term_months']} months, {term['start']} .. {term['last_day']} (ends {term['end']})")
        charged = "charged" if result.valid else "would be charged"
        lines.append(f"  amended on {term['date']}: month {term['month']} of {term['term_months']}, "
                     f"{term['months']} month{'' if term['months'] == 1 else 's'} {charged}")
    elif not amendment and term:
        lines.append(f"  current term: {term['term_months']} months, {term['start']} .. ends {term['end']}")
        lines.append(f"  new term: {term['new_term_months']} months, {term['new_start']} .. {term['new_last_day']} "
                     f"(ends {term['new_end']})")
    for item in result.violations:
        at = f" at {item['path']} ({item['at']})" if item.get("at") else ""
        lines.append(f"  error[{item['code']}] {item['rule']}{at}: {item['message']}")
        lines.append(f"      fix: {item['hint']}")
        lines.append(f"      rule written at {item['where']}")
    for item in result.notices:
        lines.append(f"  notice[{item['code']}] {item['rule']}: {item['message']} ({item['where']})")
    if amendment and result.lines:
        lines.append("  amendment lines:")
        for line in result.lines:
            lines.append(f"    {line['quantity']:>5} x {line['reference']:<18} {line['months']:>3} months "
                         f"= {line['units']:>6} units  {line['derivation']}")
    if not amendment and result.bom:
        lines.append("  bill of materials:")
        for line in result.bom:
            lines.append(f"    {line['quantity']:>5} x {line['reference']:<18} {line['description']}")
    if result.valid:
        state = result.subscription
        addons = ", ".join(f"{addon['quantity']} x {addon['id']}" for addon in state["addons"]) or "none"
        when = "unchanged end" if amendment else "new end"
        lines.append(f"  subscription {'after the amendment' if kind == 'AMENDMENT' else 'renewed'}: "
                     f"{state['product']} {state['tier']}, {state['devices']} devices, add-ons: {addons}; "
                     f"{when} {state.get('end')}")
    if explain_rules:
        lines.append("  month derivation:" if amendment else "  term derivation:")
        for number, step in enumerate(result.steps, 1):
            lines.append(f"    {number}. {step}")
        if not result.steps:
            lines.append("    (none: the date is outside the term)")
        lines.append("  rules that fired, in order:")
        for number, item in enumerate(result.fired, 1):
            lines.append(f"    {number:>2}. {item['rule']} at {item['where']}")
            lines.append(f"        {item['what']}")
    return "\n".join(lines)


# --- locker --------------------------------------------------------------------------------------------


def user_text(user) -> str:
    """Render a user (engine.locker.User) on one line."""
    account = f"; purchasing account {user.purchasing_account}" if user.purchasing_account else ""
    badges = ",".join(user.badges) or "no badges"
    return f"{user.email}  {user.company}  {user.country}  {badges}{account}"


def balances_text(balances: dict[str, int]) -> str:
    """Render a locker's balances, one reference a line."""
    if not balances:
        return "  (no vouchers)"
    width = max(len(reference) for reference in balances)
    return "\n".join(f"  {reference:<{width}}  {quantity}" for reference, quantity in balances.items())


# --- checkout and update guides ------------------------------------------------------------------------


def shown(text: str) -> str:
    """Return text as typed when printable, else escaped like repr: control characters must not reach a terminal."""
    return text if text.isprintable() else repr(text)


def json_text(data) -> str:
    """Serialise for output like dump_json, escaping DEL and C1 controls too (JSON escapes only those below 0x20)."""
    return re.sub("[\x7f-\x9f]", lambda found: f"\\u{ord(found.group()):04x}", dump_json(data))


def order_text(order, cart_url: str | None) -> str:
    """Format an order for the partner to review: who, what, the key, where it would go, the JSON document."""
    lines = [f"Order for purchasing account {shown(order.account)}" +
             (f", project {shown(order.project)}" if order.project else ""), "Bill of materials:"]
    for line in order.lines:
        lines.append(f"  {line['quantity']:>6} x {line['reference']:<20} {line['description']}")
    lines.append(f"Order key: {order.idempotency_key}")
    lines.append(f"Would be sent to: {cart_url or '(no cart URL configured)'}")
    lines.append(json_text(order.payload))
    return "\n".join(lines)


# --- fixtures ------------------------------------------------------------------------------------------


@contextmanager
def progress_bar(total: int):
    """Yield a per-file advance callback: a rich progress bar on a terminal, else None."""
    if not sys.stderr.isatty() or total < 2:
        yield None
        return
    # Imported only to draw on a terminal: every verb imports this module, and rich would cost each 35 ms
    # (python -X importtime), an eighth of a `companion check` (0.28 s); CI runs never show the bar.
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("fixtures"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as shown:
        task = shown.add_task("fixtures", total=total)
        yield lambda result: shown.advance(task)


def text_report(results, updated, coverages) -> str:
    """Render failures (file:line, expected versus got), updates, and coverage for people."""
    lines: list[str] = []
    updated_ids = {id(result) for result in updated}
    for result in results:
        if result.passed:
            continue
        verb = "UPDATED" if id(result) in updated_ids else "FAILED"
        lines.append(f"{result.where}: {verb} {result.name}")
        lines.extend(difference_lines(result.differences))
        lines.append("")
    if updated:
        files = len({result.file for result in updated})
        lines.append(f"updated the expectations of {len(updated)} case(s) in {files} file(s)")
    for item in coverages:
        lines.extend(coverage_lines(item))
    return "\n".join(lines) + ("\n" if lines else "")


def difference_lines(differences) -> list[str]:
    """Render differences grouped by key: `- expected` and `+ got` lines."""
    lines: list[str] = []
    last = None
    for difference in differences:
        if difference.key != last:
            lines.append(f"    {difference.key}:")
            last = difference.key
        if difference.expected is not None:
            lines.append(f"      - expected: {difference.expected}" + ("" if difference.got is not None
                                                                          else "   (missing)"))
        if difference.got is not None:
            lines.append(f"      + got:      {difference.got}" + ("" if difference.expected is not None
                                                                     else "   (unexpected)"))
    return lines


def coverage_lines(item) -> list[str]:
    """Render one catalogue's rule coverage."""
    shown = display_path(Path(item.rules_dir))
    lines = [f"rule coverage of {shown}: {item.exercised} of {len(item.rules)} rules exercised "
             f"({item.percent:.1f}%)"]
    width = max((len(rule) for rule in item.rules), default=0)
    for rule in sorted(item.rules):
        count = item.counts.get(rule, 0)
        lines.append(f"  {rule:<{width}}  {count:>5} case{'s' if count != 1 else ''}")
    if item.untouched:
        lines.append("rules no case exercises:")
        lines.extend(f"  {where}: {rule}" for rule, where in item.untouched)
    return lines + condition_lines(item)


def condition_lines(item) -> list[str]:
    """Render one catalogue's condition coverage: per rule, then each condition not seen both ways."""
    shown = display_path(Path(item.rules_dir))
    conditions = item.conditions
    lines = [f"condition coverage of {shown}: {conditions.covered} of {len(conditions.counted)} conditions seen "
             f"both true and false ({conditions.percent:.1f}%)"]
    by_rule = conditions.by_rule
    width = max((len(rule) for rule in by_rule), default=0)
    for rule, (both, total) in by_rule.items():
        lines.append((f"  {rule:<{width}}  {both:>3} of {total:<3}" + ("" if both == total else "  gaps")).rstrip())
    if conditions.gaps:
        lines.append("conditions not seen both ways:")
        lines.extend(_condition_rows([(condition, f"(seen {state})" if state != "never" else "(never seen)")
                                      for condition, state in conditions.gaps]))
    if conditions.fixed:
        lines.append("not counted, the same for every valid request:")
        lines.extend(_condition_rows([(condition, f"(always {condition.fixed})") for condition in conditions.fixed]))
    return lines


def _condition_rows(rows) -> list[str]:
    """Render `file:line:col  rule  condition  (state)` rows, the columns aligned."""
    where = max(len(str(condition.where)) for condition, _ in rows)
    rule = max(len(condition.rule) for condition, _ in rows)
    text = max(len(condition.text) for condition, _ in rows)
    return [f"  {str(condition.where):<{where}}  {condition.rule:<{rule}}  {condition.text:<{text}}  {state}"
            for condition, state in rows]


def rules_versions(results) -> dict[str, str]:
    """Return the rules version of each rules directory the cases ran against, by directory as shown."""
    return {display_path(Path(result.rules)): result.rules_version for result in results}


def rules_version_lines(results) -> list[str]:
    """Render `rules version V (DIR)`, one line per rules directory the cases ran against."""
    return [f"rules version {version} ({directory})" for directory, version in rules_versions(results).items()]


def json_report(results, coverages, updated, percent: float, condition_percent: float = 100.0) -> dict:
    """Return the run as a JSON document, PERCENT the share of the rules the coverages exercise and
    CONDITION_PERCENT the share of their conditions seen both ways."""
    updated_ids = {id(result) for result in updated}
    failed = sum(1 for result in results if not result.passed) - len(updated)
    document = {
        "passed": len(results) - failed,
        "failed": failed,
        "rules": [{"rules": directory, "rules_version": version}
                  for directory, version in rules_versions(results).items()],
        "cases": [{"file": result.file, "line": result.line, "name": result.name, "kind": result.kind,
                   "rules_version": result.rules_version, "passed": result.passed, "updated": id(result) in updated_ids,
                   "differences": [vars(difference) for difference in result.differences]}
                  for result in results],
    }
    if coverages:
        document["coverage"] = {
            "percent": round(percent, 2),
            "condition_percent": round(condition_percent, 2),
            "catalogues": [{"rules": item.rules_dir, "percent": round(item.percent, 2),
                            "counts": {rule: item.counts.get(rule, 0) for rule in sorted(item.rules)},
                            "untouched": [{"rule": rule, "where": str(where)} for rule, where in item.untouched],
                            "conditions": conditions_json(item.conditions)}
                           for item in coverages]}
    return document


def conditions_json(conditions) -> dict:
    """Return one catalogue's condition coverage as JSON."""
    def seen(condition) -> dict:
        cases = conditions.seen.get(condition.key, {})
        return {value: cases.get(value, 0) for value in ("true", "false", "unknown")}

    return {"percent": round(conditions.percent, 2), "covered": conditions.covered,
            "counted": len(conditions.counted),
            "rules": {rule: {"both": both, "conditions": total} for rule, (both, total) in conditions.by_rule.items()},
            "gaps": [{"where": str(condition.where), "rule": condition.rule, "condition": condition.text,
                      "seen": state, "cases": seen(condition)} for condition, state in conditions.gaps],
            "not_counted": [{"where": str(condition.where), "rule": condition.rule, "condition": condition.text,
                             "always": condition.fixed} for condition in conditions.fixed]}


def junit_report(results, problems=()) -> str:
    """Return the run as JUnit XML, one testsuite per fixture file; a malformed file is a testsuite with one
    error, its problems, so that CI shows it beside the failures."""
    by_file: dict[str, list] = {}
    for problem in sorted(problems, key=Problem.sort_key):
        by_file.setdefault(problem.where.file, []).append(problem)
    root = ElementTree.Element("testsuites", name="companion fixtures", tests=str(len(results) + len(by_file)),
                               failures=str(sum(1 for result in results if not result.passed)),
                               errors=str(len(by_file)))
    for file, found in by_file.items():
        suite = ElementTree.SubElement(root, "testsuite", name=xml_text(file), tests="1", failures="0", errors="1",
                                       time="0")
        case = ElementTree.SubElement(suite, "testcase", classname=xml_text(file), name="malformed fixture file",
                                      file=xml_text(file), time="0")
        error = ElementTree.SubElement(case, "error", message=xml_text(f"{file}: {len(found)} problem(s)"))
        error.text = xml_text("\n".join(problem.render() for problem in found))
    suites: dict[str, ElementTree.Element] = {}
    for result in results:
        suite = suites.get(result.file)
        if suite is None:
            suite = suites[result.file] = ElementTree.SubElement(root, "testsuite", name=xml_text(result.file),
                                                                 tests="0", failures="0", time="0")
            ElementTree.SubElement(ElementTree.SubElement(suite, "properties"), "property", name="rules_version",
                                   value=result.rules_version)
        suite.set("tests", str(int(suite.get("tests")) + 1))
        suite.set("time", f"{float(suite.get('time')) + result.seconds:.4f}")
        case = ElementTree.SubElement(suite, "testcase", classname=xml_text(result.file), name=xml_text(result.name),
                                      file=xml_text(result.file), line=str(result.line), time=f"{result.seconds:.4f}")
        if not result.passed:
            suite.set("failures", str(int(suite.get("failures")) + 1))
            failure = ElementTree.SubElement(case, "failure", message=xml_text(f"{result.where}: expected versus got"))
            failure.text = xml_text("\n".join(difference_lines(result.differences)))
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True)


# What XML 1.0 cannot hold, even escaped: C0 controls but tab and newlines, lone surrogates, U+FFFE and U+FFFF.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """Return text with each character XML 1.0 does not allow written as its escape (`\\x01`)."""
    return NOT_XML.sub(lambda match: repr(match.group())[1:-1], text)


def impact_text(found) -> str:
    """Render which verdicts change, grouped by the rule edits that caused them."""
    lines = []
    if found.edits:
        lines.append(f"rule edits since {found.revision}:")
        sign = {"added": "+", "removed": "-", "changed": "~"}
        lines.extend(f"  {sign[edit.change]} {edit.rule} ({edit.change}, {edit.where})" for edit in found.edits)
    else:
        lines.append(f"no rule edits since {found.revision}")
    for (causes, together), changes in found.groups():
        title = ", ".join(causes) if causes else "no rule edit (an edit elsewhere in the rules)"
        if together:
            title += " (together: no one of these edits alone changes them)"
        lines.append("")
        lines.append(f"{title}: {len(changes)} verdict(s) change")
        for change in changes:
            lines.append(f"  {change.case.where}: {change.case.name}")
            lines.extend(f"      {text}" for text in change.changes)
    lines.append("")
    lines.append(f"{len(found.changes)} of {found.cases} requests change verdict")
    return "\n".join(lines) + "\n"


def impact_json(found) -> dict:
    """Return the impact of the rule edits as a JSON document."""
    return {
        "base": found.revision,
        "edits": [vars(edit) for edit in found.edits],
        "changes": [{"file": change.case.file, "line": change.case.line, "name": change.case.name,
                     "causes": list(change.causes), "together": change.together,
                     "changes": change.changes,
                     "before": change.before, "after": change.after} for change in found.changes],
        "cases": found.cases,
    }
