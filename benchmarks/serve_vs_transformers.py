"""`discmed serve` against `transformers serve --continuous-batching`, and against the bare
batched forward passes, on the tiny model.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_vs_transformers.py [--clients 1,8,32,64]

Both servers get the same requests (the same chat prompts, rendered by the tokenizer's chat
template on both sides (`--format auto`), greedy, exactly `--tokens` tokens
each: `ignore_eos` for discmed, `min_new_tokens` through transformers' `generation_config`
field), from the same client: aiohttp reading the SSE stream (as vLLM's benchmark_serving),
`--per-client` requests one after another per client. Rows alternate discmed / transformers so that load from the
rest of the machine falls on both alike. Measured: completion tokens/s, TTFT p50/p95.

The limit: the same tokens as bare batched forward passes in this process (each row's
requests as left-padded batches of `clients` rows: one prefill, then `tokens - 1` decode
steps with the KV cache, argmax (the engine's `greedy_pick`), nothing else). The engine's overhead (HTTP, scheduling,
sampling, detokenizing, streaming) is discmed's time over that time, minus 1.

Goals: tokens/s >= 2x transformers' at 32 and 64 clients, TTFT p95 <= 0.75x its, overhead
<= 15%. Both servers run with one torch thread (the machine has 2 cores and is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from serve_throughput import QUESTIONS, pct  # noqa: E402


async def load(url: str, model: str, clients: int, per_client: int, tokens: int, extra: dict) -> dict:
    """`clients` concurrent clients, each sending `per_client` streaming requests one after
    another. The load generator is aiohttp, as in vLLM's benchmark_serving: with httpx, one
    Python process reading ~5,000 SSE lines/s was itself the bottleneck at 64 clients (the
    TTFT tail moved to the client: measured from two client processes instead of one, the
    64-client p95 fell from 488 to 159 ms against the same server)."""
    import aiohttp

    ttfts, counts = [], []
    failed: list[str] = []
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as http:

        async def one(i: int) -> None:
            body = {"model": model, "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
                    "max_tokens": tokens, "temperature": 0, "stream": True,
                    "stream_options": {"include_usage": True}, **extra}  # fmt: skip
            t0 = time.perf_counter()
            first, n = None, None
            async with http.post(url + "/chat/completions", json=body) as r:
                if r.status != 200:
                    raise SystemExit(f"{url} answered {r.status}: {(await r.read())[:300]}")
                async for raw in r.content:
                    if not raw.startswith(b"data: {"):
                        continue
                    event = json.loads(raw[6:])
                    if first is None and any((c.get("delta") or {}).get("content") for c in event.get("choices") or []):
                        first = time.perf_counter()
                    if event.get("usage"):
                        n = event["usage"]["completion_tokens"]
            ttfts.append((first or time.perf_counter()) - t0)
            counts.append(n)

        async def client(c: int) -> None:
            for k in range(per_client):
                try:
                    await one(c * per_client + k)
                except aiohttp.ClientError as e:  # counted and shown: a server that drops connections under load
                    failed.append(type(e).__name__)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        wall = time.perf_counter() - t0
    if any(n != tokens for n in counts):
        raise SystemExit(f"{url}: not every request got exactly {tokens} tokens: {sorted(set(map(str, counts)))}")
    return {"tokens_per_s": round(sum(counts) / wall, 1), "ttft_p50_ms": round(pct(ttfts, 0.5) * 1e3, 1),
            "ttft_p95_ms": round(pct(ttfts, 0.95) * 1e3, 1), "requests": len(counts), "failed": len(failed),
            "wall_s": round(wall, 2)}  # fmt: skip


def bare(backend, clients: int, per_client: int, tokens: int) -> dict:
    """The same tokens as bare batched forward passes: prefill, then decode steps, argmax."""
    import torch

    from discmed.backend import GenParams
    from discmed.compat import cache_kwargs, output_cache
    from discmed.engine.sampler import greedy_pick

    # The engine's own argmax (NumPy on CPU: ~12x faster than torch's), so that the overhead
    # measured is the engine's work, not a slower pick here.
    pick = lambda logits: torch.tensor(greedy_pick(logits)[0]).unsqueeze(-1)  # noqa: E731
    params = GenParams(max_new_tokens=tokens)
    prompts = [backend.prompt_ids([{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}], params)
               for i in range(clients * per_client)]  # fmt: skip
    model = backend.model
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(prompts), clients):
            rows = prompts[start : start + clients]
            width = max(map(len, rows))
            ids = torch.tensor([[backend.tokenizer.pad_token_id] * (width - len(r)) + r for r in rows])
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
            nxt, cache, pos = pick(out.logits[:, -1]), output_cache(out), pos[:, -1:] + 1
            for _ in range(tokens - 1):
                mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
                out = model(input_ids=nxt, attention_mask=mask, position_ids=pos, **cache_kwargs(model, cache),
                            use_cache=True)  # fmt: skip
                nxt, cache, pos = pick(out.logits[:, -1]), output_cache(out), pos + 1
    wall = time.perf_counter() - t0
    return {"tokens_per_s": round(len(prompts) * tokens / wall, 1), "wall_s": round(wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", default="1,8,32,64")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--per-client", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1, help="runs per level; the ratios reported are the medians")
    ap.add_argument("--in-process", action="store_true", help="discmed's engine in the server's own process "
                    "(--no-engine-process) instead of a process of its own (the default)")  # fmt: skip
    args = ap.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    import torch

    from discmed.backend import load_backend
    from discmed.cpu import freeze_heap
    from discmed.process import free_port, running, served
    from discmed.tiny import ensure_tiny

    torch.set_num_threads(args.threads)
    tiny = ensure_tiny()
    work = Path(tempfile.mkdtemp(prefix="serve-vs-tf-"))
    p_ours, p_tf = free_port(), free_port()
    threads = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    stack = contextlib.ExitStack()
    stack.enter_context(served("tiny", work / "discmed.log", safety=False, port=p_ours, env=threads,
                               args=["--max-batch", "64", "--format", "auto"]
                               + (["--no-engine-process"] if args.in_process else [])))  # fmt: skip
    tf_bin = Path(sys.executable).with_name("transformers")
    stack.enter_context(running([str(tf_bin), "serve", str(tiny), "--continuous-batching", "--device", "cpu",
                                 "--dtype", "float32", "--host", "127.0.0.1", "--port", str(p_tf)],
                                f"http://127.0.0.1:{p_tf}/health", work / "transformers.log", env=threads))  # fmt: skip
    backend = load_backend("tiny", format="auto")  # the tokenizer's chat template, as transformers serve uses
    # This process is the client of both servers and holds a model for the bare passes: its heap
    # is frozen, as the server's is, so that a full collection (~300 ms with torch loaded) does
    # not land in either server's measured TTFT.
    freeze_heap()
    n = args.tokens
    # eos_token_id -1: transformers' continuous batching then never stops early (its way of
    # ignore_eos); no repetition penalty on either side: the same plain greedy work.
    tf_extra = {"generation_config": json.dumps({"max_new_tokens": n, "do_sample": False, "eos_token_id": -1,
                                                 "pad_token_id": backend.tokenizer.pad_token_id})}  # fmt: skip
    ours_extra = {"ignore_eos": True, "repetition_penalty": 1.0}
    try:
        asyncio.run(load(f"http://127.0.0.1:{p_ours}/v1", "tiny", 2, 1, n, ours_extra))  # warm-up
        asyncio.run(load(f"http://127.0.0.1:{p_tf}/v1", str(tiny), 2, 1, n, tf_extra))
        runs: dict[int, list[dict]] = {c: [] for c in levels}
        for c, _ in ((c, k) for c in levels for k in range(args.repeat)):
            d = asyncio.run(load(f"http://127.0.0.1:{p_ours}/v1", "tiny", c, args.per_client, n, ours_extra))
            t = asyncio.run(load(f"http://127.0.0.1:{p_tf}/v1", str(tiny), c, args.per_client, n, tf_extra))
            b = bare(backend, c, args.per_client, n)
            runs[c].append({"discmed": d, "transformers": t, "bare": b})
            print(f"{c:>3} clients  discmed {d['tokens_per_s']:>7} tok/s TTFT p50 {d['ttft_p50_ms']:>7} p95 {d['ttft_p95_ms']:>7} ms | "
                  f"transformers {t['tokens_per_s']:>7} tok/s TTFT p50 {t['ttft_p50_ms']:>7} p95 {t['ttft_p95_ms']:>7} ms | "
                  f"bare forward {b['tokens_per_s']:>7} tok/s"
                  + "".join(f" | {who} FAILED {r['failed']} requests" for who, r in (("discmed", d), ("transformers", t)) if r["failed"]),
                  flush=True)  # fmt: skip
    finally:
        stack.close()
    from statistics import median

    goal_levels = [c for c in levels if c >= 32] or levels[-1:]
    # Each ratio is taken within one repeat (the two servers and the bare passes back to back),
    # then the median over the repeats: the 64-client tail moves by 2x between runs.
    speed = {c: median(r["discmed"]["tokens_per_s"] / r["transformers"]["tokens_per_s"] for r in runs[c]) for c in levels}
    ttft = {c: median(r["discmed"]["ttft_p95_ms"] / r["transformers"]["ttft_p95_ms"] for r in runs[c]) for c in levels}
    overhead = {c: median(r["bare"]["tokens_per_s"] / r["discmed"]["tokens_per_s"] - 1 for r in runs[c]) for c in levels}
    rows = {c: runs[c][0] if args.repeat == 1 else runs[c] for c in levels}
    first = {c: runs[c][0] for c in levels}
    worst = min(goal_levels, key=lambda c: speed[c])
    met = all(speed[c] >= 2 and ttft[c] <= 0.75 and overhead[c] <= 0.15 and not any(r["discmed"]["failed"] for r in runs[c])
              for c in goal_levels)  # fmt: skip
    of = f" (medians of {args.repeat})" if args.repeat > 1 else ""
    for c in levels:
        print(f"{c:>3} clients{of}: "
              f"throughput {speed[c]:.2f}x transformers, TTFT p95 {ttft[c]:.2f}x, "
              f"overhead over bare forward {overhead[c] * 100:.0f}%")  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; logs in {work}")
    print(json.dumps({
        "benchmark": "serve_vs_transformers", "discmed": first[worst]["discmed"]["tokens_per_s"],
        "peer": first[worst]["transformers"]["tokens_per_s"], "unit": f"tok/s at {worst} clients (first run)",
        "ratio": round(speed[worst], 2), "goal": ">= 2x tok/s and <= 0.75x TTFT p95 at 32 and 64 clients; overhead <= 15%",
        "met": met, "throughput_ratio": {c: round(v, 2) for c, v in speed.items()},
        "ttft_p95_ratio": {c: round(v, 2) for c, v in ttft.items()},
        "overhead_over_bare": {c: round(v, 3) for c, v in overhead.items()}, "rows": rows,
        "tokens_per_request": n, "per_client": args.per_client, "threads": args.threads, "repeat": args.repeat,
        "engine_process": not args.in_process,
        "peer_is": "transformers serve --continuous-batching", "load_avg_1m": round(os.getloadavg()[0], 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
