"""The safety layer: red-flag triage of a patient's message and the standing notice.

One layer for terminal chat, the API and the web page. `triage(text)` reads the patient's
latest message and returns whether it describes an emergency (go to the emergency
department or get care today), which red flags it saw, the urgent-care instruction to put
before the model's reply (in the patient's language), and the standing notice that the
assistant is not a doctor.

Two layers decide, and a message is urgent when either does:
  1. The rules: a catalogue of red-flag concepts built on published triage standards
     (`rules/redflags.yaml`: CTAS/CEDIS complaints with their modifiers, the Chinese
     pre-triage consensus, guidelines for the populations those under-serve), each concept
     naming its source, with Chinese (colloquial, dialect, typo, pinyin) and English forms.
     Concepts are found as mentions by regular expressions; vital signs are read as numbers
     with thresholds by age (`discmed.serve.vitals`). Each mention gets its own context, as
     the ConText algorithm does for clinical English: negated ("没有胸痛"), resolved ("疼了
     一会儿就好了"), historical ("三年前心梗", "十年前中风…一直没加重"), hypothetical, read or
     heard ("如果…", "网上说…", "梦见…"); a message that is an exam question or a professional
     asking a dose is informational as a whole. A category is urgent when one of its single
     concepts, or all concepts of one of its combinations ("胸痛" + "出冷汗"), have a current
     mention — background concepts (on chemotherapy, on dialysis, pregnant, anticoagulated)
     count whenever they are not denied.
  2. A learned classifier (`discmed.serve.triage_clf`: character n-grams and a logistic
     regression trained on the multi-author corpus) that calls a message urgent when it is
     confident (probability ≥ its threshold) — the rules stay the floor, the classifier only
     adds.

The rules are auditable and editable by a clinician; both layers together stay under 2 ms a
message at p95 (benchmarks/triage_latency.py). How well they do is measured leave-one-
author-out over eight independent writers (benchmarks/safety_loao.py). A language model
can add a second opinion on top (`discmed.serve.triage_model`).
"""

from __future__ import annotations

import bisect
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from discmed import SAFETY_NOTICE_EN, SAFETY_NOTICE_ZH
from discmed.serve.dialect import normalize
from discmed.serve.triage_clf import load_classifier
from discmed.serve.vitals import VITALS, read_vitals

DEFAULT_RULES = Path(__file__).with_name("rules") / "redflags.yaml"
log = logging.getLogger(__name__)

_CJK = re.compile(r"[\u4e00-\u9fff]")
_SENTENCE = re.compile(r"[。！？!?；;\n]|(?<=[a-z0-9)])\.(?:\s+|$)")
# A space between two Chinese characters ends a clause: voice input and hurried typing use
# spaces where commas would be ("俺爹打胰岛素的 今天早上打了针没吃饭").
_CLAUSE = re.compile(r"[，,、：:（）()~～]|[。！？!?；;\n]|(?<=[a-z0-9)])\.(?:\s+|$)|(?<=[\u4e00-\u9fff])\s+(?=[\u4e00-\u9fff])")
# A mention that is itself a negation ("不想活") is denied by a "没有" just before it
# ("没有不想活的想法").
_DOUBLE_NEG = re.compile(r"(没有|并没有|从没有|从来没有|没|无)(什么|任何)?$")
# Contexts in which a mention counts: a current one, and a resolved one for categories that
# keep it (a TIA that has passed is still a stroke warning).
_COUNTS = {False: ("current",), True: ("current", "resolved")}


@dataclass
class Triage:
    """Result of triage: `instruction` is empty unless `urgent`; `notice` is always set
    (empty only when safety is switched off). `source` says who made the verdict: "rules",
    "classifier" (only the learned layer found it urgent), or "rules+model" when a
    second-opinion model was asked (`model` holds its answer). `score` is the classifier's
    probability (None when the learned layer was off or unavailable)."""

    urgent: bool
    reasons: list[str] = field(default_factory=list)
    notice: str = ""
    instruction: str = ""
    lang: str = "zh"
    rule_ids: list[str] = field(default_factory=list)
    source: str = "rules"
    model: dict | None = None
    score: float | None = None

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
    source: str = ""
    level: str = ""
    keep_resolved: bool = False
    unless: list[str] = field(default_factory=list)
    unless_except: list[str] = field(default_factory=list)  # an `unless` holds only when none of these is current
    all_sets: list[frozenset[str]] = field(default_factory=list)


