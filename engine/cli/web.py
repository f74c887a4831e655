"""`companion serve`: the web app under gunicorn, and its demo accounts.

The web app is served by gunicorn through its Python API (several worker processes, each holding the compiled
catalogue), never by Flask's development server.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import click
from gunicorn.app.base import BaseApplication

from engine import locker as service
from engine.cli.options import database_option, rules_option_with
from engine.cli.render import report
from engine.clock import TIME_ZONE_VARIABLE
from engine.locker import accounts
from engine.locker.db import open_store
from engine.problem import EXIT_REFUSED, CompanionError
from web import create_app

DEMO_FILE = "demo-accounts.json"
DEMO_PARTNER = "demo@partner.example"
DEMO_MANAGER = "pm@vendor.example"
# A few vouchers to try the vendor's example with: 3-year EPO Advanced with Insulation Monitoring for
# 150 devices (activation), then Essential -> Advanced and add-on amendments.
DEMO_VOUCHERS = (("EPO-ESS-SUB-3Y", 1), ("EPO-ADV-SUB-3Y", 1), ("EPO-IMS-SUB-3Y", 1), ("EPO-DEV-SUB-3Y", 100),
                 ("EPO-AMD-ESS-ADV", 33))



def seed_demo(store, instance: Path) -> dict:
    """Create the demo partner, the demo product manager and a few vouchers once; return what to print."""
    path = instance / DEMO_FILE
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
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
        sys.exit(report(error.problems, "text"))
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
        sys.exit(report(error.problems, "text"))
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
    """Add `companion serve` to the command line."""
    cli.add_command(serve)
