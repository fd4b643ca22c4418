"""Fidelity proof: the reference Moonraker 0.11 (from PyPI) in front of the simulated klippy.

If the simulator speaks klippy's API well enough for Moonraker itself, it is a faithful stand-in
for the tests of trioprint's link. ``nox -s tests`` installs Moonraker in a venv of its own and
names its executable in ``TRIOPRINT_MOONRAKER``; without it these tests are skipped (and fail
under CI, like the real-klippy tests: see klippy_real.py). The simulator runs in-process, so
its own view (``SimKlippy.machine``) can be compared with what Moonraker serves.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import trio

from trioprint.sim.server import SimKlippy

from .klippy_real import _in_ci, open_logged_process, stop_process

MOONRAKER = os.environ.get("TRIOPRINT_MOONRAKER", "")
#: Real seconds: every wait in these tests is bounded by this.
WAIT = 30.0
#: How long Moonraker may take to exit after SIGTERM before it gets SIGKILL.
#: The simulated machine runs this many times faster than real time (heating takes ~1 s).
SPEED = 50.0
POLL_INTERVAL = 0.1

_NOT_INSTALLED = (
    "Moonraker 0.11 not installed: run the tests through nox (it sets TRIOPRINT_MOONRAKER)"
)

pytestmark = [pytest.mark.slow]
if not MOONRAKER and not _in_ci():
    # A skip raised inside a Trio test loses its reason (see klippy_real.py): skip by a mark.
    pytestmark.append(pytest.mark.skip(reason=_NOT_INSTALLED))

# After bench/bench_api.py's MOONRAKER_CONF and ../shared/klippy-sim/moonraker.conf.
MOONRAKER_CONF = """\
[server]
host: 127.0.0.1
port: {port}
klippy_uds_address: {socket}

[machine]
provider: none

[authorization]
trusted_clients:
  127.0.0.0/8

[announcements]
enable_moonlight: False

