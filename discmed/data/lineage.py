"""Lineage: which bytes each data step read and wrote, so the data card can follow a file back
through the steps that made it instead of adding up every summary in a folder.

Every `discmed data` step (load, scrub, rewrite, kgqa, dedup, decontam, mix) records in its
summary

    "lineage": {"inputs": [FP, ...], "output": FP}     FP = {"path", "bytes", "sha256"}

The card takes the final file's fingerprint, finds the summary whose output it is, then the
summaries whose outputs are that step's inputs, and so on back to the sources.

A fingerprint is the SHA-256 of the whole file, not size + mtime + the first and last
megabyte: a step reads and writes the whole file anyway, and hashing runs at ~500 MB/s on one
core (a 470k-dialogue file, ~750 MB, in ~1.5 s: a few per cent of the cheapest step, dedup,
at that size), while a partial hash would call a file unchanged after an edit in its middle,
and mtime changes with every copy.

    summary = stamp({"step": "dedup", ...}, [fingerprint("in.jsonl")], "out.jsonl")
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any


def fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """{"path" (absolute), "bytes", "sha256"} of a file. Steps that change nothing write the
    bytes they read (a decontam that removes no record), so the path tells such files apart."""
    path = Path(path).absolute()
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest}


def stamp(summary: dict[str, Any], inputs: list[dict[str, Any] | str | os.PathLike],
          output: str | os.PathLike) -> dict[str, Any]:
    """Add `lineage` to a step's summary: the inputs' fingerprints (taken before the step read
    them, or paths to fingerprint now) and the output's. Returns the summary."""
    summary["lineage"] = {"inputs": [x if isinstance(x, dict) else fingerprint(x) for x in inputs],
                          "output": fingerprint(output)}
    return summary
