"""discmed.chat: reading, validating and writing conversations."""

import json

import pytest

from discmed.chat import (
    Conversation,
    DataError,
    iter_conversations,
    read_conversations,
    validate_messages,
    write_conversations,
    write_messages_jsonl,
)


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = {
    "_id": "a1",
    "source": "meddial",
    "conversation": [
        {"role": "user", "content": "我咳嗽三天了"},
        {"role": "assistant", "content": "您好，请问有没有发热？"},
    ],
}


def test_round_trip_disc_jsonl(tmp_path):
    convs = [
        Conversation("a1", "meddial", GOOD["conversation"]),
        Conversation("b2", "cmekg", [{"role": "user", "content": "糖尿病吃什么药"}, {"role": "assistant", "content": "二甲双胍常用。"}], {"lang": "zh"}),
    ]
    path = tmp_path / "out.jsonl"
    assert write_conversations(convs, path) == 2
    back = read_conversations(path)
    assert [c.to_record() for c in back] == [c.to_record() for c in convs]
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert list(first) == ["_id", "source", "conversation"]
    assert "我咳嗽三天了" in path.read_text(encoding="utf-8")  # not \u-escaped


def test_round_trip_openai_messages(tmp_path):
    convs = [Conversation("x", "", [{"role": "system", "content": "你是医生"}] + GOOD["conversation"])]
    path = tmp_path / "m.jsonl"
    write_messages_jsonl(convs, path)
    assert json.loads(path.read_text())["messages"][0]["role"] == "system"
    back = read_conversations(path)
    assert back[0].id == "x" and back[0].messages == convs[0].messages


def test_real_disc_records_read(shared_data):
    convs = read_conversations(shared_data / "disc-medllm/train/test_examples.jsonl")
    assert len(convs) == 163
    assert {c.source for c in convs} >= {"meddial"}
    assert all(c.messages[0]["role"] == "user" for c in convs)


@pytest.mark.parametrize(
    "line, field, message",
    [
        ('{"_id": 1, "conversation": [', "json", "invalid JSON"),
        ('["not", "an", "object"]', "record", "expected a JSON object"),
        ('{"_id": 1}', "conversation", "missing"),
        ('{"conversation": [{"role": "doctor", "content": "hi"}]}', "conversation[0].role", "unknown role 'doctor'"),
        ('{"conversation": [{"role": "user", "content": "  "}]}', "conversation[0].content", "empty content"),
        ('{"conversation": [{"role": "user", "content": 3}]}', "conversation[0].content", "expected a string"),
        (
            '{"conversation": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}',
            "conversation[1].role",
            "two user turns in a row",
        ),
        (
            '{"conversation": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "assistant", "content": "c"}]}',
            "conversation[2].role",
            "two assistant turns in a row",
        ),
        ('{"conversation": [{"role": "assistant", "content": "b"}]}', "conversation[0].role", "must start with a user turn"),
        ('{"conversation": [{"role": "user", "content": "only a question"}]}', "conversation", "no assistant turn"),
        ('{"conversation": []}', "conversation", "no messages"),
        ('{"conversation": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}]}', "conversation[1].role", "system message"),
        ('{"source": 5, "conversation": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}', "source", "expected a string"),
    ],
)
def test_validation_errors_name_file_line_field(tmp_path, line, field, message):
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(GOOD, ensure_ascii=False), "", line])
    with pytest.raises(DataError) as err:
        list(iter_conversations(path))
    e = err.value
    assert (e.path, e.line, e.field) == (str(path), 3, field)
    assert message in e.message
    assert str(e).startswith(f"{path}:3: {field}: ")


def test_skip_mode_reports_every_bad_record(tmp_path):
    lines = [json.dumps(GOOD), "{oops", json.dumps(GOOD), '{"conversation": [{"role": "bot", "content": "x"}]}', json.dumps(GOOD)]
    path = write_lines(tmp_path / "mixed.jsonl", lines)
    errors: list[DataError] = []
    good = list(iter_conversations(path, errors))
    assert len(good) == 3
    assert [(e.line, e.field) for e in errors] == [(2, "json"), (4, "conversation[0].role")]


def test_reader_streams(tmp_path):
    # The reader yields the first record before a later bad line is read: it does not load the file whole.
    path = write_lines(tmp_path / "s.jsonl", [json.dumps(GOOD)] * 3 + ["{broken"])
    it = iter_conversations(path)
    assert next(it).id == "a1"
    with pytest.raises(DataError):
        list(it)


def test_prompt_validation_allows_open_user_turn():
    msgs = validate_messages([{"role": "user", "content": "头疼"}], require_assistant=False)
    assert msgs == [{"role": "user", "content": "头疼"}]


def test_byte_order_mark_and_gbk_lines(tmp_path):
    good = json.dumps(GOOD, ensure_ascii=False)
    # A UTF-8 file saved with a byte-order mark (Windows Notepad): record 1 is read, not dropped.
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + (good + "\n" + good.replace("a1", "a2") + "\n").encode("utf-8"))
    errors = []
    assert [c.id for c in iter_conversations(bom, errors)] == ["a1", "a2"] and errors == []
    # One line saved as GBK among UTF-8 ones: that record is a DataError naming file:line and
    # the encoding, skipped with a list, raised without one; the other records are read.
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes((good + "\n").encode("utf-8") + (good.replace("a1", "g2") + "\n").encode("gbk")
                      + (good.replace("a1", "a3") + "\n").encode("utf-8"))
    errors = []
    assert [c.id for c in iter_conversations(mixed, errors)] == ["a1", "a3"]
    assert [str(e) for e in errors] == [f"{mixed}:2: encoding: not UTF-8: byte 0xce at byte 82 of the line "
                                        "(looks like GBK/GB18030: convert it, e.g. iconv -f GB18030 -t UTF-8)"]
    with pytest.raises(DataError, match=r"mixed.jsonl:2: encoding: not UTF-8.*GBK"):
        list(iter_conversations(mixed))


def test_json_array_that_is_not_utf8_names_the_line(tmp_path):
    from discmed.chat import iter_json_records, read_json

    path = tmp_path / "train.json"
    path.write_bytes('[\n  ["病人：头疼", "医生：量血压"],\n  ["病人：咳嗽", "医生：多喝水"]\n]'.encode("gb18030"))
    with pytest.raises(DataError, match=r"train.json:2: encoding: not UTF-8: byte 0xb2 at byte 5 of the line.*GBK"):
        list(iter_json_records(path))
    path.write_bytes(b"\xef\xbb\xbf" + '[["病人：头疼", "医生：量血压"]]'.encode())
    assert list(iter_json_records(path)) == [(1, ["病人：头疼", "医生：量血压"])]
    assert read_json(path) == [["病人：头疼", "医生：量血压"]]
