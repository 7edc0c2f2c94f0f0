"""discmed.formats: DISC's format against hand-computed ids, the other formats, truncation, prompts."""

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from discmed.chat import read_conversations
from discmed.formats import FormatError, encode_many, get_format, render_masked


@pytest.fixture(scope="module")
def char_tok():
    """A tokenizer whose ids are known: one token per character, bos 1, eos 2, 195/196 reserved."""
    chars = "我头疼您好请多喝水发烧吗有没一点谢医生"
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for i, c in enumerate(chars):
        vocab[c] = 10 + i
    vocab["<user>"] = 195
    vocab["<assistant>"] = 196
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def ids_of(tok, text):
    return [tok.convert_tokens_to_ids(c) for c in text]


def test_disc_encode_hand_computed(char_tok):
    assert ids_of(char_tok, "我头疼") == [10, 11, 12]
    msgs = [
        {"role": "user", "content": "我头疼"},
        {"role": "assistant", "content": "您好"},
        {"role": "user", "content": "发烧吗"},
        {"role": "assistant", "content": "多喝水"},
    ]
    ids, mask = get_format("disc").encode(msgs, char_tok, max_length=100)
    w, t, te = 10, 11, 12
    nin, hao = 13, 14
    fa, shao, ma = 19, 20, 21
    duo, he, shui = 16, 17, 18
    assert ids == [1, 195, w, t, te, 196, nin, hao, 2, 195, fa, shao, ma, 196, duo, he, shui, 2]
    assert mask == [0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1]


def test_disc_truncation_whole_turns(char_tok):
    msgs = [
        {"role": "user", "content": "我头疼"},  # 4 tokens with the marker (+ bos = 5)
        {"role": "assistant", "content": "您好"},  # 4 tokens with marker and eos -> 9
        {"role": "user", "content": "发烧吗"},  # -> 13
        {"role": "assistant", "content": "多喝水"},  # -> 18
    ]
    fmt = get_format("disc")
    ids, mask = fmt.encode(msgs, char_tok, max_length=17)
    assert ids == [1, 195, 10, 11, 12, 196, 13, 14, 2]  # the second round does not fit whole: it is dropped
    assert sum(mask) == 3
    assert fmt.encode(msgs, char_tok, max_length=8) is None  # no assistant token fits: dropped
    assert fmt.encode(msgs, char_tok, max_length=9)[0] == ids


def test_dropped_count(char_tok):
    long_q = [{"role": "user", "content": "我头疼" * 10}, {"role": "assistant", "content": "您好"}]
    short = [{"role": "user", "content": "我"}, {"role": "assistant", "content": "好"}]
    encoded, stats = encode_many([("a", long_q), ("b", short), ("c", long_q)], get_format("disc"), char_tok, max_length=12)
    assert len(encoded) == 1
    assert stats.kept == 1 and stats.dropped_no_target == 2 and stats.dropped_ids == ["a", "c"]
    assert stats.target_tokens == 2


def test_disc_prompt_drops_oldest_rounds(char_tok):
    msgs = [
        {"role": "user", "content": "我头疼"},
        {"role": "assistant", "content": "您好"},
        {"role": "user", "content": "发烧吗"},
    ]
    fmt = get_format("disc")
    full = fmt.prompt(msgs, char_tok, max_length=100, reserve=10)
    assert full == [1, 195, 10, 11, 12, 196, 13, 14, 2, 195, 19, 20, 21, 196]
    # Room for 8 prompt tokens: the first round goes, whole.
    assert fmt.prompt(msgs, char_tok, max_length=18, reserve=10) == [1, 195, 19, 20, 21, 196]
    # Room for 4: even the newest user turn is cut, keeping its latest tokens.
    assert fmt.prompt(msgs, char_tok, max_length=14, reserve=10) == [1, 20, 21, 196]
    with pytest.raises(FormatError):
        fmt.prompt(msgs[:2], char_tok)


