"""Native Baichuan-13B: a scaled-down model with the published structure and random weights,
and the SentencePiece → fast tokenizer conversion checked against sentencepiece itself."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import discmed.baichuan  # noqa: F401  (registers model_type "baichuan")
from discmed.baichuan import BaichuanConfig, check_training_dtype
from discmed.baichuan.modeling import BaichuanForCausalLM, alibi_slopes

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 320

# Written for this test: varied Chinese and English with digits, units, punctuation, spacing.
SAMPLE_TEXTS = [
    "医生，我咳嗽一个多星期了，晚上躺下就咳得厉害，有点白痰，不发烧。",
    "体温38.5℃，心率120次/分，血压145/95mmHg，空腹血糖7.8 mmol/L。",
    "The patient took 500mg  amoxicillin at 10:30 am, then 250 mg at 22:00.",
    "COVID-19疫苗第3针，间隔≥6个月；HbA1c 6.5%以上提示糖尿病。",
    "全角字符：ＡＢＣ１２３，（括号）！？“引号”《书名》……",
    "  leading and trailing spaces  ",
    "tabs\tand\nnew lines\n\n第二段。",
    "罕见字：龘靐齉，emoji 😷🤒，符号 ±×÷→∞",
    "<reserved_102>我头痛三天了<reserved_103>请问是哪个部位痛？",
    "a<reserved_102>b c 1234567890",
    "Ünïcödé façade naïve café — “quotes” and ‘apostrophes’",
    "",
    " ",
    "x",
]
ENGLISH_TRAINING = [
    "The patient reported chest pain for 3 days, with a temperature of 38.5 degrees.",
    "Take 500 mg of amoxicillin twice daily; stop if a rash appears.",
    "Blood pressure 145/95 mmHg, heart rate 88 bpm.  Follow up in 2 weeks!",
    "Drink more water, rest well, and see a doctor if the fever lasts over 72 hours.",
]


def _training_lines() -> list[str]:
    lines = []
    with open(ROOT / "discmed" / "assets" / "corpus" / "dialogues.jsonl", encoding="utf-8") as f:
        for line in f:
            lines += [m["content"] for m in json.loads(line)["conversation"]]
    return lines + ENGLISH_TRAINING * 20


def _train_sp(prefix: Path, **options) -> Path:
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_training_lines()),
        model_prefix=str(prefix),
        model_type="bpe",
        vocab_size=3000,
        hard_vocab_limit=False,
        character_coverage=0.9995,
        byte_fallback=True,
        split_digits=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
        num_threads=1,
        **options,
    )
    return prefix.with_suffix(".model")


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory) -> Path:
    """A SentencePiece model trained like Baichuan's: BPE, byte fallback, digits split, no
    normalization or dummy prefix, whitespace kept; user-defined pieces so that ids 195/196 are
    `<reserved_102>` / `<reserved_103>` as in Baichuan's vocabulary."""
    user = [f"<unused_{i}>" for i in range(3, 95)] + [f"<reserved_{i - 93}>" for i in range(95, 197)]
    return _train_sp(
        tmp_path_factory.mktemp("sp") / "baichuan",
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        user_defined_symbols=user,
    )


def _config(heads: int, layers: int = 2) -> BaichuanConfig:
    return BaichuanConfig(
        vocab_size=VOCAB,
        hidden_size=8 * heads,
        intermediate_size=12 * heads,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        model_max_length=512,
    )


def _model(heads: int, seed: int = 0) -> BaichuanForCausalLM:
    torch.manual_seed(seed)
    model = BaichuanForCausalLM(_config(heads))
    # Random weights larger than the init scale, so attention patterns (and ALiBi) matter.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.15)
    return model.eval()


def _ids(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (1, n), generator=g)


# ---------------------------------------------------------------- ALiBi


