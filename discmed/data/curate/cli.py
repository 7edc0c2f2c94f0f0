"""Commands of the curation step, added to the `discmed data` group by `register`:

discmed data candidates --models tiny,hf:/models/b --input prompts.jsonl --n 3 --db curation.sqlite
discmed data curate token --db curation.sqlite 张三 李四          # prints each annotator's token
discmed data curate load --db curation.sqlite more.jsonl          # consultations with candidates
discmed data curate serve --db curation.sqlite --port 8765 --overlap 0.1
discmed data curate progress --db curation.sqlite
discmed data curate export --db curation.sqlite --out behaviour/  # sft.jsonl, dpo.jsonl, agreement.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from discmed.chat import DataError, write_jsonl
from discmed.errors import fail
from discmed.jobs import end_job
from discmed.serve.cli import is_loopback

DbOpt = Annotated[Path, typer.Option("--db", help="The curation database (SQLite)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary as the last line")]


def _emit(summary: dict) -> None:
    print(json.dumps(summary, ensure_ascii=False, default=str))


def _fail(message: str) -> None:
    fail(message)


def _existing(db: Path) -> Path:
    if not db.is_file():
        _fail(f"no curation database at {db} (create one with `discmed data candidates` or `curate load`)")
    return db


def register(app: typer.Typer) -> None:
    """Add `candidates` and the `curate` sub-group to the `data` group `app`."""
    curate = typer.Typer(
        rich_markup_mode=None,
        help="Behaviour-preference curation: a web tool where annotators pick, reject and edit candidate replies.",
        no_args_is_help=True,
    )
    app.add_typer(curate, name="curate")

    @app.command("candidates")
    def candidates(
        models: Annotated[
            str, typer.Option("--models", help="Comma-separated model specs: tiny,hf:PATH,openai:URL@MODEL")
        ],
        input: Annotated[
            Path, typer.Option("--input", help="Consultations: DISC-Med-SFT or OpenAI messages JSONL")
        ],
        n: Annotated[int, typer.Option("--n", help="Candidates per consultation from each model")] = 3,
        db: DbOpt = Path("curation.sqlite"),
        temperatures: Annotated[
            str, typer.Option(help="Comma-separated; sample i uses the i-th (cycling)")
        ] = "0.7",
        max_new_tokens: Annotated[int, typer.Option(help="Longest reply, in tokens")] = 256,
        top_p: Annotated[float, typer.Option(help="Nucleus sampling")] = 0.95,
        seed: Annotated[int, typer.Option(help="Sample i uses seed + i")] = 0,
        batch_size: Annotated[int, typer.Option(help="Replies in flight at once (a local model's batch)")] = 8,
        with_reference: Annotated[
            bool, typer.Option(help="Keep a final assistant turn as a candidate ('reference')")
        ] = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Generate candidate replies per consultation, stored with provenance (model, parameters, time).

        Resumes: a rerun generates only what is missing."""
        from rich.progress import Progress

        from discmed.data.curate.candidates import generate_candidates, read_prompts
        from discmed.data.curate.store import Store

        specs = [s.strip() for s in models.split(",") if s.strip()]
        try:
            temps = [float(t) for t in temperatures.split(",") if t.strip()]
        except ValueError:
            _fail(f"--temperatures: expected numbers separated by commas, got {temperatures!r}")
        if not specs or n < 1:
            _fail("need at least one model in --models and --n >= 1")
        if not input.is_file():
            _fail(f"no input file at {input}")
        try:
            prompts = read_prompts(input, with_reference=with_reference)
        except DataError as e:
            _fail(str(e))
        store = Store(db)
        with Progress(transient=True) as bar:
            task = bar.add_task("candidates", total=len(prompts) * n * len(specs))
            summary = generate_candidates(
                store,
                prompts,
                specs,
                n=n,
                temperatures=temps,
                max_new_tokens=max_new_tokens,
                top_p=top_p,
                seed=seed,
                batch_size=batch_size,
                on_progress=lambda k: bar.advance(task, k),
            )
        summary["db"] = str(db)
        typer.echo(
            f"{summary['items']} consultations: {summary['generated']} candidates generated, "
            f"{summary['skipped']} already there, {summary['empty']} empty, {summary['failed']} failed, "
            f"{summary['duplicates']} duplicates hidden → {db}"
        )
        if summary["failures"]:
            summary["failed_file"] = str(db.with_name(db.name + ".candidates.failed.jsonl"))
            write_jsonl(summary["failures"], summary["failed_file"])
        summary["failures"] = summary["failures"][:20]
        end_job(summary, what="candidates", as_json=as_json)
        if as_json:
            _emit(summary)

    @curate.command("token")
    def token(
        names: Annotated[list[str], typer.Argument(help="Annotator names")],
        db: DbOpt = Path("curation.sqlite"),
        as_json: JsonOpt = False,
    ) -> None:
        """Issue a sign-in token for each annotator (a new token replaces the old one).

        Only a hash is stored: hand the printed token to the annotator now."""
        from discmed.data.curate.store import CurationError, Store

        store = Store(db)
        tokens = {}
        for name in names:
            try:
                tokens[name] = store.issue_token(name)
            except CurationError as e:
                _fail(str(e))
            typer.echo(f"{name}\t{tokens[name]}")
        if as_json:
            _emit({"db": str(db), "tokens": tokens})

    @curate.command("load")
    def load(
        files: Annotated[
            list[Path],
            typer.Argument(help="JSONL consultations, optionally with a 'candidates' list per line"),
        ],
        db: DbOpt = Path("curation.sqlite"),
        with_reference: Annotated[
            bool, typer.Option(help="Keep a final assistant turn as a candidate ('reference')")
        ] = False,
        overlap: Annotated[
            float | None, typer.Option(help="Fraction of items annotated twice, for agreement")
        ] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Load consultations and candidates made elsewhere into the database."""
        from discmed.data.curate.candidates import load_file
        from discmed.data.curate.store import CurationError, Store

        store = Store(db)
        total = {"records": 0, "items_added": 0, "candidates_added": 0}
        for f in files:
            try:
                s = load_file(store, f, with_reference=with_reference)
            except (DataError, CurationError, OSError) as e:
                _fail(f"{f}: {e}" if not isinstance(e, DataError) else str(e))
            typer.echo(
                f"{f}: {s['records']} records, {s['items_added']} new items, {s['candidates_added']} new candidates"
            )
            for k in total:
                total[k] += s[k]
        if overlap is not None:
            total["overlap_items"] = store.set_overlap(overlap)
        if as_json:
            _emit({"db": str(db), **total})

    @curate.command("serve")
    def serve(
        db: DbOpt = Path("curation.sqlite"),
        host: Annotated[str, typer.Option(help="Address to listen on (beyond loopback needs --allow-remote)")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port")] = 8765,
        allow_remote: Annotated[bool, typer.Option(help="Listen beyond this machine: tokens and consultations travel "
                                                   "in clear HTTP, so put a TLS proxy in front")] = False,
        overlap: Annotated[
            float | None, typer.Option(help="Fraction of items annotated twice, for agreement")
        ] = None,
        lease_minutes: Annotated[
            float, typer.Option(help="An unfinished item returns to the pool after this")
        ] = 30.0,
    ) -> None:
        """Serve the annotation page and its API."""
        from discmed.data.curate.app import serve as run
        from discmed.data.curate.store import CurationError, Store

        if not is_loopback(host) and not allow_remote:
            _fail(f"listening on {host} exposes the annotators' tokens and the consultations beyond this machine "
                  "over plain HTTP: pass --allow-remote (behind a TLS proxy), or use 127.0.0.1")

        _existing(db)
        if overlap is not None:
            try:
                Store(db).set_overlap(overlap)
            except CurationError as e:
                _fail(str(e))
        typer.echo(f"curation tool on http://{host}:{port}/  (database {db})")
        run(db, host=host, port=port, lease_s=lease_minutes * 60)

    @curate.command("progress")
    def progress(db: DbOpt = Path("curation.sqlite"), as_json: JsonOpt = False) -> None:
        """Progress of the whole set and per annotator."""
        import datetime

        from rich.console import Console
        from rich.table import Table

        from discmed.data.curate.store import Store

        p = Store(_existing(db)).progress()
        console = Console()
        console.print(
            f"{p['items']} items, {p['candidates']} candidates; {p['slots_done']}/{p['slots']} annotations done "
            f"({p['items_done']} items complete; {p['overlap_items']} items set for two annotators)"
        )
        table = Table("annotator", "done", "edited", "undone", "holding", "last decision")
        for name, a in p["annotators"].items():
            last = datetime.datetime.fromtimestamp(a["last"]).strftime("%Y-%m-%d %H:%M") if a["last"] else "-"
            table.add_row(name, str(a["done"]), str(a["edited"]), str(a["undone"]), str(a["holding"]), last)
        console.print(table)
        if as_json:
            _emit(p)

    @curate.command("export")
    def export(
        db: DbOpt = Path("curation.sqlite"),
        out: Annotated[
            Path, typer.Option("--out", "-o", help="Folder for sft.jsonl, dpo.jsonl, agreement.json")
        ] = Path("curated"),
        source: Annotated[str, typer.Option(help="'source' of the SFT records")] = "curated",
        as_json: JsonOpt = False,
    ) -> None:
        """Export the behaviour set (DISC-Med-SFT JSONL), DPO pairs and Cohen's κ per annotator pair."""
        from discmed.data.curate.export import export as run
        from discmed.data.curate.store import Store

        s = run(Store(_existing(db)), out, source=source)
        typer.echo(
            f"{s['decisions']} decisions → {s['sft']} SFT records ({s['sft_path']}), {s['dpo']} DPO pairs ({s['dpo_path']})"
        )
        for pair in s["agreement"]:
            typer.echo(
                f"  {pair['a']} × {pair['b']}: {pair['items']} shared items, κ(best) = {pair['kappa_best']}, "
                f"κ(acceptable) = {pair['kappa_acceptable']}"
            )
        if as_json:
            _emit(s)