def test_disc_on_real_records(shared_data, tiny_model):
    """DISC's own records: ids are [bos] + per turn marker + content (+ eos), targets exactly the replies."""
    tok = AutoTokenizer.from_pretrained(tiny_model)
    fmt = get_format("disc")
    convs = read_conversations(shared_data / "disc-medllm/train/test_examples.jsonl")
    ending_with_user = 0
    for conv in convs:
        ids, mask = fmt.encode(conv.messages, tok, max_length=None)
        expected_ids, expected_mask = [tok.bos_token_id], [0]
        turns = conv.messages
        while turns[-1]["role"] != "assistant":  # a trailing question has no answer to train on
            turns = turns[:-1]
            ending_with_user += 1
        for m in turns:
            content = tok(m["content"], add_special_tokens=False)["input_ids"]
            if m["role"] == "user":
                expected_ids += [195] + content
                expected_mask += [0] * (len(content) + 1)
            else:
                expected_ids += [196] + content + [tok.eos_token_id]
                expected_mask += [0] + [1] * (len(content) + 1)
        assert ids == expected_ids, conv.id
        assert mask == expected_mask, conv.id
        target_text = tok.decode([t for t, m in zip(ids, mask, strict=True) if m], skip_special_tokens=True)
        assert target_text == "".join(m["content"] for m in conv.messages if m["role"] == "assistant")
    assert ending_with_user == 3  # three of DISC's records end on an unanswered user turn
    # At DISC's max length 1200 some long records lose turns but none loses everything.
    encoded, stats = encode_many([(c.id, c.messages) for c in convs], fmt, tok, max_length=1200)
    assert stats.kept + stats.dropped_no_target == len(convs)
    assert all(len(ids) <= 1200 for ids, _ in encoded)
    # At 64 tokens, records whose first question and answer do not fit are dropped and counted.
    _, small = encode_many([(c.id, c.messages) for c in convs], fmt, tok, max_length=64)
    assert small.dropped_no_target > 0 and small.kept + small.dropped_no_target == len(convs)


def test_chatml_and_auto_agree_on_tiny(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    msgs = [
        {"role": "system", "content": "你是医生。"},
        {"role": "user", "content": "我头疼"},
        {"role": "assistant", "content": "您好，头疼多久了？"},
        {"role": "user", "content": "两天"},
        {"role": "assistant", "content": "建议休息。"},
    ]
    chatml = get_format("chatml").encode(msgs, tok, max_length=None)
    auto = get_format("auto").encode(msgs, tok, max_length=None)
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert tok.decode(chatml[0]) == text
    assert auto[0] == chatml[0]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    target = [t for t, m in zip(*chatml, strict=True) if m]
    assert tok.decode(target, skip_special_tokens=True) == "您好，头疼多久了？建议休息。"
    assert target.count(end) == 2
    # auto also marks the newline after <|im_end|> as part of the reply's rendering; chatml does not.
    assert sum(auto[1]) - sum(chatml[1]) in (0, 2)
    prompt = get_format("chatml").prompt(msgs[:4], tok)
    assert tok.decode(prompt).endswith("<|im_start|>user\n两天<|im_end|>\n<|im_start|>assistant\n")
    assert get_format("auto").prompt(msgs[:4], tok) == prompt


def test_llama3_layout(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    msgs = [{"role": "user", "content": "头疼"}, {"role": "assistant", "content": "多休息"}]
    ids, mask = get_format("llama3").encode(msgs, tok)
    assert tok.decode(ids) == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n头疼<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n多休息<|eot_id|>"
    )
    assert tok.decode([t for t, m in zip(ids, mask, strict=True) if m]) == "多休息<|eot_id|>"


def test_content_cannot_inject_control_tokens(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    msgs = [{"role": "user", "content": "<|im_end|>"}, {"role": "assistant", "content": "好"}]
    ids, _ = get_format("chatml").encode(msgs, tok)
    assert ids.count(tok.convert_tokens_to_ids("<|im_end|>")) == 2  # the user's one is text


def test_missing_special_tokens_refused(char_tok):
    with pytest.raises(FormatError, match="<|im_end|>"):
        get_format("chatml").encode([{"role": "user", "content": "我"}, {"role": "assistant", "content": "好"}], char_tok)
    with pytest.raises(FormatError, match="chat template"):
        get_format("auto").encode([{"role": "user", "content": "我"}, {"role": "assistant", "content": "好"}], char_tok)
    with pytest.raises(FormatError, match="unknown chat format"):
        get_format("vicuna")


def test_render_masked_shows_targets(char_tok):
    msgs = [{"role": "user", "content": "我头疼"}, {"role": "assistant", "content": "您好"}]
    ids, mask = get_format("disc").encode(msgs, char_tok)
    shown = render_masked(ids, mask, char_tok).replace(" ", "")  # WordLevel decodes with spaces
    assert "«您好»" in shown and "«<</s>|2>»" in shown
    assert "我头疼" in shown and "«我" not in shown
