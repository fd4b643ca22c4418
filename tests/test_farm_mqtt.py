"""The farm load test: 20 printers (4 processes of 5 instances) on one mosquitto, a controller
that watches them all and prints on each over MQTT, and the broker restarted mid-run.

Bounded and loopback only; it asserts what must hold (every bridge back, every acknowledged
request answered, every printer's state right), never how fast (bench/bench_farm_mqtt.py
measures that)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from .farm_mqtt import (
    FILENAME,
    Controller,
    controlling,
    farm_processes,
    instance_names,
    print_state,
    wait_ready,
    write_instances,
)
from .live import subprocess_env, trioprint_command
from .mqtt_broker import run_broker

pytestmark = pytest.mark.slow

PRINTERS = 20
PER_PROCESS = 5
#: Generous bounds (a loaded 2-core machine): a hang fails, a slow run does not.
START = 90.0
STEP = 60.0


async def start_prints(controller: Controller, names: list[str]) -> None:
    with trio.fail_after(START):
        await wait_ready(controller)
    with trio.fail_after(STEP):
        start = {"filename": FILENAME}
        ids = {n: controller.request(n, "printer.print.start", start) for n in names}
        for name, req_id in ids.items():
            assert (await controller.response(req_id)).get("result") == "ok", name


async def test_farm_of_20_on_one_broker_survives_a_broker_restart(tmp_path: Path) -> None:
    names = instance_names(PRINTERS)
    async with run_broker(tmp_path / "broker", persistent=True) as broker:
        folders = write_instances(tmp_path / "farm", names, (broker.host, broker.port))
        env = subprocess_env(tmp_path)
        async with (
            controlling(broker.host, broker.port, names) as controller,
            farm_processes(trioprint_command(), names, folders, PER_PROCESS, env, tmp_path),
        ):
            await start_prints(controller, names)
            # every printer's status arrives (status_interval 1) while it prints
            with trio.fail_after(STEP):
                await controller.wait_all(lambda p: print_state(p) == "printing")
                counts = {n: len(p.status_times) for n, p in controller.printers.items()}
                await controller.wait_all(lambda p: len(p.status_times) >= counts[p.name] + 2)

            # the broker goes away mid-run; requests sent meanwhile (QoS 1) wait in the client
            onlines = {n: len(p.online_times) for n, p in controller.printers.items()}
            await broker.stop()
            with trio.fail_after(STEP):
                await controller.wait_state("disconnected")
            spec = {"objects": {"print_stats": None}}
            during = {n: controller.request(n, "printer.objects.query", spec) for n in names}
            await broker.start()

            # every bridge reconnects and says so (a live message, not the retained one)
            with trio.move_on_after(STEP):
                await controller.wait_all(lambda p: len(p.online_times) > onlines[p.name])
            back = [n for n, p in controller.printers.items() if len(p.online_times) > onlines[n]]
            assert back == names
            # every request sent during the outage is answered
            with trio.move_on_after(STEP):
                for req_id in during.values():
                    await controller.response(req_id)
            unanswered = [n for n, i in during.items() if i not in controller.responses]
            assert unanswered == []
            for name, req_id in during.items():
                assert "print_stats" in controller.responses[req_id]["result"]["status"], name
            # every print completes
            with trio.move_on_after(STEP):
                await controller.wait_all(lambda p: print_state(p) == "complete")
            states = {n: print_state(p) for n, p in controller.printers.items()}
            assert states == dict.fromkeys(names, "complete")

            # no printer state is wrong: print_stats agrees with the history, over MQTT
            with trio.fail_after(STEP):
                for name in names:
                    query = await controller.call(name, "printer.objects.query", spec)
                    stats = query["status"]["print_stats"]
                    history = await controller.call(name, "server.history.list", {"limit": 5})
                    jobs = history["jobs"]
                    assert history["count"] == 1, (name, jobs)
                    assert stats["state"] == "complete", name
                    assert stats["filename"] == jobs[0]["filename"] == FILENAME, name
                    assert jobs[0]["status"] == "completed", name
                    assert jobs[0]["print_duration"] == pytest.approx(
                        stats["print_duration"], abs=0.5
                    ), name
                    assert controller.printers[name].status["print_stats"]["state"] == "complete"
            # every request the controller sent got its answer
            assert not controller._pending