class Rules:
    """The compiled red-flag catalogue (sources, concepts, categories, context cues,
    thresholds) and, beside it, the learned classifier (`learned=False` leaves it out)."""

    def __init__(self, path: str | Path = DEFAULT_RULES, learned: bool = True):
        import yaml

        self.path = Path(path)
        try:
            raw = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"{self.path}: cannot read safety rules: {e}") from e
        if not isinstance(raw, dict) or not isinstance(raw.get("categories"), list):
            raise ValueError(f"{self.path}: categories: expected a list under the key 'categories'")
        self.sources: dict[str, str] = {str(k): str(v) for k, v in (raw.get("sources") or {}).items()}
        # Each concept is one or more compiled patterns (its zh, en and pinyin forms apart),
        # each with the strings (one to four characters) a match can start with, and strings
        # one of which every match contains (`required_strings`, cut to four characters): a
        # message containing none of either set is not searched at all (most concepts, most
        # messages).
        self.concepts: dict[str, list[tuple[re.Pattern, frozenset[str] | None]]] = {}
        self.required: dict[re.Pattern, frozenset[str]] = {}
        self.concept_sources: dict[str, str] = {}
        self.background: set[str] = set()
        for name, spec in (raw.get("concepts") or {}).items():
            self.concepts[name] = [(self._compile(p, f"concepts.{name}"), first_strings(p))
                                   for p in self._concept_patterns(name, spec)]
            for pattern, _ in self.concepts[name]:
                need = required_strings(pattern.pattern)
                if need is not None:
                    self.required[pattern] = need
        # Which concepts a message can contain, from its substrings of up to four characters
        # alone: an index from a start string to the concepts it can begin, and those that
        # can begin anywhere.
        self._by_char: dict[str, set[str]] = {}
        self._anywhere: set[str] = set(VITALS)
        for name, patterns in self.concepts.items():
            for _, first in patterns:
                if first is None:
                    self._anywhere.add(name)
                else:
                    for ch in first:
                        self._by_char.setdefault(ch, set()).add(name)
        self.categories: list[_Category] = []
        for i, c in enumerate(raw["categories"]):
            where = f"{self.path}: categories[{i}]"
            if not isinstance(c, dict):
                raise ValueError(f"{where}: expected a mapping")
            for key in ("id", "reason_zh", "reason_en"):
                if not isinstance(c.get(key), str):
                    raise ValueError(f"{where}: {key}: missing or not a string")
            any_, all_ = list(c.get("any") or []), [list(x) for x in (c.get("all") or [])]
            unless = list(c.get("unless") or [])
            unless_except = list(c.get("unless_except") or [])
            if not any_ and not all_:
                raise ValueError(f"{where} ({c['id']}): needs 'any' or 'all'")
            for name in any_ + unless + unless_except + [n for combo in all_ for n in combo]:
                if name not in self.concepts and name not in VITALS:
                    raise ValueError(f"{where} ({c['id']}): unknown concept {name!r}")
            source = str(c.get("source") or "")
            self._check_source(source, f"{where} ({c['id']}): source")
            self.categories.append(_Category(c["id"], c["reason_zh"], c["reason_en"], any_, all_, source,
                                             str(c.get("level") or ""), bool(c.get("keep_resolved")), unless,
                                             unless_except, [frozenset(combo) for combo in all_]))
        ctx = raw.get("context") or {}
        self.window = int(ctx.get("negation_window", 8))
        self.window_en = int(ctx.get("negation_window_en", 30))
        cue = lambda key: self._compile(ctx.get(key) or r"(?!x)x", f"context.{key}")  # noqa: E731
        self.neg_pre, self.resolved_post, self.scope_end = cue("negation_pre"), cue("resolved_post"), cue("scope_end")
        self.history_pre, self.history_post, self.present = cue("history_pre"), cue("history_post"), cue("present")
        self.history_clause, self.chronic = cue("history_clause"), cue("chronic")
        self.resolved_sentence, self.resolved_next = cue("resolved_sentence"), cue("resolved_next")
        self.remeasure = self._compile(ctx["remeasure"], "context.remeasure") if ctx.get("remeasure") else None
        self.hypo_pre, self.hypo_post = cue("hypothetical_pre"), cue("hypothetical_post")
        self.educational, self.professional = cue("message_educational"), cue("message_professional")
        self.dose, self.hypo_end = cue("message_dose"), cue("hypothetical_end")
        self.hypo_clause = cue("hypothetical_clause")
        self.vitals = {k: float(v) for k, v in (raw.get("vitals") or {}).items()}
        self.urgent_zh = raw.get("urgent_zh", "【紧急】请立即拨打 120 或到最近医院的急诊科就诊。（{reasons}）")
        self.urgent_en = raw.get("urgent_en", "[URGENT] Call 120 or go to the emergency department now. ({reasons})")
        self.suicide_zh = raw.get("urgent_suicide_zh", "")
        self.suicide_en = raw.get("urgent_suicide_en", "")
        self.model_zh = raw.get("urgent_model_zh", "分诊模型判断为可能需要急诊（置信度 {score:.2f}）")
        self.model_en = raw.get("urgent_model_en", "the triage classifier judged this likely urgent ({score:.2f})")
        self.learned = learned
        self._classifier = None  # loaded at first use (discmed.serve.triage_clf)
        self._classifier_failed = False

    def _concept_patterns(self, name: str, spec) -> list[str]:
        """A concept is a list of patterns, or a mapping with `source`, `zh`, `en`,
        `pinyin` (lists of patterns) and `background` (true: a standing state of the
        patient, such as being on dialysis, which counts unless denied)."""
        where = f"{self.path}: concepts.{name}"
        if isinstance(spec, str):
            spec = [spec]
        if isinstance(spec, list):
            patterns = spec
        elif isinstance(spec, dict):
            unknown = set(spec) - {"source", "zh", "en", "pinyin", "background"}
            if unknown:
                raise ValueError(f"{where}: unknown keys {sorted(unknown)} (expected source, zh, en, pinyin, background)")
            source = str(spec.get("source") or "")
            self._check_source(source, f"{where}: source")
            self.concept_sources[name] = source
            if spec.get("background"):
                self.background.add(name)
            lists = [spec.get(key) or [] for key in ("zh", "en", "pinyin")]
            if not all(isinstance(x, list) and all(isinstance(p, str) for p in x) for x in lists):
                raise ValueError(f"{where}: zh, en, pinyin: expected lists of regular expressions")
            zh, en, pinyin = ("|".join(f"(?:{p})" for p in x) if x else "" for x in lists)
            # English forms are whole words: a form begins at a word's start and ends at its end or
            # before a common suffix ("stab" is not in "stable", "bee" not in "been", "son" not in
            # "poison"; "vomit" still in "vomiting", "suicid" in "suicidal").
            en = en and f"(?:(?<![a-z])|(?![a-z]))(?:{en}){EN_SUFFIX}(?:(?<![a-z])|(?![a-z]))"
            return [x for x in (zh, en, pinyin) if x] or self._concept_patterns(name, None)
        else:
            patterns = None
        if not patterns or not all(isinstance(p, str) for p in patterns):
            raise ValueError(f"{where}: expected a list of regular expressions (or zh/en/pinyin lists)")
        return ["|".join(f"(?:{p})" for p in patterns)]

    def _check_source(self, source: str, where: str) -> None:
        # When the file has a `sources` registry, every cited source starts with one of its keys.
        if self.sources and source and source.split()[0] not in self.sources:
            raise ValueError(f"{where}: {source.split()[0]!r} is not a key of sources ({', '.join(self.sources)})")

    def _compile(self, pattern: str, where: str) -> re.Pattern:
        try:
            return re.compile(pattern)
        except re.error as e:
            raise ValueError(f"{self.path}: {where}: bad pattern: {e}") from e

    # -- the verdict ------------------------------------------------------------------------

    def classifier(self):
        """The learned layer (trained and cached at first use), or None when it is off or
        cannot be built here (said once in the log; the rules still decide)."""
        if not self.learned or self._classifier_failed:
            return None
        if self._classifier is None:
            try:
                self._classifier = load_classifier()
            except (OSError, ValueError) as e:
                self._classifier_failed = True
                log.warning("triage classifier unavailable, rules only: %s", e)
                return None
        return self._classifier

    def triage(self, text: str) -> Triage:
        lang = "zh" if _CJK.search(text or "") else "en"
        notice = SAFETY_NOTICE_ZH if lang == "zh" else SAFETY_NOTICE_EN
        norm = _normalize(text or "")  # once: the rules and the classifier read the same text
        hits = self._categories(norm)
        clf = self.classifier()
        score = clf.probability(norm) if clf is not None else None
        zh = lang == "zh"
        sep = "；" if zh else "; "
        if hits:
            reasons = [c.reason_zh if zh else c.reason_en for c in hits]
            instruction = (self.urgent_zh if zh else self.urgent_en).format(reasons=sep.join(reasons))
            if any(c.id == "suicide" for c in hits):
                extra = self.suicide_zh if zh else self.suicide_en
                instruction = f"{instruction}{'' if zh else ' '}{extra}".strip()
            return Triage(True, reasons, notice, instruction, lang, [c.id for c in hits], score=score)
        if score is not None and score >= clf.threshold:
            reasons = [(self.model_zh if zh else self.model_en).format(score=score)]
            instruction = (self.urgent_zh if zh else self.urgent_en).format(reasons=reasons[0])
            return Triage(True, reasons, notice, instruction, lang, ["classifier"], source="classifier", score=score)
        return Triage(False, [], notice, "", lang, [], score=score)

    def categories_for(self, text: str, context: bool = True) -> list[_Category]:
        """The categories whose concepts have current mentions in `text` (the rules'
        verdict alone). `context=False` counts every mention, whatever its context: the
        difference is what the context rules did (benchmarks/safety_loao.py measures it)."""
        return self._categories(_normalize(text), context)

    def _categories(self, norm: str, context: bool = True) -> list[_Category]:
        m = _Message(self, norm, context)
        if m.informational:
            return []
        return [c for c in self.categories if self._fires(m, c)]

    def possible(self, starts: set[str]) -> set[str]:
        """The concepts a message can mention, from the set of its substrings of up to
        `PREFIX` characters (a superset: no regex is run)."""
        found = set(self._anywhere)
        by_char = self._by_char
        for ch in by_char.keys() & starts:  # the intersection in C: most substrings start nothing
            found |= by_char[ch]
        return found

    @staticmethod
    def _fires(m: _Message, c: _Category) -> bool:
        possible, has, keep = m.possible, m.has, c.keep_resolved
        if c.unless and any(has(n) for n in c.unless if n in possible) and \
                not any(has(n, keep) for n in c.unless_except if n in possible):
            return False
        # A combination is looked at only when every one of its concepts can be present.
        return any(has(n, keep) for n in c.any if n in possible) or \
            any(all(has(n, keep) for n in combo) for combo, need in zip(c.all, c.all_sets, strict=True) if need <= possible)

    def mentions(self, text: str) -> dict[str, list[tuple[str, str]]]:
        """Every mention found, with its context ("current", "negated", "resolved",
        "history", "hypothetical"): for reading why a message was or was not flagged."""
        m = _Message(self, _normalize(text))
        out: dict[str, list[tuple[str, str]]] = {}
        for name in list(self.concepts) + sorted(VITALS):
            for s, e in m.spans(name):
                out.setdefault(name, []).append((m.text[s:e], m.context(s, e, name)))
        return out


