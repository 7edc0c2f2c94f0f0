"""Gym episodes per second: the rule-based patient (no model call) against the LLM patient, and
each batched (episodes in flight at once) against one at a time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gym_rollout.py [--repeats 4] [--concurrency 16]

The doctor is the tiny model behind one `discmed serve` (its engine batches what arrives
together); with the LLM patient the same server plays the patient too. Every episode runs the
shipped ledgers to the doctor's conclusion or the turn budget, greedy, 32 tokens a doctor turn,
no call cache. Peer: the same run one episode at a time. Goal: batched ≥ 4× one at a time.
Each run also reports the server's prompt and generated tokens (from `/metrics`), the model calls,
and the most calls any one episode makes in sequence: however wide the batch, a batched run lasts
at least as long as that chain.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import urllib.request
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()

    from discmed.gym import SHIPPED
    from discmed.gym.ledger import read_ledgers
    from discmed.gym.run import run_gym
    from discmed.process import served

    def engine_tokens(url: str) -> dict[str, float]:
        """The server's running totals of prompt tokens prefilled and tokens generated."""
        text = urllib.request.urlopen(url.removesuffix("/v1") + "/metrics", timeout=30).read().decode()
        return {k: next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"discmed_{k}_tokens_total"))
                for k in ("prompt", "generation")}

    ledgers = read_ledgers(SHIPPED)
    n = len(ledgers) * args.repeats
    rows, work = {}, {}
    with tempfile.TemporaryDirectory() as tmp, served("tiny", Path(tmp) / "serve.log", safety=False, name="tiny") as url:
        spec = f"openai:{url}@tiny"
        for patient in ("rule", spec):
            label = "rule" if patient == "rule" else "llm"
            for conc in (1, args.concurrency):
                out = Path(tmp) / f"{label}-{conc}"
                before = engine_tokens(url)
                t0 = time.perf_counter()
                s = run_gym(ledgers, [spec], patient, out, repeats=args.repeats, concurrency=conc,
                            max_new_tokens=32, cache="none", progress=False)
                wall = time.perf_counter() - t0
                assert s["episodes"] == n and not s["failed"], s
                rows[(label, conc)] = n / wall
                after = engine_tokens(url)
                eps = [json.loads(line) for line in (out / "episodes.jsonl").read_text(encoding="utf-8").splitlines()]
                # Model calls an episode makes one after another: each doctor turn, and for the LLM patient each
                # answered turn's attempts (a refused reply is generated again, up to the patient's tries).
                calls = [len(e["turns"]) + (0 if label == "rule" else len(e["turns"]) - 1 + e["rejections"] - e["fallbacks"])
                         for e in eps]
                work[(label, conc)] = {
                    "doctor_turns": sum(len(e["turns"]) for e in eps), "patient_rejections": sum(e["rejections"] for e in eps),
                    "calls": sum(calls), "longest_chain": max(calls),
                    **{f"{k}_tokens": int(after[k] - before[k]) for k in after}}
                print(f"patient {label:4s} concurrency {conc:2d}: {n} episodes in {wall:6.1f} s = {n / wall:6.2f} episodes/s "
                      f"({json.dumps(work[(label, conc)])})")
    ratios = {p: rows[(p, args.concurrency)] / rows[(p, 1)] for p in ("rule", "llm")}
    # However wide the batch, a batched run lasts at least as long as its longest episode's calls in
    # sequence: with calls of equal cost, total calls / longest chain bounds the speed-up.
    for p in ("rule", "llm"):
        w = work[(p, args.concurrency)]
        print(f"patient {p}: {w['calls']} model calls, the longest episode {w['longest_chain']} in sequence: "
              f"batching can gain at most {w['calls'] / w['longest_chain']:.1f}x with calls of equal cost")
    print(f"batched / one at a time: rule {ratios['rule']:.2f}x, llm {ratios['llm']:.2f}x; "
          f"rule patient / llm patient at {args.concurrency}: {rows[('rule', args.concurrency)] / rows[('llm', args.concurrency)]:.2f}x")
    print(json.dumps({"benchmark": "gym_rollout", "discmed": round(rows[("rule", args.concurrency)], 3),
                      "peer": round(rows[("rule", 1)], 3), "unit": "episodes/s (rule patient, batched vs one at a time)",
                      "ratio": round(ratios["rule"], 3), "goal": 4.0, "met": min(ratios.values()) >= 4.0,
                      "llm_patient": {"batched": round(rows[("llm", args.concurrency)], 3),
                                      "one_at_a_time": round(rows[("llm", 1)], 3), "ratio": round(ratios["llm"], 3)},
                      "work": {f"{p}-{c}": w for (p, c), w in work.items()},
                      "episodes": n, "concurrency": args.concurrency, "cpu_count": os.cpu_count(),
                      "load_avg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
