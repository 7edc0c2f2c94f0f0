"""`/v1/responses` on the shared tiny server, through the OpenAI SDK's `client.responses.create`:
the same generation as a chat completion of the same messages, streamed in OpenAI's event
order, cut at max_output_tokens as OpenAI reports it, and a 501 naming each field the text subset
leaves out (raw HTTP for those: the SDK retries every 5xx)."""

from __future__ import annotations

import httpx
import openai
import pytest

ORDER = ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
DONE = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]


def test_a_response_is_the_chat_completion_of_its_messages(tiny_server):
    client = openai.OpenAI(base_url=tiny_server, api_key="unused")
    r = client.responses.create(model="tiny", instructions="你是一名全科医生。", input="我头痛三天了", max_output_tokens=16,
                                temperature=0)  # fmt: skip
    chat = client.chat.completions.create(model="tiny", max_tokens=16, temperature=0, messages=[
        {"role": "system", "content": "你是一名全科医生。"}, {"role": "user", "content": "我头痛三天了"}])  # fmt: skip
    assert r.output_text == chat.choices[0].message.content and r.output_text
    assert r.id.startswith("resp_") and r.object == "response" and r.model == "tiny"
    assert r.status == ("incomplete" if chat.choices[0].finish_reason == "length" else "completed")
    assert (r.usage.input_tokens, r.usage.output_tokens) == (chat.usage.prompt_tokens, chat.usage.completion_tokens)
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.output[0].type == "message" and r.output[0].role == "assistant" and r.output[0].id.startswith("msg_")

    # Messages with text parts (and a developer message, the Responses API's system) stream the same text.
    messages = [{"role": "developer", "content": "你是一名全科医生。"},
                {"role": "user", "content": [{"type": "input_text", "text": "我头痛"}, {"type": "input_text", "text": "三天了"}]}]  # fmt: skip
    events = list(client.responses.create(model="tiny", input=messages, max_output_tokens=16, temperature=0, stream=True))
    kinds = [e.type for e in events]
    deltas = kinds[len(ORDER) : len(kinds) - len(DONE) - 1]
    assert kinds[: len(ORDER)] == ORDER and kinds[len(kinds) - len(DONE) - 1 : -1] == DONE, kinds
    assert deltas and set(deltas) == {"response.output_text.delta"}
    assert kinds[-1] == ("response.incomplete" if r.status == "incomplete" else "response.completed")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == r.output_text
    final = events[-1].response
    assert final.output_text == r.output_text and final.usage.output_tokens == r.usage.output_tokens
    assert events[0].response.status == "in_progress" and final.id == events[0].response.id


def test_max_output_tokens_and_the_safety_layer(tiny_server):
    client = openai.OpenAI(base_url=tiny_server, api_key="unused")
    cut = client.responses.create(model="tiny", input="请详细介绍高血压", max_output_tokens=3, temperature=0,
                                  extra_body={"ignore_eos": True})  # fmt: skip
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"
    assert cut.usage.output_tokens == 3
    long = client.responses.create(model="tiny", input="我头痛，晚上更明显。" * 120, max_output_tokens=2)  # 1,200 characters
    assert long.usage.input_tokens > 600 and long.usage.output_tokens <= 2
    urgent = client.responses.create(model="tiny", input="胸口压榨样疼痛，出冷汗", max_output_tokens=4)
    assert urgent.output_text.startswith("【紧急】") and urgent.model_extra["safety"]["urgent"] is True
    quiet = client.responses.create(model="tiny", input="胸口压榨样疼痛，出冷汗", max_output_tokens=4,
                                    extra_body={"safety": False})  # fmt: skip
    assert not quiet.output_text.startswith("【紧急】") and quiet.model_extra["safety"]["urgent"] is True


@pytest.mark.parametrize("change, param", [
    ({"tools": [{"type": "function", "name": "record_symptom", "parameters": {}}]}, "tools"),
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"store": True}, "store"),
    ({"background": True}, "background"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]},
     "input.0.content.0.type"),
    ({"input": [{"type": "function_call_output", "call_id": "call_1", "output": "{}"}]}, "input.0.type"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}}, "text.format"),
    ({"reasoning": {"effort": "low"}}, "reasoning"),
])  # fmt: skip
def test_what_the_subset_leaves_out_is_a_501_naming_the_field(tiny_server, change, param):
    r = httpx.post(tiny_server + "/responses", json={"model": "tiny", "input": "头痛", **change}, timeout=60)
    assert r.status_code == 501 and r.json()["error"]["param"] == param, r.text
    assert r.json()["error"]["code"] == "not_implemented"


@pytest.mark.parametrize("change, param", [
    ({"input": [{"role": "assistant", "content": "您好"}]}, "input.0.role"),
    ({"input": [{"role": "nurse", "content": "您好"}]}, "input.0.role"),
    ({"instructions": "你是医生", "input": [{"role": "user", "content": ""}]}, "input.0.content"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"max_output_tokens": 10**6}, "input"),
    ({"model": "gpt-4o"}, "model"),
])  # fmt: skip
def test_a_bad_request_names_the_responses_field(tiny_server, change, param):
    r = httpx.post(tiny_server + "/responses", json={"model": "tiny", "input": "头痛", **change}, timeout=60)
    assert r.status_code in (400, 404) and r.json()["error"]["param"] == param, r.text
    assert "messages" not in r.json()["error"]["message"]
