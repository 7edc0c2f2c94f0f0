"""Baichuan-13B as a native transformers 5 model: ALiBi attention, no rotary embedding.

The module tree is the published checkpoint's, so its tensors load by their own names:
`model.embed_tokens`, per layer `self_attn.W_pack` (q, k and v fused, 3 × hidden rows in that
order), `self_attn.o_proj`, `mlp.gate_proj/up_proj/down_proj` (SiLU-gated),
`input_layernorm`/`post_attention_layernorm` (RMSNorm), `model.norm`, an untied `lm_head`;
no biases anywhere.

Attention bias. The published code adds `slope × key_index` to every query row; softmax does
not change when a row is shifted by a constant, so that equals `-slope × (query - key)`, the
form used here. It is computed from the distance inside the current buffer, and every key a
query may not see is masked, so the bias is right in all three cases discmed needs:

- KV-cache generation: query indices continue after the cached length;
- left padding: pad keys are masked, and distances between real tokens are unchanged;
- packed training (position ids restarting at 0 per conversation, padding-free): attention is
  block-diagonal causal, so the distance is always measured within one conversation.

The bias is built once per forward in float32 and cast to the activation dtype, which keeps
near-token biases exact in bf16 (the published code added large absolute positions in bf16).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationConfig, GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from discmed.baichuan.configuration import DISC_GENERATION_DEFAULTS, BaichuanConfig
from discmed.compat import output_cache, output_cache_field


def alibi_slopes(num_heads: int) -> list[float]:
    """ALiBi head slopes as Baichuan computes them (the ALiBi paper's `get_slopes`).

    For n a power of two: the geometric sequence starting at and with ratio 2^(-8/n). Otherwise
    the slopes of the closest smaller power of two, then every other slope of the next power of
    two (the interleaved ones) until there are n.
    """

    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        return power_of_two(num_heads)
    closest = 2 ** math.floor(math.log2(num_heads))
    return power_of_two(closest) + alibi_slopes(2 * closest)[0::2][: num_heads - closest]


def packed_segments(position_ids: torch.Tensor) -> torch.Tensor:
    """Segment id per token: a new segment starts wherever the position does not follow on by 1.

    Position ids restarting at 0 (packed conversations) open a new segment; ordinary 0..n-1
    positions are one segment; pads with repeated positions fall into segments of their own,
    which does not matter because pads are masked as keys.
    """
    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    return starts.long().cumsum(dim=1)


def attention_bias(
    slopes: torch.Tensor,
    q_len: int,
    past_len: int,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The additive attention bias [batch or 1, heads, q_len, past_len + q_len]: ALiBi plus masking.

    `attention_mask` is transformers' 2D key mask (1 = real token) over past + current tokens,
    or a 4D mask (bool: True = may attend; float: 0 = may attend). Packed segments are read
    from `position_ids` on a forward without cache (training, or a prefill).
    """
    device = slopes.device
    kv_len = past_len + q_len
    q_idx = torch.arange(past_len, kv_len, device=device)
    k_idx = torch.arange(kv_len, device=device)
    distance = q_idx[:, None] - k_idx[None, :]  # [q, kv]
    allowed = (distance >= 0)[None]  # [1 or batch, q, kv]: one row serves all when nothing differs
    if attention_mask is not None and attention_mask.dim() == 2:
        allowed = allowed & attention_mask[:, None, -kv_len:].to(device).bool()
    elif attention_mask is not None and attention_mask.dim() == 4:
        mask4 = attention_mask[:, 0, -q_len:, -kv_len:].to(device)
        allowed = allowed & (mask4 if mask4.dtype == torch.bool else mask4 == 0)
    if position_ids is not None and past_len == 0 and q_len > 1:
        seg = packed_segments(position_ids.to(device))
        allowed = allowed & (seg[:, :, None] == seg[:, None, :])
    # A query always sees itself: rows of left padding would otherwise be fully masked, and a
    # softmax over nothing yields NaN, which would leak into real tokens through 0 × NaN.
    blocked = ~(allowed | (distance == 0))
    # Filled head by head: the only full-size tensor is the result, in the activation dtype
    # (at 40 heads × 4096² a float32 intermediate would cost several GB).
    distance = distance.clamp(min=0).to(torch.float32)
    bias = torch.empty(blocked.shape[0], slopes.numel(), q_len, kv_len, dtype=dtype, device=device)
    for h in range(slopes.numel()):
        bias[:, h] = (-slopes[h] * distance).to(dtype).masked_fill(blocked, torch.finfo(dtype).min)
    return bias


def _one_cache(cache: Cache | None, past_key_values: Cache | None) -> Cache | None:
    """The KV cache under either of its names.

    transformers 5.24 renamed the model input `past_key_values` to `cache`: `generate()` passes
    `cache=`, older releases and discmed's own callers `past_key_values=`. A model that read only
    the old name was handed no cache by `generate()` on 5.24 and decoded each new token without
    its context (greedy tokens went wrong from the second one on). Outputs carry the cache under
    the field name of the installed release (discmed.compat).
    """
    if cache is not None and past_key_values is not None and cache is not past_key_values:
        raise ValueError("give the KV cache once, as `cache` or as `past_key_values`")
    return cache if cache is not None else past_key_values


class BaichuanRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class BaichuanMLP(nn.Module):
    def __init__(self, config: BaichuanConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class BaichuanAttention(nn.Module):
    def __init__(self, config: BaichuanConfig, layer_idx: int) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.hidden_size = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = self.hidden_size // self.num_heads
        self.W_pack = nn.Linear(self.hidden_size, 3 * self.hidden_size, bias=False)
        self.o_proj = nn.Linear(self.hidden_size, self.hidden_size, bias=False)

    def forward(
        self,
        hidden_states: torch.Tensor,
        bias: torch.Tensor,
        past_key_values: Cache | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        bsz, q_len, _ = hidden_states.shape
        # W_pack rows are [q; k; v], each hidden_size long: split, then [b, heads, seq, head_dim].
        q, k, v = self.W_pack(hidden_states).view(bsz, q_len, 3, self.num_heads, self.head_dim).unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        weights = None
        if output_attentions or self.config._attn_implementation == "eager":
            scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim) + bias
            weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
            out = torch.matmul(weights, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.transpose(1, 2).reshape(bsz, q_len, self.hidden_size)
        return self.o_proj(out), (weights if output_attentions else None)


class BaichuanLayer(GradientCheckpointingLayer):
    def __init__(self, config: BaichuanConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = BaichuanAttention(config, layer_idx)
        self.mlp = BaichuanMLP(config)
        self.input_layernorm = BaichuanRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = BaichuanRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        bias: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        output_attentions: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        residual = hidden_states
        attn, weights = self.self_attn(
            self.input_layernorm(hidden_states), bias, past_key_values, output_attentions
        )
        hidden_states = residual + attn
        hidden_states = hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))
        return hidden_states, weights


class BaichuanPreTrainedModel(PreTrainedModel):
    config_class = BaichuanConfig
    config: BaichuanConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["BaichuanLayer"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True
    # Published checkpoints of the remote-code era may carry this stray key.
    _keys_to_ignore_on_load_unexpected = [r"decoder\.version"]


class BaichuanModel(BaichuanPreTrainedModel):
    def __init__(self, config: BaichuanConfig) -> None:
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([BaichuanLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = BaichuanRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.gradient_checkpointing = False
        self._slopes = alibi_slopes(config.num_attention_heads)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        past_key_values = _one_cache(cache, past_key_values)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        if self.gradient_checkpointing and self.training:
            use_cache = False  # the checkpointed layers would write the cache twice
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config)
        if not use_cache:
            past_key_values = None
        output_attentions = bool(
            output_attentions if output_attentions is not None else self.config.output_attentions
        )
        output_hidden_states = bool(
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )

        q_len = inputs_embeds.shape[1]
        past_len = past_key_values.get_seq_length() if past_key_values is not None else 0
        slopes = torch.tensor(self._slopes, dtype=torch.float32, device=inputs_embeds.device)
        bias = attention_bias(slopes, q_len, past_len, attention_mask, position_ids, inputs_embeds.dtype)

        hidden_states = inputs_embeds
        all_hidden = () if output_hidden_states else None
        all_attn = () if output_attentions else None
        for layer in self.layers:
            if output_hidden_states:
                all_hidden += (hidden_states,)
            # hidden_states positional: gradient checkpointing only tracks positional inputs.
            hidden_states, weights = layer(
                hidden_states, bias=bias, past_key_values=past_key_values, output_attentions=output_attentions
            )
            if output_attentions:
                all_attn += (weights,)
        hidden_states = self.norm(hidden_states)
        if output_hidden_states:
            all_hidden += (hidden_states,)
        return BaseModelOutputWithPast(
            last_hidden_state=hidden_states,
            **{output_cache_field(BaseModelOutputWithPast): past_key_values},
            hidden_states=all_hidden,
            attentions=all_attn,
        )


class BaichuanForCausalLM(BaichuanPreTrainedModel, GenerationMixin):
    _tp_plan = {"lm_head": "colwise_gather_output"}

    def __init__(self, config: BaichuanConfig) -> None:
        super().__init__(config)
        self.model = BaichuanModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
        # DISC-MedLLM's sampling settings and 195/196 markers are this family's defaults, so a
        # model saved from here carries them; a folder's own generation_config.json replaces them.
        ids = {k: getattr(config, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
        self.generation_config = GenerationConfig(**{**DISC_GENERATION_DEFAULTS, **ids})

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        cache: Cache | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast | tuple:
        past_key_values = _one_cache(cache, past_key_values)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        hidden_states = outputs.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, keep, :])
        loss = None
        if labels is not None:
            # transformers' causal-LM loss: shifts labels, ignores -100, and divides by
            # `num_items_in_batch` when the trainer passes it (packed and padded batches agree).
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs
            )
        output = CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            **{output_cache_field(CausalLMOutputWithPast): output_cache(outputs)},
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        if return_dict is False:
            return output.to_tuple()
        return output
