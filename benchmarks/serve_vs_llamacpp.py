"""llama.cpp behind discmed's front, and discmed's own engine, against llama-server itself.

    .venv/bin/python benchmarks/serve_vs_llamacpp.py                     # 1, 8, 64 clients; 48 tokens
    .venv/bin/python benchmarks/serve_vs_llamacpp.py --kv-cache f16      # both llama-servers at f16
    .venv/bin/python benchmarks/serve_vs_llamacpp.py --clients 1,8 --rounds 1   # quick look
    .venv/bin/python benchmarks/serve_vs_llamacpp.py --slots 8 --clients 64     # more clients than slots
    .venv/bin/python benchmarks/serve_vs_llamacpp.py --kv-cache f16 --pin       # compute and front on separate cores

The tiny model is exported once (`train export --gguf --quant f32`). Three servers, one thread
of compute each, run one after another on the same requests:

- `llama-server` on the GGUF (the peer), started with the very command line discmed starts
  it with (`engine.llamacpp.server_command`; checked against the front's child before
  measuring), sent the very /completion body discmed sends (`engine.llamacpp.payload`),
  prompts as token ids. So the two llama.cpp rows differ by discmed's front and nothing else;
- `discmed serve --model X.gguf`: that llama-server as discmed's engine, behind discmed's
  front (validation, safety layer off for the benchmark, metrics, request ids):
  `/v1/completions`, the same token ids as the prompt;
- `discmed serve --model tiny`: discmed's own engine on the same weights (safetensors).

`--kv-cache` is the llama.cpp KV cache type of both llama.cpp rows. Its default, auto, is
discmed's: f32 for an f32 GGUF (greedy parity with the safetensors), which on this model runs
llama-server at about half the speed of llama.cpp's own default, f16. Comparing discmed at f32
with a bare llama-server at f16 measures that choice, not the front: run both settings.

Every request is greedy and asks for exactly `--tokens` tokens (`ignore_eos`), streamed; each
client sends its requests one after another; clients read the SSE stream with httpx. The
figure per row is completion tokens/s over the row's wall time, the median of `--rounds`
rounds, the servers taking turns within a round so that load from elsewhere falls on all.

Goals (issue 26): through discmed's front >= 0.9x llama-server's tokens/s at 1, 8 and 64
clients; discmed's own engine >= 1.3x llama-server at 64 clients. The last line is the
benchmark JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from discmed.backends.enginechat import tokenizer_and_format  # noqa: E402
from discmed.contract import GenParams  # noqa: E402
from discmed.engine.llamacpp import KV_CACHE_TYPES, payload, server_command, tool, tools_dir  # noqa: E402
from discmed.engine.protocol import Request  # noqa: E402
from discmed.process import running  # noqa: E402
from discmed.tiny import ensure_tiny  # noqa: E402
from discmed.train.gguf import export_gguf  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from serve_throughput import QUESTIONS  # noqa: E402  (the same questions as the other serving benchmark)


def prompts(folder: Path) -> list[list[int]]:
    tok, fmt = tokenizer_and_format(str(folder), "disc", False)
    return [fmt.prompt([{"role": "user", "content": q}], tok, max_length=4096, reserve=0) for q in QUESTIONS]


async def drive(url: str, body_of, clients: int, per_client: int, tokens: int, count_of) -> tuple[int, float]:
    """`clients` concurrent streaming clients, `per_client` requests each: (tokens, seconds)."""
    http = httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients + 8))
    counts: list[int] = []

    async def one(i: int) -> None:
        # A kept-alive connection the server closed meanwhile (llama-server ends one after 100
        # requests or 5 idle seconds) fails before any answer: tried once more, as clients do.
        for attempt in (1, 2):
            try:
                return await request(i)
            except httpx.RemoteProtocolError as e:
                if attempt == 2 or "without sending a response" not in str(e):
                    raise SystemExit(f"{url}: request {i}: {type(e).__name__}: {e}") from None
            except httpx.HTTPError as e:
                raise SystemExit(f"{url}: request {i}: {type(e).__name__}: {e}") from None

    async def request(i: int) -> None:
        got, last = 0, []
        async with http.stream("POST", url, json=body_of(i)) as r:
            if r.status_code != 200:
                raise SystemExit(f"{url} answered {r.status_code}: {(await r.aread())[:300]!r}")
            async for line in r.aiter_lines():
                got = count_of(line, got)
                last = (last + [line])[-6:]
        if got != tokens:
            raise SystemExit(f"{url}: request {i} got {got} tokens, not {tokens}; its stream ended: {[x[:300] for x in last]}")
        counts.append(got)

    async def loop(c: int) -> None:
        for k in range(per_client):
            await one(c * per_client + k)

    t0 = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in range(clients)))
    wall = time.perf_counter() - t0
    await http.aclose()
    if any(n != tokens for n in counts):
        raise SystemExit(f"{url}: a request did not get exactly {tokens} tokens: {sorted(set(counts))}")
    return sum(counts), wall


# Greedy, every filter off, stated in full: the front fills nothing in from the model's defaults.
SAMPLING = {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}


def llama_body(ids: list[list[int]], tokens: int):
    """The body discmed's engine sends llama-server for the same request."""
    params = GenParams(max_new_tokens=tokens, **SAMPLING)
    return lambda i: payload(Request(ids[i % len(ids)], params, ignore_eos=True), stream=True)


