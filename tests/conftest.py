"""Shared fixtures: the embedded tiny model, the shared public data, a free loopback port."""

import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DISCMED_SHARED_DATA", ROOT.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread for the test process and every child it starts: tests, servers and a second
# suite share two cores, and OpenMP threads spinning against each other run several times slower
# than one thread each (see discmed/cpu.py). `make test` measures the whole suite this way.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA} (set DISCMED_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    from discmed.tiny import ensure_tiny

    return ensure_tiny()


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_server(tiny_model, tmp_path_factory):
    """A real `discmed serve --model tiny` on a free loopback port; yields its base URL
    (`http://127.0.0.1:PORT/v1`, model id "tiny"). One server for the whole session."""
    from discmed.process import served

    with served("tiny", tmp_path_factory.mktemp("tiny-server") / "serve.log", safety=True) as url:
        yield url


@pytest.fixture(scope="module")
def endpoint():
    """The loopback OpenAI-compatible endpoint of benchmarks/jobs_throughput.py, in a process of
    its own: it echoes the prompt after 20 ms, counts requests per prompt (GET /stats), and is
    the fault-injecting teacher (its FAULT: prompts). Yields its base URL (…/v1)."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import jobs_throughput

    proc, base = jobs_throughput.start_endpoint(0.02)
    yield base
    proc.terminate()
    proc.wait()


def endpoint_stats(base: str) -> dict:
    """Requests the endpoint received, per prompt."""
    import httpx

    return httpx.get(base.removesuffix("/v1") + "/stats").json()["by_prompt"]


@pytest.fixture
def as_at_a_terminal():
    """A `preexec_fn` for a child on a pty that must see Ctrl+C as a person at a terminal does.
    A suite started in the background (`make test &`, nohup, some CI runners) passes SIGINT
    down ignored, and Python keeps an inherited SIG_IGN for SIGINT: without this the child
    never sees the Ctrl+C the test types."""
    import signal

    def reset() -> None:
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)

    return reset


def process_gone(pid: int) -> bool:
    """Whether process `pid` has exited (a zombie not yet reaped by whoever adopted it counts)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def wait_gone(pid: int, seconds: float = 10.0) -> bool:
    """Wait up to `seconds` for process `pid` to exit; whether it did."""
    import time

    end = time.time() + seconds
    while time.time() < end:
        if process_gone(pid):
            return True
        time.sleep(0.1)
    return process_gone(pid)
