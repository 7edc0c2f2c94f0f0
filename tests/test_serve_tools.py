"""Tool calls through `discmed serve`, as clients make them: the OpenAI SDK's round trip (a named
call, its result sent back, a reply), streamed and not; `required` and `none`; `auto` in chatml's
convention; DISC's format refusing what it cannot do; instructor's default mode and LangChain's
function-calling structured output, each returning a validated object.

The tiny model writes gibberish, but a forced call is decoded to the tool's schema, so its
arguments are valid: the schemas are small (enums, short strings, small ranges) and sampling
greedy, so every run is the same. Two servers: the shared one (DISC's format: forced calls,
instructor, LangChain, the 400s) and one in chatml (the round trip, `required`, `none`, `auto`),
whose tests are marked slow because they start it.
"""

from __future__ import annotations

import json
from typing import Literal

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

RECORD = {"type": "function", "function": {"name": "record_symptom", "description": "记录患者的症状", "parameters": {
    "type": "object", "properties": {"symptom": {"type": "string", "enum": ["头痛", "发热", "咳嗽"]},
                                     "days": {"type": "integer", "minimum": 1, "maximum": 9}},
    "required": ["symptom", "days"], "additionalProperties": False}}}  # fmt: skip
ADVICE = {"type": "function", "function": {"name": "get_advice", "parameters": {
    "type": "object", "properties": {"topic": {"type": "string", "maxLength": 6}}, "required": ["topic"]}}}  # fmt: skip
ASK = [{"role": "user", "content": "我头痛三天了"}]
GREEDY = {"model": "tiny", "temperature": 0}


@pytest.fixture(scope="module")
def chatml_server(tiny_model, tmp_path_factory):
    """The tiny model served in chatml, whose tool-call convention is Qwen's."""
    from discmed.process import served

    with served("tiny", tmp_path_factory.mktemp("chatml") / "serve.log", safety=True, args=["--format", "chatml"]) as url:
        yield url


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def valid_record(arguments: str) -> dict:
    args = json.loads(arguments)
    assert set(args) == {"symptom", "days"} and args["symptom"] in ("头痛", "发热", "咳嗽") and 1 <= args["days"] <= 9
    return args


def streamed_calls(stream) -> tuple[list[dict], str, list]:
    """A streamed reply's tool calls as the SDK's deltas build them, its content, and its
    finish reason; checks OpenAI's order: a call opens with id, type and name, then arguments."""
    calls: list[dict] = []
    content, finish = "", None
    for chunk in stream:
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for d in choice.delta.tool_calls or []:
                if d.id is not None:  # a call opens
                    assert d.index == len(calls) and d.type == "function" and d.function.name
                    assert d.function.arguments == ""
                    calls.append({"id": d.id, "name": d.function.name, "arguments": ""})
                else:
                    assert d.function.name is None and d.index == len(calls) - 1
                    calls[d.index]["arguments"] += d.function.arguments
            finish = choice.finish_reason or finish
    return calls, content, finish