def test_alibi_slopes_match_the_published_formula():
    # Power of two: 2^(-8/n · k), k = 1..n.
    assert alibi_slopes(8) == pytest.approx([2.0**-k for k in range(1, 9)])
    # 12 heads: the 8-head slopes, then every other slope of 16 heads (2^(-0.5 k), k = 1, 3, 5, 7).
    assert alibi_slopes(12) == pytest.approx(
        [2.0**-k for k in range(1, 9)] + [2.0 ** (-0.5 * k) for k in (1, 3, 5, 7)]
    )
    # 40 heads (Baichuan-13B): 32-head slopes 2^(-k/4), then 64-head slopes 2^(-k/8) for odd k up to 15.
    expected_40 = [2.0 ** (-k / 4) for k in range(1, 33)] + [2.0 ** (-k / 8) for k in range(1, 16, 2)]
    assert alibi_slopes(40) == pytest.approx(expected_40)
    assert len(set(alibi_slopes(40))) == 40


@pytest.mark.parametrize("heads", [8, 12])
def test_attention_weights_follow_the_published_alibi_mask(heads):
    """Layer 0's attention equals softmax(q·k/√d + slope·key_index, causal), the published form."""
    model = _model(heads)
    ids = _ids(16, 2)
    with torch.no_grad():
        out = model(ids, output_attentions=True, output_hidden_states=True)
        layer = model.model.layers[0]
        h = layer.input_layernorm(out.hidden_states[0])
        d = model.config.hidden_size // heads
        q, k, _ = (h @ layer.self_attn.W_pack.weight.T).view(1, 16, 3, heads, d).unbind(2)
        scores = q.transpose(1, 2) @ k.permute(0, 2, 3, 1) / math.sqrt(d)
        slopes = torch.tensor(alibi_slopes(heads))
        scores = scores + slopes[:, None, None] * torch.arange(16.0)[None, None, :]
        scores = scores.masked_fill(torch.ones(16, 16, dtype=torch.bool).triu(1), float("-inf"))
        torch.testing.assert_close(out.attentions[0], scores.softmax(-1), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- KV cache, padding, generate


@pytest.mark.parametrize("heads", [8, 12])
def test_full_forward_equals_step_by_step_with_kv_cache(heads):
    model = _model(heads)
    ids = _ids(24, heads)
    with torch.no_grad():
        full = model(ids, use_cache=False).logits
        out = model(ids[:, :7], use_cache=True)
        steps, cache = [out.logits], out.past_key_values
        for i in range(7, ids.shape[1]):
            out = model(ids[:, i : i + 1], past_key_values=cache, use_cache=True)
            steps.append(out.logits)
            cache = out.past_key_values
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-4)

    # generate() with its cache picks the same greedy tokens as full forwards without any cache.
    generated = model.generate(
        ids[:, :10], max_new_tokens=8, do_sample=False, repetition_penalty=1.0, pad_token_id=0
    )
    seq = ids[:, :10]
    with torch.no_grad():
        for _ in range(8):
            nxt = model(seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    assert generated.tolist() == seq.tolist()


@pytest.mark.parametrize("heads", [8, 12])
def test_left_padded_batch_equals_single_sequences(heads):
    model = _model(heads, seed=1)
    short, long = _ids(6, 10), _ids(13, 11)
    pad = long.shape[1] - short.shape[1]
    batch = torch.cat([torch.cat([torch.zeros(1, pad, dtype=torch.long), short], 1), long])
    mask = torch.ones_like(batch)
    mask[0, :pad] = 0
    with torch.no_grad():
        padded = model(batch, attention_mask=mask).logits
        single_short = model(short).logits
        single_long = model(long).logits
    torch.testing.assert_close(padded[0, pad:], single_short[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(padded[1], single_long[0], rtol=1e-4, atol=1e-4)

    out = model.generate(
        batch, attention_mask=mask, max_new_tokens=6, do_sample=False, repetition_penalty=1.0, pad_token_id=0
    )
    alone_short = model.generate(
        short, max_new_tokens=6, do_sample=False, repetition_penalty=1.0, pad_token_id=0
    )
    alone_long = model.generate(
        long, max_new_tokens=6, do_sample=False, repetition_penalty=1.0, pad_token_id=0
    )
    assert out[0, pad:].tolist() == alone_short[0].tolist()
    assert out[1].tolist() == alone_long[0].tolist()


# ---------------------------------------------------------------- training


def test_packed_training_equals_unpacked_and_gradient_checkpointing():
    """Position ids restarting at 0 per conversation (padding-free packing, batch size 1) give
    each conversation exactly its own logits and loss; gradient checkpointing changes nothing."""
    model = _model(12, seed=2).train()
    seqs = [_ids(n, 20 + n) for n in (9, 5, 14)]
    labels = [s.clone() for s in seqs]
    for lab in labels:
        lab[0, :2] = -100  # e.g. a masked prompt

    losses, logits = [], []
    for s, lab in zip(seqs, labels, strict=True):
        out = model(s, labels=lab)
        n_targets = (lab[0, 1:] != -100).sum()
        losses.append(out.loss * n_targets)  # summed token loss
        logits.append(out.logits)
    unpacked = torch.stack(losses).sum() / sum((lab[0, 1:] != -100).sum() for lab in labels)

    packed_ids = torch.cat(seqs, dim=1)
    packed_labels = torch.cat(labels, dim=1)
    position_ids = torch.cat([torch.arange(s.shape[1]) for s in seqs])[None]
    packed = model(packed_ids, labels=packed_labels, position_ids=position_ids)
    torch.testing.assert_close(packed.logits, torch.cat(logits, dim=1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(packed.loss, unpacked, rtol=1e-5, atol=1e-5)

    # Without restarted positions the same row is one long sequence: the logits differ.
    joined = model(packed_ids).logits
    assert not torch.allclose(joined[:, 9:], torch.cat(logits, dim=1)[:, 9:], atol=1e-3)

    packed.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    again = model(packed_ids, labels=packed_labels, position_ids=position_ids)
    again.loss.backward()
    torch.testing.assert_close(again.loss, packed.loss)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-5)


def test_lora_round_trip(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    base = _model(8, seed=3)
    ids = _ids(12, 30)
    with torch.no_grad():
        before = base(ids).logits
    peft_model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["W_pack", "o_proj"], lora_dropout=0.0)
    )
    targets = {
        n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in peft_model.named_parameters() if "lora_A" in n
    }
    assert targets == {"W_pack", "o_proj"}
    peft_model.train()
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        loss = peft_model(ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    peft_model.eval()
    with torch.no_grad():
        tuned = peft_model(ids).logits
    assert not torch.allclose(tuned, before, atol=1e-4)
    peft_model.save_pretrained(tmp_path / "adapter")

    reloaded = PeftModel.from_pretrained(_model(8, seed=3), tmp_path / "adapter").eval()
    greedy = {"max_new_tokens": 4, "do_sample": False, "repetition_penalty": 1.0, "pad_token_id": 0}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, tuned, rtol=1e-4, atol=1e-4)
        with_adapter = reloaded.generate(input_ids=ids, **greedy)
        merged = reloaded.merge_and_unload()
        torch.testing.assert_close(merged(ids).logits, tuned, rtol=1e-4, atol=1e-4)
        assert merged.generate(ids, **greedy).tolist() == with_adapter.tolist()


def test_fp16_training_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="fp16.*Baichuan.*bf16"):
        check_training_dtype(_config(8), fp16=True)
    check_training_dtype(_config(8), fp16=False)
    check_training_dtype(type("Other", (), {"model_type": "qwen2"})(), fp16=True)


# ---------------------------------------------------------------- tokenizer


def test_fast_tokenizer_ids_equal_sentencepiece(sp_model, tmp_path):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    from discmed.baichuan.tokenization import write_tokenizer

    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    assert (sp.id_to_piece(195), sp.id_to_piece(196)) == ("<reserved_102>", "<reserved_103>")
    tok = AutoTokenizer.from_pretrained(write_tokenizer(sp_model, tmp_path / "tok"))
    assert type(tok).__name__ == "TokenizersBackend"
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids(["<reserved_102>", "<reserved_103>"]) == [195, 196]

    texts = SAMPLE_TEXTS + _training_lines()[::7]
    for text in texts:
        expected = sp.encode(text)
        assert tok(text)["input_ids"] == expected, text  # no bos/eos added by default
        assert tok.decode(expected) == sp.decode(expected), text
    # The digits are split one by one, as Baichuan's model does.
    assert [sp.id_to_piece(i) for i in tok("2024年")["input_ids"]][:4] == ["2", "0", "2", "4"]
    # Control pieces typed as text: sentencepiece never produces them from text; with
    # split_special_tokens (as discmed's formats tokenize content) neither does the fast tokenizer.
    literal = "</s> <s> <unk> literal"
    assert tok(literal, split_special_tokens=True)["input_ids"] == sp.encode(literal)
    assert tok("你好", add_special_tokens=True)["input_ids"] == sp.encode("你好")

    junk = tmp_path / "tokenizer.model"
    junk.write_text('{"not": "a sentencepiece model"}')
    with pytest.raises(ValueError, match="tokenizer.model: not a SentencePiece model"):
        write_tokenizer(junk, tmp_path / "junk")


def test_fast_tokenizer_follows_the_model_normalizer_spec(tmp_path):
    """A model with SentencePiece's defaults (NFKC map, dummy prefix, whitespace squeezed)."""
    import sentencepiece as spm

    from discmed.baichuan.tokenization import convert_sentencepiece

    model = _train_sp(tmp_path / "llama_like")
    sp = spm.SentencePieceProcessor(model_file=str(model))
    tok = convert_sentencepiece(model)
    for text in [t for t in SAMPLE_TEXTS if "<reserved" not in t] + _training_lines()[::11]:
        assert tok.encode(text, add_special_tokens=False).ids == sp.encode(text), text


# ---------------------------------------------------------------- published folder → native folder


def _write_published_folder(folder: Path, model: BaichuanForCausalLM, sp_model: Path) -> None:
    """Save `model` as Baichuan published it: remote-code config, two pickled shards + index,
    tokenizer.model with a `BaichuanTokenizer` tokenizer_config."""
    folder.mkdir()
    cfg = model.config
    config = {
        "_from_model_config": True,
        "architectures": ["BaichuanForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_baichuan.BaichuanConfig",
            "AutoModelForCausalLM": "modeling_baichuan.BaichuanForCausalLM",
        },
        "bos_token_id": 1,
        "eos_token_id": 2,
        "gradient_checkpointing": False,
        "hidden_act": "silu",
        "hidden_size": cfg.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": cfg.intermediate_size,
        "model_max_length": cfg.model_max_length,
        "model_type": "baichuan",
        "num_attention_heads": cfg.num_attention_heads,
        "num_hidden_layers": cfg.num_hidden_layers,
        "pad_token_id": 0,
        "rms_norm_eps": 1e-06,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.29.2",
        "use_cache": True,
        "vocab_size": cfg.vocab_size,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    state = model.state_dict()
    names = list(state)
    halves = {
        "pytorch_model-00001-of-00002.bin": names[: len(names) // 2],
        "pytorch_model-00002-of-00002.bin": names[len(names) // 2 :],
    }
    weight_map = {}
    for file, part in halves.items():
        torch.save({n: state[n].clone() for n in part}, folder / file)
        weight_map.update({n: file for n in part})
    (folder / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
    )
    (folder / "tokenizer.model").write_bytes(sp_model.read_bytes())

    def added(content: str) -> dict:
        return {
            "__type": "AddedToken",
            "content": content,
            "lstrip": False,
            "normalized": True,
            "rstrip": False,
            "single_word": False,
        }

    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "add_bos_token": False,
                "add_eos_token": False,
                "auto_map": {"AutoTokenizer": ["tokenization_baichuan.BaichuanTokenizer", None]},
                "bos_token": added("<s>"),
                "clean_up_tokenization_spaces": False,
                "eos_token": added("</s>"),
                "model_max_length": cfg.model_max_length,
                "pad_token": added("<unk>"),
                "sp_model_kwargs": {},
                "tokenizer_class": "BaichuanTokenizer",
                "unk_token": added("<unk>"),
            }
        )
    )
    (folder / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": added("<s>"),
                "eos_token": added("</s>"),
                "pad_token": added("<unk>"),
                "unk_token": added("<unk>"),
            }
        )
    )
    (folder / "generation_config.json").write_text(
        json.dumps(
            {
                "user_token_id": 195,
                "assistant_token_id": 196,
                "max_new_tokens": 2048,
                "temperature": 0.3,
                "top_k": 5,
                "top_p": 0.85,
                "repetition_penalty": 1.1,
                "do_sample": True,
                "pad_token_id": 0,
                "bos_token_id": 1,
                "eos_token_id": 2,
            }
        )
    )


