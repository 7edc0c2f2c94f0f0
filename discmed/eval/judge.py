"""The judge: DISC's four-criterion rubric, a score parser that survives real judge output,
pairwise comparison with positions swapped, and agreement between two judges.

DISC-MedLLM had GPT-4 rate each consultation 1-5 on Proactivity, Accuracy, Helpfulness and
Linguistic Quality. Its released judgements (`gpt4_scores/<set>/result_<model>_<set>.jsonl`)
carry the exact prompt, so `render_prompt` rebuilds it byte for byte (`--rubric disc`, two
variants: CMB-clin, and CMD/CMID whose Proactivity text adds a clause for non-personal
questions). `--rubric zh` is discmed's Chinese rendering of the same rubric.

A judgement line is DISC's: `{"id", "model", "source", "scores", "prompt"}` where `scores` is
the judge's raw text (its answer: a reasoning model's thinking is kept apart), plus what DISC's
released lines lack: `"judge": {"spec", "identity"}` (the model spec as given and the backend's
identity) and `"receipt"` (the prompt's sha256, the reasoning, the finish reason, the parsed
scores, the calls made and any unreadable reply before; `discmed eval receipts` reads them). Parsing happens when scores are read (`parse_scores`), so a line whose
text could not be parsed stays on disk, is counted, and is never silently dropped.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from discmed.chat import write_jsonl

CRITERIA = ("Proactivity", "Accuracy", "Helpfulness", "Linguistic Quality")

# What the judge is asked to return where the backend can hold it to a schema (GenParams.
# json_schema): the four scores as integers 1–5, nothing else. parse_scores reads it like
# any other reply, so a backend that cannot constrain still gets its prose parsed.
SCORES_SCHEMA = {
    "type": "object",
    "properties": {c: {"type": "integer", "enum": [1, 2, 3, 4, 5]} for c in CRITERIA},
    "required": list(CRITERIA),
    "additionalProperties": False,
}

# Names judges actually use for each criterion (English, Chinese, common variants).
_ALIASES = {
    "Proactivity": ["proactivity", "proactiveness", "initiative", "主动性", "主动度", "主动"],
    "Accuracy": ["accuracy", "准确性", "准确度", "准确率", "准确"],
    "Helpfulness": ["helpfulness", "usefulness", "有用性", "帮助性", "实用性", "有帮助", "帮助度"],
    "Linguistic Quality": [
        "linguistic quality", "linguistics quality", "language quality", "linguistic",
        "语言质量", "语言表达", "语言流畅性", "语言",
    ],
}
_ALIAS_RE = re.compile(
    "|".join(
        f"(?P<c{i}>" + "|".join(re.escape(a) for a in sorted(names, key=len, reverse=True)) + ")"
        for i, names in enumerate(_ALIASES.values())
    ),
    re.IGNORECASE,
)
_CN_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
_NUM = r"(\d+(?:\.\d+)?)"
_NUM_CN = r"(\d+(?:\.\d+)?|[一二两三四五])"  # Chinese numerals only count as "四分"
# A score right after the criterion name ("Accuracy: 4", "| 4 |", "：4/5", "4分") wins; failing
# that, the first explicit score further along ("…，给4分", "score: 4", "8/10").
_LEAD_RE = re.compile(
    r"^[\s|:=\-–—>\"'(（)）\]]*(?:(?:score|rating|得分|评分|打分|分数|is|为|是|得|给)\s*[:=]?\s*)?"
    + _NUM
    + r"(?:\s*/\s*(\d+)|\s*out\s+of\s+(\d+))?(?![\d.]*\s*[%项个条天岁次周月年])",
    re.IGNORECASE,
)
_ANY_RE = re.compile(
    _NUM + r"\s*/\s*(\d+)|" + _NUM + r"\s*out\s+of\s+(\d+)|" + _NUM_CN + r"\s*分(?!析|数|别|钟|之)|"
    r"(?:score|rating|得分|评分|打分|分数|给分)\s*(?:is|为|是|[:=])?\s*" + _NUM,
    re.IGNORECASE,
)


def _number(token: str) -> float:
    return float(_CN_DIGITS[token]) if token in _CN_DIGITS else float(token)


def _normalize(text: str) -> str:
    # NFKC folds full-width colons, slashes and digits ("：", "／", "４") into ASCII; markdown
    # emphasis and code fences carry no scores, so they go.
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"```[a-zA-Z]*", "\n", text)
    return re.sub(r"[*_`#]+", "", text)


def _score_in(segment: str) -> float | None:
    m = _LEAD_RE.search(segment) or _ANY_RE.search(segment)
    if not m:
        return None
    # The first group that matched is the score, a following one (if any) the scale.
    present = [g for g in m.groups() if g is not None]
    value = _number(present[0])
    if len(present) > 1 and float(present[1]) not in (0.0, 5.0):
        value = value * 5.0 / float(present[1])  # "8/10" on a 5-point rubric is 4
    return value if 1.0 <= value <= 5.0 else None


def _table_scores(text: str) -> dict[str, float]:
    """Scores in a markdown table with the criteria as column headers and a row of numbers."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.count("|") < 3:
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        cols: dict[int, str] = {}
        for j, cell in enumerate(cells):
            m = _ALIAS_RE.search(cell)
            if m:
                cols[j] = CRITERIA[int(m.lastgroup[1:])]
        if len(set(cols.values())) < len(CRITERIA):
            continue
        for row in lines[i + 1 :]:
            values = [c.strip() for c in row.strip("|").split("|")]
            if all(set(v) <= set("-: ") for v in values):
                continue  # the |---|---| rule
            found = {name: _score_in(values[j]) for j, name in cols.items() if j < len(values)}
            return {k: v for k, v in found.items() if v is not None}
    return {}


