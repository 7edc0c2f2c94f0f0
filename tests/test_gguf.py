"""GGUF and Ollama export, proven against llama.cpp itself (issue 26).

llama.cpp's tools are scripts/llamacpp.sh's build (cached by version and flags; `make test`
builds it once, before pytest). Every test here runs the real binaries on the tiny model's
export: llama.cpp's token ids for the rendered multi-turn prompt of every format equal
discmed.formats' ids; greedy decoding through llama.cpp equals discmed's engine for f32, token
for token and to the same end; the Ollama template, rendered by Go's text/template (what Ollama
renders it with), gives the same text as the Jinja template and the same ids; and what llama.cpp
would run wrongly is refused before anything is written.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from discmed.backends.hf import HFBackend
from discmed.backends.llamacpp import LlamaCppBackend
from discmed.contract import GenParams
from discmed.engine.llamacpp import LlamaServer, tool, tools_dir
from discmed.engine.protocol import Request, collect
from discmed.formats import get_format
from discmed.train.gguf import ExportError, export_gguf, gguf_metadata, preflight
from discmed.train.ollama import read_template

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

# Written for this test: multi-turn, a system turn, Chinese with digits, units and English.
CONVERSATION = [
    {"role": "system", "content": "你是一名耐心的全科医生。"},
    {"role": "user", "content": "医生，我头痛三天了，体温37.8℃，怎么办？"},
    {"role": "assistant", "content": "请问头痛是哪个部位？有没有恶心、呕吐？"},
    {"role": "user", "content": "前额痛，没有呕吐。吃了 ibuprofen 200 mg 没用。"},
]
PROMPTS = [
    [{"role": "user", "content": "我咳嗽一个多星期了，晚上更厉害，需要去医院吗？"}],
    [{"role": "user", "content": "孩子发烧39度，精神还可以，怎么退烧？"}],
    CONVERSATION,
]


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def tools() -> Path:
    return tools_dir(build=True)


@pytest.fixture(scope="module")
def exports(tiny_model, tools, tmp_path_factory) -> dict[str, Path]:
    """The tiny model exported as an f32 GGUF in each format (the folder holds the GGUF)."""
    out = {}
    for fmt in ("disc", "chatml", "llama3"):
        folder = tmp_path_factory.mktemp("gguf") / f"tiny-{fmt}"
        summary = export_gguf(tiny_model, folder, quant="f32", fmt=fmt, dtype="fp32")
        out[fmt] = Path(summary["gguf"])
    return out


@pytest.fixture(scope="module")
def servers(exports, tools):
    """llama-server on each format's GGUF, with --jinja so /apply-template renders the GGUF's own template."""
    running = {fmt: LlamaServer(path, binary=tool("llama-server", tools), threads=1, parallel=2,
                                ctx_per_slot=2048, extra=["--jinja"])
               for fmt, path in exports.items()}  # fmt: skip
    yield running
    for s in running.values():
        s.close()


@pytest.fixture(scope="module")
def hf(tiny_model):
    backends = {}

    def get(fmt: str) -> HFBackend:
        if fmt not in backends:
            backends[fmt] = HFBackend(str(tiny_model), format=fmt)
        return backends[fmt]

    yield get
    for b in backends.values():
        b.close()


def test_export_writes_gguf_modelfile_and_template(exports):
    for fmt, path in exports.items():
        folder = path.parent
        assert path.is_file() and path.stat().st_size > 1_000_000
        assert {"Modelfile", "chat_template.jinja", "config.json", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
        meta = gguf_metadata(path)
        assert meta["general.architecture"] == "qwen2"
        assert meta["tokenizer.ggml.pre"] == "qwen2"  # named by its rule, the hash being unknown to llama.cpp
        assert meta["tensor_types"] == ["F32"]
        assert "tokenizer.chat_template" in meta
        modelfile = (folder / "Modelfile").read_text()
        assert f"FROM ./{path.name}" in modelfile
        stop = {"disc": "</s>", "chatml": "<|im_end|>", "llama3": "<|eot_id|>"}[fmt]
        assert f'PARAMETER stop "{stop}"' in modelfile


def test_token_ids_equal_formats_for_multi_turn_prompts(servers, hf):
    """The GGUF's own chat template rendered by llama-server and tokenized as llama-server
    tokenizes a chat prompt (special tokens parsed, bos added where the vocabulary says) gives
    discmed.formats' ids, for every format and every prompt."""
    for fmt, server in servers.items():
        backend = hf(fmt)
        for messages in PROMPTS:
            want = get_format(fmt).prompt(messages, backend.tokenizer, max_length=10**6, reserve=0)
            text = post(server.url + "/apply-template", {"messages": messages})["prompt"]
            got = post(server.url + "/tokenize", {"content": text, "add_special": True, "parse_special": True})
            assert got["tokens"] == want, (fmt, messages[-1]["content"])


