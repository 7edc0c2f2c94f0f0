"""The engine's parts on a small random model built here (milliseconds per test, as nanochat's
engine tests): the scheduler alone, the output processor alone, then the engine — joins,
leaves, cancellation, shutdown, prompt logprobs — against plain full forwards."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest
import torch

from discmed.backend import GenParams
from discmed.engine.core import LocalEngine
from discmed.engine.output import OutputProcessor, find_stop
from discmed.engine.protocol import QueueFull, Request, acollect, collect, deltas
from discmed.engine.scheduler import Scheduler

TEXTS = ["头痛两天了，怎么办？", "孩子发烧咳嗽，晚上更厉害", "胃胀气，吃完饭更明显", "血压150/95，头有点晕"]


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE trained here on a few lines (Chinese characters split across tokens)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS * 4, vocab_size=300, min_frequency=1, special_tokens=["<eos>"])
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<eos>", pad_token="<eos>")


@pytest.fixture(scope="module")
def model(tokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    m = Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)  # peaked distributions, so the engine's choices are far from ties
    return m.eval()


@pytest.fixture(scope="module")
def engine(model, tokenizer):
    with LocalEngine(model, tokenizer, [tokenizer.eos_token_id], max_batch=8) as eng:
        yield eng


def prompts(tokenizer):
    return [tokenizer(t)["input_ids"] for t in TEXTS]


def reference(model, ids: list[int], n: int) -> list[int]:
    """Greedy decoding by full forwards, no cache, no batch: what every path must equal."""
    out = list(ids)
    with torch.no_grad():
        for _ in range(n):
            out.append(int(model(torch.tensor([out])).logits[0, -1].argmax()))
    return out[len(ids):]


# -- the scheduler, alone ------------------------------------------------------------------


def item(age: float = 0.0) -> SimpleNamespace:
    return SimpleNamespace(arrived=time.perf_counter() - age, cancelled=threading.Event())


def test_scheduler_refuses_past_the_queue_limit_and_frees_places():
    s = Scheduler(max_batch=4, max_queue=2)
    s.add(item())
    s.add(item())
    with pytest.raises(QueueFull, match="limit 2"):
        s.add(item())
    s.finished()
    s.add(item())
    assert s.load == 2


def test_scheduler_admits_in_order_and_returns_the_cancelled_apart():
    s = Scheduler(max_batch=4, max_queue=10)
    items = [item() for _ in range(5)]
    for x in items:
        s.add(x)
    items[1].cancelled.set()
    assert s.next_idle(timeout=0.01)
    taken, cancelled = s.admit(3)
    assert taken == [items[0], items[2], items[3]] and cancelled == [items[1]]
    assert s.queued == 1 and s.drain() == [items[4]] and s.queued == 0


def test_scheduler_joins_a_group_at_once_and_a_straggler_after_two_steps():
    s = Scheduler(max_batch=32, max_queue=64)
    s.add(item())
    assert not s.join_now(room=16, live=16, step_s=1.0)  # one waits, fresh: gather a group first
    s.add(item())
    assert s.join_now(room=16, live=16, step_s=1.0)  # 2 = an eighth of the running 16
    lone = Scheduler(max_batch=32, max_queue=64)
    lone.add(item(age=0.05))
    assert lone.join_now(room=16, live=16, step_s=0.02) and not lone.join_now(room=0, live=32, step_s=0.02)


# -- the output processor, alone -------------------------------------------------------------


def test_find_stop_takes_the_earliest_of_several():
    assert find_stop("abcXYdefXZ", ["XZ", "XY"]) == ("abc", "XY")
    assert find_stop("abc", ["", "q"]) == ("abc", None)


def run_output(tokenizer, ids: list[int], **options) -> list:
    proc = OutputProcessor(tokenizer, [tokenizer.eos_token_id], max_model_len=1000)
    params = GenParams(**{"max_new_tokens": 100, **options.pop("params", {})})
    out = proc.start(Request([1], params, **options))
    got = []
    for tok in ids:
        delta, done = proc.step(out, tok)
        if delta is not None:
            got.append(delta)
        if done:
            break
    return got


def test_output_streams_whole_characters_and_holds_back_what_may_stop(tokenizer):
    ids = tokenizer("孩子发烧咳嗽，晚上更厉害")["input_ids"]
    streamed = run_output(tokenizer, ids + [tokenizer.eos_token_id])
    assert "".join(d.text for d in streamed) == "孩子发烧咳嗽，晚上更厉害"
    assert all("\ufffd" not in d.text for d in streamed)  # a split character waits for its last byte
    assert streamed[-1].finish_reason == "stop" and streamed[-1].stop_reason == tokenizer.eos_token_id
    assert streamed[-1].completion_tokens == len(ids)
    assert [t for d in streamed for t in d.token_ids] == ids  # the end token is not output
    cut = run_output(tokenizer, ids, params={"stop": ["晚上", "不会出现的句子"]})
    assert "".join(d.text for d in cut) == "孩子发烧咳嗽，" and cut[-1].stop_reason == "晚上"
    # While a stop string may still complete, its possible start is not sent.
    assert all(not d.text.endswith("晚") for d in cut[:-1])


def test_output_final_only_is_one_delta_with_everything(tokenizer):
    ids = tokenizer("胃胀气，吃完饭更明显")["input_ids"]
    (final,) = run_output(tokenizer, ids, params={"max_new_tokens": len(ids)}, final_only=True)
    assert (final.text, final.finish_reason, final.token_ids) == ("胃胀气，吃完饭更明显", "length", ids)


# -- the engine ------------------------------------------------------------------------------


def submit_all(engine, requests, stagger: float = 0.0):
    async def main():
        loop = asyncio.get_running_loop()

        async def one(k, req):
            await asyncio.sleep(stagger * k)
            stream = engine.submit(req, loop)
            text, ids = "", []
            while True:
                d = await stream.out.get()
                text, ids = text + d.text, ids + (d.token_ids or [])
                if d.finish_reason:
                    return text, ids, d.finish_reason

        return await asyncio.gather(*(one(k, r) for k, r in enumerate(requests)))

    return asyncio.run(main())


def test_every_row_equals_full_forwards_alone_and_joined(model, tokenizer, engine):
    """Greedy rows of different lengths that join a running batch at different steps and leave
    at different steps decode exactly what full forwards without a cache decode."""
    ps = prompts(tokenizer) * 2
    lengths = [3, 17, 9, 25, 5, 12, 30, 2]
    want = [reference(model, p, n) for p, n in zip(ps, lengths, strict=True)]
    reqs = [Request(p, GenParams(max_new_tokens=n), ignore_eos=True) for p, n in zip(ps, lengths, strict=True)]
    before = engine.batches
    together = submit_all(engine, reqs, stagger=0.003)
    assert engine.batches - before > 1  # they did arrive apart
    assert [ids for _, ids, _ in together] == want
    assert [f for *_, f in together] == ["length"] * len(ps)


def test_prompts_sharing_a_prefix_run_it_once_and_decode_as_alone(model, tokenizer, engine):
    """Prompts admitted together that begin alike (G samples of one case, patients told the same
    case) run the shared prefix once; every row still decodes exactly what full forwards of its
    whole prompt alone decode — rows of other lengths, a duplicate and an unrelated prompt beside them."""
    stem = [t for text in TEXTS for t in prompts(tokenizer)[TEXTS.index(text)]] * 2  # ≥ 32 tokens
    assert len(stem) >= 32
    tails = [prompts(tokenizer)[0][:3], prompts(tokenizer)[1], prompts(tokenizer)[2][:1], prompts(tokenizer)[1]]
    ps = [stem + t for t in tails] + [prompts(tokenizer)[3]]
    want = [reference(model, p, 6) for p in ps]
    reqs = [Request(p, GenParams(max_new_tokens=6), ignore_eos=True) for p in ps]
    saved = engine.stats().shared_prefix_tokens
    got = collect(engine, reqs)
    assert [d.token_ids for d in got] == want
    # four prompts shared at least the stem: three of them did not run it again
    assert engine.stats().shared_prefix_tokens - saved >= 3 * len(stem)


def test_shared_prefix_groups_keep_a_token_of_each_prompt_and_bound_the_spread():
    from discmed.engine.cache import shared_prefix_groups

    a = list(range(40))
    groups = shared_prefix_groups([a + [1], [7] * 50, a + [2, 3], a, [7] * 50 + [8]], min_shared=32)
    # a, a+[1], a+[2,3] share 40 tokens but `a` must keep one of its own: 39; the 7s share 49
    assert sorted((sorted(idx), p) for idx, p in groups) == [([0, 2, 3], 39), ([1, 4], 49)]
    assert shared_prefix_groups([a, a[:10] + [99] * 30], min_shared=32) == []  # too short a prefix
    # lengths that differ by more than the prefix would pad: not grouped
    assert shared_prefix_groups([a + [1], a + list(range(100))], min_shared=32) == []


def test_a_conversations_next_turn_runs_only_its_new_tokens(model, tokenizer, engine):
    """The next turn's prompt is the last prompt, the reply and a new message: its start comes
    from the prefix cache (the finished request's KV), only the new tokens run, and it decodes
    exactly what full forwards of the whole prompt decode — several such turns admitted
    together, their new parts of different lengths, beside a prompt that hits nothing."""
    stem = [t for p in prompts(tokenizer) for t in p] + prompts(tokenizer)[0]  # ≥ 32 tokens
    firsts = [stem + p for p in prompts(tokenizer)[1:]]
    replies = [d.token_ids for d in collect(engine, [Request(p, GenParams(max_new_tokens=8), ignore_eos=True)
                                                     for p in firsts])]  # fmt: skip
    assert replies == [reference(model, p, 8) for p in firsts]
    news = [prompts(tokenizer)[0], prompts(tokenizer)[3][:2], prompts(tokenizer)[2] * 3]
    seconds = [f + r + n for f, r, n in zip(firsts, replies, news, strict=True)] + [prompts(tokenizer)[2][::-1]]
    before = engine.stats()
    got = collect(engine, [Request(p, GenParams(max_new_tokens=6), ignore_eos=True) for p in seconds])
    assert [d.token_ids for d in got] == [reference(model, p, 6) for p in seconds]
    reused = engine.stats().prefix_cache_tokens - before.prefix_cache_tokens
    # each of the three turns took at least its first prompt from the cache
    assert reused >= sum(len(f) for f in firsts)
    assert engine.stats().prompt_tokens - before.prompt_tokens == sum(map(len, seconds))


def test_the_prefix_cache_is_emptied_when_the_weights_change(model, tokenizer):
    """An in-place update of the weights (an optimizer step) makes every kept KV cache wrong:
    the next prompt runs whole, and decodes what the updated model decodes."""
    import copy

    m = copy.deepcopy(model)
    stem = [t for p in prompts(tokenizer) for t in p] * 2
    with LocalEngine(m, tokenizer, [tokenizer.eos_token_id], max_batch=4) as eng:
        collect(eng, [Request(stem, GenParams(max_new_tokens=4), ignore_eos=True)])
        assert eng.prefix.entries
        with torch.no_grad():
            m.model.layers[0].mlp.down_proj.weight.mul_(1.5)
        longer = stem + prompts(tokenizer)[1]
        got = collect(eng, [Request(longer, GenParams(max_new_tokens=6), ignore_eos=True)])
        assert eng.stats().prefix_cache_tokens == 0
        assert got[0].token_ids == reference(m, longer, 6)


def test_the_prefix_cache_keeps_the_longest_match_within_its_budget():
    from discmed.engine.cache import PrefixCache

    owner = torch.nn.Linear(2, 2).eval()  # in training mode (dropout) nothing is kept
    kv = lambda n: [(torch.zeros(1, 2, n, 4), torch.zeros(1, 2, n, 4))]  # noqa: E731  (64 bytes a token)
    cache = PrefixCache(owner, budget_bytes=64 * 100, min_tokens=8)
    a, b = list(range(40)), list(range(30)) + [99] * 20
    cache.add(a, kv(40))
    cache.add(b, kv(50))
    assert cache.longest(a + [7, 8])[0] == 40  # all of a
    assert cache.longest(a)[0] == 39  # a prompt keeps a token of its own to run
    assert cache.longest(list(range(30)) + [99, 99, 5])[0] == 32
    assert cache.longest([5] * 40) == (0, None)
    assert cache.longest(list(range(7)) + [5] * 10) == (0, None)  # under min_tokens
    cache.add([1] * 30, kv(30))  # 120 tokens would not fit: the least recently used goes (a; b matched last)
    assert cache.bytes <= 64 * 100 and cache.longest(a + [1])[0] == 30  # only b's 30 in common now
    assert cache.longest(b + [1])[0] == 50
    cache.add([2] * 200, kv(200))  # larger than the whole budget: not kept, nothing evicted
    assert len(cache.entries) == 2


def test_collect_acollect_and_deltas_agree(tokenizer, engine):
    """The three ways a backend waits give one reply, seeded sampling included."""
    p = GenParams(max_new_tokens=12, temperature=0.9, top_k=40, seed=11)
    ids = prompts(tokenizer)[0]
    batch = collect(engine, [Request(ids, p, final_only=True), Request(prompts(tokenizer)[1], p, final_only=True)])
    one = asyncio.run(acollect(engine, Request(ids, p, final_only=True)))
    streamed = list(deltas(engine, Request(ids, p)))
    assert batch[0].text == one.text == "".join(d.text for d in streamed)
    assert batch[0].token_ids == one.token_ids == [t for d in streamed for t in d.token_ids or []]


def test_cancel_ends_a_row_and_the_others_go_on(model, tokenizer, engine):
    ps = prompts(tokenizer)
    cancelled_before = engine.cancelled

    async def main():
        loop = asyncio.get_running_loop()
        long = engine.submit(Request(ps[0], GenParams(max_new_tokens=200), ignore_eos=True), loop)
        other = engine.submit(Request(ps[1], GenParams(max_new_tokens=20), ignore_eos=True), loop)
        await long.out.get()
        long.cancel()
        while (d := await long.out.get()).finish_reason is None:
            pass
        ids = []
        while True:
            e = await other.out.get()
            ids += e.token_ids or []
            if e.finish_reason:
                return d, ids

    last, ids = asyncio.run(main())
    assert last.finish_reason == "cancelled" and last.completion_tokens < 200
    assert ids == reference(model, ps[1], 20) and engine.cancelled == cancelled_before + 1


def test_prompt_logprobs_are_the_models(model, tokenizer, engine):
    """A scoring request (max_new_tokens 0): each prompt token's logprob under full forwards."""
    ids = prompts(tokenizer)[2]
    (d,) = collect(engine, [Request(ids, GenParams(max_new_tokens=0), prompt_logprobs=2, final_only=True)])
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), -1)
    assert d.finish_reason == "length" and d.completion_tokens == 0 and d.prompt_logprobs[0].logprob is None
    assert [e.id for e in d.prompt_logprobs] == ids and all(len(e.top) == 2 for e in d.prompt_logprobs[1:])
    got = torch.tensor([e.logprob for e in d.prompt_logprobs[1:]])
    assert torch.allclose(got, lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])], atol=1e-5)