@pytest.mark.slow
def test_named_call_round_trip_streamed_and_not(chatml_server, tok):
    client = openai.OpenAI(base_url=chatml_server, api_key="unused")
    named = {"type": "function", "function": {"name": "record_symptom"}}
    ask = dict(**GREEDY, messages=ASK, tools=[RECORD, ADVICE], tool_choice=named, max_tokens=40)
    r = client.chat.completions.create(**ask)
    choice = choice0 = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function" and call.function.name == "record_symptom"
    valid_record(call.function.arguments)
    assert r.model_extra["safety"]["urgent"] is False  # the verdict travels as with any chat

    calls, content, finish = streamed_calls(client.chat.completions.create(**ask, stream=True))
    assert [(c["name"], c["arguments"]) for c in calls] == [("record_symptom", call.function.arguments)]
    assert content == "" and finish == "tool_calls"

    # The result goes back as a `tool` message naming the call; the model answers in text.
    follow = [*ASK, choice0.message.model_dump(exclude_none=True),
              {"role": "tool", "tool_call_id": call.id, "content": "已记录：头痛，3天"}]  # fmt: skip
    reply = client.chat.completions.create(**GREEDY, messages=follow, tools=[RECORD, ADVICE], tool_choice="none",
                                           max_tokens=12)  # fmt: skip
    assert reply.choices[0].message.content and reply.choices[0].message.tool_calls is None
    # What the model saw is the conversation in Qwen's convention (tools not shown: tool_choice none).
    from discmed import tools
    from discmed.formats import get_format

    seen = [{**ASK[0]}, {"role": "assistant", "content": "", "tool_calls": [
        {"id": call.id, "name": "record_symptom", "arguments": json.loads(call.function.arguments)}]},
        {"role": "tool", "content": "已记录：头痛，3天", "tool_call_id": call.id}]  # fmt: skip
    assert reply.usage.prompt_tokens == len(tools.render(get_format("chatml"), tok, seen, None))
    streamed = client.chat.completions.create(**GREEDY, messages=follow, tools=[RECORD, ADVICE], tool_choice="none",
                                              max_tokens=12, stream=True)  # fmt: skip
    assert streamed_calls(streamed)[1] == reply.choices[0].message.content


@pytest.mark.slow
def test_required_makes_one_call_to_one_of_the_tools(chatml_server):
    client = openai.OpenAI(base_url=chatml_server, api_key="unused")
    ask = dict(**GREEDY, messages=ASK, tools=[RECORD, ADVICE], tool_choice="required", max_tokens=80)
    r = client.chat.completions.create(**ask)
    (call,) = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    args = json.loads(call.function.arguments)
    if call.function.name == "record_symptom":
        valid_record(call.function.arguments)
    else:
        assert call.function.name == "get_advice" and set(args) == {"topic"} and len(args["topic"]) <= 6
    calls, _, finish = streamed_calls(client.chat.completions.create(**ask, stream=True))
    assert [(c["name"], c["arguments"]) for c in calls] == [(call.function.name, call.function.arguments)]
    assert finish == "tool_calls"
    # Cut off by max_tokens inside the call: what was written, and "length", as OpenAI does.
    cut = client.chat.completions.create(**{**ask, "max_tokens": 45}).choices[0]
    assert cut.finish_reason == "length" and cut.message.tool_calls[0].function.name == call.function.name
    assert call.function.arguments.startswith(cut.message.tool_calls[0].function.arguments)


@pytest.mark.slow
def test_none_answers_as_without_tools_and_auto_reads_the_reply(chatml_server):
    client = openai.OpenAI(base_url=chatml_server, api_key="unused")
    plain = client.chat.completions.create(**GREEDY, messages=ASK, max_tokens=16)
    none = client.chat.completions.create(**GREEDY, messages=ASK, max_tokens=16, tools=[RECORD], tool_choice="none")
    assert none.choices[0].message.content == plain.choices[0].message.content
    assert none.usage.prompt_tokens == plain.usage.prompt_tokens  # not shown at all
    # auto (the default with tools): shown in the system turn, and the reply read for calls; the
    # tiny model never writes one, so it comes back as it was written, whole and streamed.
    auto = client.chat.completions.create(**GREEDY, messages=ASK, max_tokens=16, tools=[RECORD])
    assert auto.usage.prompt_tokens > plain.usage.prompt_tokens + 100
    assert auto.choices[0].message.tool_calls is None and auto.choices[0].message.content
    assert auto.choices[0].finish_reason in ("stop", "length")
    calls, content, finish = streamed_calls(client.chat.completions.create(**GREEDY, messages=ASK, max_tokens=16,
                                                                           tools=[RECORD], stream=True))  # fmt: skip
    assert calls == [] and content == auto.choices[0].message.content and finish == auto.choices[0].finish_reason


