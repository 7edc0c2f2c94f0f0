"""Rewrite and KG→QA: the fidelity checks on crafted good and bad outputs, and both steps run
end to end with the tiny model as teacher over real HTTP (discmed's own server)."""

import json

import pytest

from discmed.data.kgqa import check_qa, kgqa_file, parse_qa, sample_entities
from discmed.data.rewrite import check_rewrite, load_prompts, medical_terms, reason_category, rewrite_file

ORIGINAL = "考虑慢性胃炎，查个胃镜和幽门螺杆菌，奥美拉唑20mg一天两次，吃两周。"
GOOD = ("您好，根据您描述的症状，考虑慢性胃炎的可能性比较大。建议您做一个胃镜检查，同时查一下幽门螺杆菌，明确病因。"
        "用药方面，可以服用奥美拉唑20mg，每天2次，连续吃2周，饭前服用效果更好。如果出现黑便或呕血，请及时就医。")


def test_facts_extracted_from_a_doctor_turn():
    assert medical_terms(ORIGINAL) == {"drugs": {"奥美拉唑"}, "tests": {"胃镜", "幽门螺杆菌"}, "diagnoses": {"胃炎"}}
    t = medical_terms("阿莫西林胶囊0.5g，左氧氟沙星也可以，查血常规和胸部CT，排除肺炎，症状加重及时就诊")
    assert t["drugs"] == {"阿莫西林", "氧氟沙星"} and t["tests"] == {"血常规", "胸部CT"} and t["diagnoses"] == {"肺炎"}


@pytest.mark.parametrize("rewrite,expected", [
    (GOOD, []),
    # A list the teacher numbered is not a new number; a number the patient gave may be repeated.
    ("您好：\n1. 考虑慢性胃炎，建议做胃镜并查幽门螺杆菌；\n2. 奥美拉唑20mg，每天2次，连用2周；\n3. 您说的35岁不影响用药，饮食要清淡规律。",
     []),
    (GOOD.replace("20mg", "40mg"), ["missing numbers", "new numbers"]),
    (GOOD.replace("20mg，", ""), ["missing numbers"]),
    (GOOD.replace("奥美拉唑", "抑酸药"), ["missing drugs"]),
    (GOOD.replace("胃镜", "相关"), ["missing tests"]),
    (GOOD.replace("慢性胃炎", "胃部问题"), ["missing diagnoses"]),
    ("作为一个人工智能，" + GOOD, ["AI phrasing"]),
    ("Chronic gastritis: gastroscopy, H. pylori test, omeprazole 20mg twice daily for 2 weeks, "
     "see a doctor if black stool. 胃炎 胃镜 幽门螺杆菌 奥美拉唑", ["not Chinese"]),
    ("胃炎，胃镜，幽门螺杆菌，奥美拉唑20mg，2次，2周", ["too short"]),
    (GOOD * 8, ["too long"]),
    ("", ["empty"]),
])
def test_check_rewrite_crafted(rewrite, expected):
    reasons = check_rewrite(ORIGINAL, rewrite, context="患者：我35岁，胃胀两个月了")
    assert [reason_category(r) for r in reasons] == expected, reasons


FACTS = [("胃炎", "临床表现", "上腹痛"), ("胃炎", "检查", "胃镜"), ("胃炎", "治疗", "奥美拉唑")]


def test_check_qa_crafted():
    q, a = parse_qa("问题：医生您好，胃炎一般有什么表现，要做什么检查，怎么治疗？\n"
                    "回答：您好，胃炎常见的表现是上腹痛，可以通过胃镜明确诊断，治疗上常用奥美拉唑等药物抑制胃酸。"
                    "请在医生指导下用药，症状加重时及时就医。")
    assert check_qa(q, a, FACTS) == []
    assert [reason_category(r) for r in check_qa("胃炎会上腹痛吗？要做胃镜吗？", a, FACTS)] == ["question gives away"]
    assert [reason_category(r) for r in check_qa(q, a.replace("胃镜", "检查"), FACTS)] == ["missing facts"]
    assert [reason_category(r) for r in check_qa(q, a.replace("奥美拉唑", "奥美拉唑20mg"), FACTS)] == ["new numbers"]
    assert parse_qa("胃炎就是胃发炎了。") is None


def test_entity_sampling_is_deterministic(shared_data):
    from discmed.data.sources import load_cmekg

    triples = list(load_cmekg(shared_data / "cmekg" / "train_example.json"))
    a = sample_entities(triples, k=3, seed=1)
    assert a == sample_entities(triples, k=3, seed=1) and all(1 <= len(f) <= 3 for _, f in a)
    assert len({s for s, _ in a}) == len(a) and all(f[0][0] == s for s, f in a)


def test_prompts_are_versioned_chinese():
    p = load_prompts()
    assert p["rewrite"]["version"].startswith("rewrite-zh-") and p["kgqa"]["version"].startswith("kgqa-zh-")
    assert "{original}" in p["rewrite"]["user"] and "{reasons}" in p["rewrite"]["retry"]


