"""The safety layer: red-flag triage of a patient's message and the standing notice.

One layer for terminal chat, the API and the web page. `triage(text)` reads the patient's
latest message against a catalogue of red-flag concepts written for discmed
(`rules/redflags.yaml`) and returns whether it describes an emergency, which red flags it
saw, the urgent-care instruction to put before the model's reply (in the patient's
language), and the standing notice that the assistant is not a doctor.

How a message is read:
  1. Concepts (chest pain, sweating, a drooping mouth corner …) are found as mentions by
     regular expressions with colloquial, dialect and typo variants; vital signs are read
     as numbers (blood pressure, SpO2, heart and breathing rate, temperature, glucose, an
     infant's age) and become concepts such as `vital_bp_low`.
  2. Each mention gets its own context, as the ConText algorithm does for clinical
     English: negated ("没有胸痛"), resolved ("疼了一会儿就好了"), historical ("三年前心梗",
     "中风过"), hypothetical or informational ("如果…", "…有哪些症状", news), each cue
     reaching only the mentions in its scope. A message that is an exam question or a
     professional asking a dose is informational as a whole.
  3. A category is urgent when one of its single concepts, or all concepts of one of its
     combinations ("胸痛" + "出冷汗"), have a current, affirmed mention.

The rules are fast (p95 well under 2 ms a message, benchmarks/triage_latency.py),
auditable and editable by a clinician. A model can add a second opinion
(`discmed.serve.triage_model`); the rules stay the floor.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from discmed import SAFETY_NOTICE_EN, SAFETY_NOTICE_ZH

DEFAULT_RULES = Path(__file__).with_name("rules") / "redflags.yaml"

_CJK = re.compile(r"[\u4e00-\u9fff]")
_SENTENCE = re.compile(r"[。！？!?；;\n]|(?<=[a-z0-9)])\.(?:\s+|$)")
_CLAUSE = re.compile(r"[，,、：:（）()]|[。！？!?；;\n]|(?<=[a-z0-9)])\.(?:\s+|$)")
_CN_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_NUM = r"(\d+(?:\.\d+)?|[零一二两三四五六七八九十百]+)"


@dataclass
class Triage:
    """Result of triage: `instruction` is empty unless `urgent`; `notice` is always set
    (empty only when safety is switched off). `source` says who made the verdict: "rules",
    or "rules+model" when a second-opinion model was asked (`model` holds its answer)."""

    urgent: bool
    reasons: list[str] = field(default_factory=list)
    notice: str = ""
    instruction: str = ""
    lang: str = "zh"
    rule_ids: list[str] = field(default_factory=list)
    source: str = "rules"
    model: dict | None = None

    def prefix(self) -> str:
        """Text to put before the model's reply: the urgent instruction, or nothing."""
        return self.instruction + "\n\n" if self.urgent else ""


@dataclass
class _Category:
    id: str
    reason_zh: str
    reason_en: str
    any: list[str]
    all: list[list[str]]


VITALS = {"vital_bp_low", "vital_bp_high", "vital_bp_extreme", "vital_bp_preg", "vital_spo2_low", "vital_hr_high",
          "vital_hr_extreme", "vital_rr_high", "vital_temp_fever", "vital_temp_high", "vital_temp_very_high",
          "vital_temp_extreme", "vital_temp_low", "vital_glucose_low", "vital_glucose_high", "vital_glucose_extreme",
          "vital_infant_young", "vital_age_older", "vital_bp_preg_mild"}


