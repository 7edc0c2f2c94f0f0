"""The engine contract: a typed request in, typed deltas out, and the one way callers wait on them.

Every engine — the in-process one (`discmed.engine.core`), the same in a child process
(`discmed.engine.proc`), vLLM's (`discmed.engine.vllm`) — implements `Engine`:

    stream = engine.submit(Request(prompt_ids, params), loop)   # loop: deltas to that event loop
    stream = engine.submit(Request(prompt_ids, params))         # no loop: to a thread-safe queue
    engine.abort(stream)                                        # stream.cancel() says the same
    engine.stats(), engine.features, engine.shutdown()

Engines know token ids, not chat formats. A request's deltas arrive on `stream.out` (an
asyncio.Queue for a loop, a queue.Queue otherwise); the last one has a `finish_reason`.
`collect`, `acollect` and `deltas` are how the backends wait: a batch of requests from a
thread, one request from a coroutine, a stream of text from a thread.
"""

from __future__ import annotations

import asyncio
import collections
import math
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from discmed.contract import GenParams

# What an engine can do beyond plain generation; the server refuses a request that needs more.
LOGPROBS, PROMPT_LOGPROBS, STRUCTURED_OUTPUT = "logprobs", "prompt_logprobs", "structured_output"


class QueueFull(RuntimeError):
    """The engine has `max_queue` requests waiting or running already."""


class EngineUnavailable(RuntimeError):
    """The engine cannot take requests at all (its process has died, it was shut down)."""


@dataclass
class TokenLogprob:
    """A token's log-probability under the model (before any sampling transform), and the
    `top` most likely tokens at that position as (id, logprob)."""

    id: int
    logprob: float | None  # None for a prompt's first token, which nothing predicts
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Request:
    """One generation: prompt ids, sampling parameters, and what to return beside the text."""

    prompt_ids: list[int]
    params: GenParams
    ignore_eos: bool = False  # keep generating past the stop tokens (benchmarks, tests)
    logprobs: int | None = None  # None: none; k: each generated token's logprob and the top k
    prompt_logprobs: int | None = None  # the same for every prompt token (echo, scoring)
    grammar: str | None = None  # a compiled grammar (discmed.structured); the engine builds its matcher
    logit_bias: dict[int, float] | None = None  # added to the logits before sampling
    final_only: bool = False  # one delta at the end with the whole reply (batch callers), not one per step


@dataclass
class Delta:
    """One step of output: new text, and when the request ends, why and how many tokens."""

    text: str
    finish_reason: str | None = None  # "stop" | "length" | "error" | "cancelled"
    completion_tokens: int = 0
    error: str | None = None
    logprobs: list[TokenLogprob] | None = None  # the tokens behind this text, when asked
    prompt_logprobs: list[TokenLogprob] | None = None  # once, first, when asked
    token_ids: list[int] | None = None  # the ids generated since the last delta (all of them when final_only)
    stop_reason: int | str | None = None  # the stop token or stop string that ended it (vLLM's name)


@dataclass
class EngineStats:
    """What /health and /metrics show, read from any engine."""

    load: int = 0  # requests waiting or running
    queued: int = 0
    running: int = 0  # rows in the batch now
    max_batch: int = 1
    batches: int = 0  # prefill groups
    max_batch_seen: int = 0
    cancelled: int = 0
    failed: int = 0  # requests ended by an error of their own
    prompt_tokens: int = 0
    generated_tokens: int = 0
    shared_prefix_tokens: int = 0  # prompt tokens not run again: a prefix shared by prompts admitted together
    prefix_cache_tokens: int = 0  # prompt tokens not run again: an earlier request's KV cache (the prefix cache)
    mean_seconds: float = 1.0  # moving average of a request's time in the engine
    step_s: float = 0.0  # moving average of a decode step's time
    alive: bool = True
    pid: int | None = None  # the engine's own process, where it has one

    @property
    def retry_after(self) -> int:
        """Seconds a refused client should wait: about the time for the queue to move on."""
        return int(min(60, max(1, math.ceil(self.mean_seconds * (1 + self.queued / max(1, self.max_batch))))))


