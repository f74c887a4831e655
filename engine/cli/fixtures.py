"""`companion test` and `companion diff`: thin verbs over engine.fixtures, and the reporters they print with."""

from __future__ import annotations

import json
import re
import sys
from contextlib import nullcontext
from pathlib import Path
from xml.etree import ElementTree

import click

from engine import fixtures
from engine.cli.options import format_option, format_option_with, rules_option_with
from engine.problem import EXIT_BAD_INPUT, EXIT_OK, EXIT_REFUSED, CompanionError, Problem

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
@click.option("--update", is_flag=True, help="Rewrite the expectations of failing cases from their results.")
def test_command(paths, rules_dir, jobs, output_format, show_coverage, min_coverage, update) -> None:
    """Run fixture cases (default: tests/fixtures): exit 0 all pass, 1 some fail, 2 a fixture is malformed."""
    files = files_or_exit(paths)
    with progress(len(files), output_format) as advance:
        file_results = fixtures.run_files(files, rules_dir, jobs, advance)
    problems = [problem for result in file_results for problem in result.problems]
    if problems:
        print_problems(problems)
        sys.exit(EXIT_BAD_INPUT)
    results = [result for file_result in file_results for result in file_result.results]
    try:
        updated = fixtures.update_files(results) if update else []
    except CompanionError as error:
        print_problems(error.problems)
        sys.exit(EXIT_BAD_INPUT)
    coverages = fixtures.coverage(results, rules_dir) if show_coverage or min_coverage is not None else []
    if output_format == "json":
        click.echo(json.dumps(json_report(results, coverages, updated), indent=2, default=str))
    elif output_format == "junit":
        click.echo(junit_report(results))
    else:
        click.echo(text_report(results, updated, coverages if show_coverage else []), nl=False)
    stream = sys.stdout if output_format == "text" else sys.stderr
    failed = sum(1 for result in results if not result.passed) - len(updated)
    below = min_coverage is not None and fixtures.total_percent(coverages) < min_coverage
    if below:
        click.echo(f"coverage {fixtures.total_percent(coverages):.1f}% is below the minimum {min_coverage:g}%",
                   file=stream)
    click.echo(f"{len(results) - failed} passed, {failed} failed", file=stream)
    sys.exit(EXIT_REFUSED if failed or below else EXIT_OK)


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
        print_problems(problems)
        sys.exit(EXIT_BAD_INPUT)
    try:
        found = fixtures.impact(revision, cases)
    except CompanionError as error:
        print_problems(error.problems)
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
        print_problems([Problem("no-fixtures", "no such file or directory", fixtures.Location(str(path)))
                        for path in missing])
        sys.exit(EXIT_BAD_INPUT)
    files = fixtures.find_fixture_files(paths)
    if not files:
        click.echo("error[no-fixtures]: no fixture files (*.yaml, *.yml) under " + ", ".join(map(str, paths)),
                   err=True)
        sys.exit(EXIT_BAD_INPUT)
    return files


def print_problems(problems: list[Problem]) -> None:
    """Print located problems on stderr, sorted, each once."""
    seen: set[str] = set()
    for problem in sorted(problems, key=Problem.sort_key):
        text = problem.render()
        if text not in seen:
            seen.add(text)
            click.echo(text, err=True)


