"""`companion users|vouchers|locker|license`: thin verbs over engine.locker, its accounts and its licence files.

`register(cli)` adds the groups to the main command line. Every verb that prints results takes
`--format text|json` (but `users set-password|set-role`); exit 0 = fine, 1 = refused, 2 = bad input. Errors
print `error[code]: message; hint` on standard error, never a traceback. The database is `--database-url`, else
`COMPANION_DATABASE_URL`, else the SQLite file in ./instance.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click
from sqlalchemy.exc import OperationalError

from engine.locker import accounts, journal
from engine.locker import license_files as licenses
from engine import locker as service
from engine.catalogue.load import load_catalog
from engine.cli.options import database_option, format_option, rules_option, user_option
from engine.cli.render import balances_text, emit, report, user_text
from engine.problem import CompanionError, Problem, did_you_mean
from engine.locker.connect import DATABASE_URL_VARIABLE
from engine.locker.db import open_store


def boundary(command):
    """Turn a CompanionError or an unreachable database into a clean message and an exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        output_format = kwargs.get("output_format", "text")
        try:
            return command(*args, **kwargs)
        except CompanionError as error:
            sys.exit(report(error.problems, output_format))
        except OperationalError as error:
            reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
            problem = Problem(code="database", message=f"the locker database cannot be used: {reason}",
                              hint=f"check --database-url or ${DATABASE_URL_VARIABLE}")
            sys.exit(report([problem], output_format))

    return wrapper


def known_references(rules_dir: Path | str | None = None) -> dict[str, str]:
    """Return the catalogue's commercial references and their descriptions."""
    catalog = load_catalog(rules_dir)
    return {reference: item.description for reference, item in catalog.references.items()}


def check_badges(badges: str | None, rules_dir: Path | str | None) -> None:
    """Refuse badge ids the catalogue does not define: a typo would quietly withhold the partner's products."""
    if badges is None:
        return
    known = load_catalog(rules_dir).badges
    for badge in (part.strip() for part in badges.split(",")):
        if badge and badge not in known:
            raise CompanionError([Problem("unknown-badge", f"'{badge}' is not a badge of the catalogue",
                                          hint=did_you_mean(badge, known) or "badges: " + ", ".join(sorted(known)))])


# --- users -------------------------------------------------------------------------------------------


@click.group()
def users() -> None:
    """Manage partner accounts (email, company, badges, country, purchasing account)."""


@users.command("add")
@click.argument("email")
@click.option("--company", required=True, help="The partner's company.")
@click.option("--badges", required=True, help="Comma-separated badge ids, e.g. power-management.")
@click.option("--country", required=True, help="ISO 3166-1 alpha-2 country code, e.g. US.")
@click.option("--purchasing-account", default=None, help="Direct ordering account, if any.")
@rules_option
@database_option
@format_option
@boundary
def users_add(email, company, badges, country, purchasing_account, rules_dir, database_url, output_format):
    """Add a user."""
    check_badges(badges, rules_dir)
    with open_store(database_url) as store:
        user = service.add_user(store, email, company=company, badges=badges, country=country,
                                purchasing_account=purchasing_account)
    emit(user.to_json(), output_format, f"added {user_text(user)}")


@users.command("set")
@click.argument("email")
@click.option("--company", default=None, help="New company.")
@click.option("--badges", default=None, help="New comma-separated badge ids (replaces the list).")
@click.option("--country", default=None, help="New ISO 3166-1 alpha-2 country code.")
@click.option("--purchasing-account", default=None, help="New purchasing account ('' clears it).")
@rules_option
@database_option
@format_option
@boundary
def users_set(email, company, badges, country, purchasing_account, rules_dir, database_url, output_format):
    """Change a user's company, badges, country or purchasing account."""
    changes = {"company": company, "badges": badges, "country": country}
    if purchasing_account is not None:
        changes["purchasing_account"] = purchasing_account
    if all(value is None for value in changes.values()):
        raise CompanionError([Problem("nothing-to-change", "give at least one of --company, --badges, --country, "
                                      "--purchasing-account")])
    check_badges(badges, rules_dir)
    with open_store(database_url) as store:
        user = service.set_user(store, email, **changes)
    emit(user.to_json(), output_format, f"updated {user_text(user)}")


@users.command("list")
@database_option
@format_option
@boundary
def users_list(database_url, output_format):
    """List every user."""
    with open_store(database_url) as store:
        found = service.list_users(store)
    emit([user.to_json() for user in found], output_format,
         "\n".join(user_text(user) for user in found) or "no users")