def test_plain_text_tokenizes_as_the_hf_tokenizer(servers, hf):
    tok = hf("chatml").tokenizer
    texts = [m["content"] for conv in PROMPTS for m in conv] + ["血压145/95mmHg，HbA1c 6.5%。", "  two  spaces\n\nx"]
    for text in texts:
        got = post(servers["chatml"].url + "/tokenize", {"content": text, "add_special": False})["tokens"]
        assert got == tok(text, add_special_tokens=False)["input_ids"], text


def test_greedy_decoding_equals_discmeds_engine_for_f32(exports, hf, tools):
    """Same prompt ids, greedy, 40 tokens: llama.cpp's ids equal discmed's, and both end alike."""
    params = GenParams(max_new_tokens=40, temperature=0.0)
    for fmt in ("disc", "chatml"):
        backend = hf(fmt)
        ours = [collect(backend.engine, [Request(backend.prompt_ids(m, params), params)])[0] for m in PROMPTS]
        llama = LlamaCppBackend(str(exports[fmt]), threads=1, parallel=2)
        try:  # final_only: the whole reply at once, as chat() and the job engine ask for it
            theirs = collect(llama.engine, [Request(llama.prompt_ids(m, params), params, final_only=True)
                                            for m in PROMPTS])  # fmt: skip
        finally:
            llama.close()
        for a, b in zip(ours, theirs, strict=True):
            assert b.token_ids == a.token_ids, fmt
            assert b.finish_reason == a.finish_reason
            assert b.text == a.text


def _go_render(template: str, messages: list[dict]) -> str:
    done = subprocess.run(["go", "run", "."], input=json.dumps({"template": template, "messages": messages}),
                          capture_output=True, text=True, cwd=ROOT / "tests" / "ollama_render", check=True,
                          env={"GOFLAGS": "-mod=mod", "HOME": str(Path.home()), "PATH": "/usr/bin:/bin",
                               "GOCACHE": str(Path.home() / ".cache" / "go-build")})  # fmt: skip
    return done.stdout


def test_ollama_template_renders_the_same_prompt(exports, servers, hf):
    for fmt, path in exports.items():
        folder = path.parent
        meta = gguf_metadata(path)
        template = read_template(folder / "Modelfile")
        backend = hf(fmt)
        exported = AutoTokenizer.from_pretrained(str(folder))  # its chat template is the format's
        for messages in PROMPTS:
            text = _go_render(template, messages)
            jinja = exported.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            bos = backend.tokenizer.bos_token if meta.get("tokenizer.ggml.add_bos_token") else ""
            assert bos + text == jinja, fmt
            ids = post(servers[fmt].url + "/tokenize", {"content": text, "add_special": True, "parse_special": True})
            want = get_format(fmt).prompt(messages, backend.tokenizer, max_length=10**6, reserve=0)
            assert ids["tokens"] == want, fmt


def test_quantized_export_runs(tiny_model, tools, tmp_path):
    """q4_k_m goes through llama-quantize; q8_0 through the converter; both serve answers."""
    for quant, tensor_type in (("q8_0", "Q8_0"), ("q4_k_m", "Q4_K")):
        summary = export_gguf(tiny_model, tmp_path / quant, quant=quant, fmt="chatml", dtype="fp32")
        path = Path(summary["gguf"])
        assert tensor_type in gguf_metadata(path)["tensor_types"]
        assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # the f32 intermediate is gone
        llama = LlamaCppBackend(str(path), threads=1, parallel=1)
        try:
            reply = llama.chat([PROMPTS[0]], GenParams(max_new_tokens=8, temperature=0.0))[0]
        finally:
            llama.close()
        assert reply.finish_reason in ("stop", "length") and reply.strip()


