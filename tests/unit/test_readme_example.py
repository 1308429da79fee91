"""The README's saga example runs as shown, prints what the README says, and is examples/readme_saga.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def _block(lang: str, after: int = 0) -> tuple[str, int]:
    """The first fenced ``lang`` block of the README at or after character ``after``, and its end."""
    match = re.compile(rf"^```{lang}\n(.*?)^```$", re.S | re.M).search(README.read_text(), after)
    assert match is not None, f"README.md has no ```{lang} block"
    return match.group(1), match.end()


def test_readme_example_is_the_example_file() -> None:
    """The first python block of the README is examples/readme_saga.py, so the two cannot drift apart."""
    code, _ = _block("python")
    assert code == (ROOT / "examples" / "readme_saga.py").read_text()


def test_readme_example_prints_what_the_readme_claims(tmp_path: Path) -> None:
    """Run as a script, the example undoes its steps in reverse order and ends compensated, as printed."""
    code, end = _block("python")
    claimed, _ = _block("text", end)
    script = tmp_path / "readme_saga.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == claimed.splitlines()
    assert lines[-1].startswith("compensated")
    assert lines.index("refunded PAY-7") < lines.index("released RES-7")
    assert (tmp_path / "orders.db").exists()
