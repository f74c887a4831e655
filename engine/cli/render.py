"""What the command line prints: problems as text or JSON, results as JSON or text for people."""

from __future__ import annotations

import json
import sys
from typing import NoReturn

import click

from engine.problem import Problem, exit_status


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
    """Print problems to standard error (JSON to standard output) and return the exit code."""
    if output_format == "json":
        click.echo(json.dumps({"problems": [problem.to_json() for problem in problems]}, indent=2))
    else:
        for problem in problems:
            click.echo(render_problem(problem), err=True)
    return exit_status(problems)


def emit(data, output_format: str, text: str) -> None:
    """Print DATA as JSON, or TEXT."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False) if output_format == "json" else text)


def render_verdict(name: str, verdict, explain_rules: bool = False) -> str:
    """Render a verdict for people: the outcome, each refusal with its reason and fix, the BOM."""
    lines = [f"{name}: {'VALID' if verdict.valid else 'INVALID'} (rules version {verdict.rules_version})"]
    for item in verdict.violations:
        lines.append(f"  error[{item['code']}] {item['rule']}: {item['message']}")
        lines.append(f"      fix: {item['hint']}")
        lines.append(f"      rule written at {item['where']}")
        if explain_rules:
            seen = ", ".join(f"{key}={value}" for key, value in item["saw"].items())
            needed = ", ".join(f"{key} {value}" for key, value in item["required"].items())
            lines.append(f"      why: the rule matched {item['condition']}")
            lines.append(f"      saw: {seen}; required: {needed}")
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
            for line in item.get("yields", []):
                lines.append(f"        yields: {line['quantity']} x {line['reference']} ({line['rule']})")
    return "\n".join(lines)


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
                lines.append(f"  short: {line.short.quantity} x {line.short.voucher_reference} for {line.reference}"
                             f" ({line.short.units} of {line.units} units missing)")
                lines.append(f"      what to do: {line.advice}")
    else:
        lines.append("NOT ACTIVATED: the rules refuse this configuration; nothing was debited")
        for item in outcome.verdict["violations"]:
            lines.append(f"  error[{item['code']}] {item['rule']}: {item['message']}")
            lines.append(f"      fix: {item['hint']}")
    return "\n".join(lines)
