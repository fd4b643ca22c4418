"""Logging: to stderr and to ``<data>/logs/trioprint.log`` with rotation.

File writes happen in a :class:`logging.handlers.QueueListener` thread, so a slow disk never
blocks the event loop.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
from collections.abc import Callable
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s [%(name)s] %(message)s"
MAX_BYTES = 5 * 1024 * 1024
BACKUPS = 4


def setup_logging(log_dir: Path | None, *, verbose: bool = False) -> Callable[[], None]:
    """Install the handlers on the root logger; returns a function that flushes and removes them."""
    level = logging.DEBUG if verbose else logging.INFO
    formatter = logging.Formatter(FORMAT)
    handlers: list[logging.Handler] = []
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
    handlers.append(console)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            log_dir / "trioprint.log", maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
        )
        file_handler.setFormatter(formatter)
        handlers.append(file_handler)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    queue_handler = logging.handlers.QueueHandler(records)
    listener = logging.handlers.QueueListener(records, *handlers, respect_handler_level=True)
    root = logging.getLogger()
    root.setLevel(level)
    root.addHandler(queue_handler)
    # hypercorn logs every connection problem at INFO; keep those at debug level only.
    logging.getLogger("hypercorn.error").setLevel(logging.DEBUG if verbose else logging.WARNING)
    listener.start()

    def stop() -> None:
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