def llama_count(line: str, got: int) -> int:
    if line.startswith("data: "):
        chunk = json.loads(line[6:])
        if chunk.get("stop"):
            return int(chunk["tokens_predicted"])
    return got


def discmed_body(ids: list[list[int]], tokens: int, model: str):
    return lambda i: {"model": model, "prompt": ids[i % len(ids)], "max_tokens": tokens, "ignore_eos": True,
                      "stream": True, "stream_options": {"include_usage": True}, **SAMPLING}  # fmt: skip


def discmed_count(line: str, got: int) -> int:
    if line.startswith("data: {") and '"usage"' in line:
        usage = json.loads(line[6:]).get("usage")
        if usage:
            return int(usage["completion_tokens"])
    return got


def same_server(peer_cmd: list[str], front_pid: int) -> None:
    """The front's llama-server child runs the peer's command line, but for its port."""
    children = [int(d) for d in os.listdir("/proc") if d.isdigit() and _ppid(int(d)) == front_pid]
    lines = [Path(f"/proc/{c}/cmdline").read_bytes().decode().split("\0")[:-1] for c in children]
    lines = [c for c in lines if c and c[0].endswith("llama-server")]
    port = lambda cmd: [x for i, x in enumerate(cmd) if i == 0 or cmd[i - 1] != "--port"]  # noqa: E731
    if len(lines) != 1 or port(lines[0]) != port(peer_cmd):
        raise SystemExit(f"the front's llama-server is not the peer's: {lines} vs {peer_cmd}")


