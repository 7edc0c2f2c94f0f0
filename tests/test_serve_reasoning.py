"""`discmed serve` for a model whose chat template thinks (Qwen3's, DeepSeek-R1's, Baichuan-M2's
shape): its thinking in `reasoning_content`, apart from `content`, whole and streamed, and the
request's `chat_template_kwargs` (enable_thinking) passed to the template, as vLLM does.

The model is the tiny one with such a template: the generation prompt opens `<think>` unless
enable_thinking is false, which closes an empty block, as Qwen3's template does."""

import shutil

import pytest

THINKING_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}"
    "{% else %}{{ '<think>\\n' }}{% endif %}{% endif %}"
)


@pytest.fixture(scope="module")
def thinking_server(tiny_model, tmp_path_factory):
    from discmed.process import served

    folder = tmp_path_factory.mktemp("thinker") / "tiny-thinks"
    shutil.copytree(tiny_model, folder)
    (folder / "chat_template.jinja").write_text(THINKING_TEMPLATE, encoding="utf-8")
    with served(f"hf:{folder}", folder.parent / "serve.log", safety=False, name="thinker",
                args=["--format", "auto"]) as url:
        yield url


@pytest.mark.slow
def test_reasoning_content_and_chat_template_kwargs(thinking_server):
    import openai

    client = openai.OpenAI(base_url=thinking_server, api_key="x")
    ask = {"model": "thinker", "messages": [{"role": "user", "content": "头疼三天了怎么办？"}], "max_tokens": 12,
           "temperature": 0}
    # Thinking on (the template's default): the prompt opened <think>, the tiny model never closes
    # it within 12 tokens, so all it wrote is reasoning and there is no answer yet.
    on = client.chat.completions.create(**ask)
    thought = on.choices[0].message.model_extra["reasoning_content"]
    assert thought and on.choices[0].message.content == "" and on.choices[0].finish_reason == "length"
    # Thinking off through chat_template_kwargs: the template closes an empty block in the prompt
    # (more prompt tokens), and the reply is all answer.
    off = client.chat.completions.create(**ask, extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    assert off.usage.prompt_tokens > on.usage.prompt_tokens
    assert off.choices[0].message.content and off.choices[0].message.model_extra.get("reasoning_content") is None
    # Streamed: the same split, as reasoning_content deltas and content deltas.
    parts = {"reasoning_content": "", "content": ""}
    for chunk in client.chat.completions.create(**ask, stream=True):
        for choice in chunk.choices:
            parts["content"] += choice.delta.content or ""
            parts["reasoning_content"] += (choice.delta.model_extra or {}).get("reasoning_content") or ""
    assert parts == {"reasoning_content": thought, "content": ""}
    # discmed's own openai backend reads it as every role does: the answer, the reasoning apart.
    from discmed.backend import GenParams, load_backend

    (reply,) = load_backend(f"openai:{thinking_server}@thinker").chat([ask["messages"]], GenParams(max_new_tokens=12))
    assert str(reply) == "" and reply.reasoning == thought


def test_a_model_without_reasoning_answers_as_before(tiny_server):
    import openai

    r = openai.OpenAI(base_url=tiny_server, api_key="x").chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "头疼"}], max_tokens=6,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}})  # no template variables: nothing changes
    assert r.choices[0].message.content and r.choices[0].message.model_extra.get("reasoning_content") is None
