"""What SFT and DPO share: precision and hardware checks, model loading, the loss guard,
complete-only checkpoints, resume, and saving the final model folder.

Checks that can fail without a model (precision on this hardware, QLoRA without a GPU, fp16
on the Baichuan family) run first, in `check_hardware`, so a bad recipe costs nothing.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

from discmed.backend import model_identity
from discmed.chat import atomic_write_text, read_json
from discmed.errors import DiscmedError
from discmed.train.config import (  # noqa: F401  (importable from here too)
    ConfigError,
    Recipe,
    deepspeed_config_path,
    file_digest,
    recipe_dict,
    resolve_model,
)
from discmed.train.folder import save_tokenizer, set_adapter_base, write_card
from discmed.train.merge import adapter_base, generation_config_for, load_merged

log = logging.getLogger("discmed.train")

COMPLETE_MARKER = "discmed-complete"  # written last into a checkpoint: without it, the folder is partial
RECIPE_NAME = "discmed_recipe.json"  # what a checkpoint or model folder was trained on (see trained_on)
SUMMARY_NAME = "discmed_train.json"  # written last into a finished model folder


class TrainingGuardError(DiscmedError, RuntimeError):
    """The run stopped itself: its loss says it is not learning (the message names the likely cause)."""


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def model_family(model_path: str) -> str:
    """The `model_type` in a local model's config.json ('' when it cannot be read without loading)."""
    cfg = Path(model_path) / "config.json"
    if not cfg.is_file():
        if (Path(model_path) / "adapter_config.json").is_file():
            base = adapter_base(model_path)
            return model_family(base) if base and base != model_path else ""
        return ""
    try:
        return str(read_json(cfg).get("model_type", ""))
    except (OSError, DiscmedError):  # unreadable: the caller's checks go on without the family
        return ""


def precision(recipe: Recipe, model_path: str) -> tuple[bool, bool]:
    """(bf16, fp16) for this recipe on this machine, or a ConfigError saying why not."""
    cuda = _cuda()
    family = model_family(model_path)
    if recipe.fp16:
        try:  # the native Baichuan port's own check (its message explains ALiBi's fp16 overflow)
            from types import SimpleNamespace

            from discmed.baichuan.configuration import check_training_dtype

            check_training_dtype(SimpleNamespace(model_type=family), fp16=True)
        except ImportError:
            pass
        except ValueError as e:
            raise ConfigError(f"fp16: {e}") from None
        if "baichuan" in family:
            # DISC's users hit exactly this (Baichuan 2's model_type names too): the loss collapses to 0.
            raise ConfigError(
                "fp16: refused for the Baichuan family (its loss collapses to 0 in fp16); use bf16"
            )
        if not cuda:
            raise ConfigError("fp16: mixed precision needs a CUDA GPU; set fp16=false on CPU")
    if recipe.bf16 == "auto":
        import torch

        bf16 = bool(cuda and torch.cuda.is_bf16_supported()) and not recipe.fp16
    else:
        bf16 = bool(recipe.bf16)
        if bf16 and not cuda:
            raise ConfigError("bf16: true needs a GPU with bf16 support; use bf16=auto or false on CPU")
    if recipe.method == "qlora":
        if not cuda:
            raise ConfigError("method: qlora needs a CUDA GPU (bitsandbytes 4-bit kernels); use lora on CPU")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ConfigError("method: qlora needs bitsandbytes (pip install bitsandbytes)") from None
    return bf16, bool(recipe.fp16)


def attn_implementation(recipe: Recipe) -> str:
    if recipe.attn_implementation != "auto":
        return recipe.attn_implementation
    if _cuda():
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    # sdpa builds a block-diagonal causal mask from packed position ids (transformers ≥ 4.54)
    return "sdpa"


def load_tokenizer(model_path: str) -> Any:
    from transformers import AutoTokenizer

    if "baichuan" in model_family(model_path):
        import discmed.baichuan  # noqa: F401  (registers the native Baichuan's tokenizer with AutoTokenizer)
    path = model_path
    adapter = Path(model_path) / "adapter_config.json"
    if adapter.is_file() and not (Path(model_path) / "tokenizer_config.json").is_file():
        path = adapter_base(model_path)
    return AutoTokenizer.from_pretrained(path)


