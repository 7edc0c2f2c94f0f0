"""Answer extraction on replies written in the styles real chat models produce.

The replies below were written for discmed (not copied from any model run or dataset); each
imitates a habit seen in published eval dumps: answer-first with an explanation, reasoning
first with a conclusion, bare letters, full-width letters, markdown, English, option text
instead of a letter, multi-answer lists, refusals and hedges.
"""

import pytest

from discmed.eval.extract import parse_choice

O4 = {"A": "卵巢", "B": "前庭大腺", "C": "前庭球", "D": "乳腺"}
O5 = {"A": "白秃疮", "B": "肥疮", "C": "鹅掌风", "D": "疥疮", "E": "白疕"}
OLIVER = {"A": "肝", "B": "肝硬化", "C": "脾大", "D": "腹水"}
OEN = {"A": "Amoxicillin", "B": "Doxycycline", "C": "Ceftriaxone", "D": "Azithromycin"}

SINGLE = [
    # bare and near-bare letters
    ("B", O4, "B"),
    ("B.", O4, "B"),
    ("B．", O4, "B"),
    ("B、", O4, "B"),
    (" C\n", O4, "C"),
    ("（D）", O4, "D"),
    ("(A)", O4, "A"),
    ("【C】", O4, "C"),
    ("Ｂ", O4, "B"),
    ("Ｃ．前庭球", O4, "C"),
    ("B. 前庭大腺", O4, "B"),
    ("A 卵巢", O4, "A"),
    ("**B**", O4, "B"),
    # explicit statements
    ("答案是B", O4, "B"),
    ("答案：B", O4, "B"),
    ("答案:C", O4, "C"),
    ("答案为 D。", O4, "D"),
    ("答案是：A", O4, "A"),
    ("正确答案是C。", O4, "C"),
    ("正确答案：Ｄ", O4, "D"),
    ("本题答案选B", O4, "B"),
    ("答案应为（C）前庭球。", O4, "C"),
    ("答案：选项A", O4, "A"),
    ("选 B", O4, "B"),
    ("故选C。", O4, "C"),
    ("因此选择 D", O4, "D"),
    ("应选B项。", O4, "B"),
    ("我选A，因为卵巢是女性的生殖腺。", O4, "A"),
    ("正确选项是C", O4, "C"),
    ("最佳选项为 B。", O4, "B"),
    ("**答案：A**\n\n**解析**：女性生殖腺是卵巢，能产生卵子并分泌性激素。", O4, "A"),
    ("## 答案\nB", O4, "B"),
    # answer first, explanation mentions other letters
    ("答案：A\n解析：B项前庭大腺属于附属腺；C项前庭球是勃起组织；D项乳腺是皮肤腺。故A正确。", O4, "A"),
    ("B。前庭大腺……不对，这道题问的是生殖腺，A选项错误的说法不成立。答案是B", O4, "B"),
    ("【答案】C", O4, "C"),
    ("答：B", O4, "B"),
    ("参考答案：D", O4, "D"),
    ("答案：B项", O4, "B"),
    ("<think>卵巢产生卵子，是生殖腺。</think>\n<answer>A</answer>", O4, "A"),
    ("所以最终结果是 $\\boxed{C}$", O4, "C"),
    # reasoning first, conclusion last
    ("我们逐一分析：A项卵巢是生殖腺；B项前庭大腺不是；C项不是；D项也不是。因此正确答案是A。", O4, "A"),
    (
        "首先，白秃疮一般不留瘢痕。其次，肥疮（黄癣）可破坏毛囊，愈后留萎缩性瘢痕。综上所述，答案为B。",
        O5,
        "B",
    ),
    ("分析：选项A错误，选项C错误，选项D错误。所以本题选B", O4, "B"),
    ("A项错误。B项正确。C项错误。D项错误。", O4, "B"),
    ("选项D是正确的，其余均不符合题意。", O4, "D"),
    ("这道题考查生殖腺的概念。\n\nC\n\n前庭球不是腺体，这里我记错了，应该是：\n答案：A", O4, "A"),
    ("不选A，也不选C，应选D", O4, "D"),
    ("答案不是A，正确答案是D。", O4, "D"),
    # answer given by its option text
    ("卵巢", O4, "A"),
    ("答案是前庭大腺。", O4, "B"),
    ("女性的生殖腺是乳腺吗？不是。正确答案：卵巢", O4, "A"),
    ("肝硬化", OLIVER, "B"),
    ("鹅掌风", O5, "C"),
    # English replies
    ("The answer is B.", OEN, "B"),
    ("Answer: C", OEN, "C"),
    ("The correct answer is (D) Azithromycin.", OEN, "D"),
    ("Based on the symptoms, doxycycline is first-line. The answer is B", OEN, "B"),
    ("I would choose A because amoxicillin covers the likely organism.", OEN, "A"),
    ("Option C is correct.", OEN, "C"),
    ("The correct option is D", OEN, "D"),
    ("Ceftriaxone", OEN, "C"),
    # five options, E
    ("答案：E", O5, "E"),
    ("E. 白疕", O5, "E"),
    # hedges, refusals and nonsense: unparseable
    ("我不确定这道题的答案。", O4, None),
    ("作为AI助手，我无法提供医疗建议，请咨询专业医生。", O4, None),
    ("这道题很难，需要更多信息。", O4, None),
    ("答案：E", O4, None),  # a letter the question does not have
    ("A patient with these findings needs further testing.", OEN, None),
    ("维生素B12缺乏会导致贫血。", O4, None),
    ("肝和肝硬化都有可能。", {"A": "肝", "B": "肝硬化", "C": "脾", "D": "肾"}, "B"),
    ("卵巢和乳腺都是腺体。", O4, None),
    ("", O4, None),
    ("的的的的 患者 医生 答案", O4, None),
]

MULTI = [
    ("正确答案：B、D", O5, "BD"),
    ("答案：ACD", O5, "ACD"),
    ("ABD", O5, "ABD"),
    ("A、B、E", O5, "ABE"),
    ("答案是A和C", O5, "AC"),
    ("答案：Ａ，Ｃ，Ｄ", O5, "ACD"),
    ("B,C", O5, "BC"),
    ("正确选项为 B D E", O5, "BDE"),
    ("分析：A正确，B错误，C正确。故选AC。", O5, "AC"),
    ("A、C、D项正确。", O5, "ACD"),
    ("The answers are A and C. Answer: A, C", O5, "AC"),
    ("答案：DBA", O5, "ABD"),  # letters out of order still form the same set
    ("白秃疮、鹅掌风", O5, "AC"),
    ("我不知道", O5, None),
]


@pytest.mark.parametrize("output,options,expected", SINGLE)
def test_single_answer(output, options, expected):
    assert parse_choice(output, options) == expected


@pytest.mark.parametrize("output,options,expected", MULTI)
def test_multi_answer(output, options, expected):
    assert parse_choice(output, options, multi=True) == expected


def test_enough_cases():
    assert len(SINGLE) + len(MULTI) >= 60


def test_multiple_letters_on_single_question_are_kept_and_score_wrong():
    # A model that hedges between two letters has not answered a single-answer question.
    assert parse_choice("答案：A或B", O4) == "AB"
