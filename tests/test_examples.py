"""Every example script and the demo run to completion and say what they should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {
    "embedding.py": "answered by",
    "custom_provider.py": "stream: STREAM THIS!",
    "streaming.py": "[done by calm",
    "chaos.py": "outcomes: {'response': 300}",
}


def test_every_example_is_covered():
    assert {p.name for p in (ROOT / "examples").glob("*.py")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert EXPECTED[name] in result.stdout


def test_demo_runs_and_loses_nothing():
    result = subprocess.run(
        [sys.executable, "-m", "runtime._cli", "demo", "--requests", "150"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "lost requests:   0" in result.stdout
    assert "openai     restarts=1" in result.stdout
