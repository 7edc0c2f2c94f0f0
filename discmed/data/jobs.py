"""The resumable job engine: many LLM calls, concurrently, that survive being killed.

Data construction (rewrite, kgqa) and evaluation (simulated consultations, judging) are the
same shape of work: thousands of items, each needing one or more model calls, each giving
one JSON result. This module runs that work:

- asyncio concurrency against any `Backend`: an openai backend is called natively async
  (aiohttp, 64 requests in flight on one event loop); a local one (hf, vllm) gets the calls
  that arrive together as one batched `backend.chat` in a worker thread;
- a rate limit (requests per second) and retries with exponential backoff and jitter;
- a SQLite journal (WAL): an item's result is committed the moment it finishes, so a run
  killed at any moment (even SIGKILL) restarts without redoing or duplicating finished items;
- a content-addressed cache keyed by (model, messages, params): a re-run of the same prompts
  costs nothing, even from a fresh journal;
- a token tally (the backend's tokenizer when it has one, else an estimate that says so),
  a progress bar, and provenance (which models answered, how many calls, cache hits).

Example::

    from discmed.backend import load_backend, GenParams
    from discmed.data.jobs import JobRunner

    runner = JobRunner("out/rewrite.journal.sqlite", concurrency=64, rate=None, retries=3)
    # (cache=PATH|None, progress=False, max_batch=8: calls per batch for a local backend)
    teacher = runner.client(load_backend("openai:http://127.0.0.1:8000/v1@tiny"), name="teacher")

    async def work(key: str, payload: dict) -> dict:
        reply = await teacher.chat([{"role": "user", "content": payload["q"]}], GenParams(max_new_tokens=64))
        return {"id": key, "reply": reply}

    summary = runner.run(((s["id"], s) for s in samples), work, desc="rewrite")
    # summary: {"done": 10, "failed": 0, "skipped": 0, "calls": 10, "cache_hits": 0,
    #           "prompt_tokens": …, "completion_tokens": …, "clients": {"teacher": {…}}, "wall_s": …}
    for key, result in runner.results():          # in input order; only finished items
        ...

`work(key, payload)` is an async function returning a JSON-serialisable dict; an exception
it raises (after the client's own retries) marks the item failed, with the error recorded,
and the run goes on; a later run retries failed items (their successful calls come from the
cache). Keys must be unique within a journal: they are how a restart knows what is done.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from pathlib import Path
from typing import Any


class RequestRejected(RuntimeError):
    """The endpoint refused the request itself (a 4xx other than 408/409/429): asking again won't help."""


# Errors that retrying cannot fix: a programming error, a backend refusing a feature, or an
# endpoint rejecting the request (a prompt over its context length, say).
NO_RETRY = (NotImplementedError, TypeError, KeyError, AttributeError, RequestRejected)

RE_CJK = re.compile("[\u4e00-\u9fff]")

# Per-item call record, so provenance can say which models answered this item.
_ITEM_CALLS: ContextVar[list | None] = ContextVar("_ITEM_CALLS", default=None)


def default_cache_path() -> Path:
    """Where the LLM call cache lives unless told otherwise ($DISCMED_CACHE overrides)."""
    base = os.environ.get("DISCMED_CACHE") or Path.home() / ".cache" / "discmed"
    return Path(base) / "llm_cache.sqlite"


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    # WAL + synchronous=NORMAL: a committed row survives the process being killed (not a
    # power cut, which only costs the last few commits); writers do not block readers.
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


def _params_dict(params: Any) -> dict:
    if params is None:
        return {}
    if dataclasses.is_dataclass(params):
        return dataclasses.asdict(params)
    if isinstance(params, dict):
        return dict(params)
    return dict(vars(params))


