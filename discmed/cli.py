"""discmed's command line: one Typer app.

    discmed demo | tiny build | inspect | chat | serve | quantize | data … | train … | eval …

Each area adds its own commands (`discmed/<area>/cli.py: register(app)`); heavy libraries are
imported inside commands so that `discmed --help` stays quick.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from discmed.backend import GenParams, load_backend, resolve
from discmed.backends.hf import pick_format
from discmed.chat import iter_conversations, read_json
from discmed.data import cli as data_cli
from discmed.data.curate import cli as curate_cli
from discmed.errors import DiscmedError, guard
from discmed.eval import cli as eval_cli
from discmed.formats import get_format, render_masked
from discmed.gym import cli as gym_cli
from discmed.serve import cli as serve_cli
from discmed.tiny import ensure_tiny
from discmed.train import cli as train_cli

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Plain (click) help, not rich's panels: rich cuts long option names ("--served-model-…") at 80
# columns, and a user must be able to read and copy every option from `--help` in any terminal.
PLAIN = {"rich_markup_mode": None}

app = typer.Typer(
    **PLAIN,
    help="discmed: DISC-MedLLM rebuilt — data, training, chat, serving and evaluation of medical-consultation LLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
tiny_app = typer.Typer(**PLAIN, help="The embedded tiny model (proves the machinery, not medicine).", no_args_is_help=True)
data_app = typer.Typer(**PLAIN, help="DISC-Med-SFT construction: sources, scrub, rewrite, kgqa, dedup, decontam, mix, curation.", no_args_is_help=True)
train_app = typer.Typer(**PLAIN, help="Training: SFT (full, LoRA, QLoRA), DPO, GRPO, merge, export; `train keys` lists "
                        "the recipe keys.", no_args_is_help=True)
eval_app = typer.Typer(**PLAIN, help="Evaluation: exam multiple choice, simulated consultations, judging, scoring.", no_args_is_help=True)
app.add_typer(tiny_app, name="tiny")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
gym_app = typer.Typer(**PLAIN, help="The consultation gym: case ledgers from real cases, checked.", no_args_is_help=True)
app.add_typer(gym_app, name="gym")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"discmed {version('discmed')}")
        except PackageNotFoundError:  # run from a source tree without installing
            print("discmed (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print discmed's version and exit")] = False,
) -> None:
    """discmed: DISC-MedLLM rebuilt — data, training, chat, serving and evaluation of medical-consultation LLMs."""


ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model spec: tiny | hf:PATH_OR_HUB_ID | openai:URL@MODEL | vllm:PATH")]


def emit_json(summary: dict) -> None:
    """The machine-readable summary, always the last line."""
    print(json.dumps(summary, ensure_ascii=False, default=str))


@tiny_app.command("build")
@guard
def tiny_build(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder to write (default: the shared cache)")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if present")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary last")] = False,
) -> None:
    """Build the embedded tiny tokenizer and model (about two minutes on 2 CPU cores)."""
    from discmed import tiny

    target = out or tiny.default_path()
    reused = (target / "discmed-tiny.json").exists() and not force
    tiny.ensure_tiny(target, quiet=False, force=force)
    summary = read_json(target / "discmed-tiny.json")
    summary["reused"] = reused
    print(f"tiny model: {target} ({summary['parameters']:,} parameters, loss {summary['loss_first']} → {summary['loss_last']})")
    if as_json:
        emit_json(summary)


@tiny_app.command("path")
@guard
def tiny_path() -> None:
    """Print the tiny model's folder, building it if needed."""
    print(ensure_tiny(quiet=False))


