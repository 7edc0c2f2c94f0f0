"""Baichuan-13B (DISC-MedLLM's base) natively on transformers 5: no `trust_remote_code`.

Importing this package registers `model_type: baichuan` with `AutoConfig`,
`AutoModelForCausalLM` and `AutoTokenizer`, so a published Baichuan-13B / DISC-MedLLM folder, or
one written by `convert_baichuan_checkpoint`, loads with `AutoModelForCausalLM.from_pretrained`.
discmed imports it where it loads a model (the hf backend, training, merge and export), not when
`discmed` itself is imported: registering costs transformers' modeling stack.

    configuration  BaichuanConfig, DISC_GENERATION_DEFAULTS, check_training_dtype
    modeling       BaichuanForCausalLM, BaichuanModel, alibi_slopes
    tokenization   convert_sentencepiece, write_tokenizer, BaichuanTokenizer
    convert        convert_baichuan_checkpoint, save_generation_defaults
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from discmed.baichuan.configuration import DISC_GENERATION_DEFAULTS, BaichuanConfig, check_training_dtype
from discmed.baichuan.convert import convert_baichuan_checkpoint, save_generation_defaults
from discmed.baichuan.modeling import BaichuanForCausalLM, BaichuanModel, alibi_slopes
from discmed.baichuan.tokenization import BaichuanTokenizer, convert_sentencepiece, write_tokenizer

__all__ = ["DISC_GENERATION_DEFAULTS", "BaichuanConfig", "BaichuanForCausalLM", "BaichuanModel", "BaichuanTokenizer",
           "alibi_slopes", "check_training_dtype", "convert_baichuan_checkpoint", "convert_sentencepiece",
           "save_generation_defaults", "write_tokenizer"]  # fmt: skip

AutoConfig.register("baichuan", BaichuanConfig, exist_ok=True)
AutoModelForCausalLM.register(BaichuanConfig, BaichuanForCausalLM, exist_ok=True)
# A published folder's tokenizer_config.json names `BaichuanTokenizer` (with remote code that no
# longer runs); transformers looks registered classes up by that name.
AutoTokenizer.register(BaichuanConfig, tokenizer_class=BaichuanTokenizer, exist_ok=True)
