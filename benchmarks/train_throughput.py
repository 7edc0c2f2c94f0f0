"""SFT throughput: discmed (packed, padding-free) against plain TRL (padded) and TRL's own packing.

    .venv/bin/python benchmarks/train_throughput.py [--threads 1] [--clock cpu|wall] [--max-length 1024]

The same tiny model, the same data (DISC's released records, ../shared/data/disc-medllm/train/
test_examples.jsonl, plus discmed's shipped corpus), the same token ids and labels (discmed's
`disc` format, so every run optimises the same targets), one epoch each, in one process:

- discmed: `run_sft` as a user runs it (BFD packing, padding-free, position ids per conversation);
- peer: TRL's SFTTrainer on the same tokenized data with padding and no packing;
- TRL packing: SFTTrainer with `packing=True, packing_strategy="bfd"` on the same data.

Figures: real target tokens per second (tokens that carry a label, pads and prompts excluded),
the pad fraction of the batches each run fed the model, and the loss per target token of each
trained model on the whole data set (the runs must reach equal loss for the speed to count).
Time is measured from train begin to train end, in process CPU seconds by default (one thread:
the work the run did, whatever its neighbours on a shared machine do) and in wall seconds.
Goal: ≥ 1.5× the padded peer's tokens/s at equal loss, and no slower than TRL's packing.
The last printed line is the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DISC = ROOT.parent / "shared/data/disc-medllm/train/test_examples.jsonl"
CORPUS = ROOT / "discmed/assets/corpus/dialogues.jsonl"


def loss_per_target_token(model_dir: Path, dataset, batch_size: int = 8) -> float:
    """Mean loss over every target token of `dataset` (unpacked rows), summed then divided once."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    collate = DataCollatorForLanguageModeling(pad_token_id=0)
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(dataset), batch_size):
            batch = collate([dataset[j] for j in range(i, min(i + batch_size, len(dataset)))])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            logp = logits[:, :-1].float().log_softmax(-1)
            mask = labels != -100
            picked = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
            total += float(-(picked * mask).sum())
            count += int(mask.sum())
    return total / count


def pad_fraction_of(trainer) -> float:
    """Share of pad positions in the batches the trainer's dataloader yields (one epoch)."""
    pads = tokens = 0
    for batch in trainer.get_train_dataloader():
        if "attention_mask" in batch:
            pads += int((batch["attention_mask"] == 0).sum())
        tokens += int(batch["input_ids"].numel())
    return pads / tokens if tokens else 0.0


def cpu_clock():
    """A callback timing training (on_train_begin → on_train_end) in wall and in process CPU seconds.

    On a shared machine the wall clock measures the neighbours as much as the code; with one
    thread, the process CPU time is the work the run itself did.
    """
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        wall = cpu = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self._w, self._c = time.perf_counter(), time.process_time()

        def on_train_end(self, args, state, control, **kwargs):
            self.wall = time.perf_counter() - self._w
            self.cpu = time.process_time() - self._c

    return Clock()


