"""What a release ships: the license, a version in one place, and an sdist whose tests run unpacked."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import telesession

ROOT = Path(__file__).resolve().parent.parent


def test_the_version_is_written_once() -> None:
    """setup.py reads telesession.__version__ from the source (without importing it): one number, two places that say it."""
    shown = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert shown.stdout.split()[-1] == telesession.__version__


def test_the_sdist_carries_the_license_and_what_its_tests_need(tmp_path: Path) -> None:
    """The sdist holds LICENSE, the tests with their conftest and helpers, and the configs pytest and mypy read."""
    pytest.importorskip("setuptools")
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path), "--formats=gztar"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    (archive,) = tmp_path.glob("telesession-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    needed = {"LICENSE", "README.md", "tox.ini", "mypy.ini", "setup.py", "tests/conftest.py", "tests/redis_server.py", "tests/__init__.py"}
    assert needed <= names, needed - names
    tests = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").glob("*.py")}
    assert tests <= names, tests - names
    assert {p.relative_to(ROOT).as_posix() for p in (ROOT / "examples").glob("*.py")} <= names
    assert "MIT License" in (ROOT / "LICENSE").read_text()
