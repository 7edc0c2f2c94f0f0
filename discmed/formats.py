"""Chat formats: the only code in discmed that turns a conversation into token ids.

Every format answers two questions, so training and serving cannot drift apart:

- `encode(messages, tokenizer, max_length)` → `(input_ids, assistant_mask)` for training, the
  mask 1 exactly on the tokens the loss is taken on; `None` when nothing is left to train on.
- `prompt(messages, tokenizer, max_length, reserve)` → the ids a model continues to answer,
  dropping the oldest whole rounds when the prompt must shrink to leave `reserve` tokens for
  the reply.

Formats:

- `disc`: DISC-MedLLM's own (Baichuan-13B). `[bos]`, then per turn: user → `[195] + tokens`,
  assistant → `[196] + tokens + [eos]`. Targets: assistant content and its eos; never bos, user
  turns or the 196 marker. A turn that would pass `max_length` ends the conversation (whole
  turns only, as DISC's code does). A system message, which DISC never had, goes in as plain
  tokens after bos (Baichuan 2's convention).
- `chatml` (Qwen and others) and `llama3`: the published layouts, targets = assistant content
  plus its end-of-turn token.
- `auto`: the tokenizer's own chat template (`apply_chat_template`), assistant spans found by
  rendering each prefix of the conversation; refused, with the reason, for templates that
  rewrite earlier turns.

Content is tokenized with `split_special_tokens=True`: a user who types "<|im_end|>" gets those
characters, not a control token.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from discmed.chat import Message, validate_messages
from discmed.errors import DiscmedError

DISC_USER_ID = 195
DISC_ASSISTANT_ID = 196

Encoded = tuple[list[int], list[int]]


class FormatError(DiscmedError, ValueError):
    """A tokenizer or conversation that a format cannot handle."""


def _tokens(tokenizer: Any, text: str) -> list[int]:
    """Plain content tokens: no bos/eos added, special-token strings kept as text."""
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def _markup(tokenizer: Any, text: str) -> list[int]:
    """Format markup tokens: special-token strings in it ARE control tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _special_id(tokenizer: Any, token: str, fmt: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tid == tokenizer.unk_token_id or _markup(tokenizer, token) != [tid]:
        raise FormatError(f"format {fmt!r} needs the special token {token} in the tokenizer's vocabulary")
    return tid


def _rounds(messages: list[Message]) -> tuple[list[Message], list[list[Message]]]:
    """Split validated messages into leading system messages and user(+assistant) rounds."""
    system = [m for m in messages if m["role"] == "system"]
    rest = messages[len(system) :]
    rounds: list[list[Message]] = []
    for m in rest:
        if m["role"] == "user":
            rounds.append([m])
        else:
            rounds[-1].append(m)
    return system, rounds


def _join_turns(prefix: list[int], turns: list[tuple[str, list[int], list[int]]], max_length: int | None) -> Encoded | None:
    """Prefix + whole turns while they fit, ending at the last assistant turn; None if no target is left."""
    ids, mask = list(prefix), [0] * len(prefix)
    end_of_last_target = 0  # length of ids after the last assistant turn that fit
    for role, p_ids, p_mask in turns:
        if max_length is not None and len(ids) + len(p_ids) > max_length:
            break  # whole turns only: this turn and everything after it are dropped
        ids += p_ids
        mask += p_mask
        if role == "assistant":
            end_of_last_target = len(ids)
    ids, mask = ids[:end_of_last_target], mask[:end_of_last_target]
    return (ids, mask) if any(mask) else None


@dataclass
class _PieceFormat:
    """A format whose ids are a fixed prefix followed by one independent piece per message."""

    name: str

    # -- what each format defines -------------------------------------------------------
    def prefix(self, tokenizer: Any) -> list[int]:
        return []

    def piece(self, message: Message, tokenizer: Any) -> Encoded:
        raise NotImplementedError

    def generation_start(self, tokenizer: Any) -> list[int]:
        raise NotImplementedError

    def stop_token_ids(self, tokenizer: Any) -> list[int]:
        return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    # -- shared logic -------------------------------------------------------------------
    def encode(self, messages: Sequence[Message], tokenizer: Any, max_length: int | None = 1200) -> Encoded | None:
        messages = validate_messages(list(messages), field_name="messages", require_assistant=False)
        turns = [(m["role"], *self.piece(m, tokenizer)) for m in messages]
        return _join_turns(self.prefix(tokenizer), turns, max_length)

    def prompt(
        self, messages: Sequence[Message], tokenizer: Any, max_length: int = 4096, reserve: int = 512,
        template_kwargs: dict[str, Any] | None = None,
    ) -> list[int]:
        # template_kwargs (a request's chat_template_kwargs) are a template's variables: a
        # built-in format has none, so they change nothing here, as an unused variable in vLLM.
        messages = validate_messages(list(messages), field_name="messages", require_assistant=False)
        if messages[-1]["role"] != "user":
            raise FormatError("a generation prompt must end with a user message")
        budget = max_length - reserve
        system, rounds = _rounds(messages)
        head = self.prefix(tokenizer)
        for m in system:
            head += self.piece(m, tokenizer)[0]
        tail = self.generation_start(tokenizer)
        # Newest rounds first, as Baichuan's chat does: keep whole rounds while they fit.
        body: list[int] = []
        for i, rnd in enumerate(reversed(rounds)):
            r_ids = [t for m in rnd for t in self.piece(m, tokenizer)[0]]
            if i > 0 and len(head) + len(body) + len(r_ids) + len(tail) > budget:
                break
            body = r_ids + body
        room = budget - len(head) - len(tail)
        if len(body) > room:  # even the newest round alone is too long: keep its latest tokens
            if room <= 0:
                raise FormatError(f"max_length {max_length} - reserve {reserve} leaves no room for the prompt")
            body = body[-room:]
        return head + body + tail


@dataclass
class DiscFormat(_PieceFormat):
    name: str = "disc"
    user_id: int = DISC_USER_ID
    assistant_id: int = DISC_ASSISTANT_ID

    def prefix(self, tokenizer: Any) -> list[int]:
        if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
            raise FormatError("format 'disc' needs a tokenizer with bos and eos tokens")
        return [tokenizer.bos_token_id]

    def piece(self, message: Message, tokenizer: Any) -> Encoded:
        content = _tokens(tokenizer, message["content"])
        if message["role"] == "user":
            return [self.user_id] + content, [0] * (len(content) + 1)
        if message["role"] == "assistant":
            return [self.assistant_id] + content + [tokenizer.eos_token_id], [0] + [1] * (len(content) + 1)
        return content, [0] * len(content)

    def generation_start(self, tokenizer: Any) -> list[int]:
        return [self.assistant_id]


@dataclass
class ChatMLFormat(_PieceFormat):
    name: str = "chatml"

    def piece(self, message: Message, tokenizer: Any) -> Encoded:
        end = _special_id(tokenizer, "<|im_end|>", self.name)
        head = _markup(tokenizer, f"<|im_start|>{message['role']}\n")
        content = _tokens(tokenizer, message["content"])
        newline = _markup(tokenizer, "\n")
        target = 1 if message["role"] == "assistant" else 0
        ids = head + content + [end] + newline
        return ids, [0] * len(head) + [target] * (len(content) + 1) + [0] * len(newline)

    def generation_start(self, tokenizer: Any) -> list[int]:
        _special_id(tokenizer, "<|im_start|>", self.name)
        return _markup(tokenizer, "<|im_start|>assistant\n")

    def stop_token_ids(self, tokenizer: Any) -> list[int]:
        ids = [_special_id(tokenizer, "<|im_end|>", self.name)]
        return ids + [t for t in super().stop_token_ids(tokenizer) if t not in ids]


@dataclass
class Llama3Format(_PieceFormat):
    name: str = "llama3"

    def prefix(self, tokenizer: Any) -> list[int]:
        return [_special_id(tokenizer, "<|begin_of_text|>", self.name)]

    def piece(self, message: Message, tokenizer: Any) -> Encoded:
        end = _special_id(tokenizer, "<|eot_id|>", self.name)
        head = _markup(tokenizer, f"<|start_header_id|>{message['role']}<|end_header_id|>\n\n")
        content = _tokens(tokenizer, message["content"])
        target = 1 if message["role"] == "assistant" else 0
        return head + content + [end], [0] * len(head) + [target] * (len(content) + 1)

    def generation_start(self, tokenizer: Any) -> list[int]:
        return _markup(tokenizer, "<|start_header_id|>assistant<|end_header_id|>\n\n")

    def stop_token_ids(self, tokenizer: Any) -> list[int]:
        ids = [_special_id(tokenizer, "<|eot_id|>", self.name)]
        return ids + [t for t in super().stop_token_ids(tokenizer) if t not in ids]


@dataclass
class TemplateFormat:
    """The tokenizer's own chat template, with assistant spans found by prefix rendering."""

    name: str = "auto"

    def _render(self, tokenizer: Any, messages: list[Message], generation: bool, **template_kwargs: Any) -> str:
        if not getattr(tokenizer, "chat_template", None):
            raise FormatError("format 'auto' needs a tokenizer with a chat template; pass a format name instead")
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation, **template_kwargs)

    def _segments(self, messages: list[Message], tokenizer: Any) -> list[tuple[str, int, int]]:
        """(text, target, message index) segments whose concatenation is the full rendering."""
        segments: list[tuple[str, int, int]] = []
        done = ""
        for k, message in enumerate(messages):
            full = self._render(tokenizer, messages[: k + 1], generation=False)
            if message["role"] == "assistant":
                start = self._render(tokenizer, messages[:k], generation=True)
                if not (start.startswith(done) and full.startswith(start)):
                    raise FormatError(
                        "the chat template rewrites earlier turns (not prefix-stable); "
                        "assistant masks cannot be derived from it — pass a format name instead"
                    )
                segments.append((start[len(done) :], 0, k))
                segments.append((full[len(start) :], 1, k))
            else:
                if not full.startswith(done):
                    raise FormatError("the chat template rewrites earlier turns (not prefix-stable)")
                segments.append((full[len(done) :], 0, k))
            done = full
        return segments

    def encode(self, messages: Sequence[Message], tokenizer: Any, max_length: int | None = 1200) -> Encoded | None:
        messages = validate_messages(list(messages), field_name="messages", require_assistant=False)
        segments = self._segments(messages, tokenizer)
        turns = []
        for k, message in enumerate(messages):
            p_ids: list[int] = []
            p_mask: list[int] = []
            for text, target, idx in segments:
                if idx == k and text:
                    t = _markup(tokenizer, text)
                    p_ids += t
                    p_mask += [target] * len(t)
            turns.append((message["role"], p_ids, p_mask))
        return _join_turns([], turns, max_length)

    def prompt(
        self, messages: Sequence[Message], tokenizer: Any, max_length: int = 4096, reserve: int = 512,
        template_kwargs: dict[str, Any] | None = None,
    ) -> list[int]:
        """`template_kwargs`: variables for the template (a request's chat_template_kwargs, e.g.
        Qwen3's enable_thinking)."""
        messages = validate_messages(list(messages), field_name="messages", require_assistant=False)
        if messages[-1]["role"] != "user":
            raise FormatError("a generation prompt must end with a user message")
        budget = max_length - reserve
        system, rounds = _rounds(messages)
        # Re-render with fewer rounds until it fits: templates may add defaults per rendering.
        for start in range(len(rounds)):
            kept = system + [m for rnd in rounds[start:] for m in rnd]
            ids = _markup(tokenizer, self._render(tokenizer, kept, generation=True, **(template_kwargs or {})))
            if len(ids) <= budget:
                return ids
        if budget <= 0:
            raise FormatError(f"max_length {max_length} - reserve {reserve} leaves no room for the prompt")
        return ids[-budget:]

    def stop_token_ids(self, tokenizer: Any) -> list[int]:
        ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
            tid = tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid not in ids:
                ids.append(tid)
        return ids


