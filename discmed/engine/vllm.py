"""vLLM's async engine behind discmed's Engine contract: `load_backend("vllm:PATH")` and
`discmed serve --engine vllm`.

Continuous batching, a paged KV cache and tensor parallelism from vLLM; requests, deltas,
streams and delivery are discmed's (`discmed.engine.protocol`), so the vLLM backend, the
server and every caller wait on it exactly as on the in-process engine. vLLM's `AsyncLLM`
belongs to one event loop: the adapter runs it on a loop of its own, in a thread, and hands
deltas to the callers' loops or queues. Stop strings are vLLM's (the same rule: the reply
ends just before one); sampling is vLLM's own.

Not exercised by the default test suite (no GPU there); written against vLLM's documented
API: `AsyncEngineArgs`, `AsyncLLMEngine.from_engine_args`, `generate(prompt, sampling_params,
request_id)`, `abort(request_id)`, `RequestOutput.outputs[0].{text, token_ids, logprobs,
finish_reason, stop_reason}`, `RequestOutput.prompt_logprobs`.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from typing import Any

from discmed.contract import BackendError, GenParams
from discmed.engine.protocol import (
    LOGPROBS,
    PROMPT_LOGPROBS,
    Delivery,
    Delta,
    EngineStats,
    EngineUnavailable,
    QueueFull,
    Request,
    Stream,
    TokenLogprob,
)


def import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise BackendError(
            "the vllm engine needs the optional extra and a CUDA GPU: pip install 'discmed[vllm]'"
        ) from e
    return vllm


def vllm_quantization(quantize: str | None) -> dict[str, Any]:
    # vLLM quantizes with bitsandbytes in flight to 4 bits only; an 8-bit model is served from
    # a pre-quantized copy (`discmed quantize`), whose config vLLM reads by itself.
    if not quantize:
        return {}
    if quantize == "int4":
        return {"quantization": "bitsandbytes"}
    if quantize == "int8":
        raise BackendError(
            "vLLM quantizes in flight to 4 bits only (--quantize int4); for 8 bits serve a copy "
            "written by `discmed quantize --quantize int8`"
        )
    raise BackendError(f"unknown quantization {quantize!r} (expected int8 or int4)")


def sampling_params(params: GenParams, stop_token_ids: list[int], **extra: Any):
    """discmed's GenParams as vLLM SamplingParams."""
    from vllm import SamplingParams

    if params.json_schema is not None and "structured_outputs" not in extra and "guided_decoding" not in extra:
        try:  # vLLM >= 0.11
            from vllm.sampling_params import StructuredOutputsParams

            extra["structured_outputs"] = StructuredOutputsParams(json=params.json_schema)
        except ImportError:
            from vllm.sampling_params import GuidedDecodingParams

            extra["guided_decoding"] = GuidedDecodingParams(json=params.json_schema)
    return SamplingParams(
        n=1,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k if params.top_k > 0 else -1,
        min_p=params.min_p,
        repetition_penalty=params.repetition_penalty,
        frequency_penalty=params.frequency_penalty,
        presence_penalty=params.presence_penalty,
        max_tokens=max(1, params.max_new_tokens),  # vLLM generates at least one (0: a scoring request)
        stop=list(params.stop) or None,
        stop_token_ids=stop_token_ids,
        seed=params.seed,
        **extra,
    )


def _entries(per_token: Any, ids: list[int], k: int) -> list[TokenLogprob]:
    """vLLM's logprobs (per position a dict token id → Logprob with its rank, or None for a
    prompt's first token) as TokenLogprobs with the top `k`."""
    out = []
    for tok, d in zip(ids, per_token or [], strict=False):
        if d is None:
            out.append(TokenLogprob(tok, None))
            continue
        ranked = sorted(((i, lp) for i, lp in d.items() if lp.rank is not None and lp.rank <= k), key=lambda x: x[1].rank)
        chosen = d.get(tok)
        out.append(TokenLogprob(tok, chosen.logprob if chosen is not None else None,
                                [(i, lp.logprob) for i, lp in ranked]))  # fmt: skip
    return out


