"""The ``trioprint`` command.

::

    trioprint [serve] [-c CONFIG] [-d DATA_DIR] [--host H] [--port P] [-v]
    trioprint [serve] --instance [NAME=]DIR [--instance [NAME=]DIR ...] [--host H] [-v]
    trioprint call METHOD [JSON_PARAMS] [--url ws://127.0.0.1:7125/websocket] [--timeout S]
                   [--api-key KEY]
    trioprint --version

Start-up problems are one clear line on stderr and a non-zero exit status, never a traceback;
so are ``call``'s failures (exit statuses: the ``EXIT_*`` constants below).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ._version import __version__
from .datalock import DataFolderLock
from .domain import strictjson
from .errors import ConfigError, StartupError

if TYPE_CHECKING:
    from .app import Options

_Arg = TypeVar("_Arg")

DEFAULT_URL = "ws://127.0.0.1:7125/websocket"

EXIT_OK = 0
EXIT_ERROR = 1  # a JSON-RPC error answer, or a start-up problem
EXIT_UNREACHABLE = 2  # the server could not be reached or answered nonsense
EXIT_TIMEOUT = 3  # `call`: no answer within --timeout

#: `call`'s default wait: beyond the longest commands (the simulator's M109 takes about 80 s).
DEFAULT_CALL_TIMEOUT = 300.0


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is out of range 0-65535")
    return value


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"speed {text} must be a number greater than 0")
    return value


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"timeout {text} must be a number of seconds, 0 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trioprint",
        description="A 3D-printer host server with Moonraker's API, on Trio.",
    )
    parser.add_argument("--version", action="version", version=f"trioprint {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{serve,call}")

    serve = sub.add_parser("serve", help="run the server (the default command)")
    add_serve_arguments(serve)

    call = sub.add_parser("call", help="call one JSON-RPC method and print its result as JSON")
    call.add_argument("method", help="the JSON-RPC method, e.g. server.info")
    call.add_argument("params", nargs="?", default=None, help="params as a JSON object")
    call.add_argument("--url", default=DEFAULT_URL, help=f"websocket URL (default {DEFAULT_URL})")
    call.add_argument(
        "--timeout",
        type=_timeout,
        default=DEFAULT_CALL_TIMEOUT,
        help=f"seconds to wait for the answer (default {DEFAULT_CALL_TIMEOUT:g})",
    )
    call.add_argument(
        "--api-key",
        default=os.environ.get("TRIOPRINT_API_KEY"),
        help="sent as X-Api-Key, for a server that does not trust this address "
        "(default: $TRIOPRINT_API_KEY)",
    )
    return parser


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, help="config file (moonraker.conf format)")
    parser.add_argument(
        "-d",
        "--datapath",
        "--data-dir",
        dest="data_dir",
        type=Path,
        default=None,
        help="data folder (default ~/printer_data)",
    )
    parser.add_argument("--host", help="address to listen on (overrides [server] host)")
    parser.add_argument("--port", type=_port, help="port to listen on (overrides [server] port)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--instance",
        action="append",
        default=None,
        metavar="[NAME=]DIR",
        help="serve one printer from data folder DIR (its config DIR/config/trioprint.conf); "
        "repeat for several printers in one process (NAME: in logs and errors, default the "
        "folder's name)",
    )
    parser.add_argument(
        "--sim",
        nargs="?",
        const="config",
        default=None,
        choices=("config", "klipper", "marlin"),
        metavar="FIRMWARE",
        help="run the simulated printer even if [server] klippy_uds_address or [serial] is set "
        "(FIRMWARE: klipper or marlin, default [simulator] firmware)",
    )
    parser.add_argument(
        "--sim-speed",
        type=_speed,
        default=None,
        metavar="N",
        help="simulated time runs N times faster (overrides [simulator] speed)",
    )
    parser.add_argument(
        "--frontend",
        type=Path,
        default=None,
        metavar="DIR",
        help="serve this built web frontend (Mainsail, Fluidd) at / (overrides [frontend] path)",
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = build_parser()
    argv = list(argv)
    # `serve` is the default command: `trioprint -d X` means `trioprint serve -d X`.
    if not argv or (
        argv[0] not in ("serve", "call") and argv[0] not in ("-h", "--help", "--version")
    ):
        argv.insert(0, "serve")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "call":
        return run_call(
            args.method, args.params, url=args.url, timeout=args.timeout, api_key=args.api_key
        )
    return run_serve(args)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception that is not a group (nurseries nest groups)."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


def _fail(message: str, status: int = EXIT_ERROR) -> int:
    print(f"trioprint: error: {message}", file=sys.stderr)
    return status


def run_serve(args: argparse.Namespace) -> int:
    if args.instance:
        return run_farm(args)
    data_dir = (args.data_dir or Path("~/printer_data")).expanduser()
    if args.config is not None and not args.config.is_file():
        return _fail(f"config file {args.config} does not exist or is not a file")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail(f"cannot create data folder {data_dir}: {exc.strerror or exc}")
    # the data folder belongs to one process: locked before anything in it is touched
    lock = DataFolderLock(data_dir)
    try:
        lock.acquire()
    except StartupError as exc:
        return _fail(str(exc))
    try:
        return _serve_locked(args, data_dir)
    finally:
        lock.release()


def _serve_locked(args: argparse.Namespace, data_dir: Path) -> int:
    from .app import main as app_main
    from .logs import setup_logging

    try:
        (data_dir / "logs").mkdir(exist_ok=True)
    except OSError as exc:
        return _fail(f"cannot create data folder {data_dir}: {exc.strerror or exc}")
    options = _options(args, data_dir, config_file=args.config, port=args.port)
    stop_logging = setup_logging(data_dir / "logs", verbose=args.verbose)
    return _run_then_stop_logging(app_main, options, stop_logging)


def _options(
    args: argparse.Namespace,
    data_dir: Path,
    *,
    config_file: Path | None = None,
    port: int | None = None,
) -> Options:
    """The command line's options for one data folder (the server's, or a farm instance's)."""
    from .app import Options

    return Options(
        data_dir=data_dir.resolve(),
        config_file=config_file,
        host=args.host,
        port=port,
        verbose=args.verbose,
        sim=args.sim is not None,
        sim_speed=args.sim_speed,
        sim_firmware=None if args.sim in (None, "config") else args.sim,
        frontend=args.frontend.expanduser().absolute() if args.frontend else None,
    )