class _Message:
    """One normalised message with its clause and sentence boundaries and a cache of
    mentions per concept; the context of each mention is decided here."""

    def __init__(self, rules: Rules, text: str, use_context: bool = True):
        self.r, self.text, self.use_context = rules, text, use_context
        n = len(text)
        self.starts = {text[i:i + k] for k in range(1, PREFIX + 1) for i in range(n - k + 1)}
        self.possible = rules.possible(self.starts)
        self.clauses = [0] + [m.end() for m in _CLAUSE.finditer(text)]
        self.sentences = [0] + [m.end() for m in _SENTENCE.finditer(text)]
        self._cache: dict[tuple[str, bool], bool] = {}
        self._vitals: dict[str, list[tuple[int, int]]] | None = None
        self.informational = use_context and bool(
            rules.educational.search(text) or (rules.professional.search(text) and rules.dose.search(text)))

    def has(self, name: str, keep_resolved: bool = False) -> bool:
        key = (name, keep_resolved)
        if key not in self._cache:
            counts = _COUNTS[keep_resolved]
            self._cache[key] = any(not self.use_context or self.context(s, e, name) in counts
                                   for s, e in self.spans(name))
        return self._cache[key]

    def spans(self, name: str) -> list[tuple[int, int]]:
        if name in VITALS:
            if self._vitals is None:
                self._vitals = read_vitals(self.text, self.r.vitals, self.r.remeasure)
            return self._vitals.get(name, [])
        found: list[tuple[int, int]] = []
        required, starts = self.r.required, self.starts
        for pattern, first in self.r.concepts[name]:
            if (first is None or not first.isdisjoint(starts)) and \
                    (pattern not in required or not required[pattern].isdisjoint(starts)):
                found += [m.span() for m in pattern.finditer(self.text)]
        return found

    def _start_of(self, bounds: list[int], pos: int) -> int:
        return bounds[bisect.bisect_right(bounds, pos) - 1]

    def _end_of(self, bounds: list[int], pos: int) -> int:
        i = bisect.bisect_right(bounds, pos)
        return bounds[i] if i < len(bounds) else len(self.text)

    def context(self, start: int, end: int, name: str = "") -> str:
        ctx = self._context(start, end)
        # A background state (on dialysis, pregnant, anticoagulated) is the patient's
        # standing condition: being past or "already" does not make it irrelevant.
        if name in self.r.background and ctx in ("history", "resolved"):
            return "current"
        return ctx

    def _context(self, start: int, end: int) -> str:
        r, text = self.r, self.text
        clause_start = self._start_of(self.clauses, start)
        before = text[clause_start:start]
        cut = list(r.scope_end.finditer(before))
        near = before[cut[-1].end():] if cut else before
        # A finding that is itself an absence ("没放屁", "没尿") is not negated by the
        # "没" of a neighbour ("两天没拉也没放屁"), but a "没有" right before a "不…" is
        # ("没有不想活的想法").
        if text[start] not in "没不无未":
            window = r.window if _CJK.match(text[start]) else r.window_en
            if r.neg_pre.search(near[-window:]):
                return "negated"
        elif text[start] == "不" and _DOUBLE_NEG.search(near):
            return "negated"
        if r.hypo_clause.search(near):
            return "hypothetical"
        clause_end = self._end_of(self.clauses, end)
        after = text[end:clause_end]
        res = r.resolved_post.search(after)
        if res and not re.search(r"(没|不|未)[^，。]{0,2}$", after[: res.start()]):
            return "resolved"
        sent_start, sent_end = self._start_of(self.sentences, start), self._end_of(self.sentences, end)
        if r.resolved_sentence.search(text[clause_end:sent_end]) or \
                r.resolved_next.search(text[sent_end:self._end_of(self.sentences, sent_end)]):
            return "resolved"
        sent_before = text[sent_start:start]
        if r.history_post.search(text[end:sent_end]) or r.history_clause.search(near):
            return "history"
        # A past time inside brackets is a comparison ("肌酐 286（两周前才 94）"), not the finding's time.
        last_hist = _last(r.history_pre, _PAREN.sub(lambda m: " " * len(m.group()), sent_before))
        # (searched from the cue on, so "去年今天" reads 今天 as part of the past date)
        if last_hist is not None and not r.present.search(sent_before, last_hist.end()):
            return "history"
        if r.chronic.search(text[sent_start:sent_end]):
            return "history"
        # A finding asked about right after it is named ("这是抽风吗？"): a question about it, unless its own
        # clause says it is happening now.
        if _ASKED.match(text, end) and not r.present.search(text[clause_start:start]):
            return "hypothetical"
        last_hypo = _last(r.hypo_pre, sent_before)
        consequent = "就" in text[max(clause_start, start - 3):start]  # "如果你走我就去死": intent
        # A question about the finding after it ("…有哪些症状") makes it hypothetical, unless
        # the patient said it is happening now ("我现在胸痛，出汗，请问心梗有什么症状").
        if last_hypo is not None and not consequent and not r.hypo_end.search(sent_before[last_hypo.end():]) or \
                r.hypo_post.search(text[end:sent_end]) and not r.present.search(sent_before):
            return "hypothetical"
        return "current"


