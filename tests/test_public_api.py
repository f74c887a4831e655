"""The engine's facade: every name of __all__ is there, and importing it loads no database code."""

from __future__ import annotations

import subprocess
import sys

import engine


def test_every_public_name_resolves():
    """`from engine import X` works for every X the facade lists, the lazily loaded ones included."""
    missing = [name for name in engine.__all__ if getattr(engine, name, None) is None]
    assert missing == []


def test_importing_the_facade_loads_no_database_code_until_a_debit_is_asked_for():
    """The facade keeps `companion check` fast: SQLAlchemy comes in only with the names that debit a locker."""
    probe = ("import sys, engine\n"
             "before = any(name.split('.')[0] == 'sqlalchemy' for name in sys.modules)\n"
             "engine.activate_configuration\n"
             "after = any(name.split('.')[0] == 'sqlalchemy' for name in sys.modules)\n"
             "print(before, after)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]