@users.command("audit")
@click.argument("email", required=False)
@database_option
@format_option
@boundary
def users_audit(email, database_url, output_format):
    """Show the journal of state changes outside the lockers (accounts, vouchers issued, projects, orders)."""
    with open_store(database_url) as store:
        found = journal.entries(store, service.normalize_email(email) if email else None)
    lines = [f"{entry.at:%Y-%m-%d %H:%M:%S}  {entry.actor}  {entry.action}  {entry.subject}  "
             f"{json.dumps(entry.details, sort_keys=True, ensure_ascii=False)}" for entry in found]
    emit([entry.to_json() for entry in found], output_format, "\n".join(lines) or "no journal entries")


def _read_password(password_stdin: bool) -> str:
    """Return the password: the first line of standard input, or typed twice at a prompt."""
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@users.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--role", type=click.Choice(accounts.ROLES), default=None,
              help="Also set the role (default for a new password: partner).")
@database_option
def set_password(email: str, password_stdin: bool, role: str | None, database_url: str | None) -> None:
    """Set the web sign-in password of a user (prompted, or read from standard input)."""
    password = _read_password(password_stdin)
    try:
        with open_store(database_url) as store:
            account = accounts.set_password(store, email, password, role)
    except CompanionError as error:
        sys.exit(report(error.problems, "text"))
    click.echo(f"password set for {account.email} (role {account.role})")


@users.command("set-role")
@click.argument("email")
@click.argument("role", type=click.Choice(accounts.ROLES))
@database_option
def set_role(email: str, role: str, database_url: str | None) -> None:
    """Make a user a partner or a product manager (who sees the Catalogue page)."""
    try:
        with open_store(database_url) as store:
            account = accounts.set_role(store, email, role)
    except CompanionError as error:
        sys.exit(report(error.problems, "text"))
    click.echo(f"{account.email} is now {account.role}")


# --- vouchers ----------------------------------------------------------------------------------------


@click.group()
def vouchers() -> None:
    """Issue voucher codes (stands for the vendor's order fulfilment)."""


@vouchers.command("issue")
@click.option("--reference", required=True, metavar="SKU", help="Commercial reference from the catalogue.")
@click.option("--quantity", required=True, type=click.IntRange(1, service.MAX_VOUCHER_QUANTITY),
              help="Quantity each voucher stands for (at most 1,000,000).")
@click.option("--count", default=1, show_default=True, type=click.IntRange(1, service.MAX_VOUCHERS_PER_ISSUE),
              help="How many codes to issue.")
@rules_option
@database_option
@format_option
@boundary
def vouchers_issue(reference, quantity, count, rules_dir, database_url, output_format):
    """Print COUNT new voucher codes for QUANTITY of the commercial reference SKU."""
    known = known_references(rules_dir)
    if reference not in known:
        raise CompanionError([Problem(code="unknown-reference",
                                      message=f"'{reference}' is not a commercial reference of the catalogue",
                                      hint=did_you_mean(reference, known) or "see the references in rules/")])
    with open_store(database_url) as store:
        issued = service.issue_vouchers(store, reference, quantity, count)
    emit({"reference": reference, "description": known[reference], "quantity": quantity, "codes": issued},
         output_format, "\n".join(issued))


# --- locker ------------------------------------------------------------------------------------------


@click.group()
def locker() -> None:
    """Your Digital Locker: redeem vouchers, see balances, share, audit."""


@locker.command("redeem")
@click.argument("code")
@user_option
@database_option
@format_option
@boundary
def locker_redeem(code, user_email, database_url, output_format):
    """Redeem a voucher CODE into your locker."""
    with open_store(database_url) as store:
        done = service.redeem(store, user_email, code)
    emit(done.to_json(), output_format,
         f"redeemed {done.code}: +{done.quantity} {done.reference} (balance {done.balance}) "
         f"into locker {done.locker_id}")


@locker.command("show")
@user_option
@database_option
@format_option
@boundary
def locker_show(user_email, database_url, output_format):
    """Show your locker: owner, members, balances, activations."""
    with open_store(database_url) as store:
        view = service.show_locker(store, user_email)
    members = ", ".join(view.members)
    activations = "\n".join(f"  {item['id']}  {item['kind']}  {item['on']}"
                            + (f"  (of {item['parent']})" if item["parent"] else "")
                            for item in view.activations) or "  (none)"
    emit(view.to_json(), output_format,
         f"locker {view.id}, owner {view.owner}" + (f", shared with {members}" if view.shared else "")
         + f"\nbalances:\n{balances_text(view.balances)}\nactivations:\n{activations}")


