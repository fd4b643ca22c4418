"""Queries from the cache, end to end: websocket client -> trioprint -> simulated / real klippy.

The proof that a query did not wait on klippy is a count, not a clock: the link's session
counts every request it sends by method, and ``Klippy.cached_queries`` every query it answered
itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from trioprint.components.klippy import Klippy

from .klippy_real import KLIPPY_PARAMS, KlippyFlavour
from .test_printer_real import client, klippy_direct, printer
from .test_sim import WAIT, collector, sim_server

#: Fields that do not change while the printer idles (an answer from the cache and klippy's
#: own answer a tick later must agree on them exactly).
STATIC: dict[str, list[str] | None] = {
    "webhooks": None,
    "heaters": None,
    "configfile": ["settings"],
    "toolhead": ["axis_minimum", "axis_maximum", "homed_axes", "max_velocity"],
    "print_stats": ["state", "filename"],
    "no_such_object": None,
}
SUBSCRIBED: dict[str, list[str] | None] = {
    **STATIC,
    "toolhead": None,
    "extruder": ["temperature", "target"],
}
N = 200


def sent_queries(klippy: Klippy) -> int:
    assert klippy.session is not None
    return klippy.session.sent["objects/query"]


async def test_sim_answers_covered_queries_from_the_cache(tmp_path: Path) -> None:
    async with sim_server(tmp_path) as live, collector(live) as c:
        klippy = live.instance.klippy
        with trio.fail_after(WAIT):
            await c.result("printer.objects.subscribe", {"objects": SUBSCRIBED})
            direct = await klippy.request("objects/query", {"objects": STATIC})
            before, hits = sent_queries(klippy), klippy.cached_queries
            answers = [
                await c.result("printer.objects.query", {"objects": STATIC}) for _ in range(N)
            ]
        assert sent_queries(klippy) == before  # none of them reached klippy
        assert klippy.cached_queries == hits + N
        for got in answers:
            assert got["status"] == direct["status"]
            assert isinstance(got["eventtime"], float)
        assert answers[0]["status"]["no_such_object"] == {}  # as klippy answers it

        # asking for more than the subscription holds goes to klippy, and agrees with it
        with trio.fail_after(WAIT):
            wider = await c.result("printer.objects.query", {"objects": {"gcode_move": None}})
        assert sent_queries(klippy) == before + 1
        assert {"speed", "speed_factor", "gcode_position"} <= set(wider["status"]["gcode_move"])


async def test_sim_query_after_a_gcode_sees_its_effect(tmp_path: Path) -> None:
    async with sim_server(tmp_path) as live, collector(live) as c:
        with trio.fail_after(WAIT):
            await c.result("printer.objects.subscribe", {"objects": SUBSCRIBED})
            for target in (50, 60, 0):
                await c.result("printer.gcode.script", {"script": f"M104 S{target}"})
                got = await c.result("printer.objects.query", {"objects": {"extruder": ["target"]}})
                assert got["status"]["extruder"]["target"] == target


@pytest.mark.slow
@pytest.mark.parametrize("flavour", KLIPPY_PARAMS)
async def test_real_klippy_cached_answers_equal_direct_queries(
    flavour: KlippyFlavour | None, tmp_path: Path
) -> None:
    async with printer(flavour, tmp_path) as rig, client(rig.live) as c:
        klippy = rig.live.instance.klippy
        with trio.fail_after(20):
            await c.result("printer.objects.subscribe", {"objects": SUBSCRIBED})
            direct: Any = await klippy_direct(rig.klippy, "objects/query", {"objects": STATIC})
            before, hits = sent_queries(klippy), klippy.cached_queries
            answers = [
                await c.result("printer.objects.query", {"objects": STATIC}) for _ in range(N)
            ]
        assert sent_queries(klippy) == before
        assert klippy.cached_queries == hits + N
        for got in answers:
            assert got["status"] == direct["status"]
        assert answers[0]["status"]["no_such_object"] == {}
