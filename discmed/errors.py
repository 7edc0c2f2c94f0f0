"""The errors discmed reports to its user as one line, and the exit code each one gives.

Every error a user can cause or fix (a bad record, a bad recipe, a model that cannot be
loaded or reached) derives from `DiscmedError`; `discmed`'s entry point prints it as
`error: <message>` (and `{"error": …}` last under `--json`) and exits with its code:

    2  bad input: data, recipe, model spec, chat format (typer's own usage errors are 2 too)
    3  a model that cannot be loaded or reached, or refuses what was asked
    1  anything else (a bug: the traceback is shown)
"""

from __future__ import annotations


class DiscmedError(Exception):
    """Base of the errors that are the user's to fix; `exit_code` says which kind."""

    exit_code = 2


class SpecError(DiscmedError, ValueError):
    """A model spec that names no backend or no model (`vlm:/x`, `hf:/nonexistent`)."""
