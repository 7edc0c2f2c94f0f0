"""The case ledger: everything a simulated patient knows, and when it may say it.

A consultation case is written down once, as data, so that every later step can be checked
without another model: what the patient volunteers at the start; each finding (a symptom, a
piece of history, a medication, an allergy, an examination finding, a test result) with the
condition under which it may be disclosed and the words that count as asking about it; the red
flags and the findings that reveal them; the hidden diagnosis with its differential and the
names each may go by; the disposition a clinician would choose; and the persona the patient
plays (PatientSim's axes: talkativeness, health literacy, recall, anxiety, dialect).

    ledger = Ledger.model_validate_json(line)        # one JSON object per line in a ledger file
    problems = check_ledger(ledger, case_text)       # [] when the ledger holds the case and nothing else

Disclosure conditions (AgentClinic's split of patient and measurement): `volunteered` (said in
the opening or offered unasked), `on_question` (said when the doctor asks about it: any of its
`synonyms` in the doctor's turn), `on_exam` (an examination finding, given by the measurement
agent when the doctor examines: a general exam request or one naming it), `on_test` (a test
result, given when the doctor orders that test by one of its names).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from discmed.chat import DataError, iter_jsonl

VERSION = "discmed-ledger/1"
Disclosure = Literal["volunteered", "on_question", "on_exam", "on_test"]
Kind = Literal["symptom", "history", "medication", "allergy", "exam", "test", "social", "family"]
Disposition = Literal["self-care", "clinic", "same-day", "emergency"]
DISPOSITIONS: tuple[str, ...] = ("self-care", "clinic", "same-day", "emergency")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Finding(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: Kind
    fact: str = Field(min_length=1)  # the case's own wording: what is true
    say: str = Field(min_length=1)  # how the patient says it (or how the result reads, for exam/test)
    disclosure: Disclosure
    synonyms: list[str] = Field(default_factory=list)  # words that, in a doctor's turn, ask about it
    weight: float = Field(1.0, gt=0, le=5)  # how much finding it out matters

    @model_validator(mode="after")
    def _askable(self) -> Finding:
        if self.disclosure != "volunteered" and not self.synonyms:
            raise ValueError(f"finding {self.id}: a finding disclosed {self.disclosure} needs synonyms to be asked by")
        if self.disclosure == "on_exam" and self.kind != "exam" or self.disclosure == "on_test" and self.kind != "test":
            raise ValueError(f"finding {self.id}: disclosure {self.disclosure} is for kind "
                             f"{'exam' if self.disclosure == 'on_exam' else 'test'}, not {self.kind}")
        return self


class RedFlag(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    reveals: list[str] = Field(min_length=1)  # finding ids; any of them disclosed reveals the flag


class Named(_Strict):
    name: str
    synonyms: list[str] = Field(default_factory=list)

    def names(self) -> list[str]:
        return [self.name, *self.synonyms]


class Diagnosis(Named):
    differential: list[Named] = Field(default_factory=list)


class Demographics(_Strict):
    age: int | None = Field(None, ge=0, le=120)
    sex: Literal["男", "女"] | None = None


class Persona(_Strict):
    talkativeness: Literal["terse", "normal", "talkative"] = "normal"
    health_literacy: Literal["low", "medium", "high"] = "medium"
    recall: Literal["clear", "vague"] = "clear"
    anxiety: Literal["calm", "worried", "panicked"] = "worried"
    dialect: Literal["none", "northern", "southwestern", "cantonese"] = "none"


class Ledger(_Strict):
    version: Literal["discmed-ledger/1"] = VERSION
    id: str
    source: str  # where the case comes from (discmed's own set, CMB-clin, CMD, CMID …)
    demographics: Demographics = Field(default_factory=Demographics)
    chief_complaint: str
    opening: str  # the patient's first message
    findings: list[Finding] = Field(min_length=1)
    red_flags: list[RedFlag] = Field(default_factory=list)
    diagnosis: Diagnosis
    disposition: Disposition
    persona: Persona = Field(default_factory=Persona)
    turn_budget: int = Field(6, ge=1, le=20)  # doctor turns the case deserves

    @field_validator("findings")
    @classmethod
    def _unique(cls, v: list[Finding]) -> list[Finding]:
        seen: set[str] = set()
        for f in v:
            if f.id in seen:
                raise ValueError(f"finding id {f.id!r} appears twice")
            seen.add(f.id)
        return v

    @model_validator(mode="after")
    def _flags_point_to_findings(self) -> Ledger:
        ids = {f.id for f in self.findings}
        for flag in self.red_flags:
            missing = [r for r in flag.reveals if r not in ids]
            if missing:
                raise ValueError(f"red flag {flag.id}: reveals {', '.join(missing)}, which no finding is")
        return self

    def finding(self, fid: str) -> Finding:
        return next(f for f in self.findings if f.id == fid)

    def to_hidden_case(self) -> str:
        """The case as one text (for an LLM patient's prompt and for the mechanical checks)."""
        lines = [f"主诉：{self.chief_complaint}"] + [f"- {f.fact}" for f in self.findings]
        return "\n".join(lines)


def read_ledgers(path: str | Path) -> list[Ledger]:
    """Ledgers from a JSONL file; a bad line is `path:line: field: message`."""
    def parse(obj, line):
        try:
            return Ledger.model_validate(obj)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(x) for x in err["loc"]) or "ledger"
            raise DataError(path, line, field, err["msg"]) from None

    out = [led for _, led in iter_jsonl(path, lambda obj, line: (line, parse(obj, line)))]
    dup = _first_duplicate([led.id for led in out])
    if dup:
        raise DataError(path, None, "id", f"ledger id {dup!r} appears twice")
    return out