def _run_then_stop_logging(
    main: Callable[[_Arg], Awaitable[object]], arg: _Arg, stop_logging: Callable[[], None]
) -> int:
    """``trio.run(main, arg)``, logging stopped after it: a config or startup error is the exit
    status and message, Ctrl-C a clean exit."""
    problem: str | None = None
    try:
        trio.run(main, arg)
    except* (ConfigError, StartupError) as group:
        problem = str(_first_leaf(group))
    except* KeyboardInterrupt:
        pass
    finally:
        stop_logging()
    return EXIT_OK if problem is None else _fail(problem)


def run_farm(args: argparse.Namespace) -> int:
    """``--instance`` given: one process serving each instance's printer (see trioprint.farm)."""
    for flag, value in (("-c/--config", args.config), ("-d/--datapath", args.data_dir)):
        if value is not None:
            return _fail(f"{flag} cannot be combined with --instance: each DIR has its own")
    if args.port is not None:
        return _fail("--port cannot be combined with --instance: each instance's [server] port")
    # each data folder belongs to one process: locked before anything in it is touched
    locks: list[DataFolderLock] = []
    try:
        return _run_farm_locked(args, locks)
    finally:
        for lock in locks:
            lock.release()


def _run_farm_locked(args: argparse.Namespace, locks: list[DataFolderLock]) -> int:
    from .farm import Member, farm_main, parse_instance
    from .logs import setup_logging

    members: list[Member] = []
    for text in args.instance:
        try:
            name, data_dir = parse_instance(text)
        except ValueError as exc:
            return _fail(str(exc))
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return _fail(f"instance {name!r}: cannot create data folder {data_dir}: {exc}")
        # a folder named twice is the farm's own check to report (naming both instances)
        if all(lock.path.parent.resolve() != data_dir.resolve() for lock in locks):
            lock = DataFolderLock(data_dir)
            try:
                lock.acquire()
            except StartupError as exc:
                return _fail(f"instance {name!r}: {exc}")
            locks.append(lock)
        try:
            (data_dir / "logs").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return _fail(f"instance {name!r}: cannot create data folder {data_dir}: {exc}")
        members.append(Member(name, _options(args, data_dir)))
    stop_logging = setup_logging(
        None,
        verbose=args.verbose,
        instance_dirs={m.name: m.options.data_dir / "logs" for m in members},
    )
    return _run_then_stop_logging(farm_main, members, stop_logging)


