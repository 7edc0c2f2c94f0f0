"""Convert a published Baichuan-13B / DISC-MedLLM folder into a discmed-native one.

A published folder needs Baichuan's remote code: `config.json` with `auto_map`,
`tokenizer.model` read by a Python `BaichuanTokenizer`, weights in `pytorch_model-*.bin` pickles.
The converted folder loads with transformers alone (plus `import discmed` for the model class)
and with vLLM's own Baichuan support:

- `config.json`: `model_type: baichuan`, `architectures: ["BaichuanForCausalLM"]`, no `auto_map`;
- `model*.safetensors` (+ index): the same tensors under the same names, shard by shard, so
  memory holds one shard at a time (a 13B model needs no 26 GB of RAM to convert);
- `tokenizer.json` + `tokenizer_config.json`: the fast tokenizer (see `tokenization`), and the
  source's `tokenizer.model` beside it (llama.cpp's GGUF converter reads SentencePiece itself);
- `generation_config.json`: DISC's sampling defaults, overlaid by the source's own file.

Tensor names and shapes are checked against the architecture before anything is written; the
output is assembled in a temporary sibling folder and moved into place at the end.

    python -m discmed.baichuan.convert SRC DST [--json]
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer

from discmed.baichuan.configuration import DISC_GENERATION_DEFAULTS, BaichuanConfig
from discmed.baichuan.modeling import BaichuanForCausalLM
from discmed.baichuan.tokenization import write_tokenizer
from discmed.chat import atomic_folder, read_json
from discmed.errors import fail

# Keys of the remote-code era that must not survive: `auto_map` would point transformers back
# at code that no longer runs; the others are the remote code's own bookkeeping.
_DROP_KEYS = ("auto_map", "_from_model_config", "gradient_checkpointing", "tokenizer_class", "_name_or_path")


def save_generation_defaults(folder: str | Path, overrides: dict[str, Any] | None = None) -> Path:
    """Write DISC's generation settings (plus `overrides`) as `folder/generation_config.json`."""
    from transformers import GenerationConfig

    gen = GenerationConfig(**{**DISC_GENERATION_DEFAULTS, **(overrides or {})})
    gen.save_pretrained(folder)
    return Path(folder) / "generation_config.json"