def parse_scores(text: str) -> dict[str, float] | None:
    """Read the four rubric scores from a judge's reply; None when any of them is missing.

    Tolerates what real judges write: Chinese or English criterion names, full-width colons,
    markdown bold, code fences, "4/5" and "8/10", "4分", prose before and after, a markdown
    table, JSON, and a bare list of four numbers. A criterion named several times takes its
    last scored mention (judges often reason first and conclude last).
    """
    if not text or not text.strip():
        return None
    norm = _normalize(text)
    found: dict[str, float] = {}
    matches = list(_ALIAS_RE.finditer(norm))
    for k, m in enumerate(matches):
        name = CRITERIA[int(m.lastgroup[1:])]
        end = matches[k + 1].start() if k + 1 < len(matches) else len(norm)
        segment = norm[m.end() : end].split("\n", 1)[0]
        # The criterion's own paraphrase in brackets, e.g. "Accuracy (准确性): 4".
        segment = re.sub(r"^\s*[(（][^)）]{0,30}[)）]", "", segment)
        value = _score_in(segment)
        if value is not None:
            found[name] = value
    if len(found) < len(CRITERIA):
        found.update({k: v for k, v in _table_scores(norm).items() if k not in found})
    if len(found) < len(CRITERIA) and not matches:
        # "4\n5\n4\n5" or "4, 5, 4, 5": only when the reply is nothing but four scores.
        bare = re.fullmatch(r"[\s,，;；/|]*" + r"[\s,，;；/|]+".join([r"(\d(?:\.\d+)?)"] * 4) + r"[\s,，;；/|.。]*", norm)
        if bare:
            values = [float(v) for v in bare.groups()]
            if all(1.0 <= v <= 5.0 for v in values):
                found = dict(zip(CRITERIA, values, strict=True))
    return found if len(found) == len(CRITERIA) else None


# --- prompts ---------------------------------------------------------------------------


def load_prompt(name: str) -> str:
    """A prompt template shipped in discmed/eval/prompts/ (without the file's final newline)."""
    return resources.files("discmed.eval").joinpath("prompts", name).read_text(encoding="utf-8").rstrip("\n")


def render_conversation(conversation: list[dict[str, str]]) -> str:
    """DISC's transcript: one `role: content` per turn, roles `patient` / `doctor`."""
    return "\n".join(f"{turn['role']}: {turn['content']}" for turn in conversation)


def render_prompt(dialogue: dict[str, Any], rubric: str = "disc") -> str:
    """The judge prompt for one dialogue in DISC's format. `rubric`: "disc" or "zh"."""
    if rubric == "zh":
        template = load_prompt("judge_zh.txt")
    elif rubric == "disc":
        cmb = str(dialogue.get("source", "")).lower() == "cmb-clin"
        template = load_prompt("judge_disc_cmb-clin.txt" if cmb else "judge_disc_dialogue.txt")
    else:
        raise ValueError(f"unknown rubric {rubric!r} (expected 'disc' or 'zh')")
    return template.replace("{conversation}", render_conversation(dialogue["conversation"]))


def sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def receipt_try(reply: str, parsed: Any) -> dict[str, Any]:
    """One call's part of a verdict's receipt: the raw reply, the reasoning a reasoning model
    gave apart from it (never parsed), why generation ended, and what was read from it."""
    return {"reply": str(reply), "reasoning": getattr(reply, "reasoning", None),
            "finish_reason": getattr(reply, "finish_reason", None), "parsed": parsed}


def judgement_line(dialogue: dict[str, Any], scores: str, prompt: str) -> dict[str, Any]:
    """One output line in DISC's field order."""
    return {
        "id": dialogue["id"],
        "model": dialogue["model"],
        "source": dialogue["source"],
        "scores": scores,
        "prompt": prompt,
    }


# --- pairwise comparison ---------------------------------------------------------------

_VERDICT_RE = re.compile(r"(?:结论|verdict|winner|判断|答案)\s*[:：]?\s*(?:医生|doctor)?\s*(A|B|平局|tie|平手|相当)", re.I)


def parse_verdict(text: str) -> str | None:
    """'A', 'B' or 'tie' from a pairwise judge reply (its last stated verdict), else None."""
    hits = _VERDICT_RE.findall(unicodedata.normalize("NFKC", text or ""))
    if not hits:
        return None
    last = hits[-1].upper()
    return last if last in ("A", "B") else "tie"


def render_pairwise(first: dict[str, Any], second: dict[str, Any]) -> str:
    return (
        load_prompt("pairwise_zh.txt")
        .replace("{conversation_a}", render_conversation(first["conversation"]))
        .replace("{conversation_b}", render_conversation(second["conversation"]))
    )


def combine_verdicts(ab: str | None, ba: str | None) -> str | None:
    """Outcome for doctor X (shown first in `ab`, second in `ba`): 'x', 'y', 'tie', or None.

    Positions are swapped to cancel order bias: X wins only if it wins in both orders; one
    win and one tie leans to the winner; disagreement (each order prefers whoever came
    first, or second) is a tie; an unreadable verdict leaves the case undecided.
    """
    if ab is None or ba is None:
        return None
    x = {"A": 1, "B": -1, "tie": 0}[ab] + {"A": -1, "B": 1, "tie": 0}[ba]
    return "x" if x > 0 else "y" if x < 0 else "tie"


# --- agreement between two judges ------------------------------------------------------


@dataclass
class Agreement:
    criterion: str
    n: int
    exact: float  # share of items with the same score
    within_one: float  # share with scores at most one point apart
    kappa: float  # quadratic-weighted Cohen's kappa on the 1-5 scale
    spearman: float


def _weighted_kappa(a: list[int], b: list[int], k: int = 5) -> float:
    """Quadratic-weighted Cohen's kappa on the 1..k scale (scikit-learn's); two judges giving one
    and the same score throughout agree perfectly (1.0) rather than 0/0."""
    import warnings

    from sklearn.metrics import cohen_kappa_score

    if a == b:
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 for one constant judge: nan, reported as is
        return float(cohen_kappa_score(a, b, labels=list(range(1, k + 1)), weights="quadratic"))


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(set(a)) < 2 or len(set(b)) < 2:
        return math.nan  # undefined for a constant judge
    return float(spearmanr(a, b).statistic)


def agreement(pairs: Iterable[tuple[dict[str, float], dict[str, float]]]) -> list[Agreement]:
    """Per-criterion agreement (plus 'mean' of the four) between two judges' parsed scores."""
    pairs = list(pairs)
    out = []
    for name in [*CRITERIA, "mean"]:
        if name == "mean":
            a = [sum(p[0].values()) / 4 for p in pairs]
            b = [sum(p[1].values()) / 4 for p in pairs]
        else:
            a = [p[0][name] for p in pairs]
            b = [p[1][name] for p in pairs]
        n = len(a)
        if n == 0:
            out.append(Agreement(name, 0, math.nan, math.nan, math.nan, math.nan))
            continue
        ia = [min(5, max(1, round(x))) for x in a]
        ib = [min(5, max(1, round(x))) for x in b]
        out.append(
            Agreement(
                criterion=name,
                n=n,
                exact=sum(x == y for x, y in zip(a, b, strict=True)) / n,
                within_one=sum(abs(x - y) <= 1 for x, y in zip(a, b, strict=True)) / n,
                kappa=_weighted_kappa(ia, ib),
                spearman=_spearman(a, b),
            )
        )
    return out