_ASKED = re.compile(r"\s*(?:吗|么|嘛)\s*[？?]")
_PAREN = re.compile(r"[（(][^（）()]{0,40}[)）]")
EN_SUFFIX = "(?:s|es|ed|d|ing|ings|er|ers|ly|al|ally|e|y|ies|ied|ion|ions|ure|ures|less|ness|ic|ical|ity|ful|ive|ous)?"
PREFIX = 4  # the prefilter's longest start string: Chinese needs 2, English words more


def class_chars(items, widest: int, digits: bool = False) -> set[str] | None:
    """The characters a character class (`[...]`, parsed) can match: its literals, ranges narrower than
    `widest` and, with `digits`, \\d; None for anything else (a negated class, \\w, a wide range)."""
    from re import _constants as c

    chars: set[str] = set()
    for kind, val in items:
        if kind is c.LITERAL:
            chars.add(chr(val))
        elif kind is c.RANGE and val[1] - val[0] < widest:
            chars |= {chr(x) for x in range(val[0], val[1] + 1)}
        elif digits and kind is c.CATEGORY and val is c.CATEGORY_DIGIT:
            chars |= set("0123456789０１２３４５６７８９")
        else:
            return None
    return chars


def first_strings(pattern: str, k: int = PREFIX) -> frozenset[str] | None:
    """Strings of one to `k` characters such that every match of `pattern` starts with one
    of them, or None when that cannot be said (a class like [^，。] or `.` first, or a
    pattern that can match empty). Read from the pattern's parse tree."""
    from re import _constants as c
    from re import _parser

    def seq(items, k):  # -> set of (prefix, complete) or None; complete: the items are exactly it
        if not items:
            return {("", True)}
        heads = item(*items[0], k)
        if heads is None:
            return None
        out = set()
        for h, complete in heads:
            if complete and len(h) < k:
                tails = seq(items[1:], k - len(h))
                out |= {(h, False)} if tails is None else {(h + t, c2) for t, c2 in tails}
            else:
                out.add((h[:k], complete and len(h) <= k and len(items) == 1))
        return out

    def item(op, av, k):
        if op is c.LITERAL:
            return {(chr(av), True)}
        if op is c.IN:
            chars = class_chars(av, 512, digits=True)
            return None if chars is None else {(ch, True) for ch in chars}
        if op is c.BRANCH:
            out = set()
            for branch in av[1]:
                found = seq(branch, k)
                if found is None:
                    return None
                out |= found
            return out
        if op is c.SUBPATTERN:
            return seq(av[3], k)
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            found = seq(av[2], k)
            if found is None:
                return None
            out = {(h, done and av[1] == 1) for h, done in found}  # more repeats may follow
            return out | {("", True)} if av[0] == 0 else out
        if op in (c.AT, c.ASSERT, c.ASSERT_NOT):
            return {("", True)}  # zero-width: look at what follows
        return None

    try:
        found = seq(_parser.parse(pattern), k)
    except Exception:  # a pattern the parser reads differently: no prefilter, still correct
        return None
    if found is None or any(h == "" for h, _ in found):
        return None
    if len(found) > 400 and k > 1:
        return first_strings(pattern, k - 1)
    return frozenset(h for h, _ in found)


