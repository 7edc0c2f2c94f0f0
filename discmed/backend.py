"""The one contract everything that talks to a language model goes through.

The teacher in data construction, the doctor in chat and serve, the patient and the judge in
evaluation: all are a `Backend`, picked by one model-spec string.

    load_backend("tiny")                                  # the embedded default, built on first use
    load_backend("hf:Flmc/DISC-MedLLM")                   # transformers: hub id or local folder
    load_backend("/path/to/model")                        # a bare path means hf
    load_backend("openai:http://127.0.0.1:8000/v1@tiny")  # any OpenAI-compatible endpoint
    load_backend("vllm:/path/to/model")                   # in-process vLLM (optional extra, GPU)

Beside `chat` (batched), `stream` and `choice_logprobs`, every backend has `achat`, one async
call (the job engine's way in: the official AsyncOpenAI client for APIs, calls batched into
`chat` for local models), and an `identity` that changes when the weights do: a fingerprint
of a local folder's config and weight files, a hub revision, an API's base URL and model id.
Caches and journals key on `identity`, never on `name`, so a model retrained in place is
never answered from the old one's results.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from discmed.chat import Message
from discmed.errors import DiscmedError, SpecError


@dataclass
class GenParams:
    """Sampling parameters shared by every backend. `temperature == 0` means greedy."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    # OpenAI's: subtracted from a token's logit once per time it was generated (frequency) and
    # once if it was generated at all (presence); the prompt does not count, as in vLLM.
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    # The reply should be JSON valid for this schema: constrained decoding where the backend
    # can (the hf backend with a fast tokenizer, `discmed serve`, vLLM, OpenAI's structured
    # outputs through `response_format`), plain generation where it cannot. Callers still
    # parse what comes back, so a backend without it costs accuracy, not the run.
    json_schema: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class BackendError(DiscmedError, RuntimeError):
    """A backend that cannot do what was asked, with the reason."""

    exit_code = 3


class CallError(BackendError):
    """One model call that failed, saying where and why: the endpoint, the model, the HTTP
    status and the server's own message, and what kind of failure it is:

    - `unreachable`, `auth`, `not_found`: the endpoint is down, refuses the key, or has no such
      model or route — not a per-record problem; the job engine stops a run after a few in a row;
    - `context`: the prompt does not fit the model's context — permanent: a rerun fails the
      same way, so the journal keeps it and a rerun does not try again;
    - `bad_body`: a 200 whose body is empty, cut off or not the JSON the API promises (after
      retrying as for a 5xx); `timeout`, `server`, `bad_request`: the rest.
    """

    ENDPOINT_KINDS = frozenset({"unreachable", "auth", "not_found"})

    def __init__(self, message: str, *, kind: str, endpoint: str | None = None, model: str | None = None,
                 status: int | None = None):
        super().__init__(message)
        self.kind, self.endpoint, self.model, self.status = kind, endpoint, model, status

    @property
    def permanent(self) -> bool:
        return self.kind == "context"

    @property
    def endpoint_down(self) -> bool:
        return self.kind in self.ENDPOINT_KINDS


def too_long(prompt_tokens: int, limit: int, need: int, *, endpoint: str | None = None,
             model: str | None = None) -> CallError:
    """The permanent failure of a prompt that leaves less than `need` tokens for the reply."""
    return CallError(f"too long for this model's context ({prompt_tokens} prompt tokens + {need} for the reply, "
                     f"limit {limit})", kind="context", endpoint=endpoint, model=model)


class Reply(str):
    """A reply's text (a plain `str` to every caller) that also says why generation ended:
    `finish_reason` "stop" (the model ended it, or a stop string) or "length" (cut off at
    `max_new_tokens`), None where the backend cannot tell. A parser that fails on a reply cut
    off at the limit can then say so instead of blaming the model's format. `reasoning`: a
    reasoning model's thinking, kept apart from the text (discmed.reasoning), else None."""

    finish_reason: str | None
    reasoning: str | None

    def __new__(cls, text: str, finish_reason: str | None = None, reasoning: str | None = None) -> Reply:
        self = super().__new__(cls, text)
        self.finish_reason = finish_reason
        self.reasoning = reasoning
        return self


def cut_off(reply: str) -> bool:
    """Whether `reply` ended at the token limit rather than by itself."""
    return getattr(reply, "finish_reason", None) == "length"


