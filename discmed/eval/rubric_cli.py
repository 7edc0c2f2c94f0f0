"""`discmed eval rubrics | rubric | rubric-meta | receipts | judges`: rubric evaluation on
HealthBench's protocol or discmed's, the grader measured against physicians and against other
graders, and the receipts behind every verdict. Registered by discmed/eval/cli.py."""

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from discmed.eval.cli import CacheFileOpt, CacheOpt, SharedCacheOpt, TimeoutOpt
from discmed.jobs import end_job

Opt = typer.Option

ProtocolOpt = Annotated[Literal["auto", "healthbench", "discmed"], Opt(
    "--protocol", help="healthbench: HealthBench's grader as published (its English template verbatim, "
    "temperature 0.5, 2,048 tokens, free text, retried until a boolean); discmed: discmed's Chinese grader for "
    "DISC's cases; auto: discmed for rubrics eval rubrics wrote, healthbench for any other file")]
GraderTokensOpt = Annotated[int | None, Opt("--max-new-tokens", help="longest grader reply, in tokens "
                                            "(default: the protocol's, 2048 healthbench / 128 discmed)")]
GraderTempOpt = Annotated[float | None, Opt("--grader-temperature", help="the grader's sampling temperature "
                                            "(default: the protocol's, 0.5 healthbench / 0 discmed)")]
AttemptsOpt = Annotated[int | None, Opt("--grader-attempts", help="calls at most per criterion until the grader "
                                        "gives a verdict (default 10 healthbench / 2 discmed); then counted as none")]
FreeTextOpt = Annotated[bool, Opt("--free-text", help="do not hold the grader's reply to a JSON schema "
                                  "(discmed's protocol holds it by default; its prose is parsed)")]
SchemaOpt = Annotated[bool, Opt("--json-schema", help="hold the grader's reply to a JSON schema (constrained "
                                "decoding, structured outputs) under HealthBench's protocol, which does not; "
                                "the report names the deviation")]


def backend(spec: str, timeout: float):
    """A model spec's backend; an API model gets the SDK's 2 retries, the only ones."""
    from discmed.jobs import backend_for

    return backend_for(spec, retries=2, timeout=timeout)


def cache_choice(cache: bool, cache_file: Path | None, shared: bool):
    return False if not cache else cache_file or (True if shared else None)  # None: the run's own


def grader_protocol(name: str, examples: list, *, max_tokens: int | None, temperature: float | None,
                    attempts: int | None, free_text: bool, json_schema: bool):
    """The protocol the options name (auto: from the rubric file), with any setting overridden."""
    from discmed.eval.grader import protocol
    from discmed.eval.rubric import detect_protocol

    if free_text and json_schema:
        raise ValueError("--free-text and --json-schema contradict each other")
    chosen = detect_protocol(examples) if name == "auto" else name
    constrained = True if json_schema else False if free_text else None
    return protocol(chosen, max_new_tokens=max_tokens, temperature=temperature, constrained=constrained,
                    attempts=attempts)


def protocol_line(proto) -> str:
    """One line naming the protocol and any setting that departs from its published one."""
    from discmed.eval.grader import protocol

    published = protocol(proto.name)
    changed = [f"{k} {getattr(proto, k)} (published {getattr(published, k)})"
               for k in ("max_new_tokens", "temperature", "constrained", "attempts")
               if getattr(proto, k) != getattr(published, k)]
    head = {"healthbench": "HealthBench's grader (simple-evals healthbench_eval.py, template verbatim)",
            "discmed": "discmed's Chinese grader (prompts/rubric_grader_zh.txt)"}[proto.name]
    return f"protocol {proto.name}: {head}" + (f"; changed: {', '.join(changed)}" if changed else "")


def write_report(out: Path, report: str, scores: dict) -> None:
    from discmed.chat import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.md", report)
    atomic_write_text(out / "scores.json", json.dumps(scores, ensure_ascii=False, indent=2))


