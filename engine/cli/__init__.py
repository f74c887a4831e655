"""The `companion` command line: thin verbs over the engine's public API."""

from __future__ import annotations

import importlib
import json
import sys
import uuid
from pathlib import Path

import click

from engine.catalogue.load import load_catalog, warnings_of
from engine.inference.compile import load as load_compiled
from engine.inference.evaluate import evaluate
from engine.inference.explain import render_options, render_text
from engine.inference.options import options as list_options
from engine.cli.options import format_option, rules_option
from engine.problem import EXIT_BAD_INPUT, EXIT_OK, EXIT_REFUSED, CompanionError, Problem
from engine.inference.request import dump_json, read_request




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


# Verbs owned by other modules, registered when one of their verbs is asked for (help asks for all):
# importing them all, SQLAlchemy and the locker first, cost every `companion check` 0.6 s.
VERB_MODULES = {
    "fixtures": ("test", "diff"),
    "locker": ("users", "vouchers", "locker", "license"),
    "activation": ("activate",),
    "subscription": ("amend", "renew"),
    "exports": ("bom", "checkout", "update-guide"),
    "web": ("serve", "users"),  # adds set-password and set-role to locker's `users`
}


class VerbGroup(click.Group):
    """The `companion` group: its own verbs, and the other modules' verbs, imported when asked for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.registered: set[str] = set()

    def get_command(self, ctx, cmd_name: str):
        """Return the verb cmd_name, registering the modules that provide it first."""
        for module, verbs in VERB_MODULES.items():
            if cmd_name in verbs and module not in self.registered:
                self.registered.add(module)  # first: cli_web asks for `users` while it registers
                importlib.import_module(f"engine.cli.{module}").register(self)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx) -> list[str]:
        """Return every verb's name, registered or not yet."""
        return sorted(set(super().list_commands(ctx)).union(*VERB_MODULES.values()))


@click.group(cls=VerbGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def load_compiled_or_exit(rules_dir: Path | None, output_format: str):
    """Load and compile the catalogue, or print its problems and exit."""
    load_or_exit(rules_dir, output_format)  # prints catalogue problems the usual way
    try:
        return load_compiled(rules_dir)
    except CompanionError as error:
        print_problems(error.problems, output_format, sys.stderr)
        sys.exit(EXIT_REFUSED)


def read_requests(paths: tuple[Path, ...], catalog, output_format: str, partial: bool = False):
    """Read every request file; print request errors and exit 2 if any is malformed."""
    requests, problems = [], []
    for path in paths:
        try:
            requests.append((str(path), read_request(path, catalog, partial=partial)))
        except CompanionError as error:
            problems.extend(error.problems)
    if problems:
        print_problems(problems, output_format, sys.stdout if output_format == "json" else sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    return requests


@cli.command()
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
        click.echo("\n".join(render_text(name, verdict, explain_rules) for name, verdict in results))
    sys.exit(EXIT_OK if all(verdict.valid for _, verdict in results) else EXIT_REFUSED)


@cli.command()
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
