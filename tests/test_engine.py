"""The engine in process, on the tiny model: one sampler with `discmed chat`'s hf backend, and a
request that breaks inside a batch step failing alone."""

from __future__ import annotations

import asyncio
import math

import pytest

from discmed.backend import GenParams
from discmed.engine.protocol import Request
from discmed.engine.sampler import normalized, sample


@pytest.fixture(scope="module")
def backend(tiny_model):
    from discmed.backend import load_backend

    return load_backend("tiny")


@pytest.fixture(scope="module")
def engine(backend):
    from discmed.engine.core import LocalEngine

    eng = LocalEngine(backend.model, backend.tokenizer, backend.format.stop_token_ids(backend.tokenizer), max_batch=8)
    yield eng
    eng.shutdown()


def run(engine, jobs: list[tuple[list[int], GenParams, dict]], stagger: float = 0.0) -> list[tuple[str, str, str | None]]:
    """Submit every job at once (or job k after `k * stagger` seconds); (text, finish_reason, error) of each."""

    async def main():
        loop = asyncio.get_running_loop()

        async def collect(k, ids, p, opts):
            await asyncio.sleep(stagger * k)
            r = engine.submit(Request(ids, p, **opts), loop)
            text = ""
            while True:
                d = await r.out.get()
                text += d.text
                if d.finish_reason:
                    return text, d.finish_reason, d.error

        return await asyncio.gather(*(collect(k, *job) for k, job in enumerate(jobs)))

    return asyncio.run(main())


MESSAGES = [[{"role": "user", "content": q}] for q in ("头痛两天了，怎么办？", "孩子发烧咳嗽", "胃胀气，吃完饭更明显")]


def test_edge_values_become_their_safe_equivalents():
    p = normalized(GenParams(temperature=1e-38, top_p=5e-324, repetition_penalty=5e-324, min_p=-0.0))
    assert p.temperature == 0.0 and p.top_p == 1e-6 and p.repetition_penalty == 1e-3 and p.min_p == 0.0
    assert normalized(GenParams(temperature=0.7, top_p=0.9)).temperature == 0.7


def test_the_nucleus_is_the_full_sorts():
    """top-p from the sorted values alone keeps, in every row, the tokens and values that
    sorting the whole row with its indices kept: peaked and flat rows, rows a grammar masked to
    a few tokens, top_p of 1, vocabularies large and tiny. Where tokens tied with the edge
    straddle it, the lowest ids are kept, as many as the nucleus needs."""
    import torch

    from discmed.engine.sampler import nucleus

    def by_full_sort(probs, top_p):
        sp, si = probs.sort(-1, descending=True)
        sp = sp.masked_fill(sp.cumsum(-1) - sp > top_p, 0.0)
        return torch.zeros_like(probs).scatter(-1, si, sp)

    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        rows, vocab = int(torch.randint(1, 17, (1,), generator=g)), int(torch.randint(2, 7000, (1,), generator=g))
        logits = torch.randn(rows, vocab, generator=g) * float(torch.rand(1, generator=g) * 8)
        if trial % 3 == 0:  # a grammar's mask
            logits[torch.rand(rows, vocab, generator=g) < 0.95] = float("-inf")
            logits[:, 0] = 0.0
        top_p = torch.rand(rows, 1, generator=g) * 0.99 + 0.005
        if trial % 5 == 0:
            top_p[0] = 1.0
        probs = torch.softmax(logits, -1)
        assert torch.equal(nucleus(probs, top_p), by_full_sort(probs, top_p)), trial
    tied = torch.tensor([[0.05] * 10 + [0.5]])  # the nucleus needs the 0.5 and three of the ten 0.05s
    kept = nucleus(tied, torch.tensor([[0.6]]))
    assert (kept > 0).sum() == (by_full_sort(tied, torch.tensor([[0.6]])) > 0).sum() == 4
    assert (kept[0, :3] == tied[0, :3]).all() and kept[0, 3:10].sum() == 0 and kept[0, 10] == 0.5


def test_a_broken_row_does_not_change_the_others():
    import torch

    torch.manual_seed(0)
    logits = torch.randn(3, 50)
    params = [GenParams(temperature=0.8, seed=s) for s in (1, 2, 3)]
    gens = lambda: [torch.Generator().manual_seed(p.seed) for p in params]  # noqa: E731
    alone, errors = sample(logits.clone(), params, None, gens())
    assert errors == [None, None, None]
    poisoned = logits.clone()
    poisoned[1] = float("nan")
    toks, errors = sample(poisoned, params, None, gens())
    assert errors[1] and errors[0] is None and errors[2] is None
    assert (toks[0], toks[2]) == (alone[0], alone[2])


@pytest.mark.parametrize(
    "params",
    [
        GenParams(max_new_tokens=24, temperature=0.0, repetition_penalty=1.3),
        GenParams(max_new_tokens=24, temperature=0.9, top_p=0.9, top_k=50, seed=7),
        GenParams(max_new_tokens=24, temperature=1.1, min_p=0.05, repetition_penalty=1.1, seed=3),
    ],
    ids=["greedy-penalty", "top-p-top-k", "min-p"],
)
def test_chat_and_serve_sample_alike(backend, engine, params):
    """The hf backend (discmed chat) and the engine (discmed serve) pick with one sampler:
    the same GenParams and seed give the same text."""
    chat = backend.chat(MESSAGES[:1], params)[0]
    (served, finish, error), = run(engine, [(backend.prompt_ids(MESSAGES[0], params), params, {})])
    assert error is None and finish in ("stop", "length")
    assert served == chat


