"""Direct preference optimisation on TRL's DPOTrainer, tokenized by discmed's chat formats.

Pairs come as JSONL `{"prompt": [messages…], "chosen": "...", "rejected": "..."}` (what the
curation step exports). TRL's DPOTrainer would render them with the tokenizer's chat template,
which for DISC's format (ids 195/196, no template) would be a different conversation layout
than the one SFT trained on. So discmed tokenizes the pairs itself, with the same format:

- prompt ids = `fmt.prompt(prompt)` (oldest rounds dropped to fit `max_prompt_length`; it ends
  with the assistant marker, exactly where generation starts at serving time);
- chosen / rejected ids = the assistant turn as `fmt.encode` lays it out after that marker
  (content plus the end-of-turn token, so the preference includes stopping).

The trainer gets `prompt_ids` / `chosen_ids` / `rejected_ids` and only collates; full or LoRA
(the frozen reference is a copy of the model, or for LoRA the base with the adapter off).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from discmed.formats import get_format
from discmed.train.config import (
    ConfigError,
    DPORecipe,
    apply_overrides,
    check_dpo_data,
    load_recipe,
    read_pairs,
    recipe_from_dict,
)
from discmed.train.runtime import (
    DPO_TRL_FIELDS,
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
from discmed.train.sft import weighted

log = logging.getLogger("discmed.train")


def completion_ids(fmt: Any, prompt: list[dict], reply: str, tokenizer: Any) -> tuple[list[int], list[int]]:
    """(prompt ids as the format encodes them, the reply's ids after the assistant marker)."""
    enc = fmt.encode([*prompt, {"role": "assistant", "content": reply}], tokenizer, max_length=None)
    if enc is None:
        raise ConfigError("a preference reply encoded to no target tokens")
    ids, mask = enc
    start = len(mask)  # the first token of the last run of target tokens: the reply's start
    while start > 0 and not mask[start - 1]:
        start -= 1
    while start > 0 and mask[start - 1]:
        start -= 1
    return ids[:start], ids[start:]


def encode_pairs(
    pairs: list[dict[str, Any]], fmt_name: str, tokenizer: Any, max_length: int, max_prompt_length: int
) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Pairs → `prompt_ids`, `chosen_ids`, `rejected_ids`, with counts of what was cut or dropped."""
    fmt = get_format(fmt_name)
    rows = []
    stats = {"pairs": len(pairs), "prompt_truncated": 0, "completion_truncated": 0, "dropped": 0}
    for pair in pairs:
        full_prompt, chosen = completion_ids(fmt, pair["prompt"], pair["chosen"], tokenizer)
        _, rejected = completion_ids(fmt, pair["prompt"], pair["rejected"], tokenizer)
        prompt = fmt.prompt(
            pair["prompt"], tokenizer, max_length=max_length, reserve=max_length - max_prompt_length
        )
        if len(prompt) < len(full_prompt):
            stats["prompt_truncated"] += 1
        room = max_length - len(prompt)
        if room <= 0:
            stats["dropped"] += 1
            continue
        if len(chosen) > room or len(rejected) > room:
            stats["completion_truncated"] += 1
        rows.append({"prompt_ids": prompt, "chosen_ids": chosen[:room], "rejected_ids": rejected[:room]})
    if not rows:
        raise ConfigError(f"no preference pairs left within max_length={max_length}")
    return rows, stats


def _pretokenized(trainer_cls: type) -> type:
    """DPOTrainer that takes discmed's token ids as they are (its own tokenization skipped)."""

    class PretokenizedDPOTrainer(trainer_cls):  # type: ignore[misc, valid-type]
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    return PretokenizedDPOTrainer


def dpo_config(recipe: DPORecipe, bf16: bool, fp16: bool) -> Any:
    """TRL's DPOConfig from the recipe: every key explicit (runtime.TRL_FIELDS, DPO_TRL_FIELDS)."""
    from trl import DPOConfig

    return DPOConfig(
        **common_args(recipe, bf16, fp16),
        **{trl: getattr(recipe, key) for key, trl in DPO_TRL_FIELDS.items()},
        loss_type=[recipe.loss_type],
        precompute_ref_log_probs=False,
    )


def run_dpo(
    config: dict[str, Any] | DPORecipe | str | Path,
    overrides: list[str] | None = None,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """DPO as the recipe says; returns the summary (also saved as discmed_train.json)."""
    from datasets import Dataset
    from trl import DPOTrainer

    if isinstance(config, str | Path):
        recipe = load_recipe(config, overrides, "dpo")
    elif isinstance(config, dict):
        recipe = recipe_from_dict(apply_overrides(config, overrides), "dpo", "<command line>", overrides)
    else:
        recipe = config
    assert isinstance(recipe, DPORecipe)
    files = check_dpo_data(recipe)
    model_path = resolve_model(recipe.model)
    bf16, fp16 = precision(recipe, model_path)
    tokenizer = load_tokenizer(model_path)
    pairs: list[dict[str, Any]] = []
    for n, (path, weight) in enumerate(files):
        pairs += weighted(read_pairs(path), weight, recipe.seed + n)
    rows, stats = encode_pairs(pairs, recipe.format, tokenizer, recipe.max_length, recipe.max_prompt_length)
    if stats["dropped"] or stats["prompt_truncated"]:
        log.warning("DPO data: %s", stats)
    dataset = Dataset.from_list(rows)

    started = time.perf_counter()
    args = dpo_config(recipe, bf16, fp16)
    trained = trained_on(recipe, model_path, files)
    model = load_model(recipe, model_path, bf16)
    trainer = _pretokenized(guarded(DPOTrainer))(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(recipe),
        callbacks=[marker_callback(trained), throughput_callback(), *(callbacks or [])],
    )
    trainer.discmed_recipe = recipe
    checkpoint = resume_checkpoint(recipe, trainer.is_world_process_zero(), trained)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    last = logs[-1] if logs else {}
    summary = {
        "command": "dpo",
        "output_dir": str(Path(recipe.output_dir).resolve()),
        "model": recipe.model,
        "format": recipe.format,
        "method": recipe.method,
        "steps": trainer.state.global_step,
        "resumed_from": checkpoint,
        "train_loss": float(result.training_loss),
        "first_loss": logs[0]["loss"] if logs else None,
        "final_loss": last.get("loss"),
        "reward_accuracy": last.get("rewards/accuracies"),
        "reward_margin": last.get("rewards/margins"),
        **stats,
        "train_runtime_s": time.perf_counter() - started,
    }
    save_final(trainer, recipe, tokenizer, recipe.format, summary, trained)
    return summary
