"""`companion users set-password`, `set-role` and `companion serve --help`."""

from __future__ import annotations

from click.testing import CliRunner

from engine.locker import accounts
from engine import locker
from engine.cli import cli
from engine.locker.db import open_store


def test_set_password_from_stdin_then_sign_in(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    with open_store(url) as store:
        locker.add_user(store, "cli@integrator.example", company="T", badges=["power-management"], country="US")
    runner = CliRunner()
    result = runner.invoke(cli, ["users", "set-password", "cli@integrator.example", "--password-stdin",
                                 "--database-url", url], input="a long enough passphrase\n")
    assert result.exit_code == 0, result.output
    assert "password set for cli@integrator.example (role partner)" in result.output
    result = runner.invoke(cli, ["users", "set-role", "cli@integrator.example", "product-manager", "--database-url", url])
    assert result.exit_code == 0 and "product-manager" in result.output
    with open_store(url) as store:
        account = accounts.verify_password(store, "CLI@integrator.example", "a long enough passphrase")
        assert account is not None and account.is_product_manager
        assert accounts.verify_password(store, "cli@integrator.example", "wrong") is None


def test_set_password_refusals(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    runner = CliRunner()
    result = runner.invoke(cli, ["users", "set-password", "nobody@x.example", "--password-stdin", "--database-url", url],
                           input="a long enough passphrase\n")
    assert result.exit_code == 1 and "error[unknown-user]" in result.output
    with open_store(url) as store:
        locker.add_user(store, "short@x.example", company="T", badges=[], country="US")
    result = runner.invoke(cli, ["users", "set-password", "short@x.example", "--password-stdin", "--database-url", url],
                           input="short\n")
    assert result.exit_code == 2 and "error[weak-password]" in result.output


def test_serve_help_lists_its_options():
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--workers", "--rules", "--demo"):
        assert option in result.output