class Rules:
    """The compiled red-flag catalogue (concepts, categories, context cues, thresholds)."""

    def __init__(self, path: str | Path = DEFAULT_RULES):
        import yaml

        self.path = Path(path)
        try:
            raw = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"{self.path}: cannot read safety rules: {e}") from e
        if not isinstance(raw, dict) or not isinstance(raw.get("categories"), list):
            raise ValueError(f"{self.path}: categories: expected a list under the key 'categories'")
        self.concepts: dict[str, re.Pattern] = {}
        for name, patterns in (raw.get("concepts") or {}).items():
            if isinstance(patterns, str):
                patterns = [patterns]
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise ValueError(f"{self.path}: concepts.{name}: expected a list of regular expressions")
            self.concepts[name] = self._compile("|".join(f"(?:{p})" for p in patterns), f"concepts.{name}")
        self.categories: list[_Category] = []
        for i, c in enumerate(raw["categories"]):
            where = f"{self.path}: categories[{i}]"
            if not isinstance(c, dict):
                raise ValueError(f"{where}: expected a mapping")
            for key in ("id", "reason_zh", "reason_en"):
                if not isinstance(c.get(key), str):
                    raise ValueError(f"{where}: {key}: missing or not a string")
            any_, all_ = list(c.get("any") or []), [list(x) for x in (c.get("all") or [])]
            if not any_ and not all_:
                raise ValueError(f"{where} ({c['id']}): needs 'any' or 'all'")
            for name in any_ + [n for combo in all_ for n in combo]:
                if name not in self.concepts and name not in VITALS:
                    raise ValueError(f"{where} ({c['id']}): unknown concept {name!r}")
            self.categories.append(_Category(c["id"], c["reason_zh"], c["reason_en"], any_, all_))
        ctx = raw.get("context") or {}
        self.window = int(ctx.get("negation_window", 8))
        cue = lambda key: self._compile(ctx.get(key) or r"(?!x)x", f"context.{key}")  # noqa: E731
        self.neg_pre, self.resolved_post, self.scope_end = cue("negation_pre"), cue("resolved_post"), cue("scope_end")
        self.history_pre, self.history_post, self.present = cue("history_pre"), cue("history_post"), cue("present")
        self.hypo_pre, self.hypo_post = cue("hypothetical_pre"), cue("hypothetical_post")
        self.educational, self.professional = cue("message_educational"), cue("message_professional")
        self.dose, self.hypo_end = cue("message_dose"), cue("hypothetical_end")
        self.hypo_clause = cue("hypothetical_clause")
        self.vitals = {k: float(v) for k, v in (raw.get("vitals") or {}).items()}
        self.urgent_zh = raw.get("urgent_zh", "【紧急】请立即拨打 120 或到最近医院的急诊科就诊。（{reasons}）")
        self.urgent_en = raw.get("urgent_en", "[URGENT] Call 120 or go to the emergency department now. ({reasons})")
        self.suicide_zh = raw.get("urgent_suicide_zh", "")
        self.suicide_en = raw.get("urgent_suicide_en", "")

    def _compile(self, pattern: str, where: str) -> re.Pattern:
        try:
            return re.compile(pattern)
        except re.error as e:
            raise ValueError(f"{self.path}: {where}: bad pattern: {e}") from e

    # -- the verdict ------------------------------------------------------------------------

    def triage(self, text: str) -> Triage:
        lang = "zh" if _CJK.search(text or "") else "en"
        notice = SAFETY_NOTICE_ZH if lang == "zh" else SAFETY_NOTICE_EN
        hits = self.categories_for(text or "")
        if not hits:
            return Triage(False, [], notice, "", lang, [])
        reasons = [c.reason_zh if lang == "zh" else c.reason_en for c in hits]
        sep = "；" if lang == "zh" else "; "
        instruction = (self.urgent_zh if lang == "zh" else self.urgent_en).format(reasons=sep.join(reasons))
        if any(c.id == "suicide" for c in hits):
            extra = self.suicide_zh if lang == "zh" else self.suicide_en
            instruction = f"{instruction}{'' if lang == 'zh' else ' '}{extra}".strip()
        return Triage(True, reasons, notice, instruction, lang, [c.id for c in hits])

    def categories_for(self, text: str) -> list[_Category]:
        """The categories whose concepts have current, affirmed mentions in `text`."""
        m = _Message(self, _normalize(text))
        if m.informational:
            return []
        return [c for c in self.categories
                if any(m.has(n) for n in c.any) or any(all(m.has(n) for n in combo) for combo in c.all)]

    def mentions(self, text: str) -> dict[str, list[tuple[str, str]]]:
        """Every mention found, with its context ("current", "negated", "history",
        "hypothetical"): for reading why a message was or was not flagged."""
        m = _Message(self, _normalize(text))
        out: dict[str, list[tuple[str, str]]] = {}
        for name in list(self.concepts) + sorted(VITALS):
            for s, e in m.spans(name):
                out.setdefault(name, []).append((m.text[s:e], m.context(s, e)))
        return out


