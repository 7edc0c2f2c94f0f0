"""Dedup (exact + MinHash near-duplicates), decontamination with planted overlaps, mixing, the data card."""

import csv
import json

import pytest

from discmed.data.card import write_card
from discmed.data.decontam import EvalIndex, decontam_file, default_eval_paths
from discmed.data.dedup import Deduper, dedup_file
from discmed.data.mix import DISC_RECIPE, mix_files, plan_counts


def _rec(i, user, assistant, source="MedDialog"):
    return {"_id": str(i), "source": source,
            "conversation": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def _write(path, recs):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")


BASE = ("孩子三岁，发烧两天，最高39.2℃，咳嗽有痰，精神还可以，吃了布洛芬混悬液5ml后退烧，但是过几个小时又烧起来了，"
        "需要去医院查血常规吗？")
ANSWER = ("您好，孩子反复发热两天并伴有咳嗽咳痰，建议到儿科就诊，查血常规和C反应蛋白，必要时拍胸片，"
          "排除肺炎。体温超过38.5℃可以继续用布洛芬，两次间隔至少6小时，多喝水，注意观察精神状态。")


def test_dedup_exact_and_near(tmp_path):
    recs = [
        _rec(1, BASE, ANSWER),
        _rec(2, BASE.replace("，", ", "), ANSWER),                       # exact after normalisation
        _rec(3, BASE[:-6] + "要不要去医院？", ANSWER),                      # near: the ending reworded
        _rec(4, "最近总是失眠，入睡困难，凌晨三点就醒，白天没精神，已经持续一个月了，怎么办？",
             "长期失眠需要先排查焦虑抑郁和睡眠呼吸暂停，建议规律作息，睡前避免使用手机，必要时到睡眠门诊就诊。"),
    ]
    src = tmp_path / "in.jsonl"
    _write(src, recs)
    s = dedup_file(src, tmp_path / "out.jsonl", report=tmp_path / "removed.jsonl", progress=False)
    assert (s["kept"], s["removed_exact"], s["removed_near"]) == (2, 1, 1)
    kept = [json.loads(x)["_id"] for x in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert kept == ["1", "4"]
    removed = [json.loads(x) for x in (tmp_path / "removed.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["_id"], r["reason"], r["duplicate_of"]) for r in removed] == [("2", "exact", "1"), ("3", "near", "1")]
    assert 0.8 <= removed[1]["similarity"] < 1.0
    # A stricter threshold keeps the reworded one.
    s = dedup_file(src, tmp_path / "out2.jsonl", threshold=0.99, progress=False)
    assert (s["kept"], s["removed_near"]) == (3, 0)


def test_deduper_signature_estimates_jaccard():
    d = Deduper(num_perm=128)
    a = "".join(BASE * 3)
    b = a[:len(a) // 2] + "完全不同的另一半内容" * 10
    sa, sb = d.signature(a), d.signature(b)
    est = float((sa == sb).mean())
    grams = lambda t: {t[i:i + 5] for i in range(len(t) - 4)}  # noqa: E731
    true = len(grams(a) & grams(b)) / len(grams(a) | grams(b))
    assert abs(est - true) < 0.15


def test_decontam_finds_planted_overlaps(tmp_path, shared_data):
    with open(shared_data / "cmmlu" / "test" / "clinical_knowledge.csv", encoding="utf-8") as f:
        row = list(csv.reader(f))[5]
    mcq = row[1] + " " + " ".join(row[2:6])
    cmd = json.loads((shared_data / "disc-medllm" / "eval" / "samples" / "cmd_samples.json").read_text(encoding="utf-8"))[3]
    clin = json.loads((shared_data / "cmb" / "CMB-Clin-v0.json").read_text(encoding="utf-8"))[2]
    clin_answer = clin["QA_pairs"][0]["answer"]
    recs = [
        _rec("mcq", "请回答这道题：" + mcq.replace("，", " , "), "答案是" + row[6]),         # reformatted exam question
        _rec("cmd", "医生你好。" + cmd["question"] + "谢谢！", "建议就诊。"),                  # an eval question inside a consult
        _rec("clin", "病例分析题怎么答？", "参考：" + clin_answer),                           # a CMB-Clin answer as a reply
        _rec("clean1", BASE, ANSWER),
        _rec("clean2", "建议您到医院就诊，做进一步检查。", "好的，建议您到医院就诊。"),           # stock phrases only
    ]
    src = tmp_path / "train.jsonl"
    _write(src, recs)
    index = EvalIndex.from_paths(default_eval_paths(shared_data))
    assert len(index.files) >= 3 + 1 + 18 and len(index.items) > 2000
    s = decontam_file(src, tmp_path / "out.jsonl", index, report=tmp_path / "removed.jsonl", progress=False)
    kept = [json.loads(x)["_id"] for x in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert kept == ["clean1", "clean2"] and s["removed"] == 3
    removed = {r["_id"]: r for r in map(json.loads, (tmp_path / "removed.jsonl").read_text(encoding="utf-8").splitlines())}
    assert removed["mcq"]["eval_file"].endswith("clinical_knowledge.csv") and removed["mcq"]["eval_line"] == 6
    assert removed["cmd"]["eval_file"].endswith("cmd_samples.json") and removed["cmd"]["eval_field"] == "question"
    assert removed["clin"]["eval_file"].endswith("CMB-Clin-v0.json") and removed["clin"]["coverage"] >= 0.9
    # The threshold is the user's: at 1.01 nothing can be removed.
    assert decontam_file(src, tmp_path / "o2.jsonl", index, threshold=1.01, progress=False)["removed"] == 0


def test_mix_disc_proportions_deterministic(tmp_path):
    md = tmp_path / "meddialog.jsonl"
    kg = tmp_path / "kgqa.jsonl"
    mc = tmp_path / "mcqa.jsonl"
    _write(md, [_rec(f"m{i}", f"问题{i}", f"回答{i}", "meddial") for i in range(800)])
    _write(kg, [_rec(f"k{i}", f"知识{i}", f"答{i}", "CMeKG") for i in range(30)])
    _write(mc, [_rec(f"q{i}", f"Q{i}", f"A{i}", "MedMCQA") for i in range(100)])
    s = mix_files([md, kg, mc], tmp_path / "mix.jsonl", seed=7, progress=False)
    # DISC: MedDialog 400k : CMeKG 50k : MedMCQA 8k. CMeKG (30 of a 50/458 share) is scarcest.
    assert s["available"] == {"CMeKG": 30, "MedDialog": 800, "MedMCQA": 100}
    assert s["taken"] == {"CMeKG": 30, "MedDialog": 239, "MedMCQA": 5}
    lines = (tmp_path / "mix.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 274 and len({json.loads(x)["_id"] for x in lines}) == 274
    # One name per source: the records say what the summary counts (DISC's "meddial" is MedDialog).
    assert {json.loads(x)["source"] for x in lines} == {"CMeKG", "MedDialog", "MedMCQA"}
    assert s["renamed_sources"] == {"meddial → MedDialog": 800}
    again = mix_files([md, kg, mc], tmp_path / "mix2.jsonl", seed=7, progress=False)
    assert (tmp_path / "mix2.jsonl").read_bytes() == (tmp_path / "mix.jsonl").read_bytes()
    assert again["lineage"]["output"]["sha256"] == s["lineage"]["output"]["sha256"]
    assert {k: v for k, v in again.items() if k not in ("output", "lineage")} == {
        k: v for k, v in s.items() if k not in ("output", "lineage")}
    other = mix_files([md, kg, mc], tmp_path / "mix3.jsonl", seed=8, progress=False)
    assert other["taken"] == s["taken"] and (tmp_path / "mix3.jsonl").read_bytes() != (tmp_path / "mix.jsonl").read_bytes()
    s = mix_files([md, kg, mc], tmp_path / "mix4.jsonl", counts={"MedDialog": 10, "MedMCQA": 1000}, progress=False)
    assert s["taken"] == {"CMeKG": 0, "MedDialog": 10, "MedMCQA": 100}
    assert plan_counts({"MedDialog": 10**6, "CMeKG": 10**6}, total=900) == {"MedDialog": 800, "CMeKG": 100}
    with pytest.raises(ValueError, match="no input source is in the recipe"):
        plan_counts({"mystery": 5}, weights=DISC_RECIPE)


def test_data_card_written(tmp_path, shared_data):
    from discmed.data.lineage import stamp

    data = shared_data / "disc-medllm" / "train" / "test_examples.jsonl"
    summaries = [stamp({"step": "scrub", "records": 163, "records_changed": 8, "replaced": {"phone": 3, "name": 5},
                        "replaced_total": 8, "changes": "x.changes.jsonl", "changes_count": 8, "bad_records": 0},
                       [], data)]
    s = write_card(data, tmp_path, summaries)
    md = (tmp_path / "DATA_CARD.md").read_text(encoding="utf-8")
    assert s["records"] == 163 and "| MedDialog | 163 | 100.0% |" in md  # DISC's "meddial", by its one name
    assert "| name [姓名] | 5 |" in md and "| 1 | scrub (8 identifiers replaced in 8 records) |" in md
    png = (tmp_path / "data_card.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_two_workers_write_exactly_what_one_does(tmp_path, shared_data):
    import sys
    from pathlib import Path

    from discmed.data.scrub import scrub_file

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import data_cpu  # the benchmark's dialogue generator (near-duplicates and phone numbers included)

    src = tmp_path / "in.jsonl"
    data_cpu.generate(src, 1200)
    with open(src, "a", encoding="utf-8") as f:
        f.write("{broken\n")
    index = EvalIndex.from_paths(default_eval_paths(shared_data))
    outs = {}
    for w in (1, 2):
        d = tmp_path / f"w{w}"
        d.mkdir()
        a = scrub_file(src, d / "s.jsonl", workers=w, progress=False)
        b = dedup_file(d / "s.jsonl", d / "d.jsonl", workers=w, progress=False)
        c = decontam_file(d / "d.jsonl", d / "c.jsonl", index, workers=w, progress=False)
        outs[w] = ([(d / n).read_bytes() for n in ("s.jsonl", "d.jsonl", "c.jsonl", "s.jsonl.changes.jsonl")],
                   [{k: v for k, v in s.items() if k not in ("input", "output", "changes", "lineage")} for s in (a, b, c)],
                   [s["lineage"]["output"]["sha256"] for s in (a, b)])
    assert outs[1] == outs[2]
    assert outs[1][1][0]["bad_records"] == 1 and outs[1][1][0]["replaced"]["phone"] > 0
    assert outs[1][1][1]["removed_near"] > 0
