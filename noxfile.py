"""Developer sessions: `nox` runs tests, lint and typecheck (what CI runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs, env={"HYPOTHESIS_PROFILE": "ci"})


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check (with the trio-aware ASYNC rules) and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "src", "tests", "noxfile.py", "bench")
    session.run("ruff", "format", "--check", "src", "tests", "noxfile.py", "bench")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[test,typecheck]")
    session.run("mypy", "--strict", "src/trioprint")


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """The hypothesis tests with many more examples."""
    session.install("-e", ".[test]")
    session.run(
        "pytest", "-m", "not slow", "-q", *session.posargs, env={"HYPOTHESIS_PROFILE": "fuzz"}
    )


MOONRAKER = "moonraker==0.11.0"


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks side by side with Moonraker 0.11 (figures, not a test)."""
    session.install("-e", ".", "h11", "wsproto")
    # Moonraker gets a venv of its own (cached beside the session's), never trioprint's.
    peer = Path(session.virtualenv.location).parent / "moonraker-0.11"
    moonraker = peer / "bin" / "moonraker"
    if not moonraker.exists():
        session.run(sys.executable, "-m", "venv", str(peer), external=True)
        session.run(str(peer / "bin" / "pip"), "install", "-q", MOONRAKER, external=True)
    session.run("python", "bench/bench_api.py", "--moonraker-bin", str(moonraker), *session.posargs)
