"""`discmed serve --model X.gguf`: llama.cpp as the engine behind discmed's own front (issue 26),
and `llamacpp:` specs in the job engine. A real llama-server (scripts/llamacpp.sh's build) on
the tiny model's GGUF, real HTTP, the OpenAI SDK as the client."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from discmed.backend import load_backend
from discmed.contract import GenParams
from discmed.engine.llamacpp import tools_dir
from discmed.process import served
from discmed.train.gguf import export_gguf

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gguf(tiny_model, tmp_path_factory) -> Path:
    tools_dir(build=True)
    folder = tmp_path_factory.mktemp("gguf") / "tiny-gguf"
    return Path(export_gguf(tiny_model, folder, quant="q8_0", fmt="disc", dtype="fp32")["gguf"])


@pytest.fixture(scope="module")
def url(gguf, tmp_path_factory):
    with served(str(gguf), tmp_path_factory.mktemp("serve") / "serve.log", safety=True, name="tiny-gguf",
                args=["--threads", "1", "--max-batch", "4"]) as base:  # fmt: skip
        yield base


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=60)


def test_chat_through_discmeds_front(client, url):
    r = client.chat.completions.create(model="tiny-gguf", messages=[{"role": "user", "content": "头痛三天了怎么办？"}],
                                       max_tokens=16, temperature=0)  # fmt: skip
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0
    assert r.choices[0].message.content.strip()
    health = httpx.get(url.removesuffix("/v1") + "/health").json()
    assert health["status"] == "ok" or health.get("engine") is not None
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny-gguf"]


def llama_server_of(gguf: Path) -> str:
    """The root URL of the llama-server discmed started on `gguf` (its command line names the file)."""
    for pid in (d for d in Path("/proc").iterdir() if d.name.isdigit()):
        try:
            args = (pid / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if args[0].endswith("llama-server") and str(gguf) in args:
            return f"http://127.0.0.1:{args[args.index('--port') + 1]}"
    raise AssertionError(f"no llama-server on {gguf}")


def test_a_client_gone_mid_stream_stops_its_slot(client, url, gguf):
    """A client that goes away mid-stream cancels its request down to llama-server: its
    connection closes and llama-server frees the slot, rather than decode to max_tokens for
    nobody. The next requests are served as before."""
    slots = llama_server_of(gguf) + "/slots"
    body = {"model": "tiny-gguf", "prompt": "头痛", "max_tokens": 1800, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", url + "/completions", json={**body, "temperature": 0}, timeout=60) as r:
        lines = r.iter_lines()
        assert [next(lines) for _ in range(6)] and any(s["is_processing"] for s in httpx.get(slots).json())
    # Until the slot is free, how far it got: a slot left running climbs to 1800.
    deadline, seen = time.monotonic() + 30, 0
    while busy := [x for x in httpx.get(slots).json() if x["is_processing"]]:
        seen = max([seen] + [x["next_token"][0]["n_decoded"] for x in busy])
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert seen < 1200, f"llama-server decoded {seen} tokens for a client that had gone"
    for _ in range(3):
        r = client.completions.create(model="tiny-gguf", prompt="头痛", max_tokens=4, extra_body={"ignore_eos": True})
        assert r.usage.completion_tokens == 4


def test_safety_layer_answers_an_emergency_first(client):
    """The red-flag layer is discmed's, whatever the engine: chest pain with sweating gets the
    emergency notice."""
    r = client.chat.completions.create(model="tiny-gguf", max_tokens=8, temperature=0,
                                       messages=[{"role": "user", "content": "我胸口剧痛，大汗淋漓，喘不上气"}])
    text = r.choices[0].message.content
    assert "120" in text


def test_streaming_matches_unstreamed(client):
    msgs = [{"role": "user", "content": "孩子咳嗽一周了要不要去医院？"}]
    whole = client.chat.completions.create(model="tiny-gguf", messages=msgs, max_tokens=20, temperature=0,
                                           extra_body={"safety": False}).choices[0].message.content
    parts = client.chat.completions.create(model="tiny-gguf", messages=msgs, max_tokens=20, temperature=0,
                                           stream=True, extra_body={"safety": False})  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in parts if c.choices) == whole


def test_structured_output_through_llamacpps_grammar(client):
    schema = {"type": "object", "properties": {"urgent": {"type": "boolean"},
                                               "level": {"type": "integer", "minimum": 1, "maximum": 5}},
              "required": ["urgent", "level"], "additionalProperties": False}  # fmt: skip
    r = client.chat.completions.create(
        model="tiny-gguf", messages=[{"role": "user", "content": "判断紧急程度"}], max_tokens=40, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
        extra_body={"safety": False},
    )  # fmt: skip
    data = json.loads(r.choices[0].message.content)
    assert isinstance(data["urgent"], bool) and 1 <= data["level"] <= 5


def test_logprobs_and_what_is_refused(client):
    r = client.chat.completions.create(model="tiny-gguf", messages=[{"role": "user", "content": "你好"}],
                                       max_tokens=4, temperature=0, logprobs=True, top_logprobs=2,
                                       extra_body={"safety": False})  # fmt: skip
    entries = r.choices[0].logprobs.content
    assert entries and all(e.logprob <= 0 and len(e.top_logprobs) == 2 for e in entries)
    # Greedy: the chosen token is the most likely one.
    assert all(abs(e.logprob - e.top_logprobs[0].logprob) < 1e-4 for e in entries)
    with pytest.raises(openai.BadRequestError) as e:  # echo needs prompt logprobs: llama-server has none
        client.completions.create(model="tiny-gguf", prompt="头痛", max_tokens=0, echo=True, logprobs=0)
    assert "logprobs" in str(e.value) or "echo" in str(e.value)


def test_llamacpp_spec_in_a_job(gguf, tmp_path):
    """`llamacpp:FILE.gguf` as a model spec: the backend API, and a CLI step through the job engine."""
    backend = load_backend(f"llamacpp:{gguf}", threads=1, parallel=2)
    try:
        replies = backend.chat([[{"role": "user", "content": "失眠怎么办？"}]] * 2, GenParams(max_new_tokens=8, temperature=0))
        assert replies[0] == replies[1] and replies[0].strip()
    finally:
        backend.close()
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmmlu"
    done = subprocess.run([sys.executable, "-m", "discmed", "eval", "mcq", "--model", str(gguf), "--task", "cmmlu",
                           "--data-dir", str(shared), "--limit", "4", "--mode", "generate", "--max-new-tokens", "4",
                           "-o", str(tmp_path / "mcq"), "--json"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["n"] > 0 if "n" in summary else summary
    # logprob mode is refused with the reason, not approximated
    refused = subprocess.run([sys.executable, "-m", "discmed", "eval", "mcq", "--model", str(gguf), "--task", "cmmlu",
                              "--data-dir", str(shared), "--limit", "1", "-o", str(tmp_path / "mcq2")],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert refused.returncode != 0 and "prompt tokens" in refused.stderr


def test_named_tool_call_through_llamacpps_grammar(client):
    """A named tool_choice is decoded to the function's schema by llama.cpp's own grammar."""
    tools = [{"type": "function", "function": {
        "name": "triage", "description": "记录分诊结果",
        "parameters": {"type": "object", "properties": {"level": {"type": "integer", "minimum": 1, "maximum": 5},
                                                        "urgent": {"type": "boolean"}},
                       "required": ["level", "urgent"]}}}]  # fmt: skip
    r = client.chat.completions.create(model="tiny-gguf", messages=[{"role": "user", "content": "胸痛半小时"}],
                                       tools=tools, tool_choice={"type": "function", "function": {"name": "triage"}},
                                       max_tokens=40, temperature=0, extra_body={"safety": False})  # fmt: skip
    call = r.choices[0].message.tool_calls[0]
    args = json.loads(call.function.arguments)
    assert call.function.name == "triage" and 1 <= args["level"] <= 5 and isinstance(args["urgent"], bool)
    assert r.choices[0].finish_reason == "tool_calls"


def test_slots_are_shared_across_event_loops_first_come_first_served():
    """The front's queue in front of llama-server's slots: two holders at most, whichever loop
    asks; waiters get a slot in the order they asked; a waiter cancelled in the queue (its
    client went away) leaves it and takes no slot, and none is lost."""
    import asyncio
    import threading

    from discmed.engine.llamacpp import Slots

    slots, order, lock = Slots(2), [], threading.Lock()

    async def hold(name: str, seconds: float) -> None:
        await slots.acquire()
        try:
            with lock:
                order.append((name, 2 - slots.free))
            await asyncio.sleep(seconds)
        finally:
            slots.release()

    async def side(names: list[str], delay: float) -> None:
        await asyncio.sleep(delay)
        await asyncio.gather(*(hold(n, 0.05) for n in names))

    async def main() -> None:
        first = asyncio.gather(hold("a", 0.2), hold("b", 0.2))
        await asyncio.sleep(0.02)
        gone = asyncio.ensure_future(hold("gone", 0.05))  # queued behind a and b
        await asyncio.sleep(0.02)
        assert slots.waiting >= 1
        gone.cancel()
        await asyncio.gather(first, return_exceptions=True)
        assert gone.cancelled()

    other = threading.Thread(target=lambda: asyncio.run(side(["x", "y", "z"], 0.01)))
    other.start()
    asyncio.run(main())
    other.join(5)
    names = [n for n, _ in order]
    assert "gone" not in names and sorted(names) == ["a", "b", "x", "y", "z"]
    assert all(held <= 2 for _, held in order), order
    assert slots.free == 2 and slots.waiting == 0  # every slot came back


def test_requests_beyond_llama_servers_slots_wait_in_the_front(client, url, gguf):
    """`--max-batch 4` gives llama-server 4 slots; 10 clients at once: llama-server has 4 requests
    at a time, the other 6 wait in discmed's queue (its /metrics say so), and every one of the 10
    gets its whole reply."""
    import concurrent.futures

    server = llama_server_of(gguf)
    port = int(server.rsplit(":", 1)[1])
    metrics = url.removesuffix("/v1") + "/metrics"

    def connections() -> int:  # established TCP connections to llama-server's port
        rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        return sum(int(r[2].split(":")[1], 16) == port and r[3] == "01" for r in rows)

    def one(i: int) -> int:
        r = client.completions.create(model="tiny-gguf", prompt=f"头痛{i}", max_tokens=300, temperature=0,
                                      extra_body={"ignore_eos": True})  # fmt: skip
        return r.usage.completion_tokens

    busiest = queued = 0
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(one, i) for i in range(10)]
        while not all(f.done() for f in futures):
            busiest = max(busiest, connections())
            depth = [line for line in httpx.get(metrics).text.splitlines() if line.startswith("discmed_queue_depth ")]
            queued = max(queued, float(depth[0].split()[1]))
            time.sleep(0.01)
        assert [f.result() for f in futures] == [300] * 10
    # A finished request's slot is handed on at its last chunk, as its connection closes: one more
    # connection can be open for that moment. Without the queue all 10 are.
    assert 4 <= busiest <= 5 and queued >= 1, (busiest, queued)
