"""Receipts: every verdict of a run with what a reader needs to re-check it.

A rubric run's grades.jsonl, an `eval judge` judgement file and an `eval judge --pairwise` file
each keep, per verdict, the grader (spec and identity), the rendered prompt's sha256, the raw
reply, the reasoning a reasoning model gave apart from it, and the parsed result. `rows` flattens
them into one row per verdict; `verify` re-renders each rubric prompt from the line's own
conversation and criterion with the protocol the line names (and hashes a judge line's stored
prompt), so a receipt whose prompt was not the one graded — an edited file, a changed template
— is found. Lines written before receipts existed are listed as not checkable, not as wrong.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from discmed.chat import DataError, iter_jsonl


def run_file(run: str | Path) -> Path:
    """The file of verdicts a run names: a rubric run folder's grades.jsonl (a rubric-meta
    folder's meta_grades.jsonl), or the file itself."""
    run = Path(run)
    if run.is_dir():
        for name in ("grades.jsonl", "meta_grades.jsonl"):
            if (run / name).is_file():
                return run / name
        raise ValueError(f"{run} holds no grades.jsonl (give a rubric run folder, a grades file or a judgement file)")
    if not run.is_file():
        raise ValueError(f"{run} does not exist")
    return run


def kind_of(record: dict[str, Any]) -> str:
    if "grades" in record:
        return "rubric"
    if "grader_label" in record and "grade" in record:
        return "meta"
    if "outcome" in record and "ab" in record:
        return "pairwise"
    if "scores" in record:
        return "judge"
    return "unknown"


def _render(line: dict[str, Any], grade: dict[str, Any]) -> str | None:
    from discmed.eval.grader import protocol_from

    if not isinstance(line.get("protocol"), dict) or not isinstance(line.get("conversation"), list):
        return None
    return protocol_from(line["protocol"]).render(line["conversation"], grade["criterion"], grade["points"])


def rows(path: str | Path) -> list[dict[str, Any]]:
    """One row per verdict in the file, with `verified` True (the prompt re-rendered from the line
    hashes to the receipt's), False (it does not) or None (nothing to re-check it with)."""
    from discmed.eval.grader import protocol_from, sha256

    path = run_file(path)
    out: list[dict[str, Any]] = []

    def add(record: Any, n: int) -> None:
        if not isinstance(record, dict):
            raise DataError(path, n, "record", "expected a JSON object")
        kind = kind_of(record)
        judge = record.get("grader") or record.get("judge") or {}
        base = {"kind": kind, "line": n, "model": record.get("model") or f"{record.get('x')} vs {record.get('y')}",
                "id": str(record.get("id")), "repeat": record.get("repeat"), "grader": judge.get("spec"),
                "identity": judge.get("identity")}
        if kind == "rubric":
            proto = (record.get("protocol") or {}).get("name")
            for g in record["grades"]:
                prompt = _render(record, g)
                stored = g.get("prompt_sha256")
                out.append({**base, "protocol": proto, "item": f"[{g['points']}] {g['criterion']}",
                            "prompt_sha256": stored, "prompt": prompt,
                            "verified": None if prompt is None or stored is None else sha256(prompt) == stored,
                            "verdict": g.get("criteria_met"), "explanation": g.get("explanation"),
                            "reply": g.get("grade"), "reasoning": g.get("reasoning"),
                            "finish_reason": g.get("finish_reason"), "asked": g.get("asked"),
                            "tries": g.get("tries") or []})
        elif kind == "meta":
            g = record["grade"]
            prompt = None
            if isinstance(record.get("protocol"), dict) and isinstance(record.get("conversation"), list):
                prompt = protocol_from(record["protocol"]).render_item(record["conversation"], record["rubric"])
            stored = g.get("prompt_sha256")
            out.append({**base, "model": record.get("category"), "id": str(record.get("completion_id")),
                        "protocol": record["protocol"].get("name"), "item": record.get("rubric", ""),
                        "prompt_sha256": stored, "prompt": prompt,
                        "verified": None if prompt is None or stored is None else sha256(prompt) == stored,
                        "verdict": g.get("criteria_met"), "explanation": g.get("explanation"), "reply": g.get("grade"),
                        "reasoning": g.get("reasoning"), "finish_reason": g.get("finish_reason"),
                        "asked": g.get("asked"), "tries": g.get("tries") or [],
                        "physicians": record.get("binary_labels")})
        elif kind == "judge":
            r = record.get("receipt") or {}
            stored, prompt = r.get("prompt_sha256"), record.get("prompt")
            out.append({**base, "protocol": "disc-judge", "item": "4 criteria, 1-5", "prompt_sha256": stored,
                        "prompt": prompt,
                        "verified": None if stored is None or not isinstance(prompt, str) else sha256(prompt) == stored,
                        "verdict": r.get("parsed"), "explanation": None, "reply": record.get("scores"),
                        "reasoning": r.get("reasoning"), "finish_reason": r.get("finish_reason"),
                        "asked": r.get("asked"), "tries": r.get("tries") or []})
        elif kind == "pairwise":
            for i, r in enumerate(record.get("receipts") or [{}, {}]):
                out.append({**base, "protocol": "pairwise", "item": r.get("order") or ("x first", "y first")[i],
                            "prompt_sha256": r.get("prompt_sha256"), "prompt": None, "verified": None,
                            "verdict": (record.get("ab"), record.get("ba"))[i], "explanation": None,
                            "reply": r.get("reply", (record.get("replies") or [None, None])[i]),
                            "reasoning": r.get("reasoning"), "finish_reason": r.get("finish_reason"),
                            "asked": 1, "tries": []})
        else:
            raise DataError(path, n, "record", "not a grade, judgement or pairwise line")

    for _ in iter_jsonl(path, lambda obj, n: add(obj, n)):
        pass
    return out