FORMATS = {"disc": DiscFormat, "chatml": ChatMLFormat, "llama3": Llama3Format, "auto": TemplateFormat}


def get_format(name: str, **options: Any):
    """The chat format called `name` (`disc`, `chatml`, `llama3`, `auto`)."""
    try:
        return FORMATS[name](**options)
    except KeyError:
        raise FormatError(f"unknown chat format {name!r} (expected one of {', '.join(FORMATS)})") from None


@dataclass
class EncodeStats:
    """Counts from encoding a corpus: what was kept, dropped, and how many tokens are targets."""

    kept: int = 0
    dropped_no_target: int = 0
    tokens: int = 0
    target_tokens: int = 0
    truncated: int = 0
    dropped_ids: list[str] = field(default_factory=list)


def encode_many(
    conversations: Iterable[tuple[str, Sequence[Message]]], fmt: Any, tokenizer: Any, max_length: int = 1200
) -> tuple[list[Encoded], EncodeStats]:
    """Encode `(id, messages)` pairs for training; samples with no target left are dropped and
    counted (their ids kept, up to 20), cut ones counted. Training builds its labels from this."""
    stats = EncodeStats()
    out: list[Encoded] = []
    for conv_id, messages in conversations:
        full = fmt.encode(messages, tokenizer, max_length=None)
        # Only a conversation longer than max_length is encoded again, cut at a turn boundary.
        enc = full if full is None or len(full[0]) <= max_length else fmt.encode(messages, tokenizer, max_length=max_length)
        if enc is None:
            stats.dropped_no_target += 1
            if len(stats.dropped_ids) < 20:
                stats.dropped_ids.append(conv_id)
            continue
        if full is not None and len(full[0]) > len(enc[0]):
            stats.truncated += 1
        stats.kept += 1
        stats.tokens += len(enc[0])
        stats.target_tokens += sum(enc[1])
        out.append(enc)
    return out, stats


def render_masked(ids: Sequence[int], mask: Sequence[int], tokenizer: Any, color: bool = False) -> str:
    """A tokenized conversation as text, the target (trained-on) spans visible.

    Plain: target spans between «» and every special token as <name>; with `color`, rich
    markup (targets green, the rest dim) for a terminal.
    """
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    special |= {DISC_USER_ID, DISC_ASSISTANT_ID} & set(ids)
    out: list[str] = []
    i = 0
    while i < len(ids):
        j = i
        while j < len(ids) and mask[j] == mask[i] and (ids[j] in special) == (ids[i] in special):
            j += 1
        if ids[i] in special:
            text = "".join(f"<{tokenizer.convert_ids_to_tokens(t)}|{t}>" for t in ids[i:j])
        else:
            text = tokenizer.decode(list(ids[i:j]))
        if color:
            from rich.markup import escape

            text = f"[bold green]{escape(text)}[/]" if mask[i] else f"[dim]{escape(text)}[/]"
        elif mask[i]:
            text = f"«{text}»"
        out.append(text)
        i = j
    return "".join(out)
