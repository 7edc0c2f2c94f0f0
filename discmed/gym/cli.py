"""`discmed gym build|check` and `discmed eval gym`, added by `register`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from discmed.errors import guard
from discmed.jobs import raise_for_failures

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on the last line")]


def register(gym_app: typer.Typer, eval_app: typer.Typer) -> None:
    @gym_app.command("build")
    @guard
    def build(
        cases: Annotated[str, typer.Option("--cases", help="cmb-clin, cmd, cmid, or a DISC samples file")],
        teacher: Annotated[str, typer.Option("--teacher", help="The model that writes the ledgers (a model spec)")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Ledger JSONL to write (rejects beside it)")],
        samples: Annotated[Path | None, typer.Option("--samples", help="DISC's eval/samples folder "
                                                     "(else $DISCMED_EVAL_SAMPLES)")] = None,
        reference: Annotated[Path | None, typer.Option("--reference", help="CMB-Clin's release (CMB-Clin-v0.json): "
                                                       "the case's answers, to check the diagnosis against")] = None,
        limit: Annotated[int | None, typer.Option("--limit", help="Only the first N cases")] = None,
        concurrency: Annotated[int, typer.Option("--concurrency", help="Cases written at once")] = 8,
        max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Longest teacher reply, in tokens")] = 2048,
        cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse identical teacher calls from the "
                                            "shared call cache")] = True,
        as_json: JsonOpt = False,
    ) -> None:
        """Turn real cases into ledgers with a teacher; check each by code; keep rejects with reasons."""
        from discmed.backend import GenParams
        from discmed.gym.build import load_build_cases, run_build
        from discmed.jobs import backend_for

        items = load_build_cases(cases, samples, reference)[:limit] if limit else load_build_cases(cases, samples, reference)
        s = run_build(items, backend_for(teacher), out, teacher_spec=teacher,
                      params=GenParams(max_new_tokens=max_new_tokens), cache="shared" if cache else "none", concurrency=concurrency,
                      progress=not as_json)
        typer.echo(f"gym build: {s['written']} of {s['cases']} ledgers → {out} ({s['rejected']} rejected: "
                   f"{s['reject_reasons'] or 'none'}; {s['failed']} failed)")
        raise_for_failures(s, what="cases")
        if as_json:
            typer.echo(json.dumps(s, ensure_ascii=False))

    @gym_app.command("warmup")
    @guard
    def warmup(
        ledgers: Annotated[Path, typer.Option("--ledgers", help="The training ledgers (JSONL); never the held-out ones")],
        out: Annotated[Path, typer.Option("--out", "-o", help="SFT JSONL to write (DISC's conversation format)")],
        per_ledger: Annotated[int, typer.Option("--per-ledger", help="Consultations per ledger")] = 12,
        seed: Annotated[int, typer.Option("--seed", help="The random doctor's seed")] = 0,
        as_json: JsonOpt = False,
    ) -> None:
        """SFT data that teaches a doctor the training ledgers' action space (a random doctor against
        the rule-based patient), before GRPO on the gym teaches it which actions pay."""
        from discmed.chat import atomic_write_text
        from discmed.gym.ledger import read_ledgers
        from discmed.gym.warmup import warmup_conversations

        found = read_ledgers(ledgers)
        rows = warmup_conversations(found, per_ledger=per_ledger, seed=seed)
        atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        typer.echo(f"gym warmup: {len(rows)} consultations of {len(found)} ledgers → {out}")
        if as_json:
            typer.echo(json.dumps({"out": str(out), "ledgers": len(found), "conversations": len(rows)}))

    @gym_app.command("check")
    @guard
    def check(
        ledgers: Annotated[Path, typer.Argument(help="Ledger JSONL")],
        as_json: JsonOpt = False,
    ) -> None:
        """Check a ledger file: the schema (file:line: field on the first bad line) and each ledger's rules."""
        from discmed.gym.ledger import check_ledger, read_ledgers

        found = read_ledgers(ledgers)
        problems = {led.id: check_ledger(led) for led in found}
        bad = {k: v for k, v in problems.items() if v}
        for k, v in bad.items():
            typer.echo(f"{k}: {'; '.join(v)}", err=True)
        typer.echo(f"{len(found)} ledgers, {len(bad)} with problems")
        if as_json:
            typer.echo(json.dumps({"ledgers": len(found), "problems": bad}, ensure_ascii=False))
        if bad:
            raise typer.Exit(2)

    @eval_app.command("gym")
    @guard
    def gym(
        doctor: Annotated[list[str], typer.Option("--doctor", help="Doctor model spec, or scripted:ask-all | "
                                                  "scripted:advise-now (repeatable)")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Folder for episodes.jsonl, report.md, scores.json")],
        ledgers: Annotated[Path | None, typer.Option("--ledgers", help="Ledger JSONL (default: the shipped "
                                                     "hand-checked set)")] = None,
        patient: Annotated[str, typer.Option("--patient", help="rule (no model call) or a model spec (the LLM "
                                             "patient, checked)")] = "rule",
        repeats: Annotated[int, typer.Option("--repeats", help="Episodes per ledger and doctor")] = 1,
        max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Longest doctor turn, in tokens")] = 96,
        temperature: Annotated[float, typer.Option("--temperature", help="The doctor's sampling temperature "
                                                   "(0: greedy)")] = 0.0,
        concurrency: Annotated[int, typer.Option("--concurrency", help="Episodes in flight at once")] = 8,
        system: Annotated[str | None, typer.Option("--system", help="The model doctors' system message (a "
                                                   "model trained with a doctor_system plays with it)")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Consultations against checked patients, scored from the ledgers (no model judge)."""
        from discmed.gym import SHIPPED
        from discmed.gym.ledger import read_ledgers
        from discmed.gym.run import run_gym

        found = read_ledgers(ledgers or SHIPPED)
        s = run_gym(found, doctor, patient, out, repeats=repeats, max_new_tokens=max_new_tokens,
                    temperature=temperature, concurrency=concurrency, progress=not as_json, system=system)
        typer.echo((out / "report.md").read_text(encoding="utf-8"))
        raise_for_failures(s, what="episodes")
        if as_json:
            typer.echo(json.dumps(s, ensure_ascii=False))
