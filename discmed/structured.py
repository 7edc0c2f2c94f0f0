"""Structured output: `response_format` json_object and json_schema by constrained decoding.

llguidance computes, at every decode step, the set of tokens that keep the output a prefix
of something the grammar accepts; every other token's logit is set to -inf before the shared
sampler picks (discmed.engine: for a `response_format` in `discmed serve`, for a
`GenParams.json_schema` on the hf backend), so the reply is valid JSON by construction, not
parsed after the fact. Chosen over xgrammar on fit, at a per-token cost measured close to it (benchmarks/grammar_cpu.py: 0.19 vs 0.15 ms per token on the tiny model's vocabulary, both
far below a decode step; figures in benchmarks/RESULTS.md): llguidance is one abi3 wheel with
no dependencies, where xgrammar requires triton (a GPU compiler) and a TVM runtime.
"""

from __future__ import annotations

import json
from typing import Any

# No free whitespace between JSON tokens: a small model left free to emit spaces may emit
# nothing else until max_tokens. Strings and numbers are still the model's to choose.
JSON_OPTIONS = {"whitespace_flexible": False}


class GrammarError(ValueError):
    """A response_format that cannot be compiled; `param` names the field."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


class TokenizerNotSupported(GrammarError):
    """A tokenizer llguidance cannot read (it reads fast, Rust-backed tokenizers only)."""


class Grammars:
    """Compiles response formats for one tokenizer (the tokenizer tables are built once)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: list[int]):
        import llguidance
        import llguidance.hf

        self.ll = llguidance
        self.vocab = vocab_size
        self.stop_ids = list(stop_token_ids)
        try:
            self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=self.stop_ids)
        except (ValueError, TypeError) as e:
            raise TokenizerNotSupported(f"response_format: this model's tokenizer ({type(tokenizer).__name__}) "
                                        f"cannot be used for constrained decoding: {e}", "response_format") from None

    def compile(self, response_format: Any) -> str | None:
        """The grammar for a ResponseFormat (None for plain text); GrammarError if it has none."""
        kind = response_format.type
        if kind == "text":
            return None
        if kind == "json_object":
            schema: dict = {"type": "object"}
            param = "response_format"
        else:
            js = response_format.json_schema
            if js is None or js.schema_ is None:
                raise GrammarError("response_format.json_schema.schema: a JSON schema is required", "response_format.json_schema")
            schema, param = js.schema_, "response_format.json_schema.schema"
        return self.schema_grammar(schema, param)

    def schema_grammar(self, schema: dict, param: str = "json_schema") -> str:
        """The grammar of a JSON schema; GrammarError (naming `param`) if it cannot be used."""
        try:
            grammar = self.ll.LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults=JSON_OPTIONS)
        except (ValueError, TypeError) as e:
            raise GrammarError(f"{param}: {e}", param) from None
        is_error, messages = self.ll.LLMatcher.validate_grammar_with_warnings(grammar, self.tokenizer)
        if is_error:
            raise GrammarError(f"{param}: the schema cannot be used for constrained decoding: {messages[0]}", param)
        return grammar

    def constraint(self, grammar: str) -> Constraint:
        return Constraint(self.ll.LLMatcher(self.tokenizer, grammar, log_level=0), self.vocab, self.stop_ids)


class Constraint:
    """One request's matcher, as the engine uses it: `mask` a row of logits in place,
    `accept` the token picked, `done` once the grammar admits nothing more."""

    def __init__(self, matcher: Any, vocab: int, stop_ids: list[int] | None = None):
        self.m, self.vocab, self.stop_ids = matcher, vocab, list(stop_ids or [])

    def mask(self, logits: Any) -> None:
        import numpy as np
        import torch

        if self.m.is_error():
            raise RuntimeError(self.m.get_error())
        if self.m.is_stopped() and self.stop_ids:  # the value is complete: only a stop token is left
            keep = logits[self.stop_ids].clone()
            logits.fill_(float("-inf"))
            logits[self.stop_ids] = keep
            return
        packed = np.frombuffer(self.m.compute_bitmask(), dtype=np.uint8)
        bits = np.unpackbits(packed, bitorder="little")[: self.vocab].view(np.bool_)
        allowed = torch.from_numpy(bits).to(logits.device)
        n = min(len(allowed), logits.shape[-1])
        torch.where(allowed[:n], logits[:n], torch.tensor(float("-inf"), device=logits.device), out=logits[:n])
        logits[n:] = float("-inf")

    def accept(self, token: int) -> None:
        if not self.m.consume_token(token):
            raise RuntimeError(f"the grammar refused token {token}: {self.m.get_error()}")

    def done(self) -> bool:
        return self.m.is_stopped()


def check_schema(schema: dict, param: str) -> None:
    """GrammarError (naming `param`) if `schema` cannot be compiled; no tokenizer needed, so a
    tool's schema is checked whether or not this request decodes to it."""
    import llguidance

    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults=JSON_OPTIONS)
    except (ValueError, TypeError) as e:
        raise GrammarError(f"{param}: {e}", param) from None
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error:
        raise GrammarError(f"{param}: not a JSON schema discmed can decode to: {messages[0]}", param)
