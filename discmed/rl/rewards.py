"""Rewards: functions of a finished consultation episode, weighted in the GRPO recipe.

Each reward takes the episodes of a batch (DISC dialogue records, `Episode.record()`) and
returns one value per episode, or None where it does not apply or cannot be read; TRL leaves a
None out of the weighted sum (an episode where every reward is None gets no advantage), so an
unreadable judge reply is excluded and counted (`stats`), never scored 0.

- `rubric`: the episode graded against its case's rubric (`eval rubrics`' file) by a grader
  model, HealthBench's score clipped to [0, 1];
- `judge`: DISC's four criteria from a judge model, their mean mapped from 1..5 to 0..1;
- `safety`: for a case discmed's red-flag rules call urgent, 1 when the first doctor reply
  escalates (120, 急诊, 立即就医 …), else 0; None for other cases;
- `asks`: 1 when the first doctor reply asks the patient something (the consultation's
  proactivity, programmatic: a model of any size can move it);
- `model_leak`: -1 when the doctor says it is an AI or a language model, else 0;
- `length`: 0 within `length_budget` characters per doctor turn, falling to -1 at twice it.

The gym's rewards (`GYM`), for episodes played in the consultation gym (`env: gym`: the record
carries the gym episode under `gym`), are computed from the case ledger by
discmed.gym.rewards.score_episode, no model involved: `info_recall`, `red_flags_before_advice`
(None for a ledger without red flags), `diagnosis`, `disposition`, and the counts `repeated`
(turns that asked, examined or ordered only what was known), `multi`, `over_budget` (give these
negative weights: they are penalties).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from discmed.backend import GenParams
from discmed.eval.consult import Case
from discmed.eval.judge import parse_scores, render_prompt
from discmed.eval.rubric import grade_dialogue, score_example
from discmed.eval.rubric_write import urgency
from discmed.gym.episode import Episode as GymEpisode
from discmed.gym.ledger import Ledger
from discmed.gym.rewards import score_episode
from discmed.jobs import JobRunner, cache_path

_ESCALATE = re.compile(r"120|急诊|急救|立即就医|马上就医|立刻就医|尽快就医|立即去医院|马上去医院|呼叫救护车|拨打")
_QUESTION = re.compile(r"[?？]|请问|是否|有没有|多久|多长时间|哪里|什么时候|几天")
_MODEL = re.compile(r"人工智能|语言模型|AI助手|AI 助手|作为AI|作为一个AI|我是AI|我是一个模型|\bas an AI\b|language model", re.I)

PROGRAMMATIC = ("safety", "asks", "model_leak", "length")
MODEL_JUDGED = ("rubric", "judge")
GYM = ("info_recall", "red_flags_before_advice", "diagnosis", "disposition", "repeated", "multi", "over_budget")


def first_reply(record: dict[str, Any]) -> str:
    return next((t["content"] for t in record["conversation"] if t["role"] == "doctor"), "")


def is_urgent(case: Case) -> bool:
    return urgency({"opening": case.opening, "context": case.context})[0]


class Rewards:
    """The weighted rewards of a recipe, as TRL reward functions (one per nonzero weight)."""

    def __init__(self, weights: dict[str, float], *, cases: dict[str, Case], length_budget: int = 300,
                 judge: Any = None, judge_spec: str = "", grader: Any = None, grader_spec: str = "",
                 rubrics: dict[str, Any] | None = None, cache: str | Path = "shared",
                 ledgers: dict[str, Ledger] | None = None):
        unknown = set(weights) - set(PROGRAMMATIC) - set(MODEL_JUDGED) - set(GYM)
        if unknown:
            raise ValueError(f"rewards: unknown reward {sorted(unknown)[0]!r} "
                             f"(expected {', '.join(PROGRAMMATIC + MODEL_JUDGED + GYM)})")
        gym = sorted(k for k, v in weights.items() if v and k in GYM)
        if gym and not ledgers:
            raise ValueError(f"rewards.{gym[0]} is the consultation gym's: it needs the case ledgers (env: gym)")
        if weights.get("judge") and judge is None:
            raise ValueError("rewards.judge needs a judge model (judge: a model spec)")
        if weights.get("rubric") and (grader is None or not rubrics):
            raise ValueError("rewards.rubric needs a grader model and a rubric file (grader, rubrics)")
        self.weights = {k: float(v) for k, v in weights.items() if v}
        if not self.weights:
            raise ValueError("rewards: every weight is 0; nothing to train for")
        self.cases, self.length_budget = cases, length_budget
        self.judge, self.judge_spec, self.grader, self.grader_spec = judge, judge_spec, grader, grader_spec
        self.rubrics, self.cache = rubrics or {}, cache
        self.ledgers = ledgers or {}
        # Urgency only where the safety reward reads it (it loads the triage classifier).
        self.urgent = {cid: is_urgent(c) for cid, c in cases.items()} if self.weights.get("safety") else {}
        self.stats: Counter = Counter()  # unreadable judge / grader replies, episodes scored

    # -- the programmatic rewards ---------------------------------------------------------

    def safety(self, record: dict[str, Any]) -> float | None:
        if not self.urgent.get(str(record["id"])):
            return None
        return 1.0 if _ESCALATE.search(first_reply(record)) else 0.0

    def asks(self, record: dict[str, Any]) -> float:
        return 1.0 if _QUESTION.search(first_reply(record)) else 0.0

    def model_leak(self, record: dict[str, Any]) -> float:
        return -1.0 if any(_MODEL.search(t["content"]) for t in record["conversation"] if t["role"] == "doctor") else 0.0

    def length(self, record: dict[str, Any]) -> float:
        doctor = [len(t["content"]) for t in record["conversation"] if t["role"] == "doctor"]
        over = max(0, (sum(doctor) / max(1, len(doctor))) - self.length_budget)
        return -min(1.0, over / self.length_budget)

    # -- the gym's rewards, from the ledger ------------------------------------------------

    def gym_score(self, name: str, record: dict[str, Any]) -> float | None:
        if "gym" not in record:
            raise ValueError(f"rewards.{name} is the consultation gym's: episode {record['id']} is not a gym episode")
        value = score_episode(GymEpisode(**record["gym"]), self.ledgers[str(record["id"])])[name]
        return None if value is None else float(value)

    # -- the model-judged rewards ---------------------------------------------------------

    def _run(self, records: list[dict[str, Any]], work: Any, backend: Any, name: str, spec: str) -> list[dict]:
        import time

        t0 = time.perf_counter()
        with JobRunner(None, concurrency=max(1, len(records)), cache=cache_path(self.cache), progress=False) as runner:
            client = runner.client(backend, name=name)

            async def job(key: str, record: dict) -> dict:
                return await work(client, record)

            out = runner.map([(str(i), r) for i, r in enumerate(records)], job, desc=name)
        self.stats[f"{name}_failed"] += sum(r is None for r in out.results)
        self.stats[f"{name}_wait_ms"] += int(1000 * (time.perf_counter() - t0))  # the step's share spent on this model
        return out.results

    def judge_scores(self, records: list[dict[str, Any]]) -> list[float | None]:
        params = GenParams(max_new_tokens=128)

        async def work(client: Any, record: dict) -> dict:
            reply = await client.chat([{"role": "user", "content": render_prompt(record, "disc")}], params)
            return {"scores": parse_scores(reply)}

        out = []
        for r in self._run(records, work, self.judge, "judge", self.judge_spec):
            scores = r and r["scores"]
            self.stats["judge_unreadable"] += scores is None
            out.append(None if scores is None else (sum(scores.values()) / len(scores) - 1) / 4)
        return out

    def rubric_scores(self, records: list[dict[str, Any]]) -> list[float | None]:
        params = GenParams(max_new_tokens=128)
        missing = [r["id"] for r in records if str(r["id"]) not in self.rubrics]
        self.stats["rubric_missing"] += len(missing)

        async def work(client: Any, record: dict) -> dict:
            example = self.rubrics.get(str(record["id"]))
            if example is None:
                return {"score": None}
            grades = await grade_dialogue(client, record["conversation"], example.rubrics, params)
            return {"score": score_example(example.rubrics, [g["criteria_met"] for g in grades])}

        out = []
        for r in self._run(records, work, self.grader, "grader", self.grader_spec):
            score = r and r["score"]
            self.stats["rubric_ungraded"] += score is None
            out.append(None if score is None else min(1.0, max(0.0, score)))
        return out

    # -- as TRL reward functions ----------------------------------------------------------

    def score(self, records: list[dict[str, Any]]) -> dict[str, list[float | None]]:
        """Every weighted reward of every record, unweighted: {name: [value | None, …]}."""
        out: dict[str, list[float | None]] = {}
        for name in self.weights:
            if name == "judge":
                out[name] = self.judge_scores(records)
            elif name == "rubric":
                out[name] = self.rubric_scores(records)
            elif name in GYM:
                out[name] = [self.gym_score(name, r) for r in records]
            else:
                out[name] = [getattr(self, name)(r) for r in records]
        return out

    def total(self, values: dict[str, list[float | None]]) -> list[float | None]:
        """The weighted sum per episode as TRL forms it (None terms left out; all None → None)."""
        n = len(next(iter(values.values())))
        totals = []
        for i in range(n):
            terms = [self.weights[k] * v[i] for k, v in values.items() if v[i] is not None]
            totals.append(sum(terms) if terms else None)
        return totals

    def trl_functions(self) -> tuple[list[Any], list[float]]:
        """One TRL reward function per weighted reward, and their weights (GRPOConfig.reward_weights)."""
        funcs = []
        for name in self.weights:

            def fn(prompts, completions, episode=None, _name=name, **kwargs):
                if episode is None:
                    raise ValueError("the consultation rewards need the rollout's `episode` field")
                return self.score_one(_name, episode)

            fn.__name__ = name
            funcs.append(fn)
        return funcs, [self.weights[n] for n in self.weights]

    def score_one(self, name: str, records: list[dict[str, Any]]) -> list[float | None]:
        if name == next(iter(self.weights)):
            self.stats["episodes"] += len(records)  # counted once per batch
        if name == "judge":
            return self.judge_scores(records)
        if name == "rubric":
            return self.rubric_scores(records)
        if name in GYM:
            return [self.gym_score(name, r) for r in records]
        return [getattr(self, name)(r) for r in records]
