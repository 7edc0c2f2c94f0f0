"""Run llama.cpp's convert_hf_to_gguf.py, naming the pre-tokenizer where its hash table cannot.

    python -m discmed.train.gguf_convert TOOLS MODEL_DIR [converter options] [--pre-tokenizer NAME]

TOOLS is a llama.cpp tools folder (scripts/llamacpp.sh): its convert_hf_to_gguf.py, conversion/
and gguf-py/ are imported as they are. The only change is to `get_vocab_base_pre`: when the
converter does not recognise the tokenizer's hash, it returns NAME, which discmed.train.gguf has
already established is this tokenizer's split rule (compared as a rule, not guessed). Nothing
else of the conversion is discmed's.
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
    sys.argv = [f"{tools}/convert_hf_to_gguf.py", model, *rest]
    runpy.run_path(f"{tools}/convert_hf_to_gguf.py", run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
