"""`companion bom`, `companion checkout` and `companion update-guide`: thin verbs over exports, checkout, guidance."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from pathlib import Path

import click

from engine.services.checkout import CheckoutFailed, CheckoutRefused, cart_url_from, place_order, prepare_order
from engine.cli.loading import load_compiled_or_exit, load_or_exit, read_requests
from engine.cli.options import format_option, rules_option
from engine.cli.render import exit_with, json_text, order_text, print_problems, render_verdict, shown
from engine.services.exports import ExportRefused, TemplateNotAvailable, export_csv
from engine.services.guidance import render_guide, update_guide
from engine.problem import EXIT_BAD_INPUT, EXIT_OK, EXIT_REFUSED, CompanionError, Location, Problem
from engine.inference.request import dump_json


def register(cli: click.Group) -> None:
    """Add the verbs to the command line."""
    cli.add_command(bom)
    cli.add_command(checkout_command)
    cli.add_command(update_guide_command)


def _refused(error, output_format: str) -> None:
    """Print why a configuration has no bill of materials, and exit 1."""
    if output_format == "json":
        click.echo(dump_json(error.verdict.to_json()))
    else:
        click.echo(render_verdict(error.verdict_name, error.verdict, False), err=True)
        click.echo("no bill of materials: the configuration is refused", err=True)
    sys.exit(EXIT_REFUSED)


@click.command()
@click.argument("request_file", metavar="REQUEST", type=click.Path(path_type=Path))
@click.option("--template", "template", required=True, help="Template id: generic, iportal, se-advantage, ...")
@click.option("-o", "--output", type=click.Path(), default=None,  # a str: `-o ''` must not become "."
              help="Write the CSV to this file (default: standard output).")
@rules_option
@format_option
def bom(request_file: Path, template: str, output: str | None, rules_dir: Path | None, output_format: str) -> None:
    """Write the bill of materials of a valid request as CSV: exit 1 if refused, 2 for a template not offered."""
    compiled = load_compiled_or_exit(rules_dir, output_format)
    [(name, request)] = read_requests((request_file,), compiled.catalog, output_format)
    try:
        data = export_csv(compiled, request, template)
    except TemplateNotAvailable as error:
        print_problems(error.problems, output_format, sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except ExportRefused as error:
        error.verdict_name = name
        _refused(error, output_format)
    except CompanionError as error:  # e.g. rules without exports.yaml
        print_problems(error.problems, output_format, sys.stderr)
        sys.exit(EXIT_REFUSED)
    if output is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        try:
            write_output(output, data)
        except CompanionError as error:
            exit_with(error.problems, output_format, EXIT_BAD_INPUT)
        click.echo(f"wrote {shown(output)} ({template} template, {len(data):,} bytes)", err=True)
    sys.exit(EXIT_OK)


def write_output(path: str, data: bytes) -> None:
    """Write data to the file at path, or raise CompanionError (code file) naming it and saying why not."""
    reason = "no file name given" if not path else "Is a directory" if os.path.isdir(path) else ""
    if not reason:
        try:
            _write(os.path.realpath(path), data)  # through a symbolic link, as writing in place would
        except OSError as error:
            reason = error.strerror or str(error)
    if reason:
        raise CompanionError([Problem("file", f"cannot write file: {reason}", Location(shown(path) or "''"))])


def _write(target: str, data: bytes) -> None:
    """Replace a regular file whole through a temporary sibling; write a device or a pipe (/dev/stdout) directly."""
    if os.path.exists(target) and not os.path.isfile(target):
        with open(target, "wb") as stream:
            stream.write(data)
        return
    directory, name = os.path.split(target)
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")  # same file system: rename is atomic
    try:
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as stream:  # umask applies
            stream.write(data)
        if os.path.exists(target):
            os.chmod(temporary, os.stat(target).st_mode & 0o7777)  # keep the replaced file's permissions
        os.replace(temporary, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)  # a failed write leaves no half-written file behind
        raise


def _text_or_exit(option: str, value: str | None, output_format: str) -> None:
    """Exit 2 when an option's value is not UTF-8 text (the shell passed other bytes): it cannot be sent or shown."""
    try:
        (value or "").encode("utf-8")
    except UnicodeEncodeError:
        problem = Problem("bad-option", f"{shown(value)} is not UTF-8 text", Location(option),
                          hint="check the terminal's or the script's character encoding")
        exit_with([problem], output_format, EXIT_BAD_INPUT)


