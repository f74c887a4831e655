"""Loading the rules and the requests a verb is given, or printing why not and exiting 1 or 2."""

from __future__ import annotations

import sys
from pathlib import Path

from engine.catalogue.load import load_catalog
from engine.cli.render import exit_with, print_problems
from engine.inference.compile import load as load_compiled
from engine.inference.request import read_request
from engine.problem import EXIT_BAD_INPUT, EXIT_REFUSED, CompanionError


def load_or_exit(rules_dir: Path | None, output_format: str):
    """Load the catalogue, or print its problems and exit 1 (2 when the directory is missing)."""
    try:
        return load_catalog(rules_dir)
    except CompanionError as error:
        usage = any(problem.code == "no-rules" for problem in error.problems)
        exit_with(error.problems, output_format, EXIT_BAD_INPUT if usage else EXIT_REFUSED)


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
        exit_with(problems, output_format, EXIT_BAD_INPUT)
    return requests
