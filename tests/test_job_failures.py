"""Failures that stop a run and say why: a dead or wrong endpoint fails a command in seconds,
bodies that are not a chat completion are retried and then named, a prompt too long for the
model's context is failed before it is sent and not retried, a run of endpoint failures stops
the run, and bad input stops feeding without losing the calls in flight. Against the project's
fault-injecting loopback teacher (benchmarks/jobs_throughput.py) and real commands."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import endpoint_stats

ROOT = Path(__file__).resolve().parents[1]


def _seen(base: str, prompt: str) -> int:
    return endpoint_stats(base).get(prompt, 0)


def _runner(tmp_path, **kw):
    from discmed.jobs import JobRunner

    kw.setdefault("cache", None)
    return JobRunner(tmp_path / "journal.sqlite", progress=False, **kw)


def _ask(client, params=None):
    from discmed.backend import GenParams

    async def work(key, text):
        return {"reply": await client.chat([{"role": "user", "content": text}], params or GenParams(max_new_tokens=8))}

    return work


def discmed(*args, cwd):
    """The real command line, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "discmed", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


RECORDS = [{"_id": f"r{i}", "source": "MedDialog", "conversation": [
    {"role": "user", "content": f"头疼{i}天了，怎么办？"}, {"role": "assistant", "content": "建议查血常规，多休息。"}]}
    for i in range(6)]


