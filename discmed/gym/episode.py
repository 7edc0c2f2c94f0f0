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
    ended: str  # "advice" (the doctor concluded) | "budget" (the turn budget ran out) | "silent" (an empty turn)
    rejections: int = 0  # LLM patient turns the checker refused
    fallbacks: int = 0
    scores: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Consultation:
    """One consultation in progress, stepped from outside: the doctor's turn is recorded
    (`doctor_says`, which says whether the episode is over), then the patient and the
    measurement agent answer it (`patient_says`). `run_episode` drives one with an async doctor;
    the GRPO environment (discmed.rl.gym_env) drives a batch of them, the policy's turns
    generated together."""

    def __init__(self, ledger: Ledger, patient: Any, budget: int | None = None):
        self.ledger, self.patient = ledger, patient
        self.budget = budget or ledger.turn_budget
        self.state = State(ledger)
        self.conversation = [{"role": "user", "content": ledger.opening}]
        self.turns: list[dict[str, Any]] = []
        self.first_advice: int | None = None
        self.ended = "budget"
        self._turn: DoctorTurn | None = None

    def doctor_says(self, text: str) -> bool:
        """Record the doctor's next turn; True when the episode is over (the doctor concluded,
        advice with no question; it said nothing; or this was the budget's last turn)."""
        t = len(self.turns) + 1
        self.state.turn = t
        text = text.strip()
        self.conversation.append({"role": "assistant", "content": text})
        turn = self._turn = read_turn(text, self.ledger)
        if turn.advice and self.first_advice is None:
            self.first_advice = t
        self.turns.append({**asdict(turn), "new": []})
        if turn.advice and turn.questions == 0:
            self.ended = "advice"
            return True
        if not text:  # a doctor that says nothing has ended the consultation (and an empty message is no one's input)
            self.ended = "silent"
            return True
        return t >= self.budget

    async def patient_says(self) -> str:
        """The patient's answer to the last doctor turn, with the measurement agent's results."""
        t, turn, text = len(self.turns), self._turn, self.conversation[-1]["content"]
        said, cited = await self.patient.reply(text, turn, self.state)
        results = measure(turn, self.state)
        for fid in [*cited, *turn.examines, *turn.orders]:
            if fid not in self.state.disclosed:
                self.state.disclosed[fid] = t
                self.turns[-1]["new"].append(fid)
        reply = said + (f"\n{results}" if results else "")
        self.conversation.append({"role": "user", "content": reply})
        return reply

    def episode(self, doctor_name: str) -> Episode:
        return Episode(self.ledger.id, doctor_name, self.patient.name, list(self.conversation), self.turns,
                       dict(self.state.disclosed), self.first_advice, self.ended, self.state.rejections,
                       self.state.fallbacks)


async def run_episode(ledger: Ledger, doctor: Doctor, patient: Any, *, doctor_name: str,
                      budget: int | None = None) -> Episode:
    """Play one consultation to the doctor's conclusion or the turn budget."""
    c = Consultation(ledger, patient, budget)
    while not c.doctor_says(await doctor(list(c.conversation))):
        await c.patient_says()
    return c.episode(doctor_name)


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


__all__ = ["Episode", "Consultation", "run_episode", "ask_all", "advise_now", "model_doctor", "SCRIPTED", "DoctorTurn"]