@locker.command("invite")
@click.argument("email")
@user_option
@database_option
@format_option
@boundary
def locker_invite(email, user_email, database_url, output_format):
    """Invite EMAIL to share your locker (owners only)."""
    with open_store(database_url) as store:
        invitation = service.invite(store, user_email, email)
    if output_format == "text":
        for warning in invitation.warnings:
            click.echo(f"warning: {warning}", err=True)
    emit(invitation.to_json(), output_format,
         f"invited {invitation.invitee} to locker {invitation.locker_id} (invitation {invitation.id}); "
         f"they accept with: companion locker accept {invitation.id} --user {invitation.invitee}")


@locker.command("accept")
@click.argument("invitation_id", required=False)
@user_option
@database_option
@format_option
@boundary
def locker_accept(invitation_id, user_email, database_url, output_format):
    """Accept an invitation (the only pending one when no ID is given); your vouchers join the shared locker."""
    with open_store(database_url) as store:
        done = service.accept(store, user_email, invitation_id)
    merged = ", ".join(f"{quantity} {reference}" for reference, quantity in done.merged.items())
    emit(done.to_json(), output_format,
         f"joined locker {done.locker.id} of {done.locker.owner}"
         + (f"; added your {merged}" if merged else "")
         + f"\nbalances:\n{balances_text(done.locker.balances)}")


@locker.command("audit")
@user_option
@database_option
@format_option
@boundary
def locker_audit(user_email, database_url, output_format):
    """List every change to your locker: who, what, when, balances before and after."""
    with open_store(database_url) as store:
        events = service.audit(store, user_email)
    lines = []
    for event in events:
        details = {key: value for key, value in event.details.items() if key not in ("before", "after")}
        lines.append(f"{event.at:%Y-%m-%d %H:%M:%S}  {event.actor}  {event.action}  "
                     f"{json.dumps(details, sort_keys=True)}  before {json.dumps(event.details.get('before'))} "
                     f"after {json.dumps(event.details.get('after'))}")
    emit([event.to_json() for event in events], output_format, "\n".join(lines) or "no events")


# --- licence files -----------------------------------------------------------------------------------


@click.group("license")
def license_group() -> None:
    """Offline licence files signed with Ed25519."""


@license_group.command("export")
@click.argument("activation_id")
@user_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the licence file.")
@click.option("--signing-key", envvar=licenses.SIGNING_KEY_VARIABLE, default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Private key PEM (default: $COMPANION_SIGNING_KEY, else instance/signing-key.pem, "
                   "generated on first use).")
@database_option
@format_option
@boundary
def license_export(activation_id, user_email, output, signing_key, database_url, output_format):
    """Write the signed licence file of one of your activations."""
    with open_store(database_url) as store:
        activation = service.get_activation(store, user_email, activation_id)
        holder = service.get_user(store, activation.user)
    key_path = Path(signing_key) if signing_key else licenses.signing_key_path()
    key = licenses.signing_key(key_path)
    data = licenses.export_license(activation, key, {"email": holder.email, "company": holder.company})
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    public = licenses.public_path(key_path)
    emit({"file": str(output), "activation_id": activation.id, "key_id": licenses.key_id(key),
          "public_key": str(public) if public.exists() else None}, output_format,
         f"wrote {output} for {activation.id} (signed by key {licenses.key_id(key)}"
         + (f"; public key {public})" if public.exists() else ")"))


@license_group.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--public-key", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The vendor's Ed25519 public key (PEM).")
@format_option
@boundary
def license_verify(file, public_key, output_format):
    """Check a licence file's signature without the database."""
    key = licenses.load_public_key(public_key)
    try:
        data = file.read_bytes()
    except OSError as error:
        raise CompanionError([Problem(code="malformed-licence", message=f"cannot read {file}: {error.strerror}")]) \
            from None
    document = licenses.verify_license(data, key)
    product = document.get("configuration", {}).get("product", "?") if isinstance(
        document.get("configuration"), dict) else "?"
    emit({"valid": True, "licence": document}, output_format,
         f"valid licence {document.get('activation_id')} ({document.get('kind')}, product {product}, "
         f"term start {document.get('term_start')}, rules {document.get('rules_version')})")


def register(cli: click.Group) -> None:
    """Add `users`, `vouchers`, `locker` and `license` to the main command line."""
    for group in (users, vouchers, locker, license_group):
        cli.add_command(group)
