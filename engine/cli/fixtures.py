"""`companion test` and `companion diff`: thin verbs over engine.fixtures (their reports: engine.cli.render)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from engine import fixtures
from engine.cli.options import format_option, format_option_with, rules_option_with
from engine.cli.render import (impact_json, impact_text, json_report, junit_report, print_sorted_problems, progress_bar,
                               rules_version_lines, text_report)
from engine.problem import EXIT_BAD_INPUT, EXIT_OK, EXIT_REFUSED, CompanionError, Location, Problem

DEFAULT_PATHS = (Path("tests/fixtures"),)


def register(cli: click.Group) -> None:
    """Add the fixture verbs to the command line."""
    cli.add_command(test_command)
    cli.add_command(diff_command)


rules_option = rules_option_with("Rules directory for fixtures that name none (default: the bundled rules/).")
paths_argument = click.argument("paths", nargs=-1, type=click.Path(path_type=Path))


@click.command("test")
@paths_argument
@rules_option
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run fixture files in this many worker processes.")
@format_option_with("junit")
@click.option("--coverage", "show_coverage", is_flag=True, help="Report how many cases exercised each rule.")
@click.option("--min-coverage", type=click.FloatRange(0, 100), default=None, metavar="PCT",
              help="Fail when fewer than PCT percent of the rules are exercised.")
@click.option("--min-condition-coverage", type=click.FloatRange(0, 100), default=None, metavar="PCT",
              help="Fail when fewer than PCT percent of the rules' conditions are seen both true and false.")
@click.option("--update", is_flag=True, help="Rewrite the expectations of failing cases from their results.")
def test_command(paths, rules_dir, jobs, output_format, show_coverage, min_coverage, min_condition_coverage,
                 update) -> None:
    """Run fixture cases (default: tests/fixtures): exit 0 all pass, 1 some fail, 2 a fixture is malformed."""
    files = files_or_exit(paths)
    with progress_bar(len(files)) as advance:
        file_results = fixtures.run_files(files, rules_dir, jobs, advance)
    problems = [problem for result in file_results for problem in result.problems]
    if problems:
        print_sorted_problems(problems)
        sys.exit(EXIT_BAD_INPUT)
    results = [result for file_result in file_results for result in file_result.results]
    try:
        updated = fixtures.update_files(results) if update else []
    except CompanionError as error:
        print_sorted_problems(error.problems)
        sys.exit(EXIT_BAD_INPUT)
    gated = min_coverage is not None or min_condition_coverage is not None
    coverages = fixtures.coverage(results, rules_dir) if show_coverage or gated else []
    rule_percent, condition_percent = fixtures.total_percent(coverages), fixtures.condition_percent(coverages)
    if output_format == "json":
        document = json_report(results, coverages, updated, rule_percent, condition_percent)
        click.echo(json.dumps(document, indent=2, default=str))
    elif output_format == "junit":
        click.echo(junit_report(results))
    else:
        click.echo(text_report(results, updated, coverages if show_coverage else []), nl=False)
    stream = sys.stdout if output_format == "text" else sys.stderr
    for line in rules_version_lines(results):
        click.echo(line, file=stream)
    failed = sum(1 for result in results if not result.passed) - len(updated)
    below = min_coverage is not None and rule_percent < min_coverage
    if below:
        click.echo(f"coverage {rule_percent:.1f}% is below the minimum {min_coverage:g}%", file=stream)
    conditions_below = min_condition_coverage is not None and condition_percent < min_condition_coverage
    if conditions_below:
        gaps = sum(len(item.conditions.gaps) for item in coverages)
        click.echo(f"condition coverage {condition_percent:.1f}% is below the minimum {min_condition_coverage:g}% "
                   f"({gaps} condition{'s' if gaps != 1 else ''} not seen both true and false"
                   + ("" if show_coverage else "; --coverage lists them") + ")", file=stream)
    click.echo(f"{len(results) - failed} passed, {failed} failed", file=stream)
    sys.exit(EXIT_REFUSED if failed or below or conditions_below else EXIT_OK)


@click.command("diff")
@paths_argument
@click.option("--base", "revision", required=True, metavar="REV", help="Git revision to compare the rules with.")
@rules_option
@format_option
@click.option("--fail-on-change", is_flag=True, help="Exit 1 when any verdict changes (a CI gate).")
def diff_command(paths, revision, rules_dir, output_format, fail_on_change) -> None:
    """Show which fixture verdicts change between the rules at REV and the working tree, and which edits cause it."""
    files = files_or_exit(paths)
    cases, problems = [], []
    for path in files:
        try:
            cases.extend(fixtures.load_fixture_file(path, rules_dir))
        except CompanionError as error:
            problems.extend(error.problems)
    if problems:
        print_sorted_problems(problems)
        sys.exit(EXIT_BAD_INPUT)
    try:
        found = fixtures.impact(revision, cases)
    except CompanionError as error:
        print_sorted_problems(error.problems)
        sys.exit(EXIT_BAD_INPUT)
    if output_format == "json":
        click.echo(json.dumps(impact_json(found), indent=2, default=str))
    else:
        click.echo(impact_text(found), nl=False)
    sys.exit(EXIT_REFUSED if fail_on_change and found.changes else EXIT_OK)


def files_or_exit(paths: tuple[Path, ...]) -> list[Path]:
    """Find the fixture files, or exit 2 when a named path does not exist or nothing is found."""
    paths = paths or DEFAULT_PATHS
    missing = [path for path in paths if not path.exists()]
    if missing:
        print_sorted_problems([Problem("no-fixtures", "no such file or directory", Location(str(path)))
                               for path in missing])
        sys.exit(EXIT_BAD_INPUT)
    files = fixtures.find_fixture_files(paths)
    if not files:
        click.echo("error[no-fixtures]: no fixture files (*.yaml, *.yml) under " + ", ".join(map(str, paths)),
                   err=True)
        sys.exit(EXIT_BAD_INPUT)
    return files
