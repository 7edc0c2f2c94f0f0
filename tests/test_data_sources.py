"""Each source loader on small files in the documented shapes, malformed input included."""

import json

import pytest

from discmed.chat import DataError
from discmed.data.sources import (
    load_alpaca,
    load_cmedqa2,
    load_cmekg,
    load_meddialog_json,
    load_meddialog_txt,
    load_medmcqa,
    load_moss,
    load_to_jsonl,
)

MEDDIALOG_TXT = """id=1
https://www.haodf.com/doctorteam/flow_team_123.htm

Doctor faculty
消化内科

Description
疾病：
慢性胃炎
病情描述：
胃胀两个月，饭后明显。
希望获得的帮助：
需要做胃镜吗？

Dialogue
病人：
胃胀两个月了，饭后更明显。
病人：
有时候还打嗝。
医生：
有没有反酸烧心？
病人：
有时候有。
医生：
建议做胃镜检查，先吃奥美拉唑20mg每天一次。

id=2
https://www.haodf.com/doctorteam/flow_team_456.htm

Doctor faculty
儿科

Description
病情描述：
孩子发烧。

Dialogue
家长说：孩子39度
医生：
多喝水。
"""


def test_meddialog_txt(tmp_path):
    p = tmp_path / "2020.txt"
    p.write_text(MEDDIALOG_TXT, encoding="utf-8")
    errors = []
    convs = list(load_meddialog_txt(p, errors))
    assert len(convs) == 1
    c = convs[0]
    assert c.id == "meddialog-1" and c.source == "MedDialog" and c.extra["department"] == "消化内科"
    assert [m["role"] for m in c.messages] == ["user", "assistant", "user", "assistant"]
    assert c.messages[0]["content"].startswith("疾病：慢性胃炎\n病情描述：胃胀两个月")
    assert "有时候还打嗝" in c.messages[0]["content"]  # consecutive patient turns merged
    assert c.messages[3]["content"] == "建议做胃镜检查，先吃奥美拉唑20mg每天一次。"
    assert len(errors) == 1 and str(errors[0]).startswith(f"{p}:38: Dialogue: line does not start with 病人：")
    with pytest.raises(DataError, match=r"2020.txt:38: Dialogue"):
        list(load_meddialog_txt(p))


def test_meddialog_json(tmp_path):
    p = tmp_path / "train.json"
    data = [["病人：头疼三天", "医生：量过血压吗？", "病人：150/95", "医生：建议心内科就诊"],
            ["病人：咳嗽", "护士：请稍等"],
            ["医生：你好", "病人：腰疼", "医生：做个CT"]]
    p.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    errors = []
    convs = list(load_meddialog_json(p, errors))
    assert [len(c.messages) for c in convs] == [4, 2]  # the third starts at the patient
    assert convs[0].messages[2] == {"role": "user", "content": "150/95"}
    # The second dialogue starts on line 8 of the pretty-printed file.
    assert [str(e) for e in errors] == [f"{p}:8: [1][1]: expected a string starting with 病人： or 医生："]


