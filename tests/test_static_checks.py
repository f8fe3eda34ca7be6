"""The code's own checks, part of the test command: ruff (lint and format) and mypy must report nothing.

They run the installed tools on the checkout, the way a contributor runs them before a commit
(`ruff check . && ruff format --check . && mypy privtrain`); the settings are in pyproject.toml.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_ruff_lint_is_clean():
    done = _run("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_ruff_format_is_clean():
    done = _run("ruff", "format", "--no-cache", "--check", ".")
    assert done.returncode == 0, "run `ruff format .`:\n" + done.stdout[-4000:] + done.stderr[-2000:]


@pytest.mark.slow
def test_mypy_is_clean():
    done = _run("mypy", "--no-incremental", "privtrain")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