def _source_shards(src: Path) -> list[Path]:
    """The weight files of a published folder, in index order when there is an index."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = src / index_name
        if index.is_file():
            try:
                weight_map = read_json(index)["weight_map"]
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{index}: weight_map: unreadable index ({exc})") from exc
            return [src / name for name in dict.fromkeys(weight_map.values())]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (src / single).is_file():
            return [src / single]
    raise FileNotFoundError(f"{src}: no weights (model.safetensors, pytorch_model.bin or their index)")


def _load_shard(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    import torch

    # weights_only: a checkpoint pickle cannot run code; mmap keeps one shard's pages lazy.
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def expected_tensors(config: BaichuanConfig) -> dict[str, tuple[int, ...]]:
    """Name → shape of every tensor a checkpoint of this config holds (built on the meta device)."""
    import torch


    with torch.device("meta"):
        model = BaichuanForCausalLM(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def read_published_config(src: str | Path) -> BaichuanConfig:
    """The source folder's `config.json` as a native `BaichuanConfig`, remote-code keys dropped."""
    path = Path(src) / "config.json"
    try:
        raw = read_json(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing: a Baichuan folder has a config.json") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from exc
    if raw.get("model_type") != "baichuan":
        raise ValueError(f"{path}: model_type: expected 'baichuan', found {raw.get('model_type')!r}")
    for key in _DROP_KEYS:
        raw.pop(key, None)
    raw["architectures"] = ["BaichuanForCausalLM"]
    return BaichuanConfig(**{k: v for k, v in raw.items() if k != "model_type"})


def convert_baichuan_checkpoint(src: str | Path, dst: str | Path, progress: bool = True) -> dict[str, Any]:
    """Convert the published folder `src` into a discmed-native folder `dst` (which must not exist).

    Returns a summary: tensors, parameters, shards written, and the files in `dst`.
    """
    from safetensors.torch import save_file
    from tqdm import tqdm


    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise FileExistsError(f"{dst}: already exists; choose a new folder")
    config = read_published_config(src)
    sp_model = src / "tokenizer.model"
    if not sp_model.is_file():
        raise FileNotFoundError(
            f"{sp_model}: missing: Baichuan's SentencePiece model is needed for the tokenizer"
        )
    expected = expected_tensors(config)
    shards = _source_shards(src)

    with atomic_folder(dst) as work:
        seen: dict[str, str] = {}
        weight_map: dict[str, str] = {}
        total_bytes = 0
        n_params = 0
        for i, shard in enumerate(tqdm(shards, desc="converting shards", disable=not progress)):
            tensors = _load_shard(shard)
            for name, tensor in tensors.items():
                if name not in expected:
                    raise ValueError(f"{shard}: {name}: not a Baichuan tensor for this config")
                if tuple(tensor.shape) != expected[name]:
                    raise ValueError(
                        f"{shard}: {name}: shape {tuple(tensor.shape)}, the config needs {expected[name]}"
                    )
                if name in seen:
                    raise ValueError(f"{shard}: {name}: also in {seen[name]}")
                seen[name] = shard.name
            out_name = (
                "model.safetensors"
                if len(shards) == 1
                else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            )
            # safetensors wants contiguous tensors; a source that shares storage between tensors fails here, loudly.
            save_file(
                {k: v.contiguous() for k, v in tensors.items()}, work / out_name, metadata={"format": "pt"}
            )
            for name, tensor in tensors.items():
                weight_map[name] = out_name
                total_bytes += tensor.numel() * tensor.element_size()
                n_params += tensor.numel()
            del tensors
        missing = sorted(set(expected) - set(seen))
        if missing:
            raise ValueError(
                f"{src}: weights: missing tensors {missing[:5]}{' …' if len(missing) > 5 else ''}"
            )
        if len(shards) > 1:
            index = {"metadata": {"total_size": total_bytes}, "weight_map": dict(sorted(weight_map.items()))}
            (work / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")

        config.save_pretrained(work)
        write_tokenizer(sp_model, work, model_max_length=config.model_max_length)
        # Kept beside the fast tokenizer it was converted to: llama.cpp's converter reads the
        # SentencePiece model itself (discmed train export --gguf).
        shutil.copy2(sp_model, work / "tokenizer.model")
        overrides = {}
        if (src / "generation_config.json").is_file():
            overrides = read_json(src / "generation_config.json")
            overrides.pop("transformers_version", None)
            overrides.pop("_from_model_config", None)
        save_generation_defaults(work, overrides)
        if (src / "README.md").is_file():
            shutil.copy2(src / "README.md", work / "README.md")
    return {
        "src": str(src),
        "dst": str(dst),
        "tensors": len(seen),
        "parameters": n_params,
        "shards": len(shards),
        "files": sorted(p.name for p in dst.iterdir()),
    }


def main() -> None:

    def run(
        src: Annotated[Path, typer.Argument(help="published Baichuan-13B / DISC-MedLLM folder")],
        dst: Annotated[Path, typer.Argument(help="new folder for the converted model")],
        json_out: Annotated[
            bool, typer.Option("--json", help="print a JSON summary as the last line")
        ] = False,
    ) -> None:
        """Convert a remote-code Baichuan folder into one transformers 5 loads natively."""
        try:
            summary = convert_baichuan_checkpoint(src, dst, progress=not json_out)
        except (OSError, ValueError) as exc:
            fail(str(exc), json_out)
        if json_out:
            print(json.dumps(summary, ensure_ascii=False))
        else:
            print(f"converted {summary['tensors']} tensors ({summary['parameters']:,} parameters) into {dst}")

    typer.run(run)


if __name__ == "__main__":
    main()