def test_cmedqa2(tmp_path):
    (tmp_path / "question.csv").write_text("question_id,content\n1,胃疼怎么办\n2,\"失眠，多梦\"\n3,\n",
                                           encoding="utf-8")
    (tmp_path / "answer.csv").write_text("ans_id,question_id,content\n10,1,建议查幽门螺杆菌\n11,1,少吃辛辣\n"
                                         "12,2,规律作息\n13,9,孤儿答案\n", encoding="utf-8")
    errors = []
    convs = list(load_cmedqa2(tmp_path, errors))
    assert [(c.id, c.messages[1]["content"]) for c in convs] == [("cmedqa2-1", "建议查幽门螺杆菌"), ("cmedqa2-2", "规律作息")]
    assert convs[1].messages[0]["content"] == "失眠，多梦"
    assert [str(e) for e in errors] == [f"{tmp_path / 'question.csv'}:4: content: empty",
                                        f"{tmp_path / 'answer.csv'}:5: question_id: '9' is not in question.csv"]
    assert len(list(load_cmedqa2(tmp_path, [], all_answers=True))) == 3
    (tmp_path / "answer.csv").write_text("id,qid,text\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"answer.csv:1: ans_id: missing column"):
        list(load_cmedqa2(tmp_path, []))


def test_medmcqa_cop_base(tmp_path):
    p = tmp_path / "dev.json"
    rows = [{"question": "Drug of choice for absence seizures?", "opa": "Phenytoin", "opb": "Ethosuximide",
             "opc": "Carbamazepine", "opd": "Phenobarbital", "cop": 2, "exp": "Ethosuximide blocks T-type Ca channels.",
             "id": "q1", "subject_name": "Pharmacology"},
            {"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 5, "id": "q2"},
            {"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "", "cop": 1, "id": "q3"}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    errors = []
    convs = list(load_medmcqa(p, errors))
    assert len(convs) == 1
    assert convs[0].messages[1]["content"].startswith("The answer is B. Ethosuximide\nExplanation:")
    assert "A. Phenytoin\nB. Ethosuximide" in convs[0].messages[0]["content"]
    assert [e.field for e in errors] == ["cop", "opd"] and errors[0].line == 2
    # The Hugging Face copy is 0-based: the same cop 2 means C.
    assert list(load_medmcqa(p, [], cop_base=0))[0].messages[1]["content"].startswith("The answer is C.")


def test_moss_and_alpaca(tmp_path):
    moss = tmp_path / "moss.jsonl"
    moss.write_text(json.dumps({"conversation_id": 7, "meta_instruction": "...", "num_turns": 2, "chat": {
        "turn_1": {"Human": "<|Human|>: 你好<eoh>\n", "MOSS": "<|MOSS|>: 你好！有什么可以帮你？<eom>\n"},
        "turn_2": {"Human": "<|Human|>: 感冒吃什么药<eoh>\n", "MOSS": "<|MOSS|>: 建议多休息，必要时就医。<eom>\n"}}},
        ensure_ascii=False) + "\n" + json.dumps({"chat": {"turn_1": {"Human": "只有问"}}}, ensure_ascii=False) + "\n",
        encoding="utf-8")
    errors = []
    convs = list(load_moss(moss, errors))
    assert convs[0].id == "moss-7" and convs[0].messages[3] == {"role": "assistant", "content": "建议多休息，必要时就医。"}
    assert [str(e) for e in errors] == [f"{moss}:2: chat.turn_1.MOSS: missing or not a string"]

    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"instruction": "解释高血压", "input": "", "output": "高血压是……"},
                                  {"instruction": "翻译", "input": "fever", "output": "发烧"},
                                  {"instruction": "空输出", "input": "", "output": ""}], ensure_ascii=False, indent=2),
                      encoding="utf-8")
    errors = []
    convs = list(load_alpaca(alpaca, errors))
    assert [c.messages[0]["content"] for c in convs] == ["解释高血压", "翻译\nfever"]
    assert errors[0].field == "output" and errors[0].line == 12


def test_cmekg_real_sample(shared_data):
    triples = list(load_cmekg(shared_data / "cmekg" / "train_example.json"))
    assert len(triples) >= 50
    assert ("12小时尿沉渣计数", "相关疾病", "单纯型尿路感染") == triples[0][:3]
    assert all(len(t) == 4 for t in triples)


def test_load_to_jsonl_real_disc_and_stop(tmp_path, shared_data):
    out = tmp_path / "disc.jsonl"
    s = load_to_jsonl("disc", [shared_data / "disc-medllm" / "train" / "test_examples.jsonl"], out, progress=False)
    assert s["records"] == 163 and s["bad_records"] == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 163
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversation": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}\n'
                   '{"conversation": [{"role": "doctor", "content": "x"}]}\n', encoding="utf-8")
    s = load_to_jsonl("disc", [bad], tmp_path / "o.jsonl", progress=False)
    assert s["records"] == 1 and s["errors"] == [f"{bad}:2: conversation[0].role: unknown role 'doctor' "
                                                 "(expected one of system, user, assistant)"]
    with pytest.raises(DataError):
        load_to_jsonl("disc", [bad], tmp_path / "o2.jsonl", on_error="stop", progress=False)
    assert not (tmp_path / "o2.jsonl").exists()
    with pytest.raises(ValueError, match="kgqa"):
        load_to_jsonl("cmekg", [bad], tmp_path / "o3.jsonl")


def test_truncated_json_array_is_an_error_not_a_short_read(tmp_path):
    from discmed.chat import DataError, iter_json_records

    path = tmp_path / "cut.json"
    path.write_text('[\n  {"a": 1},\n  {"a": 2},\n', encoding="utf-8")
    it = iter_json_records(path)
    assert [line for line, _ in (next(it), next(it))] == [2, 3]
    with pytest.raises(DataError, match="not closed") as err:
        next(it)
    assert err.value.path == str(path) and err.value.line == 4


