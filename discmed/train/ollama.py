"""An Ollama Modelfile whose prompt layout is discmed.formats', in Ollama's Go template language.

Ollama renders `TEMPLATE` with Go's text/template over `.Messages` (each with `.Role` and
`.Content`), tokenizes the text with special tokens recognised, and adds bos itself when the
GGUF says `tokenizer.ggml.add_bos_token`. So the template writes each format's markers as the
token text the model's vocabulary spells them with (`<reserved_102>` for DISC's 195 in
Baichuan's and the tiny model's vocabularies), and writes bos only when the GGUF will not add it.
The stop tokens and sampling defaults come from the format and the exported generation config.
tests/test_gguf.py renders this template with Go's own text/template and checks the text, and
llama.cpp's ids for it, against the format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from discmed.chat import atomic_write_text, read_json
from discmed.formats import DISC_ASSISTANT_ID, DISC_USER_ID


def _quote(text: str) -> str:
    """A Modelfile parameter value: a JSON string is a quoted string Ollama's parser reads."""
    return json.dumps(text, ensure_ascii=False)


def _vocab_token(folder: Path, token_id: int) -> str:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder)).convert_ids_to_tokens(token_id)


def template(fmt: str, folder: Path, bos: str | None) -> tuple[str, list[str]]:
    """The Go template for `fmt` and its stop strings; `bos` is written first when not None."""
    head = bos or ""
    if fmt == "chatml":
        body = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
                "{{ end }}<|im_start|>assistant\n")
        return head + body, ["<|im_end|>"]
    if fmt == "llama3":
        body = ("<|begin_of_text|>{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
                "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n")
        return body, ["<|eot_id|>"]  # its bos is the format's first marker, never added twice
    if fmt == "disc":
        cfg = read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
        eos = cfg.get("eos_token")
        eos = eos.get("content") if isinstance(eos, dict) else eos
        user, assistant = _vocab_token(folder, DISC_USER_ID), _vocab_token(folder, DISC_ASSISTANT_ID)
        body = ("{{- range .Messages }}{{ if eq .Role \"user\" }}" + user + "{{ .Content }}"
                "{{ else if eq .Role \"assistant\" }}" + assistant + "{{ .Content }}" + (eos or "") +
                "{{ else }}{{ .Content }}{{ end }}{{ end }}" + assistant)
        return head + body, [eos] if eos else []
    raise ValueError(f"no Ollama template for format {fmt!r}: export with --format disc, chatml or llama3")


def write_modelfile(folder: Path, gguf_path: Path, fmt: str, meta: dict[str, Any]) -> Path:
    """Write `folder/Modelfile` for `gguf_path` (a sibling file, named relatively)."""
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False))
    bos = None
    if fmt == "disc" and not add_bos:
        bos = _vocab_token(folder, int(meta["tokenizer.ggml.bos_token_id"]))
    text, stops = template(fmt, folder, bos)
    gen = read_json(folder / "generation_config.json") if (folder / "generation_config.json").is_file() else {}
    lines = [
        "# Written by discmed (train export --gguf). The template is the chat format the weights",
        f"# were trained on ({fmt}); see discmed.train.ollama.",
        f"FROM ./{gguf_path.name}",
        f'TEMPLATE """{text}"""',
    ]
    lines += [f"PARAMETER stop {_quote(s)}" for s in stops]
    if gen.get("do_sample") is False or gen.get("temperature") is None:
        lines.append("PARAMETER temperature 0")
    else:
        lines.append(f"PARAMETER temperature {gen['temperature']}")
    for key, param in (("top_p", "top_p"), ("top_k", "top_k"), ("repetition_penalty", "repeat_penalty")):
        if gen.get(key) is not None and (gen.get("do_sample") is not False or key == "repetition_penalty"):
            lines.append(f"PARAMETER {param} {gen[key]}")
    ctx = meta.get(f"{meta.get('general.architecture')}.context_length")
    if ctx:
        lines.append(f"PARAMETER num_ctx {min(int(ctx), 8192)}")
    path = folder / "Modelfile"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def read_template(modelfile: Path) -> str:
    """The TEMPLATE of a Modelfile written by `write_modelfile` (for tests and `--check`)."""
    text = modelfile.read_text(encoding="utf-8")
    start = text.index('TEMPLATE """') + len('TEMPLATE """')
    return text[start : text.index('"""', start)]
