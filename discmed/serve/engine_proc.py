"""The batching engine in a process of its own (`discmed serve`'s default; `--no-engine-process`
keeps it in the server's process).

In one process the engine thread and the event loop that parses requests and streams tokens
share one GIL: on a small model, where a decode step is mostly Python, every millisecond the
event loop spends on HTTP is a millisecond the engine does not step (py-spy at 64 streaming
clients: engine thread 86% busy, event loop 22%). vLLM V1 splits the two for this reason
(its EngineCore). Here the child process runs `BatchEngine` unchanged with a `sink`: each
step's deltas go to the parent as one pickled message, and a reader thread in the parent
hands them to the requests' event loops as the in-process engine does.

The parent keeps what must answer at once: the queue limit (429 without a round trip),
`cancel()` (one message), the counters `/health` and `/metrics` show (sent with every
step). The child loads the model itself from the same spec (a CUDA model cannot cross a
fork); the parent loads the model without its weights (`load_weights=False`: its config,
tokenizer, prompt format and sampling defaults). The child ends when the parent does: on
`shutdown`, and on the end of its request pipe if the parent dies without one.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing as mp
import threading
import time
from typing import Any

from discmed.backend import GenParams
from discmed.serve.engine import (
    BatchEngine,
    Delta,
    EngineUnavailable,
    GenRequest,
    QueueFull,
    _Mailbox,
    deliver,
    freeze_startup_heap,
)

log = logging.getLogger("discmed.serve")

# Counters the child sends with every step, shown by /health and /metrics.
STATS = ("batches", "max_batch_seen", "running", "cancelled", "failed", "prompt_tokens", "generated_tokens",
         "mean_seconds", "step_s")  # fmt: skip


def _wire(d: Delta) -> Delta | str:
    """A delta as sent to the parent: the common one (text, nothing else) as its text alone,
    which pickles and unpickles ~10x faster than the dataclass (64 of them every step)."""
    plain = d.finish_reason is None and d.logprobs is None and d.prompt_logprobs is None and d.error is None
    return d.text if plain and not d.completion_tokens else d


class EngineProcessError(EngineUnavailable):
    """The engine process could not start, or has died."""


def _child(requests: Any, outputs: Any, spec: str, options: dict[str, Any], engine_options: dict[str, Any]) -> None:
    """The engine process: load the model, answer `ready`, then run requests until told to stop
    (or until the parent's end of the request pipe closes)."""
    import asyncio
    import signal

    # The server owns the shutdown: a Ctrl+C or a SIGTERM sent to the whole process group (a
    # terminal, a supervisor) reaches this process too, and the server then ends it in order
    # ("stop", or its end of the request pipe closing). Left to their defaults, SIGINT printed a
    # KeyboardInterrupt traceback here, and SIGTERM killed this process before it released the
    # multiprocessing semaphore of tqdm's write lock (resource_tracker then warned of a leak).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        from discmed.backend import load_backend

        backend = load_backend(spec, **options)
        stop_ids = backend.format.stop_token_ids(backend.tokenizer)
        lock = threading.Lock()  # the output pipe and `running`, shared with the engine thread
        running: dict[int, GenRequest] = {}

        def sink(items: list[tuple[GenRequest, Delta]]) -> None:
            stats = tuple(getattr(engine, k) for k in STATS)
            with lock:
                outputs.send(("deltas", [(r.rid, _wire(d)) for r, d in items], stats))
                for r, d in items:
                    if d.finish_reason is not None:
                        running.pop(r.rid, None)

        engine = BatchEngine(backend.model, backend.tokenizer, stop_ids, sink=sink, **engine_options)
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which fails the start
        outputs.send(("failed", f"{type(e).__name__}: {e}"))
        return
    freeze_startup_heap()
    outputs.send(("ready", {"vocab": engine.vocab, "stop_ids": sorted(engine.stop_ids)}))
    loop = asyncio.new_event_loop()  # GenRequest's queue wants one; nothing runs on it here
    while True:
        try:
            msg = requests.recv()
        except (EOFError, OSError):  # the parent is gone
            break
        kind = msg[0]
        if kind == "submit":
            _, rid, prompt_ids, params, ignore_eos, opts = msg
            with lock:  # held until `running` has it: its first deltas may come at once
                try:
                    running[rid] = engine.submit(prompt_ids, params, loop, ignore_eos=ignore_eos, rid=rid, **opts)
                except Exception as e:  # noqa: BLE001 - this request alone
                    outputs.send(("deltas", [(rid, Delta("", "error", error=f"{type(e).__name__}: {e}"))], None))
        elif kind == "cancel":
            with lock:
                req = running.get(msg[1])
            if req is not None:
                req.cancel()
        elif kind == "stop":
            break
    engine.shutdown()


class _Request(GenRequest):
    """The parent's side of a request: `out` fills from the child's deltas; `cancel` tells it."""

    engine: Any = None

    def cancel(self) -> None:
        if not self.cancelled.is_set():
            self.cancelled.set()
            self.engine._send(("cancel", self.rid))


class ProcessEngine:
    """`BatchEngine`'s interface (submit, features, counters, grammars) over a child process."""

    features = BatchEngine.features

    def __init__(self, spec: str, options: dict[str, Any], tokenizer: Any, *, max_batch: int = 32,
                 max_queue: int = 256, max_model_len: int | None = None, start_timeout: float = 1200.0):  # fmt: skip
        self.tokenizer = tokenizer
        self.max_batch, self.max_queue = max_batch, max_queue
        for k in STATS:
            setattr(self, k, 0)
        self.mean_seconds = 1.0
        self._ids = itertools.count(1)
        self._live: dict[int, _Request] = {}
        self._lock = threading.Lock()  # _live and the request pipe
        self._mailboxes: dict[int, _Mailbox] = {}
        self._dead: str | None = None
        ctx = mp.get_context("spawn")
        req_r, self._req_w = ctx.Pipe(duplex=False)
        self._out_r, out_w = ctx.Pipe(duplex=False)
        # The parent holds the queue limit (a 429 without a round trip): the child takes all it is sent.
        engine_options = {"max_batch": max_batch, "max_model_len": max_model_len, "max_queue": 1 << 30}
        self.proc = ctx.Process(target=_child, args=(req_r, out_w, spec, options, engine_options),
                                name="discmed-engine", daemon=True)  # fmt: skip
        self.proc.start()
        req_r.close()
        out_w.close()
        if not self._out_r.poll(start_timeout):
            self.proc.kill()
            raise EngineProcessError(f"the engine process did not load {spec} within {start_timeout:.0f} s")
        try:
            kind, info = self._out_r.recv()
        except EOFError:
            raise EngineProcessError(f"the engine process exited while loading {spec} "
                                     f"(status {self.proc.exitcode})") from None  # fmt: skip
        if kind != "ready":
            self.proc.join(timeout=5)
            raise EngineProcessError(f"the engine process could not load {spec}: {info}")
        self.vocab, self.stop_ids = info["vocab"], set(info["stop_ids"])
        self.pid = self.proc.pid  # shown by /health
        self._reader = threading.Thread(target=self._read, name="discmed-engine-reader", daemon=True)
        self._reader.start()

    # -- BatchEngine's interface ----------------------------------------------------------

    def submit(self, prompt_ids: list[int], params: GenParams, loop: Any, ignore_eos: bool = False,
               **options: Any) -> GenRequest:  # fmt: skip
        if options.get("constraint") is not None:
            raise ValueError("the engine process builds its matchers from `grammar`, not `constraint`")
        opts = {k: v for k, v in options.items() if v is not None and k != "constraint"}
        with self._lock:
            if self._dead:
                raise EngineProcessError(f"the engine process has died ({self._dead})")
            if len(self._live) >= self.max_queue:
                raise QueueFull(f"the server is busy: {len(self._live)} requests queued or running "
                                f"(limit {self.max_queue})")  # fmt: skip
            req = _Request(list(prompt_ids), params, loop, ignore_eos=ignore_eos, rid=next(self._ids),
                           logprobs=opts.get("logprobs"), prompt_logprobs=opts.get("prompt_logprobs"),
                           logit_bias=opts.get("logit_bias"))  # fmt: skip
            req.engine = self
            try:
                self._req_w.send(("submit", req.rid, req.prompt_ids, params, ignore_eos, opts))
            except (OSError, ValueError) as e:  # the child is gone and the reader has not seen it yet
                raise EngineProcessError(f"the engine process has died ({e})") from None
            self._live[req.rid] = req
        return req

    @property
    def alive(self) -> bool:
        return self._dead is None

    @property
    def load(self) -> int:
        return len(self._live)

    @property
    def queued(self) -> int:
        return max(0, len(self._live) - self.running)

    # The same arithmetic as the in-process engine, on the counters the child sends; the
    # grammars validate and compile response formats here, and the child builds its matchers
    # from the compiled grammar with the same tokenizer.
    retry_after = BatchEngine.retry_after
    grammars = BatchEngine.grammars
    _grammars: Any = None

    def shutdown(self) -> None:
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
        """Deltas from the child, handed to each request's event loop (one wake-up per loop)."""
        while True:
            try:
                msg = self._out_r.recv()
            except (EOFError, OSError):
                break
            _, items, stats = msg
            if stats is not None:
                for k, v in zip(STATS, stats, strict=True):
                    setattr(self, k, v)
            ready = []
            with self._lock:
                for rid, delta in items:
                    req = self._live.get(rid)
                    if req is None:
                        continue
                    if type(delta) is str:
                        delta = Delta(delta)
                    if req.first_token_at is None and (delta.text or delta.completion_tokens):
                        req.first_token_at = time.perf_counter()  # when it reached this process
                    if delta.finish_reason is not None:
                        del self._live[rid]
                    ready.append((req, delta))
            deliver(self._mailboxes, ready)
        self.proc.join(timeout=2)
        self._fail_all(f"exit status {self.proc.exitcode}")

    def _fail_all(self, why: str) -> None:
        with self._lock:
            self._dead = why
            live, self._live = list(self._live.values()), {}
        if live:
            log.error("the engine process has died (%s): %d requests fail", why, len(live))
        for req in live:
            try:
                req.loop.call_soon_threadsafe(
                    req.out.put_nowait, Delta("", "error", error=f"the engine process has died ({why})")
                )
            except RuntimeError:  # that caller's event loop has already closed
                pass
