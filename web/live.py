"""The catalogue the app serves: loaded once, swapped atomically when the rule files change.

Each worker process holds one `LiveCatalog`. `current()` is called on every request; at most once per
`interval` seconds it compares the rule files' names, sizes and modification times with the last ones seen
(a few `stat` calls). When they changed it loads and compiles the directory again: on success the new
catalogue replaces the old one in a single assignment (requests already running keep the one they took); on
failure the last good catalogue stays and the problems are kept for the Catalogue page and /api/v1/health.
A rule file of the catalogue in use that is no longer there is such a failure too: an optional file deleted
by mistake must not quietly switch off what it declares (subscriptions.yaml: every amendment). Only a new
LiveCatalog (a restart) accepts its removal.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from engine import BUNDLED_RULES, CompiledCatalog, RULE_FILES, compile_catalog, display_path, load, load_catalog
from engine.problem import CompanionError, Location, Problem

log = logging.getLogger("companion.web")
RETIRE_AFTER = 60.0  # seconds a replaced catalogue stays registered for requests that still use it


@dataclass
class ReloadState:
    """The outcome of the last load: ok or not, when, which version, and the problems of a broken edit."""

    ok: bool = False
    checked_at: str = ""
    loaded_at: str = ""
    rules_version: str | None = None
    problems: list[Problem] = field(default_factory=list)
    reloads: int = 0

    def to_json(self) -> dict:
        """Return the state as a JSON-ready dict."""
        return {"ok": self.ok, "checked_at": self.checked_at, "loaded_at": self.loaded_at,
                "rules_version": self.rules_version, "reloads": self.reloads,
                "problems": [problem.to_json() for problem in self.problems]}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class LiveCatalog:
    """A rules directory, compiled, kept up to date with its files."""

    def __init__(self, directory: Path | str | None, interval: float = 1.0):
        self.directory = Path(directory) if directory is not None else None
        self.interval = interval
        self.state = ReloadState()
        self._compiled: CompiledCatalog | None = None
        self._signature: tuple | None = None
        self._next_check = 0.0
        self._lock = threading.Lock()
        self._retired: list[tuple[float, CompiledCatalog]] = []
        self._owned: set[int] = set()  # compilations made by reloads (the first is engine.inference.compile's, shared)
        self._reload(self._files_signature())

    @property
    def rules_dir(self) -> Path:
        """Return the directory the rules are read from."""
        if self.directory is not None:
            return self.directory
        return BUNDLED_RULES

    def _files_signature(self) -> tuple:
        try:
            entries = sorted(self.rules_dir.iterdir())
        except OSError:
            return ()
        signature = []
        for path in entries:
            if path.suffix in (".yaml", ".yml"):
                try:
                    stat = path.stat()
                except OSError:
                    continue
                signature.append((path.name, stat.st_mtime_ns, stat.st_size))
        return tuple(signature)

    def current(self) -> CompiledCatalog | None:
        """Return the catalogue in use, reloading first if the files changed (checked at most once per interval)."""
        now = time.monotonic()
        if now >= self._next_check and self._lock.acquire(blocking=False):
            try:
                self._next_check = now + self.interval
                signature = self._files_signature()
                if signature != self._signature:
                    self._reload(signature)
                self._free_retired(now)
            finally:
                self._lock.release()
        return self._compiled

    def check_now(self) -> CompiledCatalog | None:
        """Check the files at once (tests, the Catalogue page's reload button)."""
        self._next_check = 0.0
        return self.current()

    def _vanished(self) -> list[Problem]:
        """Return a missing-rule-file problem for each rule file of the catalogue in use that is gone."""
        if self._compiled is None:
            return []
        directory = self._compiled.catalog.directory
        problems = []
        for name in self._compiled.catalog.sources:
            path = directory / name
            if path.exists():
                continue
            if name in RULE_FILES and RULE_FILES[name].required:
                hint = f"restore {name}: the rules cannot load without it"
            else:
                hint = f"restore {name}, or restart the server to serve the rules without it"
            problems.append(Problem("missing-rule-file", f"{name} was loaded and is now missing; the rules loaded "
                                    "before it went are still served", Location(display_path(path)), hint=hint))
        return problems

    def _broken(self, problems: list[Problem]) -> None:
        """Keep the catalogue in use and report why the files on disk are not served."""
        self.state.ok = False
        self.state.problems = problems

    def _reload(self, signature: tuple) -> None:
        self._signature = signature
        self.state.checked_at = _now()
        vanished = self._vanished()
        try:
            if self._compiled is None:
                compiled = load(self.directory)  # the process-wide cache: apps on the same rules share it
            else:
                catalog = load_catalog(self.directory)
                if vanished:  # the rest loads: still not an edit to serve
                    self._broken(vanished)
                    return
                if catalog.rules_version == self._compiled.rules_version:
                    compiled = self._compiled  # touched, not changed
                else:
                    compiled = compile_catalog(catalog)
                    self._owned.add(id(compiled))
        except CompanionError as error:
            gone = {problem.where.file for problem in vanished}  # the loader's missing-file says it again
            self._broken(vanished + [problem for problem in error.problems if problem.where.file not in gone])
            return
        except Exception:  # noqa: BLE001 - a bug must not take the app down nor pass for a good reload
            incident = uuid.uuid4().hex[:12]
            log.error("incident %s: reloading %s", incident, self.rules_dir, exc_info=True)
            self._broken([Problem(
                "internal", f"the rules could not be loaded (unexpected failure; incident {incident})",
                Location(display_path(self.rules_dir)), hint="the server log has the details under the incident id")])
            return
        if compiled is not self._compiled:
            if self._compiled is not None:
                self._retired.append((time.monotonic(), self._compiled))
            self._compiled = compiled  # the atomic swap: one reference assignment
            self.state.reloads += 1
            self.state.loaded_at = self.state.checked_at
        self.state.ok = True
        self.state.problems = []
        self.state.rules_version = compiled.rules_version

    def _free_retired(self, now: float) -> None:
        keep = []
        for since, compiled in self._retired:
            if now - since >= RETIRE_AFTER:
                if id(compiled) in self._owned:
                    self._owned.discard(id(compiled))
                    compiled.close()
            else:
                keep.append((since, compiled))
        self._retired = keep
