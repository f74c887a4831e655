"""Record the behaviour snapshot: the corpus, each request's outcome and each fixture case's, in verdicts.json.gz.

Run it on the code whose behaviour is the reference (before the rewrite of issue #14), from the repository:

    .venv/bin/python tests/equivalence/record.py [--output PATH]

The file is the same byte for byte for the same code, rules and fixtures. tests/equivalence/test_equivalence.py
compares the current engine with it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ and tests/ are not installed packages
    sys.path.insert(0, str(ROOT))

from engine import BUNDLED_RULES, load  # noqa: E402
from tests.equivalence.corpus import SEED, corpus  # noqa: E402
from tests.equivalence.snapshot import (RECORDING, observe_all, observe_fixtures, rules_digest,  # noqa: E402
                                        write_recording)


def main(argv: list[str] | None = None) -> int:
    """Generate the corpus over the shipped rules, evaluate it and the fixtures, write the recording."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=RECORDING, help=f"default: {RECORDING.relative_to(ROOT)}")
    arguments = parser.parse_args(argv)
    compiled = load(BUNDLED_RULES)
    requests = [list(entry) for entry in corpus(compiled.catalog, SEED)]
    outcomes = observe_all(compiled, requests)
    fixtures = observe_fixtures()
    write_recording(arguments.output, requests, outcomes, fixtures, SEED, rules_digest())
    print(f"{arguments.output}: {len(requests)} requests, {len(fixtures)} fixture cases, "
          f"{arguments.output.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
