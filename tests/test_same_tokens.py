"""One engine under every local path: `discmed chat` (streamed and not), an eval job through the
job engine, and `discmed serve` give the same reply for the same seed, token for token."""

from __future__ import annotations

import subprocess
import sys

import openai
import pytest

from discmed.backend import GenParams, load_backend
from discmed.engine.protocol import collect
from discmed.jobs import JobRunner

pytestmark = pytest.mark.slow  # two `discmed chat` processes, each loading the model

QUESTION = "头痛两天了，还有点恶心，怎么办？"


def chat_cli(*args: str) -> str:
    """The doctor's reply that `discmed chat` prints for QUESTION."""
    run = subprocess.run([sys.executable, "-m", "discmed", "chat", "--model", "tiny", "--no-safety", *args],
                         input=f"{QUESTION}\nexit\n", capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.split("医生：", 1)[1].split("\n\n用户：", 1)[0]  # the reply, then its newline


def test_chat_jobs_and_serve_give_the_same_tokens_for_a_seed(tiny_model, tiny_server):
    backend = load_backend("tiny")
    params = backend.default_params()  # what `discmed chat` starts from (the model's repetition penalty)
    params.max_new_tokens, params.temperature, params.seed = 32, 0.9, 1234
    messages = [{"role": "user", "content": QUESTION}]

    # the engine itself: the token ids behind the text
    (direct,) = collect(backend.engine, [backend.request(messages, params, final_only=True)])

    # an eval job: the job engine calling the backend's achat
    with JobRunner(None, concurrency=4, cache=None, progress=False) as runner:
        client = runner.client(backend, name="doctor")

        async def work(key: str, _: None) -> dict:
            return {"reply": await client.chat(messages, params)}

        job = runner.map([("q", None), ("other", None)], work, desc="doctor").results[0]["reply"]

    # discmed serve, through the official client (the verdict kept out of the content)
    api = openai.OpenAI(base_url=tiny_server, api_key="unused")
    served = api.chat.completions.create(
        model="tiny", messages=messages, max_tokens=32, temperature=0.9, seed=1234, extra_body={
            "repetition_penalty": params.repetition_penalty, "safety": False})  # fmt: skip

    streamed = chat_cli("--temperature", "0.9", "--seed", "1234", "--max-new-tokens", "32")
    whole = chat_cli("--temperature", "0.9", "--seed", "1234", "--max-new-tokens", "32", "--no-stream")
    assert direct.text and direct.finish_reason in ("stop", "length")
    assert job == direct.text
    assert served.choices[0].message.content == direct.text
    assert served.usage.completion_tokens == len(direct.token_ids)
    assert streamed == whole == direct.text
    greedy = backend.chat([messages], GenParams(max_new_tokens=32, repetition_penalty=params.repetition_penalty))[0]
    assert greedy != direct.text  # the seed, not greedy decoding, made them agree
