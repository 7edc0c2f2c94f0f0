"""The engine in a process of its own (`discmed serve`'s default; `--no-engine-process` keeps it
in the server's process).

In one process the engine thread and the event loop that parses requests and streams tokens
share one GIL: on a small model, where a decode step is mostly Python, every millisecond the
event loop spends on HTTP is a millisecond the engine does not step (py-spy at 64 streaming
clients: engine thread 86% busy, event loop 22%). vLLM V1 splits the two for this reason
(its EngineCore). Here the child process runs `LocalEngine` unchanged with a `sink`: each
step's deltas go to the parent as one pickled message, and a reader thread in the parent
hands them to the streams' readers as the in-process engine does.

The parent keeps what must answer at once: the queue limit (429 without a round trip),
`abort` (one message), the counters `stats()` shows (sent with every step). The child loads
the model itself from the same spec (a CUDA model cannot cross a fork); the parent loads the
model without its weights (`load_weights=False`: its config, tokenizer, prompt format and
sampling defaults). The child ends when the parent does: on `shutdown`, and on the end of its
request pipe if the parent dies without one.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing as mp
import threading
from typing import Any

from discmed.backend import load_backend
from discmed.cpu import freeze_heap, tune_switch_interval, tune_threads
from discmed.engine.core import LocalEngine
from discmed.engine.protocol import (
    Delivery,
    Delta,
    EngineStats,
    EngineUnavailable,
    QueueFull,
    Request,
    Stream,
)

log = logging.getLogger("discmed.engine")


def _wire(d: Delta) -> Delta | tuple:
    """A delta as sent to the parent: the common one (text and its ids, nothing else) as a
    tuple, which pickles and unpickles ~10x faster than the dataclass (64 of them every step)."""
    plain = (d.finish_reason is None and d.logprobs is None and d.prompt_logprobs is None and d.error is None
             and not d.completion_tokens)  # fmt: skip
    return (d.text, d.token_ids) if plain else d


class EngineProcessError(EngineUnavailable):
    """The engine process could not start, or has died."""


def _child(requests: Any, outputs: Any, spec: str, options: dict[str, Any], engine_options: dict[str, Any]) -> None:
    """The engine process: load the model, answer `ready`, then run requests until told to stop
    (or until the parent's end of the request pipe closes)."""
    import signal

    # The server owns the shutdown: a Ctrl+C or a SIGTERM sent to the whole process group (a
    # terminal, a supervisor) reaches this process too, and the server then ends it in order
    # ("stop", or its end of the request pipe closing). Left to their defaults, SIGINT printed a
    # KeyboardInterrupt traceback here, and SIGTERM killed this process before it released the
    # multiprocessing semaphore of tqdm's write lock (resource_tracker then warned of a leak).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        tune_threads()  # this process's entry point: its threads, its GIL hand-offs, its heap (below)
        tune_switch_interval()
        backend = load_backend(spec, **options)
        lock = threading.Lock()  # the output pipe and `running`, shared with the engine thread
        running: dict[int, Stream] = {}

        def sink(items: list[tuple[Stream, Delta]]) -> None:
            stats = engine.stats()
            with lock:
                outputs.send(("deltas", [(s.rid, _wire(d)) for s, d in items], stats))
                for s, d in items:
                    if d.finish_reason is not None:
                        running.pop(s.rid, None)

        max_len = engine_options.get("max_model_len") or int(getattr(backend, "max_length", 0) or 4096)
        engine = LocalEngine(backend.model, backend.tokenizer, backend.format.stop_token_ids(backend.tokenizer),
                             sink=sink, **{**engine_options, "max_model_len": max_len})  # fmt: skip
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which fails the start
        outputs.send(("failed", f"{type(e).__name__}: {e}"))
        return
    freeze_heap()
    outputs.send(("ready", {"vocab": engine.vocab, "stop_ids": sorted(engine.stop_ids)}))
    while True:
        try:
            msg = requests.recv()
        except (EOFError, OSError):  # the parent is gone
            break
        kind = msg[0]
        if kind == "submit":
            _, rid, request = msg
            with lock:  # held until `running` has it: its first deltas may come at once
                try:
                    running[rid] = engine.submit(request, None, rid=rid)
                except Exception as e:  # noqa: BLE001 - this request alone
                    outputs.send(("deltas", [(rid, Delta("", "error", error=f"{type(e).__name__}: {e}"))], None))
        elif kind == "cancel":
            with lock:
                stream = running.get(msg[1])
            if stream is not None:
                stream.cancel()
        elif kind == "stop":
            break
    engine.shutdown()


class ProcessEngine:
    """The Engine contract over a `LocalEngine` in a child process."""

    features = LocalEngine.features

    def __init__(self, spec: str, options: dict[str, Any], *, max_batch: int = 32, max_queue: int = 256,
                 max_model_len: int | None = None, start_timeout: float = 1200.0, prefix_cache_mb: int = 256,
                 wait: bool = True):  # fmt: skip
        """Start the child loading `spec` (with `options`, as `load_backend` takes them). `wait=False`
        returns at once, so the caller can prepare its side while the child loads (`discmed serve`
        reads the tokenizer meanwhile); `wait_ready()` then waits for it. `max_model_len=None`: the
        model's own context length, as the child's backend reads it."""
        self.max_batch, self.max_queue = max_batch, max_queue
        self._stats = EngineStats(max_batch=max_batch)
        self._ids = itertools.count(1)
        self._live: dict[int, Stream] = {}
        self._lock = threading.Lock()  # _live and the request pipe
        self._deliver = Delivery()
        self._dead: str | None = None
        ctx = mp.get_context("spawn")
        req_r, self._req_w = ctx.Pipe(duplex=False)
        self._out_r, out_w = ctx.Pipe(duplex=False)
        # The parent holds the queue limit (a 429 without a round trip): the child takes all it is sent.
        engine_options = {"max_batch": max_batch, "max_model_len": max_model_len, "max_queue": 1 << 30,
                          "prefix_cache_mb": prefix_cache_mb}
        self.proc = ctx.Process(target=_child, args=(req_r, out_w, spec, options, engine_options),
                                name="discmed-engine", daemon=True)  # fmt: skip
        self.proc.start()
        self.pid = self.proc.pid
        req_r.close()
        out_w.close()
        self._spec, self._start_timeout = spec, start_timeout
        self._reader: threading.Thread | None = None
        if wait:
            self.wait_ready()

    def wait_ready(self) -> ProcessEngine:
        """Wait until the child has loaded the model (EngineProcessError if it could not)."""
        if self._reader is not None:
            return self
        spec = self._spec
        if not self._out_r.poll(self._start_timeout):
            self.proc.kill()
            raise EngineProcessError(f"the engine process did not load {spec} within {self._start_timeout:.0f} s")
        try:
            kind, info = self._out_r.recv()
        except EOFError:
            raise EngineProcessError(f"the engine process exited while loading {spec} "
                                     f"(status {self.proc.exitcode})") from None  # fmt: skip
        if kind != "ready":
            self.proc.join(timeout=5)
            raise EngineProcessError(f"the engine process could not load {spec}: {info}")
        self.vocab, self.stop_ids = info["vocab"], set(info["stop_ids"])
        self._reader = threading.Thread(target=self._read, name="discmed-engine-reader", daemon=True)
        self._reader.start()
        return self

    # -- the contract ---------------------------------------------------------------------

    def submit(self, request: Request, loop: Any = None) -> Stream:
        with self._lock:
            if self._dead:
                raise EngineProcessError(f"the engine process has died ({self._dead})")
            if len(self._live) >= self.max_queue:
                raise QueueFull(f"the server is busy: {len(self._live)} requests queued or running "
                                f"(limit {self.max_queue})")  # fmt: skip
            stream = Stream(request, loop, self, next(self._ids))
            try:
                self._req_w.send(("submit", stream.rid, request))
            except (OSError, ValueError) as e:  # the child is gone and the reader has not seen it yet
                raise EngineProcessError(f"the engine process has died ({e})") from None
            self._live[stream.rid] = stream
        return stream

    def abort(self, stream: Stream) -> None:
        stream.cancelled.set()
        if stream.rid in self._live:
            try:
                self._send(("cancel", stream.rid))
            except EngineProcessError:
                pass  # its end is on the way from the reader

    def stats(self) -> EngineStats:
        load = len(self._live)
        return dataclasses.replace(self._stats, load=load, queued=max(0, load - self._stats.running),
                                   max_batch=self.max_batch, alive=self._dead is None, pid=self.pid)  # fmt: skip

    def shutdown(self) -> None:
        if self._reader is None:  # still loading (its caller failed meanwhile): nothing to end in order
            self.proc.kill()
            self.proc.join()
            return
        try:
            self._send(("stop",))
        except EngineProcessError:
            pass
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        # The reader sees the pipe close and fails what is left; once it has, submit refuses.
        self._reader.join(timeout=5)

    # -- inside ---------------------------------------------------------------------------

    def _send(self, msg: tuple) -> None:
        with self._lock:
            if self._dead:
                return
            try:
                self._req_w.send(msg)
            except (OSError, ValueError) as e:
                raise EngineProcessError(f"the engine process is gone: {e}") from None

    def _read(self) -> None:
        """Deltas from the child, handed to each stream's reader (one wake-up per event loop)."""
        while True:
            try:
                msg = self._out_r.recv()
            except (EOFError, OSError):
                break
            _, items, stats = msg
            if stats is not None:
                self._stats = stats
            ready = []
            with self._lock:
                for rid, delta in items:
                    stream = self._live.get(rid)
                    if stream is None:
                        continue
                    if type(delta) is tuple:
                        delta = Delta(delta[0], token_ids=delta[1])
                    if delta.finish_reason is not None:
                        del self._live[rid]
                    ready.append((stream, delta))
            self._deliver(ready)
        self.proc.join(timeout=2)
        self._fail_all(f"exit status {self.proc.exitcode}")

    def _fail_all(self, why: str) -> None:
        with self._lock:
            self._dead = why
            live, self._live = list(self._live.values()), {}
        if live:
            log.error("the engine process has died (%s): %d requests fail", why, len(live))
        self._deliver([(s, Delta("", "error", error=f"the engine process has died ({why})")) for s in live])
