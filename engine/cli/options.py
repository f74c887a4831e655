"""The options the families of commands share, defined once: --rules, --format, --database-url and --user."""

from __future__ import annotations

from pathlib import Path

import click


def rules_option_with(help_text: str):
    """Return the --rules option, HELP_TEXT saying what this command does with it."""
    return click.option("--rules", "rules_dir", type=click.Path(path_type=Path), default=None, help=help_text)


def format_option_with(*formats: str):
    """Return the --format option: text (the default), json, and FORMATS."""
    return click.option("--format", "output_format", type=click.Choice(["text", "json", *formats]), default="text",
                        show_default=True, help="Output format.")


rules_option = rules_option_with("Rules directory (default: the bundled rules/).")
format_option = format_option_with()


def database_option(command):
    """Add --database-url (default: $COMPANION_DATABASE_URL, else the SQLite file in ./instance) to COMMAND."""
    # Imported when a verb that opens the database is defined, never for `companion check`: engine.locker.connect
    # brings SQLAlchemy and the locker, which made `companion check` take 0.73 s instead of 0.28 s (/usr/bin/time).
    from engine.locker.connect import DATABASE_URL_VARIABLE

    return click.option("--database-url", envvar=DATABASE_URL_VARIABLE, default=None, metavar="URL",
                        help=f"Database URL (default: ${DATABASE_URL_VARIABLE}, else companion.sqlite3 in the "
                             "instance folder, ./instance).")(command)


user_option = click.option("--user", "user_email", required=True, metavar="EMAIL", help="The acting user.")
