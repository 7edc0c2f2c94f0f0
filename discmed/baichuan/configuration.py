"""Baichuan-13B's configuration, native to transformers 5 (no remote code).

The field names and defaults are those of the published `config.json` (hidden 5120, 40 layers,
40 heads, intermediate 13696, vocab 64000, `model_max_length` 4096, RMSNorm eps 1e-6, pad 0 /
bos 1 / eos 2, untied `lm_head`), so a published folder loads as it is: keys only the remote
code used (`auto_map`, `gradient_checkpointing`, `_from_model_config`) are kept as plain
attributes and do nothing.

Also here, because they need no torch: DISC-MedLLM's generation defaults and the training
dtype check that refuses fp16 for this family.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

# DISC-MedLLM's published generation_config.json: sampling as DISC ships it, and the ids of the
# user / assistant markers its `disc` chat format puts before each turn.
DISC_GENERATION_DEFAULTS: dict[str, Any] = {
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "user_token_id": 195,
    "assistant_token_id": 196,
    "max_new_tokens": 2048,
    "temperature": 0.3,
    "top_k": 5,
    "top_p": 0.85,
    "repetition_penalty": 1.1,
    "do_sample": True,
}


@strict(accept_kwargs=True)
class BaichuanConfig(PreTrainedConfig):
    """Configuration of a Baichuan-13B-style model: ALiBi attention, fused `W_pack`, SiLU MLP."""

    model_type = "baichuan"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]
    # Code written for Llama-style configs (vLLM, discmed's length checks) asks for this name.
    attribute_map = {"max_position_embeddings": "model_max_length"}
    base_model_tp_plan = {
        "layers.*.self_attn.W_pack": "colwise",
        "layers.*.self_attn.o_proj": "rowwise",
        "layers.*.mlp.gate_proj": "colwise",
        "layers.*.mlp.up_proj": "colwise",
        "layers.*.mlp.down_proj": "rowwise",
    }

    vocab_size: int = 64000
    hidden_size: int = 5120
    intermediate_size: int = 13696
    num_hidden_layers: int = 40
    num_attention_heads: int = 40
    hidden_act: str = "silu"
    model_max_length: int = 4096
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    tie_word_embeddings: bool = False

    def validate_architecture(self) -> None:
        """Part of `@strict` validation: the head split must be exact (W_pack is 3 × hidden rows)."""
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) is not a multiple of num_attention_heads ({self.num_attention_heads})"
            )


def check_training_dtype(config: Any, fp16: bool) -> None:
    """Refuse fp16 training for Baichuan models, saying why; bf16 or fp32 are fine.

    Baichuan-13B in fp16 overflows: its ALiBi bias grows with distance (slope × up to 4096) and its
    activations exceed fp16's range, so the loss turns to 0 or NaN within a few steps — the
    failure Baichuan fine-tuners reported. `config` is a model config (or anything with a
    `model_type`); other families pass through.
    """
    if fp16 and getattr(config, "model_type", None) == "baichuan":
        raise ValueError(
            "fp16 training is refused for Baichuan models: ALiBi biases and activations overflow "
            "fp16's range and the loss collapses to 0/NaN. Use bf16 (the default on GPUs that "
            "support it) or fp32."
        )
