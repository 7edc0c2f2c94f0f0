"""The safety layer: red-flag triage of a patient's message and the standing notice.

One layer for terminal chat, the API and the web page. `triage(text)` reads the patient's
latest message against rules written for discmed (`rules/redflags.yaml`, Chinese and
English) and returns whether it describes an emergency, which red flags it saw, the
urgent-care instruction to put before the model's reply (in the patient's language), and
the standing notice that the assistant is not a doctor.

The rules are regular expressions, not a model: they are fast, auditable, and a clinician
can read and edit them. Their blind spots are the usual ones for keyword rules (unusual
phrasing, typos); tests/test_safety.py measures recall and false alarms on a test set
written for discmed and fails when either goal is missed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from discmed import SAFETY_NOTICE_EN, SAFETY_NOTICE_ZH

DEFAULT_RULES = Path(__file__).with_name("rules") / "redflags.yaml"

_CJK = re.compile(r"[\u4e00-\u9fff]")
# Sentences end at these; clauses (the scope of a negation) also end at commas.
_SENTENCE = re.compile(r"[。！？!?；;\n]+|(?<=[a-z0-9)])\.(?:\s+|$)")
_CLAUSE = re.compile(r"[，,、：:]")


@dataclass
class Triage:
    """Result of triage: `instruction` is empty unless `urgent`; `notice` is always set
    (empty only when safety is switched off)."""

    urgent: bool
    reasons: list[str] = field(default_factory=list)
    notice: str = ""
    instruction: str = ""
    lang: str = "zh"
    rule_ids: list[str] = field(default_factory=list)

    def prefix(self) -> str:
        """Text to put before the model's reply: the urgent instruction, or nothing."""
        return self.instruction + "\n\n" if self.urgent else ""


@dataclass
class _Rule:
    id: str
    reason_zh: str
    reason_en: str
    alternatives: list[list[re.Pattern]]  # any alternative; within one, every pattern


