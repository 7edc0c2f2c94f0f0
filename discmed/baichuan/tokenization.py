"""Baichuan's SentencePiece `tokenizer.model` as a `tokenizers` fast tokenizer, no remote code.

Baichuan ships a SentencePiece BPE model and a Python tokenizer class that breaks on
transformers >= 4.34 (`'BaichuanTokenizer' object has no attribute 'sp_model'`). This module
rebuilds the same tokenizer from the model file alone, so that its ids equal
`sentencepiece.SentencePieceProcessor.encode` on any text:

- the BPE merges are the vocabulary's pieces ordered by their SentencePiece score (SentencePiece
  BPE merges the adjacent pair whose merged piece scores highest); only pieces SentencePiece
  can merge into (normal and user-defined ones) become merge targets;
- byte fallback: a character missing from the vocabulary becomes its UTF-8 byte pieces;
- normalization follows the model's own `normalizer_spec`: the precompiled character map (none
  for an `identity` model), `remove_extra_whitespaces`, `add_dummy_prefix`,
  `escape_whitespaces`; digits need nothing extra, because a `split_digits` model has no piece
  holding two digits;
- control pieces (`<unk>`, `<s>`, `</s>`) are special tokens, user-defined pieces (Baichuan's
  `<reserved_N>`) plain added tokens matched in text as SentencePiece matches them.

No bos or eos is added automatically: Baichuan's own tokenizer added neither, and discmed's
`disc` format places them itself.

`write_tokenizer` saves a folder (`tokenizer.json` + `tokenizer_config.json`, class
`TokenizersBackend`) that `AutoTokenizer.from_pretrained` loads with transformers alone;
`BaichuanTokenizer` lets a published folder (`tokenizer.model`, `tokenizer_class:
BaichuanTokenizer`) load directly once `discmed` is imported.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers
from tokenizers.models import BPE
from transformers import TokenizersBackend

# sentencepiece_model.proto piece types
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_BPE = 2  # TrainerSpec.model_type


def load_proto(model_file: str | Path):
    """The SentencePiece `ModelProto` of `model_file`, with a clear error when it is not one."""
    # transformers' bundled schema (sentencepiece's own when installed): protobuf is all it needs.
    from transformers.convert_slow_tokenizer import import_protobuf

    proto = import_protobuf().ModelProto()
    try:
        proto.ParseFromString(Path(model_file).read_bytes())
    except Exception as exc:  # protobuf raises DecodeError, a bare Exception subclass
        raise ValueError(f"{model_file}: not a SentencePiece model ({exc})") from exc
    if not proto.pieces:
        raise ValueError(f"{model_file}: pieces: a SentencePiece model has no pieces")
    return proto


def _merges(proto) -> list[tuple[str, str]]:
    """BPE merges: every split (left, right) of a mergeable piece, both halves in the vocabulary.

    Ranked by the merged piece's score, highest first (ties: lower id first), which is the order
    SentencePiece's BPE applies them in.
    """
    vocab = {p.piece: i for i, p in enumerate(proto.pieces) if p.type in (_NORMAL, _USER_DEFINED)}
    ranked = []
    for piece, pid in vocab.items():
        score = proto.pieces[pid].score
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((-score, pid, vocab[left], vocab[right], left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def convert_sentencepiece(model_file: str | Path) -> Tokenizer:
    """Build a `tokenizers.Tokenizer` equal to the SentencePiece BPE model in `model_file`."""
    proto = load_proto(model_file)
    trainer, norm = proto.trainer_spec, proto.normalizer_spec
    if trainer.model_type != _BPE:
        raise ValueError(
            f"{model_file}: trainer_spec.model_type: only BPE models are converted (Baichuan's is BPE)"
        )
    if trainer.treat_whitespace_as_suffix:
        raise ValueError(f"{model_file}: trainer_spec.treat_whitespace_as_suffix: not supported")

    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    unk = proto.pieces[trainer.unk_id].piece
    tokenizer = Tokenizer(
        BPE(
            vocab=vocab,
            merges=_merges(proto),
            unk_token=unk,
            fuse_unk=True,
            byte_fallback=trainer.byte_fallback,
        )
    )

    # SentencePiece's normalizer: character map, then (optionally) trim and squeeze spaces, then
    # the dummy prefix, then spaces → "▁". Its whitespace is the ASCII space only, hence the
    # regexes rather than tokenizers' Strip (which would also eat newlines and tabs).
    steps = []
    if norm.precompiled_charsmap:
        steps.append(normalizers.Precompiled(norm.precompiled_charsmap))
    if norm.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex("^ +| +$"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if norm.add_dummy_prefix:
        # Exact except next to a user-defined piece: transformers normalizes the text between
        # added tokens piece by piece, so each piece gets the prefix. Without a dummy prefix
        # (the Baichuan-style setting) the conversion is exact everywhere.
        steps.append(normalizers.Prepend("▁"))
    if norm.escape_whitespaces:
        steps.append(normalizers.Replace(" ", "▁"))
    if steps:
        tokenizer.normalizer = normalizers.Sequence(steps)
    steps = [decoders.Replace("▁", " ")]
    if trainer.byte_fallback:
        steps += [decoders.ByteFallback(), decoders.Fuse()]
    if norm.add_dummy_prefix:
        steps.append(decoders.Strip(content=" ", left=1, right=0))
    tokenizer.decoder = decoders.Sequence(steps)

    tokenizer.add_tokens(
        [
            AddedToken(p.piece, special=p.type in (_CONTROL, _UNKNOWN), normalized=False)
            for p in proto.pieces
            if p.type in (_CONTROL, _UNKNOWN, _USER_DEFINED)
        ]
    )
    return tokenizer


def _special_tokens(proto) -> dict[str, str]:
    """bos/eos/unk/pad names from the trainer spec; pad falls back to unk (Baichuan's pad id 0)."""
    trainer = proto.trainer_spec
    names = {}
    for key, idx in (
        ("bos_token", trainer.bos_id),
        ("eos_token", trainer.eos_id),
        ("unk_token", trainer.unk_id),
    ):
        if 0 <= idx < len(proto.pieces):
            names[key] = proto.pieces[idx].piece
    pad = trainer.pad_id if 0 <= trainer.pad_id < len(proto.pieces) else 0
    names["pad_token"] = proto.pieces[pad].piece
    return names


def build_tokenizer(model_file: str | Path, model_max_length: int = 4096) -> TokenizersBackend:
    """A transformers tokenizer over `convert_sentencepiece(model_file)`, no bos/eos added."""
    proto = load_proto(model_file)
    return TokenizersBackend(
        tokenizer_object=convert_sentencepiece(model_file),
        model_max_length=model_max_length,
        padding_side="left",  # generation pads on the left; training collators set their own
        clean_up_tokenization_spaces=False,
        **_special_tokens(proto),
    )


def write_tokenizer(model_file: str | Path, folder: str | Path, model_max_length: int = 4096) -> Path:
    """Write `tokenizer.json` + `tokenizer_config.json` for `model_file` into `folder`.

    The folder loads with `AutoTokenizer.from_pretrained(folder)` and no remote code (class
    `TokenizersBackend`, which takes `tokenizer.json` as it is).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    build_tokenizer(model_file, model_max_length).save_pretrained(folder)
    return folder


class BaichuanTokenizer(TokenizersBackend):
    """Loads a published Baichuan folder (`tokenizer.model`, no `tokenizer.json`) without its
    remote code: the SentencePiece model is converted on load by `convert_sentencepiece`."""

    vocab_files_names = {"vocab_file": "tokenizer.model", "tokenizer_file": "tokenizer.json"}
    model_input_names = ["input_ids", "attention_mask"]

    @classmethod
    def convert_to_native_format(cls, trust_remote_code: bool = False, **kwargs):
        # The remote code's pointer must not be saved again with this tokenizer.
        kwargs.pop("auto_map", None)
        kwargs.pop("sp_model_kwargs", None)
        tokenizer_file, vocab_file = kwargs.get("tokenizer_file"), kwargs.get("vocab_file")
        if tokenizer_file and Path(tokenizer_file).is_file():
            return kwargs
        if not (vocab_file and Path(vocab_file).is_file()):
            raise ValueError("a Baichuan tokenizer folder needs tokenizer.json or tokenizer.model")
        kwargs["tokenizer_object"] = convert_sentencepiece(vocab_file)
        proto = load_proto(vocab_file)
        for key, name in _special_tokens(proto).items():
            kwargs.setdefault(key, name)
        # The published tokenizer_config.json says add_bos_token false / add_eos_token false.
        kwargs.pop("add_bos_token", None)
        kwargs.pop("add_eos_token", None)
        return kwargs
