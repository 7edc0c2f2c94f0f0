"""The consultation environment: one episode is a case, the doctor policy and the simulated patient.

An episode is what `eval consult` runs — the patient (any backend spec, through the job engine)
opens with the case's first message and answers only what it is asked; the doctor replies, up
to `turns` times or until the patient ends the consultation — with one difference: the doctor
is the policy being trained, so its turns are token ids sampled from it, kept exactly as
sampled. The episode is laid out as TRL's GRPOTrainer wants a rollout:

    prompt_ids      the case's opening, as the chat format renders a generation prompt
    completion_ids  doctor turn 1 (sampled ids) · patient turn 2 · doctor turn 2 · …
    env_mask        1 on the doctor's sampled tokens (its end-of-turn token included), 0 on the
                    patient's turns and the format's markers: the loss is taken on the 1s only

so the patient's words are context, never a target — the same rule as the chat formats'
assistant masks in SFT. Formats built of independent per-message pieces (disc, chatml, llama3)
are supported; `auto` (a tokenizer's template) is refused, as it may re-render earlier turns.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from discmed.backend import GenParams
from discmed.engine.core import LocalEngine
from discmed.engine.protocol import Request, collect
from discmed.eval.consult import Case, clean_patient, dialogue_record, find_leaks, patient_messages
from discmed.formats import _PieceFormat
from discmed.jobs import JobRunner, cache_path

# generate(contexts, max_new_tokens) -> one (sampled ids, stopped on an end-of-turn token) per context
Generate = Callable[[list[list[int]], int], list[tuple[list[int], bool]]]


@dataclass
class Episode:
    case: Case
    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    conversation: list[dict[str, str]] = field(default_factory=list)
    done: bool = False
    ended_by_patient: bool = False
    truncated: bool = False  # the episode reached max_completion_length

    def record(self, model: str = "policy") -> dict[str, Any]:
        """What reward functions read: DISC's dialogue record plus the episode's flags."""
        return {**dialogue_record(self.case, model, self.conversation), "ended_by_patient": self.ended_by_patient,
                "truncated": self.truncated, "leaks": find_leaks(self.conversation, self.case)}


class Consultations:
    """Runs batches of episodes: doctor turns generated together, patient turns concurrently."""

    def __init__(self, tokenizer: Any, fmt: Any, *, patient: Any = None, patient_spec: str = "", turns: int = 3,
                 max_new_tokens: int = 128, max_completion_length: int = 1024, patient_params: Any = None,
                 doctor_system: str | None = None, cache: str | Path = "shared"):
        if not isinstance(fmt, _PieceFormat):
            raise ValueError(f"format {getattr(fmt, 'name', fmt)!r}: multi-turn rollouts need a format of per-message "
                             "pieces (disc, chatml, llama3); a tokenizer's own template may re-render earlier turns")
        if turns > 1 and patient is None:
            raise ValueError("turns > 1 needs a patient model (patient: a model spec)")
        self.tokenizer, self.fmt = tokenizer, fmt
        self.patient, self.patient_spec, self.turns = patient, patient_spec or "patient", turns
        self.max_new_tokens, self.max_completion_length = max_new_tokens, max_completion_length
        self.patient_params = patient_params or GenParams(max_new_tokens=96, temperature=0.7, top_p=0.9)
        self.doctor_system = doctor_system
        self.cache = cache
        self._batches = itertools.count()
        self.timings = {"generate_s": 0.0, "patient_s": 0.0, "episodes": 0}  # where rollout time goes
        start = fmt.generation_start(tokenizer)
        empty = fmt.piece({"role": "assistant", "content": ""}, tokenizer)[0]
        if empty[: len(start)] != start:
            raise ValueError(f"format {fmt.name!r}: an assistant turn does not begin with its generation start")
        # What follows the reply's content in an assistant turn: its stop token, then (chatml) a newline.
        self.turn_end = empty[len(start):]
        self.stop_ids = fmt.stop_token_ids(tokenizer)

    def start(self, case: Case) -> Episode:
        messages = ([{"role": "system", "content": self.doctor_system}] if self.doctor_system else [])
        messages.append({"role": "user", "content": case.opening})
        ids = self.fmt.prompt(messages, self.tokenizer, max_length=self.max_completion_length * 4, reserve=0)
        return Episode(case, ids, conversation=[{"role": "patient", "content": case.opening}])

    def _append(self, e: Episode, ids: list[int], trained: bool) -> None:
        e.completion_ids += ids
        e.env_mask += [1 if trained else 0] * len(ids)

    def run(self, cases: list[Case], generate: Generate) -> list[Episode]:
        """One episode per case (pass a case G times for a GRPO group)."""
        episodes = [self.start(c) for c in cases]
        batch = next(self._batches)
        for turn in range(max(self.turn_limit(e) for e in episodes)):
            active = [e for e in episodes if not e.done]
            if not active:
                break
            room = [self.max_completion_length - len(e.completion_ids) for e in active]
            t0 = time.perf_counter()
            outs = generate([e.prompt_ids + e.completion_ids for e in active], max(1, min(self.max_new_tokens, *room)))
            self.timings["generate_s"] += time.perf_counter() - t0
            for e, (ids, stopped) in zip(active, outs, strict=True):
                content = ids[:-1] if stopped else ids
                text = self.tokenizer.decode(content, skip_special_tokens=True).strip()
                self._append(e, ids, trained=True)
                e.conversation.append({"role": "doctor", "content": text})
                if self.doctor_done(e, text, turn):
                    e.done = True
                elif len(e.completion_ids) >= self.max_completion_length:
                    e.done = e.truncated = True
                # The rest of the turn's end (chatml's newline after <|im_end|>; all of it for a reply
                # cut at max_new_tokens that the consultation goes on after) is the format's, not the
                # policy's: context, no gradient. A last reply cut short stays cut, so TRL sees it truncated.
                if stopped or not e.done:
                    self._append(e, self.turn_end[1:] if stopped else self.turn_end, trained=False)
            waiting = [e for e in active if not e.done]
            if waiting:
                t0 = time.perf_counter()
                replies = self.patient_turns(waiting, f"{batch}/{turn}")
                self.timings["patient_s"] += time.perf_counter() - t0
                for e, (said, ended) in zip(waiting, replies, strict=True):
                    if ended or not said:
                        e.done, e.ended_by_patient = True, ended
                        continue
                    e.conversation.append({"role": "patient", "content": said})
                    piece = self.fmt.piece({"role": "user", "content": said}, self.tokenizer)[0]
                    self._append(e, piece + self.fmt.generation_start(self.tokenizer), trained=False)
                    if len(e.completion_ids) >= self.max_completion_length:
                        e.done = e.truncated = True
        self.timings["episodes"] += len(episodes)
        for e in episodes:  # a patient turn cut off at the budget is context the policy never answers
            if len(e.completion_ids) > self.max_completion_length:
                e.completion_ids = e.completion_ids[: self.max_completion_length]
                e.env_mask = e.env_mask[: self.max_completion_length]
        return episodes

    # The three places a kind of consultation differs (discmed.rl.gym_env overrides them).
    def turn_limit(self, e: Episode) -> int:
        return self.turns

    def doctor_done(self, e: Episode, text: str, turn: int) -> bool:
        """Whether the doctor's turn `turn` (from 0), already in `e.conversation`, ends the episode."""
        return turn == self.turns - 1 or not text

    def patient_turns(self, episodes: list[Episode], tag: str) -> list[tuple[str, bool]]:
        """(the patient's next line, whether the patient ended the consultation) per episode."""
        return [clean_patient(r) for r in self.patient_replies(episodes, tag)]

    def patient_replies(self, episodes: list[Episode], tag: str) -> list[str]:
        """The patient's next line for each episode, concurrently through the job engine."""
        # No journal: rollouts are not resumed (a resumed run samples afresh), while the call
        # cache still answers a conversation the patient has already seen.
        with JobRunner(None, concurrency=max(1, len(episodes)), cache=cache_path(self.cache), progress=False) as runner:
            client = runner.client(self.patient, name="patient")
            params = self.patient_params

            async def work(key: str, e: Episode) -> dict:
                return {"reply": await client.chat(patient_messages(e.case, e.conversation), params)}

            out = runner.map([(f"{tag}/{i}", e) for i, e in enumerate(episodes)], work, desc="patient")
        # A patient call that failed (after the API client's own retries) ends that episode (an empty line).
        return [r["reply"] if r else "" for r in out.results]


