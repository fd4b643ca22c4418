"""printer.print.start of a file that is not there names the file, with Moonraker's error code
(klippy's G-code error: 400), for the simulated klippy and a real one alike (issue #16, item 7)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from trioprint.components.printer import Printer
from trioprint.errors import ApiError

from .test_sim import WAIT, collector, sim_server


async def test_a_missing_file_is_named_in_the_error(tmp_path: Path) -> None:
    async with sim_server(tmp_path) as live, collector(live) as c:
        with trio.fail_after(WAIT):
            missing = await c.call("printer.print.start", {"filename": "parts/nope.gcode"})
            escape = await c.call("printer.print.start", {"filename": "../outside.gcode"})
            # klippy matches names without regard to case: so does the check
            (tmp_path / "gcodes" / "Cube.gcode").write_text("G28\n")
            case = await c.result("printer.print.start", {"filename": "cube.gcode"})
    error = missing["error"]
    assert error["code"] == 400
    assert "parts/nope.gcode" in error["message"]
    assert error["message"].startswith("Unable to open file")
    assert escape["error"]["code"] == 400
    assert "../outside.gcode" in escape["error"]["message"]
    assert case == "ok"


class FakeKlippy:
    def __init__(self) -> None:
        self.scripts: list[str] = []

    async def run_gcode(self, script: str) -> Any:
        self.scripts.append(script)
        return {}


async def test_the_file_is_checked_before_klippy_is_asked() -> None:
    klippy = FakeKlippy()
    printer = Printer(klippy)  # type: ignore[arg-type]

    async def exists(name: str) -> bool:
        return name == "here.gcode"

    printer.gcode_file_exists = exists
    await printer.start_print("here.gcode")
    with pytest.raises(ApiError) as info:
        await printer.start_print("gone.gcode")
    assert info.value.status == 400
    assert info.value.message == 'Unable to open file "gone.gcode": not in the gcodes folder'
    assert klippy.scripts == ['SDCARD_PRINT_FILE FILENAME="here.gcode"']