def progress(total: int, output_format: str):
    """Return a context giving a per-file advance callback: a rich progress bar on a terminal, else nothing."""
    if not sys.stderr.isatty() or total < 2:
        return nullcontext(None)
    from contextlib import contextmanager

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    @contextmanager
    def bar():
        with Progress(TextColumn("fixtures"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(stderr=True), transient=True) as shown:
            task = shown.add_task("fixtures", total=total)
            yield lambda result: shown.advance(task)
    return bar()


# ------------------------------------------------------------------------------------------------ reporters

def text_report(results, updated, coverages) -> str:
    """Render failures (file:line, expected versus got), updates, and coverage for people."""
    lines: list[str] = []
    updated_ids = {id(result) for result in updated}
    for result in results:
        if result.passed:
            continue
        verb = "UPDATED" if id(result) in updated_ids else "FAILED"
        lines.append(f"{result.where}: {verb} {result.name}")
        lines.extend(difference_lines(result.differences))
        lines.append("")
    if updated:
        files = len({result.file for result in updated})
        lines.append(f"updated the expectations of {len(updated)} case(s) in {files} file(s)")
    for item in coverages:
        lines.extend(coverage_lines(item))
    return "\n".join(lines) + ("\n" if lines else "")


def difference_lines(differences) -> list[str]:
    """Render differences grouped by key: `- expected` and `+ got` lines."""
    lines: list[str] = []
    last = None
    for difference in differences:
        if difference.key != last:
            lines.append(f"    {difference.key}:")
            last = difference.key
        if difference.expected is not None:
            lines.append(f"      - expected: {difference.expected}" + ("" if difference.got is not None
                                                                          else "   (missing)"))
        if difference.got is not None:
            lines.append(f"      + got:      {difference.got}" + ("" if difference.expected is not None
                                                                     else "   (unexpected)"))
    return lines


def coverage_lines(item) -> list[str]:
    """Render one catalogue's rule coverage."""
    shown = fixtures.display_path(Path(item.rules_dir))
    lines = [f"rule coverage of {shown}: {item.exercised} of {len(item.rules)} rules exercised "
             f"({item.percent:.1f}%)"]
    width = max((len(rule) for rule in item.rules), default=0)
    for rule in sorted(item.rules):
        count = item.counts.get(rule, 0)
        lines.append(f"  {rule:<{width}}  {count:>5} case{'s' if count != 1 else ''}")
    if item.untouched:
        lines.append("rules no case exercises:")
        lines.extend(f"  {where}: {rule}" for rule, where in item.untouched)
    return lines


def json_report(results, coverages, updated) -> dict:
    """Return the run as a JSON document."""
    updated_ids = {id(result) for result in updated}
    failed = sum(1 for result in results if not result.passed) - len(updated)
    document = {
        "passed": len(results) - failed,
        "failed": failed,
        "cases": [{"file": result.file, "line": result.line, "name": result.name, "kind": result.kind,
                   "passed": result.passed, "updated": id(result) in updated_ids,
                   "differences": [vars(difference) for difference in result.differences]}
                  for result in results],
    }
    if coverages:
        document["coverage"] = {
            "percent": round(fixtures.total_percent(coverages), 2),
            "catalogues": [{"rules": item.rules_dir, "percent": round(item.percent, 2),
                            "counts": {rule: item.counts.get(rule, 0) for rule in sorted(item.rules)},
                            "untouched": [{"rule": rule, "where": str(where)} for rule, where in item.untouched]}
                           for item in coverages]}
    return document


def junit_report(results) -> str:
    """Return the run as JUnit XML, one testsuite per fixture file."""
    root = ElementTree.Element("testsuites", name="companion fixtures", tests=str(len(results)),
                               failures=str(sum(1 for result in results if not result.passed)))
    suites: dict[str, ElementTree.Element] = {}
    for result in results:
        suite = suites.get(result.file)
        if suite is None:
            suite = suites[result.file] = ElementTree.SubElement(root, "testsuite", name=xml_text(result.file),
                                                                 tests="0", failures="0", time="0")
        suite.set("tests", str(int(suite.get("tests")) + 1))
        suite.set("time", f"{float(suite.get('time')) + result.seconds:.4f}")
        case = ElementTree.SubElement(suite, "testcase", classname=xml_text(result.file), name=xml_text(result.name),
                                      file=xml_text(result.file), line=str(result.line), time=f"{result.seconds:.4f}")
        if not result.passed:
            suite.set("failures", str(int(suite.get("failures")) + 1))
            failure = ElementTree.SubElement(case, "failure", message=xml_text(f"{result.where}: expected versus got"))
            failure.text = xml_text("\n".join(difference_lines(result.differences)))
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True)


# What XML 1.0 cannot hold, even escaped: C0 controls but tab and newlines, lone surrogates, U+FFFE and U+FFFF.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """Return text with each character XML 1.0 does not allow written as its escape (`\\x01`)."""
    return NOT_XML.sub(lambda match: repr(match.group())[1:-1], text)


def impact_text(found) -> str:
    """Render which verdicts change, grouped by the rule edits that caused them."""
    lines = []
    if found.edits:
        lines.append(f"rule edits since {found.revision}:")
        sign = {"added": "+", "removed": "-", "changed": "~"}
        lines.extend(f"  {sign[edit.change]} {edit.rule} ({edit.change}, {edit.where})" for edit in found.edits)
    else:
        lines.append(f"no rule edits since {found.revision}")
    for causes, changes in found.groups():
        title = ", ".join(causes) if causes else "no edited rule fired (an edit elsewhere in the rules)"
        lines.append("")
        lines.append(f"{title}: {len(changes)} verdict(s) change")
        for change in changes:
            lines.append(f"  {change.case.where}: {change.case.name}")
            lines.extend(f"      {text}" for text in change.changes)
    lines.append("")
    lines.append(f"{len(found.changes)} of {found.cases} requests change verdict")
    return "\n".join(lines) + "\n"


def impact_json(found) -> dict:
    """Return the impact of the rule edits as a JSON document."""
    return {
        "base": found.revision,
        "edits": [vars(edit) for edit in found.edits],
        "changes": [{"file": change.case.file, "line": change.case.line, "name": change.case.name,
                     "causes": list(change.causes), "changes": change.changes,
                     "before": change.before, "after": change.after} for change in found.changes],
        "cases": found.cases,
    }