# --- trioprint call ------------------------------------------------------------------------


def run_call(
    method: str,
    params_text: str | None,
    *,
    url: str,
    timeout: float,
    api_key: str | None = None,
) -> int:
    params: Any = None
    if params_text is not None:
        try:
            params = strictjson.loads(params_text)
        except ValueError as exc:
            return _fail(f"JSON_PARAMS is not valid JSON: {exc}")
        if not isinstance(params, dict):
            return _fail("JSON_PARAMS must be a JSON object")
    problem: str | None = None
    reply: dict[str, Any] = {}
    status = EXIT_UNREACHABLE
    try:
        reply = trio.run(_call, url, method, params, timeout, api_key)
    except* _TimedOut:
        problem, status = f"no answer from {url} within {timeout:g} s", EXIT_TIMEOUT
    except* (OSError, _Unreachable) as group:
        problem = f"cannot reach {url}: {_describe(_first_leaf(group))}"
    if problem is not None:
        return _fail(problem, status)
    if "error" in reply:
        err = reply["error"]
        if isinstance(err, dict):
            return _fail(f"{err.get('message')} (code {err.get('code')})")
        return _fail(f"{err}")
    try:
        json.dump(reply.get("result"), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `trioprint call ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


class _Unreachable(Exception):
    pass


class _TimedOut(Exception):
    pass


def _describe(exc: BaseException) -> str:
    """A networking failure in a few words: the cause, not the wrapper's class name."""
    from trio_websocket import ConnectionRejected

    seen: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:  # the exception, its causes, and the attempts in a group (one per address)
        current = pending.pop(0)
        seen.append(current)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        if current.__cause__ is not None:
            pending.append(current.__cause__)
    for item in seen:
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, ConnectionRejected):
            return f"the server refused the websocket (HTTP {item.status_code})"
    for item in seen:
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
    for item in seen:
        if str(item):
            return str(item)
    return type(exc).__name__


async def _call(
    url: str, method: str, params: Any, seconds: float, api_key: str | None = None
) -> dict[str, Any]:
    from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": os.getpid()}
    if params is not None:
        request["params"] = params
    headers = [(b"X-Api-Key", api_key.encode())] if api_key else None
    reply: dict[str, Any] | None = None
    with trio.move_on_after(seconds):
        try:
            # the connect is bounded by `seconds` here, not by trio-websocket's own 60 s
            async with open_websocket_url(
                url, extra_headers=headers, connect_timeout=math.inf, disconnect_timeout=1
            ) as ws:
                await ws.send_message(strictjson.dumps(request))
                while reply is None:
                    message = json.loads(await ws.get_message())
                    if isinstance(message, dict) and message.get("id") == request["id"]:
                        reply = message
        except (HandshakeError, ConnectionClosed, ValueError) as exc:
            if reply is None:
                raise _Unreachable(_describe(exc)) from exc
    if reply is None:
        raise _TimedOut
    return reply


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