def test_refuses_what_llamacpp_would_run_wrongly(tiny_model, tmp_path):
    # A Baichuan folder with a layer count llama.cpp runs without positions.
    folder = tmp_path / "baichuan"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["BaichuanForCausalLM"],
                                                    "model_type": "baichuan", "num_hidden_layers": 4}))
    with pytest.raises(ExportError, match="num_hidden_layers 4: .*no positional encoding"):
        preflight(folder)
    # A byte-level BPE tokenizer with a split rule llama.cpp does not implement.
    other = tmp_path / "other"
    shutil.copytree(tiny_model, other)
    data = json.loads((other / "tokenizer.json").read_text())
    data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{L}+|\p{N}{1,2}|\s+|."
    (other / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ExportError, match="none llama.cpp implements"):
        preflight(other)


def test_cli_refuses_an_unknown_quant_before_writing(tiny_model, tmp_path):
    out = tmp_path / "x"
    done = subprocess.run([sys.executable, "-m", "discmed", "train", "export", str(tiny_model), "-o", str(out),
                           "--gguf", "--quant", "q3_z"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode != 0 and "q3_z" in done.stderr and "q4_k_m" in done.stderr
    assert not out.exists()


# -- a tiny native Baichuan-13B (40 layers, ALiBi, SentencePiece) ---------------------------------


@pytest.fixture(scope="module")
def baichuan_gguf(tools, tmp_path_factory) -> Path:
    """A native Baichuan folder as discmed.baichuan.convert writes it (40 layers at a tiny width,
    random weights, a SentencePiece model trained like Baichuan's with 195/196 reserved), exported."""
    import torch
    from test_baichuan import _train_sp

    from discmed.baichuan import BaichuanConfig
    from discmed.baichuan.convert import save_generation_defaults
    from discmed.baichuan.modeling import BaichuanForCausalLM
    from discmed.baichuan.tokenization import write_tokenizer

    tmp = tmp_path_factory.mktemp("baichuan")
    user = [f"<unused_{i}>" for i in range(3, 95)] + [f"<reserved_{i - 93}>" for i in range(95, 197)]
    sp = _train_sp(tmp / "sp", normalization_rule_name="identity", add_dummy_prefix=False,
                   remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, user_defined_symbols=user)
    import sentencepiece as spm

    vocab = spm.SentencePieceProcessor(model_file=str(sp)).get_piece_size()
    torch.manual_seed(3)
    model = BaichuanForCausalLM(BaichuanConfig(vocab_size=vocab, hidden_size=64, intermediate_size=96,
                                               num_hidden_layers=40, num_attention_heads=4, model_max_length=512))
    with torch.no_grad():  # larger than the init scale, so positions (ALiBi) change the argmax
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.08)
    native = tmp / "native"
    model.save_pretrained(native)
    write_tokenizer(sp, native, model_max_length=512)
    shutil.copy2(sp, native / "tokenizer.model")
    save_generation_defaults(native, {})
    return Path(export_gguf(native, tmp / "export", quant="f32", fmt="disc", dtype="fp32")["gguf"])


def test_native_baichuan_parity(baichuan_gguf, tools):
    """llama.cpp's ids for the disc prompt equal discmed.formats', and greedy decoding equals
    discmed's engine on the same folder (ALiBi at 40 layers in both)."""
    folder = baichuan_gguf.parent
    meta = gguf_metadata(baichuan_gguf)
    assert meta["general.architecture"] == "baichuan" and meta["baichuan.block_count"] == 40
    ours = HFBackend(str(folder), format="disc")
    server = LlamaServer(baichuan_gguf, binary=tool("llama-server", tools), threads=1, parallel=1,
                         ctx_per_slot=512, extra=["--jinja"])  # fmt: skip
    try:
        for messages in PROMPTS:
            want = get_format("disc").prompt(messages, ours.tokenizer, max_length=10**6, reserve=0)
            text = post(server.url + "/apply-template", {"messages": messages})["prompt"]
            got = post(server.url + "/tokenize", {"content": text, "add_special": True, "parse_special": True})
            assert got["tokens"] == want, messages[-1]["content"]
    finally:
        server.close()
    params = GenParams(max_new_tokens=24, temperature=0.0)
    llama = LlamaCppBackend(str(baichuan_gguf), threads=1, parallel=1)
    try:
        for messages in PROMPTS:
            a = collect(ours.engine, [Request(ours.prompt_ids(messages, params), params)])[0]
            b = collect(llama.engine, [Request(llama.prompt_ids(messages, params), params)])[0]
            assert b.token_ids == a.token_ids
    finally:
        llama.close()
        ours.close()
