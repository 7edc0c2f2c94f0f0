"""How long `discmed serve --model tiny` takes to answer /health, engine in a process of its own vs in the server's.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_startup.py             # 3 starts each, alternating
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_startup.py --no-safety

The default (`--engine-process`) starts the engine's process first: it loads the model while the server reads the
tokenizer, the prompt format and the safety rules. The peer is the same server with its engine in its own process
(`--no-engine-process`), which loads the model once, in line. Wall seconds from `Popen` to the first 200 from
/health (the suite starts servers like this, so it pays this per server); medians, and the ratio process ÷ in-process.
Needs both cores free to show the overlap: with one core busy the two loads take turns.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from discmed.process import served  # noqa: E402


def start_once(extra: list[str], safety: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="discmed-startup-") as tmp:
        t = time.perf_counter()
        with served("tiny", Path(tmp) / "serve.log", safety=safety, args=extra):
            return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-safety", action="store_true", help="serve without the red-flag layer (its rules and classifier)")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start_once([], not a.no_safety)  # warm: the triage classifier trained or read from its cache, files in the page cache
    proc, local = [], []
    for _ in range(a.runs):
        proc.append(start_once(["--engine-process"], not a.no_safety))
        local.append(start_once(["--no-engine-process"], not a.no_safety))
    p, q = statistics.median(proc), statistics.median(local)
    print(json.dumps({"benchmark": "serve_startup", "unit": "seconds to the first /health 200 (median)",
                      "discmed": round(p, 2), "peer": round(q, 2), "ratio": round(p / q, 2),
                      "engine_process": [round(x, 2) for x in proc], "in_process": [round(x, 2) for x in local],
                      "safety": not a.no_safety, "load": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
