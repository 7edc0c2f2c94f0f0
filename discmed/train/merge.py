"""LoRA adapter → full weights (`merge`), and a clean, servable model folder (`export`).

Both write what transformers and vLLM load without discmed (see discmed.train.folder):
safetensors weights, the tokenizer with a chat template rendering exactly the trained format,
a generation config that stops where the chat format ends a turn, and discmed's model card.
For the `disc` format the generation config also carries Baichuan's `user_token_id` 195 and
`assistant_token_id` 196, the fields Baichuan-13B-Chat's own `chat()` reads.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from discmed.chat import atomic_folder, read_json
from discmed.contract import SpecError
from discmed.contract import adapter_base as read_base
from discmed.formats import DISC_ASSISTANT_ID, DISC_USER_ID, get_format
from discmed.train.config import ConfigError, resolve_model
from discmed.train.folder import save_tokenizer, write_card


def generation_config_for(model_config: Any, tokenizer: Any, fmt_name: str) -> Any:
    """A GenerationConfig whose stop ids match the chat format (and DISC's 195/196 for `disc`)."""
    from transformers import GenerationConfig


    stops = get_format(fmt_name).stop_token_ids(tokenizer)
    gen = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=stops[0] if len(stops) == 1 else stops,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0],
        max_new_tokens=512,
        do_sample=False,
        repetition_penalty=1.0,
    )
    if fmt_name == "disc":
        gen.user_token_id = DISC_USER_ID
        gen.assistant_token_id = DISC_ASSISTANT_ID
    gen.discmed_format = fmt_name
    return gen


def adapter_base(adapter_dir: str | os.PathLike, resolve: bool = True) -> str:
    """The base an adapter names (`tiny`, a hub id, a path as the recipe wrote it); with
    `resolve`, what to load it from (`tiny` → the embedded model's folder)."""
    try:
        base = read_base(adapter_dir)
    except SpecError as e:
        raise ConfigError(f"{e}; pass --base") from None
    if base is None:
        raise ConfigError(f"{adapter_dir}: not a LoRA adapter folder (no adapter_config.json)")
    return resolve_model(base) if resolve else base


def load_merged(adapter_dir: str | os.PathLike, base: str | None = None, **load_kwargs: Any) -> Any:
    """The base model with the adapter's weights merged in (a plain transformers model)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import discmed.baichuan  # noqa: F401  (registers model_type "baichuan": discmed loads its models natively)
    base = base or adapter_base(adapter_dir)
    model = AutoModelForCausalLM.from_pretrained(base, **load_kwargs)
    return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()


def _trained_on(folder: Path) -> dict[str, Any]:
    path = folder / "discmed_recipe.json"
    return read_json(path) if path.is_file() else {}


def _format_of(folder: Path, default: str) -> str:
    recipe = _trained_on(folder).get("recipe")
    if recipe:
        return recipe.get("format", default)
    gen = folder / "generation_config.json"
    if gen.is_file():
        return read_json(gen).get("discmed_format", default)
    return default


def _dtype(name: str) -> Any:
    import torch

    dtypes = {"auto": "auto", "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if name not in dtypes:
        raise ConfigError(f"dtype: expected one of {', '.join(dtypes)}, got {name!r}")
    return dtypes[name]


def _write_folder(tmp: Path, model: Any, tokenizer: Any, fmt: str, *, source: Path, base: str, command: str,
                  name: str) -> None:
    """Weights, tokenizer with the format's checked chat template, generation config, what the
    source was trained on, and a model card (see discmed.train.folder)."""
    model.save_pretrained(str(tmp), safe_serialization=True)
    template = save_tokenizer(tokenizer, tmp, fmt)
    generation_config_for(model.config, tokenizer, fmt).save_pretrained(str(tmp))
    # A SentencePiece model (Baichuan's) travels beside the fast tokenizer converted from it:
    # llama.cpp's GGUF converter reads it, not tokenizer.json.
    for name in ("discmed_recipe.json", "discmed_train.json", "tokenizer.model"):
        if (source / name).is_file():
            shutil.copy2(source / name, tmp / name)
    trained = _trained_on(source)
    figures = read_json(source / "discmed_train.json") if (source / "discmed_train.json").is_file() else None
    write_card(tmp, name=name, command=f"{command} {source}", base=base, fmt_name=fmt,
               recipe=trained.get("recipe"), data=trained.get("data"), figures=figures, template=template)


def merge(
    adapter_dir: str | os.PathLike, out: str | os.PathLike, base: str | None = None, dtype: str = "auto"
) -> dict:
    """Merge a LoRA adapter into its base and write a full model folder (atomically)."""
    from transformers import AutoTokenizer

    import discmed.baichuan  # noqa: F401  (registers model_type "baichuan": discmed loads its models natively)
    adapter_dir, out = Path(adapter_dir), Path(out)
    base_ref = base or adapter_base(adapter_dir, resolve=False)
    base = resolve_model(base_ref)
    torch_dtype = _dtype(dtype)
    model = load_merged(adapter_dir, base, dtype=torch_dtype)
    tok_src = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base
    tokenizer = AutoTokenizer.from_pretrained(str(tok_src))
    fmt = _format_of(adapter_dir, "disc")
    with atomic_folder(out) as tmp:
        _write_folder(tmp, model, tokenizer, fmt, source=adapter_dir, base=base_ref, command="merge", name=out.name)
    return {
        "command": "merge",
        "adapter": str(adapter_dir),
        "base": base_ref,
        "output_dir": str(out),
        "format": fmt,
    }


def export(
    model_dir: str | os.PathLike, out: str | os.PathLike, fmt: str | None = None, dtype: str = "bf16"
) -> dict:
    """A servable folder: safetensors weights (adapters merged), tokenizer, generation config."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import discmed.baichuan  # noqa: F401  (registers model_type "baichuan": discmed loads its models natively)
    model_dir, out = Path(model_dir), Path(out)
    if not model_dir.is_dir():
        raise ConfigError(f"{model_dir}: model folder not found")
    fmt = fmt or _format_of(model_dir, "disc")
    torch_dtype = _dtype(dtype)
    trained = _trained_on(model_dir)
    if (model_dir / "adapter_config.json").is_file():
        model = load_merged(model_dir, dtype=torch_dtype)
        base = adapter_base(model_dir, resolve=False)
        tok_src = model_dir if (model_dir / "tokenizer_config.json").is_file() else adapter_base(model_dir)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch_dtype)
        base = trained.get("recipe", {}).get("model") or str(model_dir)
        tok_src = model_dir
    tokenizer = AutoTokenizer.from_pretrained(str(tok_src))
    with atomic_folder(out) as tmp:
        _write_folder(tmp, model, tokenizer, fmt, source=model_dir, base=base, command="export", name=out.name)
    files = sorted(p.name for p in out.iterdir())
    return {
        "command": "export",
        "model": str(model_dir),
        "output_dir": str(out),
        "format": fmt,
        "files": files,
    }
