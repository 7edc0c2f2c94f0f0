"""Quantized inference: weight memory and perplexity of each bitsandbytes variant against the
unquantized model, on held-out consultations.

    .venv/bin/python benchmarks/quantize.py                       # tiny model, CPU: fp32 vs int8
    .venv/bin/python benchmarks/quantize.py --model hf:Flmc/DISC-MedLLM --variants int8,int4   # GPU

Perplexity is taken on the doctor's turns only (the tokens the model is trained to produce),
through the model's own chat format, on DISC-Med-SFT records the model never saw
(../shared/data/disc-medllm/train/test_examples.jsonl). The peer is the unquantized model; the
goal: int8 keeps perplexity within 5% of it while holding less weight memory. The last line
is the benchmark JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = (
    Path(os.environ.get("DISCMED_SHARED_DATA", ROOT.parent / "shared" / "data"))
    / "disc-medllm/train/test_examples.jsonl"
)


def perplexity(backend, conversations: list[list[dict]], max_length: int) -> tuple[float, int]:
    """exp(mean negative log-likelihood) over assistant tokens; returns (ppl, tokens scored)."""
    import torch

    nll, count = 0.0, 0
    model, tok, fmt = backend.model, backend.tokenizer, backend.format
    device = next(model.parameters()).device
    for messages in conversations:
        enc = fmt.encode(messages, tok, max_length=max_length)
        if enc is None:
            continue
        ids, mask = enc
        x = torch.tensor([ids], device=device)
        with torch.inference_mode():
            logits = model(input_ids=x).logits[0, :-1].float()
        target = x[0, 1:]
        keep = torch.tensor(mask[1:], device=device, dtype=torch.bool)
        lp = torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
        nll -= lp[keep].sum().item()
        count += int(keep.sum())
    return math.exp(nll / max(count, 1)), count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--variants", default="int8", help="comma list of int8,int4 (int4 needs a GPU)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--limit", type=int, default=80, help="consultations to score")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from discmed.backend import BackendError, load_backend
    from discmed.chat import iter_conversations

    convs = [c.messages for c in iter_conversations(args.data)][: args.limit]
    rows = []
    for variant in ["none", *[v for v in args.variants.split(",") if v]]:
        t0 = time.perf_counter()
        try:
            backend = load_backend(args.model, **({"quantize": variant} if variant != "none" else {}))
        except BackendError as e:
            print(f"{variant}: skipped: {e}", file=sys.stderr)
            continue
        mb = backend.model.get_memory_footprint() / 2**20
        ppl, n = perplexity(backend, convs, args.max_length)
        rows.append({"variant": variant, "weight_mb": round(mb, 3), "perplexity": round(ppl, 4), "tokens": n,
                     "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
        print(
            f"{variant:>5}: weights {mb:8.2f} MB   perplexity {ppl:9.4f} on {n} assistant tokens  ({rows[-1]['seconds']} s)"
        )
        del backend
    base = rows[0]
    q = next((r for r in rows if r["variant"] == "int8"), rows[-1])
    ratio = q["perplexity"] / base["perplexity"]
    met = q is not base and ratio <= 1.05 and q["weight_mb"] < base["weight_mb"]
    print(json.dumps({
        "benchmark": "quantize", "discmed": q["perplexity"], "peer": base["perplexity"], "unit": "perplexity",
        "ratio": round(ratio, 4), "goal": "int8 perplexity <= 1.05 x unquantized, with less weight memory", "met": met,
        "model": args.model, "consultations": len(convs), "variants": rows,
        "weight_ratio": round(q["weight_mb"] / base["weight_mb"], 4),
    }, ensure_ascii=False))  # fmt: skip


if __name__ == "__main__":
    main()
