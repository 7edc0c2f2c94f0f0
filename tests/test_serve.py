"""The API server, end to end: a real `discmed serve` subprocess on a free loopback port, called
with the official openai client (sync, async, streaming) and with raw HTTP for the error cases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai
import pytest

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def serve(*args: str, env: dict | None = None):
    """`discmed serve --model tiny ARGS` on a free port; yields its root URL. The start-up wait
    follows the server's progress, and a failed start shows the server's log tail."""
    from discmed.process import free_port, running

    port = free_port()
    cmd = [sys.executable, "-m", "discmed.cli", "serve", "--model", "tiny", "--port", str(port), *args]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp, running(cmd, url + "/health", Path(tmp) / "serve.log", env=env, cwd=ROOT):
        yield url


def root(base_url: str) -> str:
    return base_url.removesuffix("/v1")


def assert_error(r: httpx.Response, status: int, *words: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    assert "Traceback" not in r.text
    for w in words:
        assert w in body["error"]["message"], body
    return body["error"]


# -- the openai client -----------------------------------------------------------------------


def test_models_and_health(tiny_server):
    client = openai.OpenAI(base_url=tiny_server, api_key="unused")
    assert [m.id for m in client.models.list().data] == ["tiny"]
    health = httpx.get(root(tiny_server) + "/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny"


def test_chat_sync_and_streaming_agree(tiny_server):
    client = openai.OpenAI(base_url=tiny_server, api_key="unused")
    messages = [{"role": "user", "content": "我最近有点咳嗽，晚上更明显，怎么办？"}]
    done = client.chat.completions.create(model="tiny", messages=messages, max_tokens=24, temperature=0)
    choice = done.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert done.usage.prompt_tokens > 5 and 1 <= done.usage.completion_tokens <= 24
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    assert done.model == "tiny" and done.id.startswith("chatcmpl-")

    stream = client.chat.completions.create(
        model="tiny",
        messages=messages,
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == choice.message.content  # greedy: the same reply either way
    assert finishes == [choice.finish_reason]
    assert chunks[-1].usage.completion_tokens == done.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == done.usage.prompt_tokens


def test_sampling_parameters(tiny_server):
    client = openai.OpenAI(base_url=tiny_server, api_key="unused")
    messages = [{"role": "user", "content": "头痛两天了"}]
    kw = dict(model="tiny", messages=messages, max_tokens=16, temperature=1.2, top_p=0.9)
    a = client.chat.completions.create(seed=7, **kw).choices[0].message.content
    b = client.chat.completions.create(seed=7, **kw).choices[0].message.content
    assert a == b  # a seed makes sampling repeatable
    one = client.chat.completions.create(model="tiny", messages=messages, max_tokens=1, temperature=0)
    assert one.usage.completion_tokens == 1 and one.choices[0].finish_reason == "length"
    # A stop string cuts the reply before it: take a piece of the greedy reply as the stop.
    greedy = dict(
        model="tiny", messages=messages, max_tokens=30, temperature=0, extra_body={"ignore_eos": True}
    )
    text = client.chat.completions.create(**greedy).choices[0].message.content
    assert len(text) >= 6
    stop = text[3:6]
    cut = client.chat.completions.create(**greedy, stop=[stop])
    assert cut.choices[0].message.content == text[: text.find(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_async_clients_are_batched_together(tiny_server):
    async def main():
        client = openai.AsyncOpenAI(base_url=tiny_server, api_key="unused")
        questions = [f"第{i}个问题：胃不舒服，吃完饭胀气，怎么办？" for i in range(8)]

        async def ask(q):
            r = await client.chat.completions.create(
                model="tiny",
                messages=[{"role": "user", "content": q}],
                max_tokens=48,
                temperature=0,
                extra_body={"ignore_eos": True},
            )
            return r.usage.completion_tokens

        return await asyncio.gather(*(ask(q) for q in questions))

    assert asyncio.run(main()) == [48] * 8
    health = httpx.get(root(tiny_server) + "/health").json()
    assert health["max_batch_seen"] > 1  # requests that arrived together shared a batch


def test_joining_a_running_batch_does_not_change_a_reply(tiny_server):
    client = openai.OpenAI(base_url=tiny_server, api_key="unused")
    ask = dict(
        model="tiny",
        messages=[{"role": "user", "content": "孩子发烧两天，咳嗽，精神还可以"}],
        max_tokens=40,
        temperature=0,
    )
    alone = client.chat.completions.create(**ask).choices[0].message.content
    long = {"model": "tiny", "messages": [{"role": "user", "content": "请详细介绍一下高血压的治疗"}], "max_tokens": 800,
            "stream": True, "ignore_eos": True, "temperature": 0}  # fmt: skip
    with httpx.stream("POST", tiny_server + "/chat/completions", json=long, timeout=60) as r:
        lines = r.iter_lines()
        for _ in range(8):  # the long reply is under way
            next(lines)
        joined = client.chat.completions.create(**ask).choices[0].message.content
        assert httpx.get(root(tiny_server) + "/health").json()["load"] == 1  # the long one still runs
    assert joined == alone  # its KV cache was stacked onto the running batch's, padded: same reply


def test_safety_layer_on_the_api(tiny_server):
    client = openai.OpenAI(base_url=tiny_server, api_key="unused")
    r = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "胸口压榨样疼痛，出冷汗"}], max_tokens=8
    )
    assert r.choices[0].message.content.startswith("【紧急】") and "120" in r.choices[0].message.content
    safety = r.model_extra["safety"]
    assert safety["urgent"] is True and safety["reasons"] and "不能替代医生" in safety["notice"]
    en = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "I want to kill myself"}], max_tokens=8
    )
    assert en.choices[0].message.content.startswith("[URGENT]")
    off = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "胸口压榨样疼痛，出冷汗"}],
        max_tokens=8,
        extra_body={"safety": False},
    )
    assert not off.choices[0].message.content.startswith("【紧急】") and off.model_extra["safety"]["urgent"]
    routine = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "我想减肥，每天跑步多久合适"}], max_tokens=8
    )
    assert routine.model_extra["safety"]["urgent"] is False
    assert not routine.choices[0].message.content.startswith("【紧急】")


# -- errors: every one a 4xx in OpenAI's shape -----------------------------------------------


def test_errors(tiny_server):
    url = tiny_server + "/chat/completions"
    ok = {"model": "tiny", "messages": [{"role": "user", "content": "你好"}], "max_tokens": 4}
    post = lambda body, **kw: httpx.post(url, json=body, timeout=30, **kw)  # noqa: E731

    assert_error(
        httpx.post(
            url, content=b'{"model": "tiny", "messages": [', headers={"content-type": "application/json"}
        ),
        400,
        "JSON",
    )
    assert_error(httpx.post(url, content=b"[1, 2]", headers={"content-type": "application/json"}), 400)
    e = assert_error(post({**ok, "model": "gpt-4"}), 404, "gpt-4", "tiny")
    assert e["code"] == "model_not_found" and e["param"] == "model"
    assert_error(post({**ok, "messages": [{"role": "doctor", "content": "hi"}]}), 400, "messages.0.role")
    assert_error(post({**ok, "messages": []}), 400, "messages")
    assert_error(post({"model": "tiny"}), 400, "messages")
    assert_error(
        post({**ok, "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
        400,
        "user",
    )
    assert_error(
        post({**ok, "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}),
        400,
        "messages",
    )
    assert_error(post({**ok, "temperature": 5}), 400, "temperature")
    assert_error(post({**ok, "top_p": 0}), 400, "top_p")
    assert_error(post({**ok, "max_tokens": 0}), 400, "max_tokens")
    assert_error(post({**ok, "max_tokens": "many"}), 400, "max_tokens")
    assert_error(post({**ok, "n": 17}), 400, "n")
    assert_error(post({**ok, "top_logprobs": 2}), 400, "top_logprobs")
    assert_error(post({**ok, "presence_penalty": 2.5}), 400, "presence_penalty")
    assert_error(post({**ok, "functions": [{"name": "f"}]}), 400, "functions")
    assert_error(post({**ok, "tool_choice": "required"}), 400, "tool_choice")
    assert_error(post({**ok, "logit_bias": {"x": 1}}), 400, "logit_bias")
    assert_error(post({**ok, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}), 400, "messages.0.content.0.type")
    assert post({**ok, "presence_penalty": 0, "frequency_penalty": 0, "logprobs": False}).status_code == 200
    assert_error(post({**ok, "stop": ["a", "b", "c", "d", "e"]}), 400, "stop")
    limit = httpx.get(tiny_server + "/models").json()["data"][0]["max_model_len"]
    long = {**ok, "messages": [{"role": "user", "content": "头痛发热咳嗽" * limit}]}
    e = assert_error(post(long), 400, str(limit), "context length")
    assert e["code"] == "context_length_exceeded"
    assert_error(post({**ok, "max_tokens": limit}), 400, str(limit))
    assert_error(
        httpx.post(url, content=b"x" * (2 << 20), headers={"content-type": "application/json"}),
        413,
        "too large",
    )

    def chunked():  # no content-length: the limit holds while the body streams in
        yield b'{"model": "tiny", "messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"a" * 65536
        yield b'"}]}'

    assert_error(
        httpx.post(url, content=chunked(), headers={"content-type": "application/json"}), 413, "too large"
    )
    assert_error(httpx.get(tiny_server + "/nothing-here"), 404)
    assert_error(httpx.get(url), 405)
    assert post(ok).status_code == 200  # and the server is still fine


def test_client_disconnect_stops_generation(tiny_server):
    health = lambda: httpx.get(root(tiny_server) + "/health").json()  # noqa: E731
    before = health()["cancelled"]
    body = {"model": "tiny", "messages": [{"role": "user", "content": "请详细介绍一下高血压"}], "max_tokens": 1500,
            "stream": True, "ignore_eos": True}  # fmt: skip
    with httpx.stream("POST", tiny_server + "/chat/completions", json=body, timeout=30) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]
        assert got[0].startswith("data: ")
    # The client hung up after a few tokens of 1500: the engine drops the request at once.
    deadline = time.time() + 10
    while (h := health())["cancelled"] == before or h["load"] != 0:
        assert time.time() < deadline, h
        time.sleep(0.1)

    # The same without streaming: a client that gives up waiting for the whole reply.
    before = health()["cancelled"]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(tiny_server + "/chat/completions", json={**body, "stream": False}, timeout=1.0)
    deadline = time.time() + 10
    while (h := health())["cancelled"] == before or h["load"] != 0:
        assert time.time() < deadline, h
        time.sleep(0.1)


@pytest.mark.slow  # starts a second server
def test_api_key_and_full_queue():
    with serve("--api-key", "s3cret-key", "--max-queue", "1", "--max-batch", "1") as url:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "你好"}], "max_tokens": 2}
        e = assert_error(httpx.post(url + "/v1/chat/completions", json=body), 401, "API key")
        assert e["type"] == "authentication_error"
        assert_error(httpx.get(url + "/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
        assert httpx.get(url + "/health").status_code == 200  # health stays open for probes
        assert httpx.get(url + "/").status_code == 200  # and the page, which asks for the key
        # Everything else needs the key, not only /v1/*: tokenizing is work, metrics say what is served.
        for method, path, payload in (("POST", "/tokenize", {"prompt": "你好"}), ("POST", "/detokenize", {"tokens": [1]}),
                                      ("GET", "/metrics", None), ("GET", "/openapi.json", None)):
            r = httpx.request(method, url + path, json=payload)
            assert r.status_code == 401, (path, r.status_code)
        keyed = httpx.post(url + "/tokenize", json={"prompt": "你好"}, headers={"Authorization": "Bearer s3cret-key"})
        assert keyed.status_code == 200 and keyed.json()["count"] >= 1
        client = openai.OpenAI(base_url=url + "/v1", api_key="s3cret-key")
        assert client.chat.completions.create(**body).usage.completion_tokens >= 1
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="nope").models.list()

        # One request generating fills the queue of one: the next is told to come back later.
        long = {**body, "max_tokens": 1500, "stream": True, "ignore_eos": True}
        auth = {"Authorization": "Bearer s3cret-key"}
        with httpx.stream("POST", url + "/v1/chat/completions", json=long, headers=auth, timeout=30) as r:
            lines = r.iter_lines()  # keep a reference: a collected iterator closes the connection
            next(lines)
            full = httpx.post(url + "/v1/chat/completions", json=body, headers=auth)
            e = assert_error(full, 429, "busy")
            assert e["type"] == "rate_limit_error" and 1 <= int(full.headers["retry-after"]) <= 60
            with pytest.raises(openai.RateLimitError):
                openai.OpenAI(
                    base_url=url + "/v1", api_key="s3cret-key", max_retries=0
                ).chat.completions.create(**body)
            assert httpx.get(url + "/health").json()["load"] == 1


@pytest.mark.parametrize("key, says", [("", "pass --api-key"), (" ", "blank or has spaces"),
                                       ("short", "at least 16 characters")], ids=["none", "a-space", "short"])
def test_binding_beyond_loopback_needs_a_real_key(key, says):
    r = subprocess.run(
        [sys.executable, "-m", "discmed.cli", "serve", "--model", "tiny", "--host", "0.0.0.0", "--port", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, "DISCMED_API_KEY": key},
    )  # fmt: skip
    assert r.returncode == 2 and says in r.stderr, r.stderr


def test_page_is_served(tiny_server):
    r = httpx.get(root(tiny_server) + "/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "不是医生" in r.text and 'name="viewport"' in r.text
    assert httpx.get(root(tiny_server) + "/static/app.js").status_code == 200
    assert json.loads(httpx.get(root(tiny_server) + "/health").text)["safety"] is True


def test_vllm_engine_says_what_it_needs(tmp_path):
    import importlib.util

    from discmed.backend import BackendError, load_backend
    from discmed.backends.vllm import vllm_quantization
    from discmed.serve.vllm import served_model

    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(BackendError, match=r"discmed\[vllm\]"):
            load_backend(f"vllm:{tmp_path}")
        with pytest.raises(BackendError, match="GPU"):
            served_model(f"hf:{tmp_path}")
    assert vllm_quantization("int4") == {"quantization": "bitsandbytes"}
    with pytest.raises(BackendError, match="4 bits only"):
        vllm_quantization("int8")
