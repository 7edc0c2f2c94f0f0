"""Training recipes: YAML files plus `key=value` overrides, checked before anything heavy loads.

A recipe is a flat YAML mapping (two nested blocks: `data` and `lora`), read into the pydantic
models below (`extra="forbid"`): every key is declared with its type and default, so a typo
(`learnig_rate`) is an error that names the file and suggests the right key, raised before a
tokenizer or model is loaded. Every recipe shares `CommonRecipe` (SFT and DPO through
`DataRecipe`, and `GRPORecipe`); each adds its own keys and defaults. How each key reaches TRL is written out in `discmed.train.runtime.TRL_FIELDS`, so no
key is left to a library default. Data files are read and validated here too (`check_sft_data`,
`check_dpo_data`), so a bad line in a 470k-line file fails in seconds, not after the model has
spent minutes loading.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator

from discmed.chat import DataError, iter_conversations, iter_jsonl, validate_messages
from discmed.contract import resolve
from discmed.errors import DiscmedError, SpecError
from discmed.rl.rewards import GYM, MODEL_JUDGED, PROGRAMMATIC

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # .../discmed
DEEPSPEED_DIR = Path(__file__).resolve().parent / "deepspeed"
ACCELERATE_DIR = Path(__file__).resolve().parent / "accelerate"
METHODS = ("full", "lora", "qlora")
FORMATS = ("disc", "chatml", "llama3", "auto")


class ConfigError(DiscmedError, ValueError):
    """A bad recipe key or value, or a bad data file: the message says where and what."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataSource(_Strict):
    path: str
    # How many times each record is used: 2.0 repeats the file, 0.5 keeps a (seeded) half.
    weight: float = Field(1.0, gt=0)


class LoraSettings(_Strict):
    r: StrictInt = 16
    alpha: StrictInt = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


class CommonRecipe(_Strict):
    """The keys every training recipe shares (SFT, DPO, GRPO)."""

    model: str = "tiny"  # "tiny" (the embedded default), a local folder, or a hub id
    format: Literal["disc", "chatml", "llama3", "auto"] = "disc"  # chat format from discmed.formats
    method: Literal["full", "lora", "qlora"] = "full"
    output_dir: str = "runs/sft"
    epochs: float = 1.0
    max_steps: StrictInt = -1
    batch_size: StrictInt = 4
    grad_accum: StrictInt = 3
    learning_rate: float = 1e-5
    scheduler: str = "cosine"
    warmup_steps: StrictInt = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    bf16: StrictBool | Literal["auto"] = "auto"  # auto = on where a GPU supports it, off on CPU
    fp16: StrictBool = False
    gradient_checkpointing: StrictBool = False
    attn_implementation: str = "auto"  # auto = flash_attention_2 if installed on GPU, else sdpa
    deepspeed: str | None = None  # zero2 | zero3 | path to a DeepSpeed JSON
    lora: LoraSettings = Field(default_factory=LoraSettings)
    save_steps: StrictInt = 500
    save_total_limit: StrictInt = 2
    logging_steps: StrictInt = 10
    seed: StrictInt = 42
    # auto: the latest complete checkpoint in output_dir, refused if the recipe changed what it
    # trains (force: resume anyway) | false | a checkpoint path
    resume: StrictBool | str = "auto"
    report_to: Literal["none", "tensorboard"] = "none"
    dataloader_workers: StrictInt = 0
    guard_steps: StrictInt = 5  # a loss of NaN (SFT, DPO: or 0) within these optimizer steps stops the run


class DataRecipe(CommonRecipe):
    """The keys SFT and DPO add: training files and their length."""

    data: list[DataSource] = Field(default_factory=list)
    max_length: StrictInt = Field(1200, ge=16)

    @field_validator("data", mode="before")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        value = [value] if isinstance(value, str) else value
        if isinstance(value, list):
            return [{"path": v} if isinstance(v, str) else v for v in value]
        return value


class SFTRecipe(DataRecipe):
    packing: StrictBool = True  # best-fit decreasing, whole conversations (discmed.train.pack)


class DPORecipe(DataRecipe):
    output_dir: str = "runs/dpo"
    max_prompt_length: StrictInt = 900
    beta: float = 0.1
    loss_type: str = "sigmoid"
    batch_size: StrictInt = 2
    grad_accum: StrictInt = 1
    learning_rate: float = 5e-7


