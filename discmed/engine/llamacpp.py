"""llama.cpp's server behind discmed's Engine contract: `discmed serve --model X.gguf` and
`load_backend("llamacpp:X.gguf")`.

llama-server (built by scripts/llamacpp.sh) runs as a child process on a loopback port of its
own, in a session of its own (discmed.process: started, waited on, stopped as every child
discmed runs). discmed keeps its side of the contract: prompts are discmed.formats' token ids,
sent as ids (`/completion` takes a list of ids), so a GGUF is prompted exactly as its weights
were trained and as the hf engine prompts them; llama.cpp does the rest — quantised kernels,
continuous batching over `--parallel` slots, sampling, stop strings, JSON-schema grammars.

Mapping (discmed `Request` → llama-server `/completion`):

- `GenParams`: temperature (0 is greedy in both), top_p, top_k, min_p, repetition_penalty →
  repeat_penalty, frequency/presence penalties, seed, stop strings, max_new_tokens → n_predict;
- `logprobs=k` → n_probs k with `post_sampling_probs: false` (the model's distribution before
  any sampling transform, as discmed's engines report it);
- `grammar`: discmed compiles a response_format to an llguidance grammar; a grammar that is one
  JSON schema (every response_format and tool schema is) goes to llama.cpp as `json_schema`,
  which llama.cpp turns into its own GBNF grammar. Anything else is refused for the request;
- `logit_bias`, `ignore_eos`; `final_only` requests are sent unstreamed (one JSON reply).

Not offered (`features`): prompt logprobs (llama-server scores no prompt tokens), so `eval mcq
--mode logprob` and `/v1/completions` with echo are refused with the reason, not approximated.

The end of a reply is llama.cpp's: it stops at the vocabulary's end-of-generation tokens, which
for every discmed format are the format's stop tokens (tests/test_gguf.py checks that greedy
replies end where discmed's engine ends them).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from discmed.contract import BackendError
from discmed.engine.protocol import (
    LOGPROBS,
    STRUCTURED_OUTPUT,
    Delivery,
    Delta,
    EngineStats,
    EngineUnavailable,
    QueueFull,
    Request,
    Stream,
    TokenLogprob,
)
from discmed.errors import DiscmedError
from discmed.process import ServerStartError, child_setup, free_port, stop, wait_ready

FINISH = {"eos": "stop", "word": "stop", "limit": "length"}
_ENGINES: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    # A command that never closed its backend (discmed chat, a script) still stops llama-server
    # and closes its HTTP sessions on the way out, instead of leaving them to the kernel.
    for engine in list(_ENGINES):
        engine.shutdown()

ENV = "DISCMED_LLAMACPP"
ALL_F32 = 0  # gguf.LlamaFileType.ALL_F32: general.file_type of a GGUF whose every tensor is f32


class ToolsMissing(DiscmedError, FileNotFoundError):
    """llama.cpp's tools are not built (or not where DISCMED_LLAMACPP says)."""


# -- where llama.cpp's tools are ------------------------------------------------------------------


def _script() -> Path:
    return Path(__file__).resolve().parents[2] / "scripts" / "llamacpp.sh"


