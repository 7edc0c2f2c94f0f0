"""GRPO on simulated consultations, on TRL's GRPOTrainer: `discmed train grpo --config recipes/X.yaml`.

The rollout is a consultation (`discmed.rl.env`): TRL's `rollout_func` hook hands each batch of
prompts (every case repeated `num_generations` times, TRL's sampler) to the environment, which
samples the doctor's turns from the policy and asks the patient model for the others, and
returns `prompt_ids`, `completion_ids` and `env_mask` — TRL multiplies its loss mask by
`env_mask`, so the patient's tokens are context and only the doctor's own are trained on. With
`env: gym` the rollout is a consultation in the gym (`discmed.rl.gym_env`): case ledgers, the
rule-based patient and the measurement agent (no model call), each episode played to the doctor's
conclusion or the ledger's turn budget, and the ledger's rewards (info_recall, red flags before
advice, diagnosis, disposition, penalties) beside or instead of the others. The
rewards (`discmed.rl.rewards`) are TRL reward functions weighted by the recipe; advantages are
group-relative over the episodes of one case; `beta` is the KL to the reference model (the
starting weights, or for LoRA the base with the adapter off).

Recipes share `train sft`'s machinery: the recipe (`config.GRPORecipe`, YAML plus `key=value`
overrides, unknown keys refused with a suggestion), the loss guard (`runtime.guarded`: NaN
stops an early step; a loss of 0 is normal here), full or LoRA, resume from the newest complete
checkpoint, the same final folder. Part of the cases (`holdout`) is set aside before training; the summary reports the
mean reward on them before and after, with the reward curve of training (`rewards.jsonl`).
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

from discmed.backend import GenParams, load_backend
from discmed.chat import atomic_write_text
from discmed.eval.consult import SETS, load_cases
from discmed.eval.rubric import read_rubrics
from discmed.eval.score import _save
from discmed.formats import get_format
from discmed.gym.ledger import read_ledgers
from discmed.rl.env import Consultations, policy_sampler
from discmed.rl.gym_env import GymCase, GymConsultations, ledger_case
from discmed.rl.rewards import Rewards
from discmed.train import config
from discmed.train.config import ConfigError, GRPORecipe, apply_overrides, resolve_path
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
    trained_on,
)

log = logging.getLogger("discmed.train")


def recipe_from_dict(raw: dict[str, Any], where: str = "<config>", overrides: list[str] | None = None) -> GRPORecipe:
    """A checked GRPO recipe (discmed.train.config, as for every recipe kind)."""
    return config.recipe_from_dict(raw, "grpo", where, overrides)  # type: ignore[return-value]


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> GRPORecipe:
    """A GRPO recipe YAML with `key=value` overrides (discmed.train.config, as for every kind)."""
    return config.load_recipe(path, overrides, "grpo")  # type: ignore[return-value]


def split_cases(recipe: GRPORecipe) -> tuple[list, list]:
    """(training cases, held-out cases): a seeded share set aside before any training. In the
    gym the cases are ledgers (as GymCase); a held-out ledger is never one trained on."""

    def read(name: str) -> list:
        if recipe.env == "gym":
            return [ledger_case(led) for led in read_ledgers(resolve_path(name))]
        return load_cases(name if name.lower() in SETS else str(resolve_path(name)), recipe.samples)

    cases = read(recipe.cases)
    cases = cases[: recipe.limit] if recipe.limit else cases
    order = list(range(len(cases)))
    random.Random(recipe.holdout_seed).shuffle(order)
    n_hold = int(round(recipe.holdout * len(cases)))
    if n_hold and len(cases) - n_hold < 1:
        raise ConfigError(f"cases: {len(cases)} cases leave none to train on after holdout={recipe.holdout}")
    held = set(order[:n_hold])
    extra = read(recipe.eval_cases) if recipe.eval_cases else []
    train = [c for i, c in enumerate(cases) if i not in held]
    if recipe.env == "gym":
        both = {c.id for c in train} & {c.id for c in extra}
        if both:
            raise ConfigError(f"eval_cases: ledger {sorted(both)[0]} is also in cases: held-out ledgers are never "
                              "trained on")
        openings = [c.opening for c in train]
        twice = next((o for o in openings if openings.count(o) > 1), None)
        if twice:
            raise ConfigError(f"cases: two ledgers open with the same words ({twice[:30]}…); a rollout is found "
                              "by its opening")
    return train, [cases[i] for i in sorted(held)] + extra


def build_rewards(recipe: GRPORecipe, cases: list) -> Any:

    rubrics = {e.prompt_id: e for e in read_rubrics(recipe.rubrics)} if recipe.rubrics else None
    return Rewards(recipe.rewards, cases={c.id: c for c in cases}, length_budget=recipe.length_budget,
                   ledgers={c.id: c.ledger for c in cases if isinstance(c, GymCase)},
                   judge=load_backend(recipe.judge) if recipe.rewards.get("judge") else None, judge_spec=recipe.judge or "",
                   grader=load_backend(recipe.grader) if recipe.rewards.get("rubric") else None,
                   grader_spec=recipe.grader or "", rubrics=rubrics)


def policy_rewards(model: Any, env: Any, rewards: Any, cases: list, samples: int, recipe: GRPORecipe) -> dict[str, Any]:
    """Mean of each reward (and of the weighted total) over `samples` sampled episodes per case."""

    cases = [c for c in cases for _ in range(samples)]
    with policy_sampler(model, env.tokenizer, env.stop_ids, temperature=recipe.temperature, top_p=recipe.top_p,
                        max_batch=max(1, len(cases))) as generate:  # fmt: skip
        episodes = env.run(cases, generate)
    records = [e.record() for e in episodes]
    values = rewards.score(records)
    totals = rewards.total(values)

    def mean(xs: list) -> float | None:
        xs = [x for x in xs if x is not None]
        return round(sum(xs) / len(xs), 4) if xs else None

    return {"episodes": len(records), "reward": mean(totals), **{k: mean(v) for k, v in values.items()},
            "samples": [{"id": r["id"], "conversation": r["conversation"]} for r in records[:: max(1, samples)][:4]]}


def build_trainer(recipe: GRPORecipe, train_cases: list, callbacks: list | None = None,
                  trained: dict[str, Any] | None = None) -> tuple[Any, Any, Any]:
    """(trainer, environment, rewards) for the recipe, the model loaded."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer


    model_path = resolve_model(recipe.model)
    bf16, fp16 = precision(recipe, model_path)
    tokenizer = load_tokenizer(model_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    fmt = get_format(recipe.format)
    if recipe.env == "gym":
        env = GymConsultations(tokenizer, fmt, seed=recipe.seed, max_new_tokens=recipe.max_new_tokens,
                               max_completion_length=recipe.max_completion_length, doctor_system=recipe.doctor_system)
    else:
        patient = load_backend(recipe.patient) if recipe.patient and recipe.turns > 1 else None
        env = Consultations(tokenizer, fmt, patient=patient, patient_spec=recipe.patient or "", turns=recipe.turns,
                            max_new_tokens=recipe.max_new_tokens, max_completion_length=recipe.max_completion_length,
                            patient_params=GenParams(max_new_tokens=96, temperature=0.7, top_p=0.9),
                            doctor_system=recipe.doctor_system)
    rewards = build_rewards(recipe, train_cases)
    funcs, weights = rewards.trl_functions()
    by_opening = {}
    for c in train_cases:
        by_opening.setdefault(c.opening, c)
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": c.opening}], "case_id": c.id} for c in train_cases])

    def rollout(prompts: list, trainer: Any) -> dict[str, Any]:
        cases = [by_opening[p[-1]["content"]] for p in prompts]
        model = trainer.accelerator.unwrap_model(trainer.model)
        if trainer.use_vllm:
            episodes = env.run(cases, vllm_generator(trainer))
        else:
            with policy_sampler(model, tokenizer, env.stop_ids, temperature=recipe.temperature, top_p=recipe.top_p,
                                max_batch=max(1, len(cases))) as generate:  # fmt: skip
                episodes = env.run(cases, generate)
        return {"prompt_ids": [e.prompt_ids for e in episodes], "completion_ids": [e.completion_ids for e in episodes],
                "logprobs": None, "env_mask": [e.env_mask for e in episodes],
                "episode": [e.record() for e in episodes]}

    args = GRPOConfig(
        **common_args(recipe, bf16, fp16),
        num_generations=recipe.num_generations,
        max_completion_length=recipe.max_completion_length,
        temperature=recipe.temperature,
        top_p=recipe.top_p,
        beta=recipe.beta,
        loss_type=recipe.loss_type,
        scale_rewards=recipe.scale_rewards,
        epsilon=recipe.epsilon,
        reward_weights=weights,
        use_vllm=recipe.use_vllm,
        vllm_mode=recipe.vllm_mode,
        mask_truncated_completions=recipe.mask_truncated,
    )
    model = load_model(recipe, model_path, bf16)
    trainer = guarded(GRPOTrainer, zero_ok=True)(
        model=model, reward_funcs=funcs, args=args, train_dataset=dataset, processing_class=tokenizer,
        peft_config=lora_config(recipe), rollout_func=rollout, callbacks=[marker_callback(trained), *(callbacks or [])])
    trainer.discmed_recipe = recipe
    return trainer, env, rewards


def vllm_generator(trainer: Any) -> Any:
    """Doctor turns from TRL's vLLM engine (colocated or a server), weights synced by TRL each step."""

    def generate(contexts: list[list[int]], max_new_tokens: int) -> list[tuple[list[int], bool]]:
        _, completion_ids, _, _ = trainer.vllm_generation.generate(prompts=contexts, images=None, num_generations=1)
        stops = set(trainer.eos_token_ids)
        out = []
        for ids in completion_ids:
            ids = list(ids)[:max_new_tokens]
            cut = next((i for i, t in enumerate(ids) if t in stops), None)
            out.append((ids[: cut + 1], True) if cut is not None else (ids, False))
        return out

    return generate


def reward_curve(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per logged step: the mean reward and each reward function's mean, as TRL logged them."""
    keep = ("step", "reward", "reward_std", "kl", "loss")
    return [{k: v for k, v in h.items() if k in keep or k.startswith("rewards/")} for h in log_history if "reward" in h]


def draw_curve(curve: list[dict[str, Any]], path: Path, baseline: list[dict[str, Any]] | None = None) -> Path | None:
    if not curve:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot([c["step"] for c in curve], [c["reward"] for c in curve], label="GRPO", linewidth=1.6)
    if baseline:
        ax.plot([c["step"] for c in baseline], [c["reward"] for c in baseline], label="learning rate 0", linestyle="--")
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward of the step's episodes")
    ax.set_title("GRPO reward during training")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)
    plt.close(fig)
    return path


def run_grpo(config: dict[str, Any] | GRPORecipe | str | Path, overrides: list[str] | None = None,
             callbacks: list[Any] | None = None, evaluate: bool = True) -> dict[str, Any]:
    """GRPO as the recipe says; returns the summary (also saved as discmed_train.json)."""

    if isinstance(config, str | Path):
        recipe = load_recipe(config, overrides)
    elif isinstance(config, dict):
        recipe = recipe_from_dict(apply_overrides(config, overrides), "<command line>", overrides)
    else:
        recipe = config
    train_cases, held_out = split_cases(recipe)
    started = time.perf_counter()
    trained = trained_on(recipe, resolve_model(recipe.model), [])  # the recipe and the base's identity
    trainer, env, rewards = build_trainer(recipe, train_cases, callbacks, trained)
    eval_rewards = build_rewards(recipe, held_out) if held_out and evaluate else None
    before = (policy_rewards(trainer.model, env, eval_rewards, held_out, recipe.eval_samples, recipe)
              if eval_rewards else None)
    checkpoint = resume_checkpoint(recipe, trainer.is_world_process_zero(), trained)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    after = (policy_rewards(trainer.model, env, eval_rewards, held_out, recipe.eval_samples, recipe)
             if eval_rewards else None)
    curve = reward_curve(trainer.state.log_history)
    out = Path(recipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "rewards.jsonl", "".join(json.dumps(c) + "\n" for c in curve))
    chart = draw_curve(curve, out / "reward_curve.png")
    rewards_seen = [c["reward"] for c in curve]
    k = max(1, len(rewards_seen) // 4)
    timings = {k: round(v, 2) for k, v in env.timings.items()}
    summary = {
        "command": "grpo", "output_dir": str(out.resolve()), "model": recipe.model, "format": recipe.format,
        "method": recipe.method, "steps": trainer.state.global_step, "resumed_from": checkpoint,
        "train_loss": float(result.training_loss), "rewards": recipe.rewards,
        "train_cases": len(train_cases), "held_out_cases": len(held_out),
        "reward_first_quarter": round(sum(rewards_seen[:k]) / k, 4) if rewards_seen else None,
        "reward_last_quarter": round(sum(rewards_seen[-k:]) / k, 4) if rewards_seen else None,
        "before": before, "after": after, "reward_stats": dict(rewards.stats), "rollout_timings": timings,
        "curve": str(out / "rewards.jsonl"), "chart": str(chart) if chart else None,
        "train_runtime_s": round(time.perf_counter() - started, 1),
    }
    save_final(trainer, recipe, env.tokenizer, recipe.format, summary, trained)
    if trainer.is_world_process_zero():
        atomic_write_text(out / "report.md", render_report(summary, curve))
    return summary


def render_report(summary: dict[str, Any], curve: list[dict[str, Any]]) -> str:
    """The run's report: rewards on the held-out cases before and after, the curve, sample episodes."""
    names = list(summary["rewards"])
    L = [f"# GRPO on consultations: {summary['model']}", "",
         f"{summary['steps']} steps on {summary['train_cases']} cases; {summary['held_out_cases']} held-out cases "
         f"(never trained on) measured before and after. Rewards and weights: `{json.dumps(summary['rewards'])}`.", ""]
    if summary.get("before"):
        L += ["| held-out | episodes | mean reward | " + " | ".join(names) + " |", "|---|---:|---:|" + "---:|" * len(names)]
        for label in ("before", "after"):
            x = summary[label]
            cells = ["—" if x.get(k) is None else f"{x[k]:.3f}" for k in names]
            L.append(f"| {label} | {x['episodes']} | {x['reward']} | " + " | ".join(cells) + " |")
        L.append("")
    L += [f"Training reward, first → last quarter of steps: {summary['reward_first_quarter']} → "
          f"{summary['reward_last_quarter']}. Reward counters (unreadable judge / grader replies are left out and counted here): "
          f"`{json.dumps(summary['reward_stats'])}`. Rollout time: `{json.dumps(summary['rollout_timings'])}`.", "",
          "![reward curve](reward_curve.png)", "", "| step | reward | " + " | ".join(names) + " |",
          "|---:|---:|" + "---:|" * len(names)]
    for c in curve:
        cells = [f"{c[f'rewards/{k}/mean']:.3f}" if isinstance(c.get(f"rewards/{k}/mean"), float) else "—" for k in names]
        L.append(f"| {c['step']} | {c['reward']:.3f} | " + " | ".join(cells) + " |")
    for label in ("before", "after"):
        for s in (summary.get(label) or {}).get("samples", [])[:2]:
            L += ["", f"**{label}, case {s['id']}:**", ""]
            L += [f"- {t['role']}: {t['content'][:200]}" for t in s["conversation"]]
    L += ["", "Machine-generated consultations; no substitute for a physician."]
    return "\n".join(L) + "\n"


def recipe_dict(recipe: GRPORecipe) -> dict[str, Any]:
    return recipe.model_dump(mode="json")
