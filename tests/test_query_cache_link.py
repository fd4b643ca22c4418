"""The link answers covered ``objects/query`` requests from its cache (against the klippy double).

Counting is on both sides: what the double received and what the link's session sent.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trioprint.errors import ApiError

from .test_klippy_link import LIMIT, harness


def queries(h: Any) -> int:
    return int(h.double.methods().count("objects/query"))


async def test_covered_queries_never_reach_klippy(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
            await h.klippy.subscribe(h.connection(), {"toolhead": None, "gcode_move": ["speed"]})
            asked = {"toolhead": ["position", "homed_axes"], "gcode_move": ["speed"]}
            direct = await h.klippy.request("objects/query", {"objects": asked})
            before = queries(h)
            answers = [await h.klippy.query(asked) for _ in range(200)]
        assert queries(h) == before
        assert h.klippy.session is not None
        assert h.klippy.session.sent["objects/query"] == before
        assert h.klippy.cached_queries == 200
        assert all(a == direct for a in answers)  # same eventtime too: nothing changed

        await h.double.push_status({"toolhead": {"position": [1.0, 2.0, 3.0, 0.0]}})
        await trio.testing.wait_all_tasks_blocked()
        got = await h.klippy.query({"toolhead": None})
        assert got == {
            "eventtime": h.double.eventtime,
            "status": h.double._query({"toolhead": None})["status"],
        }
        assert queries(h) == before


async def test_uncovered_queries_are_forwarded(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
            await h.klippy.subscribe(h.connection(), {"toolhead": ["position"]})
            before = queries(h)
            # all fields of an object subscribed with a list; a field not subscribed; an
            # object nobody subscribed
            for asked in (
                {"toolhead": None},
                {"toolhead": ["position", "print_time"]},
                {"gcode_move": ["speed"]},
            ):
                assert await h.klippy.query(asked) == h.double._query(asked)
            assert queries(h) == before + 3
            assert h.klippy.cached_queries == 0

            # an internal consumer's fields (like history's print_stats) count for just those
            h.klippy.set_internal_subscription(
                "probe", {"gcode_move": ["speed"]}, lambda d, t: None
            )
            assert await h.klippy.query({"gcode_move": ["speed"]}) == h.double._query(
                {"gcode_move": ["speed"]}
            )
            assert queries(h) == before + 4  # not subscribed with klippy yet
            await h.klippy.resubscribe()
            assert await h.klippy.query({"gcode_move": ["speed"]}) == h.double._query(
                {"gcode_move": ["speed"]}
            )
            assert h.klippy.cached_queries == 1
            await h.klippy.query({"gcode_move": None})
            assert queries(h) == before + 5
            # the temperature store subscribes its sensors whole
            assert await h.klippy.query({"extruder": None}) == h.double._query({"extruder": None})
        assert queries(h) == before + 5
        assert h.klippy.cached_queries == 2


async def test_after_a_write_queries_are_forwarded_until_the_next_push(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
            await h.klippy.subscribe(h.connection(), {"extruder": None})
            asked = {"extruder": ["target"]}
            await h.klippy.query(asked)
            assert h.klippy.cached_queries == 1
            # klippy ran the command; its push of the new target is still to come
            h.double.status["extruder"]["target"] = 200.0
            await h.klippy.run_gcode("M104 S200")
            before = queries(h)
            got = await h.klippy.query(asked)
            assert got["status"] == {"extruder": {"target": 200.0}}
            assert queries(h) == before + 1  # not the stale cached 0.0
            await h.double.push_status({"extruder": {"target": 200.0}})
            await trio.testing.wait_all_tasks_blocked()
            got = await h.klippy.query(asked)
        assert got["status"] == {"extruder": {"target": 200.0}}
        assert queries(h) == before + 1
        assert h.klippy.cached_queries == 2


async def test_a_failed_write_also_waits_for_a_push(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
            await h.klippy.subscribe(h.connection(), {"toolhead": None})
            await h.klippy.emergency_stop()
            await trio.testing.wait_all_tasks_blocked()
            # the double pushed the shutdown: the link is no longer ready, queries go to klippy
            before = queries(h)
            await h.klippy.query({"toolhead": ["position"]})
            assert queries(h) == before + 1
            with pytest.raises(ApiError):
                await h.klippy.run_gcode("G28")  # "Printer is shutdown"
        assert not h.klippy._freshness.fresh


async def test_disconnected_queries_fail_as_before(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
            await h.klippy.subscribe(h.connection(), {"toolhead": None})
            await h.double.drop(h.double.peers[0])
            await h.until_state("disconnected")
            with pytest.raises(ApiError) as caught:
                await h.klippy.query({"toolhead": None})
        assert caught.value.status == 503
        assert h.klippy.cached_queries == 0


async def test_not_ready_means_forwarded(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
            await h.klippy.subscribe(h.connection(), {"toolhead": None})
            await h.double.push_status({"webhooks": {"state": "shutdown"}})
            await trio.testing.wait_all_tasks_blocked()
            assert h.klippy.state == "shutdown"
            before = queries(h)
            await h.klippy.query({"toolhead": None})
        assert queries(h) == before + 1