class Backend(Protocol):
    name: str  # for people: a folder's name, the served model's name
    identity: str  # for caches and journals: changes whenever the weights do (see model_identity)

    def chat(self, conversations: list[list[Message]], params: GenParams) -> list[str]: ...

    async def achat(self, messages: list[Message], params: GenParams) -> str: ...

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[str]: ...

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]: ...


def apply_stop(text: str, stop: list[str], start: int = 0) -> tuple[str, bool]:
    """Cut `text` at the first stop string; returns (text, whether a stop string was found).
    `start`: where to begin looking (a caller that searched the text before need not again)."""
    cut = min((i for i in (text.find(s, start) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


# -- identity ---------------------------------------------------------------------------
# Files of a model folder that do not change what it answers: a model card, logs, licences,
# pictures. (Tokenizer files such as vocab.txt and merges.txt do, and are kept.)
_NOT_MODEL = re.compile(r"(?i)(readme|license|notice)(\..*)?|.*\.(md|log|png|lock)|training_args\.bin|\..*")
_SMALL = 1 << 20  # files under 1 MiB (configs, tokenizer, index, chat template) are hashed whole


def fingerprint(folder: str | os.PathLike) -> str:
    """A digest of a model folder's config, tokenizer and weight files that changes whenever
    they do: small files by content, weight files by name, size and mtime (cheap on 26 GB).
    Checkpoint subfolders are other models and are left out."""
    h = hashlib.sha256()
    for f in sorted(Path(folder).iterdir()):
        if not f.is_file() or _NOT_MODEL.fullmatch(f.name):
            continue
        st = f.stat()
        h.update(f"{f.name}\0{st.st_size}\0".encode())
        h.update(f.read_bytes() if st.st_size < _SMALL else str(st.st_mtime_ns).encode())
    return h.hexdigest()[:16]


def model_identity(path: str) -> str:
    """`name@digest` for a local folder, `org/name@revision` for a hub model in the local cache."""
    folder = Path(path).expanduser()
    if folder.is_dir():
        return f"{folder.resolve().name}@{fingerprint(folder)}"
    try:  # a hub id: the snapshot transformers loaded is named by its commit
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path, "config.json")
    except Exception:  # not a valid repo id, or no hub library: nothing better than the name
        cached = None
    if isinstance(cached, str):
        return f"{path}@{Path(cached).parent.name}"
    return path


# -- async calls ------------------------------------------------------------------------
class Batcher:
    """`achat` for a local model: concurrent single calls that arrive within `window` seconds
    (or `max_batch` of them) become one batched `chat` in a worker thread, since a local model
    generates a batch for about the price of one. One `chat` per distinct set of params."""

    def __init__(self, chat: Callable[[list[list[Message]], GenParams], list[str]], max_batch: int = 8,
                 window: float = 0.02):
        self.chat, self.max_batch, self.window = chat, max(1, max_batch), window
        self._pending: list[tuple[list[Message], GenParams, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None

    async def __call__(self, messages: list[Message], params: GenParams) -> str:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((messages, params, fut))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.window, self._flush)
        return await fut

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        groups: dict[str, list] = {}
        for item in batch:
            groups.setdefault(repr(item[1]), []).append(item)
        for group in groups.values():
            asyncio.ensure_future(self._run(group))

    async def _run(self, group: list) -> None:
        try:
            outs = await asyncio.to_thread(self.chat, [m for m, _, _ in group], group[0][1])
            for (_, _, fut), out in zip(group, outs, strict=True):
                if not fut.done():
                    fut.set_result(out)
        except Exception as e:  # every caller in the batch sees the error
            for _, _, fut in group:
                if not fut.done():
                    fut.set_exception(e)


# -- specs ------------------------------------------------------------------------------
def parse_spec(spec: str) -> tuple[str, str]:
    """`kind:target` → (kind, target); `tiny` and bare paths are hf. An unknown kind
    (`vlm:/x`) is refused rather than taken for a hub id (which never holds a colon)."""
    if spec == "tiny":
        return "tiny", ""
    kind, sep, target = spec.partition(":")
    if sep and kind in BACKENDS:
        return kind, target
    if sep and re.fullmatch(r"[A-Za-z][\w.-]*", kind) and not re.fullmatch(r"[A-Za-z]", kind):
        near = difflib.get_close_matches(kind, BACKENDS, n=1)
        hint = f" (did you mean {near[0]}:?)" if near else ""
        raise SpecError(f"unknown model kind {kind!r} in {spec!r}{hint}; "
                        "expected tiny, hf:PATH_OR_HUB_ID, openai:URL@MODEL or vllm:PATH")
    return "hf", spec


def check_spec(spec: str) -> tuple[str, str]:
    """`parse_spec`, plus what can be known before loading: a path that does not exist, an
    API target that is not an http(s) URL. Raises SpecError in one line."""
    kind, target = parse_spec(spec)
    if kind in ("hf", "vllm"):
        looks_local = target.startswith(("/", "./", "../", "~")) or not target
        if looks_local and not Path(target).expanduser().is_dir():
            what = "is not a folder" if Path(target).expanduser().exists() else "does not exist"
            raise SpecError(f"model {spec!r}: {target or '(empty path)'} {what}")
    if kind == "openai":
        from discmed.backends.openai import split_target

        if not split_target(target)[0].startswith(("http://", "https://")):
            raise SpecError(f"model {spec!r}: the openai backend needs an http(s) base URL (openai:URL@MODEL)")
    return kind, target


@dataclass(frozen=True)
class ModelRef:
    """What a model spec names, resolved once for every command (serve, train, eval, quantize …):
    its kind, the target as written, and for local kinds the folder or hub id to load from."""

    spec: str
    kind: str  # tiny | hf | openai | vllm
    target: str

    @property
    def local(self) -> bool:
        """Weights this process loads itself (tiny, hf:…, a path), not an API."""
        return self.kind in ("tiny", "hf")

    @property
    def path(self) -> str:
        """The folder or hub id to load (`tiny`: the embedded model's folder, built on first use)."""
        if self.kind == "tiny":
            from discmed.tiny import ensure_tiny

            return str(ensure_tiny())
        if self.kind == "openai":
            raise SpecError(f"model {self.spec!r} is an API endpoint, not weights this command can load")
        return self.target

    @property
    def name(self) -> str:
        """For people and for clients: "tiny", a folder's name, a hub id, an API's model."""
        if self.kind == "tiny":
            return "tiny"
        if self.kind == "openai":
            from discmed.backends.openai import split_target

            base, model = split_target(self.target)
            return model or base
        folder = Path(self.target).expanduser()
        return folder.resolve().name if folder.is_dir() else self.target


def adapter_base(folder: str | os.PathLike) -> str | None:
    """The base a LoRA adapter folder names (`base_model_name_or_path`, as the recipe wrote it:
    `tiny`, a hub id, a path), or None for a folder that is not an adapter. The one reader of
    adapter_config.json; resolve it with `resolve(base).path`."""
    import json

    cfg = Path(folder) / "adapter_config.json"
    if not cfg.is_file():
        return None
    base = json.loads(cfg.read_text(encoding="utf-8")).get("base_model_name_or_path") or ""
    if not base:
        raise SpecError(f"{cfg}: base_model_name_or_path is empty")
    return base


def resolve(spec: str) -> ModelRef:
    """The one reading of a model spec (`tiny`, `hf:ID_OR_PATH`, a bare path, `openai:URL@MODEL`,
    `vllm:PATH`), checked as far as can be known before loading (`check_spec`)."""
    kind, target = check_spec(spec)
    return ModelRef(spec, kind, target)


def _load_hf(target: str, **options: Any) -> Backend:
    from discmed.backends.hf import HFBackend

    return HFBackend(target, **options)


def _load_tiny(target: str, **options: Any) -> Backend:
    from discmed.backends.hf import HFBackend
    from discmed.tiny import ensure_tiny

    return HFBackend(str(ensure_tiny()), name="tiny", **options)


def _load_openai(target: str, **options: Any) -> Backend:
    from discmed.backends.openai import OpenAIBackend

    return OpenAIBackend(target, **options)


def _load_vllm(target: str, **options: Any) -> Backend:
    from discmed.backends.vllm import VLLMBackend

    return VLLMBackend(target, **options)


BACKENDS = {"hf": _load_hf, "tiny": _load_tiny, "openai": _load_openai, "vllm": _load_vllm}


def load_backend(spec: str, **options: Any) -> Backend:
    """The backend a model-spec string names; `options` go to its constructor."""
    kind, target = check_spec(spec)
    return BACKENDS[kind](target, **options)
