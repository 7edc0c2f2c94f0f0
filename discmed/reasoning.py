"""Reasoning apart from the answer: `<think>` blocks and `reasoning_content`.

Reasoning models (DeepSeek-R1, Qwen3, Baichuan-M2, QwQ …) write their thinking before the
answer, either inline in `<think>…</think>` or, behind a server with a reasoning parser
(vLLM, SGLang, DeepSeek's API), in a separate `reasoning_content` (or `reasoning`) field.
Every discmed role — teacher, patient, doctor, judge, grader — wants the answer only: a
rewrite must not carry the teacher's thinking into training data, a patient must not say it,
a parser must not read a verdict the model considered and dropped. The thinking is kept
apart (`Reply.reasoning`), for journals and receipts.

The shapes a reply's text takes, and what `split` makes of them:

- `<think>R</think>A` (a block anywhere, any number of them): reasoning R, answer A;
- `R</think>A` (the template opened the block in the prompt, as DeepSeek-R1's does): R, A;
- `<think>R` never closed (cut off at the token limit while thinking): R, and no answer;
- text without the tags: no reasoning, all answer.
"""

from __future__ import annotations

import re

OPEN, CLOSE = "<think>", "</think>"
_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def split(text: str, started: bool = False) -> tuple[str | None, str]:
    """(reasoning or None, answer) of a reply's text; `started`: the prompt ended inside an
    open `<think>` (the template opened it), so the text begins as reasoning."""
    if not text:
        return None, text or ""
    if started and not text.lstrip().startswith(OPEN):
        text = OPEN + text
    if OPEN not in text and CLOSE not in text:
        return None, text
    parts: list[str] = []
    head, close, rest = text.partition(CLOSE)
    if close and OPEN not in head:  # `R</think>A`: the block was opened by the prompt
        parts.append(head)
        text = rest
    answer = _BLOCK.sub(lambda m: parts.append(m.group(1)) or "", text)
    if OPEN in answer:  # an unclosed block: thinking cut off at the token limit
        answer, _, tail = answer.partition(OPEN)
        parts.append(tail)
    reasoning = "\n\n".join(p.strip() for p in parts if p.strip())
    return reasoning or None, answer.strip() if parts else answer


def separate(reply: str, reasoning: str | None = None, finish_reason: str | None = None) -> str:
    """`reply` as a `Reply` whose text is the answer and whose `reasoning` is the thinking:
    a server's `reasoning_content` (given as `reasoning`) and any `<think>` block in the text.
    A reply already separated is returned as it is."""
    from discmed.backend import Reply

    if getattr(reply, "reasoning", None) is not None:
        return reply
    inline, answer = split(str(reply))
    found = "\n\n".join(r for r in (reasoning, inline) if r and r.strip()) or None
    finish = finish_reason if finish_reason is not None else getattr(reply, "finish_reason", None)
    if found is None and isinstance(reply, Reply) and finish == reply.finish_reason:
        return reply
    return Reply(answer, finish, found)


class StreamSplitter:
    """`split` over a stream of text pieces: `feed(piece)` returns (reasoning, answer) text
    to emit now; a piece that might be the start of a tag is held until it is decided."""

    def __init__(self, started: bool = False):
        self.thinking = started
        self.seen_answer = False
        self.held = ""

    def feed(self, piece: str) -> tuple[str, str]:
        text, self.held = self.held + piece, ""
        reasoning, answer = [], []
        while text:
            tag = CLOSE if self.thinking else OPEN
            at = text.find(tag)
            if at < 0:
                keep = _partial_tag(text, tag)
                out, self.held = text[: len(text) - keep], text[len(text) - keep :]
                (reasoning if self.thinking else answer).append(out)
                break
            (reasoning if self.thinking else answer).append(text[:at])
            text = text[at + len(tag) :]
            if self.thinking and not self.seen_answer:
                text = text.lstrip("\n")  # the blank line after </think> is markup, not answer
            self.thinking = not self.thinking
        if not self.thinking and "".join(answer).strip():
            self.seen_answer = True
        return "".join(reasoning), "".join(answer)

    def flush(self) -> tuple[str, str]:
        held, self.held = self.held, ""
        return (held, "") if self.thinking else ("", held)


def _partial_tag(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper start of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0
