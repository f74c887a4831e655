"""`companion check`, `companion validate` and `companion options`: thin verbs over the catalogue and inference."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.catalogue.load import warnings_of
from engine.cli.loading import load_compiled_or_exit, load_or_exit, read_requests
from engine.cli.options import format_option, rules_option
from engine.cli.render import print_problems, render_options, render_verdict
from engine.inference.evaluate import evaluate
from engine.inference.options import options as list_options
from engine.inference.request import dump_json
from engine.problem import EXIT_OK, EXIT_REFUSED


def register(cli: click.Group) -> None:
    """Add `check`, `validate` and `options` to the command line."""
    cli.add_command(check)
    cli.add_command(validate)
    cli.add_command(options)


@click.command()
@rules_option
@format_option
def check(rules_dir: Path | None, output_format: str) -> None:
    """Lint the rule files: every problem, located, sorted."""
    catalog = load_or_exit(rules_dir, output_format)
    print_problems(list(warnings_of(catalog)), output_format)
    if output_format == "text":
        counts = f"{len(catalog.products)} products, {len(catalog.badges)} badges, {len(catalog.references)} references"
        click.echo(f"rules OK ({counts}; rules version {catalog.rules_version})", err=True)


@click.command()
@click.argument("requests", nargs=-1, required=True, type=click.Path(path_type=Path))
@rules_option
@format_option
@click.option("--explain", "explain_rules", is_flag=True, help="Show every rule that fired and why.")
def validate(requests: tuple[Path, ...], rules_dir: Path | None, output_format: str, explain_rules: bool) -> None:
    """Validate configuration requests: exit 0 all valid, 1 some invalid, 2 a request is malformed."""
    compiled = load_compiled_or_exit(rules_dir, output_format)
    results = [(name, evaluate(compiled, request)) for name, request in read_requests(requests, compiled.catalog,
                                                                                       output_format)]
    if output_format == "json":
        documents = [{"request": name, **verdict.to_json(explain_rules)} for name, verdict in results]
        click.echo(dump_json(documents[0] if len(documents) == 1 else documents))
    else:
        click.echo("\n".join(render_verdict(name, verdict, explain_rules) for name, verdict in results))
    sys.exit(EXIT_OK if all(verdict.valid for _, verdict in results) else EXIT_REFUSED)


@click.command()
@click.argument("request_file", metavar="REQUEST", type=click.Path(path_type=Path))
@rules_option
@format_option
def options(request_file: Path, rules_dir: Path | None, output_format: str) -> None:
    """List what can still be chosen for a partial configuration, and why not the rest."""
    compiled = load_compiled_or_exit(rules_dir, output_format)
    [(_, request)] = read_requests((request_file,), compiled.catalog, output_format, partial=True)
    result = list_options(compiled, request)
    if output_format == "json":
        click.echo(dump_json(result))
    else:
        click.echo(render_options(result))
    sys.exit(EXIT_OK if result["possible"] else EXIT_REFUSED)
