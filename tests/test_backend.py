"""Backends: the hf backend on the tiny model; the openai backend against real loopback servers."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from discmed.backend import BackendError, GenParams, load_backend, parse_spec
from discmed.backends.openai import split_target

CONSULT = [{"role": "user", "content": "医生您好，我咳嗽三天了，有点发烧，怎么办？"}]
OTHER = [
    {"role": "user", "content": "我血压有点高"},
    {"role": "assistant", "content": "您好，请问具体是多少？"},
    {"role": "user", "content": "150/95mmHg，头有点晕。"},
]


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return load_backend(f"hf:{tiny_model}", name="tiny")


def test_spec_parsing():
    assert parse_spec("tiny") == ("tiny", "")
    assert parse_spec("hf:Qwen/Qwen2.5-7B-Instruct") == ("hf", "Qwen/Qwen2.5-7B-Instruct")
    assert parse_spec("/models/disc") == ("hf", "/models/disc")
    assert parse_spec("openai:http://127.0.0.1:8000/v1@tiny") == ("openai", "http://127.0.0.1:8000/v1@tiny")
    assert split_target("http://127.0.0.1:8000/v1@tiny") == ("http://127.0.0.1:8000/v1", "tiny")
    assert split_target("http://127.0.0.1:8000/v1") == ("http://127.0.0.1:8000/v1", None)


def test_tiny_uses_disc_format(tiny):
    assert tiny.format.name == "disc"
    ids = tiny.prompt_ids(CONSULT, GenParams(max_new_tokens=32))
    assert ids[0] == tiny.tokenizer.bos_token_id and ids[1] == 195 and ids[-1] == 196


def test_stream_equals_chat_under_greedy(tiny):
    params = GenParams(max_new_tokens=48)
    for messages in (CONSULT, OTHER):
        whole = tiny.chat([messages], params)[0]
        streamed = list(tiny.stream(messages, params))
        assert "".join(streamed) == whole
        assert whole.strip(), "the tiny model answered nothing"
        assert len(streamed) > 1  # it really streamed


def test_batched_equals_single(tiny):
    params = GenParams(max_new_tokens=24)
    batch = tiny.chat([CONSULT, OTHER], params)
    assert batch == [tiny.chat([CONSULT], params)[0], tiny.chat([OTHER], params)[0]]


def test_stop_strings_and_seeded_sampling(tiny):
    whole = tiny.chat([CONSULT], GenParams(max_new_tokens=48))[0]
    stop = whole[4:6]
    cut = tiny.chat([CONSULT], GenParams(max_new_tokens=48, stop=[stop]))[0]
    assert cut == whole[: whole.find(stop)]
    assert "".join(tiny.stream(CONSULT, GenParams(max_new_tokens=48, stop=[stop]))) == cut
    sampled = GenParams(max_new_tokens=24, temperature=1.0, top_p=0.9, seed=7)
    assert tiny.chat([CONSULT], sampled) == tiny.chat([CONSULT], sampled)


def test_closing_stream_stops_generation(tiny):
    it = tiny.stream(CONSULT, GenParams(max_new_tokens=400))
    next(it)
    it.close()  # must return promptly and release the model for the next request
    assert tiny.chat([CONSULT], GenParams(max_new_tokens=4))[0] is not None


def test_choice_logprobs_equal_direct_forward(tiny):
    header = "以下是关于临床知识的单项选择题，请直接给出正确答案的选项。\n\n题目：发热最常见的原因是\nA. 感染\nB. 肿瘤\n答案：A\n\n"
    prompts = [
        "高血压患者应限制摄入的是\nA. 钠盐\nB. 维生素C\n答案：",
        "问：感冒发烧吗？\n答案：",
        header + "题目：糖尿病患者应监测\nA. 血糖\nB. 视力\n答案：",  # these two share a long prefix,
        header + "题目：哮喘急性发作首选\nA. 吸入短效β2受体激动剂\nB. 口服抗生素\n答案：",  # run once
    ]
    choices = ["A", "B", "C", "D"]
    got = tiny.choice_logprobs(prompts, choices)
    # A batch whose rows share a long prefix runs it once through a shared KV cache: same numbers.
    shared = tiny.choice_logprobs(prompts[2:], choices)
    for row, expected in zip(shared, got[2:], strict=True):
        assert row == pytest.approx(expected, abs=1e-4)
    tok, model = tiny.tokenizer, tiny.model
    for prompt, row in zip(prompts, got, strict=True):
        ctx = tok(prompt, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ctx])).logits[0, -1]
        lp = torch.log_softmax(logits.float(), -1)
        for choice, value in zip(choices, row, strict=True):
            cont = tok(prompt + choice, add_special_tokens=False)["input_ids"][len(ctx) :]
            assert len(cont) == 1
            assert value == pytest.approx(lp[cont[0]].item(), abs=1e-4)
    # Multi-token continuations are scored as sums over their tokens.
    multi = tiny.choice_logprobs(["问：发烧怎么办？答："], ["多喝水", "立即去医院急诊"])
    assert all(v < 0 for v in multi[0])


def test_default_params_from_generation_config(tiny):
    p = tiny.default_params()
    assert p.max_new_tokens == 128 and p.repetition_penalty == pytest.approx(1.1) and p.temperature == 0.0


# -- openai backend ------------------------------------------------------------------------


class Flaky(BaseHTTPRequestHandler):
    """An OpenAI-shaped endpoint that answers 429 and 503 before it answers."""

    failures: list[int] = []
    seen: list[dict] = []
    refuse_response_format = False  # as hosted APIs that know no json_schema answer it

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        if type(self).failures:
            code = type(self).failures.pop(0)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(json.dumps({"error": {"message": "busy", "type": "rate_limit"}}).encode())
            return
        if type(self).refuse_response_format and "response_format" in body:
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            message = "This response_format type is unavailable now"
            self.wfile.write(json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode())
            return
        reply = {
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "回声：" + body["messages"][-1]["content"]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }  # fmt: skip
        data = json.dumps(reply, ensure_ascii=False).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_openai_retries_429_and_5xx():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        Flaky.failures[:] = [429, 503]
        Flaky.seen.clear()
        b = load_backend(f"openai:http://127.0.0.1:{server.server_port}/v1@m1", max_retries=3)
        out = b.chat([CONSULT], GenParams(max_new_tokens=8, top_k=5, repetition_penalty=1.1))
        assert out == ["回声：" + CONSULT[0]["content"]]
        assert len(Flaky.seen) == 3  # two refusals, then the answer
        assert Flaky.seen[-1]["max_tokens"] == 8 and Flaky.seen[-1]["top_k"] == 5
        assert b.usage == {"prompt_tokens": 3, "completion_tokens": 4, "requests": 1}
        Flaky.failures[:] = [500, 500, 500]
        with pytest.raises(BackendError, match="answered 500"):
            load_backend(f"openai:http://127.0.0.1:{server.server_port}/v1@m1", max_retries=2).chat([CONSULT], GenParams())
    finally:
        server.shutdown()


def test_openai_json_schema_is_sent_and_dropped_once_refused():
    """GenParams.json_schema goes out as response_format; an endpoint that refuses it (a 400
    naming it) gets the request again without, and is not asked for it again: sync and async."""
    import asyncio

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
    params = GenParams(max_new_tokens=8, json_schema=schema)
    url = f"openai:http://127.0.0.1:{server.server_port}/v1@m1"
    try:
        Flaky.failures[:], Flaky.refuse_response_format = [], False
        Flaky.seen.clear()
        load_backend(url).chat([CONSULT], params)
        assert Flaky.seen[-1]["response_format"] == {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
        Flaky.refuse_response_format = True
        for call in ("sync", "async"):
            Flaky.seen.clear()
            b = load_backend(url, max_retries=0)
            def run(b=b, call=call) -> str:
                return b.chat([CONSULT], params)[0] if call == "sync" else asyncio.run(b.achat(CONSULT, params))

            assert run() == "回声：" + CONSULT[0]["content"]
            assert ["response_format" in x for x in Flaky.seen] == [True, False] and not b.json_mode
            assert run() and "response_format" not in Flaky.seen[-1] and len(Flaky.seen) == 3
        # A 400 about anything else is the caller's error, not a reason to drop the schema.
        Flaky.refuse_response_format, Flaky.failures[:] = False, [400]
        b = load_backend(url, max_retries=0)
        with pytest.raises(BackendError, match="answered 400"):
            b.chat([CONSULT], params)
        assert b.json_mode
    finally:
        Flaky.refuse_response_format = False
        server.shutdown()


def test_openai_unreachable_is_clear(free_port):
    b = load_backend(f"openai:http://127.0.0.1:{free_port}/v1@tiny", max_retries=0, timeout=5)
    with pytest.raises(BackendError, match=rf"cannot reach .*127.0.0.1:{free_port}.*is the server running"):
        b.chat([CONSULT], GenParams())
    with pytest.raises(BackendError, match=rf"cannot reach .*127.0.0.1:{free_port}"):
        b.choice_logprobs(["q"], ["A"])  # scored through the server's /tokenize and /v1/completions


def test_openai_backend_against_discmed_server(tiny_server, tiny):
    """The end-to-end check of both: the openai backend talking to `discmed serve` on the tiny model."""
    api = load_backend(f"openai:{tiny_server}")  # no model named: the server's only model is used
    assert api.model == "tiny"
    # Parameters a request leaves out are the model's own defaults on the server (repetition
    # penalty 1.1 for the tiny model), as on vLLM: name them to compare with the local backend.
    params = GenParams(max_new_tokens=24, repetition_penalty=1.1)
    replies = api.chat([CONSULT, OTHER], params)
    assert replies == [tiny.chat([m], params)[0] for m in (CONSULT, OTHER)]  # same model, format, greedy reply
    assert "".join(api.stream(CONSULT, params)) == replies[0]
    assert api.usage["requests"] >= 2 and api.usage["completion_tokens"] > 0


def test_backends_know_nothing_of_the_server():
    """The contract's implementations stand alone: nothing in backends/, in the engines under them
    (discmed/engine/, vLLM's adapter included) or in the job engine that calls them imports serve."""
    import ast
    from pathlib import Path

    import discmed

    root = Path(discmed.__file__).parent
    for path in [*sorted((root / "backends").glob("*.py")), *sorted((root / "engine").glob("*.py")),
                 root / "backend.py", root / "jobs.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            assert not any(n.startswith("discmed.serve") for n in names), f"{path.name} imports {names}"


async def _achat_twice(backend):
    import asyncio

    params = GenParams(max_new_tokens=4)
    return await asyncio.gather(*(backend.achat([{"role": "user", "content": q}], params) for q in ("头疼", "咳嗽")))


def test_achat_is_the_contract_for_every_backend(tiny):
    """The job engine's way in: achat on a local backend gives what chat gives (batched together)."""
    import asyncio

    params = GenParams(max_new_tokens=4)
    want = tiny.chat([[{"role": "user", "content": "头疼"}], [{"role": "user", "content": "咳嗽"}]], params)
    assert asyncio.run(_achat_twice(tiny)) == want
    assert tiny.identity.startswith("tiny-") and "@" in tiny.identity


def test_hf_backend_holds_replies_to_a_json_schema(tiny):
    """GenParams.json_schema on the local model: every row of a left-padded batch, greedy and
    seeded-sampled, is JSON valid for the schema and ends there (the stop token is forced
    once the value is complete); stream gives the same text as chat, and a schema the
    grammar library cannot compile is a clear error naming it."""
    schema = {
        "type": "object",
        "properties": {"urgent": {"type": "boolean"}, "score": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
                       "reason": {"type": "string", "maxLength": 6}},
        "required": ["urgent", "score", "reason"],
        "additionalProperties": False,
    }  # fmt: skip
    chats = [CONSULT, OTHER, [{"role": "user", "content": "胸痛"}]]
    for params in (GenParams(max_new_tokens=60, json_schema=schema),
                   GenParams(max_new_tokens=60, temperature=1.0, top_k=50, seed=7, json_schema=schema)):  # fmt: skip
        batch = tiny.chat(chats, params)
        for text in batch:
            value = json.loads(text)
            assert list(value) == ["urgent", "score", "reason"] and isinstance(value["urgent"], bool)
            assert value["score"] in range(1, 6) and len(value["reason"]) <= 6
        assert batch == [tiny.chat([c], params)[0] for c in chats]  # left padding changes nothing
        assert "".join(tiny.stream(chats[0], params)) == batch[0]
    free = tiny.chat([CONSULT], GenParams(max_new_tokens=20))[0]
    assert not free.startswith("{")  # the schema, not the model, made the JSON
    with pytest.raises(BackendError, match="json_schema"):
        tiny.chat([CONSULT], GenParams(max_new_tokens=4, json_schema={"type": "nonsense"}))


def test_frequency_and_presence_penalties_alike_in_chat_and_serve(tiny, tiny_server):
    """OpenAI's frequency and presence penalties, in the shared sampler: a token generated k
    times loses k × frequency + presence from its logit, prompt tokens do not count. The same
    request gives the same text in process and through `discmed serve`, and the penalized
    reply repeats itself less than the plain one."""
    from collections import Counter

    from discmed.engine.sampler import sample

    logits = torch.tensor([[2.0, 1.9, 0.0], [2.0, 1.9, 0.0]])
    counts = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    penalized = [GenParams(frequency_penalty=0.2), GenParams(presence_penalty=0.2)]
    assert sample(logits, penalized, None, counts=counts)[0] == [1, 0]  # row 2 generated nothing yet
    assert sample(logits, [GenParams(), GenParams()], None, counts=counts)[0] == [0, 0]

    api = load_backend(f"openai:{tiny_server}@tiny")
    # A repetition penalty left at 1.0 is not sent, and the server would use the model's 1.1.
    plain = GenParams(max_new_tokens=40, repetition_penalty=1.1)
    pen = GenParams(max_new_tokens=40, repetition_penalty=1.1, frequency_penalty=1.5, presence_penalty=0.5)
    for params in (plain, pen):
        local = tiny.chat([CONSULT, OTHER], params)
        assert api.chat([CONSULT, OTHER], params) == local
        assert "".join(tiny.stream(CONSULT, params)) == local[0]

    def most_repeated(text: str) -> int:
        return max(Counter(text).values())
    before, after = tiny.chat([CONSULT], plain)[0], tiny.chat([CONSULT], pen)[0]
    assert before != after and most_repeated(after) < most_repeated(before), (before, after)


def test_one_resolver_for_every_spec(tiny_model, tmp_path):
    import json as _json

    from discmed.backend import SpecError, adapter_base, resolve

    assert (resolve("tiny").kind, resolve("tiny").path, resolve("tiny").name) == ("tiny", str(tiny_model), "tiny")
    folder = resolve(str(tiny_model))
    assert (folder.kind, folder.path, folder.local) == ("hf", str(tiny_model), True)
    api = resolve("openai:http://127.0.0.1:8000/v1@qwen")
    assert (api.kind, api.local, api.name) == ("openai", False, "qwen")
    with pytest.raises(SpecError):
        api.path  # noqa: B018  (an API has no weights to load)
    (tmp_path / "adapter_config.json").write_text(_json.dumps({"base_model_name_or_path": "tiny"}))
    assert adapter_base(tmp_path) == "tiny" and adapter_base(tiny_model) is None