def _cart_url_or_exit(explicit: str | None, confirm: bool, output_format: str) -> str | None:
    """Return the cart URL; exit 2 for a malformed one, or for none when the order is to be sent."""
    try:
        return cart_url_from(explicit, "--cart-url")
    except CompanionError as error:
        if confirm or any(problem.code != "no-cart-url" for problem in error.problems):
            exit_with(error.problems, output_format, EXIT_BAD_INPUT)
        return None  # a review without a cart says so


@click.command("checkout")
@click.argument("request_file", metavar="REQUEST", type=click.Path(path_type=Path))
@click.option("--cart-url", default=None, help="The vendor's cart endpoint (default: $COMPANION_CART_URL).")
@click.option("--confirm", is_flag=True, help="Send the order. Without it, only show what would be sent.")
@click.option("--project", default=None, help="Project name or id, part of the order key.")
@rules_option
@format_option
def checkout_command(request_file: Path, cart_url: str | None, confirm: bool, project: str | None,
                     rules_dir: Path | None, output_format: str) -> None:
    """Review a request's order and, with --confirm, hand it to the vendor's cart; print the confirmation number."""
    _text_or_exit("--project", project, output_format)
    url = _cart_url_or_exit(cart_url, confirm, output_format)
    compiled = load_compiled_or_exit(rules_dir, output_format)
    [(name, request)] = read_requests((request_file,), compiled.catalog, output_format)
    try:
        order = prepare_order(compiled, request, project)
    except CheckoutRefused as error:
        exit_with(error.problems, output_format, EXIT_REFUSED)
    except ExportRefused as error:
        error.verdict_name = name
        _refused(error, output_format)
    if not confirm:
        if output_format == "json":
            click.echo(json_text({"sent": False, "cart_url": url, "idempotency_key": order.idempotency_key,
                                  "payload": order.payload}))
        else:
            click.echo(order_text(order, url))
            click.echo("Nothing was sent. Check the order above, then run again with --confirm to place it.")
        sys.exit(EXIT_OK)
    try:
        confirmation = place_order(order, url)
    except CheckoutFailed as error:
        if output_format == "json":
            click.echo(dump_json({"sent": False, "error": error.message, "idempotency_key": error.idempotency_key,
                                  "attempts": error.attempts, "retryable": error.retryable}))
        else:
            click.echo(f"error[checkout-failed]: {error.message}", err=True)
        sys.exit(EXIT_REFUSED)
    if output_format == "json":
        click.echo(dump_json({"sent": True, **confirmation.to_json()}))
    else:
        click.echo(f"Order placed: confirmation number {confirmation.number} (order key "
                   f"{confirmation.idempotency_key}, {confirmation.attempts} attempt"
                   f"{'s' if confirmation.attempts != 1 else ''})")
    sys.exit(EXIT_OK)


@click.command("update-guide")
@click.option("--product", required=True, help="Product id, e.g. epo.")
@click.option("--version", "version", default=None, help="Installed version, e.g. 2022 (default: the latest).")
@click.option("--mode", required=True, help="online (the system reaches the Internet) or offline.")
@click.option("--event", default="amendment", show_default=True, help="activation, amendment or renewal.")
@click.option("--activation-id", default=None, help="The Activation ID, written into the steps.")
@rules_option
@format_option
def update_guide_command(product: str, version: str | None, mode: str, event: str, activation_id: str | None,
                         rules_dir: Path | None, output_format: str) -> None:
    """Show the steps that update an installed system after an activation, amendment or renewal."""
    _text_or_exit("--activation-id", activation_id, output_format)
    catalog = load_or_exit(rules_dir, output_format)
    if activation_id is not None and output_format == "text":
        activation_id = shown(activation_id)  # written into the steps: JSON escapes it itself
    try:
        guide = update_guide(catalog, product, version, mode, event, activation_id)
    except CompanionError as error:
        exit_with(error.problems, output_format, EXIT_BAD_INPUT)
    click.echo(json_text(guide) if output_format == "json" else render_guide(guide))
    sys.exit(EXIT_OK)
