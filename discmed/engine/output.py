"""The output processor: token ids in, the deltas a caller reads out.

One per engine. For every generated token it decides whether the request ends (a stop token,
the grammar finished, a stop string, `max_new_tokens`, the model's context), detokenizes,
holds back text that may still become a stop string, and packs the text, ids and logprobs of
the step into a `Delta` — or, for a `final_only` request, keeps them for one delta at the end.

The rules, each written once:

- detokenizing is incremental: tokenizers' `DecodeStream` (one Rust call per token) for a fast
  tokenizer whose decode is the plain one, else a short window decoded again (TGI's and vLLM's
  prefix/read offsets) for a slow one such as Baichuan's sentencepiece; a character split
  across tokens waits for its last byte, and one never completed is dropped;
- stop strings: the reply ends just before the first occurrence of any of them; until then the
  last `len(longest) - 1` characters are held back (a whole stop string would have been found),
  and only text that could complete one is searched again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from discmed.engine.protocol import Delta, Request, TokenLogprob


def find_stop(text: str, stop: list[str], start: int = 0) -> tuple[str, str | None]:
    """`text` cut before the first stop string found at or after `start`, and that string (None
    when none is there)."""
    best, which = -1, None
    for s in stop:
        if s:
            i = text.find(s, start)
            if i >= 0 and (best < 0 or i < best):
                best, which = i, s
    return (text[:best], which) if which is not None else (text, None)


@dataclass
class Output:
    """One request's output state."""

    request: Request
    ids: list[int] = field(default_factory=list)  # generated ids (the end token not among them)
    text: str = ""  # decoded so far (whole characters only)
    sent: int = 0  # characters of text already emitted
    ids_sent: int = 0  # ids already emitted
    checked: int = 0  # characters of text already searched for stop strings
    hold: int = 0  # characters held back: the longest stop string's length minus one
    pending: list[TokenLogprob] = field(default_factory=list)  # logprobs not yet emitted
    prompt_logprobs: list[TokenLogprob] | None = None  # kept for a final_only request's one delta
    decoder: Any = None  # tokenizers' DecodeStream, for a fast tokenizer
    prefix_offset: int = 0  # the window of a slow tokenizer's incremental decode
    read_offset: int = 0

    def __post_init__(self) -> None:
        self.hold = max((len(s) - 1 for s in self.request.params.stop if s), default=0)


class OutputProcessor:
    """Detokenizing, stop rules and delta packing for every request of one engine."""

    def __init__(self, tokenizer: Any, stop_token_ids: list[int], max_model_len: int):
        self.tokenizer = tokenizer
        self.stop_ids = set(stop_token_ids)
        self.max_model_len = max_model_len
        self._rust = None
        rust = getattr(tokenizer, "_tokenizer", None)
        if rust is not None and not getattr(tokenizer, "clean_up_tokenization_spaces", False):
            try:
                from tokenizers.decoders import DecodeStream

                self._rust, self._decode_stream = rust, DecodeStream
            except ImportError:  # tokenizers older than 0.21
                pass

    def start(self, request: Request) -> Output:
        return Output(request)

    def prompt_logprobs(self, out: Output, entries: list[TokenLogprob]) -> Delta | None:
        """The prompt's logprobs: a delta of their own, first (kept for the end when final_only)."""
        if out.request.final_only:
            out.prompt_logprobs = entries
            return None
        return Delta("", prompt_logprobs=entries)

    def step(self, out: Output, tok: int, logprob: TokenLogprob | None = None,
             grammar_done: bool = False) -> tuple[Delta | None, bool]:
        """Record the token picked for `out`: (the delta to send now or None, whether it ended)."""
        req, p = out.request, out.request.params
        if logprob is not None:
            out.pending.append(logprob)
        if tok in self.stop_ids and not req.ignore_eos:
            if logprob is not None:
                out.pending.pop()  # the end token is not output
            return self.finish(out, "stop", stop_reason=tok), True
        out.ids.append(tok)
        self._detokenize(out)
        text, hit = out.text, None
        if p.stop:  # only the new text can complete a stop string: search from just before it
            text, hit = find_stop(out.text, p.stop, max(0, out.checked - out.hold))
            out.checked = len(out.text)
        if hit is not None:
            return self._end(out, text, "stop", hit), True
        if grammar_done:
            return self.finish(out, "stop"), True
        if len(out.ids) >= p.max_new_tokens or len(req.prompt_ids) + len(out.ids) >= self.max_model_len:
            return self.finish(out, "length"), True
        if req.final_only:
            return None, False
        safe = len(text) - out.hold  # anything that may be the start of a stop string waits
        if safe <= out.sent:
            return None, False
        delta = Delta(text[out.sent : safe], logprobs=self._take(out), token_ids=self._ids(out))
        out.sent = safe
        return delta, False

    def finish(self, out: Output, reason: str, *, error: str | None = None, stop_reason: int | str | None = None) -> Delta:
        """The last delta of `out`, ended for `reason` ("stop", "length", "cancelled", "error")."""
        if reason in ("stop", "length"):
            self._detokenize(out, final=True)
            text = find_stop(out.text, out.request.params.stop)[0]
        else:
            text = out.text[: out.sent] if not out.request.final_only else out.text
        return self._end(out, text, reason, stop_reason, error)

    def _end(self, out: Output, text: str, reason: str, stop_reason: int | str | None = None,
             error: str | None = None) -> Delta:
        first = 0 if out.request.final_only else out.sent
        delta = Delta(text[first:], reason, len(out.ids), error, self._take(out), out.prompt_logprobs,
                      self._ids(out), stop_reason)  # fmt: skip
        out.sent = max(out.sent, len(text))
        return delta

    def _take(self, out: Output) -> list[TokenLogprob] | None:
        if out.request.logprobs is None:
            return None
        taken, out.pending = out.pending, []
        return taken

    @staticmethod
    def _ids(out: Output) -> list[int]:
        new = out.ids[out.ids_sent :]
        out.ids_sent = len(out.ids)
        return new

    def _detokenize(self, out: Output, final: bool = False) -> None:
        """Append the text of new tokens to `out.text`; a character split across tokens waits
        for its last byte."""
        if self._rust is not None:
            if final:
                return  # the stream has given every whole character already; a split one is dropped
            if out.decoder is None:
                out.decoder = self._decode_stream(skip_special_tokens=True)
            piece = out.decoder.step(self._rust, out.ids[-1])
            if piece:
                out.text += piece
            return
        decode = self.tokenizer.decode
        before = decode(out.ids[out.prefix_offset : out.read_offset], skip_special_tokens=True)
        after = decode(out.ids[out.prefix_offset :], skip_special_tokens=True)
        if final:
            out.text += after[len(before) :].rstrip("\ufffd")  # a character never completed is dropped
            out.prefix_offset = out.read_offset = len(out.ids)
        elif len(after) > len(before) and (not after.endswith("\ufffd") or len(out.ids) - out.read_offset > 4):
            # (past 4 tokens a UTF-8 character cannot still be incomplete: the bytes are invalid)
            out.text += after[len(before) :]
            out.prefix_offset, out.read_offset = out.read_offset, len(out.ids)