def test_published_folder_loads_and_converts(sp_model, tmp_path):
    import sentencepiece as spm
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from discmed.baichuan import convert_baichuan_checkpoint
    from discmed.formats import get_format

    torch.manual_seed(5)
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    model = BaichuanForCausalLM(
        BaichuanConfig(
            vocab_size=sp.get_piece_size(),
            hidden_size=96,
            intermediate_size=144,
            num_hidden_layers=2,
            num_attention_heads=12,
            model_max_length=512,
        )
    ).eval()
    published = tmp_path / "published"
    _write_published_folder(published, model, sp_model)
    names = set(model.state_dict())
    for i in range(2):
        assert {
            f"model.layers.{i}.self_attn.W_pack.weight",
            f"model.layers.{i}.self_attn.o_proj.weight",
            f"model.layers.{i}.mlp.gate_proj.weight",
            f"model.layers.{i}.mlp.up_proj.weight",
            f"model.layers.{i}.mlp.down_proj.weight",
            f"model.layers.{i}.input_layernorm.weight",
            f"model.layers.{i}.post_attention_layernorm.weight",
        } <= names
    assert {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"} <= names
    assert len(names) == 3 + 7 * 2  # nothing else: no biases, no rotary buffers
    assert model.state_dict()["model.layers.0.self_attn.W_pack.weight"].shape == (3 * 96, 96)

    text = "医生，我发烧38.5℃两天了。"
    ids = torch.tensor([sp.encode(text)])
    with torch.no_grad():
        expected = model(ids).logits

    # 1. The published folder itself, with no remote code.
    direct = AutoModelForCausalLM.from_pretrained(published).eval()
    assert type(direct) is BaichuanForCausalLM
    tok = AutoTokenizer.from_pretrained(published)
    assert type(tok).__name__ == "BaichuanTokenizer"
    assert tok(text)["input_ids"] == sp.encode(text)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    with torch.no_grad():
        torch.testing.assert_close(direct(ids).logits, expected)

    # 2. Converted into a native folder: safetensors, no auto_map, DISC's generation defaults.
    native = tmp_path / "native"
    summary = convert_baichuan_checkpoint(published, native, progress=False)
    assert summary["tensors"] == len(names) and summary["shards"] == 2
    config = json.loads((native / "config.json").read_text())
    assert config["architectures"] == ["BaichuanForCausalLM"] and "auto_map" not in config
    assert config["model_type"] == "baichuan" and config["model_max_length"] == 512
    gen = json.loads((native / "generation_config.json").read_text())
    assert (gen["top_k"], gen["top_p"], gen["repetition_penalty"]) == (5, 0.85, 1.1)
    assert (gen["user_token_id"], gen["assistant_token_id"], gen["max_new_tokens"]) == (195, 196, 2048)
    with safe_open(native / "model-00001-of-00002.safetensors", "pt") as f:
        assert set(f.keys()) < names
    tok = AutoTokenizer.from_pretrained(native)
    assert type(tok).__name__ == "TokenizersBackend"
    assert tok(text)["input_ids"] == sp.encode(text)
    loaded = AutoModelForCausalLM.from_pretrained(native).eval()
    assert loaded.generation_config.top_k == 5
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, expected)

    # 3. The disc chat format builds the prompt; generation runs with DISC's sampling defaults.
    fmt = get_format("disc")
    prompt = fmt.prompt([{"role": "user", "content": "我头痛三天了"}], tok)
    assert prompt[0] == 1 and prompt[1] == 195 and prompt[-1] == 196
    torch.manual_seed(0)
    out = loaded.generate(torch.tensor([prompt]), max_new_tokens=5)
    assert out.shape[1] <= len(prompt) + 5 and out[0, : len(prompt)].tolist() == prompt

    # 3. Refusals name the file and the field.
    with pytest.raises(FileExistsError, match="native"):
        convert_baichuan_checkpoint(published, native, progress=False)
    original = json.loads((published / "config.json").read_text())
    (published / "config.json").write_text(json.dumps({**original, "intermediate_size": 100}))
    with pytest.raises(
        ValueError,
        match=r"pytorch_model-0000\d-of-00002\.bin: model\.layers\.\d\.mlp\.\w+_proj\.weight: shape",
    ):
        convert_baichuan_checkpoint(published, tmp_path / "other", progress=False)
    (published / "config.json").write_text(json.dumps({**original, "num_hidden_layers": 3}))
    with pytest.raises(ValueError, match=r"missing tensors \['model\.layers\.2\."):
        convert_baichuan_checkpoint(published, tmp_path / "other", progress=False)
    assert not (tmp_path / "other").exists() and len(list(tmp_path.iterdir())) == 2  # nothing left behind
    (published / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(ValueError, match=r"config\.json: model_type"):
        convert_baichuan_checkpoint(published, tmp_path / "other", progress=False)


def test_hf_backend_chats_with_published_and_converted_folders(sp_model, tmp_path):
    """`discmed chat --model <folder>` path: the backend reads DISC's format and sampling
    defaults from the model's generation config and answers, batched and streamed."""
    from discmed.backend import GenParams, load_backend
    from discmed.baichuan import convert_baichuan_checkpoint

    torch.manual_seed(8)
    model = BaichuanForCausalLM(
        BaichuanConfig(
            vocab_size=3000, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=8
        )
    )
    _write_published_folder(tmp_path / "published", model, sp_model)
    convert_baichuan_checkpoint(tmp_path / "published", tmp_path / "native", progress=False)
    answers = []
    for folder in ("published", "native"):
        backend = load_backend(f"hf:{tmp_path / folder}")
        assert type(backend.format).__name__ == "DiscFormat"
        defaults = backend.default_params()
        assert (defaults.top_k, defaults.top_p, defaults.repetition_penalty) == (5, 0.85, 1.1)
        greedy = GenParams(max_new_tokens=6, temperature=0.0)
        chats = [
            [{"role": "user", "content": "我头痛三天了"}],
            [{"role": "user", "content": "发烧38.5度需要吃药吗？"}],
        ]
        batch = backend.chat(chats, greedy)
        assert batch == [backend.chat([c], greedy)[0] for c in chats]
        # Without its weights (a serving parent's view): the same format, defaults and prompts.
        light = load_backend(f"hf:{tmp_path / folder}", load_weights=False)
        assert next(light.model.parameters()).device.type == "meta"
        assert (type(light.format), light.default_params(), light.max_length) == (
            type(backend.format), defaults, backend.max_length)  # fmt: skip
        assert light.prompt_ids(chats[0], greedy) == backend.prompt_ids(chats[0], greedy)
        assert "".join(backend.stream(chats[0], greedy)) == batch[0]
        answers.append(batch)
    assert answers[0] == answers[1] and all(answers[0])


def _reference_decode(model, prompts, steps, eos, params=None):
    """Decode `prompts` (left-padded into one batch) with plain full forwards, no KV cache:
    every step re-runs the whole sequence. Greedy, or with `params` through discmed's one
    sampler (`discmed.engine.sampler.sample`, each row drawing from its own generator seeded with
    `params.seed`, as the hf backend and the server do). Returns each row's new tokens, cut
    after its first eos."""
    from discmed.engine.sampler import make_generator, sample

    width = max(len(p) for p in prompts)
    seq = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    generators = [make_generator(params.seed) for _ in prompts] if params else None
    done = torch.zeros(len(prompts), dtype=torch.bool)
    for _ in range(steps):
        with torch.no_grad():
            logits = model(seq, attention_mask=mask, use_cache=False).logits[:, -1].float()
        if params:
            toks, errors = sample(logits, [params] * len(prompts), None, generators)
            assert not any(errors)
            nxt = torch.tensor(toks)
        else:
            nxt = logits.argmax(-1)
        nxt = torch.where(done, torch.zeros_like(nxt), nxt)  # generate() pads finished rows
        done |= nxt == eos
        seq, mask = torch.cat([seq, nxt[:, None]], 1), torch.cat([mask, torch.ones_like(nxt)[:, None]], 1)
        if done.all():
            break
    rows = []
    for row in seq[:, width:].tolist():
        rows.append(row[: row.index(eos) + 1] if eos in row else row)
    return rows


@pytest.mark.parametrize("heads", [8, 12])
def test_hf_backend_generate_equals_full_forwards_greedy_and_sampled(sp_model, tmp_path, heads):
    """The hf backend's own path (`chat`, batched and left-padded; `stream`) on a native Baichuan
    folder decodes exactly what full forwards without a cache decode, greedy and seeded sampling.
    transformers 5.24 renamed the model's cache input (`past_key_values` → `cache`); a model
    reading only the old name decoded without context from the second new token on."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    from discmed.backend import GenParams, load_backend
    from discmed.baichuan.tokenization import write_tokenizer

    vocab = spm.SentencePieceProcessor(model_file=str(sp_model)).get_piece_size()
    torch.manual_seed(heads)
    model = BaichuanForCausalLM(
        BaichuanConfig(vocab_size=vocab, hidden_size=8 * heads, intermediate_size=12 * heads,
                       num_hidden_layers=2, num_attention_heads=heads, model_max_length=512)
    )  # fmt: skip
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.15)  # attention patterns (and ALiBi) matter
    folder = tmp_path / "native"
    model.save_pretrained(folder)
    write_tokenizer(sp_model, folder)
    model.eval()
    tok = AutoTokenizer.from_pretrained(folder)

    backend = load_backend(f"hf:{folder}")
    chats = [
        [{"role": "user", "content": "我头痛三天了"}],
        [{"role": "user", "content": "孩子发烧38.5度两天，精神还可以，需要马上去医院吗？还是先在家观察？"}],
        [{"role": "user", "content": "咳嗽"}, {"role": "assistant", "content": "咳了多久？"}, {"role": "user", "content": "一周"}],
    ]
    steps = 10
    greedy = GenParams(max_new_tokens=steps, temperature=0.0)
    prompts = [backend.prompt_ids(c, greedy) for c in chats]
    assert len({len(p) for p in prompts}) == 3  # the batch is left-padded

    def texts(rows):  # a last character cut off at max_new_tokens is not shown (the engine's one rule)
        return [tok.decode(r, skip_special_tokens=True).rstrip("\ufffd") for r in rows]

    expected = texts(_reference_decode(model, prompts, steps, tok.eos_token_id))
    assert backend.chat(chats, greedy) == expected  # one left-padded batch
    assert [backend.chat([c], greedy)[0] for c in chats] == expected  # one at a time
    assert "".join(backend.stream(chats[1], greedy)) == expected[1]

    sampled = GenParams(max_new_tokens=steps, temperature=0.8, top_k=20, top_p=0.9, seed=1234)
    expected_sampled = texts(_reference_decode(model, prompts, steps, tok.eos_token_id, sampled))
    got = backend.chat(chats, sampled)
    assert got == expected_sampled
    assert got != expected  # sampling did sample
    # Each row draws from its own seeded generator: alone, in a batch and streamed alike.
    assert [backend.chat([c], sampled)[0] for c in chats] == expected_sampled
    assert "".join(backend.stream(chats[2], sampled)) == expected_sampled[2]


def test_save_pretrained_round_trip_carries_disc_generation_defaults(tmp_path):
    from transformers import AutoModelForCausalLM

    model = _model(12, seed=6)
    model.save_pretrained(tmp_path / "m")
    gen = json.loads((tmp_path / "m" / "generation_config.json").read_text())
    assert {
        k: gen[k] for k in ("top_k", "top_p", "repetition_penalty", "user_token_id", "assistant_token_id")
    } == {
        "top_k": 5,
        "top_p": 0.85,
        "repetition_penalty": 1.1,
        "user_token_id": 195,
        "assistant_token_id": 196,
    }
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["architectures"] == ["BaichuanForCausalLM"] and config["model_type"] == "baichuan"
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    ids = _ids(10, 7)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits)


def test_registration_happens_where_models_load_not_on_import_discmed():
    """`import discmed` (and so `discmed --help`) loads no transformers and hooks no import;
    `import discmed.baichuan`, which discmed's model-loading code does, registers the native
    Baichuan with the Auto classes."""
    code = (
        "import sys, discmed\n"
        "assert 'transformers' not in sys.modules and not any(type(f).__module__.startswith('discmed') "
        "for f in sys.meta_path)\n"
        "import discmed.baichuan\n"
        "from transformers import AutoConfig, AutoModelForCausalLM\n"
        "cfg = AutoConfig.for_model('baichuan', hidden_size=64, num_attention_heads=8)\n"
        "assert type(cfg).__name__ == 'BaichuanConfig', type(cfg)\n"
        "assert cfg.max_position_embeddings == 4096\n"
        "assert AutoModelForCausalLM._model_mapping[type(cfg)].__name__ == 'BaichuanForCausalLM'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_bias_of_a_fully_padded_row_is_finite():
    """Left padding leaves pad rows with no real key; they must not produce NaN anywhere."""
    model = _model(8)
    ids = torch.cat([torch.zeros(1, 4, dtype=torch.long), _ids(5, 40)], dim=1)
    mask = torch.tensor([[0] * 4 + [1] * 5])
    with torch.no_grad():
        logits = model(ids, attention_mask=mask).logits
    assert torch.isfinite(logits).all()
    assert math.isfinite(float(logits.sum()))


def test_choice_scoring_shares_a_prefix_exactly_under_alibi():
    """MCQ scoring runs the questions' common prefix once and forks its cache; under ALiBi
    (40 heads, Baichuan-13B's attention) a padded gap between prefix and question would bend the
    distances. Every row's next-token logprobs equal a forward pass of that row alone."""
    from types import SimpleNamespace

    from discmed.backends.hf import HFBackend

    model = _model(40)
    torch.manual_seed(1)
    stem = torch.randint(5, VOCAB, (20,)).tolist()
    rows = [stem + torch.randint(5, VOCAB, (n,)).tolist() for n in (1, 4, 9, 2)]
    fake = SimpleNamespace(model=model, tokenizer=SimpleNamespace(pad_token_id=0))
    got = HFBackend._last_logprobs(fake, rows)
    with torch.no_grad():
        want = torch.stack([torch.log_softmax(model(torch.tensor([r])).logits[0, -1].float(), -1) for r in rows])
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