def test_shutdown_answers_what_is_left_and_refuses_more(model, tokenizer):
    from discmed.engine.protocol import EngineUnavailable

    eng = LocalEngine(model, tokenizer, [tokenizer.eos_token_id], max_batch=1)
    ps = prompts(tokenizer)
    running = eng.submit(Request(ps[0], GenParams(max_new_tokens=10_000), ignore_eos=True))
    waiting = eng.submit(Request(ps[1], GenParams(max_new_tokens=5)))
    running.out.get()  # it runs
    eng.shutdown()
    for s in (running, waiting):
        while (d := s.out.get()).finish_reason is None:
            pass
        assert d.finish_reason == "error" and "shut down" in d.error
    with pytest.raises(EngineUnavailable):
        eng.submit(Request(ps[0], GenParams()))
    assert not eng.stats().alive and eng.stats().load == 0


def test_the_running_cache_appends_in_place_and_equals_transformers_own(model, tokenizer):
    """`GrowingLayer` (the batch's KV layers) writes each decode step into spare room instead of
    copying the whole cache; what the model computes is the same as with transformers' own."""
    from discmed.engine.cache import growing

    ids = torch.tensor([prompts(tokenizer)[1]])
    steps = torch.tensor([[5], [9], [12], [7], [3], [11]])
    logits = {}
    for grow in (False, True):
        with torch.inference_mode():
            out = model(input_ids=ids, use_cache=True)
            cache = growing(out.past_key_values) if grow else out.past_key_values
            seen, buffers = [], set()
            for j, tok in enumerate(steps):
                out = model(input_ids=tok[None], position_ids=torch.tensor([[ids.shape[1] + j]]),
                            past_key_values=cache, use_cache=True)
                seen.append(out.logits[0, -1])
                buffers.add(cache.layers[0].keys.untyped_storage().data_ptr())
        logits[grow] = torch.stack(seen)
        if grow:  # one buffer with room for every step after the prompt: no copy per step
            assert len(buffers) == 1 and cache.layers[0].keys.shape[2] == ids.shape[1] + len(steps)
            cache.layers[0].keys = cache.layers[0].keys[:, :, 2:]  # replaced from outside, as Batch.select does
            cache.layers[0].values = cache.layers[0].values[:, :, 2:]
            before = cache.layers[0].keys.clone()
            cache.layers[0].update(torch.zeros(1, 2, 1, 8), torch.zeros(1, 2, 1, 8))
            assert torch.equal(cache.layers[0].keys[:, :, :-1], before)  # adopted, not lost
    torch.testing.assert_close(logits[True], logits[False], rtol=0, atol=0)
