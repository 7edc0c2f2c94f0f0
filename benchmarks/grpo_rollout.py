"""GRPO rollout throughput: a group of G consultation episodes generated as one batch vs one at a time.

Goal (issue 17): episodes per second for a group of G = 8 episodes of one case, the doctor's
turns sampled from the policy together (`discmed.rl.env.Consultations` through the engine,
`policy_sampler`), at least 3x the same episodes run one by one; issue 25 raised it to 4x
("batched rollouts stay >= 4x one at a time"), the goal printed here. The patient is the tiny model
in-process (hf backend, its calls of one turn batched by the job engine), no call cache, the
same seeds: the only difference is batching. With `--turns 1` the patient is not involved.

    .venv/bin/python benchmarks/grpo_rollout.py [--group 8] [--turns 2] [--tokens 48] [--model tiny]

The last printed line is the JSON result.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get("DISCMED_SHARED_DATA", ROOT.parent / "shared" / "data")) / "disc-medllm" / "eval" / "samples"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--turns", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=48, help="doctor tokens per turn")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from discmed.backend import GenParams, load_backend
    from discmed.eval.consult import load_cases
    from discmed.formats import get_format
    from discmed.rl.env import Consultations, policy_sampler
    from discmed.train.runtime import resolve_model

    path = resolve_model(args.model)
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    patient = load_backend(args.model if args.model != "tiny" else "tiny") if args.turns > 1 else None
    env = Consultations(tok, get_format("disc"), patient=patient, patient_spec=args.model, turns=args.turns,
                        max_new_tokens=args.tokens, max_completion_length=args.turns * (args.tokens + 64),
                        patient_params=GenParams(max_new_tokens=32), cache="none")
    case = load_cases("cmb-clin", SAMPLES)[0]

    with policy_sampler(model, tok, env.stop_ids, max_batch=args.group) as generate:
        def timed(batched: bool) -> tuple[float, int, int]:
            torch.manual_seed(0)
            t0 = time.perf_counter()
            episodes = env.run([case] * args.group, generate) if batched else \
                [e for _ in range(args.group) for e in env.run([case], generate)]
            wall = time.perf_counter() - t0
            tokens = sum(sum(e.env_mask) for e in episodes)
            return wall, tokens, sum(sum(t["role"] == "doctor" for t in e.conversation) for e in episodes)

        timed(True)  # warm-up: first-call allocations
        figures = {}
        for batched in (False, True):
            runs = [timed(batched) for _ in range(args.repeats)]
            wall = min(r[0] for r in runs)
            figures[batched] = {"wall_s": round(wall, 3), "episodes_per_s": round(args.group / wall, 3),
                                "doctor_tokens_per_s": round(runs[0][1] / wall, 1), "doctor_turns": runs[0][2]}
            print(f"{'batched' if batched else 'one at a time'}: {args.group} episodes in {wall:.2f} s = "
                  f"{args.group / wall:.2f} episodes/s, {runs[0][1] / wall:.0f} doctor tokens/s ({runs[0][2]} doctor turns)")
    ratio = round(figures[True]["episodes_per_s"] / figures[False]["episodes_per_s"], 2)
    print(json.dumps({"benchmark": "grpo_rollout", "discmed": figures[True]["episodes_per_s"],
                      "peer": figures[False]["episodes_per_s"], "unit": "episodes/s", "ratio": ratio, "goal": 4.0,
                      "met": ratio >= 4.0, "peer_is": "the same episodes one at a time", "group": args.group,
                      "turns": args.turns, "doctor_tokens": args.tokens, "device": device, "model": args.model,
                      "figures": {"batched": figures[True], "serial": figures[False]},
                      "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
