"""Farm over MQTT benchmark: N printers on one mosquitto (run by ``nox -s bench``).

The set-up of tests/test_farm_mqtt.py (tests/farm_mqtt.py): N (default 20) trioprint
instances, in processes of 5 (``trioprint --instance NAME=DIR ...``), each on its embedded
simulated printer (``[simulator] speed: 50``), bridged to one mosquitto (persistent sessions,
``status_interval: 1``, status of print_stats and toolhead); a controller subscribed to every
printer's status, its answers and its online state starts a print on each through the JSON-RPC
API over MQTT, and the broker is stopped mid-run for ``--outage`` seconds and started again.

Figures, over the run (the prints' start to the last print's end):

* messages/s through the broker, counted at the controller (what it receives);
* CPU seconds per printer: utime + stime of the trioprint processes (``/proc/<pid>/stat``)
  over the run, divided by N, and as a percentage of one core;
* reconnect time: from the broker accepting connections again to every instance's live (not
  retained) ``{instance}/moonraker/status`` ``online`` at the controller, which itself
  reconnects within 0.05 s (its back-off is shortened; the instances' is the shipped one,
  0.25 s doubling to 8 s, so the figure depends on how long the broker was away).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the shared set-up in tests/ (the bench session installs pytest)

from bench_farm import cpu_seconds  # noqa: E402
from tests import farm_mqtt  # noqa: E402
from tests.live import subprocess_env  # noqa: E402
from tests.mqtt_broker import run_broker  # noqa: E402

from trioprint.transport import mqtt as mqtt_transport  # noqa: E402

START_TIMEOUT = 120.0
RUN_TIMEOUT = 300.0


async def bench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    mqtt_transport.MIN_BACKOFF = mqtt_transport.MAX_BACKOFF = 0.05  # the controller's only
    names = farm_mqtt.instance_names(args.printers)
    command = [args.python, "-m", "trioprint"]
    async with run_broker(workdir / "broker", persistent=True) as broker:
        folders = farm_mqtt.write_instances(
            workdir / "farm", names, (broker.host, broker.port), speed=args.speed
        )
        env = subprocess_env(workdir)
        async with (
            farm_mqtt.controlling(broker.host, broker.port, names) as controller,
            farm_mqtt.farm_processes(command, names, folders, args.per_process, env, workdir) as ps,
        ):
            pids = [p.pid for p in ps]
            with trio.fail_after(START_TIMEOUT):
                await farm_mqtt.wait_ready(controller)
            cpu0, messages0, t0 = sum(map(cpu_seconds, pids)), controller.messages, time.monotonic()
            with trio.fail_after(RUN_TIMEOUT):
                start = {"filename": farm_mqtt.FILENAME}
                ids = [controller.request(n, "printer.print.start", start) for n in names]
                for req_id in ids:
                    assert (await controller.response(req_id)).get("result") == "ok"
                await controller.wait_all(lambda p: farm_mqtt.print_state(p) == "printing")
                await trio.sleep(args.before)
                onlines = {n: len(p.online_times) for n, p in controller.printers.items()}
                await broker.stop()
                await trio.sleep(args.outage)
                spec = {"objects": {"print_stats": None}}
                during = [controller.request(n, "printer.objects.query", spec) for n in names]
                await broker.start()
                back_up = trio.current_time()
                await controller.wait_all(lambda p: len(p.online_times) > onlines[p.name])
                reconnect = max(p.online_times[onlines[n]] for n, p in controller.printers.items())
                for req_id in during:
                    await controller.response(req_id)
                await controller.wait_all(lambda p: farm_mqtt.print_state(p) == "complete")
            cpu1, messages1, t1 = sum(map(cpu_seconds, pids)), controller.messages, time.monotonic()
    window = t1 - t0
    cpu = cpu1 - cpu0
    return {
        "printers": args.printers,
        "processes": len(pids),
        "run_s": round(window, 1),
        "outage_s": args.outage,
        "messages": messages1 - messages0,
        "messages_per_s": round((messages1 - messages0) / window, 1),
        "cpu_s_per_printer": round(cpu / args.printers, 3),
        "cpu_percent_per_printer": round(100 * cpu / args.printers / window, 2),
        "reconnect_s": round(reconnect - back_up, 2),
        "duplicate_responses": controller.duplicates,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--python", default=sys.executable, help="interpreter with trioprint")
    parser.add_argument("--printers", type=int, default=20)
    parser.add_argument("--per-process", type=int, default=5, help="instances per process")
    parser.add_argument("--speed", type=float, default=50.0, help="[simulator] speed")
    parser.add_argument("--before", type=float, default=3.0, help="seconds printing before")
    parser.add_argument("--outage", type=float, default=2.0, help="seconds the broker is down")
    parser.add_argument("--seconds", type=float, help="ignored (the other benches' option)")
    parser.add_argument("--moonraker-bin", help="ignored (the other benches' option)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-farm-mqtt-") as tmp:
        result = trio.run(bench, args, Path(tmp))
    print(json.dumps(result))
    print(
        f"\n{result['printers']} printers in {result['processes']} processes on one mosquitto, "
        f"a print on each, the broker down {result['outage_s']:g} s mid-run "
        f"({result['run_s']:g} s run)\n"
        f"messages/s through the broker (at the controller): {result['messages_per_s']:.1f}\n"
        f"CPU per printer: {result['cpu_s_per_printer']:.3f} s "
        f"({result['cpu_percent_per_printer']:.2f} % of a core)\n"
        f"reconnect time (broker up -> every instance online): {result['reconnect_s']:.2f} s"
    )
    print(f"bench took {time.monotonic() - began:.0f} s on {os.cpu_count()} cores")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
