"""The command line a user reads: every option says what it does, the same thing has one
spelling in every command, and `--help` at 80 columns shows every option name whole."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parents[1]


def commands():
    """(path, click command) for every leaf command of `discmed`."""
    from typer import _click as click

    from discmed.cli import app

    root = typer.main.get_command(app)

    def walk(cmd, path, ctx):
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                yield from walk(sub, [*path, name], click.core.Context(sub, parent=ctx, info_name=name))
        else:
            yield " ".join(path), cmd

    return list(walk(root, [], click.core.Context(root)))


def test_every_option_has_a_description():
    missing = [(path, "/".join(p.opts)) for path, cmd in commands() for p in cmd.params
               if type(p).__name__.endswith("Option") and not p.hidden and not (p.help or "").strip()]
    assert missing == []


def test_one_spelling_for_the_same_thing():
    seen: dict[str, set[str]] = {}
    positional_out = []
    for path, cmd in commands():
        for p in cmd.params:
            if type(p).__name__.endswith("Option"):
                for o in [*p.opts, *p.secondary_opts]:
                    seen.setdefault(o, set()).add(path)
            elif p.name in ("out", "dst", "output", "out_dir"):
                positional_out.append(path)
    assert positional_out == []  # what a command writes is --out/-o everywhere
    assert seen.get("--out", set()) <= seen.get("-o", set())
    for gone in ("--max-tokens", "--doctor-max-tokens", "--patient-max-tokens"):  # --max-new-tokens everywhere
        assert gone not in seen, (gone, seen[gone])
    # the call cache: --cache/--no-cache wherever a command has one
    assert seen.get("--no-cache", set()) == seen.get("--cache", set())


@pytest.mark.parametrize("argv", [["serve"], ["eval", "consult"], ["data", "rewrite"], ["data", "decontam"]])
def test_help_at_80_columns_shows_whole_option_names(argv):
    r = subprocess.run([sys.executable, "-m", "discmed", *argv, "--help"], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "80"}, cwd=ROOT, timeout=60)
    assert r.returncode == 0
    names = {o for path, cmd in commands() if path == " ".join(argv) for p in cmd.params
             if type(p).__name__.endswith("Option") for o in p.opts}
    assert names and all(n in r.stdout for n in names), [n for n in names if n not in r.stdout]
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