def test_meddialog_json_turns_over_several_lines(tmp_path, shared_data):
    # MedDialog's preprocessed JSON, one dialogue with turns that run over several lines.
    p = tmp_path / "multi.json"
    data = [["病人：孩子发烧两天\n最高39度", "医生：您好：\n1. 多喝水\n2. 38.5度以上吃布洛芬", "病人：好的"]]
    p.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    errors = []
    (conv,) = list(load_meddialog_json(p, errors))
    assert errors == [] and conv.messages == [{"role": "user", "content": "孩子发烧两天\n最高39度"},
                                              {"role": "assistant", "content": "您好：\n1. 多喝水\n2. 38.5度以上吃布洛芬"}]
    # The reviewer's file: the real DISC sample written as MedDialog JSON. 27 of its 163
    # dialogues have a turn with a line break, and all 163 load, text unchanged.
    disc = [json.loads(x) for x in (shared_data / "disc-medllm" / "train" / "test_examples.jsonl").read_text(
        encoding="utf-8").splitlines()]
    as_meddialog = [[("病人：" if m["role"] == "user" else "医生：") + m["content"] for m in r["conversation"]] for r in disc]
    assert sum(any("\n" in u for u in d) for d in as_meddialog) == 27
    p = tmp_path / "train.json"
    p.write_text(json.dumps(as_meddialog, ensure_ascii=False, indent=1), encoding="utf-8")
    s = load_to_jsonl("meddialog-json", [p], tmp_path / "meddialog.jsonl", progress=False)
    assert (s["records"], s["bad_records"]) == (163, 0), s["errors"]
    out = [json.loads(x) for x in (tmp_path / "meddialog.jsonl").read_text(encoding="utf-8").splitlines()]
    want = [[{"role": m["role"], "content": m["content"].strip()} for m in r["conversation"]] for r in disc]
    for conv in want:  # a dialogue ends with the doctor (the loader drops a trailing patient turn)
        while conv[-1]["role"] == "user":
            conv.pop()
    assert [r["conversation"] for r in out] == want


def test_one_name_per_source_from_load_on(tmp_path, shared_data):
    s = load_to_jsonl("disc", [shared_data / "disc-medllm" / "train" / "test_examples.jsonl"], tmp_path / "d.jsonl",
                      progress=False)
    assert s["renamed_sources"] == {"meddial → MedDialog": 163}
    assert {json.loads(x)["source"] for x in (tmp_path / "d.jsonl").read_text(encoding="utf-8").splitlines()} == {"MedDialog"}
    # the step's lineage: what it read and wrote, by content
    import hashlib

    assert s["lineage"]["inputs"][0]["sha256"] == hashlib.sha256(
        (shared_data / "disc-medllm" / "train" / "test_examples.jsonl").read_bytes()).hexdigest()
    assert s["lineage"]["output"]["sha256"] == hashlib.sha256((tmp_path / "d.jsonl").read_bytes()).hexdigest()


def test_gbk_lines_in_text_and_csv_sources(tmp_path):
    # A MedDialog .txt with one dialogue saved as GBK: that dialogue is reported at its line and skipped.
    good = MEDDIALOG_TXT.split("id=2")[0]
    p = tmp_path / "2020.txt"
    p.write_bytes(good.encode("utf-8") + good.replace("id=1", "id=7").encode("gbk") + good.replace("id=1", "id=8").encode("utf-8"))
    errors = []
    assert [c.id for c in load_meddialog_txt(p, errors)] == ["meddialog-1", "meddialog-8"]
    first_gbk = len(good.splitlines()) + 1 + next(i for i, x in enumerate(good.splitlines()) if not x.isascii())
    assert all(e.field == "encoding" and "GBK" in e.message for e in errors) and errors[0].line == first_gbk
    # cMedQA2 with a GBK answer row: the row is reported and skipped, the others read.
    (tmp_path / "question.csv").write_text("question_id,content\n1,胃疼怎么办\n2,失眠\n", encoding="utf-8")
    (tmp_path / "answer.csv").write_bytes("ans_id,question_id,content\n10,1,建议查幽门螺杆菌\n".encode()
                                          + "11,2,规律作息\n".encode("gbk"))
    errors = []
    assert [c.id for c in load_cmedqa2(tmp_path, errors)] == ["cmedqa2-1"]
    assert [(e.line, e.field) for e in errors] == [(3, "encoding")]
