"""GRPO in the consultation gym teaches the tiny model to ask: held-out information recall and red
flags before advice, against the starting model and a learning-rate-0 baseline, over seeds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gym_grpo.py [--seeds 3] [--parallel 2] [--out runs/bench-gym-grpo]

The pipeline is the README's, as commands:

1. `discmed gym warmup` + `discmed train sft --config recipes/tiny-gym-warm.yaml`: the starting
   model, the tiny model supervised on random-doctor consultations of the *training* ledgers
   (discmed.gym.warmup: it learns the action space, not which action pays);
2. per seed, `discmed train grpo --config recipes/tiny-gym-grpo.yaml model=<start> seed=S` and
   the same at `learning_rate=0` (the same sampling and steps, nothing learned). Each run
   measures the held-out ledgers (the shipped eight, never trained on, never tuned on) before
   and after training with `eval_samples` sampled episodes per ledger: "before" is the
   starting model, sampled with that run's seed;
3. `discmed eval gym` (greedy) on the held-out ledgers: the raw tiny model, the starting model,
   the first seed's GRPO and lr-0 models, and the two scripted doctors.

Goal (issue 28 item 6): for held-out information recall and red flags before advice, the mean
of the GRPO runs exceeds the higher of the starting model's mean and the lr-0 runs' mean by
more than the baselines' spread (max − min over every baseline measurement: each run's
starting-model figure and each lr-0 run's). Runs go `--parallel` at a time (2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = "discmed/assets/gym/train_ledgers.jsonl"
HELD_OUT = "discmed/assets/gym/ledgers.jsonl"
MEASURES = ("info_recall", "red_flags_before_advice")


def discmed(*args: str) -> list[str]:
    return [sys.executable, "-m", "discmed", *args]


def run(cmd: list[str], log: Path) -> subprocess.Popen:
    print("$", " ".join(cmd[2:]), flush=True)
    return subprocess.Popen(cmd, cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def last_json(log: Path) -> dict:
    for line in reversed(log.read_text(encoding="utf-8").splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON summary in {log}")


def finish(procs: list[tuple[subprocess.Popen, Path]]) -> None:
    for p, log in procs:
        if p.wait():
            tail = log.read_text(encoding="utf-8")[-3000:]
            raise SystemExit(f"{' '.join(map(str, p.args[2:]))} failed (exit {p.returncode}):\n{tail}")


def stats(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 4), "min": round(min(values), 4), "max": round(max(values), 4),
            "values": [round(v, 4) for v in values]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=2, help="training runs at once")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-gym-grpo")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    # 1. The starting model: the action space, from the training ledgers only.
    warm_data, start = out / "warm.jsonl", out / "start"
    finish([(run(discmed("gym", "warmup", "--ledgers", TRAIN, "--out", str(warm_data)), out / "warmup.log"),
             out / "warmup.log")])
    finish([(run(discmed("train", "sft", "--config", "recipes/tiny-gym-warm.yaml", f"data={warm_data}",
                         f"output_dir={start}", "resume=false", "--json"), out / "sft.log"), out / "sft.log")])
    t_warm = time.perf_counter() - t0

    # 2. GRPO and learning-rate-0 runs from it, per seed.
    jobs = [(kind, seed) for seed in range(args.seeds) for kind in ("grpo", "lr0")]
    runs: dict[tuple[str, int], dict] = {}
    for i in range(0, len(jobs), args.parallel):
        procs = []
        for kind, seed in jobs[i:i + args.parallel]:
            name = f"{kind}-{seed}"
            extra = ["learning_rate=0"] if kind == "lr0" else []
            cmd = discmed("train", "grpo", "--config", "recipes/tiny-gym-grpo.yaml", f"model={start}", f"seed={seed}",
                          f"output_dir={out / name}", "resume=false", *extra, "--json")
            procs.append((run(cmd, out / f"{name}.log"), out / f"{name}.log"))
        finish(procs)
        for kind, seed in jobs[i:i + args.parallel]:
            runs[(kind, seed)] = last_json(out / f"{kind}-{seed}.log")
    t_train = time.perf_counter() - t0 - t_warm

    # 3. `discmed eval gym`, greedy, on the held-out ledgers.
    recipe = __import__("yaml").safe_load((ROOT / "recipes" / "tiny-gym-grpo.yaml").read_text(encoding="utf-8"))
    doctors = ["tiny", str(start), str(out / "grpo-0"), str(out / "lr0-0"), "scripted:ask-all", "scripted:advise-now"]
    cmd = discmed("eval", "gym", "--ledgers", HELD_OUT, "--out", str(out / "eval-gym"), "--max-new-tokens",
                  str(recipe["max_new_tokens"]), "--json", *[a for d in doctors for a in ("--doctor", d)])
    if recipe.get("doctor_system"):
        cmd += ["--system", recipe["doctor_system"]]
    finish([(run(cmd, out / "eval-gym.log"), out / "eval-gym.log")])
    report = (out / "eval-gym" / "report.md").read_text(encoding="utf-8")
    print(report)

    figures, met = {}, True
    for m in MEASURES:
        start_v = [r["before"][m] for r in runs.values()]
        lr0_v = [runs[("lr0", s)]["after"][m] for s in range(args.seeds)]
        grpo_v = [runs[("grpo", s)]["after"][m] for s in range(args.seeds)]
        spread = max(start_v + lr0_v) - min(start_v + lr0_v)
        best = max(statistics.mean(start_v), statistics.mean(lr0_v))
        gain = statistics.mean(grpo_v) - best
        figures[m] = {"start": stats(start_v), "lr0": stats(lr0_v), "grpo": stats(grpo_v),
                      "baseline_spread": round(spread, 4), "gain_over_best_baseline": round(gain, 4),
                      "met": gain > spread}
        met &= gain > spread
        print(f"{m}: start {statistics.mean(start_v):.3f} {start_v}, lr-0 {statistics.mean(lr0_v):.3f} {lr0_v}, "
              f"GRPO {statistics.mean(grpo_v):.3f} {grpo_v}; gain {gain:+.3f} vs spread {spread:.3f}")
    recall = figures["info_recall"]
    print(json.dumps({
        "benchmark": "gym_grpo", "discmed": recall["grpo"]["mean"], "peer": recall["lr0"]["mean"],
        "unit": "held-out information recall (GRPO vs learning rate 0; sampled, eval_samples per ledger)",
        "ratio": round(recall["grpo"]["mean"] / max(recall["lr0"]["mean"], 1e-9), 3),
        "goal": "GRPO's mean beats the better baseline by more than the baselines' spread, on recall and red flags",
        "met": met, "figures": figures, "seeds": args.seeds,
        "train_reward": {f"{k}-{s}": [r["reward_first_quarter"], r["reward_last_quarter"]] for (k, s), r in runs.items()},
        "eval_gym": str(out / "eval-gym" / "scores.json"), "warm_s": round(t_warm, 1), "train_s": round(t_train, 1),
        "wall_s": round(time.perf_counter() - t0, 1), "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