def required_strings(pattern: str, k: int = PREFIX, most: int = 400) -> frozenset[str] | None:
    """Strings (cut to `k` characters) one of which every match of `pattern` contains, or None
    when that cannot be said. `first_strings` says how a match starts; in a pattern such as
    "(吃了|喝了)[^，。]{0,10}(百草枯|敌敌畏)" a later part is rarer ("吃了" is in many
    messages, a poison's name in few), so the part whose strings are longest is taken. Read
    from the parse tree: a run of parts that each match one of a few fixed strings gives their
    concatenations; a group or an alternation is required where each branch has something
    required; a repeat where it must occur once."""
    from re import _constants as c
    from re import _parser

    def exact(op, av):  # every string the item can match, when few and fixed; else None
        if op is c.LITERAL:
            return {chr(av)}
        if op in (c.AT, c.ASSERT, c.ASSERT_NOT):
            return {""}  # zero-width: the strings on either side stay adjacent
        if op is c.IN:
            return class_chars(av, 16)
        if op is c.SUBPATTERN:
            return None if av[1] & re.IGNORECASE else exact_seq(av[3])  # (?i:...) matches other cases
        if op is c.BRANCH:
            out = set()
            for branch in av[1]:
                got = exact_seq(branch)
                if got is None:
                    return None
                out |= got
            return out if len(out) <= most else None
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT) and av[0] == av[1] == 1:
            return exact_seq(av[2])
        return None

    def exact_seq(items):
        out = {""}
        for op, av in items:
            got = exact(op, av)
            if got is None:
                return None
            out = {a + b for a in out for b in got}
            if len(out) > most:
                return None
        return out

    def score(strings):  # longer strings are rarer; among equals, fewer of them
        return (min(min(len(x), k) for x in strings), -len(strings))

    def required(items):  # the best set one of whose strings every match of the sequence holds
        best, run = None, {""}
        candidates = []
        for op, av in items:
            got = exact(op, av)
            if got is not None and len({a + b for a in run for b in got}) <= most:
                run = {a + b for a in run for b in got}
                continue
            candidates.append(run)
            run = {""}
            if op is c.SUBPATTERN and not av[1] & re.IGNORECASE:
                candidates.append(required(av[3]))
            elif op is c.BRANCH:
                parts = [required(branch) for branch in av[1]]
                candidates.append(None if any(x is None for x in parts) else set().union(*parts))
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT) and av[0] >= 1:
                candidates.append(required(av[2]))
        candidates.append(run)
        for cand in candidates:
            if cand and "" not in cand and len(cand) <= most and (best is None or score(cand) > score(best)):
                best = cand
        return best

    try:
        tree = _parser.parse(pattern)
        if tree.state.flags & (re.IGNORECASE | re.VERBOSE):
            return None
        found = required(list(tree))
    except Exception:  # a pattern the parser reads differently: no filter, still correct
        return None
    return None if found is None else frozenset(x[:k] for x in found)