# --- runs ------------------------------------------------------------------------------


def run_judge(dialogues: list[dict[str, Any]], judge: Any, out: str | Path, *, judge_spec: str,
              rubric: str = "disc", params: Any = None, concurrency: int = 8, cache: Any = None,
              progress: bool = True, json_output: bool = True) -> dict[str, Any]:
    """Judge every dialogue; write DISC-format judgement lines to `out` (JSONL).

    With `json_output` the judge is held to SCORES_SCHEMA where its backend can (constrained
    decoding, or the endpoint's structured outputs); without it, it writes free text as in
    DISC's own runs. A reply with no readable scores is asked again once, with the prompt, the
    unreadable reply and a short request for the four lines; if that fails too the line is
    written with the judge's raw text (so the file stays complete) and reported as unparsed.
    """
    from dataclasses import replace

    from discmed.backend import GenParams
    from discmed.jobs import JobRunner, job_outcome, run_cache

    out = Path(out)
    params = replace(params or GenParams(max_new_tokens=128), json_schema=SCORES_SCHEMA if json_output else None)
    runner = JobRunner(out.with_name(out.name + ".journal.sqlite"), concurrency=concurrency,
                       cache=run_cache(out, cache), progress=progress)
    try:
        runner.keep_settings({"judge": judge_spec, "rubric": rubric, "params": vars(params)})
        client = runner.client(judge, name="judge")
        retry_prompt = load_prompt("judge_retry.txt")

        async def work(key: str, dialogue: dict[str, Any]) -> dict:
            prompt = render_prompt(dialogue, rubric)
            messages = [{"role": "user", "content": prompt}]
            reply = await client.chat(messages, params)
            asked, tries = 1, []
            if parse_scores(reply) is None:
                again = messages + [{"role": "assistant", "content": reply}, {"role": "user", "content": retry_prompt}]
                second = await client.chat(again, params)
                asked = 2
                if parse_scores(second) is not None or not reply.strip():
                    reply, second = second, reply
                tries = [receipt_try(second, parse_scores(second))]
            line = judgement_line(dialogue, reply, prompt)
            line["receipt"] = {**receipt_try(reply, parse_scores(reply)), "prompt_sha256": sha256(prompt),
                               "asked": asked, "tries": tries}
            return {"line": line, "asked": asked, "parsed": parse_scores(reply) is not None}

        items = [(f"{d['model']}/{d['source']}/{d['id']}", d) for d in dialogues]
        wanted = {k for k, _ in items}
        stats = runner.run(items, work, desc="judge")
        results = [r for k, r in runner.results() if k in wanted]
        failures = [{"key": k, "error": e} for k, e in runner.failures() if k in wanted]
        failed_file = out.with_name(out.stem + ".failed.jsonl")
        runner.write_failures(failed_file, lambda k, d: {"model": d["model"], "source": d["source"], "id": d["id"]})
    finally:
        runner.close()
    # Each line names its judge (the spec as given and the backend's identity, which changes with
    # the weights), so a table that puts judgements side by side can tell who wrote them.
    who = {"spec": judge_spec, "identity": str(judge.identity)}
    write_jsonl([{**{k: v for k, v in r["line"].items() if k != "receipt"}, "judge": who,
                  **({"receipt": r["line"]["receipt"]} if "receipt" in r["line"] else {})} for r in results], out)
    unparsed = [f"{r['line']['model']}/{r['line']['source']}/{r['line']['id']}" for r in results if not r["parsed"]]
    return {"out": str(out), "judge": judge_spec, "rubric": rubric, "dialogues": len(dialogues),
            "judged": len(results), "parsed": len(results) - len(unparsed), "unparsed": len(unparsed),
            "unparsed_ids": unparsed[:50], "asked_again": sum(r["asked"] == 2 for r in results),
            "failed": len(failures), "failures": failures[:20], "resumed": stats["skipped"],
            "calls": stats["calls"], "cache_hits": stats["cache_hits"], "prompt_tokens": stats["prompt_tokens"],
            "completion_tokens": stats["completion_tokens"], "wall_s": stats["wall_s"], "journal": stats["journal"],
            **job_outcome(stats, failed_file)}


