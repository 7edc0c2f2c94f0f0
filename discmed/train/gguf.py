"""GGUF export through llama.cpp's own converter and quantiser, and where llama.cpp's tools are.

`discmed train export --gguf` first writes the servable folder (`discmed.train.merge.export`:
safetensors, the format's checked chat template, generation config), then, in the same folder:

- `NAME.QUANT.gguf`: `convert_hf_to_gguf.py` (llama.cpp's, the version the tools were built
  from) writes f32, f16, bf16 or q8_0 itself; any other type (q4_k_m, q5_k_m, q6_k, q4_0, ...)
  is written by `llama-quantize` from an f32 intermediate, which is removed after;
- `Modelfile` for Ollama (`discmed.train.ollama`): the same prompt layout as the chat template,
  in Ollama's Go template language, with the format's stop tokens;
- `chat_template.jinja` (written with the folder, and inside the GGUF): what `llama-server
  --jinja` renders.

Before anything is converted, what would run wrongly is refused with the reason:

- a Baichuan model whose layer count would make llama.cpp run it wrongly: llama.cpp picks the
  positions by layer count (32: Baichuan-7B, rotary; 40: Baichuan-13B, ALiBi) and silently runs
  any other count with no positional encoding at all. discmed's Baichuan is the 13B architecture
  (ALiBi, discmed.baichuan), so only 40 layers convert;
- a BPE tokenizer whose pre-tokenizer llama.cpp cannot reproduce. The converter recognises a
  tokenizer by a hash of its ids on a probe text, so a tokenizer trained from scratch (discmed's
  tiny one) is unknown to it even when its pre-tokenizer rule is Qwen2's word for word. discmed
  compares the rule itself (tokenizer.json's split regex and byte-level settings) with the
  rules llama.cpp implements and names the match; anything else is refused, never guessed.

llama.cpp's tools come from `scripts/llamacpp.sh` (`make llamacpp`): a build from the pinned
llama-cpp-python sdist's vendored tree, cached by version and flags. `DISCMED_LLAMACPP` points
at another such folder (bin/, convert_hf_to_gguf.py, gguf-py/).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from discmed.chat import read_json
from discmed.engine.llamacpp import gguf_metadata, tool, tools_dir
from discmed.errors import DiscmedError
from discmed.train.merge import export
from discmed.train.ollama import write_modelfile

# What the converter writes itself; any other type goes through llama-quantize.
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
QUANTIZE_TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m",
                  "q5_k_s", "q5_k_m", "q6_k", "iq4_nl", "iq4_xs")
GGUF_TYPES = CONVERTER_TYPES + QUANTIZE_TYPES

# Pre-tokenizer split rules llama.cpp implements (src/llama-vocab.cpp), by the name the
# converter writes as tokenizer.ggml.pre. The regex is tokenizer.json's, character for character.
PRE_TOKENIZERS = {
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+",
    "llama-bpe": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+",
}


class ExportError(DiscmedError, ValueError):
    """A model llama.cpp would run wrongly, or a conversion that failed: the message says which."""


# -- what llama.cpp would run wrongly -------------------------------------------------------


def pre_tokenizer(folder: Path) -> str | None:
    """The llama.cpp pre-tokenizer name for a BPE tokenizer.json's split rule; None when the
    folder has no byte-level BPE tokenizer.json (SentencePiece models need no such name).
    ExportError for a byte-level BPE rule llama.cpp does not implement."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    data = read_json(path)
    if (data.get("model") or {}).get("type") != "BPE" or (folder / "tokenizer.model").is_file():
        return None
    pre = data.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    splits = [p for p in parts if p.get("type") == "Split"]
    levels = [p for p in parts if p.get("type") == "ByteLevel"]
    if len(parts) != 2 or len(splits) != 1 or len(levels) != 1:
        raise ExportError(f"{path}: pre_tokenizer: {json.dumps(pre)[:200]}: not a split rule plus byte-level, "
                          "which is all llama.cpp's BPE pre-tokenizers are; llama.cpp would split text differently")
    regex = (splits[0].get("pattern") or {}).get("Regex")
    if splits[0].get("behavior") != "Isolated" or splits[0].get("invert") or levels[0].get("use_regex", True):
        raise ExportError(f"{path}: pre_tokenizer: a split that is not isolated, or a byte-level step with its "
                          "own regex: llama.cpp implements neither")
    for name, rule in PRE_TOKENIZERS.items():
        if regex == rule:
            return name
    raise ExportError(f"{path}: pre_tokenizer regex {regex!r} is none llama.cpp implements "
                      f"({', '.join(PRE_TOKENIZERS)}); a GGUF of it would tokenize differently from the model")


