"""Training recipes: YAML files plus `key=value` overrides, checked before anything heavy loads.

A recipe is a flat YAML mapping (two nested blocks: `data` and `lora`). Every key is declared
in `SFTRecipe` or `DPORecipe` below, with its default, so a typo (`learnig_rate`) is an error
that names the file and suggests the right key, raised before a tokenizer or model is loaded.
Data files are read and validated here too (`check_sft_data`, `check_dpo_data`), so a bad line
in a 470k-line file fails in seconds, not after the model has spent minutes loading.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # .../discmed
DEEPSPEED_DIR = Path(__file__).resolve().parent / "deepspeed"
ACCELERATE_DIR = Path(__file__).resolve().parent / "accelerate"
METHODS = ("full", "lora", "qlora")
FORMATS = ("disc", "chatml", "llama3", "auto")


class ConfigError(DiscmedError, ValueError):
    """A bad recipe key or value, or a bad data file: the message says where and what."""


@dataclass
class DataSource:
    path: str
    # How many times each record is used: 2.0 repeats the file, 0.5 keeps a (seeded) half.
    weight: float = 1.0


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: Any = "all-linear"


@dataclass
class SFTRecipe:
    model: str = "tiny"  # "tiny" (the embedded default), a local folder, or a hub id
    format: str = "disc"  # chat format from discmed.formats
    method: str = "full"  # full | lora | qlora
    data: list[DataSource] = field(default_factory=list)
    output_dir: str = "runs/sft"
    max_length: int = 1200
    packing: bool = True
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 4
    grad_accum: int = 3
    learning_rate: float = 1e-5
    scheduler: str = "cosine"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    bf16: Any = "auto"  # auto = on where a GPU supports it, off on CPU
    fp16: bool = False
    gradient_checkpointing: bool = False
    attn_implementation: str = "auto"  # auto = flash_attention_2 if installed on GPU, else sdpa
    deepspeed: str | None = None  # zero2 | zero3 | path to a DeepSpeed JSON
    lora: LoraSettings = field(default_factory=LoraSettings)
    save_steps: int = 500
    save_total_limit: int = 2
    logging_steps: int = 10
    seed: int = 42
    resume: Any = "auto"  # auto (latest complete checkpoint in output_dir) | false | a checkpoint path
    report_to: str = "none"  # none | tensorboard
    guard_steps: int = 5  # loss 0 or NaN within these optimizer steps stops the run
    dataloader_workers: int = 0


@dataclass
class DPORecipe:
    model: str = "tiny"
    format: str = "disc"
    method: str = "full"  # full | lora (qlora as for SFT)
    data: list[DataSource] = field(default_factory=list)
    output_dir: str = "runs/dpo"
    max_length: int = 1200
    max_prompt_length: int = 900
    beta: float = 0.1
    loss_type: str = "sigmoid"
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 2
    grad_accum: int = 1
    learning_rate: float = 5e-7
    scheduler: str = "cosine"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    bf16: Any = "auto"
    fp16: bool = False
    gradient_checkpointing: bool = False
    attn_implementation: str = "auto"
    deepspeed: str | None = None
    lora: LoraSettings = field(default_factory=LoraSettings)
    save_steps: int = 500
    save_total_limit: int = 2
    logging_steps: int = 10
    seed: int = 42
    resume: Any = "auto"
    report_to: str = "none"
    guard_steps: int = 5
    dataloader_workers: int = 0


Recipe = SFTRecipe | DPORecipe


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key=value (e.g. learning_rate=2e-5)")
    key, raw = item.split("=", 1)
    # YAML parses numbers, booleans, lists ([a, b]) and null the way a recipe file would
    value = yaml.safe_load(raw) if raw.strip() else ""
    return key.strip().split("."), value


def _coerce(where: str, key: str, value: Any, default: Any) -> Any:
    """Check one scalar against the type of its default; ints are accepted for floats."""
    if default is None or isinstance(default, str) and key in ("bf16", "resume"):
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: {key}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{where}: {key}: expected a string, got {value!r}")
    return value


def _data_sources(where: str, value: Any) -> list[DataSource]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: data: expected a list of files ({{path, weight}} or plain paths)")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict) or "path" not in item:
            raise ConfigError(f"{where}: data[{i}]: expected a path or {{path: ..., weight: ...}}")
        unknown = set(item) - {"path", "weight"}
        if unknown:
            raise ConfigError(
                f"{where}: data[{i}]: unknown key '{sorted(unknown)[0]}' (expected path, weight)"
            )
        weight = _coerce(where, f"data[{i}].weight", item.get("weight", 1.0), 1.0)
        if weight <= 0:
            raise ConfigError(f"{where}: data[{i}].weight: must be > 0, got {weight}")
        out.append(DataSource(str(item["path"]), weight))
    return out


def recipe_from_dict(raw: dict[str, Any], kind: str = "sft", where: str = "<config>") -> Recipe:
    """Build a checked recipe from a plain dict (what the YAML file holds, overrides applied)."""
    cls = SFTRecipe if kind == "sft" else DPORecipe
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of recipe keys, got {type(raw).__name__}")
    defaults = cls()
    known = [f.name for f in fields(cls)]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key '{key}'{_suggest(str(key), known)}")
        if key == "data":
            values[key] = _data_sources(where, value)
        elif key == "lora":
            if isinstance(value, LoraSettings):
                value = asdict(value)
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: lora: expected a mapping (r, alpha, dropout, target_modules)")
            lora_known = [f.name for f in fields(LoraSettings)]
            for k in value:
                if k not in lora_known:
                    raise ConfigError(f"{where}: unknown key 'lora.{k}'{_suggest(str(k), lora_known)}")
            base = LoraSettings()
            values[key] = LoraSettings(
                **{k: _coerce(where, f"lora.{k}", v, getattr(base, k)) for k, v in value.items()}
            )
        else:
            values[key] = _coerce(where, key, value, getattr(defaults, key))
    recipe = cls(**values)
    if not recipe.data:
        raise ConfigError(f"{where}: data: no training files given")
    if recipe.method not in METHODS:
        raise ConfigError(f"{where}: method: expected one of {', '.join(METHODS)}, got {recipe.method!r}")
    if recipe.format not in FORMATS:
        raise ConfigError(f"{where}: format: expected one of {', '.join(FORMATS)}, got {recipe.format!r}")
    if recipe.bf16 not in (True, False, "auto"):
        raise ConfigError(f"{where}: bf16: expected true, false or auto, got {recipe.bf16!r}")
    if recipe.bf16 is True and recipe.fp16:
        raise ConfigError(f"{where}: bf16 and fp16 are both on; choose one")
    if recipe.max_length < 16:
        raise ConfigError(f"{where}: max_length: {recipe.max_length} is too short to hold a turn")
    if recipe.report_to not in ("none", "tensorboard"):
        raise ConfigError(f"{where}: report_to: expected none or tensorboard, got {recipe.report_to!r}")
    if recipe.deepspeed is not None:
        deepspeed_config_path(recipe.deepspeed, where)
    return recipe


def load_recipe(
    path: str | os.PathLike | None, overrides: list[str] | None = None, kind: str = "sft"
) -> Recipe:
    """Read a recipe YAML (or none: defaults) and apply `key=value` overrides (`lora.r=8` for nested)."""
    where = str(path) if path else "<command line>"
    raw: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{where}: recipe file not found")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{where}: invalid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping of recipe keys at the top level")
    raw = apply_overrides(raw, overrides)
    return recipe_from_dict(raw, kind, where)


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """`key=value` items applied onto a recipe dict (`lora.r=8` reaches into a nested block)."""
    raw = dict(raw)
    for item in overrides or []:
        keys, value = _parse_override(item)
        target = raw
        for k in keys[:-1]:
            nested = target.get(k)
            nested = dict(nested) if isinstance(nested, dict) else ({} if nested is None else nested)
            if not isinstance(nested, dict):
                raise ConfigError(f"override {item!r}: '{k}' is not a mapping")
            target[k] = nested
            target = nested
        target[keys[-1]] = value
    return raw


def deepspeed_config_path(name: str, where: str = "<config>") -> Path:
    """`zero2` / `zero3` → the shipped JSON; anything else must be an existing file."""
    shipped = DEEPSPEED_DIR / f"{name}.json"
    if shipped.is_file():
        return shipped
    p = Path(name)
    if p.is_file():
        return p
    raise ConfigError(f"{where}: deepspeed: {name!r} is neither zero2, zero3 nor an existing JSON file")


def resolve_path(path: str) -> Path:
    """A data path as written in a recipe: relative to the working directory, or (for the files
    discmed ships, `discmed/assets/...`) to the installed package."""
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p
    parts = p.parts
    if parts and parts[0] == "discmed":
        shipped = PACKAGE_ROOT.joinpath(*parts[1:])
        if shipped.exists():
            return shipped
    return p


def check_sft_data(recipe: SFTRecipe, max_errors: int = 5) -> list[tuple[Path, float]]:
    """Validate every data file of an SFT recipe; raise one ConfigError listing the first bad lines."""
    from discmed.chat import DataError, iter_conversations

    out = []
    for src in recipe.data:
        p = resolve_path(src.path)
        if not p.is_file():
            raise ConfigError(f"{src.path}: data file not found")
        errors: list[DataError] = []
        n = sum(1 for _ in iter_conversations(p, errors))
        if errors:
            shown = "\n  ".join(str(e) for e in errors[:max_errors])
            more = f"\n  … and {len(errors) - max_errors} more" if len(errors) > max_errors else ""
            raise ConfigError(f"{p}: {len(errors)} bad record(s):\n  {shown}{more}")
        if n == 0:
            raise ConfigError(f"{p}: no conversations in the file")
        out.append((p, src.weight))
    return out


def parse_pair(obj: Any, path: Path, line: int) -> dict[str, Any]:
    """One DPO line `{"prompt": [messages…], "chosen": str, "rejected": str}`, checked."""
    from discmed.chat import DataError, validate_messages

    if not isinstance(obj, dict):
        raise DataError(path, line, "record", f"expected a JSON object, got {type(obj).__name__}")
    if "prompt" not in obj:
        raise DataError(path, line, "prompt", "missing (expected a list of messages ending with a user turn)")
    prompt = validate_messages(
        obj["prompt"], path=path, line=line, field_name="prompt", require_assistant=False
    )
    if prompt[-1]["role"] != "user":
        raise DataError(path, line, "prompt", "must end with a user turn")
    for key in ("chosen", "rejected"):
        value = obj.get(key)
        if not isinstance(value, str) or not value.strip():
            raise DataError(path, line, key, "expected a non-empty string")
    if obj["chosen"] == obj["rejected"]:
        raise DataError(path, line, "rejected", "identical to chosen: the pair teaches nothing")
    return {"prompt": prompt, "chosen": obj["chosen"], "rejected": obj["rejected"]}


def read_pairs(path: Path, errors: list | None = None) -> list[dict[str, Any]]:
    """All preference pairs of a JSONL file (errors collected when a list is given)."""
    from discmed.chat import iter_jsonl

    return list(iter_jsonl(path, lambda obj, line: parse_pair(obj, path, line), errors))


def check_dpo_data(recipe: DPORecipe, max_errors: int = 5) -> list[tuple[Path, float]]:
    """Validate every preference-pair file of a DPO recipe before any model loads."""
    out = []
    for src in recipe.data:
        p = resolve_path(src.path)
        if not p.is_file():
            raise ConfigError(f"{src.path}: data file not found")
        errors: list = []
        pairs = read_pairs(p, errors)
        if errors:
            shown = "\n  ".join(str(e) for e in errors[:max_errors])
            more = f"\n  … and {len(errors) - max_errors} more" if len(errors) > max_errors else ""
            raise ConfigError(f"{p}: {len(errors)} bad pair(s):\n  {shown}{more}")
        if not pairs:
            raise ConfigError(f"{p}: no preference pairs in the file")
        out.append((p, src.weight))
    return out


def recipe_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as plain data (saved next to the trained model, so a run can be read back)."""
    return asdict(recipe)