def pin(pid: int, cpu: int) -> None:
    """Every thread of process `pid` onto one CPU (sched_setaffinity is per thread)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


def children(pid: int) -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit() and _ppid(int(d)) == pid]


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--requests", type=int, default=16, help="requests per row (at least one per client)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--slots", type=int, help="llama-server's --parallel for both llama.cpp rows (default: the most "
                    "clients); fewer slots than clients queue the rest: inside llama-server for the peer, in discmed's "
                    "front for discmed")
    ap.add_argument("--pin", action="store_true", help="compute on CPU 0 (both llama-servers, discmed's own engine), "
                    "everything else on CPU 1 (discmed's front, this client): the front's cost alone, not the CPU it "
                    "takes from llama-server")
    ap.add_argument("--kv-cache", choices=KV_CACHE_TYPES, default="auto",
                    help="KV cache type of both llama.cpp rows (auto: discmed's default, f32 for this f32 GGUF)")
    args = ap.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    slots = args.slots or max(levels)
    tools = tools_dir(build=True)
    work = Path(tempfile.mkdtemp(prefix="discmed-bench-llamacpp-"))
    gguf = Path(export_gguf(ensure_tiny(), work / "tiny-gguf", quant="f32", fmt="disc", dtype="fp32")["gguf"])
    ids = prompts(gguf.parent)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def port() -> int:
        from discmed.process import free_port

        return free_port()

    p1, p2, p3 = port(), port(), port()
    config = json.loads((gguf.parent / "config.json").read_text())
    peer_cmd = server_command(gguf, tool("llama-server", tools), p1, threads=1, parallel=slots,
                              ctx_per_slot=int(config.get("max_position_embeddings") or 4096), kv_cache=args.kv_cache)
    front_cmd = [sys.executable, "-m", "discmed", "serve", "--model", str(gguf), "--port", str(p2), "--threads", "1",
                 "--max-batch", str(slots), "--no-safety", "--served-model-name", "gguf",
                 "--kv-cache-type", args.kv_cache]  # fmt: skip
    own_cmd = [sys.executable, "-m", "discmed", "serve", "--model", "tiny", "--port", str(p3), "--max-batch",
               str(max(32, max(levels))), "--no-safety", "--served-model-name", "tiny", "--format", "disc"]  # fmt: skip
    results: dict[str, dict[int, list[float]]] = {"llama-server": {}, "discmed+llama.cpp": {}, "discmed engine": {}}
    with running(peer_cmd, f"http://127.0.0.1:{p1}/health", work / "peer.log", env=env), \
         running(front_cmd, f"http://127.0.0.1:{p2}/health", work / "front.log", env=env, cwd=str(ROOT)) as front_proc, \
         running(own_cmd, f"http://127.0.0.1:{p3}/health", work / "own.log", env=env, cwd=str(ROOT)) as own_proc:  # fmt: skip
        same_server(peer_cmd, front_proc.pid)
        if args.pin:
            if (os.cpu_count() or 1) < 2:
                raise SystemExit("--pin needs two CPUs")
            peer_pid = next(c for c in children(os.getpid()) if c not in (front_proc.pid, own_proc.pid))
            for pid in (peer_pid, *children(front_proc.pid), own_proc.pid):
                pin(pid, 0)
            for pid in (front_proc.pid, os.getpid()):
                pin(pid, 1)
        servers = {
            "llama-server": (f"http://127.0.0.1:{p1}/completion", llama_body(ids, args.tokens), llama_count),
            "discmed+llama.cpp": (f"http://127.0.0.1:{p2}/v1/completions", discmed_body(ids, args.tokens, "gguf"),
                                  discmed_count),
            "discmed engine": (f"http://127.0.0.1:{p3}/v1/completions", discmed_body(ids, args.tokens, "tiny"),
                               discmed_count),
        }  # fmt: skip
        for url, body, count in servers.values():  # warm-up
            asyncio.run(drive(url, body, 2, 1, args.tokens, count))
        for c in levels:
            per_client = max(1, args.requests // c) if c < args.requests else 1
            for _ in range(args.rounds):
                for who, (url, body, count) in servers.items():
                    n, wall = asyncio.run(drive(url, body, c, per_client, args.tokens, count))
                    results[who].setdefault(c, []).append(n / wall)
    med = {who: {c: round(statistics.median(v), 1) for c, v in rows.items()} for who, rows in results.items()}
    load = os.getloadavg()[0]
    print(f"{args.tokens} tokens per request, 1 thread each, KV cache {args.kv_cache}, {slots} llama.cpp slots, "
          f"medians of {args.rounds}, load {load:.2f}" + (", compute on CPU 0, front and client on CPU 1" if args.pin else ""))
    print(f"{'clients':>7} {'llama-server':>13} {'discmed+llama.cpp':>18} {'ratio':>6} {'discmed engine':>15} {'ratio':>6}")
    front_ok, own_ok = True, True
    for c in levels:
        peer, front, own = med["llama-server"][c], med["discmed+llama.cpp"][c], med["discmed engine"][c]
        print(f"{c:>7} {peer:>13} {front:>18} {front / peer:>6.2f} {own:>15} {own / peer:>6.2f}")
        front_ok &= front / peer >= 0.9
    top = max(levels)
    own_ratio = med["discmed engine"][top] / med["llama-server"][top]
    own_ok = own_ratio >= 1.3 if top >= 64 else None
    worst = min(med["discmed+llama.cpp"][c] / med["llama-server"][c] for c in levels)
    print(json.dumps({
        "benchmark": "serve_vs_llamacpp", "discmed": min(med["discmed+llama.cpp"].values()),
        "peer": min(med["llama-server"].values()), "unit": "completion tokens/s (worst row)",
        "ratio": round(worst, 3), "goal": "front >= 0.9x llama-server at 1, 8, 64 clients; own engine >= 1.3x at 64",
        "met": bool(front_ok and own_ok), "own_engine_ratio_at_max": round(own_ratio, 3), "tokens_per_s": med,
        "load_1min": round(load, 2), "tokens": args.tokens, "rounds": args.rounds, "kv_cache": args.kv_cache,
        "slots": slots, "pinned": args.pin,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