class GRPORecipe(CommonRecipe):
    """The keys GRPO adds (discmed.train.grpo): the cases, the environment, the rewards."""

    output_dir: str = "runs/grpo"
    method: Literal["full", "lora"] = "full"
    format: Literal["disc", "chatml", "llama3"] = "disc"
    # consult: cases from DISC's sets, a patient model; gym: case ledgers, the rule-based patient, the ledger's rewards.
    env: Literal["consult", "gym"] = "consult"
    # The cases: a DISC set (cmb-clin, cmd, cmid) or samples file; `holdout` of them (a share, seeded) set aside.
    cases: str = "cmb-clin"
    samples: str | None = None
    limit: StrictInt | None = None
    holdout: float = Field(0.2, ge=0, lt=1)
    holdout_seed: StrictInt = 0  # the split's own seed: runs with other training seeds hold out the same cases
    eval_cases: str | None = None  # another set or file to measure before/after on (added to the held-out share)
    # The environment.
    patient: str | None = None  # model spec; needed when turns > 1
    turns: StrictInt = Field(1, ge=1)  # doctor turns per episode
    max_new_tokens: StrictInt = 64  # per doctor turn
    max_completion_length: StrictInt = 256  # the whole episode after the opening
    temperature: float = 1.0
    top_p: float = 1.0
    doctor_system: str | None = None
    # Rewards: weights by name (discmed.rl.rewards); model-judged ones need their models.
    rewards: dict[str, float] = Field(default_factory=lambda: {"asks": 1.0, "safety": 1.0}, min_length=1)
    judge: str | None = None
    grader: str | None = None
    rubrics: str | None = None
    length_budget: StrictInt = 300
    # GRPO.
    num_generations: StrictInt = Field(4, ge=2)  # episodes per case: the group advantages are relative to
    beta: float = 0.04  # KL to the reference model (0 = none, no reference kept)
    loss_type: str = "grpo"
    scale_rewards: str = "group"  # group | batch | none
    epsilon: float = 0.2
    mask_truncated: StrictBool = False  # true: episodes whose last reply hit max_new_tokens get no gradient
    eval_samples: StrictInt = 4  # episodes per held-out case for the before/after figures
    use_vllm: StrictBool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"
    # Optimisation defaults of GRPO (the keys are train sft's).
    batch_size: StrictInt = 4  # episodes per device per micro-step
    grad_accum: StrictInt = 1
    learning_rate: float = 1e-6
    scheduler: str = "constant"
    logging_steps: StrictInt = 1


Recipe = SFTRecipe | DPORecipe | GRPORecipe
RECIPES: dict[str, type[CommonRecipe]] = {"sft": SFTRecipe, "dpo": DPORecipe, "grpo": GRPORecipe}


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


_EXPECTED = {"int_type": "expected an integer", "int_parsing": "expected an integer", "int_from_float":
             "expected an integer", "bool_type": "expected true or false", "bool_parsing": "expected true or false",
             "float_type": "expected a number", "float_parsing": "expected a number",
             "string_type": "expected a string", "list_type": "expected a list", "model_type": "expected a mapping"}


def origin(key: str, where: str, overrides: list[str] | None) -> str:
    """Where a recipe key's value came from: the command-line override that set it (or set the
    block it sits in), else `where` (the YAML file). A typo on the command line is then
    reported as the command line's, not as the file's."""
    for item in reversed(overrides or []):
        name = item.split("=", 1)[0].strip()
        if key == name or key.startswith(name + ".") or name.startswith(key + "."):
            return f"command-line override {item!r}"
    return where


