"""The options the evaluation commands share (eval cli and its rubric commands): one spelling each."""

from pathlib import Path
from typing import Annotated

import typer

# The options the model-calling commands share: API timeout, the call cache, the JSON summary.
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="seconds before an API request is abandoned "
                                            "(then retried by the openai client)")]
# One spelling across commands: --cache/--no-cache (as data rewrite and kgqa have it), the file apart.
CacheOpt = Annotated[bool, typer.Option("--cache/--no-cache", help="reuse identical model calls from the call "
                                        "cache (--no-cache: neither read nor write one)")]
CacheFileOpt = Annotated[Path | None, typer.Option("--cache-file", help="call cache file (default: the run's own, "
                                                   "<out>.cache.sqlite)")]
SharedCacheOpt = Annotated[bool, typer.Option("--shared-cache", help="use the shared ~/.cache/discmed/llm_cache.sqlite")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the summary as JSON on the last line")]