@pytest.mark.parametrize("target, expect", [
    ("http://127.0.0.1:9/v1@echo", "cannot reach the OpenAI-compatible endpoint at http://127.0.0.1:9/v1"),
    ("{root}@echo", "answered 404 to GET /models"),              # the base URL lacks /v1
    ("{base}@no-such-model", "does not serve model 'no-such-model'; it serves: echo, other"),
], ids=["dead", "no-v1", "wrong-model"])
def test_a_dead_or_wrong_teacher_fails_the_command_in_seconds(tmp_path, endpoint, target, expect):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS), encoding="utf-8")
    teacher = "openai:" + target.format(base=endpoint, root=endpoint.removesuffix("/v1"))
    t0 = time.perf_counter()
    r = discmed("data", "rewrite", src, "-o", tmp_path / "out.jsonl", "--teacher", teacher, "--no-progress", "--json",
                cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert time.perf_counter() - t0 < 30
    assert expect in r.stderr
    assert expect in json.loads(r.stdout.strip().splitlines()[-1])["error"]  # --json: the error is the last line
    r = discmed("data", "kgqa", ROOT.parent / "shared" / "data" / "cmekg" / "train_example.json",
                "--out", tmp_path / "kg.jsonl", "--teacher", teacher, "--no-progress", cwd=tmp_path)
    assert r.returncode == 3 and expect in r.stderr


def test_bodies_that_are_not_a_completion_are_retried_then_named(tmp_path, endpoint):
    from discmed.backend import load_backend

    runner = _runner(tmp_path, concurrency=4)
    api = runner.client(load_backend(f"openai:{endpoint}@echo", max_retries=2), name="teacher")
    items = [("flaky", "FAULT:flaky 一"), ("empty", "FAULT:empty 二"), ("cut", "FAULT:cut 三"),
             ("html", "FAULT:html 四"), ("fine", "好的 五")]
    s = runner.run(items, _ask(api))
    assert s["done"] == 2 and s["failed"] == 3  # flaky: an empty body once, then a good one
    assert dict(runner.results())["flaky"]["reply"] == "回复：FAULT:flaky 一"
    errors = dict(runner.failures())
    where = f"{endpoint} (model echo) answered 200 with"
    assert errors["empty"] == f"{where} an empty body, 3 times"
    assert errors["cut"].startswith(f"{where} a body that is not JSON, or is cut off (")
    assert errors["html"].startswith(f"{where} a body that is not JSON") and "502 Bad Gateway" in errors["html"]
    assert _seen(endpoint, "FAULT:empty 二") == 3  # retried like a 5xx: 1 + max_retries
    assert s["stopped"] is None  # three bad bodies are not yet a dead endpoint


def test_a_prompt_too_long_fails_before_it_is_sent_and_is_not_retried(tmp_path, endpoint):
    from discmed.backend import GenParams, load_backend

    runner = _runner(tmp_path, concurrency=2)
    api = runner.client(load_backend(f"openai:{endpoint}@echo"), name="teacher")
    assert api.backend.context_limit == 4096  # listed by /v1/models
    long_prompt = "痛" * 4090  # 4094 tokens by the endpoint's /tokenize
    fits = "咳" * 3900  # leaves 192 tokens: max_new_tokens is cut to that
    budget = {}

    async def work(key, text):
        params = GenParams(max_new_tokens=512)
        budget[key] = (await api.fit([{"role": "user", "content": text}], params)).max_new_tokens
        return {"reply": await api.chat([{"role": "user", "content": text}], params)}

    s = runner.run([("long", long_prompt), ("fits", fits), ("short", "短")], work)
    assert s["done"] == 2 and s["failed"] == 1 and s["failed_permanent"] == 1
    assert dict(runner.failures())["long"] == (
        "too long for this model's context (4094 prompt tokens + 64 for the reply, limit 4096)")
    assert _seen(endpoint, long_prompt) == 0  # never sent
    assert budget == {"fits": 4096 - 3904, "short": 512}
    # Counted: "long" once (it failed in fit), "fits" twice (fit above, then chat). The short
    # prompt never: its upper bound fits, so no tokenizer call is spent on it.
    assert _seen(endpoint, "/tokenize") == 3
    # A rerun does not try it again (same model, same prompt: same answer), and still reports it.
    s2 = runner.run([("long", long_prompt), ("fits", fits), ("short", "短")], work)
    assert s2["failed"] == 1 and s2["failed_permanent"] == 1 and s2["skipped"] == 2
    # A server's own context 400 is classed the same.
    s3 = runner.run([("ctx", "FAULT:context 长")], _ask(api))
    assert s3["failed_permanent"] == 1 and "too long for this model's context (400: This model's maximum" in s3["first_error"]


def test_a_local_model_counts_its_own_prompt(tmp_path, tiny_model):
    from discmed.backend import GenParams, load_backend

    runner = _runner(tmp_path, concurrency=1)
    local = runner.client(load_backend(f"hf:{tiny_model}"), name="teacher")
    limit = local.backend.context_limit
    text = "".join(chr(0x4E00 + (i * 37) % 6000) for i in range(3000))  # rare characters: many tokens
    n = _run_count(local, text)
    assert n > limit
    s = runner.run([("long", text)], _ask(local, GenParams(max_new_tokens=16)))
    assert s["failed_permanent"] == 1
    assert dict(runner.failures())["long"] == (
        f"too long for this model's context ({n} prompt tokens + 16 for the reply, limit {limit})")


def _run_count(client, text):
    import asyncio

    return asyncio.run(client.backend.count_prompt([{"role": "user", "content": text}]))


def test_a_run_of_endpoint_failures_stops_the_run(tmp_path):
    """An endpoint that starts refusing the key mid-run (401): after three in a row nothing more
    is sent, and the summary says how many were not attempted."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from discmed.backend import load_backend
    from discmed.jobs import RunStopped, raise_for_failures

    posts: list[int] = []

    class Revoked(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._reply(200, {"object": "list", "data": [{"id": "m", "object": "model"}]})

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            posts.append(1)
            if len(posts) <= 2:
                self._reply(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": "好"},
                                               "finish_reason": "stop"}]})
            else:
                self._reply(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Revoked)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        runner = _runner(tmp_path, concurrency=1)
        api = runner.client(load_backend(f"openai:http://127.0.0.1:{server.server_port}/v1@m"), name="teacher")
        s = runner.run([(f"k{i}", f"问题{i}") for i in range(20)], _ask(api))
    finally:
        server.shutdown()
    assert s["done"] == 2 and s["failed"] == 3 and s["not_attempted"] == 15 and len(posts) == 5
    assert s["stopped"].startswith("stopped after 3 failures in a row that are the endpoint's")
    assert "refused the API key (401: Incorrect API key provided)" in s["stopped"]
    with pytest.raises(RunStopped, match="2 items done, 3 failed, 15 not attempted"):
        raise_for_failures(s)


def test_bad_input_stops_feeding_but_keeps_the_calls_in_flight(tmp_path, endpoint):
    from discmed.backend import load_backend
    from discmed.chat import DataError

    runner = _runner(tmp_path, concurrency=4)
    api = runner.client(load_backend(f"openai:{endpoint}@echo"), name="teacher")

    def items():
        for i in range(4):
            yield f"k{i}", f"在途{i}"
        raise DataError("in.jsonl", 5, "record", "not UTF-8")

    with pytest.raises(DataError, match="in.jsonl:5"):
        runner.run(items(), _ask(api))
    assert sorted(k for k, _ in runner.results()) == ["k0", "k1", "k2", "k3"]  # paid for, and kept


def test_rewrite_with_failed_records_exits_4_and_lists_them(tmp_path, endpoint):
    records = RECORDS[:3] + [{"_id": "bad", "source": "MedDialog", "conversation": [
        {"role": "user", "content": "FAULT:500 头疼"}, {"role": "assistant", "content": "休息。"}]}]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    r = discmed("data", "rewrite", src, "-o", out, "--teacher", f"openai:{endpoint}@echo", "--no-progress", "--json",
                cwd=tmp_path)
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 4, r.stderr
    assert "1 of 4 conversations failed (first: " in r.stderr and "answered 500" in r.stderr
    assert last["summary"]["failed"] == 1 and last["summary"]["failed_file"].endswith("out.jsonl.failed.jsonl")
    failed = [json.loads(x) for x in Path(last["summary"]["failed_file"]).read_text().splitlines()]
    assert [f["key"] for f in failed] == ["bad"] and failed[0]["record"]["_id"] == "bad"
    assert failed[0]["kind"] == "server"


def test_every_model_calling_command_fails_fast_on_a_dead_endpoint(tmp_path, shared_data, free_port):
    """consult, judge, rubric(s) and candidates as well as rewrite and kgqa: exit 3 within
    seconds, naming the endpoint and the cause, and writing no output."""
    dead = f"openai:http://127.0.0.1:{free_port}/v1@tiny"
    samples = shared_data / "disc-medllm" / "eval" / "samples"
    dialogues = shared_data / "disc-medllm" / "eval" / "dialogues" / "DISC-MedLLM_cmid.json"
    rubric = tmp_path / "rubrics.jsonl"
    rubric.write_text(json.dumps({"prompt_id": "0", "prompt": [{"role": "user", "content": "头疼"}], "rubrics": [
        {"criterion": "问了头疼多久", "points": 5, "tags": []}], "example_tags": []}, ensure_ascii=False) + "\n",
                      encoding="utf-8")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"_id": "p1", "source": "t", "conversation": [{"role": "user", "content": "头疼"}]},
                                  ensure_ascii=False) + "\n", encoding="utf-8")
    commands = {
        "consult": ["eval", "consult", "--doctor", dead, "--patient", dead, "--set", "cmid", "--samples", samples,
                    "--limit", "2", "--out", tmp_path / "c.json"],
        "judge": ["eval", "judge", dialogues, "--judge", dead, "--out", tmp_path / "j.jsonl"],
        "rubrics": ["eval", "rubrics", "--cases", "cmid", "--samples", samples, "--writer", dead, "--limit", "2",
                    "--out", tmp_path / "r.jsonl"],
        "rubric": ["eval", "rubric", "--rubrics", rubric, "--model", dead, "--grader", dead, "--out", tmp_path / "rb"],
        "candidates": ["data", "candidates", "--input", prompts, "--models", dead, "--db", tmp_path / "cur.sqlite"],
    }
    for name, args in commands.items():
        t0 = time.perf_counter()
        r = discmed(*args, "--json", cwd=tmp_path)
        took = time.perf_counter() - t0
        assert r.returncode == 3, (name, r.returncode, r.stderr[-1500:])
        assert f"cannot reach the OpenAI-compatible endpoint at http://127.0.0.1:{free_port}/v1" in r.stderr, name
        assert "Connection refused" in r.stderr, name
        assert took < 30, (name, took)
    assert not (tmp_path / "c.json").exists() and not (tmp_path / "j.jsonl").exists()