@app.command()
@guard
def inspect(
    data: Annotated[Path, typer.Argument(help="DISC-Med-SFT or messages JSONL")],
    model: ModelOpt = "tiny",
    format: Annotated[Literal["disc", "chatml", "llama3", "auto"] | None,
                      typer.Option(help="disc | chatml | llama3 | auto (default: the model's)")] = None,
    max_length: Annotated[int, typer.Option(help="Training max length")] = 1200,
    n: Annotated[int, typer.Option("-n", help="How many records to show")] = 1,
    color: Annotated[bool, typer.Option(help="Colour the trained-on tokens")] = True,
) -> None:
    """Show how records are tokenized for training: the trained-on part marked «…» (or green)."""
    from rich.console import Console
    from transformers import AutoTokenizer

    import discmed.baichuan  # noqa: F401  (registers model_type "baichuan": discmed loads its models natively)

    path = resolve(model).path
    tokenizer = AutoTokenizer.from_pretrained(path)
    if format is None:
        from transformers import GenerationConfig

        try:
            gc = GenerationConfig.from_pretrained(path)
        except OSError:
            gc = None
        fmt = pick_format(type("M", (), {"generation_config": gc})(), tokenizer)
    else:
        fmt = get_format(format)
    console = Console(highlight=False)

    for i, conv in enumerate(iter_conversations(data)):
        if i >= n:
            break
        enc = fmt.encode(conv.messages, tokenizer, max_length=max_length)
        console.rule(f"{conv.id} ({conv.source})")
        if enc is None:
            console.print("dropped: no assistant token left within max_length")
            continue
        ids, mask = enc
        console.print(f"{len(ids)} tokens, {sum(mask)} trained on")
        text = render_masked(ids, mask, tokenizer, color=color)
        console.print(text) if color else print(text)


@app.command()
@guard
def chat(
    model: ModelOpt = "tiny",
    stream: Annotated[bool, typer.Option(help="Stream the reply as it is generated")] = True,
    max_new_tokens: Annotated[int | None, typer.Option(help="Reply length limit")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy; default: the model's own")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed: the same seed gives the same reply "
                                                  "here, in jobs and through discmed serve")] = None,
    system: Annotated[str | None, typer.Option(help="A system message")] = None,
    safety: Annotated[bool, typer.Option(help="Red-flag triage and the standing notice")] = True,
    quantize: Annotated[Literal["int8", "int4"] | None, typer.Option(help="int8 | int4 (local models)")] = None,
    triage_model: Annotated[
        str | None, typer.Option(help="A second opinion on red flags from this model spec (rules stay the floor)")
    ] = None,
    triage_timeout: Annotated[float, typer.Option(help="Seconds to wait for --triage-model, then rules alone")] = 3.0,
) -> None:
    """Chat in the terminal (DISC's cli_demo): clear, stream, exit; Ctrl+C stops a reply."""
    from discmed.serve.terminal import chat_loop

    options = {"quantize": quantize} if quantize else {}
    backend = load_backend(model, **options)
    params = backend.default_params() if hasattr(backend, "default_params") else GenParams()
    if max_new_tokens is not None:
        params.max_new_tokens = max_new_tokens
    if temperature is not None:
        params.temperature = temperature
    if seed is not None:
        params.seed = seed
    second = None
    if safety and triage_model:
        from discmed.serve.triage_model import TriageModel

        second = TriageModel(triage_model, timeout=triage_timeout)
    chat_loop(backend, params, streaming=stream, safety=safety, system=system, triage_model=second)


def _register_areas() -> None:
    data_cli.register(data_app)
    curate_cli.register(data_app)
    train_cli.register(train_app)
    eval_cli.register(eval_app)
    gym_cli.register(gym_app, eval_app)
    serve_cli.register(app)
    try:
        from discmed import demo
    except ImportError:  # the demo lands with the whole recipe
        return
    demo.register(app)


_register_areas()


def main() -> None:
    """The entry point: every command is behind `errors.guard`; this is the last boundary."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except DiscmedError as e:
        if os.environ.get("DISCMED_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        if "--json" in sys.argv:
            emit_json({"error": str(e), **({"summary": e.details} if e.details else {})})
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
