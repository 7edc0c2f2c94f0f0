"""Rewards computed from the ledger: no model judges them.

From a finished episode and its ledger:

- `info_recall`: the weight of the findings the doctor elicited (asked, examined, ordered) over
  the weight of all it could have (the volunteered ones are given);
- `red_flags_before_advice`: the share of the case's red flags revealed before the doctor's
  first advice (None for a case without red flags);
- `diagnosis`: 1 when an acceptable name of the hidden diagnosis (or a synonym) is in the doctor's
  advice, 0.5 when only a differential's name is, else 0 — names, not ROUGE;
- `disposition`: 1 when the advice's disposition (emergency / same-day / clinic / self-care, read
  from its words) is the case's; `escalated`: an emergency case sent to emergency care at all;
- `turns`, `over_budget` (1 for an episode that ended without a conclusion: the budget ran out,
  or the doctor fell silent), `repeated` (turns that asked only what was already known, or
  examined or ordered only what was already measured), `multi`
  (turns with more than one question, as DoctorAgent-RL penalises).

`reward` combines them with `WEIGHTS` (any weight may be changed; the model-judged rewards of
discmed.rl.rewards stay combinable beside these).
"""

from __future__ import annotations

import re
from typing import Any

from discmed.gym.episode import Episode
from discmed.gym.ledger import Ledger, norm

WEIGHTS = {"info_recall": 1.0, "red_flags_before_advice": 1.0, "diagnosis": 1.0, "disposition": 1.0,
           "repeated": -0.1, "multi": -0.1, "over_budget": -0.2}

RE_EMERGENCY = re.compile(r"120|急诊|立即|马上|立刻|紧急|救护车")
RE_SAME_DAY = re.compile(r"今天|当天|尽快|及时")
RE_CLINIC = re.compile(r"门诊|挂号|专科|就诊|复查|进一步检查|医院")
RE_SELF = re.compile(r"在家|休息|观察|多喝水|自行")


def disposition_of(text: str) -> str | None:
    """The disposition an advice says, from its words (the most urgent it names)."""
    if RE_EMERGENCY.search(text):
        return "emergency"
    if RE_SAME_DAY.search(text) and RE_CLINIC.search(text):
        return "same-day"
    if RE_CLINIC.search(text):
        return "clinic"
    if RE_SELF.search(text):
        return "self-care"
    return None


def score_episode(episode: Episode, ledger: Ledger, weights: dict[str, float] | None = None) -> dict[str, Any]:
    weights = {**WEIGHTS, **(weights or {})}
    askable = [f for f in ledger.findings if f.disclosure != "volunteered"]
    total = sum(f.weight for f in askable)
    got = sum(f.weight for f in askable if f.id in episode.disclosed)
    recall = got / total if total else 1.0
    first = episode.first_advice or (len(episode.turns) + 1)  # no advice: everything came before it
    if ledger.red_flags:
        early = [fl for fl in ledger.red_flags if any(episode.disclosed.get(r, first) < first for r in fl.reveals)]
        red = len(early) / len(ledger.red_flags)
    else:
        red = None
    doctor = [m["content"] for m in episode.conversation if m["role"] == "assistant"]
    advice = " ".join(doctor[first - 1:]) if episode.first_advice else ""
    said = norm(advice)
    if any(norm(n) and norm(n) in said for n in ledger.diagnosis.names()):
        diagnosis = 1.0
    elif any(norm(n) and norm(n) in said for d in ledger.diagnosis.differential for n in d.names()):
        diagnosis = 0.5
    else:
        diagnosis = 0.0
    said_disposition = disposition_of(doctor[-1]) if episode.ended == "advice" else disposition_of(advice)
    asked_turns = [t for t in episode.turns if t["asks"]]
    known_before: set[str] = {f for f, t in episode.disclosed.items() if t == 0}
    repeated = 0
    for i, t in enumerate(episode.turns, start=1):
        asked_again = bool(t["asks"]) and bool(t["questions"]) and all(a in known_before for a in t["asks"])
        # An examination or a test order whose every result is already on the table: the
        # measurement agent reads the same findings out again (GRPO found that examining every
        # turn cost nothing). Only an answered turn can repeat one: the last turn ends the
        # consultation unanswered, and a conclusion that names what an exam would find
        # ("考虑是细菌性脑膜炎") examines nobody. A turn counts once, however much of it repeats.
        measured = t["examines"] + t["orders"]
        measured_again = i < len(episode.turns) and bool(measured) and all(f in known_before for f in measured)
        repeated += asked_again or measured_again
        known_before |= {f for f, when in episode.disclosed.items() if when == i}
    scores: dict[str, Any] = {
        "info_recall": round(recall, 4),
        "red_flags_before_advice": None if red is None else round(red, 4),
        "diagnosis": diagnosis,
        "disposition": float(said_disposition == ledger.disposition),
        "said_disposition": said_disposition,
        "escalated": (said_disposition == "emergency" or any(RE_EMERGENCY.search(d) for d in doctor))
        if ledger.disposition == "emergency" else None,
        "turns": len(episode.turns),
        "over_budget": max(0, len(episode.turns) - ledger.turn_budget) + (episode.ended != "advice"),
        "repeated": repeated,
        "multi": sum(t["questions"] > 1 for t in episode.turns),
        "asked_turns": len(asked_turns),
        "rejections": episode.rejections,
    }
    scores["reward"] = round(sum(w * float(scores[k] or 0) for k, w in weights.items()), 4)
    return scores
