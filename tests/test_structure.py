"""Structure rules: domain/ is pure (no Trio, no sockets)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "trioprint"
DOMAIN = SRC / "domain"
#: The simulated printers' models are pure too; only their servers (server.py: klippy,
#: marlin_pty.py: Marlin on a pty) and the entry point do I/O.
SIM_SERVERS = ("server.py", "__main__.py", "marlin_pty.py")
SIM_MODEL = [p for p in (SRC / "sim").glob("*.py") if p.name not in SIM_SERVERS]
#: Package modules a pure module may not import (they import Trio or do I/O).
IMPURE = (
    "transport",
    "components",
    "app",
    "bus",
    "cli",
    "logs",
    "sim.server",
    "sim.marlin_pty",
)
FORBIDDEN = {"trio", "trio_websocket", "quart", "quart_trio", "hypercorn", "trio_serial"}


@pytest.mark.parametrize(
    "path", sorted([*DOMAIN.glob("*.py"), *SIM_MODEL]), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_domain_modules_import_no_io_framework(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level > 0 and node.module:
            # relative imports may only reach other pure modules
            assert not node.module.startswith(IMPURE), node.module
    assert imported & FORBIDDEN == set()