def test_disc_format_forces_calls_but_cannot_choose_them(tiny_server):
    url = tiny_server + "/chat/completions"
    base = {**GREEDY, "messages": ASK, "max_tokens": 40, "tools": [RECORD]}
    r = httpx.post(url, json=base, timeout=60)  # auto, the default with tools
    assert r.status_code == 400 and r.json()["error"]["param"] == "tool_choice", r.text
    assert "'disc'" in r.json()["error"]["message"] and "none" in r.json()["error"]["message"]
    # A named call needs no convention: it is decoded to the schema, streamed or not.
    client = openai.OpenAI(base_url=tiny_server, api_key="unused")
    named = dict(**base, tool_choice={"type": "function", "function": {"name": "record_symptom"}})
    (call,) = client.chat.completions.create(**named).choices[0].message.tool_calls
    valid_record(call.function.arguments)
    calls, content, finish = streamed_calls(client.chat.completions.create(**named, stream=True))
    assert [c["arguments"] for c in calls] == [call.function.arguments] and finish == "tool_calls"
    assert httpx.post(url, json={**base, "tool_choice": "none"}, timeout=60).status_code == 200
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "record_symptom", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "已记录"}]  # fmt: skip
    r = httpx.post(url, json={**base, "tool_choice": "none", "messages": history}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages.1.tool_calls", r.text


BAD = [  # (what the request changes, the field its 400 must name)
    ({"tool_choice": {"type": "function", "function": {"name": "call_doctor"}}}, "tool_choice.function.name"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "record symptom"}}]}, "tools.0.function.name"),
    ({"tools": [RECORD, RECORD]}, "tools.1.function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}}}}]}, "tools.0.function.parameters"),
    ({"tools": [{"type": "code_interpreter"}]}, "tools.0.type"),
    ({"tools": None}, "tool_choice"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
]  # fmt: skip
CALLED = {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {
    "name": "record_symptom", "arguments": "{}"}}]}  # fmt: skip
BAD_HISTORY = [
    ([*ASK, CALLED, {"role": "tool", "tool_call_id": "call_2", "content": "x"}], "messages.2.tool_call_id"),
    ([*ASK, CALLED, {"role": "tool", "content": "x"}], "messages.2.tool_call_id"),
    ([*ASK, {**CALLED, "tool_calls": [{**CALLED["tool_calls"][0], "function": {"name": "record_symptom",
      "arguments": "{symptom"}}]}, {"role": "tool", "tool_call_id": "call_1", "content": "x"}],
     "messages.1.tool_calls.0.function.arguments"),
    ([*ASK, {"role": "tool", "tool_call_id": "call_1", "content": "x"}], "messages.1.role"),
    ([*ASK, CALLED], "messages"),
]  # fmt: skip


def assert_400(r: httpx.Response, param: str) -> None:
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert r.json()["error"]["type"] == "invalid_request_error" and "Traceback" not in r.text


@pytest.mark.parametrize("change, param", BAD)
def test_bad_tools_are_400s_naming_the_field(tiny_server, change, param):
    body = {**GREEDY, "messages": ASK, "max_tokens": 4, "tools": [RECORD], "tool_choice": "required", **change}
    assert_400(httpx.post(tiny_server + "/chat/completions", json=body, timeout=60), param)


@pytest.mark.slow
def test_bad_tool_messages_are_400s_naming_the_field(chatml_server):
    for messages, param in BAD_HISTORY:
        body = {**GREEDY, "messages": messages, "max_tokens": 4}
        assert_400(httpx.post(chatml_server + "/chat/completions", json=body, timeout=60), param)


class Triage(BaseModel):
    """The patient's complaint, graded."""

    urgency: Literal["低", "中", "高"]
    days: int = Field(ge=1, le=9)


def test_instructor_default_mode(tiny_server):
    import instructor

    client = instructor.from_openai(openai.OpenAI(base_url=tiny_server, api_key="unused"))
    assert client.mode == instructor.Mode.TOOLS  # its default: a named tool call
    out = client.chat.completions.create(**GREEDY, response_model=Triage, messages=ASK, max_tokens=60, max_retries=0)
    assert isinstance(out, Triage)


def test_langchain_function_calling_structured_output(tiny_server):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="tiny", base_url=tiny_server, api_key="unused", temperature=0, max_tokens=60, max_retries=0)
    out = llm.with_structured_output(Triage, method="function_calling").invoke("我头痛三天了")
    assert isinstance(out, Triage)
