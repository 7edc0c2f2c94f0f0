"""The consultation gym as a GRPO environment: the policy is the doctor, the patient answers from the ledger.

A rollout is one gym consultation (discmed.gym.episode.Consultation, the same steps `eval gym`
plays): the case ledger's opening, then the doctor's turns sampled from the policy until it
concludes (advice with no question) or the ledger's turn budget runs out, each answered by the
rule-based patient and, for an examination or an ordered test, the measurement agent. It is
laid out as every consultation rollout is (discmed.rl.env.Consultations: `prompt_ids`,
`completion_ids`, `env_mask`), so the patient's words and the results are context, never a
target; the doctor's turns of all the episodes still going are generated together through the
shared engine, and the rule-based patient costs no model call. The episode's record carries the
gym episode (`gym`), from which the ledger rewards (discmed.rl.rewards.GYM) are computed.

    env = GymConsultations(tokenizer, get_format("disc"), max_new_tokens=16)
    with policy_sampler(model, tokenizer, env.stop_ids) as generate:
        episodes = env.run([ledger_case(led) for led in ledgers for _ in range(4)], generate)
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

from discmed.eval.consult import Case
from discmed.gym.episode import Consultation
from discmed.gym.ledger import Ledger
from discmed.gym.patient import RulePatient
from discmed.rl.env import Consultations, Episode


@dataclass
class GymCase(Case):
    """A consultation case that carries its ledger (what the consult rewards and the leak finder
    read is the case; what the patient and the gym's rewards read is the ledger)."""

    ledger: Ledger | None = None


def ledger_case(ledger: Ledger) -> GymCase:
    return GymCase(ledger.id, ledger.source, ledger.opening, ledger.to_hidden_case(), "case",
                   diagnoses=ledger.diagnosis.names(), ledger=ledger)


@dataclass
class GymEpisode(Episode):
    consultation: Consultation | None = None

    def record(self, model: str = "policy") -> dict[str, Any]:
        """DISC's dialogue record, the episode's flags, and the gym episode the ledger rewards read."""
        return {**super().record(model), "gym": self.consultation.episode(model).as_dict()}


class GymConsultations(Consultations):
    """Batches of gym consultations against the rule-based patient."""

    def __init__(self, tokenizer: Any, fmt: Any, *, seed: int = 0, max_new_tokens: int = 32,
                 max_completion_length: int = 512, doctor_system: str | None = None):
        super().__init__(tokenizer, fmt, turns=1, max_new_tokens=max_new_tokens,
                         max_completion_length=max_completion_length, doctor_system=doctor_system)
        self._seeds = itertools.count(seed)  # each episode's patient its own (the persona's vague recall varies)

    def start(self, case: GymCase) -> GymEpisode:
        e = super().start(case)
        c = Consultation(case.ledger, RulePatient(next(self._seeds)))
        return GymEpisode(**vars(e), consultation=c)

    def turn_limit(self, e: Episode) -> int:
        return e.consultation.budget

    def doctor_done(self, e: Episode, text: str, turn: int) -> bool:
        return e.consultation.doctor_says(text)

    def patient_turns(self, episodes: list[Episode], tag: str) -> list[tuple[str, bool]]:
        async def replies() -> list[str]:
            return list(await asyncio.gather(*(e.consultation.patient_says() for e in episodes)))

        return [(r, False) for r in asyncio.run(replies())]
