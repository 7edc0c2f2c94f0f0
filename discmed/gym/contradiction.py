"""Where a patient's words contradict the case ledger, beyond a number it does not hold.

The LLM patient's checker (discmed.gym.patient.check_reply) refuses a reply that:

- denies a finding the ledger says is present, when it speaks of it (asked about it, or cites
  it): "不发烧" for a case with fever, "没有过敏" for a case allergic to penicillin;
- asserts a finding the ledger says is absent ("有点发烧" for "无发热"), or names an allergen
  the ledger does not ("对头孢过敏" where it holds none, or another drug);
- puts a finding on the wrong side ("左边肩膀疼" for a right shoulder);
- gives a duration the ledger does not (in words as well as digits: "两天" for 14 hours), or
  the wrong onset ("慢慢开始的" for a sudden one, "昨天开始的" for one that began today).

A finding is present, absent or mixed: mixed when its fact has both negated and plain clauses
("体温37.3℃，无高热"), then, by the words that ask about it as the fact and the patient's line use
them (denied or not: "没有发烧" is absent, "有点发烧" present), and failing those by its clauses.
A mixed finding is held to neither rule, so a truthful "没有高烧" passes. A bare "没有。" denies
what was asked. Words shorter than two characters are not used to tell what a reply speaks of
("腰", "疼": "腰不疼" would deny the "疼" of a painful urination): the checks are heuristics
that catch the plain contradictions, not every paraphrase.
"""

from __future__ import annotations

import re

from discmed.gym.ledger import Finding, Ledger, norm

NEG_BEFORE = re.compile(r"(?:没有|没|不|无|未|非|否认)[^，。,；;？?！!]{0,2}$")
NEG_AFTER = re.compile(r"^[^，。,；;？?！!]{0,2}(?:没有|没|无)(?:[，。,；;！!]|$)")
NEGATED_CLAUSE = re.compile(r"^.{0,2}?(?:无|未|没有|没|不|非|否认)")  # "无发热", "大便无脓血"; not "右侧手脚无力"
BARE_NO = re.compile(r"^(?:没有|没|不|无|不是|都没有)[^，。,；;？?！!]{0,3}[。！!]?$")
CLAUSES = re.compile(r"[，,；;。]")
SIDE = re.compile(r"(?<!左)右|左(?!右)")  # 左右 ("about", "3天左右") is not a side
DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
HOURS = {"分钟": 1 / 60, "小时": 1, "钟头": 1, "天": 24, "日": 24, "周": 168, "星期": 168, "礼拜": 168,
         "月": 720, "年": 8760}
DURATION = re.compile(r"(\d+(?:\.\d+)?|[零一二两俩三四五六七八九十]+|半)(多)?(?:个)?(分钟|小时|钟头|天|日|周|星期|礼拜|月|年)")
SUDDEN, GRADUAL = ("突然", "一下子", "猛地"), ("慢慢", "逐渐", "渐渐", "越来越")
ONSET_DAY = re.compile(r"(今天|昨天|前天|上周|上个月)[^，。,；;]{0,4}(?:开始|起|出现|发生)")
ALLERGEN = re.compile(r"对([^，。,；;？?！!对]{1,8}?)过敏")


def denied(text: str, word: str) -> bool:
    """Whether every mention of `word` in `text` is denied (没有胸痛, 不发烧, 发烧倒没有)."""
    starts = [m.start() for m in re.finditer(re.escape(word), text)]
    return all(NEG_BEFORE.search(text[max(0, i - 4):i]) or NEG_AFTER.search(text[i + len(word):i + len(word) + 6])
               for i in starts)


def polarity(f: Finding) -> str:
    """present | absent | mixed (see the module's docstring)."""
    clauses = [c.strip() for c in CLAUSES.split(f.fact) if c.strip()]
    negated = [bool(NEGATED_CLAUSE.match(c)) for c in clauses]
    if any(negated) and not all(negated):
        return "mixed"
    uses = [denied(text, w) for text in (f.fact, f.say) for w in _words(f) if w in text]
    if uses:
        return "absent" if all(uses) else "present" if not any(uses) else "mixed"
    return "absent" if all(negated) else "present"


