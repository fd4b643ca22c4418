"""A bounded outgoing queue for one writer task, with an urgent lane and an idle source.

Both writers (a websocket connection's, the klippy link's) need the same three things a memory
channel does not give: frames that jump the queue (klippy's ``emergency_stop``), a producer that
never blocks (a full queue is the producer's decision, not a wait), and a source of coalesced
frames that is asked only when the queue is empty (a slow websocket client's status updates are
merged while it cannot keep up, instead of queueing one frame per update).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class Outbox(Generic[T]):
    """Frames for one writer: urgent first, then queued in order, then the idle source."""

    def __init__(self, capacity: int, idle: Callable[[], T | None] | None = None) -> None:
        self._capacity = capacity
        self._items: deque[T] = deque()
        self._urgent: deque[T] = deque()
        self._idle = idle
        self._wakeup = trio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items) + len(self._urgent)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> bool:
        """Queue ``item``; False (and nothing queued) when full or closed."""
        if self._closed or len(self._items) >= self._capacity:
            return False
        self._items.append(item)
        self._wakeup.set()
        return True

    def put_urgent(self, item: T) -> bool:
        """Queue ``item`` ahead of every queued one (not bounded: only for rare frames)."""
        if self._closed:
            return False
        self._urgent.append(item)
        self._wakeup.set()
        return True

    def wake(self) -> None:
        """Tell the writer that the idle source may have something now."""
        self._wakeup.set()

    def close(self) -> None:
        """No more items; the writer gets what is queued (and the idle source's), then None."""
        self._closed = True
        self._wakeup.set()

    async def get(self) -> T | None:
        """The next frame to write; None once closed and drained."""
        while True:
            if self._urgent:
                return self._urgent.popleft()
            if self._items:
                return self._items.popleft()
            if self._idle is not None:
                item = self._idle()
                if item is not None:
                    return item
            if self._closed:
                return None
            self._wakeup = trio.Event()
            await self._wakeup.wait()
