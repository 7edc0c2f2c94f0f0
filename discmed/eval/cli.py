"""Command-line commands of this area, added by `register` (see discmed/cli.py for which group it receives)."""

from pathlib import Path
from typing import Annotated, Literal

import typer

from discmed.jobs import end_job

# The options the model-calling commands share: API timeout, the call cache, the JSON summary.
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="seconds before an API request is abandoned "
                                            "(then retried by the openai client)")]
# One spelling across commands: --cache/--no-cache (as data rewrite and kgqa have it), the file apart.
CacheOpt = Annotated[bool, typer.Option("--cache/--no-cache", help="reuse identical model calls from the call "
                                        "cache (--no-cache: neither read nor write one)")]
CacheFileOpt = Annotated[Path | None, typer.Option("--cache-file", help="call cache file (default: the run's own, "
                                                   "<out>.cache.sqlite)")]
SharedCacheOpt = Annotated[bool, typer.Option("--shared-cache", help="use the shared ~/.cache/discmed/llm_cache.sqlite")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the summary as JSON on the last line")]


def register(app: typer.Typer) -> None:
    """Add this area's commands to `app`: the `eval` group discmed/cli.py creates and passes in."""
    _register_mcq(app)
    _register_consult(app)
    from discmed.eval.rubric_cli import register_rubric

    register_rubric(app)


def _register_mcq(eval_app: typer.Typer) -> None:
    """`discmed eval mcq` (score a model on an exam task) and `discmed eval mcq-table` (combine runs)."""
    import json
    import re
    import sys
    from pathlib import Path

    from discmed.errors import fail, fail_with

    Opt = typer.Option  # short, for the option table below

    @eval_app.command("mcq")
    def mcq(
        task: Annotated[str, Opt("--task", help="built-in task (cmmlu, mlec-qa, cmb-exam, cmexam, "
                                "medqa-mainland, medmcqa) or a task YAML path")],
        model: Annotated[str, Opt("--model", "-m", help="model spec: tiny | hf:PATH | openai:URL@NAME | vllm:PATH")] = "tiny",
        data_dir: Annotated[str | None, Opt("--data-dir", help="folder holding the task's files "
                                          "(else $DISCMED_DATA_<TASK> or the YAML's data_dir)")] = None,
        shots: Annotated[int, Opt("--shots", help="k answered examples from the dev split")] = 0,
        mode: Annotated[Literal["logprob", "generate"], Opt("--mode", help="logprob (local models) or generate (any backend)")] = "logprob",
        subsets: Annotated[str | None, Opt("--subsets", help="comma-separated subset names (default: all)")] = None,
        limit: Annotated[int | None, Opt("--limit", help="only the first N questions of each subset")] = None,
        out: Annotated[Path | None, Opt("--out", "-o", help="run folder (default runs/mcq/<task>-<model>-<mode>-<k>shot)")] = None,
        batch_size: Annotated[int, Opt("--batch-size", help="questions per forward pass or generate call")] = 16,
        max_new_tokens: Annotated[int, Opt("--max-new-tokens", help="generate mode: reply length")] = 64,
        as_json: Annotated[bool, Opt("--json", help="print the summary as JSON on the last line")] = False,
    ) -> None:
        """Score a model on an exam task; an interrupted run resumes from its folder."""
        from collections import Counter

        from discmed.backend import BackendError, load_backend, resolve
        from discmed.eval.loaders import load_questions, load_task
        from discmed.eval.mcq import run_mcq
        from discmed.eval.mcq_report import render_table

        try:
            t = load_task(task)
            wanted = [s.strip() for s in subsets.split(",") if s.strip()] if subsets else None
            questions = load_questions(t, "test", data_dir, wanted)
            available = dict(Counter(q.subset for q in questions))  # the N of "n of N" under --limit
            if limit:
                firsts: dict[str, list] = {}
                for q in questions:
                    firsts.setdefault(q.subset, []).append(q)
                questions = [q for qs in firsts.values() for q in qs[:limit]]
            dev = load_questions(t, "dev", data_dir, wanted) if shots else []
            settings = {"task": t.name, "model": model, "mode": mode, "shots": shots,
                        "subsets": wanted, "limit": limit, "data_dir": str(t.resolve_data_dir(data_dir))}
            if mode == "generate":
                settings["max_new_tokens"] = max_new_tokens
            slug = re.sub(r"[^\w.-]+", "_", model).strip("_")[-60:]
            folder = out or Path("runs") / "mcq" / f"{t.name}-{slug}-{mode}-{shots}shot"
            backend = load_backend(model, **({"batch_size": batch_size} if resolve(model).local else {}))
            summary = run_mcq(backend, t, questions, folder, settings=settings, dev=dev, shots=shots,
                              mode=mode, batch_size=batch_size, max_new_tokens=max_new_tokens,
                              progress=sys.stderr.isatty() or not as_json, available=available)
        except (ValueError, BackendError, OSError) as e:
            fail_with(e, as_json)
        typer.echo(render_table([summary]))
        bad = summary["unparseable"]
        if bad:
            typer.echo(f"{len(bad)} unparseable replies (counted wrong): {', '.join(bad[:10])}"
                       + (" …" if len(bad) > 10 else ""))
        typer.echo(f"results: {summary['out']}/results.json")
        if as_json:
            typer.echo(json.dumps({**summary, "unparseable": len(bad)}, ensure_ascii=False))

    @eval_app.command("mcq-table")
    def mcq_table(
        runs: Annotated[list[str], typer.Argument(help="run folders or results.json files")],
        out: Annotated[Path | None, Opt("--out", "-o", help="also write the Markdown table here")] = None,
        strict: Annotated[bool, Opt("--strict", help="refuse (exit 2) rows scored on different questions or "
                                    "merging runs of different weights, rather than print them under a warning line")] = False,
        as_json: Annotated[bool, Opt("--json", help="print the table as JSON on the last line")] = False,
    ) -> None:
        """Combine runs into DISC's table: subsets as columns, average last, one row per model setting."""
        from discmed.eval.mcq_report import (
            differences,
            load_summaries,
            merge_rows,
            one_letter,
            render_table,
            stderr,
        )

        try:
            summaries = load_summaries(runs)
        except (ValueError, OSError) as e:
            fail_with(e, as_json)
        diff = differences(summaries)
        if strict and diff:
            fail("--strict: rows that do not compare — " + "; ".join(diff), as_json)
        table = render_table(summaries)
        typer.echo(table)
        if out:
            from discmed.chat import atomic_write_text

            atomic_write_text(out, table)
        if as_json:
            columns, rows = merge_rows(summaries)
            accs = {label: {c: row[c]["accuracy"] for c in row} for label, row in rows.items()}
            errs = {label: {c: row[c].get("stderr", stderr(row[c]["accuracy"], row[c]["n"])) for c in row}
                    for label, row in rows.items()}
            ns = {label: {c: [row[c]["n"], row[c].get("N", row[c]["n"])] for c in row} for label, row in rows.items()}
            flags = {label: list(f) for label, row in rows.items() if (f := one_letter(row))}
            typer.echo(json.dumps({"columns": columns, "rows": accs, "stderr": errs, "n_of_N": ns,
                                   "one_letter": flags, "not_like_for_like": diff}, ensure_ascii=False))


def _register_consult(eval_app: typer.Typer) -> None:
    """`discmed eval consult | judge | score | agree`: DISC's multi-turn consultation protocol."""
    import json
    import sys
    from pathlib import Path

    from discmed.errors import fail, fail_with

    def progress(as_json: bool) -> bool:
        return sys.stderr.isatty() or not as_json

    def backend(spec: str, timeout: float):
        """A model spec's backend; an API request gets `--timeout` and the SDK's 2 retries
        (3 attempts of 300 s at worst, not the hour 5 x 3 nested retries could take)."""
        from discmed.jobs import backend_for

        return backend_for(spec, retries=2, timeout=timeout)

    def _cache_choice(cache: bool, cache_file: Path | None, shared: bool):
        return False if not cache else cache_file or (True if shared else None)  # None: the run's own


    @eval_app.command("consult")
    def consult(
        doctor: Annotated[str, typer.Option("--doctor", help="doctor model spec: tiny, hf:PATH, openai:URL@NAME, vllm:PATH")],
        patient: Annotated[str, typer.Option("--patient", help="patient model spec (DISC used gpt-3.5-turbo)")],
        set_: Annotated[str, typer.Option("--set", help="cmb-clin, cmd, cmid, or a samples JSON file")],
        turns: Annotated[int, typer.Option("--turns", help="doctor turns per consultation (DISC's have 3)")] = 3,
        out: Annotated[Path | None, typer.Option("--out", "-o", help="dialogue file (default runs/consult/<model>_<set>.json)")] = None,
        name: Annotated[str | None, typer.Option("--name", help="model name written in the dialogues (default: the doctor's)")] = None,
        samples: Annotated[Path | None, typer.Option("--samples", help="DISC's eval/samples folder (else $DISCMED_EVAL_SAMPLES)")] = None,
        limit: Annotated[int | None, typer.Option("--limit", help="only the first N cases")] = None,
        concurrency: Annotated[int, typer.Option("--concurrency", help="consultations in flight at once")] = 8,
        doctor_tokens: Annotated[int, typer.Option("--doctor-max-new-tokens", help="longest doctor reply, in tokens")] = 512,
        patient_tokens: Annotated[int, typer.Option("--patient-max-new-tokens", help="longest patient reply, in tokens")] = 128,
        patient_temperature: Annotated[float, typer.Option("--patient-temperature", help="the patient's sampling "
                                                           "temperature (0: greedy)")] = 0.7,
        doctor_system: Annotated[str | None, typer.Option("--doctor-system", help="a system prompt for the doctor")] = None,
        timeout: TimeoutOpt = 300.0,
        cache: CacheOpt = True,
        cache_file: CacheFileOpt = None,
        shared_cache: SharedCacheOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Simulated consultations: a patient model role-plays each case, the doctor consults."""
        from discmed.backend import BackendError, GenParams
        from discmed.chat import DataError
        from discmed.eval.consult import load_cases, run_consult

        try:
            cases = load_cases(set_, samples)[:limit] if limit else load_cases(set_, samples)
            doc = backend(doctor, timeout)
            pat = doc if patient == doctor else backend(patient, timeout)
            model = name or doc.name
            slug = Path(set_).stem if Path(set_).suffix else set_.lower()
            target = out or Path("runs") / "consult" / f"{model}_{slug}.json"
            summary = run_consult(
                cases, doc, pat, target, doctor_spec=doctor, patient_spec=patient, model=model, turns=turns,
                concurrency=concurrency, doctor_params=GenParams(max_new_tokens=doctor_tokens),
                patient_params=GenParams(max_new_tokens=patient_tokens, temperature=patient_temperature, top_p=0.9),
                doctor_system=doctor_system, cache=_cache_choice(cache, cache_file, shared_cache), progress=progress(as_json))
        except (ValueError, DataError, BackendError, OSError) as e:
            fail_with(e, as_json)
        typer.echo(f"{summary['dialogues']}/{summary['cases']} consultations → {summary['out']} "
                   f"({summary['resumed']} resumed, {summary['failed']} failed, "
                   f"{summary['ended_by_patient']} ended by the patient, "
                   f"{summary['patient_silent']} / {summary['doctor_silent']} cut short by an empty "
                   "patient / doctor reply)")
        if summary["leaks"]:
            typer.echo(f"{summary['leaks']} dialogues where the patient leaked the case or a diagnosis: "
                       f"{', '.join(summary['leak_ids'][:10])} (details: {summary['leak_file']})")
        typer.echo(f"calls {summary['calls']}, cache hits {summary['cache_hits']}, tokens "
                   f"{summary['prompt_tokens']} in / {summary['completion_tokens']} out")
        end_job(summary, what="consultations", as_json=as_json)
        if as_json:
            typer.echo(json.dumps(summary, ensure_ascii=False))

    @eval_app.command("judge")
    def judge(
        files: Annotated[list[Path], typer.Argument(help="dialogue files in DISC's format")],
        judge_spec: Annotated[str, typer.Option("--judge", help="judge model spec (DISC used gpt-4)")],
        out: Annotated[Path | None, typer.Option("--out", "-o", help="judgement JSONL (default runs/judge/result_<model>_<set>"
                                                  ".jsonl; with --pairwise runs/judge/pairwise_<x>_vs_<y>.jsonl)")] = None,
        rubric: Annotated[Literal["disc", "zh"], typer.Option("--rubric", help="disc (DISC's exact English prompt) or zh (Chinese)")] = "disc",
        pairwise: Annotated[bool, typer.Option("--pairwise", help="compare the two doctors of two files, "
                                               "each case judged in both orders")] = False,
        concurrency: Annotated[int, typer.Option("--concurrency", help="dialogues judged at once")] = 8,
        max_tokens: Annotated[int | None, typer.Option("--max-new-tokens", help="longest judge reply, in tokens "
                                                       "(default 128; 256 pairwise)")] = None,
        free_text: Annotated[bool, typer.Option("--free-text", help="do not hold the judge's reply to a JSON schema "
                                                "(constrained decoding, structured outputs); its prose is parsed")] = False,
        timeout: TimeoutOpt = 300.0,
        cache: CacheOpt = True,
        cache_file: CacheFileOpt = None,
        shared_cache: SharedCacheOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Score dialogues with DISC's rubric (or compare two doctors with --pairwise)."""
        from discmed.backend import BackendError, GenParams
        from discmed.chat import DataError
        from discmed.eval.consult import read_dialogues
        from discmed.eval.judge import run_judge, run_pairwise

        try:
            dialogues = [read_dialogues(f) for f in files]
            model = backend(judge_spec, timeout)
            if pairwise:
                if len(files) != 2:
                    raise ValueError("--pairwise takes exactly two dialogue files")
                x, y = dialogues
                target = out or Path("runs") / "judge" / f"pairwise_{x[0]['model']}_vs_{y[0]['model']}.jsonl"
                summary = run_pairwise(x, y, model, target, judge_spec=judge_spec,
                                       params=GenParams(max_new_tokens=max_tokens or 256),
                                       concurrency=concurrency, cache=_cache_choice(cache, cache_file, shared_cache), progress=progress(as_json))
                typer.echo(f"{summary['x']} vs {summary['y']} on {summary['cases']} cases: "
                           f"{summary['x_wins']} / {summary['y_wins']} wins, {summary['ties']} ties, "
                           f"{summary['undecided']} undecided; verdict kept after swapping: {summary['consistent']}; "
                           f"first position chosen: {summary['first_position_rate']}")
            else:
                flat = [d for ds in dialogues for d in ds]
                if not flat:
                    raise ValueError("no dialogues to judge")
                first = flat[0]
                target = out or Path("runs") / "judge" / f"result_{first['model']}_{first['source'].lower()}.jsonl"
                summary = run_judge(flat, model, target, judge_spec=judge_spec, rubric=rubric,
                                    params=GenParams(max_new_tokens=max_tokens or 128), concurrency=concurrency,
                                    json_output=not free_text,
                                    cache=_cache_choice(cache, cache_file, shared_cache), progress=progress(as_json))
                typer.echo(f"{summary['judged']}/{summary['dialogues']} judged → {summary['out']}: "
                           f"{summary['parsed']} parsed, {summary['unparsed']} unparsed after asking again "
                           f"({summary['asked_again']} asked twice), {summary['failed']} failed")
                if summary["unparsed"]:
                    typer.echo("unparsed (kept in the file, left out of scores): "
                               + ", ".join(summary["unparsed_ids"][:10]) + (" …" if summary["unparsed"] > 10 else ""))
        except (ValueError, DataError, BackendError, OSError) as e:
            fail_with(e, as_json)
        end_job(summary, what="dialogues" if not pairwise else "cases", as_json=as_json)
        if as_json:
            typer.echo(json.dumps(summary, ensure_ascii=False))

    @eval_app.command("score")
    def score(
        files: Annotated[list[Path], typer.Argument(help="judgement JSONL files or folders of result_*.jsonl "
                                                    "(DISC's released ones or eval judge's)")],
        samples: Annotated[Path | None, typer.Option("--samples", help="DISC's eval/samples folder, for the CMD / "
                                                     "CMID categories (else $DISCMED_EVAL_SAMPLES)")] = None,
        out: Annotated[Path | None, typer.Option("--out", "-o", help="folder for report.md, scores.json and the PNG charts")] = None,
        strict: Annotated[bool, typer.Option("--strict", help="refuse (exit 2) a table whose rows differ in judge "
                                             "or cases, rather than print it under a warning line")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="print {model: {set: {criterion…, mean, ci95, n, N, "
                                              "judge, by}}} last")] = False,
    ) -> None:
        """Tables in DISC's layout with each row's judge, n of N cases and 95% intervals;
        per-category means; radar and point-range charts."""
        from discmed.chat import DataError
        from discmed.eval.consult import default_samples_dir
        from discmed.eval.score import (
            TITLE,
            differences,
            draw_charts,
            json_summary,
            markdown,
            read_case_sets,
            read_categories,
            read_judgements,
            sets_in,
            summarize,
        )

        try:
            # A folder contributes its judgement files, named as DISC and `eval judge` name them.
            paths = [p for f in files for p in (sorted(f.glob("**/result_*.jsonl")) if f.is_dir() else [f])]
            folder = samples or default_samples_dir()
            summary = summarize(read_judgements(paths), read_categories(folder), read_case_sets(folder))
        except (ValueError, DataError, OSError) as e:
            fail_with(e, as_json)
        if not summary:
            fail("no judgements found", as_json)
        mixed = [f"{TITLE.get(n, n)}: {'; '.join(d)}" for n in sets_in(summary) if (d := differences(summary, n))]
        if strict and mixed:
            fail("--strict: rows that do not compare — " + " | ".join(mixed), as_json)
        table = markdown(summary)
        typer.echo(table)
        result = json_summary(summary)
        if out:
            out.mkdir(parents=True, exist_ok=True)
            from discmed.chat import atomic_write_text

            for name, text in (("report.md", table), ("scores.json", json.dumps(result, ensure_ascii=False, indent=2))):
                atomic_write_text(out / name, text)
            charts = draw_charts(summary, out)
            typer.echo("charts: " + ", ".join(str(c) for c in charts))
        if as_json:
            typer.echo(json.dumps(result, ensure_ascii=False))

    @eval_app.command("agree")
    def agree(
        first: Annotated[Path, typer.Argument(help="judgements by one judge")],
        second: Annotated[Path, typer.Argument(help="judgements of the same dialogues by another judge")],
        as_json: Annotated[bool, typer.Option("--json", help="print the agreement as JSON on the last line")] = False,
    ) -> None:
        """Agreement between two judges on the same dialogues, per criterion."""
        from discmed.chat import DataError
        from discmed.eval.judge import agreement
        from discmed.eval.score import read_judgements

        try:
            a = {(j.model, j.set, j.id): j.scores for j in read_judgements([first])}
            b = {(j.model, j.set, j.id): j.scores for j in read_judgements([second])}
        except (ValueError, DataError, OSError) as e:
            fail_with(e, as_json)
        shared = [k for k in a if k in b]
        pairs = [(a[k], b[k]) for k in shared if a[k] is not None and b[k] is not None]
        if not pairs:
            fail(f"no dialogue scored by both judges ({len(shared)} shared, none parsed by both)", as_json)
        rows = agreement(pairs)
        typer.echo(f"{len(pairs)} dialogues scored by both ({len(shared) - len(pairs)} shared but unparsed by one)")
        typer.echo("| criterion | n | exact | within 1 | weighted kappa | Spearman |\n|---|---|---|---|---|---|")
        for r in rows:
            typer.echo(f"| {r.criterion} | {r.n} | {r.exact:.2f} | {r.within_one:.2f} | {r.kappa:.2f} | {r.spearman:.2f} |")
        if as_json:
            typer.echo(json.dumps({"dialogues": len(pairs), "shared": len(shared),
                                   "criteria": {r.criterion: {"exact": r.exact, "within_one": r.within_one,
                                                              "kappa": r.kappa, "spearman": r.spearman}
                                                for r in rows}}, ensure_ascii=False))
