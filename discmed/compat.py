"""What differs between the transformers releases discmed supports (pyproject: >=5.23,<6).

transformers 5.24 renamed the KV cache, as a model input and as a model output field, from
`past_key_values` to `cache`. The old names still work on 5.24 with a deprecation warning and
go in 5.40; 5.23 knows only the old ones. discmed's own calls go through these two helpers, so
they use whichever name the installed release (and the model, for remote code) takes.
"""

from __future__ import annotations

import dataclasses
import inspect
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=32)
def _forward_takes_cache(cls: type) -> bool:
    try:
        return "cache" in inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):
        return False


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """`{name: cache}` for `model(...)`: `cache=` where its forward takes it, else `past_key_values=`."""
    return {("cache" if _forward_takes_cache(type(model)) else "past_key_values"): cache}


def output_cache(out: Any) -> Any:
    """The KV cache a model returned, under either field name."""
    return getattr(out, output_cache_field(type(out)))


@lru_cache(maxsize=32)
def output_cache_field(output_class: type) -> str:
    """The name an output class (BaseModelOutputWithPast, CausalLMOutputWithPast) gives the cache."""
    names = {f.name for f in dataclasses.fields(output_class)} if dataclasses.is_dataclass(output_class) else set()
    return "cache" if "cache" in names else "past_key_values"