[history]
"""

PRINT = """\
; heat first: the simulator (like klippy) refuses to extrude below min_extrude_temp
M140 S60
M109 S200
G28
M83
G1 Z0.2 F600
G1 X20 Y10 E1.5 F3000
G1 X20 Y20 E1.5
G1 X10 Y20 E1.5
G1 X10 Y10 E1.5
M104 S0
M140 S0
"""

#: Moonraker's own view of klippy needs these objects (``missing_klippy_requirements``).
REQUIRED_OBJECTS = {"virtual_sdcard", "display_status", "pause_resume"}


def _require_moonraker() -> Path:
    if not MOONRAKER:
        pytest.fail(
            "Moonraker not installed, and CI must not skip the simulator fidelity test: "
            "run the tests through nox (it sets TRIOPRINT_MOONRAKER)"
        )
    exe = Path(MOONRAKER)
    assert exe.exists(), f"TRIOPRINT_MOONRAKER={MOONRAKER} does not exist"
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short directory: AF_UNIX paths (the sim's socket, Moonraker's) have at most 107 bytes,
    and pytest's tmp_path can be longer."""
    path = Path(tempfile.mkdtemp(prefix="tp-moon-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Rig(NamedTuple):
    sim: SimKlippy
    moonraker: trio.Process
    http: httpx.AsyncClient
    data: Path
    log_path: Path
    output_path: Path

    def log_tail(self, n: int = 80) -> str:
        """The end of Moonraker's log (else of its stdout: it logs to both once it can)."""
        for path in (self.log_path, self.output_path):
            try:
                lines = path.read_text(errors="replace").splitlines()[-n:]
            except FileNotFoundError:
                continue
            if lines:
                return f"--- {path} (last {len(lines)} lines) ---\n" + "\n".join(lines)
        return "(Moonraker wrote no log)"

    async def get(self, url: str) -> Any:
        response = await self.http.get(url)
        assert response.status_code == 200, f"GET {url}: {response.status_code} {response.text}"
        return response.json()["result"]

    async def post(self, url: str) -> Any:
        response = await self.http.post(url)
        assert response.status_code == 200, f"POST {url}: {response.status_code} {response.text}"
        return response.json()["result"]

    async def query(self, name: str) -> dict[str, Any]:
        """``/printer/objects/query?<name>`` (all fields), as a web client asks it."""
        result = await self.get(f"/printer/objects/query?{urllib.parse.quote(name)}")
        assert set(result["status"]) == {name}, result
        status: dict[str, Any] = result["status"][name]
        return status

    async def poll(self, url: str, done: Callable[[Any], bool]) -> Any:
        """GET ``url`` until ``done(result)`` (bounded by WAIT); the last result."""
        with trio.fail_after(WAIT):
            while True:
                result = await self.get(url)
                if done(result):
                    return result
                await trio.sleep(POLL_INTERVAL)

    async def wait_ready(self) -> dict[str, Any]:
        """Poll /server/info until Moonraker sees klippy ``ready``; the last info.

        Then wait for the temperature store too: Moonraker says "ready" before its
        klippy_ready handlers have run, and a print started while data_store subscribes to
        the heaters is missed by Moonraker's job_state/history (Moonraker 0.11 pushes the
        change it detects during a subscription to every subscriber but the one asking).
        """
        info: dict[str, Any] = await self.poll(
            "/server/info", lambda info: info["klippy_state"] == "ready"
        )
        await self.poll("/server/temperature_store", lambda store: "extruder" in store)
        return info

    async def wait_listed(self, filename: str) -> None:
        """Until Moonraker's file manager lists ``filename`` in the gcodes root."""
        await self.poll(
            "/server/files/list?root=gcodes", lambda files: filename in {f["path"] for f in files}
        )


async def _wait_http(http: httpx.AsyncClient, process: trio.Process, rig: Rig) -> None:
    with trio.fail_after(WAIT):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"Moonraker exited with {process.returncode}\n{rig.log_tail()}")
            try:
                await http.get("/server/info")
            except httpx.TransportError:
                await trio.sleep(POLL_INTERVAL)
                continue
            return


@contextlib.asynccontextmanager
async def moonraker_on_sim(workdir: Path, conf_text: str = MOONRAKER_CONF) -> AsyncIterator[Rig]:
    """The simulator on ``workdir/klippy.sock`` and Moonraker in front of it, answering HTTP.

    Both are stopped on exit. If the body raises, Moonraker's log tail is printed.
    """
    exe = _require_moonraker()
    data = workdir / "data"
    for sub in ("gcodes", "misc", "logs", "config"):
        (data / sub).mkdir(parents=True)
    (data / "misc" / "usb.ids").write_text("")  # else Moonraker downloads it at start-up
    sock = workdir / "klippy.sock"
    port = _free_port()
    conf = workdir / "moonraker.conf"
    conf.write_text(conf_text.format(port=port, socket=sock))
    log_path = data / "logs" / "moonraker.log"
    output_path = workdir / "moonraker.out"
    sim = SimKlippy(sock, data / "gcodes", speed=SPEED)
    process: trio.Process | None = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(sim.run)
            process = await open_logged_process(
                [os.fspath(exe), "-d", os.fspath(data), "-c", os.fspath(conf), "-v"],
                workdir,
                output_path,
            )
            base_url = f"http://127.0.0.1:{port}"
            try:
                async with httpx.AsyncClient(base_url=base_url, timeout=WAIT) as http:
                    rig = Rig(sim, process, http, data, log_path, output_path)
                    await _wait_http(http, process, rig)
                    try:
                        yield rig
                    except BaseException:
                        print(f"Moonraker (pid {process.pid}) log tail:\n{rig.log_tail()}")
                        raise
            finally:
                # The simulator stops first, then Moonraker: the other way round Moonraker
                # may reset the connection, and a reset crashes the simulator (a src bug).
                nursery.cancel_scope.cancel()
    finally:
        if process is not None:
            with trio.CancelScope(shield=True):
                await stop_process(process)


def _sim_info(sim: SimKlippy) -> dict[str, Any]:
    assert sim.machine is not None
    return sim.machine.info()


def _sim_status(sim: SimKlippy, names: list[str]) -> dict[str, dict[str, Any]]:
    assert sim.machine is not None
    return sim.machine.query(dict.fromkeys(names))


async def test_moonraker_sees_klippy_ready(workdir: Path) -> None:
    async with moonraker_on_sim(workdir) as rig:
        info = await rig.wait_ready()
        assert info["klippy_connected"] is True
        assert info["failed_components"] == [], info
        assert info["missing_klippy_requirements"] == [], info
        # klippy's own info, passed through
        printer = await rig.get("/printer/info")
        assert printer["state"] == "ready"
        assert printer["software_version"] == _sim_info(rig.sim)["software_version"]
        # Moonraker took the gcodes folder from [virtual_sdcard] path: it lists our file
        (rig.data / "gcodes" / "probe.gcode").write_text("G28\n")
        await rig.wait_listed("probe.gcode")


async def test_moonraker_queries_every_object(workdir: Path) -> None:
    async with moonraker_on_sim(workdir) as rig:
        await rig.wait_ready()
        names = (await rig.get("/printer/objects/list"))["objects"]
        assert rig.sim.machine is not None
        assert names == rig.sim.machine.object_names()
        assert set(names) >= REQUIRED_OBJECTS
        for name in names:
            before = _sim_status(rig.sim, [name])[name]
            served = await rig.query(name)
            after = _sim_status(rig.sim, [name])[name]
            assert isinstance(served, dict), (name, served)
            # an object with no fields (a gcode_macro with no variables) is {} in klippy too
            assert served or not before, f"{name}: Moonraker served {served}, sim has {before}"
            assert set(served) == set(before), name
            if before == after:  # static while we asked: Moonraker must pass it on verbatim
                assert served == before, name
        # several objects and chosen fields in one query
        result = await rig.get("/printer/objects/query?toolhead=position,homed_axes&webhooks")
        assert set(result["status"]["toolhead"]) == {"position", "homed_axes"}
        assert result["status"]["webhooks"]["state"] == "ready"


async def test_moonraker_prints_to_complete(workdir: Path) -> None:
    async with moonraker_on_sim(workdir) as rig:
        await rig.wait_ready()
        (rig.data / "gcodes" / "square.gcode").write_text(PRINT)
        await rig.wait_listed("square.gcode")  # and has its metadata, as after an upload
        await rig.post("/printer/print/start?filename=square.gcode")
        result = await rig.poll(
            "/printer/objects/query?print_stats",
            lambda r: r["status"]["print_stats"]["state"] in ("complete", "error", "cancelled"),
        )
        stats = result["status"]["print_stats"]
        assert stats["state"] == "complete", stats
        assert stats["filename"] == "square.gcode"
        assert stats["filament_used"] > 0
        sdcard = await rig.query("virtual_sdcard")
        assert sdcard["progress"] == 1.0
        assert sdcard["is_active"] is False
        assert sdcard["file_position"] == sdcard["file_size"] == len(PRINT.encode())
        # Moonraker's history learnt of the job from its print_stats subscription
        history = await rig.poll(
            "/server/history/list?limit=1",
            lambda r: bool(r["jobs"]) and r["jobs"][0]["status"] != "in_progress",
        )
        jobs = history["jobs"]
        assert jobs[0]["filename"] == "square.gcode"
        assert jobs[0]["status"] == "completed", jobs[0]
