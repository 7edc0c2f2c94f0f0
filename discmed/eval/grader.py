"""The rubric grader: one criterion of one conversation, judged met / not met, with its receipt.

Two protocols, named in every grade line and every report:

- `healthbench`: HealthBench as published (openai/simple-evals, `healthbench_eval.py`). The
  grader template verbatim (prompts/healthbench_grader.txt, English, with its examples; its
  source and licence beside it), the conversation as `role: content` turns joined by blank
  lines with the roles HealthBench's criteria speak of (user / assistant, system turns kept),
  the reply graded as the last assistant turn, the criterion as `[points] text`; the grader
  called as HealthBench's sampler does (system "You are a helpful assistant.", temperature
  0.5, 2,048 tokens, free text) and its reply read as HealthBench reads it (a ```json fence
  around one JSON object whose `criteria_met` is a boolean). A reply that does not give a
  boolean is sampled again — HealthBench retries without end; here up to `attempts` times,
  each try on its own seed (so the call cache does not hand back the same unreadable reply),
  and a criterion still without a verdict is counted, never scored as not met.
- `discmed`: discmed's own Chinese grader (prompts/rubric_grader_zh.txt) for DISC's cases
  and rubrics written by `eval rubrics`: 病人 / 医生 labels, temperature 0, 128 tokens, the
  reply held to a JSON schema where the backend can, read leniently (`parse_grade`), asked
  again once with a short request.

A receipt is everything a reader needs to re-check a verdict: the grader (spec and identity,
which changes with the weights), the protocol, the rendered prompt's sha256 (re-rendered from
the line's conversation and criterion, it must match), the raw reply, the reasoning a
reasoning model gave apart from it, the parsed verdict, and every unreadable try before it.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, replace
from typing import Any

from discmed.eval.judge import load_prompt

HEALTHBENCH_SYSTEM = "You are a helpful assistant."  # simple-evals' OPENAI_SYSTEM_MESSAGE_API
HEALTHBENCH_TEMPLATE = "healthbench_grader.txt"
DISCMED_TEMPLATE = "rubric_grader_zh.txt"

# The grader's reply as a schema (GenParams.json_schema): a short reason, then the verdict.
# The reason is bounded so a small model cannot spend every token inside the string.
GRADE_SCHEMA = {
    "type": "object",
    "properties": {"explanation": {"type": "string", "maxLength": 200}, "criteria_met": {"type": "boolean"}},
    "required": ["explanation", "criteria_met"],
    "additionalProperties": False,
}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- reading a verdict -------------------------------------------------------------------

_BOOL = {"true": True, "false": False, "yes": True, "no": False, "是": True, "否": False,
         "满足": True, "不满足": False, "符合": True, "不符合": False}
# A statement of the verdict in prose: `criteria_met: true`, `是否满足：是`, and its negated keys
# (`criterion not met: yes`, `未满足：是`), whose value is the opposite verdict.
_MET_RE = re.compile(
    r"[\"']?(?:(?:criteria|criterion)[\s_]*(?P<neg>not[\s_]+|un)?met|(?P<neg2>not[\s_]+|un)?met"
    r"|是否满足|是否符合|(?P<neg3>未满足|不满足|未符合|不符合))[\"']?\s*[:：=]\s*[\"']?"
    r"(?P<value>true|false|yes|no|不满足|满足|不符合|符合|是|否)", re.IGNORECASE)


def parse_grade(text: str) -> bool | None:
    """`criteria_met` from a grader's reply, read leniently (the `discmed` protocol): a JSON
    object (in a code fence or not), or a `criteria_met: true` line, in English or Chinese;
    a negated key (`criterion not met: yes`) reads as the opposite. The reply's last
    statement wins (graders reason first and conclude last); None when it states none."""
    return parse_lenient(text)[0]


def parse_lenient(text: str) -> tuple[bool | None, str | None]:
    """(verdict, explanation) as `parse_grade` reads them."""
    if not text or not text.strip():
        return None, None
    norm = unicodedata.normalize("NFKC", text)
    statements: list[tuple[int, bool, str | None]] = []  # (where it ends, verdict, explanation)
    spans: list[tuple[int, int]] = []
    for m in re.finditer(r"\{[^{}]*\}", norm, re.DOTALL):
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            continue
        value = obj.get("criteria_met") if isinstance(obj, dict) else None
        if isinstance(value, str):
            value = _BOOL.get(value.strip().lower())
        if isinstance(value, bool):
            spans.append(m.span())
            why = obj.get("explanation")
            statements.append((m.end(), value, why if isinstance(why, str) else None))
    for m in _MET_RE.finditer(norm):
        if any(a <= m.start() < b for a, b in spans):
            continue  # inside a JSON object already read (its own key, or words in its explanation)
        value = _BOOL[m.group("value").lower()]
        if m.group("neg") or m.group("neg2") or m.group("neg3"):
            value = not value
        statements.append((m.end(), value, None))
    if not statements:
        return None, None
    _, value, why = max(statements, key=lambda s: s[0])
    return value, why


def parse_healthbench(text: str) -> tuple[bool | None, str | None]:
    """(verdict, explanation) as HealthBench reads a grader's reply: a leading ```json and a
    trailing ``` removed, the rest one JSON object whose `criteria_met` is true or false.
    Anything else is no verdict (HealthBench samples again)."""
    cleaned = re.sub(r"^```json\s*|\s*```$", "", (text or "").strip())
    try:
        obj = json.loads(cleaned)
    except json.JSONDecodeError:
        return None, None
    if not isinstance(obj, dict) or not isinstance(obj.get("criteria_met"), bool):
        return None, None
    why = obj.get("explanation")
    return obj["criteria_met"], why if isinstance(why, str) else None


# --- the protocols ----------------------------------------------------------------------


@dataclass(frozen=True)
class Protocol:
    """How a criterion is put to the grader and how its reply is read (module docstring)."""

    name: str  # "healthbench" | "discmed"
    max_new_tokens: int
    temperature: float
    constrained: bool  # the reply held to GRADE_SCHEMA where the backend can
    attempts: int  # calls at most per criterion before it is left without a verdict

    @property
    def template_file(self) -> str:
        return HEALTHBENCH_TEMPLATE if self.name == "healthbench" else DISCMED_TEMPLATE

    @property
    def template(self) -> str:
        return load_prompt(self.template_file)

    @property
    def system(self) -> str | None:
        return HEALTHBENCH_SYSTEM if self.name == "healthbench" else None

    def params(self) -> Any:
        from discmed.backend import GenParams

        return GenParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                         json_schema=GRADE_SCHEMA if self.constrained else None)

    def describe(self) -> dict[str, Any]:
        """What a grade line and a report say of the protocol."""
        return {"name": self.name, "template": self.template_file, "template_sha256": sha256(self.template),
                "system": self.system, "temperature": self.temperature, "max_new_tokens": self.max_new_tokens,
                "constrained": self.constrained, "attempts": self.attempts}

    def render_conversation(self, conversation: list[dict[str, str]]) -> str:
        if self.name == "healthbench":
            return "\n\n".join(f"{m['role']}: {m['content']}" for m in conversation)
        names = {"user": "病人", "assistant": "医生", "system": "系统"}
        return "\n\n".join(f"{names.get(m['role'], m['role'])}：{m['content']}" for m in conversation)

    def render_criterion(self, criterion: str, points: float) -> str:
        # HealthBench's RubricItem prints its points as Python prints the number (7, -8, 2.5).
        return f"[{points}] {criterion}" if self.name == "healthbench" else f"[{points:g}] {criterion}"

    def render(self, conversation: list[dict[str, str]], criterion: str, points: float) -> str:
        return self.render_item(conversation, self.render_criterion(criterion, points))

    def render_item(self, conversation: list[dict[str, str]], item: str) -> str:
        """The prompt with the rubric item as given (HealthBench's meta-evaluation rows carry it
        as one string)."""
        hb = self.name == "healthbench"
        return (self.template.replace("<<conversation>>" if hb else "{conversation}", self.render_conversation(conversation))
                .replace("<<rubric_item>>" if hb else "{criterion}", item))

    def messages(self, prompt: str) -> list[dict[str, str]]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + [{"role": "user", "content": prompt}]

    def parse(self, text: str) -> tuple[bool | None, str | None]:
        return parse_healthbench(text) if self.name == "healthbench" else parse_lenient(text)


def protocol(name: str, *, max_new_tokens: int | None = None, temperature: float | None = None,
             constrained: bool | None = None, attempts: int | None = None) -> Protocol:
    """A protocol with its published settings, each overridable (a report then says so)."""
    if name == "healthbench":
        defaults = {"max_new_tokens": 2048, "temperature": 0.5, "constrained": False, "attempts": 10}
    elif name == "discmed":
        defaults = {"max_new_tokens": 128, "temperature": 0.0, "constrained": True, "attempts": 2}
    else:
        raise ValueError(f"unknown grading protocol {name!r} (expected healthbench or discmed)")
    given = {"max_new_tokens": max_new_tokens, "temperature": temperature, "constrained": constrained,
             "attempts": attempts}
    settings = {k: defaults[k] if v is None else v for k, v in given.items()}
    if settings["attempts"] < 1:
        raise ValueError("a grader needs at least one attempt per criterion")
    return Protocol(name, **settings)


def protocol_from(description: dict[str, Any]) -> Protocol:
    """The protocol a grade line describes (its `protocol` field), to grade again the same way."""
    return Protocol(description["name"], description["max_new_tokens"], description["temperature"],
                    description["constrained"], description["attempts"])


# --- the conversation graded --------------------------------------------------------------


def graded_conversation(dialogue: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation a grader sees, in user / assistant / system roles, ending with the
    reply graded: the exact messages the model was asked (`prompt`, system turns included, as
    `eval rubric --model` keeps them) and its reply; else the DISC dialogue's turns
    (patient → user, doctor → assistant)."""
    conversation = dialogue["conversation"]
    prompt = dialogue.get("prompt")
    if isinstance(prompt, list) and prompt and conversation and conversation[-1]["role"] == "doctor":
        return [{"role": m["role"], "content": m["content"]} for m in prompt] + \
            [{"role": "assistant", "content": conversation[-1]["content"]}]
    role = {"patient": "user", "doctor": "assistant", "user": "user", "assistant": "assistant", "system": "system"}
    return [{"role": role[t["role"]], "content": t["content"]} for t in conversation]


# --- grading ------------------------------------------------------------------------------


def _try(reply: str, met: bool | None) -> dict[str, Any]:
    return {"reply": str(reply), "reasoning": getattr(reply, "reasoning", None),
            "finish_reason": getattr(reply, "finish_reason", None), "criteria_met": met}


async def grade_criterion(client: Any, proto: Protocol, conversation: list[dict[str, str]], criterion: Any,
                          params: Any = None) -> dict[str, Any]:
    """One criterion graded, with its receipt (module docstring)."""
    prompt = proto.render(conversation, criterion.criterion, criterion.points)
    return {**criterion.as_dict(), **await grade_prompt(client, proto, prompt, params)}


async def grade_prompt(client: Any, proto: Protocol, prompt: str, params: Any = None) -> dict[str, Any]:
    """A rendered grader prompt asked until a verdict (at most `proto.attempts` calls): the
    verdict and its receipt (`criteria_met`, `explanation`, `grade` — the raw reply —,
    `reasoning`, `finish_reason`, `prompt_sha256`, `asked`, and the unreadable `tries`)."""
    params = params or proto.params()
    messages = proto.messages(prompt)
    tries: list[dict[str, Any]] = []
    chosen: dict[str, Any] | None = None
    explanation = None
    for attempt in range(proto.attempts):
        if proto.name == "discmed" and attempt > 0:
            # discmed's protocol asks again with its reply shown and a short request.
            shown = tries[-1]["reply"] or "（空）"
            again = messages + [{"role": "assistant", "content": shown},
                                {"role": "user", "content": load_prompt("rubric_grader_retry.txt")}]
            reply = await client.chat(again, params)
        else:
            # HealthBench samples the same prompt again; a seed of its own per try keeps the
            # call cache (keyed by the parameters) from answering with the same reply.
            reply = await client.chat(messages, params if attempt == 0 else replace(params, seed=attempt))
        met, explanation = proto.parse(reply)
        tries.append(_try(reply, met))
        if met is not None:
            chosen = tries[-1]
            break
    if chosen is None:  # no verdict: keep the first reply that said anything, for the reader
        chosen = next((t for t in tries if t["reply"].strip()), tries[-1])
    return {"criteria_met": chosen["criteria_met"], "explanation": explanation,
            "grade": chosen["reply"], "reasoning": chosen["reasoning"], "finish_reason": chosen["finish_reason"],
            "prompt_sha256": sha256(prompt), "asked": len(tries),
            "tries": [t for t in tries if t is not chosen]}


async def grade_dialogue(client: Any, proto: Protocol, conversation: list[dict[str, str]], criteria: list[Any],
                         params: Any = None) -> list[dict[str, Any]]:
    """Every criterion of one conversation graded concurrently."""
    import asyncio

    return list(await asyncio.gather(*(grade_criterion(client, proto, conversation, c, params) for c in criteria)))
