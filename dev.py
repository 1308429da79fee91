#!/usr/bin/env python3
"""Set-up and everyday commands, needing nothing but Python 3.11+.

    python3 dev.py demo    run a batch of orders through the seed's saga on the embedded default
    python3 dev.py test    lint, type-check and run the test suite
    python3 dev.py bench   print the throughput and latency figures

The first run creates .venv/ and installs the project with its dev extras; later runs reuse it and
reinstall only when pyproject.toml changes. Extra arguments go to the underlying command.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".installed"


def ensure_env() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"multiagents needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if PY.exists() and STAMP.exists() and STAMP.read_text() == want:
        return
    if not PY.exists():
        print("creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    print("installing multiagents with its dev extras ...", flush=True)
    run([str(PY), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", f"{ROOT}[dev]"])
    STAMP.write_text(want)


def run(cmd: list[str]) -> None:
    code = subprocess.call(cmd, cwd=ROOT)
    if code:
        sys.exit(code)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("demo", "test", "bench"):
        sys.exit(__doc__)
    ensure_env()
    what, rest = argv[0], argv[1:]
    if what == "demo":
        run([str(PY), "-m", "multiagents", "demo", *rest])
    elif what == "test":
        run([str(PY), "-m", "ruff", "check", "src", "tests", "examples", "bench"])
        run([str(PY), "-m", "mypy"])
        run([str(PY), "-m", "pytest", *rest])
    else:
        run([str(PY), "bench/run.py", *rest])


if __name__ == "__main__":
    main(sys.argv[1:])