def config_error(e: ValidationError, cls: type[BaseModel], where: str,
                 overrides: list[str] | None = None) -> ConfigError:
    """pydantic's first error as one line: `where: key: what was expected, got what`
    (`where` being the override that set the key, when one did)."""
    err = e.errors()[0]
    loc = [str(x) for x in err["loc"]]
    key = ".".join(loc) or "recipe"
    where = origin(key, where, overrides)
    if err["type"] == "extra_forbidden":
        model: Any = cls
        for part in loc[:-1]:  # the block the unknown key sits in: its own keys are the suggestions
            field = model.model_fields.get(part)
            inner = getattr(field, "annotation", None) if field else None
            model = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
            if model is None:
                break
        known = list(model.model_fields) if model is not None else []
        return ConfigError(f"{where}: unknown key '{key}'{_suggest(loc[-1], known)}")
    if key == "data" and err["type"] == "list_type" or loc[:1] == ["data"] and err["type"] == "model_type":
        return ConfigError(f"{where}: {key}: expected a list of files ({{path, weight}} or plain paths)")
    what = _EXPECTED.get(err["type"], err["msg"][0].lower() + err["msg"][1:])
    return ConfigError(f"{where}: {key}: {what}, got {err.get('input')!r}")


def recipe_from_dict(raw: dict[str, Any], kind: str = "sft", where: str = "<config>",
                     overrides: list[str] | None = None) -> Recipe:
    """Build a checked recipe of `kind` (sft, dpo, grpo) from a plain dict (what the YAML file
    holds, `overrides` applied: they are passed so an error in one is reported as the override's)."""
    cls = RECIPES[kind]
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of recipe keys, got {type(raw).__name__}")
    try:
        recipe = cls.model_validate(raw)
    except ValidationError as e:
        raise config_error(e, cls, where, overrides) from None
    if isinstance(recipe, DataRecipe) and not recipe.data:
        raise ConfigError(f"{where}: data: no training files given")
    if recipe.bf16 is True and recipe.fp16:
        raise ConfigError(f"{where}: bf16 and fp16 are both on; choose one")
    if isinstance(recipe, DPORecipe) and recipe.max_prompt_length >= recipe.max_length:
        raise ConfigError(f"{where}: max_prompt_length must be shorter than max_length (room is needed for the reply)")
    if isinstance(recipe, GRPORecipe):
        _check_grpo(recipe, where, overrides)
    if recipe.deepspeed is not None:
        deepspeed_config_path(recipe.deepspeed, where)
    return recipe


def _check_grpo(r: GRPORecipe, where: str, overrides: list[str] | None) -> None:
    known = list(PROGRAMMATIC + MODEL_JUDGED + GYM)
    for name in r.rewards:
        if name not in known:
            raise ConfigError(f"{origin('rewards.' + name, where, overrides)}: rewards.{name}: unknown reward"
                              f"{_suggest(name, known)} (expected {', '.join(known)})")
    checks = [
        ((r.batch_size * r.grad_accum) % r.num_generations == 0,
         f"batch_size × grad_accum ({r.batch_size} × {r.grad_accum}) must be a multiple of num_generations "
         f"({r.num_generations})"),
        (r.turns == 1 or r.patient, "patient: a model spec is needed when turns > 1"),
        (not r.rewards.get("judge") or r.judge, "judge: a model spec is needed for rewards.judge"),
        (not r.rewards.get("rubric") or (r.grader and r.rubrics), "grader and rubrics are needed for rewards.rubric"),
        (r.env == "gym" or not any(r.rewards.get(k) for k in GYM),
         f"rewards.{next((k for k in GYM if r.rewards.get(k)), '')}: the gym's rewards need env: gym (case ledgers)"),
        (r.env == "consult" or r.patient in (None, "rule"),
         f"patient: env gym plays the rule-based patient (patient: rule), not {r.patient!r}"),
        (r.env == "consult" or r.turns == 1, "turns: env gym plays each ledger to its own turn_budget; leave turns out"),
        (r.env == "consult" or r.cases.lower() not in ("cmb-clin", "cmd", "cmid"),
         f"cases: env gym trains on case ledgers (a ledger JSONL, e.g. discmed/assets/gym/train_ledgers.jsonl), "
         f"not the DISC set {r.cases!r}"),
    ]  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{where}: {message}")


def load_recipe(
    path: str | os.PathLike | None, overrides: list[str] | None = None, kind: str = "sft"
) -> Recipe:
    """Read a recipe YAML of `kind` (sft, dpo, grpo; or none: defaults) and apply `key=value`
    overrides (`lora.r=8` for nested)."""
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
    return recipe_from_dict(raw, kind, where, overrides)


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


