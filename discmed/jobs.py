"""The resumable job engine: many LLM calls, concurrently, that survive being killed.

Data construction (rewrite, kgqa) and evaluation (simulated consultations, judging) are the
same shape of work: thousands of items, each needing one or more model calls, each giving
one JSON result. This module runs that work:

- asyncio concurrency against any `Backend`, called through the contract's `achat`: an
  openai backend through the official AsyncOpenAI client (64 requests in flight on one event
  loop, the SDK's own retries with backoff), a local one (hf, vllm) with concurrent calls
  batched into one `backend.chat` in a worker thread (`backend.Batcher`);
- a rate limit (request starts per second);
- a SQLite journal (WAL): an item's result is committed the moment it finishes, so a run
  killed at any moment (even SIGKILL) restarts without redoing or duplicating finished items.
  The journal records each role's model identity: a journal made with another model (a
  folder retrained in place, another checkpoint) is not resumed but started over, said so
  on stderr, the old one kept beside it (`restart=False` refuses instead);
- a content-addressed cache keyed by (model identity, messages, params): a re-run of the same
  prompts on the same weights costs nothing, even from a fresh journal; new weights miss;
- a token tally (the backend's tokenizer when it has one, else an estimate that says so),
  a progress bar, and provenance (which models answered, how many calls, cache hits);
- a reasoning model's thinking (`<think>` blocks, `reasoning_content`) taken out of every
  reply (discmed.reasoning): work sees the answer, the item's provenance keeps the thinking.

Example::

    from discmed.backend import load_backend, GenParams
    from discmed.jobs import JobRunner

    runner = JobRunner("out/rewrite.journal.sqlite", concurrency=64, rate=None, cache=True)
    # (cache=True: the shared ~/.cache/discmed/llm_cache.sqlite, a PATH, or None; progress=False)
    teacher = runner.client(load_backend("openai:http://127.0.0.1:8000/v1@tiny"), name="teacher")

    async def work(key: str, payload: dict) -> dict:
        reply = await teacher.chat([{"role": "user", "content": payload["q"]}], GenParams(max_new_tokens=64))
        return {"id": key, "reply": reply}

    summary = runner.run(((s["id"], s) for s in samples), work, desc="rewrite")
    # summary: {"done": 10, "failed": 0, "skipped": 0, "calls": 10, "cache_hits": 0,
    #           "prompt_tokens": …, "completion_tokens": …, "clients": {"teacher": {…}}, "wall_s": …,
    #           "restarted": None or why the journal was started over}
    for key, result in runner.results():          # in input order; only finished items
        ...

`work(key, payload)` is an async function returning a JSON-serialisable dict; an exception
it raises (after the backend's own retries) marks the item failed, with the error recorded,
and the run goes on; a later run retries failed items (their successful calls come from the
cache). Keys must be unique within a journal: they are how a restart knows what is done.

Failures are loud and contained:

- before the first call, `client()` has an API backend check its endpoint (`check()`: the
  server answers, takes the key, serves the model), so a dead or wrong endpoint fails the
  command in seconds, not once per record;
- the first failed item is printed in full (endpoint, model, status, the server's message)
  the moment it fails; the rest are counted;
- a run of consecutive failures that are the endpoint's, not the item's (unreachable,
  refused key, no such model: `STOP_AFTER_ENDPOINT` in a row; 5xx, timeouts, empty bodies:
  `STOP_AFTER_OTHER`) stops the run: nothing more is sent, calls in flight finish, and the
  summary says why (`stopped`) and how many items were not attempted;
- a prompt that does not fit the model's context is failed before it is sent ("too long for
  this model's context (N prompt tokens …, limit M)"), where the backend can count tokens
  (local models; `discmed serve` and vLLM through `/tokenize`), and `max_new_tokens` is cut to
  the room left; such a failure is permanent: the journal keeps it and a rerun does not retry
  it (a server's own context 400 is classed the same);
- an input that cannot be read stops feeding the run, lets the calls in flight finish and
  be journaled, then raises: no teacher call already paid for is thrown away.

`raise_for_failures(summary)` is what a command calls after writing its outputs: exit 3 for
a stopped run, 4 when some items failed (their keys and reasons in `write_failures`'s file).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from discmed.errors import DiscmedError

# Consecutive failures, with no success between, after which a run stops sending: the
# endpoint's kinds (unreachable, refused key, no such model) and the rest (5xx, timeouts, bodies).
STOP_AFTER_ENDPOINT = 3
STOP_AFTER_OTHER = 10

RE_CJK = re.compile("[\u4e00-\u9fff]")

# Per-item call record, so provenance can say which models answered this item.
_ITEM_CALLS: ContextVar[list | None] = ContextVar("_ITEM_CALLS", default=None)


class JournalMismatch(DiscmedError):
    """A journal made with another model than the one loaded now (and told not to start over)."""


class RunStopped(DiscmedError):
    """A run that stopped sending because the endpoint kept failing (exit 3, as for a model
    that cannot be reached); what finished is journaled and written, a rerun resumes."""

    exit_code = 3


class ItemsFailed(DiscmedError):
    """A run that finished with some items failed (exit 4: the step ran, its output is
    partial); the failed items and their reasons are in the step's `.failed.jsonl`."""

    exit_code = 4


