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