def cache_key(model: str, messages: list[dict], params: Any) -> str:
    """Content address of one call: sha256 of the model name, the messages and the params."""
    blob = json.dumps([model, messages, _params_dict(params)], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Cache:
    """A content-addressed store of replies in SQLite, shared by runs and processes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.con = _connect(self.path)
        self.con.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, model TEXT, reply TEXT, "
                         "prompt_tokens INTEGER, completion_tokens INTEGER, created REAL)")
        self.lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self.lock:
            row = self.con.execute("SELECT reply FROM replies WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, model: str, reply: str, prompt_tokens: int, completion_tokens: int) -> None:
        with self.lock:
            self.con.execute("INSERT OR REPLACE INTO replies VALUES (?,?,?,?,?,?)",
                             (key, model, reply, prompt_tokens, completion_tokens, time.time()))


class RateLimiter:
    """At most `rate` call starts per second, spread evenly (no bursts); None = unlimited."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self.next_at = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            start = max(now, self.next_at)
            self.next_at = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


class Client:
    """One backend seen through the engine: cached, rate-limited, retried, tallied, async."""

    def __init__(self, runner: JobRunner, backend: Any, name: str, model: str):
        self.runner, self.backend, self.name, self.model = runner, backend, name, model
        self.tokenizer = getattr(backend, "tokenizer", None)
        self.aclient = None  # an aiohttp session for openai backends, made inside the running loop
        self._pending: list[tuple[list[dict], Any, asyncio.Future]] = []  # local backends: the next batch
        self._timer: asyncio.TimerHandle | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.calls = 0
        self.cache_hits = 0
        self.retries = 0

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer.encode(text, add_special_tokens=False))
        # No tokenizer at hand (an API backend): ~1 token per CJK char, ~1 per 4 other chars.
        cjk = len(RE_CJK.findall(text))
        return cjk + (len(text) - cjk + 3) // 4

    async def chat(self, messages: list[dict], params: Any = None) -> str:
        """One reply to `messages`, from the cache when this exact call was made before."""
        calls = _ITEM_CALLS.get()
        cache = self.runner.cache
        key = cache_key(self.model, messages, params) if cache is not None else ""
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            self.cache_hits += 1
            if calls is not None:
                calls.append((self.name, self.model, True))
            return hit
        reply = await self._call(messages, params)
        pt = sum(self.count_tokens(m.get("content", "")) for m in messages)
        ct = self.count_tokens(reply)
        self.prompt_tokens += pt
        self.completion_tokens += ct
        self.calls += 1
        if cache is not None:
            cache.put(key, self.model, reply, pt, ct)
        if calls is not None:
            calls.append((self.name, self.model, False))
        return reply

    async def _call(self, messages: list[dict], params: Any) -> str:
        runner = self.runner
        for attempt in range(runner.retries + 1):
            await runner.limiter.wait()
            try:
                if self._is_openai():
                    return await self._openai_call(messages, params)
                return await self._local_call(messages, params)
            except NO_RETRY:
                raise
            except Exception:
                if attempt == runner.retries:
                    raise
                self.retries += 1
                # Exponential backoff with full jitter so 64 failing workers do not retry in step.
                delay = min(runner.backoff_max, runner.backoff * (2**attempt))
                await asyncio.sleep(random.uniform(0.5 * delay, delay))
        raise AssertionError("unreachable")

    async def _local_call(self, messages: list[dict], params: Any) -> str:
        # A local model (hf, vllm) generates a batch for about the price of one: calls that
        # arrive within 20 ms (or `max_batch` of them) go to backend.chat together.
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((messages, params, fut))
        if len(self._pending) >= self.runner.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(0.02, self._flush)
        return await fut

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        groups: dict[str, list] = {}
        for item in batch:  # one backend.chat call per distinct set of params
            groups.setdefault(json.dumps(_params_dict(item[1]), sort_keys=True, default=str), []).append(item)
        for group in groups.values():
            asyncio.ensure_future(self._run_batch(group))

    async def _run_batch(self, group: list) -> None:
        loop = asyncio.get_running_loop()
        try:
            outs = await loop.run_in_executor(self.runner.pool, self.backend.chat, [m for m, _, _ in group], group[0][1])
            for (_, _, fut), out in zip(group, outs, strict=True):
                if not fut.done():
                    fut.set_result(out)
        except Exception as e:  # every caller in the batch sees the error (and may retry)
            for _, _, fut in group:
                if not fut.done():
                    fut.set_exception(e)

    def _is_openai(self) -> bool:
        from discmed.backends.openai import OpenAIBackend

        return isinstance(self.backend, OpenAIBackend)

    async def _openai_call(self, messages: list[dict], params: Any) -> str:
        # An openai backend is called natively async with aiohttp: 64 requests in flight cost
        # one event loop, not 64 threads contending for the GIL. (The openai client's own
        # async path was measured slower here: its per-request overhead dominates at 320/s.)
        import aiohttp

        from discmed.backend import BackendError

        b = self.backend
        if self.aclient is None:
            self.aclient = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=float(b.client.timeout or 300)),
                headers={"Authorization": f"Bearer {b.client.api_key}", **getattr(b, "headers", {})})
        req = b._request(messages, params)
        req.update(req.pop("extra_body", {}))
        url = b.base_url.rstrip("/") + "/chat/completions"
        async with self.aclient.post(url, json=req) as resp:
            if resp.status >= 400:
                message = f"{b.base_url} answered {resp.status}: {(await resp.text())[:300]}"
                if 400 <= resp.status < 500 and resp.status not in (408, 409, 429):
                    raise RequestRejected(message)
                raise BackendError(message)
            body = await resp.json(content_type=None)
        usage = body.get("usage") or {}
        b._tally(type("Usage", (), {"prompt_tokens": usage.get("prompt_tokens"),
                                    "completion_tokens": usage.get("completion_tokens")})())
        return body["choices"][0]["message"].get("content") or ""

    def tally(self) -> dict:
        return {"model": self.model, "calls": self.calls, "cache_hits": self.cache_hits,
                "retries": self.retries, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "tokens_estimated": self.tokenizer is None}


