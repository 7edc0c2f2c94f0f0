"""Exam multiple-choice evaluation: DISC-style prompts, two scorers, resumable runs.

    discmed eval mcq --model tiny --task cmmlu --data-dir ../shared/data/cmmlu --shots 0

`logprob` (local backends, and endpoints that echo prompt logprobs: discmed serve, vLLM)
reads the log-probability of each option after the prompt — one forward pass per question
locally, lm-evaluation-harness's `multiple_choice` with `target_delimiter` "" — and picks the
largest. `generate` (any backend, APIs included) lets
the model answer and extracts the letters (`extract.parse_choice`); replies that commit to no
option count wrong and are listed.

A run folder holds `run.json` (the settings), `answers.jsonl` (one line per finished
question, appended as batches finish: the resume journal), and at the end `results.json`
(summary plus every question's prompt, output, extracted answer and verdict) and `table.md`.
The summary gives each subset's accuracy with lm-eval's standard error and a bootstrap
interval, its chance line, and the letters the model answered: a model that answers "A" to
nearly everything scores whatever share of keys is "A", and the table flags it.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from pathlib import Path

from discmed.backend import GenParams
from discmed.chat import atomic_write_text, read_json
from discmed.eval.extract import parse_choice
from discmed.eval.loaders import Question, Task
from discmed.eval.mcq_report import ONE_LETTER, bootstrap_ci, chance, letter_counts, render_table, stderr

KINDS = {"zh": ("单项选择题", "多项选择题"), "en": ("single-answer questions", "multiple-answer questions")}


# ---------------------------------------------------------------- prompts


def format_question(q: Question, task: Task, with_answer: bool = False) -> str:
    """Question, lettered options, then the answer cue (`答案：`), as DISC and CMMLU write it."""
    text = q.question + "\n" + "".join(f"{k}. {v}\n" for k, v in q.options.items()) + task.answer_prompt
    return text + task.target_delimiter + q.answer if with_answer else text


def pick_shots(q: Question, dev: list[Question], k: int) -> list[Question]:
    """The first k dev questions of q's subset, of q's kind (single or multiple answer) when
    there are enough of them — lm_eval's `first_n` sampler, so both harnesses see the same shots."""
    if k == 0:
        return []
    same = [d for d in dev if d.subset == q.subset]
    kind = [d for d in same if d.multi == q.multi]
    chosen = kind if len(kind) >= k else same
    if len(chosen) < k:
        raise ValueError(f"subset {q.subset!r} has {len(chosen)} dev questions, fewer than --shots {k}")
    return chosen[:k]


def build_prompt(q: Question, task: Task, shots: list[Question]) -> str:
    """Description header, k answered examples each followed by a blank line, then the question."""
    kinds = KINDS.get(task.language, KINDS["zh"])
    header = task.description.format(subject=task.subsets.get(q.subset, q.subset), kind=kinds[q.multi])
    return header + "".join(format_question(s, task, True) + "\n\n" for s in shots) + format_question(q, task)


def choice_strings(q: Question, task: Task) -> list[str]:
    """What the logprob scorer compares: each letter, or for a multiple-answer question every
    non-empty letter set ("A", "AB", …, "ABCDE": 31 for five options) — the set is the answer."""
    letters = list(q.options)
    if not q.multi:
        combos = letters
    else:
        combos = ["".join(c) for n in range(1, len(letters) + 1) for c in itertools.combinations(letters, n)]
    return [task.target_delimiter + c for c in combos]


# ---------------------------------------------------------------- scorers


def _batches(items: list[tuple[Question, str]], batch_size: int, key) -> list[list[tuple[Question, str]]]:
    # Group by key (questions sharing one choice list), longest prompts first so a batch
    # that does not fit in memory fails at once, then cut into batches of similar length.
    # A batch is handed whole to the backend, which pads it once.
    groups: dict = {}
    for it in items:
        groups.setdefault(key(it[0]), []).append(it)
    out = []
    for group in groups.values():
        group.sort(key=lambda it: -len(it[1]))
        out += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    return out