def test_a_poisoned_request_fails_alone(backend, engine):
    good = GenParams(max_new_tokens=24, temperature=0.0)
    jobs = [(backend.prompt_ids(m, good), good, {"ignore_eos": True}) for m in MESSAGES]
    alone = [run(engine, [j])[0] for j in jobs]
    assert all(e is None and len(t) > 0 for t, _, e in alone)
    vocab = engine.vocab
    poisons = [
        (jobs[0][0], good, {"logit_bias": {5: math.nan}}),  # breaks sampling (NaN logits)
        ([5, vocab + 7, 9], good, {}),  # breaks the prefill (an id past the vocabulary)
    ]
    failed = engine.failed
    together = run(engine, [jobs[0], poisons[0], jobs[1], poisons[1], jobs[2]])
    assert [together[i] for i in (0, 2, 4)] == alone  # the neighbours finished as if alone
    for _text, finish, error in (together[1], together[3]):
        assert finish == "error" and error
    assert engine.failed == failed + 2
    assert run(engine, [jobs[0]])[0] == alone[0]  # and the engine goes on


def test_access_log_is_one_json_line_per_request_with_its_id(backend, engine, caplog):
    import json
    import logging

    from fastapi.testclient import TestClient

    from discmed.serve.app import ServedModel, create_app

    served = ServedModel("tiny", engine, lambda msgs: backend.format.prompt(msgs, backend.tokenizer), 2048,
                         tokenizer=backend.tokenizer)  # fmt: skip
    client = TestClient(create_app(served))
    logging.getLogger("discmed.access").propagate = True  # let caplog see it
    with caplog.at_level(logging.INFO, logger="discmed.access"):
        r = client.post("/v1/chat/completions", headers={"X-Request-Id": "req-42"},
                        json={"model": "tiny", "max_tokens": 3, "messages": [{"role": "user", "content": "头痛"}]})  # fmt: skip
        client.post("/v1/chat/completions", json={"model": "nope", "messages": []})
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-42"
    lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "discmed.access"]
    assert [(x["request_id"], x["status"]) for x in lines][0] == ("req-42", 200)
    assert 0 < lines[0]["ttft_ms"] <= lines[0]["latency_ms"]  # the server's own time to first token
    assert lines[1]["status"] == 400 and lines[1]["request_id"] != "req-42" and lines[1]["latency_ms"] >= 0
    assert "ttft_ms" not in lines[1]  # nothing was generated


def test_staggered_requests_of_different_lengths_each_equal_running_alone(backend, engine):
    """Requests that join a running batch at different steps and finish at different steps
    (so rows die, are compacted out, and the shared left padding is cut while others run)
    give exactly the tokens each gives alone: greedy, with a repetition penalty, and seeded
    sampling; some with frequency and presence penalties (whose counts join, die and are
    compacted with the rows, while other rows have none)."""
    prompts = [backend.prompt_ids(m, GenParams()) for m in MESSAGES * 3]
    params = [GenParams(max_new_tokens=n, temperature=0.0 if i % 3 else 0.9, seed=i, top_k=30,
                        repetition_penalty=1.0 if i % 2 else 1.2,
                        frequency_penalty=0.8 if i % 4 == 1 else 0.0, presence_penalty=0.5 if i % 4 == 3 else 0.0)
              for i, n in enumerate((3, 17, 9, 25, 5, 12, 30, 2, 20))]  # fmt: skip
    alone = [run(engine, [(ids, p, {"ignore_eos": True})])[0] for ids, p in zip(prompts, params, strict=True)]

    before = engine.batches
    together = run(engine, [(ids, p, {"ignore_eos": True}) for ids, p in zip(prompts, params, strict=True)],
                   stagger=0.004)  # each arrives while the others decode
    assert engine.batches - before > 1  # they did arrive apart: more than one prefill group
    assert together == alone


def test_stop_strings_cut_wherever_they_fall(backend, engine):
    """Stop strings of several lengths, each taken from the greedy reply at several places so
    that it spans the tokens of several steps, beside a longer one that never occurs: the reply
    ends just before the first occurrence, as a search of the whole text would find it."""
    ids = backend.prompt_ids(MESSAGES[0], GenParams())
    text = run(engine, [(ids, GenParams(max_new_tokens=40), {"ignore_eos": True})])[0][0]
    assert len(text) >= 20
    for start in (0, 4, 11, len(text) - 5):
        for length in (1, 2, 5):
            stop = text[start : start + length]
            p = GenParams(max_new_tokens=40, stop=["这句话不会出现在回答里", stop])
            got = run(engine, [(ids, p, {"ignore_eos": True})])[0]
            assert got[:2] == (text[: text.find(stop)], "stop"), (start, length, stop)
    # An empty stop string matches nothing and holds nothing back: the reply is whole.
    assert run(engine, [(ids, GenParams(max_new_tokens=40, stop=[""]), {"ignore_eos": True})])[0][:2] == (text, "length")


def test_greedy_pick_is_torch_argmax():
    """The engine's argmax (NumPy on CPU) picks what torch's does, ties to the first maximum,
    and flags the rows that cannot be picked from (a NaN, every token masked), in float32 and
    through torch for a dtype NumPy lacks."""
    import torch

    from discmed.engine.sampler import greedy_pick

    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 500, generator=g)
    x[2, 7] = x[2, 300] = x[2].max() + 1  # a tie
    x[5, 9] = float("nan")
    x[6] = float("-inf")
    for t in (x, x.to(torch.bfloat16)):
        ids, broken = greedy_pick(t)
        ok = [i for i in range(16) if i not in (5, 6)]
        assert [ids[i] for i in ok] == [int(t[i].float().argmax()) for i in ok]
        assert ids[2] == 7 and [i for i, b in enumerate(broken) if b] == [5, 6]
