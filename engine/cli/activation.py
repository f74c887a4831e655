"""`companion activate`: match a configuration against the user's locker and activate it."""

from __future__ import annotations

import datetime
import sys
from dataclasses import replace
from pathlib import Path

import click

from engine.activation import activate_change, activate_configuration
from engine.cli.loading import load_compiled_or_exit
from engine.cli.locker import boundary
from engine.cli.options import database_option, format_option, rules_option, user_option
from engine.cli.render import render_outcome, report
from engine.clock import server_clock
from engine.locker.db import open_store
from engine.locker.journal import command_line_actor
from engine.problem import EXIT_BAD_INPUT, EXIT_OK, EXIT_REFUSED, CompanionError, Problem
from engine.inference.request import dump_json, load_request_text
from engine.catalogue.source import read_text



@click.command()
@click.argument("request_file", metavar="REQUEST", type=click.Path(path_type=Path))
@user_option
@click.option("--date", "on", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Backdate (or postdate) the activation, amendment or renewal to this day, as an operator; "
                   "the journal records it. Default: today, the server's date.")
@click.option("--amend", "amend_id", metavar="ACTIVATION_ID", default=None,
              help="Activate the request's `change:` block as an amendment of this activation.")
@click.option("--renew", "renew_id", metavar="ACTIVATION_ID", default=None,
              help="Activate the request's `renewal:` block as a renewal of this activation.")
@rules_option
@database_option
@format_option
@boundary
def activate(request_file: Path, user_email: str, on, amend_id, renew_id, rules_dir, database_url,
             output_format: str) -> None:
    """Activate a configuration (or amend or renew an activation) from the user's locker.

    Exit 0 activated, 1 refused by the rules or short of vouchers, 2 bad input.
    """
    compiled = load_compiled_or_exit(rules_dir, output_format)
    try:
        if amend_id and renew_id:
            raise CompanionError([Problem("usage", "use --amend or --renew, not both")])
        source = load_request_text(read_text(request_file, str(request_file)), str(request_file))
        block = "change" if amend_id else "renewal" if renew_id else "configuration"
        configuration = source.data.get(block)
        if not isinstance(configuration, dict):
            raise CompanionError([Problem("request-schema", f"the request needs a {block} mapping",
                                          source.where(()), path=block)])
    except CompanionError as error:
        report(error.problems, output_format)
        sys.exit(EXIT_BAD_INPUT)
    store = open_store(database_url)
    today = server_clock().today()
    operator = command_line_actor() if on else None
    try:
        if amend_id or renew_id:
            kind = "amendment" if amend_id else "renewal"
            change = _dated_change(configuration, on.date() if on else None, block)
            outcome = activate_change(store, compiled, user_email, amend_id or renew_id, change, kind,
                                      today=today, operator=operator)
        else:
            outcome = activate_configuration(store, compiled, user_email, configuration, today=today,
                                             on=on.date() if on else None, operator=operator)
    except CompanionError as error:
        if not any(problem.path for problem in error.problems):
            raise  # a locker refusal (unknown user, ...): the boundary reports it
        report([_located(_operator_hint(problem), source) for problem in error.problems], output_format)
        sys.exit(EXIT_BAD_INPUT)
    claimed = (source.data.get("partner") or {}).get("badges")
    notices = ["the partner block of the request is ignored: activation uses the badges stored for "
               f"{user_email}"] if claimed is not None else []
    if output_format == "json":
        click.echo(dump_json({**outcome.to_json(), "notices": notices + list(outcome.notices)}))
    else:
        click.echo("\n".join([f"notice: {notice}" for notice in notices] + [render_outcome(outcome)]))
    sys.exit(EXIT_OK if outcome.activated else EXIT_REFUSED)


def _dated_change(change: dict, on: datetime.date | None, block: str) -> dict:
    """Return the change block dated ON (--date); a request dated otherwise than --date is refused."""
    if on is None:
        return change
    written = change.get("date")
    if written is not None and str(written) != on.isoformat():
        raise CompanionError([Problem("date-conflict", f"the request dates the change {written}, --date says {on}",
                                      path=f"{block}.date", hint="give the date once: in the request or with --date")])
    return {**change, "date": on.isoformat()}


def _operator_hint(problem: Problem) -> Problem:
    """Tell the operator how to date a debit on another day: --date, which the journal records."""
    if problem.code != "date-not-today":
        return problem
    return replace(problem, hint="leave the date out to use today, or, as an operator, pass --date with that day: "
                                 "the journal records the backdated change")


def _located(problem: Problem, source) -> Problem:
    """Point a request problem at the request file, when it is about the configuration."""
    if problem.path.startswith(("configuration", "change", "renewal")) and not problem.where.file.endswith((".yaml", ".json", ".yml")):
        path = tuple(int(part) if part.isdigit() else part
                     for part in problem.path.replace("[", ".").replace("]", "").split("."))
        return replace(problem, where=source.where(path))
    return problem


def register(cli: click.Group) -> None:
    """Add `companion activate` to the command line."""
    cli.add_command(activate)
