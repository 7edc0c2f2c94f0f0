"""Job engine throughput: 2,000 rewrite-shaped jobs at concurrency 64 against an
OpenAI-compatible endpoint that answers every request after a fixed 200 ms.

    .venv/bin/python benchmarks/jobs_throughput.py            # the goal run (2000 jobs, c=64, 200 ms)
    .venv/bin/python benchmarks/jobs_throughput.py --serve 8123 --delay 0.05   # just the endpoint

The peer is the ideal: with every request taking exactly `delay`, `concurrency` requests in
flight at all times give concurrency/delay jobs per second (320/s). The engine's jobs/s over
that is the ratio; the goal is >= 0.9. The endpoint runs in its own process (aiohttp) so its
CPU does not share a GIL with the engine; its reply echoes the prompt so results can be
checked, and GET /stats tells how many requests each prompt received (tests use it to prove
that a restarted run redoes nothing).

The endpoint is also the project's fault-injecting teacher: a prompt that holds one of
the `FAULTS` markers gets that fault instead of an echo (an empty or cut-off 200 body, a
non-JSON page, a context-length 400, a 500, or an empty body the first time only), a request
for a model other than "echo" (or "other") gets a 404 as vLLM words it, and `/tokenize` counts one token
per character (plus 4 per message) against a `max_model_len` of 4096 listed in `/v1/models`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

FAULTS = ("FAULT:empty", "FAULT:cut", "FAULT:html", "FAULT:context", "FAULT:500", "FAULT:flaky")


def serve(port: int, delay: float) -> None:
    """An OpenAI-compatible /v1/chat/completions that sleeps `delay` then echoes the prompt."""
    import asyncio

    from aiohttp import web

    seen: Counter = Counter()

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        seen[prompt] += 1
        if body.get("model", "echo") not in ("echo", "other"):
            return web.json_response({"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                                "type": "NotFoundError", "code": 404}}, status=404)
        await asyncio.sleep(delay)
        fault = next((f for f in FAULTS if f in prompt), None)
        if fault == "FAULT:empty" or (fault == "FAULT:flaky" and seen[prompt] == 1):
            return web.Response(status=200, body=b"", content_type="application/json")
        if fault == "FAULT:cut":
            return web.Response(status=200, body=b'{"id": "chatcmpl-1", "choices": [{"index": 0, "mess',
                                content_type="application/json")
        if fault == "FAULT:html":
            return web.Response(status=200, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        if fault == "FAULT:context":
            return web.json_response({"object": "error", "type": "BadRequestError", "code": 400, "message":
                                      "This model's maximum context length is 4096 tokens. However, you requested "
                                      "9000 tokens (8000 in the messages, 1000 in the completion)."}, status=400)
        if fault == "FAULT:500":
            return web.json_response({"error": {"message": "internal error", "type": "server_error"}}, status=500)
        text = "回复：" + prompt
        return web.json_response({
            "id": f"chatcmpl-{sum(seen.values())}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "echo"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(text),
                      "total_tokens": len(prompt) + len(text)},
        })

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": name, "object": "model", "owned_by": "bench", "max_model_len": 4096} for name in ("echo", "other")]})

    async def tokenize(request: web.Request) -> web.Response:
        body = await request.json()
        seen["/tokenize"] += 1
        count = sum(len(m["content"]) + 4 for m in body["messages"])
        return web.json_response({"count": count, "max_model_len": 4096, "tokens": list(range(count))})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"requests": sum(seen.values()), "by_prompt": dict(seen)})

    app = web.Application()
    app.add_routes([web.post("/v1/chat/completions", completions), web.get("/v1/models", models),
                    web.post("/tokenize", tokenize), web.get("/stats", stats)])
    try:  # the endpoint should be as close to "exactly 200 ms" as it can: use the fast loop
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=1024, loop=loop)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_endpoint(delay: float) -> tuple[subprocess.Popen, str]:
    """Start the endpoint in a subprocess; returns (process, base_url) once it answers."""
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--delay", str(delay)])
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(base + "/stats", timeout=1.0)
            return proc, base + "/v1"
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("endpoint did not start")


def raw_floor(base: str, jobs: int, concurrency: int) -> float:
    """Jobs/s of a bare aiohttp loop on the same endpoint: what this machine allows today
    (printed for context; the goal is against the ideal, not against this)."""
    import asyncio

    import aiohttp

    async def go() -> float:
        sem = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            async def one(i: int) -> None:
                async with sem, session.post(base + "/chat/completions",
                                             json={"model": "echo", "messages": [{"role": "user", "content": f"raw{i}"}]}) as r:
                    await r.json()

            t = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(jobs)))
            return jobs / (time.perf_counter() - t)

    return asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", type=int, help="only run the endpoint on this port")
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.delay)
        return

    from discmed.backend import GenParams, load_backend
    from discmed.jobs import JobRunner

    proc, base = start_endpoint(args.delay)
    try:
        backend = load_backend(f"openai:{base}@echo")
        with tempfile.TemporaryDirectory() as tmp:
            # No cache: every job must really reach the endpoint (a cache would make this free).
            runner = JobRunner(Path(tmp) / "journal.sqlite", concurrency=args.concurrency, cache=None,
                               progress=False)
            teacher = runner.client(backend, name="teacher")
            params = GenParams(max_new_tokens=64)

            async def work(key: str, doctor_turn: str) -> dict:
                prompt = f"请将医生的回复改写得完整、礼貌、有解释，保留全部医学信息。\n医生：{doctor_turn}"
                reply = await teacher.chat([{"role": "user", "content": prompt}], params)
                return {"id": key, "rewrite": reply}

            items = [(f"job-{i}", f"第{i}条：建议查血常规，阿莫西林0.5g每日三次。") for i in range(args.jobs)]
            t0 = time.perf_counter()
            summary = runner.run(items, work, desc="jobs")
            wall = time.perf_counter() - t0
            ok = sum(1 for k, r in runner.results() if r["rewrite"].endswith(f"第{k[4:]}条：建议查血常规，阿莫西林0.5g每日三次。"))
            runner.close()
        floor = raw_floor(base, args.jobs, args.concurrency)
    finally:
        proc.terminate()
        proc.wait()
    ideal = args.concurrency / args.delay
    got = summary["done"] / wall
    print(f"jobs={args.jobs} concurrency={args.concurrency} delay={args.delay}s done={summary['done']} "
          f"failed={summary['failed']} correct_replies={ok} wall={wall:.2f}s cpu_count={os.cpu_count()}")
    print(f"engine {got:.1f} jobs/s vs ideal {ideal:.1f} jobs/s; a bare aiohttp loop on this machine now: {floor:.1f} jobs/s")
    print(json.dumps({"benchmark": "jobs_throughput", "discmed": round(got, 2), "peer": round(ideal, 2),
                      "unit": "jobs/s", "ratio": round(got / ideal, 4), "goal": 0.9,
                      "met": got / ideal >= 0.9 and ok == args.jobs, "jobs": args.jobs,
                      "concurrency": args.concurrency, "delay_s": args.delay,
                      "bare_client_jobs_per_s": round(floor, 2)}))


if __name__ == "__main__":
    main()
