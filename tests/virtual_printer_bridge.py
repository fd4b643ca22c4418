"""OctoPrint's VirtualPrinter on a pty, without an OctoPrint server (a test peer).

Run with the python of a venv holding ``octoprint==1.11.8`` (see ``provision_octoprint`` in
noxfile.py; ``TRIOPRINT_OCTOPRINT_PYTHON`` names it)::

    $TRIOPRINT_OCTOPRINT_PYTHON tests/virtual_printer_bridge.py [--no-errors] [--set KEY=JSON]...

It prints the pty's slave path on one line of stdout, then pumps bytes between the
VirtualPrinter (its ``readline()`` / ``write()``, as OctoPrint's serial layer calls them) and the
pty master until its stdin closes (the parent went away) or it is killed.

The VirtualPrinter takes its settings from OctoPrint's own settings API: a ``Settings`` in a
throw-away base folder and a ``PluginSettings`` with the plugin's own defaults, so it runs with
exactly the options it has in OctoPrint (its simulated errors included; ``--no-errors`` turns
them off, ``--set`` overrides any plugin setting, e.g. ``--set sendBusy=true``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import tty
from typing import Any


def make_printer(basedir: str, overrides: dict[str, Any]) -> Any:
    from octoprint.plugin import PluginSettings, plugin_manager
    from octoprint.plugins.virtual_printer import VirtualPrinterPlugin
    from octoprint.plugins.virtual_printer.virtual import VirtualPrinter
    from octoprint.settings import settings

    global_settings = settings(init=True, basedir=basedir)
    # An empty plugin manager: the printer asks it for action hooks (there are none here).
    plugin_manager(init=True, plugin_folders=[], plugin_entry_points=[], plugin_disabled_list=[])
    defaults = VirtualPrinterPlugin().get_settings_defaults()
    plugin_settings = PluginSettings(global_settings, "virtual_printer", defaults=defaults)
    for key, value in overrides.items():
        plugin_settings.set([key], value)
    data_folder = os.path.join(basedir, "data", "virtual_printer")
    os.makedirs(data_folder, exist_ok=True)
    return VirtualPrinter(plugin_settings, _NoProfiles(), data_folder=data_folder, read_timeout=0.5)


class _NoProfiles:
    """The printer profile manager: only asked for with ``m115ReportArea`` on (off here)."""

    def get_current_or_default(self) -> dict[str, Any]:
        return {"volume": {"width": 200, "depth": 200, "height": 200}}


def _to_printer(master: int, printer: Any) -> None:
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            os._exit(0)
        while data:  # its receive buffer takes what fits (partial writes)
            written = printer.write(data)
            data = data[written or 0 :]


def _from_printer(master: int, printer: Any) -> None:
    while True:
        line = printer.readline()
        if not line:
            continue
        try:
            os.write(master, line.rstrip(b"\r\n") + b"\n")
        except OSError:
            os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-errors", action="store_true", help="no simulated errors")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    args = parser.parse_args()
    overrides: dict[str, Any] = {}
    if args.no_errors:
        overrides["simulated_errors"] = []
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    basedir = tempfile.mkdtemp(prefix="vp-bridge-")
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line discipline: a serial device
    slave_path = os.ttyname(slave)
    printer = make_printer(basedir, overrides)
    for target in (_to_printer, _from_printer):
        threading.Thread(target=target, args=(master, printer), daemon=True).start()
    print(slave_path, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    printer.close()
    os._exit(0)


if __name__ == "__main__":
    main()
