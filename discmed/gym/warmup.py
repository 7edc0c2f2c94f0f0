"""A doctor's action space from training ledgers, and consultations that teach it (SFT before GRPO).

A small model cannot find, by sampling, the words that ask about a finding: a 3M-parameter
model's turns are mostly noise, and GRPO on the gym learns nothing from noise. So, as RL on
language models usually starts from a supervised policy, the gym's GRPO starts from one that
knows the *actions* but not the *strategy*: supervised on consultations in which a doctor picks
its actions at random (`random_doctor`) from the action space of the training ledgers
(`action_space`: a question about any of their findings, one at a time, by the words that ask
about it; an examination; a test order; a conclusion naming one of their diagnoses and a
disposition), against the rule-based patient. Which questions to ask, in what order, and when to
conclude are left for GRPO to learn from the ledger's rewards.

Only the training ledgers are read; the held-out ledgers are never seen, and their findings are
reached only by words the training ledgers share with them.

    conversations = warmup_conversations(read_ledgers(TRAIN), per_ledger=12, seed=0)
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from discmed.gym.episode import DISPOSITION_ADVICE, Doctor, run_episode
from discmed.gym.ledger import Ledger
from discmed.gym.patient import RulePatient


@dataclass
class Actions:
    questions: list[str]  # one question per turn
    exams: list[str]
    tests: list[str]
    conclusions: list[str]  # a diagnosis and a disposition's advice


def action_space(ledgers: list[Ledger]) -> Actions:
    """Every action the training ledgers afford, each written as the scripted doctors write it."""
    asks = dict.fromkeys(s for led in ledgers for f in led.findings if f.disclosure == "on_question"
                         for s in f.synonyms)
    tests = dict.fromkeys(s for led in ledgers for f in led.findings if f.disclosure == "on_test" for s in f.synonyms)
    names = dict.fromkeys(led.diagnosis.name for led in ledgers)
    return Actions([f"想问一下：{s}？" for s in asks], ["我给您做个体格检查，检查一下。"], [f"需要做一下{s}检查。" for s in tests],
                   [f"考虑是{n}。{advice}" for n in names for advice in DISPOSITION_ADVICE.values()])


def random_doctor(ledger: Ledger, actions: Actions, rng: random.Random) -> Doctor:
    """A doctor that asks, examines and orders at random for a random number of turns (within
    the ledger's budget), then concludes at random."""
    n = rng.randint(0, ledger.turn_budget - 1)
    # A question most turns; an examination or a test order now and then (there are far fewer of them).
    kinds = rng.choices([actions.questions, actions.exams, actions.tests], weights=[0.7, 0.15, 0.15], k=n)
    plan = [rng.choice(kind) for kind in kinds] + [rng.choice(actions.conclusions)]

    async def doctor(conversation: list[dict[str, str]]) -> str:
        return plan[min(sum(m["role"] == "assistant" for m in conversation), len(plan) - 1)]

    return doctor


def warmup_conversations(ledgers: list[Ledger], per_ledger: int = 12, seed: int = 0) -> list[dict]:
    """DISC-format samples (`_id`, `source`, `conversation`): `per_ledger` random-doctor
    consultations of each ledger against the rule-based patient."""
    actions = action_space(ledgers)
    rng = random.Random(seed)
    out = []
    for led in ledgers:
        for k in range(per_ledger):
            ep = asyncio.run(run_episode(led, random_doctor(led, actions, rng), RulePatient(seed + k),
                                         doctor_name="random"))
            out.append({"_id": f"{led.id}#{k}", "source": "discmed-gym-warmup", "conversation": ep.conversation})
    return out