class JobRunner:
    """Runs `work(key, payload)` over items with a journal; see the module docstring."""

    def __init__(self, journal: str | Path, *, concurrency: int = 16, rate: float | None = None,
                 retries: int = 3, backoff: float = 1.0, backoff_max: float = 30.0,
                 cache: str | Path | None | bool = True, progress: bool = True, max_batch: int = 8):
        self.journal = Path(journal)
        self.concurrency = max(1, int(concurrency))
        self.retries, self.backoff, self.backoff_max = retries, backoff, backoff_max
        self.progress = progress
        self.max_batch = max(1, int(max_batch))  # local backends: calls per backend.chat batch
        self.con = _connect(self.journal)
        self.con.execute("CREATE TABLE IF NOT EXISTS items (key TEXT PRIMARY KEY, seq INTEGER, status TEXT, "
                         "result TEXT, error TEXT, provenance TEXT, finished REAL)")
        self.con.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
        if cache is True:
            cache = default_cache_path()
        self.cache = Cache(cache) if cache else None
        self.clients: list[Client] = []
        self.limiter = RateLimiter(rate)
        self.pool: ThreadPoolExecutor | None = None

    def client(self, backend: Any, name: str = "model", model: str | None = None) -> Client:
        """Wrap `backend`; `model` names it in the cache key (default: the backend's spec)."""
        model = model or getattr(backend, "spec", None) or getattr(backend, "name", None) or type(backend).__name__
        c = Client(self, backend, name, str(model))
        self.clients.append(c)
        return c

    def set_meta(self, **meta: Any) -> None:
        """Record run-level provenance (prompt version, teacher, options) in the journal."""
        for k, v in meta.items():
            self.con.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (k, json.dumps(v, ensure_ascii=False)))

    def meta(self) -> dict:
        return {k: json.loads(v) for k, v in self.con.execute("SELECT k, v FROM meta")}

    def done_keys(self) -> set[str]:
        return {k for (k,) in self.con.execute("SELECT key FROM items WHERE status='done'")}

    def results(self, status: str = "done") -> Iterator[tuple[str, dict]]:
        """Finished items' (key, result) in input order."""
        cur = self.con.execute("SELECT key, result FROM items WHERE status=? ORDER BY seq", (status,))
        for key, result in cur:
            yield key, json.loads(result)

    def failures(self) -> Iterator[tuple[str, str]]:
        yield from self.con.execute("SELECT key, error FROM items WHERE status='failed' ORDER BY seq")

    def run(self, items: Iterable[tuple[str, Any]], work: Callable[[str, Any], Awaitable[dict]],
            *, desc: str = "jobs", total: int | None = None, stop_on_error: bool = False) -> dict:
        """Run `work` on every item not already done; returns a summary dict of counts."""
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        try:  # uvloop (installed with uvicorn[standard]) halves the event loop's per-request cost
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            factory = None
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(self._run(items, work, desc, total, stop_on_error))

    async def _run(self, items, work, desc, total, stop_on_error) -> dict:
        from tqdm import tqdm

        self.limiter = RateLimiter(1.0 / self.limiter.interval if self.limiter.interval else None)
        self.pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="discmed-job")
        done = self.done_keys()
        counts = {"done": 0, "failed": 0, "skipped": 0}
        queue: asyncio.Queue = asyncio.Queue(maxsize=self.concurrency * 2)
        bar = tqdm(total=total, desc=desc, unit="item", disable=not self.progress, dynamic_ncols=True)
        first_error: list[BaseException] = []
        seen: set[str] = set()
        t0 = time.perf_counter()

        async def worker() -> None:
            while True:
                got = await queue.get()
                if got is None:
                    return
                seq, key, payload = got
                calls: list = []
                token = _ITEM_CALLS.set(calls)
                try:
                    result = await work(key, payload)
                    row = ("done", json.dumps(result, ensure_ascii=False), None)
                except Exception as e:  # recorded per item; the run goes on
                    row = ("failed", None, f"{type(e).__name__}: {e}")
                    if stop_on_error and not first_error:
                        first_error.append(e)
                finally:
                    _ITEM_CALLS.reset(token)
                prov = {"models": sorted({f"{n}={m}" for n, m, _ in calls}), "calls": len(calls),
                        "cache_hits": sum(1 for *_, hit in calls if hit)}
                # One autocommitted statement per item: the item is done exactly when this returns.
                self.con.execute("INSERT OR REPLACE INTO items VALUES (?,?,?,?,?,?,?)",
                                 (key, seq, row[0], row[1], row[2], json.dumps(prov), time.time()))
                counts[row[0]] += 1
                bar.update(1)

        workers = [asyncio.create_task(worker()) for _ in range(self.concurrency)]
        try:
            for seq, (key, payload) in enumerate(items):
                if first_error:
                    break
                key = str(key)
                if key in seen:
                    raise ValueError(f"duplicate job key {key!r}: keys must be unique within a run")
                seen.add(key)
                if key in done:
                    counts["skipped"] += 1
                    bar.update(1)
                    continue
                await queue.put((seq, key, payload))
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            bar.close()
            self.pool.shutdown(wait=False, cancel_futures=True)
            for c in self.clients:  # an async client belongs to this run's event loop
                if c.aclient is not None:
                    await c.aclient.close()
                    c.aclient = None
        if first_error:
            raise first_error[0]
        wall = time.perf_counter() - t0
        tokens = {c.name: c.tally() for c in self.clients}
        return {**counts, "wall_s": round(wall, 3),
                "items_per_s": round(counts["done"] / wall, 2) if wall > 0 else None,
                "calls": sum(c.calls for c in self.clients),
                "cache_hits": sum(c.cache_hits for c in self.clients),
                "prompt_tokens": sum(c.prompt_tokens for c in self.clients),
                "completion_tokens": sum(c.completion_tokens for c in self.clients),
                "clients": tokens, "journal": str(self.journal)}

    def close(self) -> None:
        self.con.close()
        if self.cache is not None:
            self.cache.con.close()