class Rules:
    """Compiled red-flag rules and guards, loaded from a YAML file."""

    def __init__(self, path: str | Path = DEFAULT_RULES):
        import yaml

        self.path = Path(path)
        try:
            raw = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"{self.path}: cannot read safety rules: {e}") from e
        if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list):
            raise ValueError(f"{self.path}: rules: expected a list under the key 'rules'")
        self.rules: list[_Rule] = []
        for i, r in enumerate(raw["rules"]):
            where = f"{self.path}: rules[{i}]"
            for key in ("id", "reason_zh", "reason_en"):
                if not isinstance(r.get(key), str):
                    raise ValueError(f"{where}: {key}: missing or not a string")
            alts = []
            for lang in ("zh", "en"):
                for j, alt in enumerate(r.get(lang) or []):
                    try:
                        alts.append([re.compile(p) for p in alt])
                    except (re.error, TypeError) as e:
                        raise ValueError(f"{where} ({r['id']}): {lang}[{j}]: bad pattern: {e}") from e
            self.rules.append(_Rule(r["id"], r["reason_zh"], r["reason_en"], alts))
        g = raw.get("guards") or {}
        self.window = int(g.get("negation_window", 6))
        self.neg_zh = _alternation(g.get("negation_zh", []))
        self.neg_en = _alternation(g.get("negation_en", []), words=True)
        self.reset = _alternation(g.get("clause_reset_zh", []) + g.get("clause_reset_en", []))
        self.past = _alternation(g.get("past_zh", []) + g.get("past_en", []), raw_regex=True)
        self.present = _alternation(g.get("present_zh", []) + g.get("present_en", []), raw_regex=True)
        self.info = _alternation(g.get("info_zh", []) + g.get("info_en", []), raw_regex=True)
        self.now = _alternation(g.get("now_zh", []) + g.get("now_en", []), raw_regex=True)
        self.info_rules = set(g.get("info_rules", []))
        self.urgent_zh = raw.get(
            "urgent_zh", "【紧急】请立即拨打 120 或到最近医院的急诊科就诊。（{reasons}）"
        )
        self.urgent_en = raw.get(
            "urgent_en", "[URGENT] Call 120 or go to the emergency department now. ({reasons})"
        )
        self.suicide_zh = raw.get("urgent_suicide_zh", "")
        self.suicide_en = raw.get("urgent_suicide_en", "")

    def triage(self, text: str) -> Triage:
        lang = "zh" if _CJK.search(text or "") else "en"
        notice = SAFETY_NOTICE_ZH if lang == "zh" else SAFETY_NOTICE_EN
        norm = _normalize(text or "")
        hits = [r for r in self.rules if self._fires(r, norm)]
        if not hits:
            return Triage(False, [], notice, "", lang, [])
        reasons = [r.reason_zh if lang == "zh" else r.reason_en for r in hits]
        sep = "；" if lang == "zh" else "; "
        instruction = (self.urgent_zh if lang == "zh" else self.urgent_en).format(reasons=sep.join(reasons))
        if any(r.id == "suicide" for r in hits):
            extra = self.suicide_zh if lang == "zh" else self.suicide_en
            instruction = f"{instruction}{'' if lang == 'zh' else ' '}{extra}".strip()
        return Triage(True, reasons, notice, instruction, lang, [r.id for r in hits])

    # -- matching -------------------------------------------------------------------------

    def _fires(self, rule: _Rule, text: str) -> bool:
        if rule.id in self.info_rules and self.info.search(text) and not self.now.search(text):
            return False
        return any(all(self._counts(p, text) for p in alt) for alt in rule.alternatives)

    def _counts(self, pattern: re.Pattern, text: str) -> bool:
        """True when `pattern` matches somewhere that is neither negated nor only past."""
        for m in pattern.finditer(text):
            if not self._negated(text, m.start()) and not self._past_only(text, m.start()):
                return True
        return False

    def _negated(self, text: str, start: int) -> bool:
        # The negation scope: back to the start of the clause, cut at a reset word ("但是",
        # "but") so "没有发烧但是胸痛" keeps the chest pain.
        clause = _CLAUSE.split(text[:start])[-1]
        clause = _SENTENCE.split(clause)[-1]
        parts = self.reset.split(clause) if self.reset.pattern else [clause]
        scope = parts[-1]
        if _CJK.search(scope[-self.window :] if scope else ""):
            if self.neg_zh.pattern and self.neg_zh.search(scope[-self.window :]):
                return True
        words = scope.split()[-4:]
        return bool(self.neg_en.pattern and words and self.neg_en.search(" ".join(words)))

    def _past_only(self, text: str, start: int) -> bool:
        # The sentence holding the match; past when it has a past cue and no present cue.
        begin = 0
        for m in _SENTENCE.finditer(text):
            if m.end() <= start:
                begin = m.end()
            else:
                end = m.start() if m.start() > start else len(text)
                break
        else:
            end = len(text)
        sentence = text[begin:end]
        return bool(self.past.pattern and self.past.search(sentence)) and not (
            self.present.pattern and self.present.search(sentence)
        )


def _normalize(text: str) -> str:
    # Full-width ASCII to half-width, lower case, straight apostrophes: "Ｉ can’t" -> "i can't".
    out = []
    for ch in text:
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E and ch not in "，：；！？（）":
            ch = chr(code - 0xFEE0)
        out.append(ch)
    return "".join(out).lower().replace("\u2019", "'").replace("\u2018", "'")


def _alternation(items: list[str], words: bool = False, raw_regex: bool = False) -> re.Pattern:
    if not items:
        return re.compile("")
    alts = [i if raw_regex else re.escape(i) for i in items]
    body = "|".join(f"(?:{a})" for a in alts)
    return re.compile(rf"\b(?:{body})\b" if words else body)


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