def tools_dir(build: bool = False) -> Path:
    """The folder with llama.cpp's bin/, converter and gguf-py: DISCMED_LLAMACPP, else the newest
    cached build of scripts/llamacpp.sh; with `build`, run that script (a no-op once cached)."""
    env = os.environ.get(ENV)
    if env:
        folder = Path(env)
        if not (folder / "bin" / "llama-server").is_file():
            raise ToolsMissing(f"{ENV}={env}: no bin/llama-server there")
        return folder
    if build and _script().is_file():
        done = subprocess.run(["bash", str(_script())], capture_output=True, text=True,
                              env={**os.environ, "PYTHON": sys.executable})
        if done.returncode != 0:
            raise ToolsMissing(f"building llama.cpp failed ({_script()}):\n{done.stderr[-2000:]}")
        return Path(done.stdout.strip().splitlines()[-1])
    root = Path(os.environ.get("DISCMED_CACHE", Path.home() / ".cache" / "discmed")) / "llama.cpp"
    built = sorted(root.glob("*/.done"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    if not built:
        raise ToolsMissing("llama.cpp's tools are not built: run `make llamacpp` (about 15 minutes on 2 cores, "
                           f"once; cached in {root}) or set {ENV} to a folder with bin/llama-server")
    return built[-1].parent


def tool(name: str, folder: Path | None = None) -> Path:
    path = (folder or tools_dir()) / "bin" / name
    if not path.is_file():
        raise ToolsMissing(f"{path}: not built")
    return path




def gguf_metadata(path: str | os.PathLike, tools: Path | None = None) -> dict[str, Any]:
    """A GGUF's scalar and string metadata (gguf-py's reader, the converter's own version)."""
    folder = str((tools or tools_dir()) / "gguf-py")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import gguf  # the version llama.cpp's tools were built with

    reader = gguf.GGUFReader(str(path))
    meta: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or len(field.types) != 1 or field.types[0] == gguf.GGUFValueType.ARRAY:
            continue
        meta[key] = field.contents()
    meta["tensor_types"] = sorted({t.tensor_type.name for t in reader.tensors})
    return meta



def schema_of(grammar: str) -> dict:
    """The JSON schema inside an llguidance grammar that is one JSON schema (discmed.structured
    writes these for every response_format and tool schema); ValueError for any other grammar."""
    try:
        data = json.loads(grammar)
        (only,) = data["grammars"]
        return only["json_schema"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"llama.cpp takes JSON-schema grammars only, not this one ({type(e).__name__})") from None


def payload(request: Request, stream: bool) -> dict[str, Any]:
    """A discmed Request as llama-server's /completion body."""
    p = request.params
    body: dict[str, Any] = {
        "prompt": list(request.prompt_ids),
        "n_predict": max(0, int(p.max_new_tokens)),
        "temperature": float(p.temperature),
        "top_p": float(p.top_p),
        "top_k": int(p.top_k) if p.top_k > 0 else 0,
        "min_p": float(p.min_p),
        "repeat_penalty": float(p.repetition_penalty),
        "repeat_last_n": len(request.prompt_ids) + max(0, int(p.max_new_tokens)),  # the whole context, as transformers
        "frequency_penalty": float(p.frequency_penalty),
        "presence_penalty": float(p.presence_penalty),
        "seed": int(p.seed) if p.seed is not None else -1,
        "stop": [s for s in p.stop if s],
        "stream": stream,
        "return_tokens": True,
        "cache_prompt": True,
        "ignore_eos": bool(request.ignore_eos),
    }
    if request.logprobs is not None:
        body["n_probs"] = max(1, int(request.logprobs))
        body["post_sampling_probs"] = False
    if request.grammar:
        body["json_schema"] = schema_of(request.grammar)
    elif p.json_schema is not None:
        body["json_schema"] = p.json_schema
    if request.logit_bias:
        body["logit_bias"] = [[int(t), float(b)] for t, b in request.logit_bias.items()]
    return body


def _logprobs(entries: list[dict], k: int) -> list[TokenLogprob]:
    return [TokenLogprob(int(e["id"]), float(e["logprob"]),
                         [(int(t["id"]), float(t["logprob"])) for t in e.get("top_logprobs", [])[:k]])
            for e in entries]  # fmt: skip


KV_CACHE_TYPES = ("auto", "f32", "f16", "bf16", "q8_0")


def server_command(gguf: str | os.PathLike, binary: Path, port: int, *, threads: int = 1, parallel: int = 8,
                   ctx_per_slot: int = 2048, kv_cache: str = "auto") -> list[str]:  # fmt: skip
    """The llama-server command line discmed runs for `gguf` (its benchmark's peer runs the same one).

    `kv_cache` auto: an all-f32 GGUF gets an f32 KV cache, so it decodes as the safetensors it came
    from (tests/test_gguf.py, greedy parity); any other GGUF keeps llama.cpp's default (f16). On the
    tiny model the f32 cache halves llama-server's speed (benchmarks/serve_vs_llamacpp.py
    --kv-cache): `--kv-cache-type f16` trades about 5e-4 in logprobs for it."""
    if kv_cache not in KV_CACHE_TYPES:
        raise BackendError(f"KV cache type {kv_cache!r}: one of {', '.join(KV_CACHE_TYPES)}")
    cmd = [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
           "-t", str(threads), "-tb", str(threads), "--parallel", str(parallel),
           "--ctx-size", str(max(ctx_per_slot, 8192)), "--kv-unified", "--no-webui",
           "--cont-batching"]  # fmt: skip
    if kv_cache == "auto":
        kv_cache = "f32" if gguf_metadata(gguf, binary.parents[1]).get("general.file_type") == ALL_F32 else "f16"
    return cmd + ["--cache-type-k", kv_cache, "--cache-type-v", kv_cache]


class LlamaServer:
    """llama-server on a GGUF, a child process on a loopback port; `url` is its root."""

    def __init__(self, gguf: str | os.PathLike, *, binary: Path, threads: int = 1, parallel: int = 8,
                 ctx_per_slot: int = 2048, kv_cache: str = "auto", log: Path | None = None,
                 extra: list[str] | None = None, limit: float = 300.0):  # fmt: skip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.parallel = parallel
        self.log = log or Path(os.environ.get("TMPDIR", "/tmp")) / f"discmed-llama-server-{self.port}.log"
        self.cmd = server_command(gguf, binary, self.port, threads=threads, parallel=parallel,
                                  ctx_per_slot=ctx_per_slot, kv_cache=kv_cache) + list(extra or [])  # fmt: skip
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(self.cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, preexec_fn=child_setup())  # fmt: skip
        try:
            wait_ready(self.proc, self.url + "/health", self.log, stall=60.0, limit=limit, what="llama-server")
        except ServerStartError as e:
            stop(self.proc)
            raise BackendError(str(e)) from None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        stop(self.proc, timeout=5.0)


class Slots:
    """At most `n` holders at once, shared by coroutines on any number of event loops, first come
    first served. The engine's requests hold one while their connection to llama-server is open.

    Why the front queues rather than llama-server: llama-server runs `--parallel` slots (discmed's
    `--max-batch`), and a request beyond them would wait inside it, holding a connection and one of
    its HTTP threads. Queued here, it holds nothing there; `/metrics` counts it as waiting; and a
    request cancelled while it waits never reaches llama-server. benchmarks/serve_vs_llamacpp.py
    --slots 8 --clients 64 measures the two queues against each other."""

    def __init__(self, n: int):
        self.free = n
        self._lock = threading.Lock()
        self._waiters: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.free > 0 and not self._waiters:
                self.free -= 1
                return
            fut = loop.create_future()
            self._waiters.append((loop, fut))
        try:
            await fut
        except asyncio.CancelledError:
            with self._lock:
                try:  # still queued: leave the queue
                    self._waiters.remove((loop, fut))
                    raise
                except ValueError:
                    pass
            # Handed a slot as it was cancelled (`_wake` had yet to run, or ran): pass it on.
            if fut.done() and not fut.cancelled():
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            if not self._waiters:
                self.free += 1
                return
            loop, fut = self._waiters.popleft()
        try:
            loop.call_soon_threadsafe(self._wake, fut)
        except RuntimeError:  # that loop has closed: its waiter is gone, the slot goes on
            self.release()

    def _wake(self, fut: asyncio.Future) -> None:
        if fut.cancelled():  # its request went away after being handed the slot
            self.release()
        else:
            fut.set_result(None)


class LlamaCppEngine:
    """The Engine contract over llama-server's /completion (an aiohttp client on a loop of its own)."""

    features = frozenset({LOGPROBS, STRUCTURED_OUTPUT})

    def __init__(self, server: LlamaServer, vocab: int, stop_ids: list[int], max_queue: int = 256):
        self.server, self.vocab, self.max_queue = server, vocab, max_queue
        # llama.cpp returns the end-of-generation token among a reply's tokens and counts it;
        # discmed's engines do neither (a reply's ids are its content), so it is taken out here.
        self.stop_ids = frozenset(stop_ids)
        self.url = server.url + "/completion"
        self.slots = Slots(server.parallel)
        self.active = 0
        self.cancelled = self.failed = self.generated_tokens = self.prompt_tokens = 0
        self._ids = itertools.count(1)
        self._deliver = Delivery()
        # A caller on an event loop (discmed serve's routes, the job engine) has its request run
        # as a task on that same loop: its deltas go straight onto its stream, with no thread in
        # between (a hop per token costs a GIL hand-off). Callers on threads share the engine's loop.
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="discmed-llamacpp", daemon=True)
        self._thread.start()
        self._closed = False
        self._tasks: dict[int, tuple[asyncio.AbstractEventLoop, Any]] = {}
        _ENGINES.add(self)
        # aiohttp's first import (its connector builds an SSL context from the system's
        # certificates) takes about 0.2 s: paid here, not by the first request.
        import aiohttp  # noqa: F401

    # -- the contract --------------------------------------------------------------------
    def submit(self, request: Request, loop: Any = None) -> Stream:
        if self._closed or not self.server.alive:
            raise EngineUnavailable(f"llama-server is not running (its log: {self.server.log})")
        if self.active >= self.max_queue:
            raise QueueFull(f"the server is busy: {self.active} requests running (limit {self.max_queue})")
        self.active += 1
        stream = Stream(request, loop, self, next(self._ids))
        on = loop or self._loop
        try:
            here = asyncio.get_running_loop() is on
        except RuntimeError:
            here = False
        task = on.create_task(self._run(stream)) if here else asyncio.run_coroutine_threadsafe(self._run(stream), on)
        self._tasks[stream.rid] = (on, task)
        return stream

    def abort(self, stream: Stream) -> None:
        stream.cancelled.set()
        entry = self._tasks.get(stream.rid)
        if entry is not None:
            on, task = entry
            try:  # closes the connection: llama-server stops that slot
                on.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # that loop has closed: nothing is running there
                pass

    def stats(self) -> EngineStats:
        waiting = self.slots.waiting
        return EngineStats(load=self.active, queued=waiting, running=self.active - waiting,
                           max_batch=self.server.parallel, cancelled=self.cancelled, failed=self.failed,
                           prompt_tokens=self.prompt_tokens, generated_tokens=self.generated_tokens,
                           alive=not self._closed and self.server.alive, pid=self.server.proc.pid)  # fmt: skip

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self.server.close()

    async def _post(self, session: Any, body: dict) -> Any:
        """POST /completion; a connection llama-server closed before answering (it ends idle
        ones after 5 s) is tried once more on a fresh one: the server never read that request."""
        import aiohttp

        for attempt in (1, 2):
            try:
                return await session.post(self.url, json=body)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _emit(self, stream: Stream, delta: Delta) -> None:
        if stream.loop is not None and stream.loop is asyncio.get_running_loop():
            if stream.first_token_at is None and (delta.text or delta.completion_tokens):
                stream.first_token_at = time.perf_counter()
            stream.out.put_nowait(delta)
        else:
            self._deliver([(stream, delta)])

    # -- one request ---------------------------------------------------------------------
    async def _run(self, stream: Stream) -> None:
        import aiohttp

        req, n, held = stream.request, 0, False
        try:
            try:
                body = payload(req, stream=not req.final_only)
            except ValueError as e:
                self.failed += 1
                self._emit(stream, Delta("", "error", error=str(e)))
                return
            await self.slots.acquire()
            held = True
            self.prompt_tokens += len(req.prompt_ids)
            # A session per request, on the caller's loop: nothing outlives the loop it was made
            # on (a job's asyncio.run ends its loop), and a loopback connect costs well under a
            # millisecond against a request of tens.
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as session, \
                    await self._post(session, body) as resp:  # fmt: skip
                if resp.status != 200:
                    text = (await resp.text())[:500]
                    self.failed += 1
                    self._emit(stream, Delta("", "error", error=f"llama-server answered {resp.status}: {text}"))
                    return
                if req.final_only:
                    n = self._final(stream, await resp.json())
                    held = self._free(held)
                    return
                # Whatever has arrived is read at once and goes out as one delta: when this
                # process keeps up, that is one token; when it falls behind (a busy machine,
                # many clients), tokens queue in the socket and ride together, so the work per
                # delta downstream (SSE chunks, the client's parsing) does not cap throughput.
                pending, text, ids, lps = b"", [], [], []
                while data := await resp.content.readany():
                    *lines, pending = (pending + data).split(b"\n")
                    for raw in lines:
                        if not raw.startswith(b"data: "):
                            continue
                        chunk = json.loads(raw[6:])
                        if chunk.get("stop"):
                            if text or ids:
                                self._emit(stream, Delta("".join(text), logprobs=lps if req.logprobs is not None
                                                         else None, token_ids=ids))  # fmt: skip
                            n = self._final(stream, chunk)
                            held = self._free(held)  # its slot is free now, before this connection closes
                            return
                        got = self._content(req, chunk.get("tokens") or [])
                        ids += got
                        text.append(chunk.get("content", ""))
                        if req.logprobs is not None:
                            lps += _logprobs(chunk.get("completion_probabilities", []), req.logprobs)[: len(got)]
                    if text or ids:
                        n += len(ids)
                        self._emit(stream, Delta("".join(text), logprobs=lps if req.logprobs is not None else None,
                                                 token_ids=ids))  # fmt: skip
                        text, ids, lps = [], [], []
                raise ConnectionError("llama-server ended the stream without its last chunk")
        except asyncio.CancelledError:
            self.cancelled += 1
            self._emit(stream, Delta("", "cancelled", n))
        except Exception as e:  # the request's own error, reported to its caller
            self.failed += 1
            self._emit(stream, Delta("", "error", n, error=f"llama-server: {type(e).__name__}: {e}"))
        finally:
            self._free(held)
            self.active -= 1
            self._tasks.pop(stream.rid, None)

    def _free(self, held: bool) -> bool:
        """Give the request's slot back (once: the last chunk frees it, before the session closes,
        so the next request does not wait on a close)."""
        if held:
            self.slots.release()
        return False

    def _final(self, stream: Stream, chunk: dict) -> int:
        req = stream.request
        ended = chunk.get("stop_type") == "eos" and not req.ignore_eos
        n = int(chunk.get("tokens_predicted", 0)) - (1 if ended else 0)
        finish = FINISH.get(chunk.get("stop_type"), "stop")
        reason = chunk.get("stopping_word") or None
        # Unstreamed: the whole reply; streamed: whatever the last chunk still carries.
        ids = self._content(req, chunk.get("tokens") or [])
        lps = None
        if req.logprobs is not None:  # the end token's entry goes with it
            lps = _logprobs(chunk.get("completion_probabilities", []), req.logprobs)[: len(ids)]
        self.generated_tokens += n
        self._emit(stream, Delta(chunk.get("content", ""), finish, n, None, lps, None, ids, reason))
        return n

    def _content(self, req: Request, ids: list[int]) -> list[int]:
        return list(ids) if req.ignore_eos else [t for t in ids if t not in self.stop_ids]