def preflight(folder: Path) -> dict[str, Any]:
    """Refuse what llama.cpp would run wrongly; say what it will run (architecture, pre-tokenizer)."""
    config = read_json(folder / "config.json")
    arch = (config.get("architectures") or ["?"])[0]
    if config.get("model_type") == "baichuan" or arch.lower().startswith("baichuan"):
        layers = config.get("num_hidden_layers")
        if layers != 40:
            why = ("as Baichuan-7B, with rotary positions, where these weights (Baichuan-13B's architecture, "
                   "discmed.baichuan) use ALiBi" if layers == 32 else "with no positional encoding at all")
            raise ExportError(
                f"{folder / 'config.json'}: num_hidden_layers {layers}: llama.cpp picks Baichuan's positions by layer "
                f"count (32: rotary, 40: ALiBi) and would run this model {why}; refusing to write a GGUF that "
                "answers wrongly")
        if not (folder / "tokenizer.model").is_file():
            raise ExportError(f"{folder}: no tokenizer.model: llama.cpp reads Baichuan's SentencePiece model itself")
    return {"architecture": arch, "pre_tokenizer": pre_tokenizer(folder)}


# -- conversion -----------------------------------------------------------------------------


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise ExportError(f"{what} failed (exit {done.returncode}): {' '.join(cmd[:3])} …\n{tail}")


def convert(folder: Path, out: Path, outtype: str, pre: str | None, tools: Path) -> None:
    """llama.cpp's convert_hf_to_gguf.py on `folder`; `pre` names the pre-tokenizer where the
    converter's hash table does not know this tokenizer (see discmed.train.gguf_convert)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tools / "gguf-py"), str(tools)])}
    cmd = [sys.executable, "-m", "discmed.train.gguf_convert", str(tools), str(folder),
           "--outfile", str(out), "--outtype", outtype]
    if pre:
        cmd += ["--pre-tokenizer", pre]
    # discmed itself must be importable in the child: it is where this module came from.
    env["PYTHONPATH"] += os.pathsep + str(Path(__file__).resolve().parents[2])
    _run(cmd, "convert_hf_to_gguf.py", env)


def write_gguf(folder: str | os.PathLike, quant: str = "q8_0", name: str | None = None) -> Path:
    """Write `folder`'s weights as one GGUF of type `quant` next to them; returns its path."""
    folder = Path(folder)
    quant = quant.lower()
    if quant not in GGUF_TYPES:
        raise ExportError(f"--quant: {quant!r} is not a GGUF type; one of {', '.join(GGUF_TYPES)}")
    info = preflight(folder)
    tools = tools_dir()
    out = folder / f"{name or folder.name}.{quant}.gguf"
    if quant in CONVERTER_TYPES:
        convert(folder, out, quant, info["pre_tokenizer"], tools)
        return out
    f32 = folder / f".{out.stem}.f32.gguf"
    try:
        convert(folder, f32, "f32", info["pre_tokenizer"], tools)
        _run([str(tool("llama-quantize", tools)), str(f32), str(out), quant.upper()], "llama-quantize")
    finally:
        f32.unlink(missing_ok=True)
    return out


def export_gguf(model_dir: str | os.PathLike, out: str | os.PathLike, quant: str = "q8_0", fmt: str | None = None,
                dtype: str = "bf16") -> dict:
    """`train export --gguf`: the servable folder, then its GGUF and Ollama Modelfile beside it."""
    out = Path(out)
    if quant.lower() not in GGUF_TYPES:  # before the folder is written: a typo costs nothing
        raise ExportError(f"--quant: {quant!r} is not a GGUF type; one of {', '.join(GGUF_TYPES)}")
    tools_dir()  # the same: a missing build is said before any work
    summary = export(model_dir, out, fmt=fmt, dtype=dtype)
    try:
        preflight(out)
        gguf_path = write_gguf(out, quant)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no half export left that looks whole
        raise
    meta = gguf_metadata(gguf_path)
    modelfile = write_modelfile(out, gguf_path, summary["format"], meta)
    summary.update({
        "gguf": str(gguf_path),
        "quant": quant.lower(),
        "gguf_bytes": gguf_path.stat().st_size,
        "modelfile": str(modelfile),
        "llama_cpp": (tools_dir() / "VERSION").read_text().strip() if (tools_dir() / "VERSION").is_file() else None,
        "files": sorted(p.name for p in out.iterdir()),
    })
    return summary
