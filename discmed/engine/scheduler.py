"""The scheduler: who waits, who is refused, and when waiting requests join the running batch.

Requests wait in arrival order, at most `max_queue` waiting or running (past that, `QueueFull`:
the server's 429). The engine thread asks three questions of it:

- from idle, `await_burst`: wait while requests keep arriving (each within BURST_GAP_S of the
  last, BURST_WINDOW_S at most), so a burst of clients is prefilled in one forward pass
  instead of one pass (and one cache join) each; a lone request pays one gap;
- while a batch runs, `join_now`: joining costs a prefill forward and a copy of the cache,
  about a decode step each on a small model, so arrivals are gathered until a group of an
  eighth of the batch waits, or the first of them has waited ADMIT_STEPS decode steps;
- `admit`: the waiting requests that fit, in order; ones cancelled while waiting come back
  apart, to be answered as cancelled without running.

It knows nothing of tensors or tokens: its items are the engine's streams (`arrived`,
`cancelled`), so it is tested on its own with plain objects.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from discmed.engine.protocol import QueueFull


class Scheduler:
    BURST_GAP_S = 0.002
    BURST_WINDOW_S = 0.025
    ADMIT_STEPS = 2

    def __init__(self, max_batch: int, max_queue: int):
        self.max_batch, self.max_queue = max_batch, max_queue
        self._waiting: queue.Queue = queue.Queue()
        self._head: Any = None  # taken by `next_idle`, admitted first
        self._active = 0  # waiting + running, guarded by _lock
        self._lock = threading.Lock()

    # -- the callers' side ----------------------------------------------------------------

    def add(self, item: Any) -> None:
        """Queue `item`; QueueFull when `max_queue` are waiting or running already."""
        with self._lock:
            if self._active >= self.max_queue:
                raise QueueFull(f"the server is busy: {self._active} requests queued or running "
                                f"(limit {self.max_queue})")  # fmt: skip
            self._active += 1
        self._waiting.put(item)

    def finished(self) -> None:
        """One request has ended (answered, cancelled or failed): its place is free."""
        with self._lock:
            self._active -= 1

    @property
    def load(self) -> int:
        return self._active

    @property
    def queued(self) -> int:
        return self._waiting.qsize() + (self._head is not None)

    # -- the engine thread's side ---------------------------------------------------------

    def next_idle(self, timeout: float) -> bool:
        """From idle: wait up to `timeout` for a request; whether one came."""
        if self._head is not None:
            return True
        try:
            self._head = self._waiting.get(timeout=timeout)
        except queue.Empty:
            return False
        return True

    def await_burst(self, room: int) -> None:
        end = time.perf_counter() + self.BURST_WINDOW_S
        seen = self._waiting.qsize()
        while seen + 1 < room:
            now = time.perf_counter()
            if now >= end:
                return
            time.sleep(min(self.BURST_GAP_S, end - now))
            n = self._waiting.qsize()
            if n == seen:
                return
            seen = n

    def join_now(self, room: int, live: int, step_s: float) -> bool:
        """Whether waiting requests join a batch of `live` running rows at this step."""
        if room <= 0:
            return False
        if self._head is not None:
            return True
        with self._waiting.mutex:
            waiting = len(self._waiting.queue)
            first = self._waiting.queue[0] if waiting else None
        if first is None:
            return False
        if waiting >= min(room, max(1, live // 8)):
            return True
        return time.perf_counter() - first.arrived >= self.ADMIT_STEPS * step_s

    def admit(self, room: int) -> tuple[list[Any], list[Any]]:
        """(up to `room` waiting items to run, in order; items cancelled while waiting)."""
        taken: list[Any] = []
        cancelled: list[Any] = []
        while len(taken) < room:
            if self._head is not None:
                item, self._head = self._head, None
            else:
                try:
                    item = self._waiting.get_nowait()
                except queue.Empty:
                    break
            (cancelled if item.cancelled.is_set() else taken).append(item)
        return taken, cancelled

    def drain(self) -> list[Any]:
        """Every waiting item, taken out (the engine is shutting down)."""
        items = [self._head] if self._head is not None else []
        self._head = None
        while True:
            try:
                items.append(self._waiting.get_nowait())
            except queue.Empty:
                return items
