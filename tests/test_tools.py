"""Tool calls in the chat formats' conventions (discmed.tools): what the model is shown, on the
tiny model's real tokenizer, and how replies in each convention are read — whole and streamed in
pieces, which must agree. The replies are written as Qwen2.5 and Llama 3.1 write them."""

from __future__ import annotations

import json

import pytest

from discmed import tools
from discmed.formats import get_format
from discmed.serve.tooling import call_choice, closed

LOOKUP = {"type": "function", "function": {"name": "lookup_drug", "description": "查药品说明", "parameters": {
    "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}  # fmt: skip
CALL = {"id": "call_1", "name": "lookup_drug", "arguments": {"name": "布洛芬"}}
CONVERSATION = [
    {"role": "system", "content": "你是医生助手。"},
    {"role": "user", "content": "布洛芬一天最多吃几次？"},
    {"role": "assistant", "content": "", "tool_calls": [CALL, {**CALL, "id": "call_2", "arguments": {"name": "对乙酰氨基酚"}}]},
    {"role": "tool", "content": "每日不超过4次", "tool_call_id": "call_1"},
    {"role": "tool", "content": "每日不超过4次", "tool_call_id": "call_2"},
]


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def text(tok, ids: list[int]) -> str:
    return tok.decode(ids, skip_special_tokens=False)


def test_chatml_shows_tools_calls_and_results_as_qwen_does(tok):
    got = text(tok, tools.render(get_format("chatml"), tok, CONVERSATION, [LOOKUP]))
    assert got == (
        "<|im_start|>system\n你是医生助手。\n\n# Tools\n\nYou may call one or more functions to assist with the user "
        "query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        '{"type": "function", "function": {"name": "lookup_drug", "description": "查药品说明", "parameters": '
        '{"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}\n</tools>\n\n'
        "For each function call, return a json object with function name and arguments within <tool_call></tool_call> "
        'XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n布洛芬一天最多吃几次？<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "lookup_drug", "arguments": {"name": "布洛芬"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "lookup_drug", "arguments": {"name": "对乙酰氨基酚"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n每日不超过4次\n</tool_response>\n<tool_response>\n每日不超过4次\n"
        "</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    # Not shown (tool_choice none, or a history sent without tools): the calls and results still are,
    # and a conversation without them renders exactly as the format's own prompt.
    bare = text(tok, tools.render(get_format("chatml"), tok, CONVERSATION, None))
    assert bare.startswith("<|im_start|>system\n你是医生助手。<|im_end|>\n") and "<tools>" not in bare
    plain = CONVERSATION[:2]
    assert tools.render(get_format("chatml"), tok, plain, None) == get_format("chatml").prompt(plain, tok)
    with_content = [*CONVERSATION[1:2], {**CONVERSATION[2], "content": "我查一下。", "tool_calls": [CALL]}, CONVERSATION[3]]
    assert '<|im_start|>assistant\n我查一下。\n<tool_call>\n{"name"' in text(tok, tools.render(get_format("chatml"), tok, with_content, None))


def test_llama3_shows_tools_as_llama_3_1_does(tok):
    one_call = [CONVERSATION[1], {**CONVERSATION[2], "tool_calls": [CALL]}, CONVERSATION[3]]
    got = text(tok, tools.render(get_format("llama3"), tok, one_call, [LOOKUP]))
    assert got.startswith(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please respond with a JSON for a "
        "function call with its proper arguments that best answers the given prompt.\n\nRespond in the format "
        '{"name": function name, "parameters": dictionary of argument name and its value}.Do not use variables.\n\n{\n'
        '    "type": "function",\n    "function": {\n        "name": "lookup_drug",'
    )
    assert got.endswith(
        '}\n\n布洛芬一天最多吃几次？<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n{"name": "lookup_drug", '
        '"parameters": {"name": "布洛芬"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n每日不超过4次<|eot_id|>'
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    with pytest.raises(tools.ToolFormatError, match="one tool call") as e:  # Llama 3.1's template allows one
        tools.render(get_format("llama3"), tok, CONVERSATION, [LOOKUP])
    assert e.value.where == "2.tool_calls"


# A chat template of a model trained in the hermes convention, as such templates take `tools`.
HERMES_TEMPLATE = (  # (transformers renders templates with trim_blocks: a newline after a tag is written as a string)
    "{% if tools %}<|im_start|>system\n<tools>{% for t in tools %}{{ '\\n' + t | tojson }}{% endfor %}"
    "{{ '\\n' }}</tools><|im_end|>\n{% endif %}{% for m in messages %}{% if m.role == 'tool' %}"
    "<|im_start|>user\n<tool_response>\n{{ m.content }}\n</tool_response><|im_end|>\n"
    "{% elif m.tool_calls %}<|im_start|>assistant{% for c in m.tool_calls %}{{ '\\n' }}<tool_call>\n"
    '{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}\n</tool_call>{% endfor %}'
    "<|im_end|>\n{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_the_tokenizers_template_renders_tools_itself(tok, monkeypatch):
    fmt = get_format("auto")
    assert tools.convention(fmt, tok) is None  # the tiny model's own template takes no tools
    monkeypatch.setattr(tok, "chat_template", HERMES_TEMPLATE)
    assert tools.convention(fmt, tok) == tools.HERMES
    got = text(tok, tools.render(fmt, tok, CONVERSATION[1:4], [LOOKUP]))
    assert got.startswith('<|im_start|>system\n<tools>\n{"type": "function", "function": {"name": "lookup_drug"')
    assert got.endswith(
        '<|im_start|>assistant\n<tool_call>\n{"name": "lookup_drug", "arguments": {"name": "布洛芬"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "lookup_drug", "arguments": {"name": "对乙酰氨基酚"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n每日不超过4次\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    assert tools.convention(get_format("disc"), tok) is None


# -- reading replies ---------------------------------------------------------------------------

NAMES = ["lookup_drug", "record_symptom"]
HERMES_REPLIES = [  # (what the model wrote, content, calls)
    ('<tool_call>\n{"name": "lookup_drug", "arguments": {"name": "布洛芬"}}\n</tool_call>',
     "", [["lookup_drug", '{"name": "布洛芬"}']]),
    ('我先查一下两种药。\n<tool_call>\n{"name": "lookup_drug", "arguments": {"name": "布洛芬"}}\n</tool_call>\n'
     '<tool_call>\n{"name": "record_symptom", "arguments": {"symptom": "头痛", "days": 3}}\n</tool_call>',
     "我先查一下两种药。\n", [["lookup_drug", '{"name": "布洛芬"}'], ["record_symptom", '{"symptom": "头痛", "days": 3}']]),
    ("布洛芬每日不超过4次，两次之间间隔4到6小时。<tool", "布洛芬每日不超过4次，两次之间间隔4到6小时。<tool", []),
    # A call that does not parse, names no tool of the request, or was cut off: all of it is content.
    ('<tool_call>\n{"name": "lookup_drug", "arguments": {"name": 布洛芬}}\n</tool_call>',
     '<tool_call>\n{"name": "lookup_drug", "arguments": {"name": 布洛芬}}\n</tool_call>', []),
    ('<tool_call>\n{"name": "call_doctor", "arguments": {}}\n</tool_call>',
     '<tool_call>\n{"name": "call_doctor", "arguments": {}}\n</tool_call>', []),
    ('<tool_call>\n{"name": "lookup_drug", "argu', '<tool_call>\n{"name": "lookup_drug", "argu', []),
]  # fmt: skip
LLAMA3_REPLIES = [
    ('{"name": "lookup_drug", "parameters": {"name": "布洛芬"}}', "", [["lookup_drug", '{"name": "布洛芬"}']]),
    ('<|python_tag|>{"name": "lookup_drug", "parameters": {"name": "布洛芬"}}; {"name": "record_symptom", '
     '"parameters": {"symptom": "头痛"}}', "", [["lookup_drug", '{"name": "布洛芬"}'], ["record_symptom", '{"symptom": "头痛"}']]),
    ('  布洛芬的用法是 {"每日": 4}', '  布洛芬的用法是 {"每日": 4}', []),
    ('{"name": "lookup_drug", "parameters": {"name": "布', '{"name": "lookup_drug", "parameters": {"name": "布', []),
]  # fmt: skip


def pieces(stream: tools.CallStream, reply: str, size: int) -> tools.Reading:
    """`reply` fed `size` characters at a time, as an engine's deltas come."""
    events = stream.start()
    for i in range(0, len(reply), size):
        events += stream.feed(reply[i : i + size])
    events += stream.finish(True)
    out = tools.Reading()
    for e in events:
        if e[0] == "content":
            out.content += e[1]
        elif e[0] == "call":
            out.calls.append([e[2], ""])
        else:
            out.calls[e[1]][1] += e[2]
    return out


@pytest.mark.parametrize("conv, replies", [(tools.HERMES, HERMES_REPLIES), (tools.LLAMA3, LLAMA3_REPLIES)])
def test_auto_replies_are_read_alike_whole_and_streamed(conv, replies):
    for reply, content, calls in replies:
        whole = tools.read(tools.call_stream(conv, NAMES), reply, True)
        assert (whole.content, whole.calls) == (content, calls), reply
        for size in (1, 3, 7):
            streamed = pieces(tools.call_stream(conv, NAMES), reply, size)
            assert (streamed.content, streamed.calls) == (content, calls), (reply, size)


def test_parallel_tool_calls_false_keeps_the_first_call():
    reply, _, calls = HERMES_REPLIES[1]
    assert tools.read(tools.call_stream(tools.HERMES, NAMES, single=True), reply, True).calls == calls[:1]
    reply, _, calls = LLAMA3_REPLIES[1]
    assert tools.read(tools.call_stream(tools.LLAMA3, NAMES, single=True), reply, True).calls == calls[:1]


def test_hermes_streams_content_until_a_call_begins():
    stream = tools.HermesCalls(names=frozenset(NAMES))
    assert stream.feed("我先查") == [("content", "我先查")]
    assert stream.feed("一下<tool") == [("content", "一下")]  # "<tool" may begin a call: held
    assert stream.feed("_call>\n{") == []  # it did: the rest is read at the end
    assert stream.finish(True) == [("content", '<tool_call>\n{')]  # and it never parsed


def test_forced_calls_stream_their_arguments():
    required = tools.RequiredCall()
    events = required.start()
    for ch in '{"name":"record_symptom","arguments":{"symptom":"头痛","days":3}}':
        events += required.feed(ch)
    events += required.finish(True)
    assert events[0] == ("call", 0, "record_symptom") and {e[0] for e in events[1:]} == {"args"}
    assert "".join(e[2] for e in events[1:]) == '{"symptom":"头痛","days":3}'
    cut = tools.read(tools.RequiredCall(), '{"name":"record_symptom","arguments":{"symp', False)
    assert cut.calls == [["record_symptom", '{"symp']]  # cut at max_tokens: what was written
    assert tools.read(tools.RequiredCall(), '{"name":"reco', False).content == '{"name":"reco'
    named = tools.read(tools.NamedCall(name="lookup_drug"), '{"name":"布洛芬"}', True)
    assert named.calls == [["lookup_drug", '{"name":"布洛芬"}']] and named.content == ""


def test_forced_schemas_are_closed_and_one_call_is_a_choice_between_tools():
    schema = {"type": "object", "properties": {
        "dose": {"type": "object", "properties": {"mg": {"type": "integer"}}},
        "extra": {"type": "object", "additionalProperties": {"type": "string"}},
        "both": {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}}]},
        "list": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "string"}}}}}}  # fmt: skip
    c = closed(schema)
    assert c["additionalProperties"] is False and c["properties"]["dose"]["additionalProperties"] is False
    assert c["properties"]["extra"]["additionalProperties"] == {"type": "string"}  # said so: kept
    assert "additionalProperties" not in c["properties"]["both"]["allOf"][0]  # parts of allOf: left
    assert c["properties"]["list"]["items"]["additionalProperties"] is False
    assert "additionalProperties" not in schema  # the request's own schema is not changed

    nested = {"$defs": {"Dose": {"type": "object", "properties": {"mg": {"type": "integer"}}}},
              "type": "object", "properties": {"dose": {"$ref": "#/$defs/Dose"}}}  # fmt: skip
    choice = call_choice(["lookup_drug", "dose"], [LOOKUP["function"]["parameters"], nested])
    assert [o["properties"]["name"] for o in choice["anyOf"]] == [{"const": "lookup_drug"}, {"const": "dose"}]
    assert choice["$defs"]["tool1"]["properties"]["dose"] == {"$ref": "#/$defs/tool1/$defs/Dose"}  # still resolves
    import llguidance

    grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(choice), defaults={"whitespace_flexible": False})
    assert llguidance.LLMatcher.validate_grammar_with_warnings(grammar)[0] is False
