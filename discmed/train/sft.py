"""Supervised fine-tuning: DISC-MedLLM's recipe on TRL's SFTTrainer.

The run reads top to bottom:

1. recipe → checked (keys, values, data files, precision on this machine) before any model loads;
2. conversations → `discmed.formats` ids and assistant masks → labels (-100 off the mask), built
   once here; samples with no target left after truncation are dropped and counted;
3. packing (best-fit decreasing, padding-free, position ids per conversation), on by default;
4. model (full / LoRA / QLoRA), SFTTrainer with DISC's schedule (cosine with warmup), the loss
   guard, complete-only checkpoints, resume from the newest one;
5. the final folder: weights, tokenizer, a generation config for the chat format, the recipe,
   and a summary (the same dict `run_sft` returns).

Runs the same in one process, under `accelerate launch` (DDP or DeepSpeed ZeRO-2/3) and
`torchrun`: `python -m discmed.train sft --config recipes/tiny.yaml`.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

from discmed.chat import iter_conversations
from discmed.formats import encode_many, get_format
from discmed.train.config import (
    ConfigError,
    SFTRecipe,
    apply_overrides,
    check_sft_data,
    load_recipe,
    recipe_from_dict,
)
from discmed.train.pack import pack
from discmed.train.runtime import (
    common_args,
    guarded,
    load_model,
    load_tokenizer,
    lora_config,
    marker_callback,
    precision,
    resolve_model,
    resume_checkpoint,
    save_final,
    throughput_callback,
    trained_on,
)

log = logging.getLogger("discmed.train")


def weighted(items: list[Any], weight: float, seed: int) -> list[Any]:
    """`weight` copies of `items`: whole repeats, then a seeded sample for the fraction."""
    whole = int(weight)
    out = items * whole
    frac = weight - whole
    if frac > 0:
        rng = random.Random(seed)
        k = round(len(items) * frac)
        out += [items[i] for i in sorted(rng.sample(range(len(items)), k))]
    return out


def encode_records(
    files: list[tuple[Path, float]], fmt_name: str, tokenizer: Any, max_length: int, seed: int = 42
) -> tuple[Any, dict[str, Any]]:
    """Every conversation of every file (weights applied) → a `datasets.Dataset` of `input_ids`
    and `labels`, plus counts. Ids and masks come from `formats.encode_many`; labels are
    `input_ids` where the mask is 1, else -100."""
    from datasets import Dataset


    fmt = get_format(fmt_name)
    rows: list[dict[str, list[int]]] = []
    stats: dict[str, Any] = {"conversations": 0, "dropped_no_target": 0, "truncated": 0, "dropped_ids": []}
    for n, (path, weight) in enumerate(files):
        pairs = ((f"{path.name}:{c.id}", c.messages) for c in iter_conversations(path))
        encoded, st = encode_many(pairs, fmt, tokenizer, max_length)
        stats["conversations"] += st.kept + st.dropped_no_target
        stats["dropped_no_target"] += st.dropped_no_target
        stats["truncated"] += st.truncated
        stats["dropped_ids"] = (stats["dropped_ids"] + st.dropped_ids)[:20]
        labelled = [{"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask, strict=True)]}
                    for ids, mask in encoded]
        rows += weighted(labelled, weight, seed + n)
    if stats["dropped_no_target"]:
        log.warning(
            "dropped %d of %d conversations: no assistant token left within max_length=%d (e.g. %s)",
            stats["dropped_no_target"],
            stats["conversations"],
            max_length,
            ", ".join(stats["dropped_ids"][:3]),
        )
    if not rows:
        raise ConfigError(
            f"no training samples left: all {stats['conversations']} conversations lost every assistant "
            f"token to truncation at max_length={max_length} (every label would be masked)"
        )
    stats["samples"] = len(rows)
    stats["tokens"] = sum(len(r["input_ids"]) for r in rows)
    stats["target_tokens"] = sum(sum(1 for t in r["labels"] if t != -100) for r in rows)
    return Dataset.from_list(rows), stats


def prepare(recipe: SFTRecipe) -> dict[str, Any]:
    """Everything up to (not including) the model: checks, tokenizer, dataset, packing."""
    files = check_sft_data(recipe)
    model_path = resolve_model(recipe.model)
    bf16, fp16 = precision(recipe, model_path)
    tokenizer = load_tokenizer(model_path)
    dataset, stats = encode_records(files, recipe.format, tokenizer, recipe.max_length, recipe.seed)
    pack_stats = None
    if recipe.packing:
        dataset, ps = pack(dataset, recipe.max_length, recipe.batch_size)
        pack_stats = ps.as_dict()
        log.info("packed %d conversations into %d rows (%.1f%% full)", ps.sequences, ps.rows, 100 * ps.fill)
    return {
        "files": files,
        "model_path": model_path,
        "bf16": bf16,
        "fp16": fp16,
        "tokenizer": tokenizer,
        "dataset": dataset,
        "stats": stats,
        "pack": pack_stats,
    }


def sft_config(recipe: SFTRecipe, bf16: bool, fp16: bool) -> Any:
    """TRL's SFTConfig from the recipe: every key explicit (runtime.TRL_FIELDS)."""
    from trl import SFTConfig

    return SFTConfig(
        **common_args(recipe, bf16, fp16),
        # The dataset arrives tokenized, labelled and (by default) packed: TRL only collates.
        max_length=None if recipe.packing else recipe.max_length,
        packing=False,
        padding_free=recipe.packing,
        shuffle_dataset=False,  # the sampler shuffles rows with `seed`; data order stays reproducible
        dataset_num_proc=None,
        completion_only_loss=False,
        assistant_only_loss=False,
    )


