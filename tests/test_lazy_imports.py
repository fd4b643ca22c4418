"""Idle memory: a server loads the modules of what is configured, not of everything.

The simulator (``--sim``, or no klippy configured), the update manager (``[update_manager]``)
and the G-code metadata parsers (slicer tables, thumbnails: loaded with the first file that
needs them) are imported where they are used. Each check runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: Modules no server loads before it needs them.
LAZY = (
    "trioprint.sim",
    "trioprint.components.update_manager",
    "trioprint.components.update_git",
    "trioprint.components.update_apps",
    "trioprint.domain.update_config",
    "trioprint.domain.metadata",
    "trioprint.domain.metadata_rules",
    "trioprint.domain.slicers",
    "trioprint.domain.thumbnails",
)


def loaded_after(code: str) -> list[str]:
    """The ``trioprint`` modules in ``sys.modules`` after running ``code`` in a new process."""
    script = f"{code}\nimport sys, json\n"
    script += "print(json.dumps(sorted(m for m in sys.modules if m.startswith('trioprint'))))"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    modules: list[str] = json.loads(out.stdout.splitlines()[-1])
    return modules


def lazy_in(modules: list[str]) -> list[str]:
    return [m for m in modules if m.startswith(LAZY)]


def test_importing_the_app_loads_no_unconfigured_component() -> None:
    modules = loaded_after("import trioprint.app, trioprint.cli")
    assert "trioprint.components.klippy" in modules  # the check sees the app's modules
    assert lazy_in(modules) == []


def test_an_instance_without_them_loads_none(tmp_path: Path) -> None:
    conf = tmp_path / "moonraker.conf"
    conf.write_text(f"[server]\nklippy_uds_address: {tmp_path}/klippy.sock\n")
    code = (
        "from pathlib import Path\n"
        "from trioprint.app import Instance, make_simulator\n"
        "from trioprint.config import load_config\n"
        f"config = load_config(Path({str(conf)!r}), Path({str(tmp_path)!r}))\n"
        "assert make_simulator(config) is None\n"
        "Instance(config)\n"
    )
    assert lazy_in(loaded_after(code)) == []


def test_configured_ones_are_loaded(tmp_path: Path) -> None:
    conf = tmp_path / "moonraker.conf"
    conf.write_text("[server]\n[update_manager]\n")
    code = (
        "from pathlib import Path\n"
        "from trioprint.app import Instance, make_simulator\n"
        "from trioprint.config import load_config\n"
        f"config = load_config(Path({str(conf)!r}), Path({str(tmp_path)!r}))\n"
        "Instance(config, simulator=make_simulator(config))\n"
    )
    modules = loaded_after(code)
    assert "trioprint.sim.server" in modules
    assert "trioprint.components.update_manager" in modules
