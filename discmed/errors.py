"""The errors discmed reports to its user as one line, and the exit code each one gives.

Every error a user can cause or fix (a bad record, a bad recipe, a model that cannot be
loaded or reached) derives from `DiscmedError`; `discmed`'s entry point prints it as
`error: <message>` (and `{"error": …}` last under `--json`) and exits with its code:

    2  bad input: data, recipe, model spec, chat format (typer's own usage errors are 2 too)
    3  a model that cannot be loaded or reached, or refuses what was asked; a job run that
       stopped because its endpoint kept failing
    4  a job step that ran but some of its items failed: its outputs hold what succeeded, the
       failed items and their reasons are in `OUT.failed.jsonl`
    1  anything else (a bug: the traceback is shown)
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, NoReturn


class DiscmedError(Exception):
    """Base of the errors that are the user's to fix; `exit_code` says which kind. `details`
    (a step's summary, say) travels with the error into the `--json` line."""

    exit_code = 2

    def __init__(self, *args: Any, details: dict | None = None):
        super().__init__(*args)
        self.details = details


class SpecError(DiscmedError, ValueError):
    """A model spec that names no backend or no model (`vlm:/x`, `hf:/nonexistent`)."""


def fail(message: str, as_json: bool = False, code: int = 2, details: dict | None = None) -> NoReturn:
    """End a command with one line on stderr (and `{"error": …}` last on stdout under --json,
    with the step's summary under "summary" when there is one)."""
    import json

    import typer

    typer.echo(f"error: {message}", err=True)
    if as_json:
        line = {"error": message, **({"summary": details} if details else {})}
        typer.echo(json.dumps(line, ensure_ascii=False, default=str))
    raise typer.Exit(code)


def fail_with(e: Exception, as_json: bool = False) -> NoReturn:
    """`fail` for a caught error: a DiscmedError with its own exit code (3 for a model that
    cannot be reached …) and details, anything else (a bad value, a missing file) as bad input."""
    if isinstance(e, DiscmedError):
        fail(str(e), as_json, e.exit_code, e.details)
    fail(str(e), as_json, 2)


def guard(fn: Callable) -> Callable:
    """The error boundary of a command: a DiscmedError (or a missing file, a bad value) ends it
    through `fail` with its exit code; anything else is a bug and keeps its traceback.
    `DISCMED_DEBUG=1` shows the traceback of every error."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (DiscmedError, OSError, ValueError) as e:
            if os.environ.get("DISCMED_DEBUG"):
                raise
            fail_with(e, bool(kwargs.get("as_json")))

    return wrapper
