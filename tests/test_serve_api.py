"""The API as its clients use it, on the shared tiny server: poisonous requests beside good
ones, /v1/completions (lm-eval's scoring path), logprobs, n, JSON mode, the operations
endpoints, and where the safety verdict goes."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

ASK = {"model": "tiny", "max_tokens": 24, "temperature": 0, "ignore_eos": True}


def root(base_url: str) -> str:
    return base_url.removesuffix("/v1")


def chat(content) -> dict:
    return {**ASK, "messages": [{"role": "user", "content": content}]}


async def stream_text(client: httpx.AsyncClient, url: str, body: dict) -> str:
    text = ""
    async with client.stream("POST", url + "/chat/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                assert "error" not in event, event
                text += "".join(c["delta"].get("content") or "" for c in event["choices"])
    return text


POISONS = [  # (route, body, the param a 400 must name, or None when it must succeed)
    ("/chat/completions", {**chat("头痛"), "seed": 2**64}, "seed"),
    ("/chat/completions", {**chat("头痛"), "seed": -(2**63) - 1}, "seed"),
    ("/chat/completions", {**chat("头痛"), "temperature": 1e-38}, None),
    ("/chat/completions", {**chat("头痛"), "temperature": 1.0, "top_p": 5e-324}, None),
    ("/chat/completions", {**chat("头痛"), "repetition_penalty": 5e-324}, None),
    ("/chat/completions", {**chat("头痛"), "temperature": 1.0, "min_p": 5e-324}, None),
    ("/chat/completions", chat([{"type": "text", "text": 5}]), "messages.0.content.0.text"),
    ("/chat/completions", chat("\ud800"), "messages.0.content"),
    ("/chat/completions", {**chat("头痛"), "response_format": {"type": "xml"}}, "response_format.type"),
    # tools on DISC's format, whose model cannot choose to call one (auto, the default with tools)
    ("/chat/completions", {**chat("头痛"), "tools": [{"type": "function", "function": {"name": "f"}}]}, "tool_choice"),
    ("/chat/completions", {**chat("头痛"), "logit_bias": {"5": 100}}, None),
    ("/completions", {**ASK, "prompt": [5, 10**9]}, "prompt"),
    # A schema nested 200 deep was a 500 (the serializer's recursion); a chat of 10,000 messages
    # held the event loop for seconds while it was checked.
    ("/chat/completions", {**chat("头痛"), "response_format": {"type": "json_schema", "json_schema": {
        "name": "deep", "schema": json.loads('{"type": "object", "properties": {"a": ' * 200 + "{}" + "}}" * 200)}}},
     "response_format.json_schema.schema"),
    ("/chat/completions", {**ASK, "messages": [{"role": "user", "content": "痛"}] * 10_000}, "messages"),
]


def test_poisonous_requests_leave_their_neighbours_untouched(tiny_server):
    good = [chat(q) for q in ("孩子发烧两天", "胃胀气，吃完饭更明显", "最近失眠")]

    async def main():
        async with httpx.AsyncClient(timeout=60) as client:
            alone = [await stream_text(client, tiny_server, g) for g in good]

            async def poison(route, body):
                # json.dumps keeps a lone surrogate as the escape "\ud800", as a client would send it
                data = json.dumps(body).encode()
                return await client.post(tiny_server + route, content=data, headers={"content-type": "application/json"})

            together = await asyncio.gather(
                *(stream_text(client, tiny_server, g) for g in good), *(poison(r, b) for r, b, _ in POISONS)
            )
            return alone, together

    alone, together = asyncio.run(main())
    assert together[:3] == alone  # every good stream finished as it does alone
    for (_route, body, param), r in zip(POISONS, together[3:], strict=True):
        if param is None:
            assert r.status_code == 200, (body, r.text)
        else:
            assert r.status_code == 400, (body, r.text)
            assert r.json()["error"]["param"] == param, r.text
            assert "Traceback" not in r.text


def test_completions_score_and_generate(tiny_server):
    client = openai.OpenAI(base_url=tiny_server, api_key="unused")
    tokenize = lambda text: httpx.post(root(tiny_server) + "/tokenize", json={"prompt": text}).json()["tokens"]  # noqa: E731
    ids, (t,) = tokenize("患者：我头痛。医生："), tokenize("您")[:1]
    greedy = client.completions.create(model="tiny", prompt=[ids], max_tokens=1, temperature=0, logprobs=5,
                                       extra_body={"ignore_eos": True, "repetition_penalty": 1.0}).choices[0].logprobs  # fmt: skip
    assert len(greedy.top_logprobs[0]) == 5
    assert greedy.token_logprobs[0] == pytest.approx(max(greedy.top_logprobs[0].values()))  # greedy took the top one
    # Generating token t (forced by logit_bias; logprobs are the model's own, before the bias)
    # and scoring the prompt followed by t (echo, max_tokens 0, as lm-eval does) agree.
    forced = client.completions.create(model="tiny", prompt=[ids], max_tokens=1, temperature=0, logprobs=0,
                                       logit_bias={str(t): 100}).choices[0].logprobs  # fmt: skip
    scored = client.completions.create(model="tiny", prompt=[ids + [t]], max_tokens=0, echo=True, logprobs=1)
    lps = scored.choices[0].logprobs
    assert lps.token_logprobs[0] is None and len(lps.token_logprobs) == len(ids) + 1
    assert lps.token_logprobs[-1] == pytest.approx(forced.token_logprobs[0], abs=1e-4)
    assert forced.token_logprobs[0] < greedy.token_logprobs[0] or t == greedy.tokens[0]
    assert scored.usage.completion_tokens == 0 and scored.usage.prompt_tokens == len(ids) + 1

    many = client.completions.create(model="tiny", prompt=["头痛", "发烧"], max_tokens=4, temperature=0, n=2)
    assert [c.index for c in many.choices] == [0, 1, 2, 3]
    assert many.choices[0].text == many.choices[1].text  # greedy: the n choices agree
    sampled = dict(model="tiny", prompt="头痛", max_tokens=8, temperature=1.0, n=3, seed=11)
    a = [c.text for c in client.completions.create(**sampled).choices]
    assert a == [c.text for c in client.completions.create(**sampled).choices]  # seeded: repeatable
    assert len(set(a)) > 1  # each choice draws with its own seed

    # Streamed, two prompts: each index's chunks join to its unstreamed text, in one response
    # id, each index ends once with its finish reason, and usage comes last.
    ask = dict(model="tiny", prompt=["头痛", "发烧了"], max_tokens=12, temperature=0, extra_body={"ignore_eos": True})
    whole = client.completions.create(**ask)
    chunks = list(client.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1 and all(c.object == "text_completion" for c in chunks)
    for choice in whole.choices:
        mine = [c.choices[0] for c in chunks if c.choices and c.choices[0].index == choice.index]
        assert "".join(x.text for x in mine) == choice.text
        assert [x.finish_reason for x in mine if x.finish_reason] == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 24


def test_chat_logprobs_and_n(tiny_server):
    client = openai.OpenAI(base_url=tiny_server, api_key="unused")
    r = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "咳嗽怎么办"}], max_tokens=6, temperature=0, logprobs=True,
        top_logprobs=3, n=2, extra_body={"ignore_eos": True, "repetition_penalty": 1.0},
    )  # fmt: skip
    assert len(r.choices) == 2 and r.choices[0].message.content == r.choices[1].message.content
    content = r.choices[0].logprobs.content
    assert len(content) == 6 and r.usage.completion_tokens == 12
    for t in content:
        assert len(t.top_logprobs) == 3
        assert [x.logprob for x in t.top_logprobs] == sorted((x.logprob for x in t.top_logprobs), reverse=True)
        assert t.logprob == pytest.approx(t.top_logprobs[0].logprob)  # greedy
    assert bytes(b for t in content for b in t.bytes).decode("utf-8", "replace").startswith(r.choices[0].message.content[:2])


def test_json_mode_returns_valid_json(tiny_server):
    client = openai.OpenAI(base_url=tiny_server, api_key="unused")
    schema = {
        "type": "object",
        "properties": {
            "score": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
            "urgent": {"type": "boolean"},
            "reason": {"type": "string", "maxLength": 12},
        },
        "required": ["score", "urgent", "reason"],
        "additionalProperties": False,
    }
    messages = [{"role": "user", "content": "请给这段回答打分：多喝水，注意休息。"}]
    for seed in (1, 2):
        r = client.chat.completions.create(
            model="tiny", messages=messages, max_tokens=120, temperature=1.0, seed=seed,
            response_format={"type": "json_schema", "json_schema": {"name": "grade", "schema": schema}},
        )  # fmt: skip
        value = json.loads(r.choices[0].message.content)
        assert set(value) == {"score", "urgent", "reason"} and value["score"] in range(1, 6)
        assert isinstance(value["urgent"], bool) and len(value["reason"]) <= 12
        assert r.choices[0].finish_reason == "stop"
    obj = client.chat.completions.create(model="tiny", messages=messages, max_tokens=200, temperature=0,
                                         response_format={"type": "json_object"})  # fmt: skip
    if obj.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(obj.choices[0].message.content), dict)
    bad = httpx.post(tiny_server + "/chat/completions", json={**chat("头痛"), "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "nonsense"}}}})
    assert bad.status_code == 400 and bad.json()["error"]["param"].startswith("response_format")


def test_operations_endpoints(tiny_server):
    base = root(tiny_server)
    r = httpx.post(tiny_server + "/chat/completions", json=chat("胸口压榨样疼痛，出冷汗"), headers={"X-Request-Id": "abc-123"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc-123"
    made = httpx.get(tiny_server + "/models").headers["x-request-id"]
    assert len(made) == 32 and made != "abc-123"

    assert httpx.get(base + "/version").json()["model"] == "tiny"
    assert httpx.get(tiny_server + "/models/tiny").json()["id"] == "tiny"
    assert httpx.get(tiny_server + "/models/gpt-4").status_code == 404
    tok = httpx.post(base + "/tokenize", json={"prompt": "头痛发热"}).json()
    assert tok["count"] == len(tok["tokens"]) > 0
    assert httpx.post(base + "/detokenize", json={"tokens": tok["tokens"]}).json()["prompt"].endswith("头痛发热")
    msgs = httpx.post(base + "/tokenize", json={"messages": [{"role": "user", "content": "头痛"}]}).json()
    assert msgs["count"] > tok["count"] - 4  # the chat format's markers around the text
    assert httpx.post(base + "/detokenize", json={"tokens": [10**9]}).status_code == 400

    schema = httpx.get(base + "/openapi.json").json()
    responses = schema["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"200", "400", "404", "413", "429", "500"} <= set(responses) and "422" not in responses
    assert "Retry-After" in responses["429"]["headers"]
    assert "/v1/completions" in schema["paths"] and "/tokenize" in schema["paths"]

    text = httpx.get(base + "/metrics").text
    metric = lambda line: float(next(x for x in text.splitlines() if x.startswith(line)).rsplit(" ", 1)[1])  # noqa: E731
    assert metric('discmed_requests_total{route="/v1/chat/completions",status="200"}') >= 1
    assert metric("discmed_time_to_first_token_seconds_count") >= 1
    assert metric('discmed_safety_verdicts_total{verdict="urgent"}') >= 1
    assert metric("discmed_generation_tokens_total") >= 24 and metric("discmed_prompt_tokens_total") > 0
    for name in ("discmed_queue_depth", "discmed_running_batch", "discmed_cancelled_requests_total",
                 'discmed_request_latency_seconds_bucket{le="0.5",route="/v1/chat/completions"}'):  # fmt: skip
        metric(name)


def test_safety_verdict_always_travels_and_the_prefix_is_counted(tiny_server):
    urgent = chat("胸口压榨样疼痛，出冷汗")
    on = httpx.post(tiny_server + "/chat/completions", json=urgent).json()
    off = httpx.post(tiny_server + "/chat/completions", json={**urgent, "safety": False}).json()
    header = httpx.post(tiny_server + "/chat/completions", json=urgent, headers={"X-Discmed-Safety": "off"}).json()
    for r in (on, off, header):
        assert r["safety"]["urgent"] is True and r["safety"]["reasons"]  # the verdict, always
    prefix = on["choices"][0]["message"]["content"].removesuffix(off["choices"][0]["message"]["content"])
    assert prefix.startswith("【紧急】") and off == {**off, "choices": header["choices"]}
    n = httpx.post(root(tiny_server) + "/tokenize", json={"prompt": prefix, "add_special_tokens": False}).json()["count"]
    assert on["usage"]["completion_tokens"] == off["usage"]["completion_tokens"] + n

    # discmed's openai backend (doctor, patient, teacher, judge) gets the model's own text.
    from discmed.backend import GenParams, load_backend

    backend = load_backend(f"openai:{tiny_server}@tiny")
    text = backend.chat([urgent["messages"]], GenParams(max_new_tokens=24, temperature=0))[0]
    assert not text.startswith("【紧急】")


def test_tokenizing_a_megabyte_does_not_hold_other_requests(tiny_server):
    """Four 1 MB /tokenize calls at once (the body limit): tokenizing runs in threads, so a
    health probe and a chat request beside them are answered while they work."""
    import threading
    import time

    big = {"model": "tiny", "prompt": "头痛发热" * 87_000}  # ~1 MB of UTF-8, under the body limit
    done: list[float] = []

    def tokenize():
        t0 = time.perf_counter()
        r = httpx.post(root(tiny_server) + "/tokenize", json=big, timeout=120)
        assert r.status_code == 200 and r.json()["count"] > 1000
        done.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=tokenize) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # the four are being read and tokenized
    t0 = time.perf_counter()
    assert httpx.get(root(tiny_server) + "/health", timeout=30).status_code == 200
    health_s = time.perf_counter() - t0
    r = httpx.post(tiny_server + "/chat/completions", json={**chat("头痛"), "max_tokens": 2}, timeout=60)
    chat_s = time.perf_counter() - t0
    for t in threads:
        t.join()
    assert r.status_code == 200
    # Not a timing goal: only that neither waited for all four tokenizations to end.
    assert health_s < max(done) and chat_s < sum(done), (health_s, chat_s, done)


def test_a_client_that_sends_its_headers_slowly_is_dropped(tiny_server):
    """Half-open connections (a request head a byte at a time) are closed after the server's
    --header-timeout (10 s by default), while a normal request goes through beside them."""
    import socket
    import time
    from urllib.parse import urlparse

    u = urlparse(tiny_server)
    slow = []
    for _ in range(40):
        c = socket.create_connection((u.hostname, u.port), timeout=30)
        c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        slow.append(c)
    assert httpx.get(root(tiny_server) + "/health").status_code == 200
    t0 = time.perf_counter()
    for c in slow:
        assert c.recv(100) == b""  # closed by the server
        c.close()
    assert 5 < time.perf_counter() - t0 < 25


def test_a_conversations_next_turn_comes_from_the_prefix_cache(tiny_server):
    """The second turn of a conversation (the first turn's messages, the reply, a new message)
    runs only its new tokens: /metrics counts the prompt tokens the prefix cache saved."""
    base = root(tiny_server)

    def saved() -> float:
        text = httpx.get(base + "/metrics").text
        return float(next(x for x in text.splitlines() if x.startswith("discmed_prefix_cache_tokens_total")).rsplit(" ", 1)[1])

    first = [{"role": "user", "content": "我今年四十五岁，最近两周晚上睡觉总是咳嗽，白天还好，没有发烧，"
                                        "家里养了一只猫，以前没有哮喘病史，想问问是什么原因，需要做什么检查？"}]
    before = saved()
    reply = httpx.post(tiny_server + "/chat/completions", json={**ASK, "messages": first}).json()
    answer = reply["choices"][0]["message"]["content"]
    prompt = reply["usage"]["prompt_tokens"]
    second = first + [{"role": "assistant", "content": answer}, {"role": "user", "content": "那需要拍胸片吗？"}]
    again = httpx.post(tiny_server + "/chat/completions", json={**ASK, "messages": second})
    assert again.status_code == 200
    # at least the first turn's prompt but its last few template tokens came from the cache
    assert saved() - before >= prompt - 8 > 24, (saved() - before, prompt)