def summary(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts a reader checks first: verdicts, who gave them, how many verify."""
    return {"verdicts": len(items), "graders": sorted({f"{r['grader']} ({r['identity']})" for r in items}),
            "protocols": sorted({str(r["protocol"]) for r in items}),
            "verified": sum(r["verified"] is True for r in items),
            "mismatched": [f"line {r['line']}: {r['model']} {r['id']} {r['item'][:40]}" for r in items
                           if r["verified"] is False],
            "not_checkable": sum(r["verified"] is None for r in items),
            "without_verdict": sum(r["verdict"] is None for r in items),
            "with_reasoning": sum(bool(r["reasoning"]) for r in items),
            "asked_again": sum((r["asked"] or 1) > 1 for r in items)}


def export(items: list[dict[str, Any]], path: str | Path) -> None:
    """All rows to a .jsonl or .csv file (the CSV leaves out each row's prompt and earlier tries)."""
    from discmed.chat import atomic_write_text

    path = Path(path)
    if path.suffix == ".csv":
        buf = io.StringIO()
        fields = [k for k in items[0] if k not in ("prompt", "tries")] if items else []
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for r in items:
            writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v
                             for k, v in r.items()})
        atomic_write_text(path, buf.getvalue())
    elif path.suffix == ".jsonl":
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items))
    else:
        raise ValueError(f"{path}: export to a .jsonl or .csv file")


def table(items: list[dict[str, Any]], width: int = 60) -> str:
    """A Markdown table of the rows, replies cut to `width` characters."""
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")[:width] if v is not None else "—"

    out = ["| **line** | **model** | **id** | **item** | **verdict** | **grader** | **prompt** | **reply** "
           "| **reasoning** |", "|---|---|---|---|---|---|---|---|---|"]
    for r in items:
        check = {True: "verified", False: "MISMATCH", None: "—"}[r["verified"]]
        sha = (r["prompt_sha256"] or "")[:12]
        out.append(f"| {r['line']} | {cell(r['model'])} | {cell(r['id'])}{'' if r['repeat'] is None else '#' + str(r['repeat'])} "
                   f"| {cell(r['item'])} | {cell(r['verdict'])} | {cell(r['grader'])} | {sha} {check} "
                   f"| {cell(r['reply'])} | {cell(r['reasoning'])} |")
    return "\n".join(out)