class VLLMEngine:
    """The Engine contract over vLLM's AsyncLLM (run on an event loop of its own)."""

    features = frozenset({LOGPROBS, PROMPT_LOGPROBS})

    def __init__(self, engine: Any, stop_ids: list[int], max_queue: int = 1 << 30):
        self.engine, self.stop_ids, self.max_queue = engine, list(stop_ids), max_queue
        self.active = 0
        self.done = self.cancelled = self.failed = self.generated_tokens = self.prompt_tokens = 0
        self._ids = itertools.count(1)
        self._deliver = Delivery()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="discmed-vllm", daemon=True)
        self._thread.start()
        self._closed = False

    def submit(self, request: Request, loop: Any = None) -> Stream:
        if self._closed:
            raise EngineUnavailable("the vLLM engine has been shut down")
        if self.active >= self.max_queue:
            raise QueueFull(f"the server is busy: {self.active} requests running (limit {self.max_queue})")
        self.active += 1
        stream = Stream(request, loop, self, next(self._ids))
        stream.vllm_id = f"discmed-{uuid.uuid4().hex}"
        asyncio.run_coroutine_threadsafe(self._run(stream), self._loop)
        return stream

    def abort(self, stream: Stream) -> None:
        stream.cancelled.set()
        if not self._closed:
            asyncio.run_coroutine_threadsafe(self.engine.abort(stream.vllm_id), self._loop)

    def stats(self) -> EngineStats:
        return EngineStats(load=self.active, running=self.active, cancelled=self.cancelled, failed=self.failed,
                           prompt_tokens=self.prompt_tokens, generated_tokens=self.generated_tokens,
                           alive=not self._closed)  # fmt: skip

    def shutdown(self) -> None:
        self._closed = True
        stop = getattr(self.engine, "shutdown", None)  # vLLM V1's AsyncLLM; V0 ends with its process
        if stop is not None:
            stop()
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _run(self, stream: Stream) -> None:
        req = stream.request
        extra = {}
        if req.logprobs is not None:
            extra["logprobs"] = req.logprobs
        if req.prompt_logprobs is not None:
            extra["prompt_logprobs"] = req.prompt_logprobs
        if req.logit_bias:
            extra["logit_bias"] = req.logit_bias
        sp = sampling_params(req.params, [] if req.ignore_eos else self.stop_ids, ignore_eos=req.ignore_eos, **extra)
        sent_text, sent_ids, n, last = "", 0, 0, None
        text_all, ids_all, lps_all = "", [], []
        prompt_lps = None
        self.prompt_tokens += len(req.prompt_ids)
        try:
            async for res in self.engine.generate({"prompt_token_ids": req.prompt_ids}, sp, stream.vllm_id):
                o, last = res.outputs[0], res
                if prompt_lps is None and req.prompt_logprobs is not None and res.prompt_logprobs is not None:
                    prompt_lps = _entries(res.prompt_logprobs, req.prompt_ids, req.prompt_logprobs)
                    if not req.final_only:
                        self._deliver([(stream, Delta("", prompt_logprobs=prompt_lps))])
                text_all, ids_all, n = o.text, list(o.token_ids), len(o.token_ids)  # cumulative output
                if req.logprobs is not None:
                    lps_all = _entries(o.logprobs, ids_all, req.logprobs)
                if not req.final_only and not res.finished and len(text_all) > len(sent_text):
                    new = ids_all[sent_ids:]
                    lps = lps_all[sent_ids:] if req.logprobs is not None else None
                    self._deliver([(stream, Delta(text_all[len(sent_text) :], logprobs=lps, token_ids=new))])
                    sent_text, sent_ids = text_all, len(ids_all)
            if stream.cancelled.is_set():  # aborted: vLLM ended the generator
                self.cancelled += 1
                self._deliver([(stream, Delta("", "cancelled", n))])
                return
            o = last.outputs[0] if last is not None else None
            finish = o.finish_reason if o is not None and o.finish_reason in ("stop", "length") else "stop"
            if req.params.max_new_tokens <= 0:  # a scoring request: nothing generated is kept
                text_all, ids_all, lps_all, n, finish = "", [], [], 0, "length"
            first = 0 if req.final_only else len(sent_text)
            first_id = 0 if req.final_only else sent_ids
            self.generated_tokens += n
            self._deliver([(stream, Delta(
                text_all[first:], finish, n, None, lps_all[first_id:] if req.logprobs is not None else None,
                prompt_lps if req.final_only else None, ids_all[first_id:], getattr(o, "stop_reason", None)))])
        except asyncio.CancelledError:
            self.cancelled += 1
            self._deliver([(stream, Delta("", "cancelled", n))])
        except Exception as e:  # reported to the caller as its request's error
            self.failed += 1
            self._deliver([(stream, Delta("", "error", n, error=f"vLLM: {type(e).__name__}: {e}"))])
        finally:
            self.active -= 1
