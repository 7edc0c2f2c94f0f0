"""Serving throughput: `discmed serve` (dynamic batching) under 1, 8 and 32 concurrent streaming
clients, against the same requests run directly on the backend in one process.

    .venv/bin/python benchmarks/serve_throughput.py                  # tiny model, CPU, 64 tokens each
    .venv/bin/python benchmarks/serve_throughput.py --tokens 32 --threads 1

Every request asks for exactly `--tokens` tokens (greedy, `ignore_eos`), so the work is fixed.
Clients are the official `openai` AsyncOpenAI client, streaming; each client sends its
requests one after another. Measured: aggregate completion tokens/s and p50/p95 time to first
token. The peer is transformers' `generate` on the backend's own model and prompts, in this
process, with no HTTP: one request at a time for the 1-client row, all of a row's requests as
one left-padded batch for the others.

Goals: at 1 client the server adds <= 10% to a request's latency; at 8 clients the server's
aggregate throughput is >= 3x its 1-client figure. The last line is the benchmark JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "我最近总是头痛，尤其是下午，需要做什么检查？",
    "孩子咳嗽一周了，晚上咳得厉害，要不要去医院？",
    "血压有点高，平时饮食要注意什么？",
    "吃完饭胃胀，偶尔反酸，是胃炎吗？",
    "膝盖上下楼梯疼，是不是关节炎？",
    "最近失眠，入睡困难，有什么办法？",
    "体检发现血脂偏高，需要吃药吗？",
    "脸上长痘很久了，用什么药比较好？",
]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def messages_for(i: int) -> list[dict]:
    return [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]


# -- the peer: the backend's model, in process ---------------------------------------------------


class FirstToken:
    """A transformers streamer that notes when the first generated token arrives."""

    def __init__(self):
        self.prompt_seen, self.at = False, 0.0

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
        elif not self.at:
            self.at = time.perf_counter()

    def end(self) -> None:
        pass


def direct(backend, n_requests: int, tokens: int, batch: int) -> dict:
    """`n_requests` requests through transformers generate, `batch` at a time."""
    import torch

    from discmed.backend import GenParams

    params = GenParams(max_new_tokens=tokens, temperature=0.0)
    prompts = [backend.prompt_ids(messages_for(i), params) for i in range(n_requests)]
    ttfts, latencies, total = [], [], 0
    t_all = time.perf_counter()
    for start in range(0, n_requests, batch):
        chunk = prompts[start : start + batch]
        ids, mask = backend._left_pad(chunk)
        timer = FirstToken()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = backend.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                repetition_penalty=None, pad_token_id=backend.tokenizer.pad_token_id, streamer=timer,
            )  # fmt: skip
        t1 = time.perf_counter()
        total += (out.shape[1] - ids.shape[1]) * len(chunk)
        ttfts += [timer.at - t0] * len(chunk)
        latencies += [t1 - t0] * len(chunk)
    wall = time.perf_counter() - t_all
    return summary(total, wall, ttfts, latencies)


def summary(tokens: int, wall: float, ttfts: list[float], latencies: list[float]) -> dict:
    return {
        "_raw": (tokens, wall, ttfts, latencies),
        "tokens_per_s": round(tokens / wall, 1),
        "ttft_p50_ms": round(pct(ttfts, 0.5) * 1000, 1),
        "ttft_p95_ms": round(pct(ttfts, 0.95) * 1000, 1),
        "latency_p50_ms": round(pct(latencies, 0.5) * 1000, 1),
        "latency_mean_ms": round(statistics.mean(latencies) * 1000, 1),
        "requests": len(latencies),
        "tokens": tokens,
        "wall_s": round(wall, 2),
    }


def merge(rows: list[dict]) -> dict:
    tokens = sum(r["_raw"][0] for r in rows)
    wall = sum(r["_raw"][1] for r in rows)
    return summary(
        tokens, wall, [t for r in rows for t in r["_raw"][2]], [t for r in rows for t in r["_raw"][3]]
    )


def public(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "_raw"}


# -- discmed serve ------------------------------------------------------------------------------


async def through_server(
    base_url: str, clients: int, per_client: int, tokens: int, raw: bool = False
) -> dict:
    """`clients` concurrent streaming clients, `per_client` requests each. `raw` reads the
    stream with plain httpx instead of the openai SDK (to tell client cost from server cost)."""
    import httpx
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=600)
    http = httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=256))
    ttfts, latencies, counts = [], [], []
    extra = {"ignore_eos": True, "safety": False, "repetition_penalty": 1.0}

    async def one(i: int) -> None:
        t0 = time.perf_counter()
        first = None
        if raw:
            body = {"model": "tiny", "messages": messages_for(i), "max_tokens": tokens, "temperature": 0,
                    "stream": True, "stream_options": {"include_usage": True}, **extra}  # fmt: skip
            async with http.stream("POST", base_url + "/chat/completions", json=body) as r:
                async for line in r.aiter_lines():
                    if first is None and '"content":"' in line and '"content":""' not in line:
                        first = time.perf_counter()
                    if '"usage"' in line:
                        counts.append(json.loads(line[6:])["usage"]["completion_tokens"])
        else:
            stream = await client.chat.completions.create(
                model="tiny", messages=messages_for(i), max_tokens=tokens, temperature=0, stream=True,
                stream_options={"include_usage": True}, extra_body=extra,
            )  # fmt: skip
            async for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter()
                if chunk.usage:
                    counts.append(chunk.usage.completion_tokens)
        t1 = time.perf_counter()
        ttfts.append((first or t1) - t0)
        latencies.append(t1 - t0)

    async def client_loop(c: int) -> None:
        for r in range(per_client):
            await one(c * per_client + r)

    t_all = time.perf_counter()
    await asyncio.gather(*(client_loop(c) for c in range(clients)))
    wall = time.perf_counter() - t_all
    await client.close()
    await http.aclose()
    if len(counts) != clients * per_client or any(n != tokens for n in counts):
        raise SystemExit(f"a request did not get exactly {tokens} tokens: {counts}")
    return summary(sum(counts), wall, ttfts, latencies)


def start_server(threads: int) -> tuple[subprocess.Popen, str]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen([sys.executable, "-m", "discmed.cli", "serve", "--model", "tiny", "--port", str(port)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    deadline = time.time() + 180
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc, f"http://127.0.0.1:{port}/v1"
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise SystemExit("server did not start: " + Path(log.name).read_text()[-2000:])
        time.sleep(0.3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=64, help="completion tokens per request")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument(
        "--requests", type=int, default=16, help="requests per row at 1 and 8 clients (32 clients: 32)"
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads, for the server and the peer alike")
    ap.add_argument("--client", choices=["openai", "httpx"], default="openai",
                    help="openai: the official SDK (the goal run); httpx: plain SSE reading, to see the SDK's cost")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=3, help="alternating peer/server rounds per row")
    args = ap.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    plan = {c: max(c, args.requests) // c for c in levels}  # requests per client

    import torch

    torch.set_num_threads(args.threads)
    from discmed.backend import load_backend

    backend = load_backend("tiny")
    backend.model.generation_config.repetition_penalty = None  # the same greedy work as the server's
    proc, url = start_server(args.threads)
    try:
        direct(backend, 2, 4, 1)  # warm-up, both sides
        asyncio.run(through_server(url, 1, 2, 4))
        # Rounds alternate between the peer and the server so that load from anything else on
        # the machine falls on both alike.
        peer, ours = {}, {}
        for c in levels:
            p_rows, s_rows = [], []
            for _ in range(args.rounds):
                p_rows.append(direct(backend, c * plan[c], args.tokens, c))
                s_rows.append(
                    asyncio.run(through_server(url, c, plan[c], args.tokens, args.client == "httpx"))
                )
            peer[c], ours[c] = merge(p_rows), merge(s_rows)
    finally:
        proc.terminate()
        proc.wait(10)

    print(f"{args.tokens} tokens per request, torch threads {args.threads}, cpu count {os.cpu_count()}")
    print(f"{'clients':>7} {'':>7} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p95':>9} {'latency p50':>12}")
    for c in levels:
        for who, row in (("serve", ours[c]), ("direct", peer[c])):
            print(f"{c:>7} {who:>7} {row['tokens_per_s']:>8} {row['ttft_p50_ms']:>7}ms {row['ttft_p95_ms']:>7}ms "
                  f"{row['latency_p50_ms']:>10}ms")  # fmt: skip
    one, eight = ours[levels[0]], ours.get(8, ours[levels[-1]])
    overhead = one["latency_mean_ms"] / peer[levels[0]]["latency_mean_ms"]
    scaling = eight["tokens_per_s"] / one["tokens_per_s"]
    print(json.dumps({
        "benchmark": "serve_throughput", "discmed": one["latency_mean_ms"], "peer": peer[levels[0]]["latency_mean_ms"],
        "unit": "ms per request at 1 client", "ratio": round(overhead, 3), "goal": "<= 1.10 at 1 client; 8-client tok/s >= 3x 1-client",
        "met": overhead <= 1.10 and scaling >= 3.0, "scaling_8_vs_1": round(scaling, 2),
        "serve": {c: public(r) for c, r in ours.items()}, "direct": {c: public(r) for c, r in peer.items()},
        "tokens_per_request": args.tokens, "threads": args.threads, "client": args.client,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