class _Message:
    """One normalised message with its clause and sentence boundaries and a cache of
    mentions per concept; the context of each mention is decided here."""

    def __init__(self, rules: Rules, text: str):
        self.r, self.text = rules, text
        self.clauses = [0] + [m.end() for m in _CLAUSE.finditer(text)]
        self.sentences = [0] + [m.end() for m in _SENTENCE.finditer(text)]
        self._cache: dict[str, bool] = {}
        self._vitals: dict[str, list[tuple[int, int]]] | None = None
        self.informational = bool(rules.educational.search(text)
                                  or (rules.professional.search(text) and rules.dose.search(text)))

    def has(self, name: str) -> bool:
        if name not in self._cache:
            self._cache[name] = any(self.context(s, e) == "current" for s, e in self.spans(name))
        return self._cache[name]

    def spans(self, name: str) -> list[tuple[int, int]]:
        if name in VITALS:
            if self._vitals is None:
                self._vitals = _read_vitals(self.text, self.r.vitals)
            return self._vitals.get(name, [])
        return [m.span() for m in self.r.concepts[name].finditer(self.text)]

    def _start_of(self, bounds: list[int], pos: int) -> int:
        return bounds[bisect.bisect_right(bounds, pos) - 1]

    def _end_of(self, bounds: list[int], pos: int) -> int:
        i = bisect.bisect_right(bounds, pos)
        return bounds[i] if i < len(bounds) else len(self.text)

    def context(self, start: int, end: int) -> str:
        r, text = self.r, self.text
        clause_start = self._start_of(self.clauses, start)
        before = text[clause_start:start]
        cut = list(r.scope_end.finditer(before))
        near = before[cut[-1].end():] if cut else before
        # A finding that is itself an absence ("没放屁", "没尿") is not negated by the
        # "没" of a neighbour ("两天没拉也没放屁").
        if text[start] not in "没不无未" and r.neg_pre.search(near[-r.window:]):
            return "negated"
        if r.hypo_clause.search(near):
            return "hypothetical"
        after = text[end:self._end_of(self.clauses, end)]
        res = r.resolved_post.search(after)
        if res and not re.search(r"(没|不|未)[^，。]{0,2}$", after[: res.start()]):
            return "negated"
        sent_start = self._start_of(self.sentences, start)
        sent_before = text[sent_start:start]
        if r.history_post.search(text[end:end + 12]):
            return "history"
        last_hist = _last(r.history_pre, sent_before)
        if last_hist is not None and not r.present.search(sent_before[last_hist.end():]):
            return "history"
        last_hypo = _last(r.hypo_pre, sent_before)
        consequent = "就" in text[max(clause_start, start - 3):start]  # "如果你走我就去死": intent
        if last_hypo is not None and not consequent and not r.hypo_end.search(sent_before[last_hypo.end():]) or \
                r.hypo_post.search(text[end:self._end_of(self.sentences, end)]):
            return "hypothetical"
        return "current"


def _last(pattern: re.Pattern, text: str) -> re.Match | None:
    """The last match of `pattern` in `text`: the cue nearest the mention."""
    found = None
    for found in pattern.finditer(text):  # noqa: B007 - the loop keeps the last one
        pass
    return found


# -- vital signs --------------------------------------------------------------------------

_CN2 = r"[一二两三四五六七八九十百]{2,4}"  # a spoken number: 八十, 一百二
_BP = re.compile(r"(?<![0-9.])(\d{2,3}|" + _CN2 + r")[多几]?\s*[/／]\s*(\d{2,3}|" + _CN2 + r")(?![0-9])(\s*mmhg)?")
_BP_CUE = re.compile(r"血压|bp|高压|低压|mmhg|量了")
_BP_WORDS = re.compile(r"(?:高压|收缩压)[^0-9，。]{0,4}(\d{2,3})[^0-9。]{0,6}(?:低压|舒张压)[^0-9，。]{0,4}(\d{2,3})"
                       r"|(?:低压|舒张压)[^0-9，。]{0,4}(\d{2,3})[^0-9。]{0,6}(?:高压|收缩压)[^0-9，。]{0,4}(\d{2,3})")
