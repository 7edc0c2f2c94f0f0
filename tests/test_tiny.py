"""The embedded tiny model: loadable by the Auto classes, ids round-trip, DISC's ids reserved."""

import json

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

from discmed import tiny

SAMPLES = [
    "医生您好，我咳嗽三天了，体温38.5℃，需要吃阿莫西林0.5g吗？",
    "空腹血糖7.8mmol/L，糖化血红蛋白6.9%，是糖尿病吗?",
    "Blood pressure 150/95 mmHg, I feel dizzy.  Two  spaces, tabs\tand\nnew lines.",
    "ＡＢＣ全角字母，emoji 🙂，日本語のテキスト，한국어",
]


def test_files_and_summary(tiny_model):
    info = json.loads((tiny_model / "discmed-tiny.json").read_text())
    assert info["fingerprint"] == tiny.fingerprint()
    assert info["corpus_dialogues"] >= 200
    assert 1_000_000 < info["parameters"] < 10_000_000
    assert info["loss_last"] < info["loss_first"] - 2  # pretraining really learned the corpus
    assert tiny.ensure_tiny() == tiny_model  # cached, not rebuilt


def test_tokenizer_round_trips_through_auto(tiny_model):
    auto = AutoTokenizer.from_pretrained(tiny_model)
    raw = Tokenizer.from_file(str(tiny_model / "tokenizer.json"))
    dialogues, sentences = tiny.load_corpus()
    texts = SAMPLES + sentences[:50] + [m["content"] for d in dialogues[:50] for m in d]
    for text in texts:
        ids = auto(text, add_special_tokens=False)["input_ids"]
        assert ids == raw.encode(text, add_special_tokens=False).ids  # transformers did not rebuild the pre-tokenizer
        assert auto.decode(ids) == text
    assert auto("头疼")["input_ids"] == auto("头疼", add_special_tokens=False)["input_ids"]  # no automatic bos/eos


def test_reserved_ids(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok.convert_ids_to_tokens([195, 196]) == ["<reserved_102>", "<reserved_103>"]
    assert tok.decode([195, 196], skip_special_tokens=True) == ""
    for marker in ("<|im_start|>", "<|im_end|>", "<|eot_id|>"):
        assert len(tok(marker, add_special_tokens=False)["input_ids"]) == 1
    assert tok.chat_template


def test_model_loads_and_generates(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model.config.model_type == "qwen2"
    assert model.generation_config.user_token_id == 195 and model.generation_config.assistant_token_id == 196
    prompt = [1, 195] + tok("我头疼，怎么办？", add_special_tokens=False)["input_ids"] + [196]
    out = model.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False)
    text = tok.decode(out[0, len(prompt) :], skip_special_tokens=True)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text)  # it writes Chinese
