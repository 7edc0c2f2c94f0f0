"""What CI costs: `bash .ci/run` on fresh clones, N at once, by phase (install, system, tiny, tests).

Each run gets a fresh clone of this repository's HEAD (beside `shared/`, as CI lays it), an empty
uv cache and an empty discmed cache shared by the N runs (as on a fresh machine: the first run to
reach the tiny build builds it, the others wait for it). pip's wheel of torch comes from the
machine's disk as in CI. The runs start together; the script prints each run's phase times as
`make test` reports them, and whether it passed.

    python benchmarks/ci_cost.py            # one run: the fresh-machine cost
    python benchmarks/ci_cost.py --runs 2   # two suites at once on one machine (load ~4 on 2 cores)

Goal: each run under 15 minutes on an idle 2-core machine, and green with two at once.
Peer: the goal itself (there is no second CI to run against); ratio = slowest run / 900 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 900


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the clones and caches")
    ap.add_argument("--tiny-cache", type=Path, help="a discmed cache with the tiny model already built "
                    "(measures the other phases only; default: an empty one)")  # fmt: skip
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="discmed-ci-"))
    (base / "shared").symlink_to(ROOT.parent / "shared")  # CI lays shared/ beside the clone
    cache = base / "discmed-cache"
    if args.tiny_cache:
        shutil.copytree(args.tiny_cache, cache, ignore=shutil.ignore_patterns("*.sqlite*", ".*.lock"))
    procs = []
    t0 = time.time()
    for i in range(args.runs):
        clone = base / f"run{i}"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        env = {**os.environ, "CI": "true", "DISCMED_CACHE": str(cache), "UV_CACHE_DIR": str(base / f"uv{i}")}
        env.pop("VIRTUAL_ENV", None)
        log = open(base / f"run{i}.log", "w")
        procs.append((clone, log, subprocess.Popen(["bash", ".ci/run"], cwd=clone, env=env, stdout=log,
                                                   stderr=subprocess.STDOUT)))  # fmt: skip
    results = []
    for i, (_clone, log, proc) in enumerate(procs):
        status = proc.wait()
        log.close()
        text = (base / f"run{i}.log").read_text(errors="replace")
        phases = {m[0]: int(m[1]) for m in re.findall(r"^\[phase\] (\w+): (\d+) s", text, re.M)}
        summary = re.findall(r"^=+ (.*(?:passed|failed).*) =+$", text, re.M)
        results.append({"run": i, "exit": status, "wall_s": round(time.time() - t0), "phases": phases,
                        "pytest": summary[-1] if summary else None})  # fmt: skip
        print(f"run {i}: exit {status}, phases {phases}, {summary[-1] if summary else 'no pytest summary'}")
    slowest = max(sum(r["phases"].values()) for r in results)
    met = all(r["exit"] == 0 for r in results) and (args.runs > 1 or slowest <= GOAL_S)
    print(json.dumps({"benchmark": "ci_cost", "tiny_prebuilt": bool(args.tiny_cache), "discmed": slowest, "peer": GOAL_S, "unit": "s (slowest run, all phases)",
                      "ratio": round(slowest / GOAL_S, 2), "goal": f"<= {GOAL_S} s idle; green with 2 at once",
                      "met": met, "runs": results, "cpu_count": os.cpu_count(),
                      "load_avg_1m_end": os.getloadavg()[0]}))  # fmt: skip
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
