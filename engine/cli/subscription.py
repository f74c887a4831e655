"""`companion amend` and `companion renew`: thin verbs over engine.services.subscriptions, and their text reports."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.cli.loading import load_compiled_or_exit
from engine.cli.options import format_option, rules_option
from engine.cli.render import exit_with
from engine.problem import EXIT_BAD_INPUT, EXIT_OK, EXIT_REFUSED, CompanionError
from engine.inference.request import dump_json
from engine.catalogue.policies.subscriptions import CHANGE, RENEWAL
from engine.services.changes import read_amendment
from engine.services.subscriptions import Amendment, Renewal, amend, renew

explain_option = click.option("--explain", "explain_rules", is_flag=True,
                              help="Show the month derivation step by step and every rule that fired.")
requests_argument = click.argument("requests", nargs=-1, required=True, type=click.Path(path_type=Path))


def register(cli: click.Group) -> None:
    """Add the amend and renew verbs to the command line."""
    cli.add_command(amend_command)
    cli.add_command(renew_command)


def run(requests: tuple[Path, ...], rules_dir: Path | None, output_format: str, explain_rules: bool, kind: str) -> None:
    """Read every request, work each out, print the results and exit 0 / 1 / 2 as validate does."""
    compiled = load_compiled_or_exit(rules_dir, output_format)
    loaded, problems = [], []
    for path in requests:
        try:
            loaded.append((str(path), read_amendment(path, compiled.catalog, kind)))
        except CompanionError as error:
            problems.extend(error.problems)
    if problems:
        exit_with(problems, output_format, EXIT_BAD_INPUT)
    work = amend if kind == CHANGE else renew
    try:
        results = [(name, work(compiled, request)) for name, request in loaded]
    except CompanionError as error:  # e.g. the rules have no subscriptions.yaml
        exit_with(error.problems, output_format, EXIT_REFUSED)
    if output_format == "json":
        documents = [{"request": name, **result.to_json(explain_rules)} for name, result in results]
        click.echo(dump_json(documents[0] if len(documents) == 1 else documents))
    else:
        click.echo("\n".join(render_text(name, result, explain_rules) for name, result in results))
    sys.exit(EXIT_OK if all(result.valid for _, result in results) else EXIT_REFUSED)


@click.command("amend")
@requests_argument
@rules_option
@format_option
@explain_option
def amend_command(requests: tuple[Path, ...], rules_dir: Path | None, output_format: str, explain_rules: bool) -> None:
    """Charge mid-term changes for the remaining months: exit 0 all valid, 1 some refused, 2 a request is malformed."""
    run(requests, rules_dir, output_format, explain_rules, CHANGE)


@click.command("renew")
@requests_argument
@rules_option
@format_option
@explain_option
def renew_command(requests: tuple[Path, ...], rules_dir: Path | None, output_format: str, explain_rules: bool) -> None:
    """Renew subscriptions for a new term: exit 0 all valid, 1 some refused, 2 a request is malformed."""
    run(requests, rules_dir, output_format, explain_rules, RENEWAL)


def render_text(name: str, result: Amendment | Renewal, explain_rules: bool = False) -> str:
    """Render an amendment or renewal for people: the outcome, each refusal, the lines, the end state."""
    kind = "AMENDMENT" if isinstance(result, Amendment) else "RENEWAL"
    lines = [f"{name}: {kind} {'VALID' if result.valid else 'REFUSED'} (rules version {result.rules_version})"]
    term = result.term
    if isinstance(result, Amendment) and "months" in term:
        lines.append(f"  term: {term['term_months']} months, {term['start']} .. {term['last_day']} (ends {term['end']})")
        charged = "charged" if result.valid else "would be charged"
        lines.append(f"  amended on {term['date']}: month {term['month']} of {term['term_months']}, "
                     f"{term['months']} month{'' if term['months'] == 1 else 's'} {charged}")
    elif isinstance(result, Renewal) and term:
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
    if isinstance(result, Amendment) and result.lines:
        lines.append("  amendment lines:")
        for line in result.lines:
            lines.append(f"    {line['quantity']:>5} x {line['reference']:<18} {line['months']:>3} months "
                         f"= {line['units']:>6} units  {line['derivation']}")
    if isinstance(result, Renewal) and result.bom:
        lines.append("  bill of materials:")
        for line in result.bom:
            lines.append(f"    {line['quantity']:>5} x {line['reference']:<18} {line['description']}")
    if result.valid:
        state = result.subscription
        addons = ", ".join(f"{addon['quantity']} x {addon['id']}" for addon in state["addons"]) or "none"
        when = "unchanged end" if isinstance(result, Amendment) else "new end"
        lines.append(f"  subscription {'after the amendment' if kind == 'AMENDMENT' else 'renewed'}: "
                     f"{state['product']} {state['tier']}, {state['devices']} devices, add-ons: {addons}; "
                     f"{when} {state.get('end')}")
    if explain_rules:
        lines.append("  month derivation:" if isinstance(result, Amendment) else "  term derivation:")
        for number, step in enumerate(result.steps, 1):
            lines.append(f"    {number}. {step}")
        if not result.steps:
            lines.append("    (none: the date is outside the term)")
        lines.append("  rules that fired, in order:")
        for number, item in enumerate(result.fired, 1):
            lines.append(f"    {number:>2}. {item['rule']} at {item['where']}")
            lines.append(f"        {item['what']}")
    return "\n".join(lines)
