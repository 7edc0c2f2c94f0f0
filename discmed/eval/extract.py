"""Answer extraction: the option letters a model's free-text reply commits to, or None.

Published exam scores of medical LLMs often cannot be reproduced because each paper parsed
replies its own way. The rules here, in order, and the reasoning behind each:

1. An explicit statement ("答案是B", "正确答案：B、D", "故选C", "The answer is (B)") wins; when a
   reply states an answer more than once, the LAST statement counts, because chain-of-thought
   replies reason first and conclude last, while answer-first replies repeat the same letter.
2. A weaker statement ("B项正确", "Option C is correct") counts only when no explicit one exists:
   explanations list every option's verdict, so these phrases are noisy.
3. A reply that opens with a letter ("B", "B. 卵巢", "（B）") answers with it.
4. A letter standing alone on a line or in brackets, when exactly one letter does.
5. An option's own text instead of its letter ("卵巢"), when exactly one option's text is
   found (an option contained in another found option, like 肝 in 肝硬化, does not count).
Anything else is unparseable: the caller counts it wrong and lists it.
"""

from __future__ import annotations

import re

_FULLWIDTH = str.maketrans(
    {**{chr(0xFF21 + i): chr(ord("A") + i) for i in range(26)}, "：": ":", "（": "(", "）": ")", "，": ","}
)
# A run of option letters: "B", "ABD", "A、B、D", "A, C and D", "B和D".
_RUN = r"([A-J](?:(?:[ \t]*(?:[、,/;；]|和|及|与|以及|或|and|or)[ \t]*|[ \t]*)[A-J])*)(?![A-Za-z0-9])"
_OPEN = r"[\(【\[「]?"

_EXPLICIT = [
    # 答案是B / 正确答案：B、D / 答案应为 (C) / 本题答案选C / 答案：选项B
    r"答案(?:应该|应当|应|就|即)?(?:是|为|选|:|】|\])\s*(?:是|为|选)?\s*:?\s*(?:选项|选择)?\s*:?\s*"
    + _OPEN
    + _RUN,
    # 答：B at the start of a line; <answer>B</answer>; \boxed{C} (reasoning-model habits)
    r"(?:^|\n)\s*答\s*:\s*" + _OPEN + _RUN,
    r"<answer>\s*" + _OPEN + _RUN,
    r"\\boxed\{\s*(?:\\text\{)?\s*" + _RUN,
    # 故选B / 因此选择 C / 应选B项 / 我选 B   (not 选项A, not 不选A)
    r"(?<!不)(?<!不应)(?<!不能)(?<!不可)选(?!项)(?:择)?\s*:?\s*" + _OPEN + _RUN,
    # 正确选项是C / 最佳选项为 B / 正确的选项：D
    r"(?:正确|最佳|最合适)的?选项(?:应该|应)?(?:是|为|:)?\s*" + _OPEN + _RUN,
    # English: The answer is (B) / Answer: C / correct option is D / I choose B
    r"(?i:answer)(?:\s+(?:is|would be|should be))?\s*:?\s*(?i:option\s*)?" + _OPEN + _RUN,
    r"(?i:correct|right|best)\s+(?i:option|choice)\s+(?:is|would be)\s*:?\s*" + _OPEN + _RUN,
    r"(?i:choose|select|pick|go with)\s+(?i:option\s*)?" + _OPEN + _RUN,
]
_WEAK = [
    # B项正确 / A、C、D选项正确 / 选项B是正确的   (不正确 does not match: 正确 must follow directly)
    r"(?<![A-Za-z0-9])" + _RUN + r"\s*(?:项|选项)?\s*(?:是|为)?(?:正确|对)的?(?:答案|选项)?(?!与否)",
    r"选项\s*" + _RUN + r"\s*(?:是|为)?(?:正确|对)",
    r"(?i:option)\s*" + _RUN + r"\s*is\s+(?:the\s+)?(?:correct|right|best)",
]
_LEADING = re.compile(r"^\s*" + _OPEN + _RUN + r"(?:\)|】|\]|」)?(?=$|\s|[\.．。、,:;])")
_ALONE = re.compile(r"(?:^|\n)[ \t]*" + _OPEN + _RUN + r"[\)】\]」]?[ \t]*[\.．。、:]?[ \t]*(?=\n|$)")
_BRACKETED = re.compile(r"[\(【\[「]" + _RUN + r"[\)】\]」]")
_ANSWER_CLAUSE = re.compile(r"答案(?:应该|应当|应|就|即)?(?:是|为|:)\s*([^\n。；;]{1,60})")


def _letters(run: str) -> str:
    return "".join(sorted(set(re.findall(r"[A-J]", run))))


def _last_match(patterns: list[str], text: str) -> str | None:
    best: tuple[int, str] | None = None
    for p in patterns:
        for m in re.finditer(p, text):
            if best is None or m.start(1) >= best[0]:
                best = (m.start(1), m.group(1))
    return _letters(best[1]) if best else None


def _by_option_text(text: str, options: dict[str, str]) -> str | None:
    found = {k: v.strip() for k, v in options.items() if v.strip() and v.strip() in text}
    # Drop options found only because they sit inside another found option (肝 within 肝硬化).
    kept = [k for k, v in found.items() if not any(v != w and v in w for w in found.values())]
    return kept[0] if len(kept) == 1 else None


def parse_choice(output: str, options: dict[str, str], multi: bool = False) -> str | None:
    """The sorted letters `output` answers with ("B", "BD"), or None when it commits to none.

    Letters outside `options` make the reply unparseable rather than silently wrong. For a
    single-answer question a reply naming several letters is returned as is and so scores wrong.
    `multi` only widens the option-text rule to accept several options' texts.
    """
    text = output.translate(_FULLWIDTH).replace("*", "").replace("#", "")
    valid = set(options)
    got = _last_match(_EXPLICIT, text) or _last_match(_WEAK, text)
    if got is None:
        m = _LEADING.match(text)
        if m and not re.match(r"\s+[a-z]", text[m.end() :]):  # "A patient ..." is English, not an answer
            got = _letters(m.group(1))
    if got is None:
        cands = {_letters(m.group(1)) for rx in (_ALONE, _BRACKETED) for m in rx.finditer(text)}
        if len(cands) == 1:
            got = cands.pop()
    if got is None:
        clause = _ANSWER_CLAUSE.search(text)
        got = _by_option_text(clause.group(1), options) if clause else None
        if got is None:
            got = _by_option_text(text, options)
        if got is None and multi:
            hits = [k for k, v in options.items() if v.strip() and v.strip() in text]
            got = "".join(hits) if hits else None
    if not got or not set(got) <= valid:
        return None
    return got
