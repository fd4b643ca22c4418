"""Logging: to stderr and to ``<data>/logs/trioprint.log`` with rotation.

File writes happen in a :class:`logging.handlers.QueueListener` thread, so a slow disk never
blocks the event loop. :func:`rollover` (``server.logs.rollover``) goes through the same queue.

Several instances in one process (``trioprint serve --instance ...``): each instance's tasks
run with :data:`current_instance` set to its name (Trio tasks and worker threads inherit it);
every record is stamped with it, shown as ``<name>`` on stderr, and written to that instance's
own ``<data>/logs/trioprint.log`` (records of no instance go to every file).
"""

from __future__ import annotations

import functools
import logging
import logging.handlers
import queue
import sys
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s [%(name)s] %(message)s"
MAX_BYTES = 5 * 1024 * 1024
BACKUPS = 4
#: The instance the running task belongs to (None: a single-instance process, or the farm).
current_instance: ContextVar[str | None] = ContextVar("trioprint_instance", default=None)
#: Roll each log file over, by instance name (None: the single instance's), while
#: :func:`setup_logging` has them installed.
_rollovers: dict[str | None, Callable[[], None]] = {}
_log_files: dict[str | None, Path] = {}
#: Seconds a rollover waits for the writer thread (it writes what was logged before first).
ROLLOVER_TIMEOUT = 10.0


class RolloverError(Exception):
    """The log cannot be rolled over; the message says why."""


class _RolloverRequest(logging.LogRecord):
    """Put in the queue like a record: the file handler rolls over when it reaches it, so
    everything logged before the request is in the old file, everything after in the new."""

    def __init__(self, instance: str | None) -> None:
        super().__init__("trioprint.logs", logging.CRITICAL, __file__, 0, "rollover", None, None)
        self.instance = instance
        self.done = threading.Event()
        self.error: BaseException | None = None


class _FileHandler(logging.handlers.RotatingFileHandler):
    #: The instance whose file this is (None: every record's).
    instance: str | None = None

    def handle(self, record: logging.LogRecord) -> bool:
        if not isinstance(record, _RolloverRequest):
            owner = getattr(record, "instance", None)
            if self.instance is not None and owner is not None and owner != self.instance:
                return False
            return super().handle(record)
        if record.instance != self.instance:
            return False
        try:
            self.acquire()
            try:
                self.doRollover()
            finally:
                self.release()
        except Exception as exc:  # an OSError: told to the caller
            record.error = exc
        finally:
            record.done.set()
        return True


def _not_a_request(record: logging.LogRecord) -> bool:
    return not isinstance(record, _RolloverRequest)


class _Formatter(logging.Formatter):
    """:data:`FORMAT`, with ``<name>`` before the logger's name for an instance's record."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        instance = getattr(record, "instance", None)
        if instance is None:
            return text
        head, sep, tail = text.partition(" [")
        return f"{head} <{instance}>{sep}{tail}" if sep else f"<{instance}> {text}"


def _stamp(record: logging.LogRecord) -> bool:
    """Tag the record with the instance of the task logging it (in the logging thread)."""
    if not hasattr(record, "instance"):
        record.instance = current_instance.get()
    return True


def log_file() -> Path | None:
    """The file the current instance logs to, if it logs to one."""
    return _log_files.get(current_instance.get())


def rollover() -> None:
    """Start a new log file for the current instance now, as a rotation does, after what was
    logged so far is written (blocking: run it in a worker thread; the instance is the
    caller's, which Trio's worker threads inherit)."""
    request = _rollovers.get(current_instance.get())
    if request is None:
        raise RolloverError("File Logging Disabled")
    request()


def setup_logging(
    log_dir: Path | None,
    *,
    verbose: bool = False,
    instance_dirs: Mapping[str, Path] | None = None,
) -> Callable[[], None]:
    """Install the handlers on the root logger; returns a function that flushes and removes them.

    ``log_dir`` holds the single instance's file; ``instance_dirs`` the log folder of each
    named instance (a farm), each file getting that instance's records.
    """
    level = logging.DEBUG if verbose else logging.INFO
    formatter = _Formatter(FORMAT)
    handlers: list[logging.Handler] = []
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
    handlers.append(console)
    files: dict[str | None, _FileHandler] = {}
    folders: dict[str | None, Path] = {}
    folders.update((instance_dirs or {}).items())
    if log_dir is not None:
        folders[None] = log_dir
    for name, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        file_handler = _FileHandler(
            folder / "trioprint.log", maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
        )
        file_handler.instance = name
        file_handler.setFormatter(formatter)
        handlers.append(file_handler)
        files[name] = file_handler
    console.addFilter(_not_a_request)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    queue_handler = logging.handlers.QueueHandler(records)
    queue_handler.addFilter(_stamp)
    listener = logging.handlers.QueueListener(records, *handlers, respect_handler_level=True)
    root = logging.getLogger()
    root.setLevel(level)
    root.addHandler(queue_handler)
    # hypercorn logs every connection problem at INFO; keep those at debug level only.
    logging.getLogger("hypercorn.error").setLevel(logging.DEBUG if verbose else logging.WARNING)
    listener.start()

    def roll_over(name: str | None) -> None:
        request = _RolloverRequest(name)
        records.put(request)
        if not request.done.wait(ROLLOVER_TIMEOUT):
            raise RolloverError("the log writer did not answer")
        if request.error is not None:
            raise RolloverError(f"cannot roll the log over: {request.error}")

    installed: dict[str | None, Callable[[], None]] = {}
    for name, handler in files.items():
        installed[name] = functools.partial(roll_over, name)
        _rollovers[name] = installed[name]
        _log_files[name] = Path(handler.baseFilename)

    def stop() -> None:
        for name, request in installed.items():
            if _rollovers.get(name) is request:
                del _rollovers[name]
                _log_files.pop(name, None)
        root.removeHandler(queue_handler)
        listener.stop()
        for handler in handlers:
            handler.close()

    return stop


def open_log_file(path: Path, logger: logging.Logger, banner: str) -> Callable[[], None]:
    """Write ``logger``'s records (only them: it stops propagating) to ``path``, rotated.

    ``banner`` is written at once, so the file exists (with it) when this returns; later
    records go through a queue to a writer thread. Returns the function that flushes and
    closes it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.emit(logger.makeRecord(logger.name, logging.INFO, "", 0, banner, (), None))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    queue_handler = logging.handlers.QueueHandler(records)
    listener = logging.handlers.QueueListener(records, handler)
    logger.addHandler(queue_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    listener.start()

    def stop() -> None:
        logger.removeHandler(queue_handler)
        listener.stop()
        handler.close()

    return stop
