"""One consultation in the gym: a doctor against a checked patient, turn by turn.

The doctor is any async function from the conversation so far (OpenAI messages: the patient is
`user`, the doctor `assistant`) to its next turn: a model through the job engine
(`model_doctor`), or one of the scripted doctors that fix the two ends of the scale the rewards
must reproduce (`ask_all`: asks every relevant thing one question at a time, examines, orders
the tests, then names the diagnosis and the disposition; `advise_now`: advises in its first
turn). The episode records what each doctor turn did (`read_turn`) and when each finding was
disclosed, which is all the rewards need.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from discmed.gym.ledger import Ledger
from discmed.gym.patient import DoctorTurn, State, measure, read_turn

Doctor = Callable[[list[dict[str, str]]], Awaitable[str]]


@dataclass
class Episode:
    ledger: str
    doctor: str
    patient: str
    conversation: list[dict[str, str]]
    turns: list[dict[str, Any]]  # per doctor turn: DoctorTurn's fields + `new` (findings it disclosed)
    disclosed: dict[str, int]  # finding id → the doctor turn after which it was known (0: the opening)
    first_advice: int | None  # the first doctor turn that gave advice
    ended: str  # "advice" (the doctor concluded) | "budget" (the turn budget ran out)
    rejections: int = 0  # LLM patient turns the checker refused
    fallbacks: int = 0
    scores: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def run_episode(ledger: Ledger, doctor: Doctor, patient: Any, *, doctor_name: str,
                      budget: int | None = None) -> Episode:
    """Play one consultation to the doctor's conclusion or the turn budget."""
    budget = budget or ledger.turn_budget
    state = State(ledger)
    conversation = [{"role": "user", "content": ledger.opening}]
    turns: list[dict[str, Any]] = []
    first_advice = None
    ended = "budget"
    for t in range(1, budget + 1):
        state.turn = t
        text = (await doctor(list(conversation))).strip()
        conversation.append({"role": "assistant", "content": text})
        turn = read_turn(text, ledger)
        if turn.advice and first_advice is None:
            first_advice = t
        record = {**asdict(turn), "new": []}
        turns.append(record)
        if turn.advice and turn.questions == 0:
            ended = "advice"
            break
        if t == budget:
            break
        said, cited = await patient.reply(text, turn, state)
        results = measure(turn, state)
        for fid in [*cited, *turn.examines, *turn.orders]:
            if fid not in state.disclosed:
                state.disclosed[fid] = t
                record["new"].append(fid)
        conversation.append({"role": "user", "content": said + (f"\n{results}" if results else "")})
    return Episode(ledger.id, doctor_name, patient.name, conversation, turns, dict(state.disclosed), first_advice,
                   ended, state.rejections, state.fallbacks)


# -- doctors ------------------------------------------------------------------------------------

DISPOSITION_ADVICE = {
    "emergency": "请立即拨打120或马上去医院急诊。",
    "same-day": "建议今天尽快到医院就诊。",
    "clinic": "建议近期到门诊就诊，做进一步检查。",
    "self-care": "建议先在家多休息、多喝水，观察几天。",
}


def ask_all(ledger: Ledger) -> Doctor:
    """A scripted doctor that knows what matters (it reads the ledger): one question per turn
    about each finding, red flags first, then heavier ones; an examination and the tests while
    the budget lasts; then the diagnosis and the disposition. The top of the scale."""
    flagged = {r for flag in ledger.red_flags for r in flag.reveals}
    asks = sorted((f for f in ledger.findings if f.disclosure == "on_question"),
                  key=lambda f: (f.id not in flagged, -f.weight))
    tests = [f for f in ledger.findings if f.disclosure == "on_test"]
    steps = []  # the red flags' questions first, the examination and the tests, then the rest by weight
    first = [f for f in asks if f.id in flagged]
    steps += [f"想问一下：{f.synonyms[0]}？" for f in first]
    if any(f.disclosure == "on_exam" for f in ledger.findings):
        steps.append("我给您做个体格检查，检查一下。")
    if tests:
        steps.append("需要做一下" + "、".join(f.synonyms[0] for f in tests) + "检查。")
    rest = [f for f in asks if f.id not in flagged]
    room = max(0, ledger.turn_budget - 1 - len(steps))
    # More to ask than turns left: two questions a turn (a small penalty each) rather than none.
    pairs = [rest[i:i + 2] for i in range(0, len(rest), 2)] if len(rest) > room else [[f] for f in rest]
    steps += ["想问一下：" + "？".join(f.synonyms[0] for f in pair) + "？" for pair in pairs]
    plan = steps[: max(0, ledger.turn_budget - 1)]
    final = f"考虑是{ledger.diagnosis.name}。{DISPOSITION_ADVICE[ledger.disposition]}"

    async def doctor(conversation: list[dict[str, str]]) -> str:
        k = sum(m["role"] == "assistant" for m in conversation)
        return plan[k] if k < len(plan) else final

    return doctor


def advise_now(ledger: Ledger) -> Doctor:
    """A scripted doctor that advises at once, asks nothing and examines nothing. The bottom."""

    async def doctor(conversation: list[dict[str, str]]) -> str:
        return "建议多休息，多喝水，观察几天。"

    return doctor


SCRIPTED = {"ask-all": ask_all, "advise-now": advise_now}


def model_doctor(client: Any, params: Any, system: str | None = None) -> Doctor:
    """A model as the doctor, through a job-engine client (cached, tallied, failures counted)."""

    async def doctor(conversation: list[dict[str, str]]) -> str:
        messages = ([{"role": "system", "content": system}] if system else []) + conversation
        return str(await client.chat(messages, params))

    return doctor


__all__ = ["Episode", "run_episode", "ask_all", "advise_now", "model_doctor", "SCRIPTED", "DoctorTurn"]
