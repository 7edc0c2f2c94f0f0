"""What every part that talks to a language model agrees on: the `Backend` contract and its
sampling parameters (`GenParams`), replies (`Reply`, with why generation ended), failures
(`BackendError`, `CallError` with its kind), which weights a model is (`model_identity`) and
which model a spec names (`resolve` → `ModelRef`, the one reader of a spec; `adapter_base`, the
one reader of a LoRA adapter's base).

It imports no backend: the backends (discmed.backends), the engines under them
(discmed.engine) and the job engine build on it, and `discmed.backend.load_backend` puts a
backend behind a spec.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from discmed.chat import Message
from discmed.errors import DiscmedError, SpecError
from discmed.tiny import ensure_tiny


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


# -- specs ------------------------------------------------------------------------------
KINDS = ("tiny", "hf", "openai", "vllm", "llamacpp")


def split_target(target: str) -> tuple[str, str | None]:
    """`http://host:port/v1@model` → (base URL, model or None)."""
    base, sep, model = target.rpartition("@")
    if not sep or "/" in model:  # no '@', or the '@' belonged to the URL
        return target, None
    return base, model or None


def parse_spec(spec: str) -> tuple[str, str]:
    """`kind:target` → (kind, target); `tiny` and bare paths are hf. An unknown kind
    (`vlm:/x`) is refused rather than taken for a hub id (which never holds a colon)."""
    if spec == "tiny":
        return "tiny", ""
    kind, sep, target = spec.partition(":")
    if sep and kind in KINDS:
        return kind, target
    if sep and re.fullmatch(r"[A-Za-z][\w.-]*", kind) and not re.fullmatch(r"[A-Za-z]", kind):
        near = difflib.get_close_matches(kind, KINDS, n=1)
        hint = f" (did you mean {near[0]}:?)" if near else ""
        raise SpecError(f"unknown model kind {kind!r} in {spec!r}{hint}; "
                        "expected tiny, hf:PATH_OR_HUB_ID, openai:URL@MODEL, vllm:PATH or llamacpp:FILE.gguf")
    if spec.lower().endswith(".gguf"):  # a GGUF file is llama.cpp's whatever it is called
        return "llamacpp", spec
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
    if kind == "llamacpp" and not Path(target).expanduser().is_file():
        raise SpecError(f"model {spec!r}: {target or '(empty path)'} is not a GGUF file")
    if kind == "openai":
        if not split_target(target)[0].startswith(("http://", "https://")):
            raise SpecError(f"model {spec!r}: the openai backend needs an http(s) base URL (openai:URL@MODEL)")
    return kind, target


@dataclass(frozen=True)
class ModelRef:
    """What a model spec names, resolved once for every command (serve, train, eval, quantize …):
    its kind, the target as written, and for local kinds the folder or hub id to load from."""

    spec: str
    kind: str  # tiny | hf | openai | vllm | llamacpp
    target: str

    @property
    def local(self) -> bool:
        """Weights this process loads itself (tiny, hf:…, a path), not an API."""
        return self.kind in ("tiny", "hf")

    @property
    def path(self) -> str:
        """The folder or hub id to load (`tiny`: the embedded model's folder, built on first use)."""
        if self.kind == "tiny":
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
            base, model = split_target(self.target)
            return model or base
        folder = Path(self.target).expanduser()
        return folder.resolve().name if folder.is_dir() else self.target


def adapter_base(folder: str | os.PathLike) -> str | None:
    """The base a LoRA adapter folder names (`base_model_name_or_path`, as the recipe wrote it:
    `tiny`, a hub id, a path), or None for a folder that is not an adapter. The one reader of
    adapter_config.json; resolve it with `resolve(base).path`."""
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
