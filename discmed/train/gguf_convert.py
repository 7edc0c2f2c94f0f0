"""Run llama.cpp's convert_hf_to_gguf.py, naming the pre-tokenizer where its hash table cannot.

    python -m discmed.train.gguf_convert TOOLS MODEL_DIR [converter options] [--pre-tokenizer NAME]

TOOLS is a llama.cpp tools folder (scripts/llamacpp.sh): its convert_hf_to_gguf.py, conversion/
and gguf-py/ are imported as they are. Two things change, both named here:

- `get_vocab_base_pre`: when the converter does not recognise the tokenizer's hash, it returns
  NAME, which discmed.train.gguf has already established is this tokenizer's split rule
  (compared as a rule, not guessed);
- Baichuan's `modify_tensors`, at the pinned llama.cpp (llama-cpp-python 0.3.36): for every
  tensor but the fused `W_pack` it calls itself instead of the base class and recurses until
  Python's limit, so no Baichuan model converts. Every other tensor is handed to the base
  class, as every other model class of the converter does (`super().modify_tensors`);
- Baichuan's SentencePiece vocabulary, where the base class drops two things the model file
  says and llama.cpp then tokenizes text differently from SentencePiece: `add_dummy_prefix`
  (written as `add_space_prefix`, as the converter's InternLM and BERT classes do; without it
  llama.cpp puts a space before every text) and user-defined pieces (typed USER_DEFINED, so
  `<reserved_102>`, DISC's 195, is one token in a chat template's text, not twelve).

Nothing else of the conversion is discmed's.
"""

from __future__ import annotations

import runpy
import sys


def main(argv: list[str]) -> None:
    tools, model, *rest = argv
    pre = None
    if "--pre-tokenizer" in rest:
        i = rest.index("--pre-tokenizer")
        pre = rest[i + 1]
        del rest[i : i + 2]
    sys.path[:0] = [f"{tools}/gguf-py", tools]
    if pre is not None:
        from conversion import base

        known = base.TextModel.get_vocab_base_pre

        def get_vocab_base_pre(self, tokenizer):  # noqa: ANN001 (llama.cpp's signature)
            try:
                return known(self, tokenizer)
            except NotImplementedError:
                return pre

        base.TextModel.get_vocab_base_pre = get_vocab_base_pre
    from conversion import baichuan
    from conversion.base import TextModel

    fused = baichuan.BaichuanModel.modify_tensors

    def modify_tensors(self, data_torch, name, bid):  # noqa: ANN001 (llama.cpp's signature)
        if bid is not None and name == f"model.layers.{bid}.self_attn.W_pack.weight":
            return fused(self, data_torch, name, bid)
        return TextModel.modify_tensors(self, data_torch, name, bid)

    baichuan.BaichuanModel.modify_tensors = modify_tensors

    def set_vocab(self):  # noqa: ANN001
        from conversion.base import SentencePieceTokenTypes
        from sentencepiece import sentencepiece_model_pb2 as model_pb2

        proto = model_pb2.ModelProto()
        proto.ParseFromString((self.dir_model / "tokenizer.model").read_bytes())
        create = self._create_vocab_sentencepiece

        def create_vocab():
            tokens, scores, toktypes = create()
            for i, piece in enumerate(proto.pieces):
                if piece.type == model_pb2.ModelProto.SentencePiece.USER_DEFINED and i < len(toktypes):
                    toktypes[i] = SentencePieceTokenTypes.USER_DEFINED
            return tokens, scores, toktypes

        self._create_vocab_sentencepiece = create_vocab
        self._set_vocab_sentencepiece()
        self.gguf_writer.add_add_space_prefix(proto.normalizer_spec.add_dummy_prefix)

    baichuan.BaichuanModel.set_vocab = set_vocab
    sys.argv = [f"{tools}/convert_hf_to_gguf.py", model, *rest]
    runpy.run_path(f"{tools}/convert_hf_to_gguf.py", run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