def run_pairwise(first: list[dict[str, Any]], second: list[dict[str, Any]], judge: Any, out: str | Path, *,
                 judge_spec: str, params: Any = None, concurrency: int = 8, cache: Any = None,
                 progress: bool = True) -> dict[str, Any]:
    """Compare two doctors on the cases both consulted, each case judged in both orders.

    Writes one JSON line per case (`id`, `source`, `x`, `y`, `ab`, `ba`, `winner`, `judge`) to `out`
    and returns wins, ties, undecided cases and how often the verdict survived the swap.
    """
    from discmed.backend import GenParams
    from discmed.jobs import JobRunner, job_outcome, run_cache

    out = Path(out)
    params = params or GenParams(max_new_tokens=256)
    y_by_case = {(d["source"], str(d["id"])): d for d in second}
    pairs = [(x, y_by_case[(x["source"], str(x["id"]))]) for x in first if (x["source"], str(x["id"])) in y_by_case]
    if not pairs:
        raise ValueError("the two dialogue files share no (source, id) case to compare")
    model_x, model_y = pairs[0][0]["model"], pairs[0][1]["model"]
    runner = JobRunner(out.with_name(out.name + ".journal.sqlite"), concurrency=concurrency,
                       cache=run_cache(out, cache), progress=progress)
    try:
        runner.keep_settings({"judge": judge_spec, "x": model_x, "y": model_y, "params": vars(params)})
        client = runner.client(judge, name="judge")

        async def work(key: str, pair: tuple[dict, dict]) -> dict:
            x, y = pair
            prompts = [render_pairwise(x, y), render_pairwise(y, x)]
            ab_reply = await client.chat([{"role": "user", "content": prompts[0]}], params)
            ba_reply = await client.chat([{"role": "user", "content": prompts[1]}], params)
            ab, ba = parse_verdict(ab_reply), parse_verdict(ba_reply)
            outcome = combine_verdicts(ab, ba)
            winner = {"x": x["model"], "y": y["model"], "tie": "tie", None: None}[outcome]
            return {"id": x["id"], "source": x["source"], "x": x["model"], "y": y["model"], "ab": ab, "ba": ba,
                    "outcome": outcome, "winner": winner, "replies": [ab_reply, ba_reply],
                    "receipts": [{**receipt_try(r, v), "prompt_sha256": sha256(p), "order": o}
                                 for r, v, p, o in ((ab_reply, ab, prompts[0], "x first"),
                                                    (ba_reply, ba, prompts[1], "y first"))]}

        stats = runner.run([(f"{x['source']}/{x['id']}", (x, y)) for x, y in pairs], work, desc="pairwise")
        wanted = {f"{x['source']}/{x['id']}" for x, _ in pairs}
        results = [r for k, r in runner.results() if k in wanted]
        failed_file = out.with_name(out.stem + ".failed.jsonl")
        runner.write_failures(failed_file, lambda k, pair: {"source": pair[0]["source"], "id": pair[0]["id"]})
    finally:
        runner.close()
    write_jsonl([{**r, "judge": {"spec": judge_spec, "identity": str(judge.identity)}} for r in results], out)
    decided = [r for r in results if r["ab"] is not None and r["ba"] is not None]
    # Consistent: the same doctor (or a tie) in both orders. First-position rate: how often a
    # single verdict picked whichever dialogue was shown first — 0.5 for an unbiased judge.
    consistent = sum(combine_verdicts(r["ab"], r["ba"]) != "tie" or r["ab"] == r["ba"] == "tie" for r in decided)
    singles = [v for r in results for v in (r["ab"], r["ba"]) if v in ("A", "B")]
    return {"out": str(out), "judge": judge_spec, "x": model_x, "y": model_y, "cases": len(pairs),
            "x_wins": sum(r["outcome"] == "x" for r in results), "y_wins": sum(r["outcome"] == "y" for r in results),
            "ties": sum(r["outcome"] == "tie" for r in results), "undecided": len(results) - len(decided),
            "consistent": round(consistent / len(decided), 4) if decided else None,
            "first_position_rate": round(singles.count("A") / len(singles), 4) if singles else None,
            "calls": stats["calls"], "cache_hits": stats["cache_hits"], "wall_s": stats["wall_s"],
            **job_outcome(stats, failed_file)}