def trl_run(
    name: str, model_dir: str, tokenizer, dataset, out: Path, args: argparse.Namespace, packing: bool
) -> dict:
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(
        output_dir=str(out),
        num_train_epochs=1,
        per_device_train_batch_size=args.padded_batch if not packing else args.packed_batch,
        gradient_accumulation_steps=1,
        learning_rate=args.lr,
        lr_scheduler_type="cosine",
        warmup_steps=args.warmup,
        max_length=args.max_length,
        packing=packing,
        packing_strategy="bfd",
        bf16=False,
        use_cpu=True,
        save_strategy="no",
        logging_steps=5,
        report_to=[],
        seed=42,
        data_seed=42,
        disable_tqdm=True,
        dataset_num_proc=None,
    )
    import torch

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    clock = cpu_clock()
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[clock]
    )
    pad = pad_fraction_of(trainer)
    trainer.train()
    trainer.save_model(str(out))
    return {
        "name": name,
        "steps": trainer.state.global_step,
        "wall_s": clock.wall,
        "cpu_s": clock.cpu,
        "pad_fraction": pad,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--clock", choices=["cpu", "wall"], default="cpu", help="cpu: process CPU seconds (shared boxes)"
    )
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument(
        "--packed-batch", type=int, default=2, help="rows of max-length tokens per step (packed runs)"
    )
    p.add_argument("--padded-batch", type=int, default=8, help="conversations per step (padded run)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--model", default="tiny")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    from discmed.train.runtime import resolve_model
    from discmed.train.sft import encode_records, run_sft

    model_dir = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    files = [(DISC, 1.0), (CORPUS, 1.0)]
    dataset, stats = encode_records(files, "disc", tokenizer, args.max_length)
    target_tokens = stats["target_tokens"]
    print(
        f"data: {stats['samples']} conversations, {stats['tokens']} tokens, {target_tokens} target tokens "
        f"({stats['dropped_no_target']} dropped)",
        file=sys.stderr,
    )

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # discmed, as a user runs it
        started = time.perf_counter()
        clock = cpu_clock()
        summary = run_sft(
            dict(
                model=model_dir,
                format="disc",
                data=[str(DISC), str(CORPUS)],
                output_dir=str(tmp / "discmed"),
                max_length=args.max_length,
                batch_size=args.packed_batch,
                grad_accum=1,
                epochs=1,
                learning_rate=args.lr,
                warmup_steps=args.warmup,
                save_steps=10**6,
                logging_steps=5,
                resume=False,
            ),
            callbacks=[clock],
        )
        wall = time.perf_counter() - started
        results["discmed"] = {
            "name": "discmed",
            "steps": summary["steps"],
            "wall_s": clock.wall,
            "cpu_s": clock.cpu,
            "pad_fraction": 0.0,  # padding-free: rows are concatenated, nothing is padded
            "wall_s_with_data_prep": wall,
        }
        results["trl_padded"] = trl_run(
            "trl_padded", model_dir, tokenizer, dataset, tmp / "trl_padded", args, False
        )
        results["trl_packing"] = trl_run(
            "trl_packing", model_dir, tokenizer, dataset, tmp / "trl_packing", args, True
        )
        for name, r in results.items():
            r["target_tokens_per_s"] = target_tokens / r[args.clock + "_s"]
            r["target_tokens_per_wall_s"] = target_tokens / r["wall_s"]
            r["loss_per_target_token"] = loss_per_target_token(tmp / name, dataset)
            print(json.dumps(r), file=sys.stderr)

    d, peer, tp = results["discmed"], results["trl_padded"], results["trl_packing"]
    ratio = d["target_tokens_per_s"] / peer["target_tokens_per_s"]
    vs_packing = d["target_tokens_per_s"] / tp["target_tokens_per_s"]
    # "equal loss": within 3% of the padded peer's loss per target token after the same epoch
    equal_loss = (
        abs(d["loss_per_target_token"] - peer["loss_per_target_token"])
        <= 0.03 * peer["loss_per_target_token"]
    )
    for r in results.values():
        print(
            f"{r['name']:12s} {r['target_tokens_per_s']:9.0f} target tok/s  pad {r['pad_fraction']:.1%}  "
            f"steps {r['steps']:4d}  loss/token {r['loss_per_target_token']:.4f}"
        )
    print(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "discmed": round(d["target_tokens_per_s"], 1),
                "peer": round(peer["target_tokens_per_s"], 1),
                "unit": f"target tokens per {args.clock} second",
                "ratio": round(ratio, 3),
                "goal": ">= 1.5x plain TRL (padded) at equal loss; >= 1.0x TRL packing",
                "met": bool(ratio >= 1.5 and equal_loss and vs_packing >= 0.95),
                "trl_packing": round(tp["target_tokens_per_s"], 1),
                "ratio_vs_trl_packing": round(vs_packing, 3),
                "pad_fraction": {k: round(r["pad_fraction"], 4) for k, r in results.items()},
                "loss_per_target_token": {
                    k: round(r["loss_per_target_token"], 4) for k, r in results.items()
                },
                "steps": {k: r["steps"] for k, r in results.items()},
                "target_tokens": target_tokens,
                "wall_tokens_per_s": {k: round(r["target_tokens_per_wall_s"], 1) for k, r in results.items()},
                "clock": args.clock,
                "threads": args.threads,
                "max_length": args.max_length,
            }
        )
    )


if __name__ == "__main__":
    main()