def resolve_model(name: str) -> str:
    """The folder or hub id a recipe's `model` names, read as every command reads a model spec
    (`tiny`, `hf:Qwen/…`, a bare folder or hub id); an API endpoint cannot be trained."""
    try:
        ref = resolve(name)
    except SpecError as e:
        raise ConfigError(f"model: {e}") from None
    if not ref.local:
        raise ConfigError(f"model: {name!r} is not weights to train (tiny, hf:HUB_ID_OR_PATH or a folder)")
    return ref.path


def _check_files(recipe: Recipe, read: Any, what: str, max_errors: int) -> list[tuple[Path, float]]:
    """Read every data file of a recipe with `read(path, errors)`; one ConfigError lists the
    first bad lines, another names a file with nothing in it."""
    out = []
    for src in recipe.data:
        p = resolve_path(src.path)
        if not p.is_file():
            raise ConfigError(f"{src.path}: data file not found")
        errors: list = []
        n = sum(1 for _ in read(p, errors))
        if errors:
            shown = "\n  ".join(str(e) for e in errors[:max_errors])
            more = f"\n  … and {len(errors) - max_errors} more" if len(errors) > max_errors else ""
            raise ConfigError(f"{p}: {len(errors)} bad {what}(s):\n  {shown}{more}")
        if n == 0:
            raise ConfigError(f"{p}: no {what}s in the file")
        out.append((p, src.weight))
    return out


def check_sft_data(recipe: SFTRecipe, max_errors: int = 5) -> list[tuple[Path, float]]:
    """Validate every data file of an SFT recipe before any model loads."""
    return _check_files(recipe, iter_conversations, "record", max_errors)


def parse_pair(obj: Any, path: Path, line: int) -> dict[str, Any]:
    """One DPO line `{"prompt": [messages…], "chosen": str, "rejected": str}`, checked."""
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
    return list(iter_jsonl(path, lambda obj, line: parse_pair(obj, path, line), errors))


def check_dpo_data(recipe: DPORecipe, max_errors: int = 5) -> list[tuple[Path, float]]:
    """Validate every preference-pair file of a DPO recipe before any model loads."""
    return _check_files(recipe, read_pairs, "preference pair", max_errors)


