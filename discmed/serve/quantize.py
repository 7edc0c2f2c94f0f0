"""Quantized inference: bitsandbytes int8 (CPU or GPU) and int4 NF4 (GPU only).

DISC pointed its users to quantization to fit a 13B model on one GPU. discmed does it with
bitsandbytes through transformers: `--quantize int8|int4` on any command that loads a local
model quantizes while loading (`discmed.backends.hf.quantization_config`), and
`discmed quantize` writes a quantized copy whose config carries its `quantization_config`,
so it loads quantized with no flag, in transformers and in vLLM.

Only the linear layers inside the transformer blocks are quantized; embeddings and the output
head stay in full precision (bitsandbytes' default), which is why a very small model, whose
weights are mostly embeddings, shrinks less than a 7B one does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from discmed.backend import BackendError, resolve
from discmed.backends.hf import HFBackend
from discmed.chat import atomic_folder
from discmed.errors import DiscmedError


class QuantizeError(DiscmedError, ValueError):
    """A model that cannot be quantized as asked, with the reason."""


def weight_bytes(model: Any) -> int:
    """Bytes held by the model's parameters and buffers (what loading it costs in memory)."""
    return int(model.get_memory_footprint())


def load_quantized(path: str | Path, bits: str | None, device: str | None = None):
    """(model, tokenizer) from a local folder, quantized with bitsandbytes when `bits` is set."""
    try:
        backend = HFBackend(str(path), quantize=bits, device=device)
    except BackendError as e:
        raise QuantizeError(str(e)) from None
    return backend.model, backend.tokenizer


def local_path(spec: str) -> Path:
    """The folder a model spec names; quantizing needs a local model (tiny, hf:PATH, PATH)."""
    ref = resolve(spec)
    if not ref.local:
        raise QuantizeError(f"--model {spec!r}: quantizing needs a local model (tiny, hf:PATH or PATH)")
    path = Path(ref.path)
    if not (path / "config.json").exists():
        raise QuantizeError(
            f"--model {spec!r}: no config.json in {path}; pass a local Hugging Face model folder"
        )
    return path


def write_quantized(spec: str, out: str | Path, bits: str = "int8") -> dict[str, Any]:
    """Quantize the model `spec` names and save it to `out` (written whole, then moved in)."""
    if bits not in ("int8", "int4"):
        raise QuantizeError(f"--quantize {bits!r}: expected int8 or int4")
    src = local_path(spec)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise QuantizeError(f"--out {out}: folder exists and is not empty; pick a new folder")
    model, tokenizer = load_quantized(src, bits)
    original = sum(p.numel() * p.element_size() for p in _unquantized_params(src))
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for extra in ("discmed-tiny.json",):  # provenance of the source, kept beside the copy
            if (src / extra).exists():
                shutil.copy(src / extra, tmp / extra)
        summary = {
            "source": str(src),
            "out": str(out),
            "bits": bits,
            "weight_mb_original": round(original / 2**20, 3),
            "weight_mb_quantized": round(weight_bytes(model) / 2**20, 3),
        }
        (tmp / "discmed-quantize.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _unquantized_params(path: Path):
    """The full-precision parameters as stored on disk, read without building the model."""
    from safetensors import safe_open

    files = sorted(path.glob("*.safetensors"))
    if not files:
        return []
    tensors = []
    for f in files:
        with safe_open(str(f), framework="pt") as h:
            tensors.extend(h.get_tensor(k) for k in h.keys())
    return tensors