_BP_SINGLE = re.compile(r"血压[^0-9，。/]{0,6}(\d{3})(?![0-9/.])")
_SPO2 = re.compile(r"(血氧(饱和度)?|指脉氧|氧饱和度|spo2|sao2|o2 sat|saturation|血氧仪)[^0-9。，]{0,10}?(\d{2,3}(?![0-9.])|" + _CN2 + r")")
_HR = re.compile(r"(心率|心跳|脉搏|脉率|(?<![a-z])hr(?![a-z])|heart rate|pulse)[^0-9。，]{0,10}?"
                 r"(\d{2,3}(?![0-9.])|[一二两三四五六七八九十百]{2,}(?=[几多来]?(下|次|左右|bpm|/分)))")
_RR = re.compile(r"(呼吸|喘气|breathing rate|(?<![a-z])rr(?![a-z]))[^。]{0,12}?(每分钟|一分钟|/min)?" + _NUM + r"多?(次|下|/min)")
_TEMP = re.compile(r"(?<![0-9.])(\d{2}(?:\.\d{1,2})?)\s*(度|℃|°c?|摄氏度)(?!高温|的天|天气)"
                   r"|(体温|发烧|发热|烧到|高烧|温度|temperature( of)?|fever)[^0-9。，]{0,6}(\d{2}(?:\.\d{1,2})?)(?![0-9])")
_GLUCOSE = re.compile(r"(血糖|glucose|sugar|血糖仪)[^0-9。]{0,12}?(\d{1,3}(?:\.\d{1,2}|点\d|点几)?)(?![0-9.%])\s*(mg)?")
_GLUCOSE_WORD = re.compile(r"(血糖|glucose|meter|血糖仪)[^a-z。]{0,12}(?:(?<![a-z])(hi|lo|high|low)(?![a-z])|(显示高|测不出来?|爆表|超出范围|超过量程))")
_N = r"(?P<n>\d+|[零一二两三四五六七八九十百]+)"
# An infant's age in days: each form has one number, `n` (none for 新生儿, 满月, 半个月).
_AGE_DAYS = re.compile("|".join(f"(?:{p})" for p in (
    r"(?:出生|生下来|生了)才?第?" + _N + r"多?天",
    _N.replace("<n>", "<n2>") + r"多?天大?的?(?:宝宝|新生儿|婴儿|娃|孩子|闺女|儿子)",
    r"(?:宝宝|孩子|婴儿|娃娃?|闺女|儿子|女儿)(?:才|刚|刚刚|出生)" + _N.replace("<n>", "<n3>") + r"多?天",
    # "宝宝七十天" (adjacent, 10 days or more: "孩子两天没拉" is a duration)
    r"(?:宝宝|婴儿|娃娃)(?P<n4>[1-9]\d|[一二三四五六七八]十[一二三四五六七八九]?)多?天(?![没不])",
    r"新生儿|满月|出生半个月|半个月大?的(?:宝宝|婴儿|孩子)|(?:宝宝|孩子)(?:才|刚)半个月")))
_AGE_MONTHS = re.compile(r"(宝宝|孩子|婴儿|娃娃?|闺女|儿子|女儿|才|baby)[^，。0-9]{0,4}?" + _NUM + r"个(半)?月|"
                         + _NUM + r"个(半)?月(大)?的(宝宝|孩子|婴儿|娃)|(\d+) (week|month)s? old|出生才?" + _NUM + r"周")
_AGE_YEARS = re.compile(r"(?<![0-9])(\d{2})\s*(多)?岁|今年(\d{2})(?![0-9])|([五六七八九])十多?岁|爷爷|奶奶|外公|外婆|姥姥|姥爷|老人|婆婆|公公")
_FEVER_CUE = re.compile(r"发烧|发热|体温|烫|高烧|腋下|腋温|肛温|耳温|额温|fever|temperature")
_BARE_TEMP = re.compile(r"(?<![0-9.])(3[7-9]\.\d|4[0-2]\.\d)(?![0-9.%]|\s*(mmol|mg|g|kg|cm|mm|u|iu|ng|pg|μ|ml|l/|x|×))")
_ALTITUDE = re.compile(r"高原|西藏|拉萨|青海|海拔|雪山|altitude")
_EXERCISE = re.compile(r"跑|运动|健身|爬山|爬楼|锻炼|run|exercis|workout")
_CHILD = re.compile(r"宝宝|婴儿|新生儿|孩子|小孩|娃|儿子|女儿|baby|infant|child")
_LATE_PREG = re.compile(r"孕([2-4]\d|[二三四]十)|怀孕([2-4]\d周|[五六七八九]个?月|\d+个月)|孕妇|孕晚期")


