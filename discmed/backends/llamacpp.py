"""llama.cpp: `load_backend("llamacpp:FOLDER/NAME.gguf")` (a bare path ending in .gguf too).

The GGUF is run by llama-server in a child process (discmed.engine.llamacpp); its prompts are
discmed.formats' ids, built from the tokenizer and format of the folder the GGUF was exported
into (`discmed train export --gguf` writes both), so a GGUF is prompted exactly as the hf
backend prompts its safetensors. A GGUF without that folder is refused: llama.cpp's own chat
templates are exactly what drifts in exports.

`chat` submits its conversations together (llama.cpp batches them over its slots), `achat`
awaits one (the job engine's calls share the slots), `stream` reads one request's deltas.
`choice_logprobs` is not offered: llama-server scores no prompt tokens.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from discmed.backends.enginechat import EngineChat, tokenizer_and_format
from discmed.chat import read_json
from discmed.contract import BackendError, GenParams, fingerprint
from discmed.engine.llamacpp import LlamaCppEngine, LlamaServer, ToolsMissing, tool


def export_folder(gguf: Path) -> Path:
    """The folder holding a GGUF's tokenizer and format: the one it was exported into."""
    folder = gguf.parent
    if not (folder / "tokenizer_config.json").is_file() or not (folder / "config.json").is_file():
        raise BackendError(f"{gguf}: no tokenizer beside it: serve a GGUF written by `discmed train export --gguf`, "
                           "whose folder holds the tokenizer and chat format the weights were trained with")
    return folder


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class LlamaCppBackend(EngineChat):
    """The Backend contract over llama-server."""

    def __init__(self, path: str, *, name: str | None = None, format: str | None = None,
                 max_length: int | None = None, threads: int | None = None, parallel: int = 8,
                 max_queue: int = 256, kv_cache: str = "auto", **_: Any):  # fmt: skip
        gguf = Path(path).expanduser()
        if not gguf.is_file():
            raise BackendError(f"{gguf}: no such GGUF file")
        folder = export_folder(gguf)
        self.path = str(gguf)
        self.name = name or folder.name
        gen = read_json(folder / "generation_config.json") if (folder / "generation_config.json").is_file() else {}
        self.tokenizer, self.format = tokenizer_and_format(str(folder), format or gen.get("discmed_format"), False)
        config = read_json(folder / "config.json")
        self.max_length = int(max_length or config.get("max_position_embeddings") or 4096)
        self.stop_ids = self.format.stop_token_ids(self.tokenizer)
        self.generation = gen
        try:
            binary = tool("llama-server")
        except ToolsMissing as e:
            raise BackendError(str(e)) from None
        self.server = LlamaServer(gguf, binary=binary, threads=threads or default_threads(), parallel=parallel,
                                  ctx_per_slot=self.max_length, kv_cache=kv_cache)  # fmt: skip
        self.engine = LlamaCppEngine(self.server, len(self.tokenizer), self.stop_ids, max_queue=max_queue)
        self.identity = f"{gguf.name}@{fingerprint(folder)}"

    def default_params(self) -> GenParams:
        gc, sample = self.generation, bool(self.generation.get("do_sample", False))
        return GenParams(
            max_new_tokens=min(int(gc.get("max_new_tokens") or 512), 2048),
            temperature=float(gc.get("temperature") or 1.0) if sample else 0.0,
            top_p=float(gc.get("top_p") or 1.0) if sample else 1.0,
            top_k=int(gc.get("top_k") or 0) if sample else 0,
            repetition_penalty=float(gc.get("repetition_penalty") or 1.0),
        )

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]:
        raise BackendError("llama.cpp scores no prompt tokens: run eval mcq with --mode generate on a GGUF "
                           "(or --mode logprob on the hf folder it was exported from)")