def score_logprob(backend, batch: list[tuple[Question, str]], task: Task) -> list[dict]:
    """Records for one batch whose questions share a choice list."""
    choices = choice_strings(batch[0][0], task)
    try:
        scores = backend.choice_logprobs([p for _, p in batch], choices)
    except NotImplementedError as e:
        raise ValueError(f"--mode logprob: {e}") from None  # the backend says why and what to use
    out = []
    for (q, prompt), lps in zip(batch, scores, strict=True):
        best = max(range(len(choices)), key=lambda i: lps[i])
        pred = choices[best][len(task.target_delimiter) :]
        out.append(
            _record(
                q,
                prompt,
                pred,
                logprobs={c[len(task.target_delimiter) :]: lp for c, lp in zip(choices, lps, strict=True)},
            )
        )
    return out


def score_generate(backend, batch: list[tuple[Question, str]], max_new_tokens: int) -> list[dict]:
    params = GenParams(max_new_tokens=max_new_tokens, temperature=0.0)
    replies = backend.chat([[{"role": "user", "content": p}] for _, p in batch], params)
    return [
        _record(q, p, parse_choice(r, q.options, q.multi), output=r)
        for (q, p), r in zip(batch, replies, strict=True)
    ]


def _record(q: Question, prompt: str, extracted: str | None, **extra) -> dict:
    verdict = "unparseable" if extracted is None else ("correct" if extracted == q.answer else "wrong")
    return {
        "id": q.id,
        "subset": q.subset,
        "qtype": q.qtype,
        "multi": q.multi,
        "k": len(q.options),  # options offered: the chance line is 1/k (1/(2^k - 1) for a letter set)
        "prompt": prompt,
        **extra,
        "extracted": extracted,
        "answer": q.answer,
        "verdict": verdict,
    }


# ---------------------------------------------------------------- the run


def read_journal(path: Path) -> dict[str, dict]:
    """Finished questions by id. A last line cut off by an interrupt is dropped (and cut from
    the file, so appending goes on from a clean line end); its question is simply redone."""
    if not path.exists():
        return {}
    raw = path.read_bytes()
    keep = raw[: raw.rfind(b"\n") + 1]
    if len(keep) != len(raw):
        with path.open("r+b") as f:
            f.truncate(len(keep))
    done = {}
    for n, line in enumerate(keep.decode("utf-8").splitlines(), 1):
        if line.strip():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}:{n}: journal line is not JSON ({e.msg}); remove it to go on"
                ) from None
            done[rec["id"]] = rec
    return done


def summarize(records: list[dict], settings: dict, order: list[str], available: dict[str, int] | None = None) -> dict:
    """Per-subset accuracy with lm-eval's standard error and a bootstrap interval, the chance
    line, and which letters the model answered; `available`: each subset's question count
    before any --limit (the N of "n of N").

    The average is the unweighted mean of subsets, as DISC reports it; its standard error is
    that of an unweighted mean of independent subsets, sqrt(sum se_i^2) / m. `micro` is the
    question-weighted accuracy, its standard error pooled across questions, sqrt(p(1-p)/(N-1)).
    """
    available = available or {}
    subsets = {}
    for s in order:
        rs = [r for r in records if r["subset"] == s]
        if not rs:
            continue
        ok = [r["verdict"] == "correct" for r in rs]
        subsets[s] = {
            "n": len(rs),
            "N": max(available.get(s, 0), len(rs)),
            "correct": sum(ok),
            "accuracy": sum(ok) / len(rs),
            "stderr": stderr(sum(ok) / len(rs), len(rs)),
            "ci95": list(bootstrap_ci(ok)),
            "chance": chance(rs),
            "predictions": letter_counts(r["extracted"] for r in rs),
            "answers": letter_counts(r["answer"] for r in rs),
            "unparseable": sum(r["verdict"] == "unparseable" for r in rs),
        }
    figs = list(subsets.values())
    accs = [v["accuracy"] for v in figs]
    errs = [v["stderr"] for v in figs]
    chances = [v["chance"] for v in figs]
    micro = sum(r["verdict"] == "correct" for r in records) / len(records) if records else float("nan")
    predictions = letter_counts(r["extracted"] for r in records)
    top = max(predictions.items(), key=lambda kv: kv[1], default=(None, 0))
    return {
        **settings,
        "n": len(records),
        "subsets": subsets,
        "average": sum(accs) / len(accs) if accs else float("nan"),
        "average_stderr": (sum(e * e for e in errs) ** 0.5 / len(errs)) if errs and None not in errs else None,
        "micro": micro,
        "micro_stderr": stderr(micro, len(records)) if records else None,
        "chance": sum(chances) / len(chances) if chances and None not in chances else None,
        "predictions": predictions,
        "top_prediction": {"letter": top[0], "count": top[1], "share": top[1] / len(records) if records else 0.0},
        "one_letter": bool(records) and top[1] / len(records) > ONE_LETTER,
        "unparseable": [r["id"] for r in records if r["verdict"] == "unparseable"],
    }