def _cn_number(s: str) -> float:
    """'38.5' -> 38.5; '七十' -> 70; '二十五' -> 25; '两' -> 2 (enough for ages and rates)."""
    try:
        return float(s)
    except ValueError:
        pass
    total, cur = 0, 0
    for ch in s:
        if ch in _CN_DIGITS:
            cur = _CN_DIGITS[ch]
        elif ch == "十":
            total += (cur or 1) * 10
            cur = 0
        elif ch == "百":
            total += (cur or 1) * 100
            cur = 0
    return float(total + cur)


def _read_vitals(text: str, t: dict[str, float]) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}

    def add(name: str, m: re.Match) -> None:
        out.setdefault(name, []).append(m.span())

    def bp(m: re.Match, sys_: float, dia: float) -> None:
        if not 40 <= sys_ <= 300 or not 20 <= dia <= 200 or dia >= sys_:
            return
        if sys_ < t.get("bp_low_systolic", 90):
            add("vital_bp_low", m)
        if sys_ >= t.get("bp_high_systolic", 180) or dia >= t.get("bp_high_diastolic", 120):
            add("vital_bp_high", m)
        if sys_ >= t.get("bp_extreme_systolic", 220) or dia >= t.get("bp_extreme_diastolic", 130):
            add("vital_bp_extreme", m)
        if _LATE_PREG.search(text):
            if sys_ >= t.get("bp_preg_systolic", 160) or dia >= t.get("bp_preg_diastolic", 110):
                add("vital_bp_preg", m)
            if sys_ >= t.get("bp_preg_mild_systolic", 140) or dia >= t.get("bp_preg_mild_diastolic", 90):
                add("vital_bp_preg_mild", m)

    if "/" in text or "／" in text:
        for m in _BP.finditer(text):
            # A slash pair is a blood pressure when a cue names it ("血压", "BP", mmHg)
            # or it sits in a blood-pressure range; "1/2" or "3/4" never qualify.
            if m.group(3) or _BP_CUE.search(text[max(0, m.start() - 14):m.start()]):
                bp(m, _cn_number(m.group(1)), _cn_number(m.group(2)))
    if "压" in text:
        for m in _BP_WORDS.finditer(text):
            if m.group(1):
                bp(m, float(m.group(1)), float(m.group(2)))
            else:
                bp(m, float(m.group(4)), float(m.group(3)))
        for m in _BP_SINGLE.finditer(text):
            s = float(m.group(1))
            if s >= t.get("bp_high_systolic", 180) and s <= 300:
                add("vital_bp_high", m)
                if s >= t.get("bp_extreme_systolic", 220):
                    add("vital_bp_extreme", m)
    altitude = _ALTITUDE.search(text)
    for m in _SPO2.finditer(text):
        v = _cn_number(m.group(3))
        if altitude and v >= t.get("spo2_low_altitude", 85):
            continue  # 85-90 is common at altitude (a low figure there is still caught below 85)
        if 50 <= v <= t.get("spo2_low", 90):
            add("vital_spo2_low", m)
    for m in _HR.finditer(text):
        v = _cn_number(m.group(2))
        clause = text[max(0, m.start() - 12):m.end()]
        if v >= 120 and v <= 300:
            add("vital_hr_high", m)
        if (v >= t.get("hr_high", 150) and v <= 300 and not _EXERCISE.search(clause)) or 10 <= v <= t.get("hr_low", 40):
            add("vital_hr_extreme", m)
    for m in _RR.finditer(text):
        v = _cn_number(m.group(3))
        limit = t.get("rr_high_child", 60) if _CHILD.search(text) else t.get("rr_high_adult", 30)
        if limit <= v <= 150:
            add("vital_rr_high", m)
    for m in _TEMP.finditer(text):
        v = float(m.group(1) or m.group(5))
        if not 30 <= v <= 44:
            continue
        for key, name in (("temp_fever", "vital_temp_fever"), ("temp_high", "vital_temp_high"),
                          ("temp_very_high", "vital_temp_very_high"), ("temp_extreme", "vital_temp_extreme")):
            if v >= t.get(key, 99):
                add(name, m)
        if v < t.get("temp_low", 36):
            add("vital_temp_low", m)
    if _FEVER_CUE.search(text):
        # A bare decimal in the fever range ("腋下量了38.1") when the message talks of fever.
        for m in _BARE_TEMP.finditer(text):
            v = float(m.group(1))
            for key, name in (("temp_fever", "vital_temp_fever"), ("temp_high", "vital_temp_high"),
                              ("temp_very_high", "vital_temp_very_high"), ("temp_extreme", "vital_temp_extreme")):
                if v >= t.get(key, 99):
                    add(name, m)
    if "36以下" in text or "体温不升" in text:
        m = re.search(r"36以下|体温不升", text)
        add("vital_temp_low", m)
    for m in _GLUCOSE.finditer(text):
        v = float(m.group(2).replace("点几", ".5").replace("点", "."))
        if m.group(3) or v > 60:
            v = v / 18  # mg/dL
        if 0.5 <= v <= t.get("glucose_low", 3.0):
            add("vital_glucose_low", m)
        if v >= t.get("glucose_high", 16.7):
            add("vital_glucose_high", m)
        if v >= t.get("glucose_extreme", 30.0):
            add("vital_glucose_extreme", m)
    for m in _GLUCOSE_WORD.finditer(text):
        if m.group(2) in ("hi", "high") or m.group(3):
            add("vital_glucose_extreme", m)
            add("vital_glucose_high", m)
        else:
            add("vital_glucose_low", m)
    young = t.get("infant_days", 90)
    for m in _AGE_DAYS.finditer(text):
        g, d = m.group(0), m.groupdict()
        num = d["n"] or d["n2"] or d["n3"] or d["n4"]
        days = _cn_number(num) if num else 30 if g == "满月" else 14
        if days < young:
            add("vital_infant_young", m)
    for m in _AGE_MONTHS.finditer(text):
        g = m.groups()
        if g[1]:
            days = _cn_number(g[1]) * 30 + (15 if g[2] else 0)
        elif g[3]:
            days = _cn_number(g[3]) * 30 + (15 if g[4] else 0)
        elif g[7]:
            days = int(g[7]) * (7 if g[8] == "week" else 30)
        else:
            days = _cn_number(g[9]) * 7
        if 0 < days < young and not re.search(r"孕|怀|停经", text[max(0, m.start() - 4):m.start()]):
            add("vital_infant_young", m)
    for m in _AGE_YEARS.finditer(text):
        g = m.group(1) or m.group(3)
        age = float(g) if g else (_cn_number(m.group(4)) * 10 if m.group(4) else 70)
        if age >= t.get("older_age", 50):
            add("vital_age_older", m)
    return out