@contextlib.contextmanager
def policy_sampler(model: Any, tokenizer: Any, stop_ids: list[int], *, temperature: float = 1.0, top_p: float = 1.0,
                   max_batch: int = 64) -> Iterator[Generate]:
    """Doctor turns sampled from the live policy through the engine (`discmed.engine`: the one
    sampler, continuous batching), each cut after its first stop token. The policy is put in
    eval mode for the rollout and back in the mode it was in after it; the engine reads the
    weights as they are now, so each training step's rollouts come from its current policy."""
    was_training = model.training
    model.eval()
    engine = LocalEngine(model, tokenizer, stop_ids, max_batch=max_batch, max_queue=1 << 30,
                         max_model_len=1 << 30)  # fmt: skip

    def generate(contexts: list[list[int]], max_new_tokens: int) -> list[tuple[list[int], bool]]:
        params = GenParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        results = []
        for d in collect(engine, [Request(c, params, final_only=True) for c in contexts]):
            if d.finish_reason == "error":
                raise RuntimeError(f"rollout generation failed: {d.error}")
            ids = list(d.token_ids or [])
            stopped = isinstance(d.stop_reason, int)  # ended by a stop token, which is the policy's too
            results.append((ids + [d.stop_reason], True) if stopped else (ids, False))
        return results

    try:
        yield generate
    finally:
        engine.shutdown()
        model.train(was_training)