def load_model(recipe: Recipe, model_path: str, bf16: bool) -> Any:
    """The model to train: full weights (an adapter folder is merged first), 4-bit for QLoRA."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"attn_implementation": attn_implementation(recipe)}
    if "baichuan" in model_family(model_path):
        import discmed.baichuan  # noqa: F401  (registers the native Baichuan with AutoModelForCausalLM)
    if recipe.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if bf16 else torch.float16,
        )
        kwargs["dtype"] = torch.bfloat16 if bf16 else torch.float16
    elif recipe.method == "lora" and bf16:
        kwargs["dtype"] = torch.bfloat16  # frozen base in bf16; the adapter trains in fp32 (PEFT autocast)
    else:
        # Full training keeps fp32 master weights; bf16 comes from autocast (and ZeRO shards them)
        kwargs["dtype"] = torch.float32
    if (Path(model_path) / "adapter_config.json").is_file():
        return load_merged(model_path, **kwargs)
    return AutoModelForCausalLM.from_pretrained(model_path, **kwargs)


def lora_config(recipe: Recipe) -> Any:
    if recipe.method == "full":
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=recipe.lora.r,
        lora_alpha=recipe.lora.alpha,
        lora_dropout=recipe.lora.dropout,
        target_modules=recipe.lora.target_modules,
        task_type="CAUSAL_LM",
    )


# Where every recipe key goes. TRL_FIELDS are passed to TrainingArguments (SFTConfig, DPOConfig)
# as they are, every one explicitly, even where it equals TRL's default: a library default never
# stands in for a value the recipe holds (TRL 1.16 turns gradient checkpointing on by default,
# so the recipe's false must be said). CONVERTED go to TRL changed (named beside each);
# DISCMED_FIELDS are read by discmed itself. A test checks every recipe key is in one of them.
TRL_FIELDS = {
    "output_dir": "output_dir",
    "epochs": "num_train_epochs",
    "max_steps": "max_steps",
    "batch_size": "per_device_train_batch_size",
    "grad_accum": "gradient_accumulation_steps",
    "learning_rate": "learning_rate",
    "scheduler": "lr_scheduler_type",
    "warmup_steps": "warmup_steps",
    "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm",
    "gradient_checkpointing": "activation_checkpointing",  # transformers 5's name for it
    "save_steps": "save_steps",
    "save_total_limit": "save_total_limit",
    "logging_steps": "logging_steps",
    "seed": "seed",
    "dataloader_workers": "dataloader_num_workers",
}
DPO_TRL_FIELDS = {"beta": "beta", "max_length": "max_length"}
CONVERTED = {
    "bf16": "bf16 (auto resolved for this machine by precision())",
    "fp16": "fp16 (checked by precision())",
    "deepspeed": "deepspeed (zero2/zero3 → the shipped JSON)",
    "report_to": "report_to (none → [])",
    "loss_type": "loss_type ([loss_type])",
    "max_length": "SFT: max_length (None when packing: rows are packed to it already)",
    "packing": "padding_free (discmed packs; TRL's own packing stays off)",
}
DISCMED_FIELDS = {
    "model": "load_model", "format": "discmed.formats", "method": "load_model / lora_config",
    "data": "check_*_data", "lora": "lora_config", "resume": "resume_checkpoint",
    "guard_steps": "guarded", "attn_implementation": "load_model", "max_prompt_length": "dpo.encode_pairs",
}


def common_args(recipe: Recipe, bf16: bool, fp16: bool) -> dict[str, Any]:
    """TrainingArguments shared by SFTConfig and DPOConfig, from the recipe (see TRL_FIELDS)."""
    args: dict[str, Any] = {trl: getattr(recipe, key) for key, trl in TRL_FIELDS.items()}
    args.update(
        bf16=bf16,  # explicit: TRL turns bf16 on by default, which CPUs cannot train in
        fp16=fp16,
        deepspeed=str(deepspeed_config_path(recipe.deepspeed)) if recipe.deepspeed else None,
        report_to=[] if recipe.report_to == "none" else [recipe.report_to],
        data_seed=recipe.seed,
        save_strategy="steps",
        logging_first_step=True,
        save_only_model=False,
        disable_tqdm=False,
        # Without CUDA, say so: accelerate then sets up gloo for 2+ processes (torchrun, accelerate
        # launch, DeepSpeed) instead of counting a CPU DeepSpeed run as one process.
        use_cpu=not _cuda(),
    )
    if recipe.gradient_checkpointing:
        args["activation_checkpointing_kwargs"] = {"use_reentrant": False}
    return args


# -- the loss guard ------------------------------------------------------------------------


def diagnose(loss: float, recipe: Recipe, tokenizer: Any, inputs: dict[str, Any] | None) -> str:
    """Why a run's loss would be 0 or NaN in its first steps, most likely cause first."""
    what = "NaN" if math.isnan(loss) else ("infinite" if math.isinf(loss) else "0")
    causes = []
    labels = inputs.get("labels") if inputs else None
    if labels is not None and int((labels != -100).sum()) == 0:
        causes.append("every label in the batch is masked (-100): no assistant tokens survived truncation")
    if recipe.fp16:
        causes.append(
            "fp16: activations overflow or underflow in fp16 (DISC-MedLLM's known failure); use bf16"
        )
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    if labels is not None and pad is not None and pad == eos:
        causes.append(
            f"pad id equals eos id ({pad}): a collator that masks pad tokens also masks every eos target; "
            "give the tokenizer a separate pad token"
        )
    if not causes:
        causes.append(f"learning rate {recipe.learning_rate:g} may be too high (the loss diverged); lower it")
    return f"loss is {what} at an early step — likely cause: " + "; ".join(causes)


