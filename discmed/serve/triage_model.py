"""A second opinion on red-flag triage from a language model (`--triage-model SPEC`).

The verdict of `discmed.serve.safety` (its rules and its classifier) is the floor: a message
is urgent when that verdict OR the model says so, never less. The model gets a fixed prompt (`PROMPT_VERSION`) and must
answer one line of JSON, `{"urgent": true|false, "reason": "…"}`. It runs in a worker
thread with a timeout: a model that is slow, fails or answers something else never blocks
the reply, the rules' verdict stands and `Triage.model["status"]` says what happened
("ok", "timeout", "error", "unparsed"). `Triage.source` is "rules+model" when the model's
verdict was used, "rules" otherwise.

    model = TriageModel("openai:http://127.0.0.1:8000/v1@qwen", timeout=3.0)
    t = model.review(triage(text), text)     # t.urgent, t.reasons, t.source, t.model

Any backend spec works (tiny, hf:…, openai:…, vllm:…); the quality of the opinion is the
model's: the tiny test model only proves the contract (it rarely answers valid JSON).
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace

from discmed.backend import GenParams, load_backend, resolve
from discmed.serve.safety import Rules, Triage, load_rules

PROMPT_VERSION = "triage-v1"
SYSTEM = (
    "你是急诊分诊护士。判断下面这条线上问诊消息描述的情况是否需要立即拨打120或马上去急诊"
    "（例如胸痛伴出汗、中风表现、呼吸困难、大出血、抽搐、意识不清、中毒、轻生念头、小婴儿发热）。"
    "过去的病史、否认的症状、科普或考试问题、医护人员询问剂量都不算紧急。"
    '只输出一行JSON，不要输出其他内容：{"urgent": true 或 false, "reason": "不超过20字的理由"}'
)
_JSON = re.compile(r"\{[^{}]*\}")


def parse_verdict(text: str) -> dict | None:
    """`{"urgent": bool, "reason": str}` from the model's answer, or None when it is not
    one (the first JSON object with a boolean `urgent` counts; prose around it is ignored)."""
    for m in _JSON.finditer(text or ""):
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("urgent"), bool):
            return {"urgent": obj["urgent"], "reason": str(obj.get("reason") or "")[:80]}
    return None


class TriageModel:
    """A backend asked for a structured urgent/not verdict, bounded by `timeout` seconds."""

    def __init__(self, spec: str, timeout: float = 3.0, backend=None, max_new_tokens: int = 64):
        self.spec = spec
        self.timeout = timeout
        # An endpoint gets one try within the budget: retrying past the timeout helps nobody.
        options = {"max_retries": 0, "timeout": timeout} if resolve(spec).kind == "openai" else {}
        self.backend = backend if backend is not None else load_backend(spec, **options)
        self.params = GenParams(max_new_tokens=max_new_tokens, temperature=0.0)
        # Two threads: one answer may still be running (past its timeout) while the next starts.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="triage-model")

    def ask(self, text: str) -> dict:
        """The model's verdict on `text` with its status and time; never raises."""
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
        start = time.perf_counter()
        info = {"spec": self.spec, "prompt_version": PROMPT_VERSION, "urgent": None, "reason": ""}
        try:
            future = self._pool.submit(self.backend.chat, [messages], self.params)
            answer = future.result(timeout=self.timeout)[0]
        except FutureTimeout:
            future.cancel()
            return {**info, "status": "timeout", "seconds": round(time.perf_counter() - start, 3)}
        except Exception as e:  # a failing model must not fail the reply
            return {**info, "status": "error", "error": f"{type(e).__name__}: {e}"[:200],
                    "seconds": round(time.perf_counter() - start, 3)}
        verdict = parse_verdict(answer)
        seconds = round(time.perf_counter() - start, 3)
        if verdict is None:
            return {**info, "status": "unparsed", "answer": answer[:200], "seconds": seconds}
        return {**info, **verdict, "status": "ok", "seconds": seconds}

    def review(self, t: Triage, text: str, rules: Rules | None = None) -> Triage:
        """`t` (the rules' verdict) with the model's second opinion folded in."""
        opinion = self.ask(text)
        if opinion["status"] != "ok":
            return replace(t, source="rules", model=opinion)
        if not opinion["urgent"] or t.urgent:
            return replace(t, source="rules+model", model=opinion)
        rules = rules or load_rules()
        zh = t.lang == "zh"
        reason = (f"模型判断：{opinion['reason']}" if zh else f"model: {opinion['reason']}") if opinion["reason"] else \
            ("模型判断为紧急情况" if zh else "the model judged this urgent")
        instruction = (rules.urgent_zh if zh else rules.urgent_en).format(reasons=reason)
        return replace(t, urgent=True, reasons=[reason], instruction=instruction, rule_ids=["model"],
                       source="rules+model", model=opinion)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
