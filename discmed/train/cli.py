"""`discmed train sft | dpo | grpo | merge | export`, added to the root app by `register`.

Heavy imports (torch, transformers, TRL) happen inside the commands so `discmed --help` stays
fast. Every command prints a JSON summary as its last line with `--json`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Literal

import typer

from discmed.errors import guard

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="recipe YAML (e.g. recipes/tiny.yaml)")
]
OverridesArg = Annotated[
    list[str] | None, typer.Argument(help="key=value overrides, e.g. learning_rate=2e-5 lora.r=8")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print a JSON summary as the last line")]


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("discmed").setLevel(logging.INFO)


def _finish(summary: dict, as_json: bool) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun / accelerate launch, one summary (from rank 0) is enough
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        keys = ("output_dir", "steps", "train_loss", "final_loss", "samples", "dropped_no_target", "files",
                "reward_first_quarter", "reward_last_quarter", "before", "after")
        for k in keys:
            if k in summary:
                typer.echo(f"{k}: {summary[k]}")


DtypeOpt = Annotated[Literal["auto", "bf16", "fp16", "fp32"], typer.Option(help="auto | bf16 | fp16 | fp32")]


@guard
def sft_cmd(
    config: ConfigOpt = None,
    overrides: OverridesArg = None,
    as_json: JsonOpt = False,
) -> None:
    """Supervised fine-tuning (full, LoRA or QLoRA), packed, resumable."""
    from discmed.train.sft import run_sft

    _setup_logging()
    _finish(run_sft(str(config) if config else {}, list(overrides or [])), as_json)


@guard
def dpo_cmd(
    config: ConfigOpt = None,
    overrides: OverridesArg = None,
    as_json: JsonOpt = False,
) -> None:
    """Direct preference optimisation from {"prompt", "chosen", "rejected"} JSONL pairs."""
    from discmed.train.dpo import run_dpo

    _setup_logging()
    _finish(run_dpo(str(config) if config else {}, list(overrides or [])), as_json)


@guard
def grpo_cmd(
    config: ConfigOpt = None,
    overrides: OverridesArg = None,
    as_json: JsonOpt = False,
) -> None:
    """GRPO on simulated consultations: the doctor against the patient model and the rewards."""
    from discmed.train.grpo import run_grpo

    _setup_logging()
    _finish(run_grpo(str(config) if config else {}, list(overrides or [])), as_json)


@guard
def merge_cmd(
    adapter: Annotated[Path, typer.Argument(help="LoRA adapter folder (output of a lora/qlora run)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the merged full model")],
    base: Annotated[
        str | None, typer.Option("--base", help="base model (default: the adapter's own)")
    ] = None,
    dtype: DtypeOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Merge a LoRA adapter into its base model's weights."""
    from discmed.train.merge import merge

    _finish(merge(adapter, out, base=base, dtype=dtype), as_json)


@guard
def export_cmd(
    model: Annotated[Path, typer.Argument(help="trained model or adapter folder")],
    out: Annotated[Path, typer.Option("--out", "-o", help="export folder")],
    fmt: Annotated[
        Literal["disc", "chatml", "llama3", "auto"] | None,
        typer.Option("--format", help="chat format (default: the trained one)"),
    ] = None,
    dtype: DtypeOpt = "bf16",
    gguf: Annotated[
        bool, typer.Option("--gguf", help="also write a GGUF (llama.cpp's converter) and an Ollama Modelfile")
    ] = False,
    quant: Annotated[
        str, typer.Option("--quant", help="GGUF type: f32, f16, bf16, q8_0 (converter) or q4_k_m, q5_k_m, q6_k, "
                          "q4_0, ... (llama-quantize); with --gguf")
    ] = "q8_0",
    as_json: JsonOpt = False,
) -> None:
    """Write a servable folder: safetensors, chat template, generation config, model card.

    The tokenizer carries the trained format's chat template; the generation config DISC's
    ids 195/196 where the format is disc. With --gguf, the folder also gets NAME.QUANT.gguf
    and a Modelfile for Ollama, written by llama.cpp's own tools (`make llamacpp` builds them);
    a model llama.cpp would run wrongly is refused with the reason."""
    if gguf:
        from discmed.train.gguf import export_gguf

        _finish(export_gguf(model, out, quant=quant, fmt=fmt, dtype=dtype), as_json)
        return
    from discmed.train.merge import export

    _finish(export(model, out, fmt=fmt, dtype=dtype), as_json)


def keys_cmd(
    kind: Annotated[Literal["sft", "dpo", "grpo"], typer.Argument(help="sft | dpo | grpo")] = "sft",
    markdown: Annotated[bool, typer.Option("--markdown", help="print a Markdown table (for a README)")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List every recipe key of a training kind: type, default, what it means."""
    from discmed.train.config import recipe_keys

    rows = recipe_keys(kind)
    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
    elif markdown:
        print("| key | type | default | what it means |\n|---|---|---|---|")
        for r in rows:
            print(f"| `{r['key']}` | {r['type']} | `{r['default']}` | {r['help']} |")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"train {kind}: recipe keys (YAML, or key=value on the command line)")
        table.add_column("key", no_wrap=True)
        table.add_column("default", max_width=24, overflow="fold")
        table.add_column("what it means")
        for r in rows:
            table.add_row(r["key"], r["default"], r["help"])
        Console().print(table)


def register(app: typer.Typer) -> None:
    """Add `sft`, `dpo`, `grpo`, `merge`, `export` and `keys` to `app` (the root cli's `train` group)."""
    app.command("keys")(keys_cmd)
    app.command("sft")(sft_cmd)
    app.command("dpo")(dpo_cmd)
    app.command("grpo")(grpo_cmd)
    app.command("merge")(merge_cmd)
    app.command("export")(export_cmd)


def main() -> None:
    """`python -m discmed.train …`: the entry point for accelerate launch and torchrun."""
    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)
    register(app)
    app()