def job_outcome(run: dict, failed_file: str | Path | None = None) -> dict:
    """The failure fields of a run's summary that a step's own summary carries (and that
    `raise_for_failures` reads)."""
    out = {k: run.get(k) for k in ("total", "done", "failed", "failed_permanent", "not_attempted", "stopped",
                                   "first_error")}
    if failed_file is not None:
        out["failed_file"] = str(failed_file) if run.get("failed") else None
    return out


def end_job(summary: dict, *, what: str = "items", as_json: bool = False) -> None:
    """`raise_for_failures` at a command's boundary: its error as the command's one `error:`
    line (and the summary in the `--json` line) with its exit code; nothing when all went well."""
    from discmed.errors import fail

    try:
        raise_for_failures(summary, what=what)
    except DiscmedError as e:
        fail(str(e), as_json, e.exit_code, e.details)


def raise_for_failures(summary: dict, *, what: str = "items", failed_file: str | Path | None = None) -> None:
    """End a command that wrote its outputs: RunStopped for a stopped run, ItemsFailed when any
    item failed, nothing when all went well. The message says n of N and the first reason."""
    failed, stopped = summary.get("failed", 0), summary.get("stopped")
    total = summary.get("total")
    failed_file = failed_file or summary.get("failed_file")
    of = f" of {total}" if total is not None else ""
    first = summary.get("first_error")
    where = f"; the failed {what} and their reasons: {failed_file}" if failed_file and failed else ""
    if stopped:
        raise RunStopped(f"{stopped}; {summary.get('done', 0)} {what} done, {failed} failed, "
                         f"{summary.get('not_attempted', 0)} not attempted (rerun the same command to resume){where}",
                         details=summary)
    if failed:
        permanent = summary.get("failed_permanent", 0)
        rerun = (f"{permanent} cannot succeed with this model and settings and are not retried; "
                 if permanent else "") + ("a rerun retries the others" if failed > permanent else "")
        raise ItemsFailed(f"{failed}{of} {what} failed (first: {first}); {rerun}{where}".rstrip("; "),
                          details=summary)


def default_cache_path() -> Path:
    """The shared LLM call cache, used when a run asks for it ($DISCMED_CACHE overrides)."""
    base = os.environ.get("DISCMED_CACHE") or Path.home() / ".cache" / "discmed"
    return Path(base) / "llm_cache.sqlite"


def run_cache(out: Path, cache: str | Path | bool | None) -> str | Path | bool:
    """An evaluation run's call cache: its own file beside `out` (None), the shared one (True),
    a given file, or none (False). Per run by default, so a sampled patient is sampled anew."""
    return out.with_name(out.name + ".cache.sqlite") if cache is None else cache


def backend_for(model: str | Any, *, retries: int | None = None, timeout: float | None = None) -> Any:
    """The Backend a spec names (a Backend is returned as it is); an API model gets `retries`
    (the SDK's, the only retry layer) and a per-request `timeout`."""
    if not isinstance(model, str):
        return model
    from discmed.backend import load_backend, resolve

    options: dict[str, Any] = {}
    if resolve(model).kind == "openai":
        options = {k: v for k, v in (("max_retries", retries), ("timeout", timeout)) if v is not None}
    return load_backend(model, **options)


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


