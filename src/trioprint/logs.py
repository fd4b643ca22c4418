"""Logging: to stderr and to ``<data>/logs/trioprint.log`` with rotation.

File writes happen in a :class:`logging.handlers.QueueListener` thread, so a slow disk never
blocks the event loop. :func:`rollover` (``server.logs.rollover``) goes through the same queue.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s [%(name)s] %(message)s"
MAX_BYTES = 5 * 1024 * 1024
BACKUPS = 4
#: Rolls the log file over, while :func:`setup_logging` has one installed.
_rollover: Callable[[], None] | None = None
_log_file: Path | None = None
#: Seconds a rollover waits for the writer thread (it writes what was logged before first).
ROLLOVER_TIMEOUT = 10.0


class RolloverError(Exception):
    """The log cannot be rolled over; the message says why."""


class _RolloverRequest(logging.LogRecord):
    """Put in the queue like a record: the file handler rolls over when it reaches it, so
    everything logged before the request is in the old file, everything after in the new."""

    def __init__(self) -> None:
        super().__init__("trioprint.logs", logging.CRITICAL, __file__, 0, "rollover", None, None)
        self.done = threading.Event()
        self.error: BaseException | None = None


class _FileHandler(logging.handlers.RotatingFileHandler):
    def handle(self, record: logging.LogRecord) -> bool:
        if not isinstance(record, _RolloverRequest):
            return super().handle(record)
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


def log_file() -> Path | None:
    """The file trioprint logs to, if it logs to one."""
    return _log_file


def rollover() -> None:
    """Start a new log file now, as a rotation does, after what was logged so far is written
    (blocking: run it in a worker thread)."""
    request = _rollover
    if request is None:
        raise RolloverError("File Logging Disabled")
    request()


def setup_logging(log_dir: Path | None, *, verbose: bool = False) -> Callable[[], None]:
    """Install the handlers on the root logger; returns a function that flushes and removes them."""
    global _rollover, _log_file
    level = logging.DEBUG if verbose else logging.INFO
    formatter = logging.Formatter(FORMAT)
    handlers: list[logging.Handler] = []
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
    handlers.append(console)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        file_handler = _FileHandler(
            log_dir / "trioprint.log", maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
        )
        file_handler.setFormatter(formatter)
        handlers.append(file_handler)
    console.addFilter(_not_a_request)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    queue_handler = logging.handlers.QueueHandler(records)
    listener = logging.handlers.QueueListener(records, *handlers, respect_handler_level=True)
    root = logging.getLogger()
    root.setLevel(level)
    root.addHandler(queue_handler)
    # hypercorn logs every connection problem at INFO; keep those at debug level only.
    logging.getLogger("hypercorn.error").setLevel(logging.DEBUG if verbose else logging.WARNING)
    listener.start()

    def roll_over() -> None:
        request = _RolloverRequest()
        records.put(request)
        if not request.done.wait(ROLLOVER_TIMEOUT):
            raise RolloverError("the log writer did not answer")
        if request.error is not None:
            raise RolloverError(f"cannot roll the log over: {request.error}")

    if log_dir is not None:
        _rollover, _log_file = roll_over, log_dir / "trioprint.log"

    def stop() -> None:
        global _rollover, _log_file
        if _rollover is roll_over:
            _rollover = _log_file = None
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
