"""`companion amend` and `companion renew`: thin verbs over engine.services.subscriptions."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.cli.loading import load_compiled_or_exit
from engine.cli.options import format_option, rules_option
from engine.cli.render import exit_with, render_change
from engine.problem import EXIT_BAD_INPUT, EXIT_OK, EXIT_REFUSED, CompanionError
from engine.inference.request import dump_json
from engine.catalogue.policies.subscriptions import CHANGE, RENEWAL
from engine.services.changes import read_amendment
from engine.services.subscriptions import amend, renew

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
        click.echo("\n".join(render_change(name, result, kind == CHANGE, explain_rules) for name, result in results))
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