def cache_key(identity: str, messages: list[dict], params: Any) -> str:
    """Content address of one call: sha256 of the model's identity, the messages and the params."""
    blob = json.dumps([identity, messages, _params_dict(params)], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def describe_error(e: BaseException) -> str:
    """An item's failure in one line: a backend's own message (it names the endpoint, model and
    status) as it is, anything else with its type."""
    from discmed.backend import CallError

    return str(e) if isinstance(e, CallError) else f"{type(e).__name__}: {e}"


class Cache:
    """A content-addressed store of replies in SQLite, shared by runs and processes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.con = _connect(self.path)
        self.con.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, model TEXT, reply TEXT, "
                         "prompt_tokens INTEGER, completion_tokens INTEGER, created REAL, finish TEXT)")
        _add_column(self.con, "replies", "finish", "TEXT")  # a cache written before finish reasons were kept
        _add_column(self.con, "replies", "reasoning", "TEXT")  # … or a reasoning model's thinking
        self.lock = threading.Lock()

    def get(self, key: str) -> str | None:
        """The cached reply (a `Reply`, with the finish reason and reasoning it had), or None."""
        from discmed.backend import Reply

        with self.lock:
            row = self.con.execute("SELECT reply, finish, reasoning FROM replies WHERE key=?", (key,)).fetchone()
        return Reply(row[0], row[1], row[2]) if row else None

    def put(self, key: str, model: str, reply: str, prompt_tokens: int, completion_tokens: int) -> None:
        with self.lock:
            self.con.execute("INSERT OR REPLACE INTO replies (key, model, reply, prompt_tokens, completion_tokens, "
                             "created, finish, reasoning) VALUES (?,?,?,?,?,?,?,?)",
                             (key, model, reply, prompt_tokens, completion_tokens, time.time(),
                              getattr(reply, "finish_reason", None), getattr(reply, "reasoning", None)))


def _add_column(con: sqlite3.Connection, table: str, column: str, kind: str) -> None:
    if column not in {row[1] for row in con.execute(f"PRAGMA table_info({table})")}:
        con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


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
    """One backend seen through the engine: cached, rate-limited, tallied; called by `achat`."""

    def __init__(self, runner: JobRunner, backend: Any, name: str):
        self.runner, self.backend, self.name = runner, backend, name
        self.model = str(backend.identity)  # what the cache and the journal key on
        self.tokenizer = getattr(backend, "tokenizer", None)
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.calls = 0
        self.cache_hits = 0

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer.encode(text, add_special_tokens=False))
        # No tokenizer at hand (an API backend): ~1 token per CJK char, ~1 per 4 other chars.
        cjk = len(RE_CJK.findall(text))
        return cjk + (len(text) - cjk + 3) // 4

    async def chat(self, messages: list[dict], params: Any = None) -> str:
        """One reply to `messages`, from the cache when this model made this exact call before.
        A prompt that cannot fit the model's context fails here, before it is sent. The reply
        is the answer alone: a reasoning model's thinking is in `reply.reasoning` and in the
        item's journal provenance, never in the text (discmed.reasoning)."""
        from discmed.backend import GenParams
        from discmed.reasoning import separate

        params = params if params is not None else GenParams()
        calls = _ITEM_CALLS.get()
        cache = self.runner.cache
        key = cache_key(self.model, messages, params) if cache is not None else ""
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            self.cache_hits += 1
            if calls is not None:
                calls.append((self.name, self.model, True, hit.reasoning))
            return hit
        await self.runner.limiter.wait()
        fitted = await self.fit(messages, params)
        # The backend's own retries (the openai SDK's backoff for API models) are the only ones.
        reply = separate(await self.backend.achat(messages, fitted))
        pt = sum(self.count_tokens(m.get("content", "")) for m in messages)
        ct = self.count_tokens(reply) + self.count_tokens(getattr(reply, "reasoning", None) or "")  # thinking is output too
        self.prompt_tokens += pt
        self.completion_tokens += ct
        self.calls += 1
        if cache is not None:
            cache.put(key, self.model, reply, pt, ct)
        if calls is not None:
            calls.append((self.name, self.model, False, getattr(reply, "reasoning", None)))
        return reply

    async def fit(self, messages: list[dict], params: Any) -> Any:
        """`params` with `max_new_tokens` cut to the room the prompt leaves in the model's
        context; a prompt that leaves too little fails as `too long` (permanent).

        Counting costs a tokenizer pass (an HTTP call for an API), so it is done only when an
        upper bound says the prompt might not fit: a byte-level tokenizer never makes more
        tokens than the text has UTF-8 bytes, plus the chat format's markers."""
        from discmed.backend import too_long

        limit = getattr(self.backend, "context_limit", None)
        counter = getattr(self.backend, "count_prompt", None)
        if not limit or counter is None:
            return params
        bound = sum(len(str(m.get("content", "")).encode("utf-8")) + 16 for m in messages) + 64
        if bound + params.max_new_tokens <= limit:
            return params
        n = await counter(messages)
        if n is None:
            return params
        # A reply held to a JSON schema must have all its room; free text at least a sentence.
        need = params.max_new_tokens if params.json_schema is not None else min(params.max_new_tokens, 64)
        room = limit - n
        if room < need:
            raise too_long(n, limit, need, endpoint=getattr(self.backend, "base_url", None), model=self.model)
        return dataclasses.replace(params, max_new_tokens=room) if params.max_new_tokens > room else params

    def tally(self) -> dict:
        return {"model": self.model, "calls": self.calls, "cache_hits": self.cache_hits,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "tokens_estimated": self.tokenizer is None}


@dataclasses.dataclass
class Outcome:
    """What `JobRunner.map` gives back: one result per item in order (None for a failed or not
    attempted one), the failed items' errors by key, and the run's summary."""

    results: list[dict | None]
    failures: dict[str, str]
    summary: dict


class JobRunner:
    """Runs `work(key, payload)` over items with a journal; see the module docstring."""

    def __init__(self, journal: str | Path | None, *, concurrency: int = 16, rate: float | None = None,
                 cache: str | Path | None | bool = None, progress: bool = True, restart: bool = True):
        """`journal`: the SQLite file that makes the run resumable, or None for work that is
        not resumed (RL rollouts: a resumed run samples afresh), kept in memory.
        `cache`: a file, True for the shared one, None or False for no call cache."""
        self.journal = Path(journal) if journal is not None else None
        self.concurrency = max(1, int(concurrency))
        self.progress = progress
        self.restart = restart  # a journal made with another model: start over (True) or refuse
        self.restarted: str | None = None  # why this run started over, if it did
        self._open()
        if cache is True:
            cache = default_cache_path()
        self.cache = Cache(cache) if cache else None
        self.clients: list[Client] = []
        self.limiter = RateLimiter(rate)

    def __enter__(self) -> JobRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _open(self) -> None:
        if self.journal is None:
            self.con = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            self.con = _connect(self.journal)
        self.con.execute("CREATE TABLE IF NOT EXISTS items (key TEXT PRIMARY KEY, seq INTEGER, status TEXT, "
                         "result TEXT, error TEXT, provenance TEXT, finished REAL, kind TEXT)")
        _add_column(self.con, "items", "kind", "TEXT")  # a journal written before failures had kinds
        self.con.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
        self.failed_items: dict[str, tuple[Any, str, str | None]] = {}  # this run's: key → (payload, error, kind)

    def client(self, backend: Any, name: str = "model") -> Client:
        """Wrap `backend` (any discmed Backend) under a role name ("teacher", "doctor" …).

        The journal records each role's model identity; one made with another model than
        `backend` is not resumed: the run starts over (the old journal kept beside, and said
        so on stderr) or, with `restart=False`, is refused."""
        check = getattr(backend, "check", None)
        if check is not None:  # an API endpoint: dead, wrong URL, refused key, no such model → fail now
            check()
        c = Client(self, backend, name)
        recorded = self.meta().get("models", {})
        has_items = self.con.execute("SELECT 1 FROM items LIMIT 1").fetchone() is not None
        if has_items and recorded.get(name) != c.model:
            was = recorded.get(name) or "a model it did not record"
            why = f"{self.journal} was made with {name} {was}, not {c.model}"
            if not self.restart:
                raise JournalMismatch(f"{why}; start a new run (restart=True) or use another output")
            self._start_over(why)
            recorded = {other.name: other.model for other in self.clients}  # the roles of this run
        self.set_meta(models={**recorded, name: c.model})
        self.clients.append(c)
        return c

    def _start_over(self, why: str) -> None:
        meta = {k: v for k, v in self.meta().items() if k != "models"}
        self.con.close()
        stale = self.journal.with_name(f"{self.journal.name}.{time.strftime('%Y%m%d-%H%M%S')}.stale")
        os.replace(self.journal, stale)
        for suffix in ("-wal", "-shm"):  # WAL files belong to the closed connection's database
            side = self.journal.with_name(self.journal.name + suffix)
            if side.exists():
                os.replace(side, stale.with_name(stale.name + suffix))
        self._open()
        self.set_meta(**meta)
        self.restarted = f"{why}: starting a new run (the old journal is {stale})"
        print(f"discmed: {self.restarted}", file=sys.stderr)

    def set_meta(self, **meta: Any) -> None:
        """Record run-level provenance (prompt version, teacher, options) in the journal."""
        for k, v in meta.items():
            self.con.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (k, json.dumps(v, ensure_ascii=False)))

    def keep_settings(self, settings: dict[str, Any]) -> None:
        """Record the run's settings; a journal written with other settings is refused, not mixed into."""
        previous = self.meta().get("settings")
        if previous is not None and previous != json.loads(json.dumps(settings)):
            raise ValueError(f"{self.journal}: this journal was written with other settings ({previous}); "
                             "choose another --out or delete the journal to start over")
        self.set_meta(settings=settings)

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

    def permanent_failures(self) -> dict[str, tuple[str, str]]:
        """Failed items a rerun does not retry (a prompt too long for the model): key → (error, kind)."""
        rows = self.con.execute("SELECT key, error, kind FROM items WHERE status='failed' AND kind='context'")
        return {k: (e, kind) for k, e, kind in rows}

    def write_failures(self, path: str | Path, describe: Callable[[str, Any], dict] | None = None) -> int:
        """The items that failed in the last run (and the permanent failures it did not retry),
        one JSON line each: key, kind, error, and what `describe(key, payload)` adds (the input
        record, say), so they can be looked at and fed again. Removes a stale file when none failed."""
        from discmed.chat import atomic_writer

        path = Path(path)
        if not self.failed_items:
            path.unlink(missing_ok=True)
            return 0
        with atomic_writer(path) as f:
            for key, (payload, error, kind) in self.failed_items.items():
                row = {"key": key, "kind": kind, "error": error, **(describe(key, payload) if describe else {})}
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        return len(self.failed_items)

    def map(self, items: Iterable[tuple[str, Any]], work: Callable[[str, Any], Awaitable[dict]], *,
            desc: str = "jobs") -> Outcome:
        """`run`, then what a caller wants from it: the results of exactly these items in their
        order (None where an item failed or was not attempted), their failures, and the summary."""
        items = list(items)
        summary = self.run(items, work, desc=desc, total=len(items))
        keys = [str(k) for k, _ in items]
        wanted = set(keys)
        done = {k: r for k, r in self.results() if k in wanted}
        failures = {k: e for k, e in self.failures() if k in wanted}
        return Outcome([done.get(k) for k in keys], failures, summary)

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
        done = self.done_keys()
        permanent = self.permanent_failures()
        self.failed_items = {}
        counts = {"done": 0, "failed": 0, "skipped": 0}
        state = {"streak": 0, "other_streak": 0, "stopped": None, "first_error": None, "permanent": 0,
                 "not_attempted": 0}
        queue: asyncio.Queue = asyncio.Queue(maxsize=self.concurrency * 2)
        bar = tqdm(total=total, desc=desc, unit="item", disable=not self.progress, dynamic_ncols=True)
        first_error: list[BaseException] = []
        seen: set[str] = set()
        t0 = time.perf_counter()

        def note_failure(key: str, payload: Any, e: BaseException | None, error: str, kind: str | None) -> None:
            counts["failed"] += 1
            self.failed_items[key] = (payload, error, kind)
            if kind == "context":
                state["permanent"] += 1
            if state["first_error"] is None:
                state["first_error"] = error
                # In full, at once: a run of 10,000 records should not hide its cause until the end.
                tqdm.write(f"discmed: {desc}: {key} failed: {error}", file=sys.stderr)
            if e is None:
                return
            if getattr(e, "endpoint_down", False):
                state["streak"] += 1
            elif getattr(e, "kind", None) in ("server", "timeout", "bad_body"):
                state["other_streak"] += 1
            else:
                return
            if state["stopped"] is None and (state["streak"] >= STOP_AFTER_ENDPOINT
                                             or state["other_streak"] >= STOP_AFTER_OTHER):
                n = max(state["streak"], state["other_streak"])
                state["stopped"] = f"stopped after {n} failures in a row that are the endpoint's, not the items' ({error})"
                tqdm.write(f"discmed: {desc}: {state['stopped']}; sending nothing more", file=sys.stderr)

        async def worker() -> None:
            while True:
                got = await queue.get()
                if got is None:
                    return
                seq, key, payload = got
                if state["stopped"] is not None:  # queued before the run stopped: not sent now
                    state["not_attempted"] += 1
                    continue
                calls: list = []
                token = _ITEM_CALLS.set(calls)
                err: BaseException | None = None
                try:
                    result = await work(key, payload)
                    row = ("done", json.dumps(result, ensure_ascii=False), None, None)
                except Exception as e:  # recorded per item; the run goes on
                    err = e
                    row = ("failed", None, describe_error(e), getattr(e, "kind", None))
                    if stop_on_error and not first_error:
                        first_error.append(e)
                finally:
                    _ITEM_CALLS.reset(token)
                prov = {"models": sorted({f"{n}={m}" for n, m, *_ in calls}), "calls": len(calls),
                        "cache_hits": sum(1 for _, _, hit, _ in calls if hit)}
                thoughts = [{"role": n, "call": i, "reasoning": r} for i, (n, _, _, r) in enumerate(calls) if r]
                if thoughts:  # a reasoning model's thinking: kept here, never in the result
                    prov["reasoning"] = thoughts
                # One autocommitted statement per item: the item is done exactly when this returns.
                self.con.execute("INSERT OR REPLACE INTO items (key, seq, status, result, error, provenance, "
                                 "finished, kind) VALUES (?,?,?,?,?,?,?,?)",
                                 (key, seq, row[0], row[1], row[2], json.dumps(prov), time.time(), row[3]))
                if row[0] == "done":
                    counts["done"] += 1
                    state["streak"] = state["other_streak"] = 0
                else:
                    note_failure(key, payload, err, row[2], row[3])
                bar.update(1)

        workers = [asyncio.create_task(worker()) for _ in range(self.concurrency)]
        feed_error: BaseException | None = None
        try:
            try:
                for seq, (key, payload) in enumerate(items):
                    key = str(key)
                    if key in seen:
                        raise ValueError(f"duplicate job key {key!r}: keys must be unique within a run")
                    seen.add(key)
                    if first_error or state["stopped"]:
                        state["not_attempted"] += key not in done and key not in permanent
                        continue
                    if key in done:
                        counts["skipped"] += 1
                        bar.update(1)
                        continue
                    if key in permanent:  # failed before for a reason a rerun cannot change
                        note_failure(key, payload, None, *permanent[key])
                        bar.update(1)
                        continue
                    await queue.put((seq, key, payload))
            except Exception as e:  # bad input: stop feeding, but let the calls in flight finish and be kept
                if state["stopped"] is None:  # (a stopped run's own reason comes first)
                    feed_error = e
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            bar.close()
            for c in self.clients:  # an API backend's async client belongs to this run's event loop
                aclose = getattr(c.backend, "aclose", None)
                if aclose is not None:
                    await aclose()
        if feed_error is not None:
            raise feed_error
        if first_error:
            raise first_error[0]
        wall = time.perf_counter() - t0
        tokens = {c.name: c.tally() for c in self.clients}
        return {**counts, "total": len(seen), "failed_permanent": state["permanent"],
                "not_attempted": state["not_attempted"], "stopped": state["stopped"],
                "first_error": state["first_error"], "wall_s": round(wall, 3),
                "items_per_s": round(counts["done"] / wall, 2) if wall > 0 else None,
                "calls": sum(c.calls for c in self.clients),
                "cache_hits": sum(c.cache_hits for c in self.clients),
                "prompt_tokens": sum(c.prompt_tokens for c in self.clients),
                "completion_tokens": sum(c.completion_tokens for c in self.clients),
                "clients": tokens, "journal": str(self.journal) if self.journal else None, "restarted": self.restarted}

    def close(self) -> None:
        self.con.close()
        if self.cache is not None:
            self.cache.con.close()