def guarded(trainer_cls: type, *, zero_ok: bool = False) -> type:
    """A subclass of `trainer_cls` that checks the loss of its first `guard_steps` optimizer steps:
    NaN or infinite stops the run, and so does exactly 0 unless `zero_ok` (GRPO: a group of
    equal rewards has no advantage, and its loss is 0)."""

    class Guarded(trainer_cls):  # type: ignore[misc, valid-type]
        discmed_recipe: Recipe | None = None

        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)
            recipe = self.discmed_recipe
            if recipe is not None and self.state.global_step < recipe.guard_steps:
                value = float(loss.detach().float().item())  # one sync per step, first steps only
                if not math.isfinite(value) or (value == 0.0 and not zero_ok):
                    raise TrainingGuardError(diagnose(value, recipe, self.processing_class, inputs))
            return loss

    Guarded.__name__ = f"Guarded{trainer_cls.__name__}"
    return Guarded


# -- checkpoints ---------------------------------------------------------------------------


def marker_callback(trained_on: dict[str, Any] | None = None) -> Any:
    """A callback that saves what a checkpoint was trained on (`trained_on`: the recipe and its
    inputs' identities, compared on resume) and then marks it complete.

    HF Trainer writes a checkpoint file by file; a run killed half-way leaves a folder that
    `get_last_checkpoint` would happily resume from. The marker is written (atomically) after
    the whole save, so resume only trusts folders that carry it.
    """
    from transformers import TrainerCallback

    class CheckpointMarker(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.barrier()  # every rank's shard is written
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if folder.is_dir():
                    if trained_on is not None:
                        atomic_write_text(folder / RECIPE_NAME, json.dumps(trained_on, ensure_ascii=False, indent=2))
                    atomic_write_text(folder / COMPLETE_MARKER, json.dumps({"step": state.global_step}))
            return control

    return CheckpointMarker()


def throughput_callback() -> Any:
    """Logs loss, learning rate and tokens/s (TRL's non-pad `num_tokens` over wall time) per log step."""
    import time

    from transformers import TrainerCallback

    class Throughput(TrainerCallback):
        last: tuple[float, float] | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs or not state.is_world_process_zero:
                return
            now, tokens = time.perf_counter(), float(logs.get("num_tokens", 0.0))
            rate = ""
            if self.last is not None and now > self.last[0]:
                rate = f", {(tokens - self.last[1]) / (now - self.last[0]):.0f} tokens/s"
            self.last = (now, tokens)
            log.info(
                "step %d/%d: loss %.4f, lr %.3g%s",
                state.global_step,
                state.max_steps,
                float(logs["loss"]),
                float(logs.get("learning_rate", 0.0)),
                rate,
            )

    return Throughput()


# What a run trains, compared on resume: a checkpoint resumed under another learning rate, step
# count, schedule, data or base model would silently continue the old optimizer and schedule.
RESUME_KEYS = ("model", "method", "format", "data", "max_length", "packing", "epochs", "max_steps",
               "batch_size", "grad_accum", "learning_rate", "scheduler", "warmup_steps", "weight_decay",
               "seed", "lora", "beta", "loss_type", "max_prompt_length")


def trained_on(recipe: Recipe, model_path: str, files: list[tuple[Path, float]]) -> dict[str, Any]:
    """The recipe and the identities of what it reads: saved into each checkpoint and the final folder."""
    return {"recipe": recipe_dict(recipe), "model_identity": model_identity(model_path),
            "data": [{"path": str(p), "weight": w, "sha256": file_digest(p)} for p, w in files]}


def _changes(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    old, new = before.get("recipe", {}), now["recipe"]
    changed = [f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in RESUME_KEYS
               if k in new and k != "data" and old.get(k) != new.get(k)]
    if [(d["sha256"], d["weight"]) for d in before.get("data", [])] != [(d["sha256"], d["weight"]) for d in now["data"]]:
        changed.append("data: other files or contents")
    if before.get("model_identity") != now["model_identity"]:
        changed.append(f"base model weights: {before.get('model_identity')} → {now['model_identity']}")
    return changed


def resume_checkpoint(recipe: Recipe, is_main: bool = True, now: dict[str, Any] | None = None) -> str | None:
    """The checkpoint to resume from: `resume=auto` → the newest complete one in output_dir.

    Partial checkpoints (no marker: the run died while saving) are removed so that neither
    resume nor rotation can pick them up. With `now` (see `trained_on`), a checkpoint trained
    under another recipe (learning rate, steps, data, model …) is refused, naming what changed,
    unless `resume: force`.
    """
    if recipe.resume in (False, None, "false", "no"):
        return None
    if isinstance(recipe.resume, str) and recipe.resume not in ("auto", "true", "force"):
        p = Path(recipe.resume)
        if not (p / COMPLETE_MARKER).is_file():
            raise ConfigError(f"resume: {p} is not a complete discmed checkpoint")
        _check_same_run(p, recipe, now)
        return str(p)
    out = Path(recipe.output_dir)
    if not out.is_dir():
        return None
    best: tuple[int, Path] | None = None
    for d in out.glob("checkpoint-*"):
        try:
            step = int(d.name.split("-", 1)[1])
        except ValueError:
            continue
        if (d / COMPLETE_MARKER).is_file():
            if best is None or step > best[0]:
                best = (step, d)
        elif is_main and d.is_dir():
            log.warning("removing partial checkpoint %s (the run stopped while saving it)", d)
            shutil.rmtree(d, ignore_errors=True)
    if best is None:
        return None
    _check_same_run(best[1], recipe, now)
    log.info("resuming from %s", best[1])
    return str(best[1])


def _check_same_run(checkpoint: Path, recipe: Recipe, now: dict[str, Any] | None) -> None:
    if now is None or recipe.resume == "force":
        return
    saved = checkpoint / RECIPE_NAME
    if not saved.is_file():
        raise ConfigError(f"resume: {checkpoint} does not say what it was trained on (an older discmed); "
                          "set resume=force to continue it anyway, or resume=false to start over")
    changed = _changes(read_json(saved), now)
    if changed:
        raise ConfigError(f"resume: {checkpoint} was trained under another recipe ({'; '.join(changed)}); "
                          "resume=force continues it with the old optimizer and schedule, resume=false starts "
                          "over, or choose another output_dir")


def save_final(trainer: Any, recipe: Recipe, tokenizer: Any, fmt_name: str, summary: dict[str, Any],
               trained: dict[str, Any]) -> None:
    """A self-consistent folder (see discmed.train.folder): model or adapter (its base named as
    the recipe named it), tokenizer with the trained format's chat template, a generation config
    matching it, discmed's model card, what it was trained on, and last the summary file that
    marks the folder finished."""
    out = Path(recipe.output_dir)
    trainer.save_model(str(out))
    if not trainer.is_world_process_zero():
        return
    template = save_tokenizer(tokenizer, out, fmt_name)
    set_adapter_base(out, recipe.model)
    model = trainer.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    generation_config_for(base.config, tokenizer, fmt_name).save_pretrained(str(out))
    atomic_write_text(out / RECIPE_NAME, json.dumps(trained, ensure_ascii=False, indent=2))
    write_card(out, command=summary["command"], base=recipe.model, fmt_name=fmt_name, recipe=trained["recipe"],
               data=trained["data"], figures=summary, template=template)
    atomic_write_text(out / SUMMARY_NAME, json.dumps(summary, ensure_ascii=False, indent=2))
