"""discmed's import graph (scripts/imports.py reads it from the source): no cycle, discmed's own
imports at the top of each module, and `discmed --help` without torch, transformers or FastAPI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import imports  # noqa: E402

# Where an import of discmed's own modules inside a function is the rule, and why.
COMMAND_LINE = ("discmed.cli", "discmed.demo", "discmed.eval.rubric_cli")  # and every `*.cli`: a command
# loads the heavy parts it runs (serve → FastAPI, train → pydantic and TRL) only when it runs
REGISTRATION = "discmed.baichuan"  # registered with transformers where a model loads (it costs the modeling stack)
# (The last cycle, scrub ⇄ deid, was untied: both read the rules of `discmed.data.idrules`.)


def test_no_import_cycle():
    edges, _ = imports.graph()
    assert imports.cycles(edges) == []


def test_own_imports_are_at_the_top():
    _, local = imports.graph()
    stray = [(m, t, line) for m, t, line in local
             if not (m in COMMAND_LINE or m.endswith(".cli") or t.startswith(REGISTRATION))]  # fmt: skip
    assert stray == []


def test_help_loads_no_model_or_server_stack():
    code = ("import sys; from discmed.cli import app\n"
            "heavy = [m for m in ('torch', 'transformers', 'fastapi', 'trl', 'numpy') if m in sys.modules]\n"
            "assert not heavy, heavy")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