def _normalize(text: str) -> str:
    # Full-width ASCII to half-width, lower case, straight apostrophes: "Ｉ can’t" -> "i can't".
    out = []
    for ch in text:
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E and ch not in "，：；！？（）":
            ch = chr(code - 0xFEE0)
        out.append(ch)
    return "".join(out).lower().replace("\u2019", "'").replace("\u2018", "'")


@lru_cache(maxsize=8)
def load_rules(path: str | None = None) -> Rules:
    """The rules at `path` (default: the shipped rules), compiled once per path."""
    return Rules(path or DEFAULT_RULES)


def triage(text: str, rules: Rules | str | Path | None = None, enabled: bool = True) -> Triage:
    """Triage a patient's message. `enabled=False` (evaluation runs) returns a non-urgent
    result with no notice; `rules` is a Rules object or a path to a rules YAML file."""
    if not enabled:
        return Triage(False, [], "", "", "zh" if _CJK.search(text or "") else "en", [])
    if not isinstance(rules, Rules):
        rules = load_rules(str(rules) if rules else None)
    return rules.triage(text)


def last_user_text(messages: list[dict]) -> str:
    """The patient's latest message: what triage reads in a conversation."""
    for m in reversed(messages):
        if m.get("role") == "user":
            return str(m.get("content") or "")
    return ""