def run_mcq(
    backend,
    task: Task,
    questions: list[Question],
    out_dir: str | Path,
    *,
    settings: dict,
    dev: list[Question] | None = None,
    shots: int = 0,
    mode: str = "logprob",
    batch_size: int = 16,
    max_new_tokens: int = 64,
    progress: bool = True,
    available: dict[str, int] | None = None,
) -> dict:
    """Score `questions`, resuming from `out_dir`'s journal; returns the summary. `available`:
    each subset's question count before a --limit cut it (else the questions given).

    `settings` (model, task, mode, shots … as the user gave them) is stored in run.json with
    the backend's identity; a folder holding a run with other settings is refused rather than
    mixed into, and one whose answers came from other weights (the same folder retrained, say)
    is started anew, its old answers kept beside and said so on stderr.
    """
    from tqdm import tqdm

    if mode not in ("logprob", "generate"):
        raise ValueError(f"--mode must be logprob or generate, not {mode!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_file = out / "run.json"
    journal = out / "answers.jsonl"
    identity = str(backend.identity)
    if run_file.exists():
        before = read_json(run_file)
        was = before.pop("model_identity", None)
        if before != settings:
            diff = [k for k in settings.keys() | before.keys() if before.get(k) != settings.get(k)]
            raise ValueError(
                f"{out} holds a run with other settings ({', '.join(sorted(diff))}); "
                "use another --out or delete the folder"
            )
        if was != identity and journal.exists():
            stale = journal.with_name(f"{journal.name}.{time.strftime('%Y%m%d-%H%M%S')}.stale")
            os.replace(journal, stale)
            print(f"discmed: {out} holds answers of {was or 'a model it did not record'}, not {identity}: "
                  f"starting a new run (the old answers are {stale})", file=sys.stderr)
    atomic_write_text(run_file, json.dumps({**settings, "model_identity": identity}, ensure_ascii=False, indent=1))

    done = read_journal(journal)
    todo = [
        (q, build_prompt(q, task, pick_shots(q, dev or [], shots))) for q in questions if q.id not in done
    ]
    start = time.perf_counter()
    if mode == "logprob":
        # Per subset too: a batch then shares its header and shots, which the backend can run once.
        batches = _batches(todo, batch_size, key=lambda q: (tuple(q.options), q.multi, q.subset))
    else:
        batches = _batches(todo, batch_size, key=lambda q: 0)
    bar = tqdm(
        total=len(questions),
        initial=len(questions) - len(todo),
        desc=f"{task.name} {mode}",
        unit="q",
        file=sys.stderr,
        disable=not progress,
    )
    with journal.open("a", encoding="utf-8") as f:
        for batch in batches:
            recs = (
                score_logprob(backend, batch, task)
                if mode == "logprob"
                else score_generate(backend, batch, max_new_tokens)
            )
            for r in recs:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
                done[r["id"]] = r
            f.flush()
            bar.update(len(recs))
    bar.close()

    records = [done[q.id] for q in questions]
    order = list(dict.fromkeys(q.subset for q in questions))
    named = {
        "task": task.name,
        "model": getattr(backend, "name", "model"),
        **settings,
        "model_identity": identity,
        "mode": mode,
        "shots": shots,
    }
    summary = summarize(records, named, order, available)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    summary["resumed"] = len(questions) - len(todo)
    atomic_write_text(
        out / "results.json", json.dumps({**summary, "questions": records}, ensure_ascii=False, indent=1)
    )
    atomic_write_text(out / "table.md", render_table([summary]))
    summary["out"] = str(out)
    return summary