def _words(f: Finding) -> list[str]:
    return [s for s in f.synonyms if len(norm(s)) >= 2]


def _chinese_number(s: str) -> float | None:
    if s == "半":
        return 0.5
    if re.fullmatch(r"\d+(?:\.\d+)?", s):
        return float(s)
    if "十" in s:  # 十, 十四, 二十, 二十三
        tens, _, ones = s.partition("十")
        t = DIGITS.get(tens, None) if tens else 1
        o = DIGITS.get(ones, None) if ones else 0
        return None if t is None or o is None else float(10 * t + o)
    return float(DIGITS[s]) if len(s) == 1 and s in DIGITS else None


def durations(text: str) -> list[tuple[str, float]]:
    """(as written, hours) for every exact duration in `text` ("3个多月" and "几天" are not
    exact; "每天", "一天3次" are frequencies)."""
    out = []
    for m in DURATION.finditer(text):
        value = _chinese_number(m.group(1))
        rate = text[max(0, m.start() - 1):m.start()] == "每" or re.match(r"[\d一二两三四五六七八九十]+次", text[m.end():])
        if value is not None and not m.group(2) and not rate:
            out.append((m.group(0), value * HOURS[m.group(3)]))
    return out


def contradictions(say: str, ledger: Ledger, asked: list[str], cited: list[str]) -> list[str]:
    """How `say` contradicts the ledger ([] when it does not). `asked`: the finding ids the
    doctor's turn asks about; `cited`: the ones the patient says it used (both ledger ids)."""
    problems = []
    whole = ledger.opening + ledger.chief_complaint + "".join(f.fact + f.say for f in ledger.findings)
    bare = bool(BARE_NO.match(say.strip()))
    for f in (ledger.finding(i) for i in dict.fromkeys([*asked, *cited])):
        said = [w for w in _words(f) if w in say]
        kind = polarity(f)
        if kind == "present" and (said and all(denied(say, w) for w in said) or bare and f.id in asked):
            problems.append(f"contradicts the ledger: denies {f.id} ({f.fact})")
        elif kind == "absent" and any(not denied(say, w) for w in said):
            problems.append(f"contradicts the ledger: asserts {f.id}, which the case denies ({f.fact})")
    for clause in CLAUSES.split(say):
        sides = set(SIDE.findall(clause))
        spoken = [f for f in ledger.findings if any(w in clause for w in _words(f))]
        sided = [set(SIDE.findall(f.fact + f.say)) for f in spoken]
        sided = [s for s in sided if s]
        if sides and sided and not any(sides <= s for s in sided):
            names = ", ".join(f.id for f in spoken)
            problems.append(f"contradicts the ledger: says {''.join(sorted(sides))} of {names}, which the case "
                            f"puts on the other side")
    known = [h for _, h in durations(whole)]
    wrong = [w for w, h in durations(say) if not any(abs(h - k) <= 0.01 * k for k in known)]
    if wrong:
        problems.append(f"contradicts the ledger: a duration the case does not give: {', '.join(wrong)}")
    for said_words, other in ((GRADUAL, SUDDEN), (SUDDEN, GRADUAL)):
        hit = next((w for w in said_words if w in say and not denied(say, w)), None)
        if hit and any(w in whole for w in other) and not any(w in whole for w in said_words):
            problems.append(f"contradicts the ledger: says the onset was {hit}, the case says "
                            f"{next(w for w in other if w in whole)}")
    for m in ONSET_DAY.finditer(say):
        case_days = {d.group(1) for d in ONSET_DAY.finditer(whole)} | {d for d in ("今天", "昨天", "前天") if d in whole}
        if case_days and m.group(1) not in case_days:
            problems.append(f"contradicts the ledger: says it began {m.group(1)}, the case says "
                            f"{'/'.join(sorted(case_days))}")
    for m in ALLERGEN.finditer(say):
        allergen = m.group(1).strip()
        if re.search(r"(?:不|没|没有|无)$", allergen):  # 对青霉素不过敏: a denial
            continue
        if allergen and allergen not in whole:
            problems.append(f"contradicts the ledger: an allergy the case does not have: {allergen}")
    return problems
