"""The `companion` command line: thin verbs over the engine's public API."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import click

from engine.catalog import load_catalog, warnings_of
from engine.problem import CompanionError, Problem

EXIT_OK, EXIT_REFUSED, EXIT_BAD_INPUT = 0, 1, 2

rules_option = click.option("--rules", "rules_dir", type=click.Path(path_type=Path), default=None,
                            help="Rules directory (default: the bundled rules/).")
format_option = click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
                             show_default=True, help="Output format.")


def print_problems(problems: list[Problem], output_format: str, stream=None) -> None:
    """Print problems as text lines or as a JSON document."""
    stream = stream or sys.stdout
    if output_format == "json":
        click.echo(json.dumps({"problems": [problem.to_json() for problem in problems]}, indent=2), file=stream)
    else:
        for problem in problems:
            click.echo(problem.render(), file=stream)


def load_or_exit(rules_dir: Path | None, output_format: str):
    """Load the catalogue, or print its problems and exit 1 (2 when the directory is missing)."""
    try:
        return load_catalog(rules_dir)
    except CompanionError as error:
        print_problems(error.problems, output_format, sys.stdout if output_format == "json" else sys.stderr)
        usage = any(problem.code == "no-rules" for problem in error.problems)
        sys.exit(EXIT_BAD_INPUT if usage else EXIT_REFUSED)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="companion")
def cli() -> None:
    """Companion: configure, validate and activate software licences against declarative rules."""


@cli.command()
@rules_option
@format_option
def check(rules_dir: Path | None, output_format: str) -> None:
    """Lint the rule files: every problem, located, sorted."""
    catalog = load_or_exit(rules_dir, output_format)
    warnings = list(warnings_of(catalog))
    if output_format == "json":
        print_problems(warnings, "json")
    else:
        print_problems(warnings, "text")
        counts = f"{len(catalog.products)} products, {len(catalog.badges)} badges, {len(catalog.references)} references"
        click.echo(f"rules OK ({counts}; rules version {catalog.rules_version})", err=True)


def main() -> None:
    """Run the command line; turn any unexpected failure into a short message with an incident id."""
    try:
        cli(standalone_mode=True)
    except SystemExit:
        raise
    except Exception as error:  # noqa: BLE001 - the CLI boundary: never show a traceback
        incident = uuid.uuid4().hex[:8]
        import logging

        logging.getLogger("companion").debug("incident %s", incident, exc_info=True)
        click.echo(f"error[internal]: unexpected failure ({type(error).__name__}); incident {incident}", err=True)
        sys.exit(EXIT_REFUSED)
