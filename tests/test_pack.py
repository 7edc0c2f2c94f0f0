"""Packing: whole conversations per row, no attention across a boundary, the same loss per token."""

from pathlib import Path

import pytest
import torch

from discmed.train.pack import pack
from discmed.train.sft import encode_records


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def encoded(tokenizer, shared_data):
    files = [(shared_data / "disc-medllm/train/test_examples.jsonl", 1.0)]
    dataset, stats = encode_records(files, "disc", tokenizer, max_length=512)
    return dataset.select(range(16)), stats


def _model(path: Path, attn: str):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attn)
    return model.eval()


def test_rows_hold_whole_conversations(encoded):
    dataset, _ = encoded
    packed, stats = pack(dataset, max_length=512, batch_size=4)
    assert stats.sequences == 16 and stats.rows == len(packed) < 16
    assert stats.fill > 0.85 and stats.padded_fraction > 0.1
    originals = sorted(tuple(x) for x in dataset["input_ids"])
    pieces = []
    for row in packed:
        assert len(row["input_ids"]) <= 512 and sum(row["seq_lengths"]) == len(row["input_ids"])
        start = 0
        for n in row["seq_lengths"]:
            pieces.append(tuple(row["input_ids"][start : start + n]))
            start += n
    assert sorted(pieces) == originals  # every conversation intact, none split or lost
    with pytest.raises(ValueError, match="exceeds max_length"):
        pack(dataset, max_length=64)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_no_token_attends_across_a_boundary(tiny_model, encoded, attn):
    """Logits of a packed row equal the logits of each conversation run alone."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    dataset, _ = encoded
    packed, _ = pack(dataset, max_length=512)
    row = max(packed, key=lambda r: len(r["seq_lengths"]))
    assert len(row["seq_lengths"]) >= 2
    model = _model(tiny_model, attn)
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)([row])
    assert "attention_mask" not in batch
    with torch.no_grad():
        # use_cache=False as in training: with a KV cache transformers skips packed-sequence detection
        out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
        packed_logits = out.logits[0]
        start = 0
        for n in row["seq_lengths"]:
            alone = model(input_ids=torch.tensor([row["input_ids"][start : start + n]])).logits[0]
            torch.testing.assert_close(packed_logits[start : start + n], alone, atol=2e-4, rtol=1e-4)
            start += n


def test_packed_loss_per_target_token_equals_unpacked(tiny_model, encoded):
    """The same data as one packed batch and as one padded batch: equal mean loss per target token."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    dataset, stats = encoded
    packed, _ = pack(dataset, max_length=512)
    model = _model(tiny_model, "sdpa")
    padded = DataCollatorForLanguageModeling(pad_token_id=0)(list(dataset))
    flat = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(list(packed))
    # the same number of target tokens reach the loss either way
    assert int((padded["labels"] != -100).sum()) == int((flat["labels"] != -100).sum())
    with torch.no_grad():
        unpacked_loss = model(**padded).loss
        packed_loss = model(
            input_ids=flat["input_ids"],
            position_ids=flat["position_ids"],
            labels=flat["labels"],
            use_cache=False,
        ).loss
    torch.testing.assert_close(packed_loss, unpacked_loss, atol=1e-4, rtol=1e-5)
    # and the pad share the padded batch wastes is real
    assert float((padded["attention_mask"] == 0).float().mean()) > 0.2
