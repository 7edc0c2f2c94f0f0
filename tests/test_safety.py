"""The red-flag safety layer: the shipped rules against the test set written for discmed
(tests/safety_cases.jsonl: urgent and routine messages in Chinese and English, with hard
negatives such as past, negated or informational mentions of red flags).

The set's last 70 lines are two batches written after the rules and scored before any rule
was changed for them: recall 0.65 (13/20) and 0.60 (9/15), no false alarms (0/35). The rules
were then widened and the batches joined the set. So the recall figure printed here is on
messages the rules were tuned to; on new phrasing, expect misses: keyword rules are a safety
net under the model, not a triage nurse."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from discmed.serve.safety import Rules, last_user_text, triage

CASES = [
    json.loads(line)
    for line in (Path(__file__).parent / "safety_cases.jsonl").read_text(encoding="utf-8").splitlines()
]


def test_test_set_is_big_and_mixed():
    zh = [c for c in CASES if re.search(r"[\u4e00-\u9fff]", c["text"])]
    assert len(CASES) >= 150
    assert {True, False} == {c["urgent"] for c in zh} == {c["urgent"] for c in CASES if c not in zh}
    assert len({c["text"] for c in CASES}) == len(CASES)


def test_recall_and_false_alarms():
    urgent = [c["text"] for c in CASES if c["urgent"]]
    routine = [c["text"] for c in CASES if not c["urgent"]]
    missed = [t for t in urgent if not triage(t).urgent]
    alarms = [t for t in routine if triage(t).urgent]
    recall = 1 - len(missed) / len(urgent)
    false_alarm = len(alarms) / len(routine)
    print(
        f"\nsafety triage: recall {recall:.3f} on {len(urgent)} urgent, false alarms {false_alarm:.3f} on {len(routine)} routine"
    )
    assert recall >= 0.95, f"missed: {missed}"
    assert false_alarm <= 0.05, f"false alarms: {alarms}"


def test_urgent_reply_in_the_patients_language():
    t = triage("胸口压榨样疼痛，出冷汗")
    assert t.urgent and t.rule_ids == ["chest_pain"] and "心肌梗死" in t.reasons[0]
    assert t.instruction.startswith("【紧急】") and "120" in t.instruction and "急诊" in t.instruction
    assert t.prefix() == t.instruction + "\n\n"
    assert "不能替代医生" in t.notice and t.lang == "zh"
    en = triage("My dad's face is drooping on one side and his speech is slurred")
    assert en.urgent and en.rule_ids == ["stroke"] and en.lang == "en"
    assert (
        en.instruction.startswith("[URGENT]")
        and "emergency" in en.instruction
        and "not a substitute" in en.notice
    )
    assert "400-161-9995" in triage("我不想活了").instruction  # a crisis line for self-harm
    assert "988" in triage("I want to kill myself").instruction


def test_hard_negatives_and_routine():
    for text in ["我去年胸痛，后来诊断是反流性食管炎", "My chest pain last year was diagnosed as reflux.",
                 "没有胸痛，也没有出汗", "心肌梗死有哪些症状？", "What are the warning signs of a stroke?"]:  # fmt: skip
        t = triage(text)
        assert not t.urgent and t.instruction == "" and t.prefix() == "" and t.notice, text
    assert triage("去年做过支架，今天又胸痛，出冷汗").urgent  # the past does not hide the present
    assert triage("没有发烧，但是胸口疼，还出了很多冷汗").urgent  # negation ends at "但是"


def test_switch_off_and_own_rules(tmp_path):
    off = triage("胸口压榨样疼痛，出冷汗", enabled=False)
    assert not off.urgent and off.notice == "" and off.prefix() == ""
    own = tmp_path / "rules.yaml"
    own.write_text(
        "rules:\n  - id: ear\n    reason_zh: 耳朵剧痛\n    reason_en: severe ear pain\n    zh: [['耳朵剧痛']]\n    en: [['ear agony']]\n"
        "urgent_zh: '【紧急】请去急诊：{reasons}'\n",
        encoding="utf-8",
    )
    t = triage("耳朵剧痛", rules=own)
    assert t.urgent and t.instruction == "【紧急】请去急诊：耳朵剧痛"
    assert not triage("胸口压榨样疼痛，出冷汗", rules=own).urgent  # only the given rules apply
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  - id: x\n    reason_zh: a\n    reason_en: b\n    zh: [['(unclosed']]\n", encoding="utf-8"
    )
    with pytest.raises(ValueError, match=r"bad\.yaml: rules\[0\] \(x\): zh\[0\]: bad pattern"):
        Rules(bad)
    missing = tmp_path / "missing.yaml"
    missing.write_text("rules:\n  - id: x\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"missing\.yaml: rules\[0\]: reason_zh"):
        Rules(missing)


def test_last_user_text():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}]  # fmt: skip
    assert last_user_text(msgs) == "c"
    assert last_user_text([]) == ""
