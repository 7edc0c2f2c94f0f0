"""`discmed serve` as a child process: started on a loopback port, waited for, stopped.

The demo runs its teacher, patient and judge this way, and the tests their shared server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(model: str, log: Path, *, safety: bool, name: str | None = None, port: int | None = None,
           timeout: float = 180.0) -> Iterator[str]:
    """`discmed serve --model MODEL` in a subprocess on loopback, serving it as `name`; yields its base URL (…/v1)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "discmed", "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port)]
    if name:
        cmd += ["--served-model-name", name]
    if not safety:
        cmd.append("--no-safety")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as logf:
        # One thread: the parent process computes at the same time on a small machine.
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise RuntimeError(f"`{' '.join(cmd)}` did not come up (exit {proc.poll()}); its log {log}:\n{tail}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
