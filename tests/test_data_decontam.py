"""Decontamination against structured eval items: CMMLU leaks verbatim and edited, a CMB-Clin case,
MLEC-QA / CMB-Exam shaped files, items too short to index, and the CLI's line."""

import json

import pytest
from typer.testing import CliRunner

from discmed.chat import DataError
from discmed.data.decontam import EvalIndex, decontam_file, read_eval_file
from discmed.eval.loaders import load_cmmlu, load_task


def _rec(i, *turns):
    roles = ["user", "assistant"] * len(turns)
    return {"_id": str(i), "source": "MedDialog", "conversation": [{"role": r, "content": t} for r, t in zip(roles, turns, strict=False)]}


def _write(path, recs):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    return path


def _lines(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def _real(shared_data, n=3):
    return _lines(shared_data / "disc-medllm" / "train" / "test_examples.jsonl")[:n]


def test_cmmlu_verbatim_leaks_from_the_issue_are_removed(tmp_path, shared_data):
    # The reviewer's check: 200 CMMLU test items copied with "A. …" options; the old index removed 52.
    task = load_task("cmmlu")
    qs = [q for f in sorted((shared_data / "cmmlu" / "test").glob("*.csv")) for q in load_cmmlu(f, f.stem, task)][:200]
    recs = [_rec(f"leak{i}", q.question + "\n" + "\n".join(f"{k}. {v}" for k, v in q.options.items()), f"答案：{q.answer}")
            for i, q in enumerate(qs)]
    clean = _real(shared_data)
    src = _write(tmp_path / "leak.jsonl", recs + clean)
    index = EvalIndex.from_paths([shared_data / "cmmlu"])
    s = decontam_file(src, tmp_path / "out.jsonl", index, report=tmp_path / "removed.jsonl", progress=False)
    short = {(r["eval_file"], r["eval_line"]) for r in index.too_short}
    indexable = [q for q in qs if tuple(q.source.rsplit(":", 1)) not in {(f, str(n)) for f, n in short}]
    assert len(indexable) >= 198 and s["removed"] == len(indexable)
    assert [r["_id"] for r in _lines(tmp_path / "out.jsonl")] == [f"leak{i}" for i, q in enumerate(qs) if q not in indexable] + \
        [r["_id"] for r in clean]
    first = _lines(tmp_path / "removed.jsonl")[0]
    assert first["_id"] == "leak0" and first["eval_file"] == qs[0].source.rsplit(":", 1)[0]
    assert first["eval_line"] == int(qs[0].source.rsplit(":", 1)[1]) and first["eval_field"].startswith("Question")


def test_cmmlu_light_edits_are_removed_and_clean_records_kept(tmp_path, shared_data):
    task = load_task("cmmlu")
    f = shared_data / "cmmlu" / "test" / "anatomy.csv"
    q = load_cmmlu(f, "anatomy", task)[2]  # 甲状腺的动脉来自 (8 characters):颈内动脉 颈外动脉 锁骨下动脉的分支 颈总动脉
    opts = list(q.options.values())
    host = _real(shared_data, 1)[0]["conversation"]
    recs = [
        _rec("relabelled", q.question + "\n" + "\n".join(f"({i}) {v}" for i, v in enumerate(reversed(opts), 1)), "选(4)"),
        _rec("punctuation", q.question + "（ ）？ " + "  ".join(f"{k}、{v}" for k, v in zip("ABCD", opts, strict=True)), "D"),
        _rec("fullwidth", q.question + "\nＡ．" + opts[0] + "\nＢ．" + opts[1] + "\nＣ．" + opts[2] + "\nＤ．" + opts[3], "Ｄ"),
        _rec("in-dialogue", host[0]["content"] + "\n顺便问个题：" + q.question + " ①" + "①".join(opts) + "\n谢谢",
             host[1]["content"]),
        _rec("question+answer", f"{q.question}什么？答案是{q.options[q.answer]}。", "对"),
        _rec("options-only", "今天学了" + "、".join(opts) + "，记不住。", "多复习。"),    # options alone: common words
        *_real(shared_data),
    ]
    src = _write(tmp_path / "in.jsonl", recs)
    s = decontam_file(src, tmp_path / "out.jsonl", EvalIndex.from_paths([f]), report=tmp_path / "rm.jsonl", progress=False)
    kept = [r["_id"] for r in _lines(tmp_path / "out.jsonl")]
    assert kept == ["options-only"] + [r["_id"] for r in _real(shared_data)] and s["removed"] == 5
    removed = {r["_id"]: r for r in _lines(tmp_path / "rm.jsonl")}
    assert removed["question+answer"]["eval_field"] == "Question+answer"
    assert removed["relabelled"]["eval_field"] == "Question+A+B+C+D" and removed["relabelled"]["eval_line"] == 4


def test_weak_evidence_is_not_a_leak(tmp_path):
    # A real false positive found while tuning: a consultation reply about 免疫抑制剂 holding two of the options.
    csv = tmp_path / "internal_medicine.csv"
    csv.write_text(",Question,A,B,C,D,Answer\n0,ITP 最常用的免疫抑制剂是,硫唑嘌呤,长春新碱,甲氨喋呤,环磷酰胺,C\n"
                   "1,胃溃疡与肠溃疡谁易癌变,胃溃疡,肠溃疡,一样,都不会,A\n", encoding="utf-8")
    index = EvalIndex.from_paths([csv])
    # A short question alone, whose own words are two of its options: those are not options found.
    assert index.match("胃溃疡与肠溃疡谁易癌变？") is None
    assert index.match("胃溃疡与肠溃疡谁易癌变？一样还是都不会？")[2] == ["Question", "C", "D"]
    assert index.match("间质性肺炎可用免疫抑制剂。最常用的免疫抑制剂是环磷酰胺，也有人用硫唑嘌呤。") is None
    hit = index.match("最常用的免疫抑制剂是环磷酰胺、硫唑嘌呤还是长春新碱？")  # half the question, three options
    assert hit is not None and hit[2] == ["Question", "A", "B", "D"] and 0.5 <= hit[1] < 1
    assert index.match("ITP最常用的免疫抑制剂是：环磷酰胺或硫唑嘌呤")[2] == ["Question", "A", "D"]


def test_cmb_clin_case_verbatim_and_edited_removed(tmp_path, shared_data):
    clin = json.loads((shared_data / "cmb" / "CMB-Clin-v0.json").read_text(encoding="utf-8"))[5]
    qa = clin["QA_pairs"]
    verbatim = [clin["description"] + "\n" + qa[0]["question"], qa[0]["answer"]]
    for p in qa[1:]:
        verbatim += [p["question"], p["answer"]]
    edited = [t.replace("，", ",").replace("。", ". ").replace("\n", " ") for t in reversed(verbatim)]
    one_answer = ["病例分析题第二问怎么答？", "参考答案：" + qa[-1]["answer"].replace("，", "、")]
    src = _write(tmp_path / "in.jsonl", [_rec("verbatim", *verbatim), _rec("edited", *edited),
                                         _rec("answer", *one_answer), *_real(shared_data)])
    index = EvalIndex.from_paths([shared_data / "cmb"])
    s = decontam_file(src, tmp_path / "out.jsonl", index, report=tmp_path / "rm.jsonl", progress=False)
    assert s["removed"] == 3 and [r["_id"] for r in _lines(tmp_path / "out.jsonl")] == [r["_id"] for r in _real(shared_data)]
    rm = {r["_id"]: r for r in _lines(tmp_path / "rm.jsonl")}
    assert all(r["eval_file"].endswith("CMB-Clin-v0.json") and r["eval_line"] == rm["verbatim"]["eval_line"] for r in rm.values())
    assert rm["verbatim"]["eval_field"] == "description" and rm["answer"]["eval_field"] == f"QA_pairs[{len(qa) - 1}].answer"


def test_mlecqa_and_cmb_exam_shapes(tmp_path):
    mlec = tmp_path / "Clinic_test.json"
    mlec.write_text(json.dumps([
        {"qid": "13413fc4", "qtype": "A1型题", "qtext": "治愈后，遗留有萎缩性瘢痕的皮肤病是（　　）。", "qimage": "",
         "options": {"A": "白秃疮", "B": "肥疮", "C": "鹅掌风", "D": "疥疮", "E": "白疕"}, "answer": ["B"]}],
        ensure_ascii=False), encoding="utf-8")
    cmb = tmp_path / "CMB-test-merge.jsonl"  # CMB-Exam's test split: no answers, still indexed
    cmb.write_text(json.dumps({"id": 7, "exam_type": "医师考试", "question": "胃溃疡的描述，正确的是",
                               "question_type": "单项选择题", "option": {"A": "多见于胃大弯", "B": "常为多发",
                                                                    "C": "直径多在2cm以内", "D": "癌变率高于十二指肠溃疡"}},
                              ensure_ascii=False) + "\n", encoding="utf-8")
    (s1, a), (s2, b) = read_eval_file(mlec), read_eval_file(cmb)
    assert (s1, s2) == ("mlecqa", "cmb_exam") and [it.question[0] for it in a + b] == ["qtext", "question"]
    assert a[0].answer == ["肥疮"] and not b[0].answer
    index = EvalIndex.from_paths([mlec, cmb])
    recs = [_rec("mlec", "治愈后遗留有萎缩性瘢痕的皮肤病是？\nA、白秃疮 B、肥疮 C、鹅掌风", "B"),
            _rec("cmb", "请问：胃溃疡的描述, 正确的是 (1)直径多在２ｃｍ以内 (2)常为多发", "(1)"),  # full-width: NFKC
            _rec("clean", "胃溃疡会癌变吗？", "胃溃疡有一定癌变风险，建议定期复查胃镜。")]
    src = _write(tmp_path / "in.jsonl", recs)
    s = decontam_file(src, tmp_path / "out.jsonl", index, report=tmp_path / "rm.jsonl", progress=False)
    assert s["removed"] == 2 and [r["_id"] for r in _lines(tmp_path / "out.jsonl")] == ["clean"]
    assert {(r["_id"], r["eval_line"], r["eval_field"].split("+")[0]) for r in _lines(tmp_path / "rm.jsonl")} == \
        {("mlec", 1, "qtext"), ("cmb", 1, "question")}
    mlec.write_text('[{"qid": "x", "qtext": "题干", "options": {"A": "甲", "C": "丙"}, "answer": "A"}]', encoding="utf-8")
    with pytest.raises(DataError, match=r"Clinic_test.json:1: options: option letters AC are not consecutive"):
        EvalIndex.from_paths([mlec])
    cmd = tmp_path / "cmd_samples.jsonl"
    cmd.write_text('{"id": "1", "question": "孩子发烧三天了，要不要去医院？"}\n{"id": "2", "department": "儿科"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"cmd_samples.jsonl:2: question: missing"):
        EvalIndex.from_paths([cmd])


def test_too_short_items_reported_and_cli_line(tmp_path, shared_data):
    csv = tmp_path / "tcm.csv"
    csv.write_text(",Question,A,B,C,D,Answer\n0,肾在液为,唾,泪,涎,尿,A\n1,甲状腺的动脉来自,颈内动脉,颈外动脉,锁骨下动脉的分支,颈总动脉,D\n",
                   encoding="utf-8")
    cmid = tmp_path / "cmid_samples.jsonl"
    cmid.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [
        {"id": "1", "question": "经前肚子疼怎么办"},
        {"id": "2", "question": "你好，我想咨询一下，我小便时有疼痛感，请问是怎么回事？"},
        {"id": "3", "question": "睾丸炎是怎么引起的？",  # CMD-like: a short question, a long answer
         "raw_anwser": "睾丸炎多由细菌或病毒感染引起，常见的是腮腺炎病毒，也可继发于附睾炎。建议到泌尿外科就诊。"}]),
        encoding="utf-8")
    recs = [_rec("short-mcq", "肾在液为\nA. 唾\nB. 泪\nC. 涎\nD. 尿", "A"),      # too short: kept, and listed
            _rec("whole", "经前肚子疼怎么办？", "可以热敷。"),                       # a short question that is the whole message
            _rec("inside", "医生您好，经前肚子疼怎么办？量也少。", "建议查激素。"),       # ... inside a longer one: not found
            _rec("cmid", "你好，我想咨询一下，我小便时有疼痛感，请问是怎么回事？", "建议查尿常规。"),
            _rec("cmd-question", "睾丸炎是怎么引起的", "多为感染。")]
    src = _write(tmp_path / "in.jsonl", recs)
    from discmed.cli import app

    r = CliRunner().invoke(app, ["data", "decontam", str(src), "-o", str(tmp_path / "out.jsonl"), "--eval", str(csv),
                                 "--eval", str(cmid), "--no-progress", "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    short_file = tmp_path / "out.jsonl.too_short.jsonl"
    line = r.stdout.strip().splitlines()[-2]
    assert line == (f"decontam: kept 2, removed 3 (5 eval items from 2 files; 2 of them too short to index "
                    f"and 1 with a part too short, listed in {short_file})")
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["eval_files_by_shape"] == {"cmmlu": 1, "cases": 1}
    assert s["too_short"] == 2 and s["too_short_by_eval_file"] == {"tcm.csv": 1, "cmid_samples.jsonl": 1}
    short = _lines(short_file)
    assert [(x["eval_file"], x["eval_line"], x["eval_field"], x["eval_text"], x["part"]) for x in short] == [
        (str(csv), 2, "Question", "肾在液为", False), (str(cmid), 1, "question", "经前肚子疼怎么办", False),
        (str(cmid), 3, "question", "睾丸炎是怎么引起的？", True)]
    assert "under 12" in short[0]["reason"] and all("found only as a whole message" in x["reason"] for x in short[1:])
    assert [x["_id"] for x in _lines(tmp_path / "out.jsonl")] == ["short-mcq", "inside"]