def _last(pattern: re.Pattern, text: str) -> re.Match | None:
    """The last match of `pattern` in `text`: the cue nearest the mention."""
    found = None
    for found in pattern.finditer(text):  # noqa: B007 - the loop keeps the last one
        pass
    return found


# The one normalisation the rules and the classifier share (discmed.serve.dialect).
_normalize = normalize


@lru_cache(maxsize=8)
def load_rules(path: str | None = None, learned: bool = True) -> Rules:
    """The rules at `path` (default: the shipped rules), compiled once per path, with the
    learned classifier beside them unless `learned=False`."""
    return Rules(path or DEFAULT_RULES, learned=learned)


def triage(text: str, rules: Rules | str | Path | None = None, enabled: bool = True, learned: bool = True) -> Triage:
    """Triage a patient's message. `enabled=False` (evaluation runs) returns a non-urgent
    result with no notice; `rules` is a Rules object or a path to a rules YAML file;
    `learned=False` leaves the classifier out (the rules' verdict alone)."""
    if not enabled:
        return Triage(False, [], "", "", "zh" if _CJK.search(text or "") else "en", [])
    if not isinstance(rules, Rules):
        rules = load_rules(str(rules) if rules else None, learned)
    return rules.triage(text)


def last_user_text(messages: list[dict]) -> str:
    """The patient's latest message: what triage reads in a conversation."""
    for m in reversed(messages):
        if m.get("role") == "user":
            return str(m.get("content") or "")
    return ""