def build_trainer(recipe: SFTRecipe, prep: dict[str, Any], callbacks: list[Any] | None = None) -> Any:
    from trl import SFTTrainer

    args = sft_config(recipe, prep["bf16"], prep["fp16"])
    model = load_model(recipe, prep["model_path"], prep["bf16"])
    trainer_cls = guarded(SFTTrainer)
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=prep["dataset"],
        processing_class=prep["tokenizer"],
        peft_config=lora_config(recipe),
        callbacks=[marker_callback(prep["trained_on"]), throughput_callback(), *(callbacks or [])],
    )
    trainer.discmed_recipe = recipe
    return trainer


def run_sft(
    config: dict[str, Any] | SFTRecipe | str | Path,
    overrides: list[str] | None = None,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """Train as the recipe says and return the summary (also saved as discmed_train.json).

    `config` is a recipe dict, an `SFTRecipe`, or a YAML path; `overrides` are `key=value`.
    """
    if isinstance(config, str | Path):
        recipe = load_recipe(config, overrides, "sft")
    elif isinstance(config, dict):
        recipe = recipe_from_dict(apply_overrides(config, overrides), "sft", "<command line>", overrides)
    else:
        recipe = config
    assert isinstance(recipe, SFTRecipe)
    started = time.perf_counter()
    prep = prepare(recipe)
    prep["trained_on"] = trained_on(recipe, prep["model_path"], prep["files"])
    trainer = build_trainer(recipe, prep, callbacks)
    checkpoint = resume_checkpoint(recipe, trainer.is_world_process_zero(), prep["trained_on"])
    result = trainer.train(resume_from_checkpoint=checkpoint)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    runtime = time.perf_counter() - started
    train_runtime = float(result.metrics.get("train_runtime", runtime))
    # Real target tokens per second: what the optimiser actually learnt from, pads excluded.
    epochs_done = float(trainer.state.epoch or 0.0)
    target_seen = prep["stats"]["target_tokens"] * epochs_done
    summary = {
        "command": "sft",
        "output_dir": str(Path(recipe.output_dir).resolve()),
        "model": recipe.model,
        "format": recipe.format,
        "method": recipe.method,
        "steps": trainer.state.global_step,
        "epochs": epochs_done,
        "resumed_from": checkpoint,
        "train_loss": float(result.training_loss),
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "samples": prep["stats"]["samples"],
        "conversations": prep["stats"]["conversations"],
        "dropped_no_target": prep["stats"]["dropped_no_target"],
        "target_tokens": prep["stats"]["target_tokens"],
        "tokens": prep["stats"]["tokens"],
        "packing": prep["pack"],
        "train_runtime_s": train_runtime,
        "target_tokens_per_s": target_seen / train_runtime if train_runtime > 0 else None,
        "bf16": prep["bf16"],
    }
    save_final(trainer, recipe, prep["tokenizer"], recipe.format, summary, prep["trained_on"])
    return summary
