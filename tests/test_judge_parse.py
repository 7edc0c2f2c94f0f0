"""The score parser on judge replies written in the styles real judges produce.

Each case is (reply, expected scores as P/A/H/L, or None when a careful reader could not
recover all four scores either). The replies were written for this test.
"""

import pytest

from discmed.eval.judge import CRITERIA, parse_scores, parse_verdict

P = "Proactivity"

CASES = [
    # 1-5: DISC's own format and trivial variations
    ("Proactivity: 5\nAccuracy: 5\nHelpfulness: 5\nLinguistic Quality: 5", (5, 5, 5, 5)),
    ("Proactivity: 4\nAccuracy: 4.5\nHelpfulness: 4\nLinguistic Quality: 5", (4, 4.5, 4, 5)),
    ("```\nProactivity: 3\nAccuracy: 4\nHelpfulness: 4\nLinguistic Quality: 5\n```", (3, 4, 4, 5)),
    ("```text\nProactivity: 2\nAccuracy: 3\nHelpfulness: 3\nLinguistic Quality: 4\n```", (2, 3, 3, 4)),
    ("proactivity:4\naccuracy:5\nhelpfulness:5\nlinguistic quality:5", (4, 5, 5, 5)),
    # 6-10: full-width punctuation and digits, Chinese names
    ("Proactivity：4\nAccuracy：5\nHelpfulness：4\nLinguistic Quality：5", (4, 5, 4, 5)),
    ("主动性：4\n准确性：5\n帮助性：4\n语言质量：5", (4, 5, 4, 5)),
    ("主动性：４\n准确性：４\n有用性：３\n语言质量：５", (4, 4, 3, 5)),
    ("主动性4分，准确性5分，帮助性4分，语言质量5分。", (4, 5, 4, 5)),
    ("主动性：四分\n准确性：五分\n帮助性：四分\n语言质量：五分", (4, 5, 4, 5)),
    # 11-15: markdown
    ("**Proactivity**: 4\n**Accuracy**: 5\n**Helpfulness**: 4\n**Linguistic Quality**: 5", (4, 5, 4, 5)),
    ("- **Proactivity:** 3\n- **Accuracy:** 4\n- **Helpfulness:** 4\n- **Linguistic Quality:** 4", (3, 4, 4, 4)),
    ("### Scores\n1. Proactivity: 4\n2. Accuracy: 4\n3. Helpfulness: 5\n4. Linguistic Quality: 5", (4, 4, 5, 5)),
    (
        "| Criterion | Score |\n|---|---|\n| Proactivity | 4 |\n| Accuracy | 5 |\n| Helpfulness | 4 |\n| Linguistic Quality | 5 |",
        (4, 5, 4, 5),
    ),
    (
        "| Proactivity | Accuracy | Helpfulness | Linguistic Quality |\n|:---:|:---:|:---:|:---:|\n| 3 | 4 | 4 | 5 |",
        (3, 4, 4, 5),
    ),
    # 16-20: "x/5", "x out of 5", 10-point scales
    ("Proactivity: 4/5\nAccuracy: 5/5\nHelpfulness: 4/5\nLinguistic Quality: 5/5", (4, 5, 4, 5)),
    ("Proactivity: 4 / 5\nAccuracy: 3 / 5\nHelpfulness: 3 / 5\nLinguistic Quality: 4 / 5", (4, 3, 3, 4)),
    ("主动性：4／5\n准确性：5／5\n帮助性：4／5\n语言质量：5／5", (4, 5, 4, 5)),
    ("Proactivity: 4 out of 5\nAccuracy: 4 out of 5\nHelpfulness: 5 out of 5\nLinguistic Quality: 5 out of 5", (4, 4, 5, 5)),
    ("Proactivity: 8/10\nAccuracy: 10/10\nHelpfulness: 6/10\nLinguistic Quality: 10/10", (4, 5, 3, 5)),
    # 21-25: prose around the scores
    (
        "Based on the conversation, here is my evaluation:\n\nProactivity: 3\nAccuracy: 4\nHelpfulness: 4\nLinguistic Quality: 5\n\nThe doctor did not ask about the medical history.",
        (3, 4, 4, 5),
    ),
    (
        "根据对话内容，评分如下：\n```\nProactivity: 4\nAccuracy: 4\nHelpfulness: 5\nLinguistic Quality: 5\n```\n医生整体表现较好，但未询问既往史。",
        (4, 4, 5, 5),
    ),
    (
        "Proactivity: 2 (the doctor never asked a follow-up question)\nAccuracy: 4 (advice is sound)\nHelpfulness: 3 (generic)\nLinguistic Quality: 5",
        (2, 4, 3, 5),
    ),
    (
        "Proactivity: 3 - The doctor asked 2 questions but missed the key one.\nAccuracy: 4 - No factual errors in 3 recommendations.\nHelpfulness: 4\nLinguistic Quality: 5",
        (3, 4, 4, 5),
    ),
    (
        "Proactivity: The doctor asked about the duration and fever. Score: 4\nAccuracy: The advice is correct. Score: 5\nHelpfulness: Score: 4\nLinguistic Quality: Score: 5",
        (4, 5, 4, 5),
    ),
    # 26-30: reasoning first, conclusion last; scores restated
    (
        "Let me assess Proactivity first: the doctor asked about symptoms.\nAccuracy is reasonable.\n\nFinal scores:\nProactivity: 4\nAccuracy: 4\nHelpfulness: 4\nLinguistic Quality: 5",
        (4, 4, 4, 5),
    ),
    (
        "主动性方面，医生询问了发病时间和伴随症状，给4分；准确性方面，建议基本正确，给4分；帮助性方面，建议具体可行，给5分；语言质量方面，表达流畅，给5分。",
        (4, 4, 5, 5),
    ),
    (
        "I would initially give Proactivity: 5, but on reflection the doctor missed the allergy history.\nProactivity: 4\nAccuracy: 5\nHelpfulness: 5\nLinguistic Quality: 5",
        (4, 5, 5, 5),
    ),
    ("Proactivity score: 3\nAccuracy score: 4\nHelpfulness score: 4\nLinguistic Quality score: 5", (3, 4, 4, 5)),
    ("Proactivity = 4, Accuracy = 5, Helpfulness = 4, Linguistic Quality = 5", (4, 5, 4, 5)),
    # 31-35: JSON and one-liners
    ('{"Proactivity": 4, "Accuracy": 5, "Helpfulness": 4, "Linguistic Quality": 5}', (4, 5, 4, 5)),
    ('```json\n{\n  "Proactivity": 3,\n  "Accuracy": 4,\n  "Helpfulness": 3,\n  "Linguistic Quality": 4\n}\n```', (3, 4, 3, 4)),
    ("Proactivity: 4, Accuracy: 5, Helpfulness: 4, Linguistic Quality: 5.", (4, 5, 4, 5)),
    ("Proactivity: 4; Accuracy: 4; Helpfulness: 4; Linguistic Quality: 4", (4, 4, 4, 4)),
    ("4\n5\n4\n5", (4, 5, 4, 5)),
    # 36-40: mixed languages, bracketed paraphrases, spacing
    ("主动性（Proactivity）：3\n准确性（Accuracy）：4\n帮助性（Helpfulness）：4\n语言质量（Linguistic Quality）：5", (3, 4, 4, 5)),
    ("Proactivity (主动性): 4\nAccuracy (准确性): 5\nHelpfulness (帮助性): 5\nLinguistic Quality (语言质量): 5", (4, 5, 5, 5)),
    ("Proactivity :  4\n\nAccuracy :  3\n\nHelpfulness :  3\n\nLinguistic Quality :  4", (4, 3, 3, 4)),
    ("Proactivity: 4分\nAccuracy: 5分\nHelpfulness: 4分\nLinguistic Quality: 5分", (4, 5, 4, 5)),
    ("评分结果：\n主动性 - 3\n准确性 - 4\n实用性 - 4\n语言表达 - 5", (3, 4, 4, 5)),
    # 41-52: replies no careful reader can score (the tiny model's kind, and broken judges)
    ("Proactivity: x\nAccuracy: x\nHelpfulness: x\nLinguistic Quality: x", None),
    ("Proactivity: 4\nAccuracy: 5\nHelpfulness: 4", None),
    ("医生的回答很好，建议多喝水，注意休息。", None),
    ("", None),
    ("Proactivity: 7\nAccuracy: 5\nHelpfulness: 4\nLinguistic Quality: 5", None),
    ("Proactivity: 0\nAccuracy: 0\nHelpfulness: 0\nLinguistic Quality: 0", None),
    ("I'm sorry, but I can't evaluate this conversation.", None),
    ("主动性一般，准确性较好，帮助性不错，语言质量很高。", None),
    ("病人：我头疼了3天。\n医生：建议您休息2天，多喝水。", None),
    ("Proactivity:\nAccuracy:\nHelpfulness:\nLinguistic Quality:", None),
    ("的的的 主动 主动 3岁 准确 5天 语言", None),
    ("4 5 4", None),
]


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40
    assert sum(expected is None for _, expected in CASES) >= 10


@pytest.mark.parametrize(("reply", "expected"), CASES, ids=[f"case{i + 1}" for i in range(len(CASES))])
def test_parse_scores(reply, expected):
    got = parse_scores(reply)
    if expected is None:
        assert got is None
    else:
        assert got == dict(zip(CRITERIA, map(float, expected), strict=True))


def test_parses_every_released_disc_judgement(shared_data):
    import json

    lines = list((shared_data / "disc-medllm/eval/gpt4_scores").glob("*/*.jsonl"))
    assert len(lines) == 18
    parsed = 0
    for path in lines:
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            scores = parse_scores(record["scores"])
            assert scores is not None, (path, record["id"])
            assert scores[P] == float(record["scores"].split("\n")[0].split(": ")[1])
            parsed += 1
    assert parsed == 1879


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("医生A追问了病史，医生B没有。\n结论：A", "A"),
        ("两位医生都不错，但B的建议更具体。\n结论：B", "B"),
        ("两者表现相当。\n结论：平局", "tie"),
        ("Verdict: B", "B"),
        ("结论：医生A", "A"),
        ("我认为A更好，但B也行", None),
    ],
)
def test_parse_verdict(reply, expected):
    assert parse_verdict(reply) == expected