def register_rubric(eval_app: typer.Typer) -> None:
    """Add the rubric commands to the `eval` group."""
    from discmed.errors import fail, fail_with

    @eval_app.command("rubrics")
    def rubrics(
        cases: Annotated[str, Opt("--cases", help="cmb-clin, cmd, cmid, a DISC samples file, or HealthBench-shaped JSONL")],
        writer: Annotated[str, Opt("--writer", help="the model that writes the criteria (a model spec)")],
        out: Annotated[Path, Opt("--out", "-o", help="rubric JSONL in HealthBench's shape")] = Path("runs/rubrics/rubrics.jsonl"),
        samples: Annotated[Path | None, Opt("--samples", help="DISC's eval/samples folder (else $DISCMED_EVAL_SAMPLES)")] = None,
        reference: Annotated[Path | None, Opt("--reference", help="CMB-Clin's own release (CMB-Clin-v0.json): "
                                                  "its answers shown to the writer")] = None,
        limit: Annotated[int | None, Opt("--limit", help="only the first N cases")] = None,
        concurrency: Annotated[int, Opt("--concurrency", help="cases written at once")] = 8,
        max_tokens: Annotated[int, Opt("--max-new-tokens", help="longest writer reply, in tokens")] = 1024,
        free_text: Annotated[bool, Opt("--free-text", help="do not hold the writer's reply to a JSON schema "
                                                "(constrained decoding, structured outputs); its prose is parsed")] = False,
        timeout: TimeoutOpt = 300.0,
        cache: CacheOpt = True,
        as_json: Annotated[bool, Opt("--json", help="print the summary as JSON on the last line")] = False,
    ) -> None:
        """Write weighted criteria per case (checked; rejects kept with reasons); resumable."""
        from discmed.backend import BackendError, GenParams
        from discmed.chat import DataError
        from discmed.eval.rubric_write import load_rubric_cases, run_write

        try:
            items = load_rubric_cases(cases, samples, reference)[:limit] if limit else load_rubric_cases(cases, samples, reference)
            summary = run_write(items, backend(writer, timeout), out, writer_spec=writer,
                                params=GenParams(max_new_tokens=max_tokens), concurrency=concurrency,
                                cache=cache, progress=sys.stderr.isatty() or not as_json,
                                json_output=not free_text)
        except (ValueError, DataError, BackendError, OSError) as e:
            fail_with(e, as_json)
        typer.echo(f"{summary['written']}/{summary['cases']} rubrics → {summary['out']} ({summary['criteria']} criteria; "
                   f"{summary['urgent']} urgent cases; {summary['rejected']} rejected → {summary['rejects']}; "
                   f"{summary['failed']} failed; {summary['resumed']} resumed)")
        if summary["reject_reasons"]:
            typer.echo("reject reasons: " + "; ".join(f"{k} ×{v}" for k, v in summary["reject_reasons"].items()))
        end_job(summary, what="cases", as_json=as_json)
        if as_json:
            typer.echo(json.dumps(summary, ensure_ascii=False))

    @eval_app.command("rubric")
    def rubric(
        dialogues: Annotated[list[Path] | None, typer.Argument(help="dialogue files in DISC's format (ids matching "
                                                                "the rubric file's prompt_id)")] = None,
        rubrics_file: Annotated[Path, Opt("--rubrics", help="rubric JSONL (HealthBench's own file or eval rubrics'), "
                                          "or a folder of HealthBench's files (see --subset)")] = ...,
        grader: Annotated[str, Opt("--grader", help="the model that grades each criterion (a model spec)")] = ...,
        subset: Annotated[Literal["all", "hard", "consensus"] | None, Opt(
            "--subset", help="HealthBench's published subset, its file found by name in the --rubrics folder")] = None,
        protocol_name: ProtocolOpt = "auto",
        model: Annotated[str | None, Opt("--model", help="instead of dialogue files: this model answers each "
                                         "rubric line's prompt first (HealthBench's protocol)")] = None,
        name: Annotated[str | None, Opt("--name", help="with --model: the name written in the dialogues")] = None,
        completions: Annotated[Literal["physician", "references"] | None, Opt(
            "--completions", help="grade HealthBench's own completions instead of a model's: physician (the "
            "physicians' ideal completions) or references (the model completions physicians were shown)")] = None,
        groups: Annotated[list[str] | None, Opt("--group", help="with --completions: the physician group(s) "
                                                "('Group 1', 'Group 2', 'Group 3'; default: every one that applies)")] = None,
        n_repeats: Annotated[int, Opt("--n-repeats", help="with --model: replies per prompt, each graded "
                                      "(HealthBench's n_repeats; worst-at-k reported)")] = 1,
        limit: Annotated[int | None, Opt("--limit", help="N examples drawn at random with --seed (HealthBench's "
                                         "draw: random.Random(seed).sample)")] = None,
        seed: Annotated[int, Opt("--seed", help="the --limit draw's seed (and the bootstrap's)")] = 0,
        model_tokens: Annotated[int | None, Opt("--model-max-new-tokens", help="with --model: longest reply, in "
                                                "tokens (default 2048 healthbench / 512 discmed)")] = None,
        model_temperature: Annotated[float | None, Opt("--model-temperature", help="with --model: sampling "
                                                       "temperature (default 0.5 healthbench, as simple-evals' "
                                                       "sampler / 0 discmed)")] = None,
        model_system: Annotated[str | None, Opt("--model-system", help="with --model: a system message before "
                                                "each prompt (the grader sees it, as in HealthBench)")] = None,
        out: Annotated[Path, Opt("--out", "-o", help="folder for grades.jsonl, report.md, scores.json, charts")] = Path("runs/rubric"),
        concurrency: Annotated[int, Opt("--concurrency", help="dialogues graded (or answered) at once")] = 8,
        max_tokens: GraderTokensOpt = None,
        grader_temperature: GraderTempOpt = None,
        grader_attempts: AttemptsOpt = None,
        free_text: FreeTextOpt = False,
        json_schema: SchemaOpt = False,
        timeout: TimeoutOpt = 300.0,
        cache: CacheOpt = True,
        cache_file: CacheFileOpt = None,
        shared_cache: SharedCacheOpt = False,
        as_json: Annotated[bool, Opt("--json", help="print {grading, scores: {model: {score, ci, bootstrap_std, n, "
                                     "ungraded, tags}}} last")] = False,
    ) -> None:
        """Grade each criterion met / not met; HealthBench's scores with bootstrap std, per-tag and
        per-criterion tables, worst-at-k with repeats, charts; every verdict with its receipt."""
        from discmed.backend import BackendError, GenParams
        from discmed.chat import DataError
        from discmed.eval import rubric as rb
        from discmed.eval.consult import read_dialogues

        progress = sys.stderr.isatty() or not as_json
        store = cache_choice(cache, cache_file, shared_cache)
        try:
            if sum(x is not None and x != [] for x in (model, completions, dialogues or None)) != 1:
                raise ValueError("give dialogue files, --model (it answers the prompts) or --completions (HealthBench's)")
            if n_repeats < 1 or (n_repeats > 1 and not model):
                raise ValueError("--n-repeats N (N >= 1) needs --model: repeats are a model's replies")
            source = rb.healthbench_file(rubrics_file, subset or "all") if rubrics_file.is_dir() else rubrics_file
            if subset and not rubrics_file.is_dir():
                raise ValueError("--subset picks HealthBench's file from a folder: give the folder as --rubrics")
            examples = rb.read_rubrics(source)
            proto = grader_protocol(protocol_name, examples, max_tokens=max_tokens, temperature=grader_temperature,
                                    attempts=grader_attempts, free_text=free_text, json_schema=json_schema)
            drawn = f"{limit} of {len(examples)} examples drawn with seed {seed}" if limit and limit < len(examples) else None
            if completions:
                records = rb.completion_dialogues(examples, completions, groups, limit, seed)
            elif model:
                examples = rb.sample(examples, limit, seed)
                doc = backend(model, timeout)
                hb = proto.name == "healthbench"
                params = GenParams(max_new_tokens=model_tokens or (2048 if hb else 512),
                                   temperature=model_temperature if model_temperature is not None else 0.5 if hb else 0.0)
                if n_repeats > 1 and params.temperature == 0:
                    typer.echo(f"warning: --n-repeats {n_repeats} at temperature 0: the replies differ only where the "
                               "model is not deterministic (set --model-temperature)", err=True)
                records = rb.run_respond(examples, doc, out / "dialogues.json", model_spec=model, name=name or doc.name,
                                         params=params, system=model_system, repeats=n_repeats,
                                         concurrency=concurrency, cache=store, progress=progress)
            else:
                records = [d for f in dialogues for d in read_dialogues(f)]
                if limit:
                    wanted = {e.prompt_id for e in rb.sample(examples, limit, seed)}
                    records = [d for d in records if str(d["id"]) in wanted]
            summary = rb.run_grading(records, examples, backend(grader, timeout), out / "grades.jsonl",
                                     grader_spec=grader, proto=proto, concurrency=concurrency, cache=store,
                                     progress=progress)
            table = rb.summarize(rb.read_grades(out / "grades.jsonl"), seed=seed)
        except (ValueError, DataError, BackendError, OSError) as e:
            fail_with(e, as_json)
        cut = sum(r.get("finish_reason") == "length" for r in records)
        coverage = (f"{summary['graded']} of {summary['matched']} dialogues with a rubric graded "
                    f"({summary['failed']} failed" + (f", listed in {summary['failed_file']}" if summary.get("failed_file")
                                                      else "") + f"; {summary['unmatched']} dialogues had no rubric); "
                    f"{summary['criteria']} criteria, {summary['unreadable']} without a verdict after "
                    f"{proto.attempts} attempts (their dialogues left out of the scores)"
                    + (f"; {drawn}" if drawn else "") + (f"; {cut} replies cut at the token limit" if cut else ""))
        identity = summary.get("grader_identity") or grader
        header = (f"Rubrics: {source}. Graded by {grader} ({identity}); {protocol_line(proto)}.\n\n{coverage}.\n")
        # The report says what it scored, with whom and how: n of N, the grader, the protocol.
        report = rb.markdown(table).replace("\n", f"\n\n{header}", 1)  # under the heading, above the table
        typer.echo(report)
        write_report(out, report, {"protocol": proto.describe(), "grader": {"spec": grader, "identity": identity},
                                   "rubrics": str(source), "models": table})
        charts = rb.draw_charts(table, out)
        if charts:
            typer.echo("charts: " + ", ".join(str(c) for c in charts))
        end_job(summary, what="dialogues", as_json=as_json)
        if as_json:
            typer.echo(json.dumps({"grading": {k: v for k, v in summary.items() if k != "failures"},
                                   "scores": rb.json_summary(table)}, ensure_ascii=False))

    @eval_app.command("receipts")
    def receipts(
        run: Annotated[Path, typer.Argument(help="a rubric run folder (its grades.jsonl), a grades file, or an eval "
                                            "judge judgement / pairwise file")],
        ids: Annotated[list[str] | None, Opt("--id", help="only these dialogue ids (repeatable)")] = None,
        model: Annotated[str | None, Opt("--model", help="only this model's verdicts")] = None,
        show: Annotated[bool, Opt("--show", help="print each verdict in full: the re-rendered prompt, the reply, "
                                  "the reasoning, earlier unreadable tries")] = False,
        top: Annotated[int, Opt("--top", help="rows printed in the table (all go to --out)")] = 20,
        out: Annotated[Path | None, Opt("--out", "-o", help="export every row to a .jsonl or .csv file")] = None,
        as_json: Annotated[bool, Opt("--json", help="print the counts as JSON on the last line")] = False,
    ) -> None:
        """Every verdict with its grader, prompt hash (re-rendered and checked), raw reply, reasoning and
        parsed result; exits 2 when a prompt does not match its receipt."""
        from discmed.chat import DataError
        from discmed.eval import receipts as rc

        try:
            items = rc.rows(run)
            if ids:
                items = [r for r in items if r["id"] in set(ids)]
            if model:
                items = [r for r in items if r["model"] == model]
            if out:
                rc.export(items, out)
        except (ValueError, DataError, OSError) as e:
            fail_with(e, as_json)
        counts = rc.summary(items)
        typer.echo(f"{counts['verdicts']} verdicts in {rc.run_file(run)} by {'; '.join(counts['graders']) or 'nobody'} "
                   f"(protocol {', '.join(counts['protocols']) or '—'}): {counts['verified']} prompts re-rendered and "
                   f"matching their receipt, {len(counts['mismatched'])} not matching, {counts['not_checkable']} not "
                   f"checkable; {counts['without_verdict']} without a verdict; {counts['asked_again']} asked more than "
                   f"once; {counts['with_reasoning']} with the grader's reasoning kept apart")
        if show:
            for r in items[:top]:
                typer.echo(f"\n--- line {r['line']}: {r['model']} {r['id']} {r['item']} → {r['verdict']} "
                           f"({r['grader']}, {r['identity']}; prompt sha256 {r['prompt_sha256']}, "
                           f"{ {True: 'verified', False: 'MISMATCH', None: 'not checkable'}[r['verified']]})")
                if r["prompt"]:
                    typer.echo(f"[prompt]\n{r['prompt']}")
                typer.echo(f"[reply]\n{r['reply']}")
                if r["reasoning"]:
                    typer.echo(f"[reasoning, not parsed]\n{r['reasoning']}")
                for i, t in enumerate(r["tries"], 1):
                    typer.echo(f"[unreadable try {i}]\n{t.get('reply')}")
        else:
            typer.echo(rc.table(items[:top]))
        if out:
            typer.echo(f"{len(items)} rows → {out}")
        if counts["mismatched"]:
            fail(f"{len(counts['mismatched'])} receipts do not match the prompt re-rendered from their line "
                 f"(an edited file or another template): {'; '.join(counts['mismatched'][:5])}", as_json, 2, counts)
        if as_json:
            typer.echo(json.dumps(counts, ensure_ascii=False))

    @eval_app.command("rubric-meta")
    def rubric_meta(
        meta_file: Annotated[Path, typer.Argument(help="HealthBench's meta-evaluation JSONL "
                                                  "(2025-05-07-06-14-12_oss_meta_eval.jsonl), or the folder holding it")],
        grader: Annotated[str, Opt("--grader", help="the grader to measure (a model spec)")],
        protocol_name: Annotated[Literal["healthbench", "discmed"], Opt(
            "--protocol", help="how the grader is asked: healthbench (as published) or discmed (its Chinese grader)")] = "healthbench",
        limit: Annotated[int | None, Opt("--limit", help="N lines drawn at random with --seed (HealthBench's draw)")] = None,
        seed: Annotated[int, Opt("--seed", help="the --limit draw's seed")] = 0,
        out: Annotated[Path, Opt("--out", "-o", help="folder for meta_grades.jsonl, report.md, scores.json")] = Path("runs/rubric-meta"),
        concurrency: Annotated[int, Opt("--concurrency", help="lines graded at once")] = 8,
        max_tokens: GraderTokensOpt = None,
        grader_temperature: GraderTempOpt = None,
        grader_attempts: AttemptsOpt = None,
        free_text: FreeTextOpt = False,
        json_schema: SchemaOpt = False,
        timeout: TimeoutOpt = 300.0,
        cache: CacheOpt = True,
        cache_file: CacheFileOpt = None,
        shared_cache: SharedCacheOpt = False,
        as_json: Annotated[bool, Opt("--json", help="print {run, scores} as JSON on the last line")] = False,
    ) -> None:
        """Score a grader against physicians' verdicts (HealthBench's meta-evaluation): macro F1 as
        published, per-category agreement, and where it stands among the physicians."""
        from discmed.backend import BackendError
        from discmed.chat import DataError
        from discmed.eval import meta
        from discmed.eval.rubric import healthbench_file, sample

        try:
            source = healthbench_file(meta_file, "meta") if meta_file.is_dir() else meta_file
            rows = meta.read_meta(source)
            drawn = sample(rows, limit, seed)
            proto = grader_protocol(protocol_name, [], max_tokens=max_tokens, temperature=grader_temperature,
                                    attempts=grader_attempts, free_text=free_text, json_schema=json_schema)
            summary = meta.run_meta(drawn, backend(grader, timeout), out / "meta_grades.jsonl", grader_spec=grader,
                                    proto=proto, concurrency=concurrency,
                                    cache=cache_choice(cache, cache_file, shared_cache),
                                    progress=sys.stderr.isatty() or not as_json)
            graded = [json.loads(x) for x in (out / "meta_grades.jsonl").read_text(encoding="utf-8").splitlines()]
        except (ValueError, DataError, BackendError, OSError) as e:
            fail_with(e, as_json)
        scores = meta.meta_scores(graded)
        identity = summary.get("grader_identity") or grader
        head = (f"Meta-evaluation file: {source} ({len(drawn)} of {len(rows)} lines"
                + (f", drawn with seed {seed}" if len(drawn) < len(rows) else "") + f"). Graded by {grader} ({identity}); "
                f"{protocol_line(proto)}; {summary['failed'] or 0} lines failed.\n")
        report = meta.markdown(scores, grader).replace("\n", f"\n\n{head}", 1)
        typer.echo(report)
        write_report(out, report, {"grader": {"spec": grader, "identity": identity}, "protocol": proto.describe(),
                                   "file": str(source), **scores})
        end_job(summary, what="lines", as_json=as_json)
        if as_json:
            typer.echo(json.dumps({"run": {k: v for k, v in summary.items() if k != "failures"}, "scores": scores},
                                  ensure_ascii=False))

    @eval_app.command("judges")
    def judges(
        runs: Annotated[list[Path], typer.Argument(help="eval rubric run folders (or their grades.jsonl): the "
                                                   "dialogues to grade again and their own grader's verdicts")],
        graders: Annotated[str, Opt("--graders", help="comma-separated model specs, each grading every dialogue "
                                    "of the runs on the same criteria")],
        out: Annotated[Path, Opt("--out", "-o", help="folder: one grades.jsonl per grader, report.md, judges.json")] = Path("runs/judges"),
        concurrency: Annotated[int, Opt("--concurrency", help="dialogues graded at once")] = 8,
        max_tokens: GraderTokensOpt = None,
        grader_attempts: AttemptsOpt = None,
        seed: Annotated[int, Opt("--seed", help="the bootstrap's seed")] = 0,
        timeout: TimeoutOpt = 300.0,
        cache: CacheOpt = True,
        cache_file: CacheFileOpt = None,
        shared_cache: SharedCacheOpt = False,
        as_json: Annotated[bool, Opt("--json", help="print the comparison as JSON on the last line")] = False,
    ) -> None:
        """Grade the same dialogues with several graders under the runs' protocol; how the models'
        scores and ranking change (Kendall tau), and how far graders agree (agreement, Cohen's kappa)."""
        from discmed.backend import BackendError
        from discmed.chat import DataError
        from discmed.eval import judges as jd
        from discmed.eval.grader import protocol_from
        from discmed.eval.rubric import read_grades, run_grading

        specs = [s.strip() for s in graders.split(",") if s.strip()]
        summaries = []
        try:
            if not specs:
                raise ValueError("--graders: give at least one model spec")
            lines = [x for r in runs for x in jd.read_run(r)]
            described = {json.dumps(x["protocol"], sort_keys=True) for x in lines}
            if len(described) > 1:
                raise ValueError(f"the runs were graded under {len(described)} different protocols; compare runs of one")
            described_one = lines[0]["protocol"]
            proto = protocol_from(described_one)
            if max_tokens is not None or grader_attempts is not None:
                from dataclasses import replace

                proto = replace(proto, **{k: v for k, v in (("max_new_tokens", max_tokens),
                                                            ("attempts", grader_attempts)) if v is not None})
            dialogues, examples = jd.dialogues_and_examples(lines)
            graded = {}
            for label in sorted({(x.get("grader") or {}).get("spec") or "?" for x in lines}):
                graded[f"{label} (the runs')"] = [x for x in lines if ((x.get("grader") or {}).get("spec") or "?") == label]
            for spec in specs:
                target = out / jd.slug(spec) / "grades.jsonl"
                summary = run_grading(dialogues, examples, backend(spec, timeout), target, grader_spec=spec, proto=proto,
                                      concurrency=concurrency, cache=cache_choice(cache, cache_file, shared_cache),
                                      progress=sys.stderr.isatty() or not as_json)
                summaries.append(summary)
                graded[spec] = read_grades(target)
        except (ValueError, DataError, BackendError, OSError) as e:
            fail_with(e, as_json)
        result = jd.compare(graded, seed=seed)
        head = (f"{len(dialogues)} dialogues of {len(runs)} run(s), {sum(len(x['grades']) for x in lines)} criteria, "
                f"graded again under {protocol_line(proto)}; "
                + "; ".join(f"{s['grader']}: {s['graded']} graded, {s['failed']} failed, {s['unreadable']} without a "
                            "verdict" for s in summaries) + ".\n")
        report = jd.markdown(result).replace("\n", f"\n\n{head}", 1)
        typer.echo(report)
        write_report(out, report, {"protocol": proto.describe(), **result})
        for s in summaries:
            end_job(s, what=f"dialogues graded by {s['grader']}", as_json=as_json)
        if as_json:
            typer.echo(json.dumps(result, ensure_ascii=False))
