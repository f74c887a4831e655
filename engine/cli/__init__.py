"""The `companion` command line: one group whose verbs live in one module per family, imported when asked for."""

from __future__ import annotations

import importlib
import logging
import sys
import uuid

import click

from engine.problem import EXIT_REFUSED

# Each family's module and its verbs. A family is imported only when one of its verbs is asked for (help asks
# for all): importing them all (SQLAlchemy and the locker, Flask, gunicorn) made `companion check` take 1.0-1.25 s
# instead of 0.25-0.28 s (/usr/bin/time, best of 8 runs).
VERB_MODULES = {
    "rules": ("check", "validate", "options"),
    "fixtures": ("test", "diff"),
    "locker": ("users", "vouchers", "locker", "license"),
    "activation": ("activate",),
    "subscription": ("amend", "renew"),
    "exports": ("bom", "checkout", "update-guide"),
    "web": ("serve",),
}


class VerbGroup(click.Group):
    """The `companion` group: every family's verbs, each family's module imported when one of them is asked for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.registered: set[str] = set()

    def get_command(self, ctx, cmd_name: str):
        """Return the verb cmd_name, registering the module that provides it first."""
        for module, verbs in VERB_MODULES.items():
            if cmd_name in verbs and module not in self.registered:
                importlib.import_module(f"engine.cli.{module}").register(self)
                self.registered.add(module)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx) -> list[str]:
        """Return every verb's name, registered or not yet."""
        return sorted(set(super().list_commands(ctx)).union(*VERB_MODULES.values()))


@click.group(cls=VerbGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="companion")
def cli() -> None:
    """Companion: configure, validate and activate software licences against declarative rules."""


def main() -> None:
    """Run the command line; turn any unexpected failure into a short message with an incident id."""
    try:
        cli(standalone_mode=True)
    except SystemExit:
        raise
    except Exception as error:  # noqa: BLE001 - the CLI boundary: never show a traceback
        incident = uuid.uuid4().hex[:8]
        logging.getLogger("companion").debug("incident %s", incident, exc_info=True)
        click.echo(f"error[internal]: unexpected failure ({type(error).__name__}); incident {incident}", err=True)
        sys.exit(EXIT_REFUSED)
