"""How many CPU cores are free right now, and how much CPU a process has used.

Why this exists: torch's intra-op pool takes every core it sees. On a 2-core machine where a
second process is already computing, two OpenMP threads per process spin against each other and
a job runs several times slower than with one thread (the tiny build went from 97 s to 224 s for
40 steps at load ~4). So CPU-bound work that discmed starts itself sizes its thread pool by the
cores that are idle, not by the cores that exist.
"""

from __future__ import annotations

import os
import time


def usable_cores() -> int:
    """The cores this process may run on (its affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _cpu_ticks() -> tuple[int, int]:
    """(idle, total) jiffies over all cores, from the first line of /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return idle, sum(fields[:8])  # user … steal; guest time is already inside user


def free_cores(window: float = 0.3) -> int:
    """Cores left idle by everything else on the machine, measured over `window` seconds.

    At least 1, at most `usable_cores()`. Where /proc/stat cannot be read (not Linux), every
    usable core counts as free.
    """
    usable = usable_cores()
    try:
        idle0, total0 = _cpu_ticks()
        time.sleep(window)
        idle1, total1 = _cpu_ticks()
    except (OSError, ValueError, IndexError):
        return usable
    if total1 <= total0:
        return usable
    idle_share = (idle1 - idle0) / (total1 - total0)
    return max(1, min(usable, round(idle_share * (os.cpu_count() or usable))))


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        # The command name (field 2) may contain spaces: split after its closing parenthesis.
        return f.read().rsplit(")", 1)[1].split()


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used so far by process `pid`, or None where it cannot be read."""
    try:
        fields = _stat(pid)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of `pid` and every live descendant (a launcher's workers compute, not the
    launcher), plus what its waited-for children used; None where /proc cannot be read."""
    try:
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    parents[int(entry)] = int(_stat(int(entry))[1])
                except (OSError, ValueError, IndexError):
                    continue  # exited while we looked
    except OSError:
        return None
    tree, frontier = {pid}, [pid]
    while frontier:
        kids = [p for p, pp in parents.items() if pp in frontier and p not in tree]
        tree.update(kids)
        frontier = kids
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for p in tree:
        try:
            f = _stat(p)
            total += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / tick  # own + reaped children
        except (OSError, ValueError, IndexError):
            continue
    return total if pid in parents else None


# -- process tuning, done once by an entry point (`discmed serve`, the engine process) ---------


def tune_threads(threads: int | None = None) -> int:
    """Size torch's intra-op pool: `threads` if given, else $OMP_NUM_THREADS if the user set it,
    else the cores free right now (a server on a 2-core machine where another process computes
    ran 10x slower with 2 threads than with 1). Returns the number set."""
    import torch

    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() and int(env) > 0 else free_cores()
    torch.set_num_threads(threads)
    return threads


def tune_switch_interval(seconds: float = 0.001) -> None:
    """A short GIL switch interval for a process where an engine thread and an event loop share
    the GIL: the engine thread runs Python between torch ops, and with the default 5 ms the loop
    (which streams the tokens out) could wait that long for every token."""
    import sys

    if sys.getswitchinterval() > seconds:
        sys.setswitchinterval(seconds)


def freeze_heap() -> None:
    """Move everything allocated so far (torch, transformers, the model, the tokenizer) out of
    the garbage collector's reach, as vLLM's engine does once loaded: a full collection then
    scans only what serving allocates. Without it, collections of the oldest generation took
    up to ~300 ms each in the server and in the engine process, pausing every request at once
    (the TTFT p95 outliers of benchmarks/serve_vs_transformers.py)."""
    import gc

    gc.collect()
    gc.freeze()
