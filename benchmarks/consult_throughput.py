"""Simulated-consultation throughput through discmed's own OpenAI-compatible server, or in process.

Goal (issue 6): with the tiny model on CPU, consultations per minute at concurrency 8 are at
least 4x those at concurrency 1. Both runs use the same cases, the same engine and no call
cache, so the only difference is how many consultations the job engine keeps in flight (and
how well the engine batches them). Doctor and patient are the same tiny model: served by
`discmed serve` (the default), or with `--local` a local `hf:` backend in this process, whose
calls join its engine's running batch the same way (issue 25).

    .venv/bin/python benchmarks/consult_throughput.py [--local] [--cases 16] [--set cmid] [--turns 3] [--model tiny]
        [--prefix-cache-mb 0]   # the engine's prefix cache off, to compare

The last printed line is the JSON result.
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
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get("DISCMED_SHARED_DATA", ROOT.parent / "shared" / "data")) / "disc-medllm" / "eval" / "samples"


def start_server(model: str, port: int, log: Path, prefix_cache_mb: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "discmed.cli", "serve", "--model", model, "--served-model-name", "tiny",
         "--host", "127.0.0.1", "--port", str(port), "--prefix-cache-mb", str(prefix_cache_mb)],
        cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"discmed serve did not start; log: {log.read_text()[-2000:]}")


def health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
        return json.loads(r.read())


def counters(port: int) -> dict:
    """The engine's running totals from the server's /metrics (Prometheus text)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {s.name.removeprefix("discmed_").removesuffix("_total"): int(s.value)
            for fam in text_string_to_metric_families(text) for s in fam.samples if s.name.startswith("discmed_")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny", help="what the server serves (default: the embedded tiny model)")
    ap.add_argument("--cases", type=int, default=16)
    ap.add_argument("--set", default="cmid")
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--doctor-tokens", type=int, default=64)
    ap.add_argument("--patient-tokens", type=int, default=32)
    ap.add_argument("--local", action="store_true", help="doctor and patient in this process (hf backend), no server")
    ap.add_argument("--prefix-cache-mb", type=int, default=256, help="the engine's prefix cache (0: off, to compare)")
    args = ap.parse_args()

    from discmed.backend import GenParams, load_backend
    from discmed.eval.consult import load_cases, run_consult

    cases = load_cases(args.set, SAMPLES)[: args.cases]
    work = Path(tempfile.mkdtemp(prefix="discmed-consult-bench-"))
    figures = {}
    for concurrency in (1, 8):
        # A fresh engine (a fresh server) for each run: the prefix cache keeps finished calls' KV,
        # and the second run would otherwise start with the first one's prompts in it.
        server = None
        try:
            if args.local:
                spec = args.model
                backend = load_backend(spec, batch_size=8)
                backend.engine.prefix.budget = args.prefix_cache_mb << 20
            else:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    port = s.getsockname()[1]
                server = start_server(args.model, port, work / f"server{concurrency}.log", args.prefix_cache_mb)
                spec = f"openai:http://127.0.0.1:{port}/v1@tiny"
                backend = load_backend(spec)
            summary = run_consult(
                cases, backend, backend, work / f"c{concurrency}.json", doctor_spec=spec, patient_spec=spec,
                model="tiny", turns=args.turns, concurrency=concurrency,
                doctor_params=GenParams(max_new_tokens=args.doctor_tokens),
                patient_params=GenParams(max_new_tokens=args.patient_tokens),  # greedy: both runs do the same work
                cache="none", progress=False)
            assert summary["dialogues"] == len(cases), summary
            figures[concurrency] = summary
            # The engine's own counts: how many prefill groups (joins) served this run's calls, and
            # how many prompt tokens came from the prefix cache instead of being run.
            st = vars(backend.engine.stats()) if args.local else {**health(port), **counters(port)}
            summary["server_batches"] = st.get("batches") or 0
            summary["max_batch_seen"] = st.get("max_batch_seen")
            summary["prompt_tokens"] = st.get("prompt_tokens")
            summary["prefix_cache_tokens"] = st.get("prefix_cache_tokens")
            print(f"concurrency {concurrency}: {summary['dialogues']} consultations, {summary['calls']} calls "
                  f"in {summary['server_batches']} engine batches (largest {summary['max_batch_seen']}), "
                  f"{summary['prefix_cache_tokens']} of {summary['prompt_tokens']} prompt tokens from the prefix cache, "
                  f"{summary['wall_s']:.1f} s = {summary['cases_per_min']:.1f} cases/min")
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
    c8, c1 = figures[8]["cases_per_min"], figures[1]["cases_per_min"]
    ratio = round(c8 / c1, 2)
    print(json.dumps({"benchmark": "consult_throughput", "discmed": c8, "peer": c1, "unit": "cases/min",
                      "ratio": ratio, "goal": 4.0, "met": ratio >= 4.0, "peer_is": "the same run at concurrency 1",
                      "model": args.model, "mode": "local hf backend" if args.local else "discmed serve",
                      "cases": len(cases), "set": args.set, "turns": args.turns, "prefix_cache_mb": args.prefix_cache_mb,
                      "calls": [figures[1]["calls"], figures[8]["calls"]],
                      "server_batches": [figures[1]["server_batches"], figures[8]["server_batches"]],
                      "max_batch_seen": [figures[1]["max_batch_seen"], figures[8]["max_batch_seen"]],
                      "prefix_cache_tokens": [figures[1]["prefix_cache_tokens"], figures[8]["prefix_cache_tokens"]],
                      "prompt_tokens": [figures[1]["prompt_tokens"], figures[8]["prompt_tokens"]],
                      "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
