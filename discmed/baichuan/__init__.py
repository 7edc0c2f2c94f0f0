"""Baichuan-13B (DISC-MedLLM's base) natively on transformers 5: no `trust_remote_code`.

Importing this package registers `model_type: baichuan` with `AutoConfig` and
`AutoModelForCausalLM`, so after `import discmed` a published Baichuan-13B / DISC-MedLLM folder,
or one written by `convert_baichuan_checkpoint`, loads with `AutoModelForCausalLM.from_pretrained`.

Registration costs what transformers' config machinery costs (it imports torch); the model
and tokenizer classes are registered as stand-ins that import `discmed.baichuan.modeling` /
`tokenization` (transformers' modeling stack) the first time transformers asks them for anything.

    configuration  BaichuanConfig, DISC_GENERATION_DEFAULTS, check_training_dtype
    modeling       BaichuanForCausalLM, BaichuanModel, alibi_slopes
    tokenization   convert_sentencepiece, write_tokenizer, BaichuanTokenizer
    convert        convert_baichuan_checkpoint, save_generation_defaults
"""

from __future__ import annotations

import importlib
from typing import Any

from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from discmed.baichuan.configuration import DISC_GENERATION_DEFAULTS, BaichuanConfig, check_training_dtype

_LAZY = {
    "BaichuanForCausalLM": "discmed.baichuan.modeling",
    "BaichuanModel": "discmed.baichuan.modeling",
    "alibi_slopes": "discmed.baichuan.modeling",
    "convert_sentencepiece": "discmed.baichuan.tokenization",
    "write_tokenizer": "discmed.baichuan.tokenization",
    "BaichuanTokenizer": "discmed.baichuan.tokenization",
    "convert_baichuan_checkpoint": "discmed.baichuan.convert",
    "save_generation_defaults": "discmed.baichuan.convert",
}

__all__ = ["BaichuanConfig", "DISC_GENERATION_DEFAULTS", "check_training_dtype", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _LazyClass(type):
    """Metaclass of the stand-ins below: any attribute they lack comes from the real class."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(cls._real(), name)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._real()(*args, **kwargs)


def _stand_in(name: str, module: str, **attrs: Any) -> type:
    """A class named like `module.name` that imports and defers to it when first used.

    The Auto mappings only read a registered class's name, module and `config_class` before
    calling `from_pretrained` / `_from_config` on it, and those calls reach the real class.
    """
    real = staticmethod(lambda: getattr(importlib.import_module(module), name))
    return _LazyClass(name, (), {"__module__": module, "__qualname__": name, "_real": real, **attrs})


_LazyCausalLM = _stand_in("BaichuanForCausalLM", "discmed.baichuan.modeling", config_class=BaichuanConfig)
# A published folder's tokenizer_config.json names `BaichuanTokenizer` (with remote code that no
# longer runs); transformers looks registered classes up by that name.
_LazyTokenizer = _stand_in("BaichuanTokenizer", "discmed.baichuan.tokenization")

AutoConfig.register("baichuan", BaichuanConfig, exist_ok=True)
AutoModelForCausalLM.register(BaichuanConfig, _LazyCausalLM, exist_ok=True)
AutoTokenizer.register(BaichuanConfig, tokenizer_class=_LazyTokenizer, exist_ok=True)