def _first_duplicate(ids: list[str]) -> str | None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            return i
        seen.add(i)
    return None


# -- mechanical checks --------------------------------------------------------------------------

RE_NUMBER = re.compile(r"\d+(?:\.\d+)?")
RE_MARKER = re.compile(r"[(（]\s*\d{1,2}\s*[)）]|^\s*\d{1,2}[.、]", re.M)


def norm(text: str) -> str:
    """NFKC, lower case, letters and digits only: what matching compares."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(c for c in text if c.isalnum())


def _bigrams(text: str) -> set[str]:
    t = norm(text)
    return {t[i:i + 2] for i in range(len(t) - 1)}


def grounded(fact: str, case_text: str, min_cover: float = 0.6) -> bool:
    """Whether `fact` is the case's own: its numbers all appear in the case, and most of its
    character bigrams do (a paraphrase keeps most of them; an invention keeps few)."""
    case_numbers = set(RE_NUMBER.findall(unicodedata.normalize("NFKC", case_text)))
    if any(n not in case_numbers for n in RE_NUMBER.findall(unicodedata.normalize("NFKC", fact))):
        return False
    grams = _bigrams(fact)
    return not grams or len(grams & _bigrams(case_text)) / len(grams) >= min_cover


def check_ledger(ledger: Ledger, case_text: str | None = None, reference: str | None = None) -> list[str]:
    """Reasons the ledger is not a faithful copy of its case ([] when it is).

    Schema rules (red flags point to findings, ids unique, askable findings have synonyms) are
    the model's validators; here: with the case text, every finding is grounded in it and
    every number of the case is in some finding (the case whole, nothing else); with a reference
    answer (CMB-Clin's), the diagnosis or one of its names appears in it."""
    problems = []
    if not any(f.disclosure == "volunteered" for f in ledger.findings):
        problems.append("no finding is volunteered: the opening tells the doctor nothing")
    if case_text is not None:
        for f in ledger.findings:
            if not grounded(f.fact, case_text):
                problems.append(f"finding {f.id}: not in the case text ({f.fact[:40]})")
        in_ledger = set(RE_NUMBER.findall(unicodedata.normalize("NFKC", " ".join(f.fact for f in ledger.findings))))
        facts = RE_MARKER.sub(" ", unicodedata.normalize("NFKC", case_text))  # list markers (1) (2) are not facts
        dropped = [n for n in RE_NUMBER.findall(facts) if n not in in_ledger]
        dropped = sorted(set(dropped), key=dropped.index)
        if dropped:
            problems.append(f"case facts missing from the ledger: numbers {', '.join(dropped[:10])}")
    if reference is not None:
        ref = norm(reference)
        if not any(norm(n) in ref for n in ledger.diagnosis.names() if norm(n)):
            problems.append(f"diagnosis {ledger.diagnosis.name!r}: neither it nor its synonyms are in the case's answer")
    return problems
