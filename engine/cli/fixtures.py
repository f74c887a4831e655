"""`companion test` and `companion diff`: thin verbs over engine.fixtures (their reports: engine.cli.render)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from engine import fixtures
from engine.catalogue.source import display_path
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
@click.option("-k", "expression", metavar="EXPR",
              help="Run only the cases whose name or file path matches EXPR: words (case-insensitive substrings) "
                   "joined by and, or, not and parentheses, as pytest's -k.")
@click.option("-x", "--exitfirst", is_flag=True, help="Stop at the first failing case or malformed file.")
@click.option("--lf", "--last-failed", "last_failed", is_flag=True,
              help=f"Rerun only the cases that failed in the last run (recorded in {fixtures.LAST_FAILED}); "
                   "all when none did.")
@format_option_with("junit")
@click.option("--coverage", "show_coverage", is_flag=True, help="Report how many cases exercised each rule.")
@click.option("--min-coverage", type=click.FloatRange(0, 100), default=None, metavar="PCT",
              help="Fail when fewer than PCT percent of the rules are exercised.")
@click.option("--min-condition-coverage", type=click.FloatRange(0, 100), default=None, metavar="PCT",
              help="Fail when fewer than PCT percent of the rules' conditions are seen both true and false.")
@click.option("--update", is_flag=True, help="Rewrite the expectations of failing cases from their results.")
def test_command(paths, rules_dir, jobs, expression, exitfirst, last_failed, output_format, show_coverage,
                 min_coverage, min_condition_coverage, update) -> None:
    """Run fixture cases (default: tests/fixtures): exit 0 all pass, 1 some fail, 2 a fixture is malformed."""
    files = files_or_exit(paths)
    stream = sys.stdout if output_format == "text" else sys.stderr
    try:
        parsed = fixtures.parse_expression(expression) if expression is not None else None
    except CompanionError as error:
        print_sorted_problems(error.problems)
        sys.exit(EXIT_BAD_INPUT)
    previous = fixtures.read_last_failed()
    shown = {display_path(path) for path in files}
    only = None
    if last_failed:
        rerun = {key for key in previous if key.split("::", 1)[0] in shown}
        if rerun:
            only = frozenset(rerun)
            click.echo(f"rerunning the {len(rerun)} failure{'s' if len(rerun) != 1 else ''} of the last run",
                       file=stream)
        else:
            click.echo("no case failed last time: running all", file=stream)
    selection = fixtures.Selection(parsed, only) if parsed is not None or only is not None else None
    with progress_bar(len(files)) as advance:
        file_results = fixtures.run_files(files, rules_dir, jobs, advance, selection, exitfirst)
    problems = [problem for result in file_results for problem in result.problems]
    malformed = sum(1 for result in file_results if result.problems)
    results = [result for file_result in file_results for result in file_result.results]
    deselected = sum(result.deselected for result in file_results)
    try:
        fixtures.write_last_failed(last_failures(previous, file_results))
    except OSError as error:  # a read-only checkout still runs its fixtures; only --lf loses its memory
        click.echo(f"warning[no-cache]: cannot record the failures for --lf in {fixtures.LAST_FAILED}: "
                   f"{error.strerror or error}", err=True)
    try:
        updated = fixtures.update_files(results) if update else []
    except CompanionError as error:
        problems.extend(error.problems)
        updated = []
    gated = min_coverage is not None or min_condition_coverage is not None
    coverages = fixtures.coverage(results, rules_dir) if show_coverage or gated else []
    rule_percent, condition_percent = fixtures.total_percent(coverages), fixtures.condition_percent(coverages)
    if output_format == "json":
        document = json_report(results, coverages, updated, rule_percent, condition_percent)
        document.update(deselected=deselected, malformed=malformed,
                        problems=[problem.to_json() for problem in sorted(problems, key=Problem.sort_key)])
        click.echo(json.dumps(document, indent=2, default=str))
    elif output_format == "junit":
        click.echo(junit_report(results, problems))
    else:
        click.echo(text_report(results, updated, coverages if show_coverage else []), nl=False)
    stream = sys.stdout if output_format == "text" else sys.stderr
    for line in rules_version_lines(results):
        click.echo(line, file=stream)
    print_sorted_problems(problems)  # after the report, so that the last lines on a terminal say what to fix
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
    stopped = len(file_results) < len(files) or any(result.stopped for result in file_results)
    click.echo(summary(len(results) - failed, failed, deselected, malformed)
               + ("; stopped at the first failure (-x)" if stopped else ""), file=stream)
    if not results and not problems and deselected:
        click.echo(f"error[no-cases]: -k {expression} selects none of the {deselected} cases", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if problems:
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(EXIT_REFUSED if failed or below or conditions_below else EXIT_OK)


def summary(passed: int, failed: int, deselected: int, malformed: int) -> str:
    """Return the last line of a run: `N passed, N failed`, then the deselected cases and malformed files if any."""
    parts = [f"{passed} passed", f"{failed} failed"]
    if deselected:
        parts.append(f"{deselected} deselected")
    if malformed:
        parts.append(f"{malformed} file{'s' if malformed != 1 else ''} malformed")
    return ", ".join(parts)


def last_failures(previous: set[str], file_results) -> set[str]:
    """Return what failed as of this run: the earlier failures this run did not retry, and this run's own.

    A malformed file is recorded by its path, so that `--lf` runs all of its cases once it loads.
    """
    ran = {fixtures.case_id(result.file, result.name) for file_result in file_results
           for result in file_result.results}
    loaded = {file_result.path for file_result in file_results if not file_result.problems}
    kept = {key for key in previous if key not in ran and key not in loaded}
    return (kept | {fixtures.case_id(result.file, result.name) for file_result in file_results
                    for result in file_result.results if not result.passed}
            | {file_result.path for file_result in file_results if file_result.problems})


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
