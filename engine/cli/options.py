"""The options every family of commands shares, defined once: --rules and --format.

(--database-url and --user belong to the commands that open the locker database: engine.cli.locker.)
"""

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