def recipe_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as plain data (saved next to the trained model, so a run can be read back)."""
    return recipe.model_dump(mode="json")


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a data file's bytes: what a checkpoint was trained on, compared on resume."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# What each recipe key means, for `discmed train keys` (a test checks every key of every recipe
# kind is here, and nothing else). Where a key means something else per kind, the kind says so.
KEY_HELP: dict[str, str] = {
    "model": "base model: tiny, hf:HUB_ID or a hub id, or a local folder (a LoRA adapter folder too)",
    "format": "chat format the data is rendered in: disc (Baichuan's 195/196), chatml, llama3, auto (the tokenizer's own)",
    "method": "full (all weights), lora, or qlora (4-bit base, GPU only)",
    "output_dir": "where the model folder, checkpoints and discmed_train.json are written",
    "epochs": "passes over the data (fractions allowed); ignored when max_steps > 0",
    "max_steps": "optimizer steps to run; -1: as many as epochs give",
    "batch_size": "examples per device per micro-step (GRPO: episodes)",
    "grad_accum": "micro-steps per optimizer step: effective batch = batch_size × grad_accum × GPUs",
    "learning_rate": "peak learning rate",
    "scheduler": "learning-rate schedule (transformers' names: cosine, linear, constant, …)",
    "warmup_steps": "optimizer steps of linear warm-up",
    "weight_decay": "AdamW weight decay",
    "max_grad_norm": "gradient clipping norm",
    "bf16": "bfloat16 training: true, false, or auto (on where the GPU supports it, off on CPU)",
    "fp16": "float16 training (refused for the Baichuan family: its ALiBi attention overflows)",
    "gradient_checkpointing": "recompute activations in the backward pass: less memory, ~30% slower",
    "attn_implementation": "attention kernel: auto (flash_attention_2 when installed on GPU, else sdpa), sdpa, eager",
    "deepspeed": "zero2 | zero3 (shipped configs) or a path to a DeepSpeed JSON; null for none",
    "lora": "LoRA block: r, alpha, dropout, target_modules (used when method is lora or qlora)",
    "save_steps": "optimizer steps between checkpoints",
    "save_total_limit": "checkpoints kept (older ones deleted)",
    "logging_steps": "optimizer steps between logged losses",
    "seed": "random seed (data order, sampling, initialisation of new weights)",
    "resume": "auto (the newest complete checkpoint, refused if the recipe changed what it trains), force, false, "
              "or a checkpoint path",
    "report_to": "none or tensorboard",
    "dataloader_workers": "data-loading worker processes",
    "data": "training files: a list of paths or {path, weight} (weight 2.0 repeats a file, 0.5 keeps a seeded half)",
    "max_length": "tokens per example; longer conversations are cut at a turn boundary, and one left without an "
                  "assistant token is dropped and counted",
    "guard_steps": "a loss of NaN (SFT, DPO: or 0) within this many optimizer steps stops the run, saying why",
    "packing": "pack whole conversations into max_length rows (best-fit decreasing; SFT)",
    "max_prompt_length": "DPO: tokens kept of the prompt (the rest of max_length is for the replies)",
    "beta": "DPO: the preference temperature; GRPO: the KL weight to the starting model (0: none, no reference kept)",
    "loss_type": "DPO: sigmoid, ipo, …; GRPO: grpo, dr_grpo, bnpo, … (TRL's names)",
    "env": "GRPO: consult (DISC's cases, a patient model) or gym (case ledgers, the rule-based patient, rewards "
           "from the ledger)",
    "cases": "GRPO: the consultation cases: cmb-clin, cmd, cmid, or a DISC samples file; env gym: a ledger JSONL",
    "samples": "GRPO: DISC's eval/samples folder holding the cases (else $DISCMED_EVAL_SAMPLES)",
    "limit": "GRPO: only the first N cases",
    "holdout": "GRPO: share of the cases set aside (seeded) for the before/after figures",
    "holdout_seed": "GRPO: the split's own seed, so runs with other training seeds hold out the same cases",
    "eval_cases": "GRPO: another set or file to measure before/after on (added to the held-out share; env gym: "
                  "a ledger JSONL never trained on)",
    "patient": "GRPO: the patient's model spec (needed when turns > 1); env gym: rule",
    "turns": "GRPO: doctor turns per episode (env gym: each ledger's turn_budget)",
    "max_new_tokens": "GRPO: tokens per doctor turn",
    "max_completion_length": "GRPO: tokens of the whole episode after the opening",
    "temperature": "GRPO: sampling temperature of the rollouts",
    "top_p": "GRPO: nucleus sampling of the rollouts",
    "doctor_system": "GRPO: a system message for the doctor",
    "rewards": "GRPO: reward weights by name: asks, safety, length, model_leak (programmatic); judge, rubric "
               "(model-judged, need their models); env gym also: info_recall, red_flags_before_advice, diagnosis, "
               "disposition, and the counts repeated, multi, over_budget (weigh them below 0)",
    "judge": "GRPO: the judge's model spec, for rewards.judge",
    "grader": "GRPO: the rubric grader's model spec, for rewards.rubric",
    "rubrics": "GRPO: the rubric JSONL, for rewards.rubric",
    "length_budget": "GRPO: characters per reply before the length penalty starts",
    "num_generations": "GRPO: episodes per case; advantages are relative within each case's group",
    "scale_rewards": "GRPO: group, batch or none (how advantages are scaled)",
    "epsilon": "GRPO: the clipping range of the policy ratio",
    "mask_truncated": "GRPO: episodes whose last reply hit max_new_tokens get no gradient",
    "eval_samples": "GRPO: episodes per held-out case for the before/after figures",
    "use_vllm": "GRPO: generate rollouts with vLLM (GPU)",
    "vllm_mode": "GRPO: colocate (vLLM in the training process) or server (a separate trl vllm-serve)",
}


def recipe_keys(kind: str) -> list[dict[str, str]]:
    """Every key of a recipe kind (sft, dpo, grpo): name, type, default, what it means."""
    import typing

    cls = RECIPES[kind]
    rows = []
    for name, field in cls.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = default.model_dump()
        kind_name = typing.get_origin(field.annotation)
        shown = str(field.annotation).replace("typing.", "") if kind_name else getattr(field.annotation, "__name__",
                                                                                        str(field.annotation))
        rows.append({"key": name, "type": shown.replace("discmed.train.config.", ""), "default": repr(default),
                     "help": KEY_HELP.get(name, "")})
    return rows
