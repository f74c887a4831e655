"""`companion serve` (the web app under gunicorn) and `companion users set-password|set-role`.

`register(cli)` adds `serve` to the main command line and the password verbs to the `users` group (created
by engine.cli.locker; registered here when it is missing). The web app is served by gunicorn through its
Python API (several worker processes, each holding the compiled catalogue), never by Flask's development
server.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from engine.locker import accounts
from engine import locker as service
from engine.cli.options import database_option, rules_option_with
from engine.clock import TIME_ZONE_VARIABLE
from engine.problem import EXIT_REFUSED, CompanionError, exit_status
from engine.locker.db import open_store

DEMO_FILE = "demo-accounts.json"
DEMO_PARTNER = "demo@partner.example"
DEMO_MANAGER = "pm@vendor.example"
# A few vouchers to try the vendor's example with: 3-year EPO Advanced with Insulation Monitoring for
# 150 devices (activation), then Essential -> Advanced and add-on amendments.
DEMO_VOUCHERS = (("EPO-ESS-SUB-3Y", 1), ("EPO-ADV-SUB-3Y", 1), ("EPO-IMS-SUB-3Y", 1), ("EPO-DEV-SUB-3Y", 100),
                 ("EPO-AMD-ESS-ADV", 33))



def _fail(error: CompanionError) -> None:
    for problem in error.problems:
        text = f"error[{problem.code}]: {problem.message}"
        click.echo(text + (f"; {problem.hint}" if problem.hint else ""), err=True)
    sys.exit(exit_status(error.problems))


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.command("set-password")
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
        _fail(error)
    click.echo(f"password set for {account.email} (role {account.role})")


@click.command("set-role")
@click.argument("email")
@click.argument("role", type=click.Choice(accounts.ROLES))
@database_option
def set_role(email: str, role: str, database_url: str | None) -> None:
    """Make a user a partner or a product manager (who sees the Catalogue page)."""
    try:
        with open_store(database_url) as store:
            account = accounts.set_role(store, email, role)
    except CompanionError as error:
        _fail(error)
    click.echo(f"{account.email} is now {account.role}")


def seed_demo(store, instance: Path) -> dict:
    """Create the demo partner, the demo product manager and a few vouchers once; return what to print."""
    path = instance / DEMO_FILE
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    import secrets

    demo = {"partner": {"email": DEMO_PARTNER, "password": secrets.token_urlsafe(12)},
            "product_manager": {"email": DEMO_MANAGER, "password": secrets.token_urlsafe(12)}, "vouchers": []}
    for who, company, badges, role in ((demo["partner"], "Demo Integrator", ["power-management"], "partner"),
                                       (demo["product_manager"], "Vendor", [], "product-manager")):
        try:
            service.add_user(store, who["email"], company=company, badges=badges, country="US")
        except CompanionError as error:
            if error.problems[0].code != "duplicate-user":
                raise
        accounts.set_password(store, who["email"], who["password"], role)
    for reference, quantity in DEMO_VOUCHERS:
        for code in service.issue_vouchers(store, reference, quantity):
            demo["vouchers"].append({"code": code, "reference": reference, "quantity": quantity})
    instance.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(demo, handle, indent=2)
    return demo


def print_demo(demo: dict, url: str) -> None:
    """Print the demo accounts and vouchers."""
    click.echo(f"\nCompanion is starting on {url}")
    click.echo(f"  partner:         {demo['partner']['email']}  password: {demo['partner']['password']}")
    click.echo(f"  product manager: {demo['product_manager']['email']}  password: {demo['product_manager']['password']}")
    click.echo("  demo vouchers (redeem them on the Locker page):")
    for voucher in demo["vouchers"]:
        click.echo(f"    {voucher['code']}  {voucher['quantity']} x {voucher['reference']}")
    click.echo("")


def gunicorn_application(app, options: dict):
    """Wrap a WSGI app in a gunicorn application configured from OPTIONS."""
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        """gunicorn serving an already-built app."""

        def load_config(self):
            for key, value in options.items():
                if key in self.cfg.settings and value is not None:
                    self.cfg.set(key, value)

        def load(self):
            return app

    return Server()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Worker processes.")
@rules_option_with("Rules directory (default: the bundled rules/); edits are picked up without a restart.")
@database_option
@click.option("--instance", "instance", type=click.Path(path_type=Path), default=None,
              help="Instance folder for the secret key and the SQLite default (default: ./instance).")
@click.option("--demo", is_flag=True, help="Create a demo partner, a demo product manager and vouchers on first "
                                           "start, and print them.")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 32),
              help="Threads per worker (gunicorn's gthread worker, which keeps connections alive; 1: sync "
                   "workers, a new connection per request). Rule evaluation is serialised per process.")
@click.option("--access-log", is_flag=True, help="Log every request to standard output.")
@click.option("--time-zone", envvar=TIME_ZONE_VARIABLE, default=None, metavar="ZONE",
              help=f"The vendor's time zone, whose calendar day dates every debit (default: ${TIME_ZONE_VARIABLE}, "
                   "else UTC), e.g. Europe/Paris.")
def serve(host: str, port: int, workers: int, rules_dir: Path | None, database_url: str | None,
          instance: Path | None, demo: bool, threads: int, access_log: bool, time_zone: str | None) -> None:
    """Serve the web app and the JSON API with gunicorn."""
    from web import create_app

    instance = (instance or Path.cwd() / "instance").resolve()
    config: dict = {"INSTANCE_PATH": str(instance)}
    if rules_dir is not None:
        config["RULES_DIR"] = str(rules_dir.resolve())
    if database_url:
        config["DATABASE_URL"] = database_url
    if time_zone:
        config["TIME_ZONE"] = time_zone
    try:
        app = create_app(config)
    except CompanionError as error:  # a setting is wrong (the time zone)
        _fail(error)
    if app.extensions["companion.rules"].current() is None:
        for problem in app.extensions["companion.rules"].state.problems:
            click.echo(problem.render(), err=True)
        click.echo("error: the rules do not load; fix them (companion check) and start again", err=True)
        sys.exit(EXIT_REFUSED)
    try:
        with open_store(app.config["DATABASE_URL"]) as store:  # migrate once, before the workers start
            if demo:
                print_demo(seed_demo(store, instance), f"http://{host}:{port}/")
    except CompanionError as error:
        _fail(error)
    options = {
        "bind": f"{host}:{port}", "workers": workers, "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync", "preload_app": True,
        "timeout": 60, "graceful_timeout": 10, "keepalive": 5,
        "max_requests": 20000, "max_requests_jitter": 2000,  # recycle workers: the rule engine leaks a little
        "accesslog": "-" if access_log else None, "errorlog": "-", "loglevel": "info",
        "proc_name": "companion",
        "control_socket_disable": True,  # one shared $HOME/.gunicorn/gunicorn.ctl would clash between servers
    }
    gunicorn_application(app, options).run()


def register(cli: click.Group) -> None:
    """Add `serve`, and `set-password` / `set-role` to the `users` group."""
    cli.add_command(serve)
    users = cli.get_command(None, "users")  # cli_locker's group, registered first when verbs load lazily
    if users is None:
        @click.group("users")
        def users() -> None:
            """Partner accounts."""

        cli.add_command(users)
    users.add_command(set_password)
    users.add_command(set_role)
