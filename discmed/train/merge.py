"""LoRA adapter → full weights (`merge`), and a clean, servable model folder (`export`).

`export` writes what transformers and vLLM load without discmed: safetensors weights, the
tokenizer, and a generation config that stops where the chat format ends a turn. For the
`disc` format it also carries Baichuan's `user_token_id` 195 and `assistant_token_id` 196,
the fields Baichuan-13B-Chat's own `chat()` reads.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from discmed.train.config import ConfigError


def generation_config_for(model_config: Any, tokenizer: Any, fmt_name: str) -> Any:
    """A GenerationConfig whose stop ids match the chat format (and DISC's 195/196 for `disc`)."""
    from transformers import GenerationConfig

    from discmed.formats import DISC_ASSISTANT_ID, DISC_USER_ID, get_format

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


def adapter_base(adapter_dir: str | os.PathLike) -> str:
    cfg = Path(adapter_dir) / "adapter_config.json"
    if not cfg.is_file():
        raise ConfigError(f"{adapter_dir}: not a LoRA adapter folder (no adapter_config.json)")
    base = json.loads(cfg.read_text()).get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"{cfg}: base_model_name_or_path is empty; pass --base")
    return base


def load_merged(adapter_dir: str | os.PathLike, base: str | None = None, **load_kwargs: Any) -> Any:
    """The base model with the adapter's weights merged in (a plain transformers model)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = base or adapter_base(adapter_dir)
    model = AutoModelForCausalLM.from_pretrained(base, **load_kwargs)
    return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()


def _atomic_dir(out: Path) -> Path:
    """A sibling temp folder to write into; `_commit` then swaps it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))


def _commit(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _format_of(folder: Path, default: str) -> str:
    recipe = folder / "discmed_recipe.json"
    if recipe.is_file():
        return json.loads(recipe.read_text()).get("format", default)
    gen = folder / "generation_config.json"
    if gen.is_file():
        return json.loads(gen.read_text()).get("discmed_format", default)
    return default


def merge(
    adapter_dir: str | os.PathLike, out: str | os.PathLike, base: str | None = None, dtype: str = "auto"
) -> dict:
    """Merge a LoRA adapter into its base and write a full model folder (atomically)."""
    import torch
    from transformers import AutoTokenizer

    adapter_dir, out = Path(adapter_dir), Path(out)
    base = base or adapter_base(adapter_dir)
    if base == "tiny":
        from discmed.tiny import ensure_tiny

        base = str(ensure_tiny())
    torch_dtype = {"auto": "auto", "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[
        dtype
    ]
    model = load_merged(adapter_dir, base, dtype=torch_dtype)
    tok_src = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base
    tokenizer = AutoTokenizer.from_pretrained(str(tok_src))
    fmt = _format_of(adapter_dir, "disc")
    tmp = _atomic_dir(out)
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        generation_config_for(model.config, tokenizer, fmt).save_pretrained(str(tmp))
        for name in ("discmed_recipe.json", "discmed_train.json"):
            if (adapter_dir / name).is_file():
                shutil.copy2(adapter_dir / name, tmp / name)
        _commit(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "command": "merge",
        "adapter": str(adapter_dir),
        "base": str(base),
        "output_dir": str(out),
        "format": fmt,
    }


def export(
    model_dir: str | os.PathLike, out: str | os.PathLike, fmt: str | None = None, dtype: str = "bf16"
) -> dict:
    """A servable folder: safetensors weights (adapters merged), tokenizer, generation config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, out = Path(model_dir), Path(out)
    if not model_dir.is_dir():
        raise ConfigError(f"{model_dir}: model folder not found")
    fmt = fmt or _format_of(model_dir, "disc")
    torch_dtype = {"auto": "auto", "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[
        dtype
    ]
    if (model_dir / "adapter_config.json").is_file():
        model = load_merged(model_dir, dtype=torch_dtype)
        tok_src = model_dir if (model_dir / "tokenizer_config.json").is_file() else adapter_base(model_dir)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch_dtype)
        tok_src = model_dir
    tokenizer = AutoTokenizer.from_pretrained(str(tok_src))
    tmp = _atomic_dir(out)
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        generation_config_for(model.config, tokenizer, fmt).save_pretrained(str(tmp))
        _commit(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(p.name for p in out.iterdir())
    return {
        "command": "export",
        "model": str(model_dir),
        "output_dir": str(out),
        "format": fmt,
        "files": files,
    }