@pytest.mark.slow
def test_rewrite_with_tiny_teacher_over_http(tmp_path, tiny_server, shared_data):
    src = tmp_path / "in.jsonl"
    lines = (shared_data / "disc-medllm" / "train" / "test_examples.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    turns = sum(1 for x in lines for m in json.loads(x)["conversation"] if m["role"] == "assistant")
    out = tmp_path / "out.jsonl"
    teacher = f"openai:{tiny_server}@tiny"
    s = rewrite_file(src, out, teacher, max_new_tokens=48, concurrency=3, cache=tmp_path / "cache.sqlite",
                     progress=False)
    print(f"\ntiny teacher rewrite: {s['accepted']} accepted, {s['rejected']} rejected of 3; "
          f"by reason {s['rejected_by_reason']}; {s['teacher_calls']} teacher calls")
    assert s["accepted"] + s["rejected"] == 3 and s["failed"] == 0
    # A rejection means two attempts (the retry told why); calls are at most 2 per doctor turn.
    assert s["rejected"] <= s["teacher_calls"] <= 2 * turns and s["teacher_calls"] >= 2 * s["rejected"]
    rejects = [json.loads(x) for x in (tmp_path / "out.jsonl.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rejects) == s["rejected"]
    for r in rejects:
        assert r["reasons"] and r["first_reasons"] and r["prompt_version"] == "rewrite-zh-v1" and r["teacher"] == teacher
    for rec in map(json.loads, out.read_text(encoding="utf-8").splitlines()):
        assert rec["provenance"]["teacher"] == teacher
    # Run again on the same journal: nothing is asked again, the same files come out.
    before = out.read_bytes(), (tmp_path / "out.jsonl.rejects.jsonl").read_bytes()
    s2 = rewrite_file(src, out, teacher, max_new_tokens=48, cache=tmp_path / "cache.sqlite", progress=False)
    assert s2["teacher_calls"] == 0 and s2["skipped_already_done"] == 3
    assert (out.read_bytes(), (tmp_path / "out.jsonl.rejects.jsonl").read_bytes()) == before


@pytest.mark.slow
def test_kgqa_with_tiny_teacher_over_http(tmp_path, tiny_server, shared_data):
    out = tmp_path / "kgqa.jsonl"
    s = kgqa_file(shared_data / "cmekg" / "train_example.json", out, f"openai:{tiny_server}@tiny", limit=3,
                  max_new_tokens=48, concurrency=3, cache=tmp_path / "cache.sqlite", progress=False)
    print(f"\ntiny teacher kgqa: {s['accepted']} accepted, {s['rejected']} rejected of {s['entities']}; "
          f"by reason {s['rejected_by_reason']}")
    assert s["entities"] == 3 and s["accepted"] + s["rejected"] == 3 and s["failed"] == 0
    rejects = [json.loads(x) for x in (tmp_path / "kgqa.jsonl.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(r["reasons"] and r["triples"] for r in rejects)
    assert s["teacher_calls"] == sum(2 if r["first_reasons"] else 1 for r in rejects) + sum(
        1 + json.loads(x)["provenance"]["retried"] for x in out.read_text(encoding="utf-8").splitlines())


@pytest.mark.slow
def test_kgqa_names_a_reply_cut_off_at_the_token_limit(tmp_path, tiny_server, shared_data):
    """JSON held to the schema but cut off at --max-new-tokens is rejected for the limit, not
    for the teacher's "format" (the reviewer saw all 8 entities rejected as format)."""
    out = tmp_path / "kgqa.jsonl"
    s = kgqa_file(shared_data / "cmekg" / "train_example.json", out, f"openai:{tiny_server}@tiny", limit=2,
                  max_new_tokens=6, concurrency=2, cache="none", progress=False)
    assert s["rejected"] == 2 and s["failed"] == 0
    assert s["rejected_by_reason"] == {"cut off": 2}, s["rejected_by_reason"]
    rejects = [json.loads(x) for x in (tmp_path / "kgqa.jsonl.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(r["reasons"] == ["cut off: the reply reached --max-new-tokens 6 before it was complete"] for r in rejects)


def test_a_word_for_word_copy_of_a_numbered_list_passes():
    # The reviewer's case: list markers were dropped from the rewrite's numbers, not the original's
    # ("missing numbers: 2, 3, 4" for a copy).
    original = ("您好，根据您的情况建议：\n1. 奥美拉唑20mg，每天2次，饭前服用；\n2. 查胃镜和幽门螺杆菌；\n"
                "3. 饮食清淡，少食多餐；\n4. 如有黑便及时就医。")
    assert check_rewrite(original, original) == []
    # The teacher may drop the markers or renumber with 、: still the same facts.
    flat = original.replace("1. ", "").replace("2. ", "").replace("3. ", "").replace("4. ", "")
    assert check_rewrite(original, flat) == []
    assert check_rewrite(original, original.replace("\n2. ", "\n2、").replace("\n3. ", "\n3、")) == []
    # A real number is still checked: dropping the dose is caught, and so is a new one.
    assert [reason_category(r) for r in check_rewrite(original, original.replace("20mg", "40mg"))] == [
        "missing numbers", "new numbers"]
    # A number the original has only as a marker may still be written as a fact ("第2次"), not a new number.
    assert check_rewrite(original, original + "一周后第2次复诊。") == []
