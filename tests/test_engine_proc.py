"""`discmed serve` with its batching engine in a child process (the default), apart from HTTP.

A real server on loopback each time; `--no-engine-process` (the engine in the server's own
process) is the reference."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import openai
import pytest
from conftest import process_gone, wait_gone

from discmed.process import served

MESSAGES = [[{"role": "user", "content": "我头痛三天了，还有点发烧。"}],
            [{"role": "user", "content": "孩子咳嗽一周，晚上更厉害，需要拍片吗？"}],
            [{"role": "user", "content": "血压150/95，头有点晕"}]]  # fmt: skip


@pytest.fixture(scope="module")
def proc_server(tiny_model, tmp_path_factory):
    with served("tiny", tmp_path_factory.mktemp("proc") / "serve.log", safety=True,
                args=["--engine-process", "--max-queue", "4"]) as url:  # fmt: skip
        yield url


@pytest.fixture(scope="module")
def inproc_server(tiny_model, tmp_path_factory):
    with served("tiny", tmp_path_factory.mktemp("inproc") / "serve.log", safety=True, args=["--no-engine-process"]) as url:
        yield url


def root(url: str) -> str:
    return url.rsplit("/v1", 1)[0]


def test_same_replies_as_the_engine_in_process(proc_server, inproc_server):
    """Greedy and seeded replies, streamed and not, with logprobs and a JSON schema: the same
    tokens whichever process the engine runs in; the server's own process holds no weights."""
    a, b = (openai.OpenAI(base_url=u, api_key="unused") for u in (proc_server, inproc_server))
    schema = {"type": "object", "properties": {"score": {"type": "integer", "enum": [1, 2, 3]}},
              "required": ["score"], "additionalProperties": False}  # fmt: skip
    for messages in MESSAGES:
        for extra in ({"temperature": 0}, {"temperature": 0.9, "seed": 5, "logprobs": True, "top_logprobs": 2},
                      {"temperature": 0, "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}}):  # fmt: skip
            x, y = (c.chat.completions.create(model="tiny", messages=messages, max_tokens=24, **extra) for c in (a, b))
            assert x.choices[0].message.content == y.choices[0].message.content
            assert x.usage.completion_tokens == y.usage.completion_tokens
            if extra.get("logprobs"):
                assert [t.token for t in x.choices[0].logprobs.content] == [t.token for t in y.choices[0].logprobs.content]
            if "response_format" in extra:
                assert json.loads(x.choices[0].message.content)["score"] in (1, 2, 3)
        streamed = "".join(ch.choices[0].delta.content or "" for ch in a.chat.completions.create(
            model="tiny", messages=messages, max_tokens=24, temperature=0, stream=True) if ch.choices)  # fmt: skip
        assert streamed == b.chat.completions.create(model="tiny", messages=messages, max_tokens=24,
                                                     temperature=0).choices[0].message.content  # fmt: skip
    health = httpx.get(root(proc_server) + "/health").json()
    assert health["status"] == "ok" and health["engine_pid"] != os.getpid() and health["batches"] > 0
    assert httpx.get(root(inproc_server) + "/health").json()["engine_pid"] is None


def test_queue_limit_and_cancellation_are_kept_in_the_parent(proc_server):
    """Past --max-queue (4) a request is refused at once with Retry-After; a stream the
    client drops is cancelled in the engine, and the server goes on."""
    body = {"model": "tiny", "messages": MESSAGES[0], "max_tokens": 300, "ignore_eos": True}
    before = httpx.get(root(proc_server) + "/health").json()["cancelled"]
    barrier, answers = threading.Barrier(7), []

    def post() -> None:
        barrier.wait()
        answers.append(httpx.post(proc_server + "/chat/completions", json=body, timeout=120))

    threads = [threading.Thread(target=post) for _ in range(7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    codes = sorted(a.status_code for a in answers)
    assert codes.count(429) >= 3 and set(codes) == {200, 429}, codes
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers if a.status_code == 429)
    with httpx.stream("POST", proc_server + "/chat/completions", json={**body, "stream": True}, timeout=60) as r:
        assert r.status_code == 200
        next(r.iter_lines())  # then dropped
    deadline = time.time() + 30
    while httpx.get(root(proc_server) + "/health").json()["cancelled"] <= before and time.time() < deadline:
        time.sleep(0.1)
    assert httpx.get(root(proc_server) + "/health").json()["cancelled"] == before + 1
    again = httpx.post(proc_server + "/chat/completions", json={**body, "max_tokens": 20}, timeout=60)
    assert again.status_code == 200 and again.json()["usage"]["completion_tokens"] == 20


def test_a_dead_engine_process_fails_requests_clearly(tiny_model, tmp_path):
    """SIGKILL the engine process: the stream in flight ends with an error event naming it,
    new requests get a 503 at once, /health answers 503; the server itself does not hang."""
    with served("tiny", tmp_path / "serve.log", safety=False, args=["--engine-process"]) as url:
        pid = httpx.get(root(url) + "/health").json()["engine_pid"]
        body = {"model": "tiny", "messages": MESSAGES[0], "max_tokens": 2000, "ignore_eos": True, "stream": True}
        with httpx.stream("POST", url + "/chat/completions", json=body, timeout=60) as r:
            lines = r.iter_lines()
            next(lines)
            os.kill(pid, signal.SIGKILL)
            rest = "\n".join(lines)
        assert "engine process has died" in rest
        r = httpx.post(url + "/chat/completions", json={**body, "stream": False}, timeout=30)
        assert r.status_code == 503 and "engine process has died" in r.json()["error"]["message"]
        health = httpx.get(root(url) + "/health")
        assert health.status_code == 503 and health.json()["status"] == "engine down"


@pytest.mark.parametrize("sig, parent_ignores_sigint", [(signal.SIGKILL, False), (signal.SIGTERM, False),
                                                        (signal.SIGINT, False), (signal.SIGINT, True)],
                         ids=["SIGKILL", "SIGTERM", "SIGINT", "SIGINT-from-a-background-parent"])
def test_the_engine_process_ends_with_its_server(tiny_model, tmp_path, sig, parent_ignores_sigint):
    """SIGKILL the server (no shutdown runs): the engine process sees its request pipe close
    and exits, rather than holding the model's memory with nobody to serve. SIGTERM or SIGINT
    to the server's process group: the server shuts down in order, ending the engine process before
    it exits, without a traceback or a leaked resource. The same when the parent was itself
    started in the background (`nohup make test &`: SIGINT ignored, which a child would inherit
    but for `running`'s set-up), so this test does not depend on how its runner was launched."""
    import sys

    from discmed.process import free_port, running

    if parent_ignores_sigint:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            _server_ends_with(sig, tmp_path, free_port, running, sys.executable)
        finally:
            signal.signal(signal.SIGINT, previous)
    else:
        _server_ends_with(sig, tmp_path, free_port, running, sys.executable)


def _server_ends_with(sig, tmp_path, free_port, running, python):

    port = free_port()
    cmd = [python, "-m", "discmed", "serve", "--model", "tiny", "--port", str(port), "--engine-process"]
    with running(cmd, f"http://127.0.0.1:{port}/health", tmp_path / "serve.log") as proc:
        pid = httpx.get(f"http://127.0.0.1:{port}/health").json()["engine_pid"]
        helpers = children(proc.pid)  # the engine process and multiprocessing's resource tracker
        # SIGKILL: the server alone, outright. SIGTERM and SIGINT: its whole process group, as a
        # supervisor stopping the service does, and a Ctrl+C at a terminal.
        os.kill(proc.pid, sig) if sig == signal.SIGKILL else os.killpg(proc.pid, sig)
        proc.wait(timeout=20)
        ended_first = process_gone(pid)
        for p in helpers:
            if not wait_gone(p):
                os.kill(p, signal.SIGKILL)
                pytest.fail(f"process {p} (the engine's: {p == pid}) outlived its server")
    if sig != signal.SIGKILL:  # the server's shutdown ended the engine before the server exited
        log = (tmp_path / "serve.log").read_text()
        assert ended_first, log[-2000:]
        assert proc.returncode in (-sig, 128 + sig), log[-2000:]  # uvicorn hands the signal back
        assert "Traceback" not in log, log[-2000:]
        assert "leaked" not in log, log[-2000:]  # the resource tracker found nothing left behind


def children(pid: int) -> list[int]:
    """The child processes of `pid`, from /proc."""
    import glob

    kids: list[int] = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        with open(path, encoding="ascii") as f:
            kids += [int(k) for k in f.read().split()]
    return kids


def test_process_engine_answers_and_shuts_down(tiny_model):
    """The engine used directly, as a library caller would: one request answered through the
    child, then `shutdown` ends the child and a later submit is refused with the reason."""
    import asyncio

    from discmed.backend import GenParams, load_backend
    from discmed.engine.proc import EngineProcessError, ProcessEngine
    from discmed.engine.protocol import Request

    light = load_backend("tiny", load_weights=False)
    engine = ProcessEngine("tiny", {}, max_batch=4, max_queue=4)
    ids = light.prompt_ids(MESSAGES[0], GenParams())

    async def ask():
        req = engine.submit(Request(ids, GenParams(max_new_tokens=5), ignore_eos=True), asyncio.get_running_loop())
        while (d := await req.out.get()).finish_reason is None:
            pass
        return d

    last = asyncio.run(ask())
    assert (last.finish_reason, last.completion_tokens) == ("length", 5)
    engine.shutdown()
    assert wait_gone(engine.pid)
    with pytest.raises(EngineProcessError, match="has died"):  # shutdown waits for the reader
        engine.submit(Request(ids, GenParams(max_new_tokens=1)))


def test_a_model_that_cannot_load_fails_serve_at_once(tmp_path):
    """The engine process starts loading while the server reads the tokenizer: when the model cannot be
    loaded, `discmed serve` exits 3 at once, naming the folder and the cause (the engine process is killed)."""
    import sys

    from discmed.process import free_port, run_watched

    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{not json", encoding="utf-8")
    r = run_watched([sys.executable, "-m", "discmed", "serve", "--model", str(folder), "--port", str(free_port())],
                    stall=120, limit=300)
    assert r.returncode == 3, r.stderr[-2000:]
    assert f"cannot load model '{folder}'" in r.stderr and "not a valid JSON file" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