class Stream:
    """A submitted request as its caller holds it: deltas on `out`, `cancel()` to stop it."""

    def __init__(self, request: Request, loop: asyncio.AbstractEventLoop | None, engine: Any, rid: int = 0):
        self.request, self.loop, self.engine, self.rid = request, loop, engine, rid
        self.out: asyncio.Queue | queue.Queue = asyncio.Queue() if loop is not None else queue.Queue()
        self.cancelled = threading.Event()
        self.arrived = time.perf_counter()
        self.first_token_at: float | None = None

    @property
    def prompt_ids(self) -> list[int]:
        return self.request.prompt_ids

    @property
    def params(self) -> GenParams:
        return self.request.params

    def cancel(self) -> None:
        if not self.cancelled.is_set():
            self.cancelled.set()
            self.engine.abort(self)


class Engine(Protocol):
    features: frozenset[str]

    def submit(self, request: Request, loop: asyncio.AbstractEventLoop | None = None) -> Stream: ...

    def abort(self, stream: Stream) -> None: ...

    def stats(self) -> EngineStats: ...

    def shutdown(self) -> None: ...


# -- delivery: from an engine's thread to the streams' readers ---------------------------


class Mailbox:
    """Deltas from an engine's thread to one event loop. A wake-up (`call_soon_threadsafe`)
    costs the engine thread a GIL hand-off, so one is made only when the loop has drained
    the previous delivery; under load, many steps' deltas ride on one wake-up."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.items: collections.deque = collections.deque()
        self.scheduled = False

    def post(self, items: list[tuple[Stream, Delta]]) -> None:
        self.items.extend(items)
        if not self.scheduled:
            self.scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # that caller's event loop has closed: nobody is reading
                self.items.clear()

    def _drain(self) -> None:
        self.scheduled = False  # first: anything posted from now on schedules a new drain
        while self.items:
            stream, delta = self.items.popleft()
            stream.out.put_nowait(delta)


class Delivery:
    """Hands `(stream, delta)` pairs to their readers: one mailbox (one wake-up) per event
    loop, a plain put for a thread's queue."""

    def __init__(self) -> None:
        self.mailboxes: dict[int, Mailbox] = {}

    def __call__(self, items: list[tuple[Stream, Delta]]) -> None:
        by_loop: dict[int, list] = {}
        for item in items:
            stream = item[0]
            if stream.first_token_at is None and (item[1].text or item[1].completion_tokens):
                stream.first_token_at = time.perf_counter()
            if stream.loop is None:
                stream.out.put(item[1])
            else:
                by_loop.setdefault(id(stream.loop), []).append(item)
        for group in by_loop.values():
            loop = group[0][0].loop
            box = self.mailboxes.get(id(loop))
            if box is None or box.loop is not loop:
                box = self.mailboxes[id(loop)] = Mailbox(loop)
            box.post(group)


# -- waiting on an engine ----------------------------------------------------------------


def merge(a: Delta, b: Delta) -> Delta:
    """Two consecutive deltas of one request as one."""
    lps = None if a.logprobs is None and b.logprobs is None else (a.logprobs or []) + (b.logprobs or [])
    ids = None if a.token_ids is None and b.token_ids is None else (a.token_ids or []) + (b.token_ids or [])
    return Delta(a.text + b.text, b.finish_reason, b.completion_tokens, b.error, lps,
                 a.prompt_logprobs or b.prompt_logprobs, ids, b.stop_reason)  # fmt: skip


def collect(engine: Engine, requests: list[Request]) -> list[Delta]:
    """Submit every request (the engine batches them) and wait for all: one Delta per request
    with its whole text, token ids and logprobs, and how it ended."""
    streams = [engine.submit(r) for r in requests]
    try:
        return [_wait(s) for s in streams]
    except BaseException:  # an interrupted wait (Ctrl+C) leaves nothing generating
        for s in streams:
            s.cancel()
        raise


async def acollect(engine: Engine, request: Request) -> Delta:
    """One request from a coroutine: its whole reply as one Delta."""
    stream = engine.submit(request, asyncio.get_running_loop())
    try:
        total = await stream.out.get()
        while total.finish_reason is None:
            total = merge(total, await stream.out.get())
        return total
    except BaseException:  # the caller was cancelled (a job stopped, a client gone)
        stream.cancel()
        raise


def deltas(engine: Engine, request: Request) -> Iterator[Delta]:
    """A request's deltas as they come, from a thread; closing the iterator cancels it."""
    stream = engine.submit(request)
    finished = False
    try:
        while not finished:
            d = stream.out.get()
            finished = d.finish_reason is not None
            yield d
    finally:
        if not finished:
            stream.cancel()


def _wait(stream: Stream) -> Delta:
    total = stream.out.get()
    while total.finish_reason is None:
        total = merge(total, stream.out.get())
    return total
