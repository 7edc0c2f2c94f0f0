"""SFT, resume, LoRA + merge, DPO and the guards, on the tiny model on CPU."""

import json
import math
from pathlib import Path

import pytest
import torch

from discmed.train.config import ConfigError
from discmed.train.runtime import COMPLETE_MARKER, TrainingGuardError

ROOT = Path(__file__).resolve().parents[1]
CORPUS = str(ROOT / "discmed/assets/corpus/dialogues.jsonl")
BEHAVIOUR = str(ROOT / "discmed/assets/behaviour/sft.jsonl")
PAIRS = str(ROOT / "discmed/assets/behaviour/pairs.jsonl")


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def sft_config(model: Path, out: Path, **kw) -> dict:
    cfg = dict(
        model=str(model),
        format="disc",
        data=[{"path": BEHAVIOUR, "weight": 2.0}],
        output_dir=str(out),
        max_length=256,
        batch_size=2,
        grad_accum=1,
        learning_rate=1e-3,
        warmup_steps=1,
        max_steps=6,
        save_steps=100,
        logging_steps=1,
        resume=False,
    )
    cfg.update(kw)
    return cfg


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_labels_are_the_format_masks(tiny_model, shared_data):
    from transformers import AutoTokenizer

    from discmed.chat import read_conversations
    from discmed.formats import get_format
    from discmed.train.sft import encode_records

    tok = AutoTokenizer.from_pretrained(tiny_model)
    path = shared_data / "disc-medllm/train/test_examples.jsonl"
    for fmt_name in ("disc", "chatml"):
        dataset, stats = encode_records([(path, 1.0)], fmt_name, tok, max_length=300)
        fmt = get_format(fmt_name)
        expected = [fmt.encode(c.messages, tok, max_length=300) for c in read_conversations(path)]
        kept = [e for e in expected if e is not None]
        assert (
            stats["dropped_no_target"] == len(expected) - len(kept) > 0
        )  # long first turns are dropped, counted
        assert len(dataset) == len(kept)
        for row, (ids, mask) in zip(dataset, kept, strict=True):
            assert row["input_ids"] == ids
            assert row["labels"] == [t if m else -100 for t, m in zip(ids, mask, strict=True)]


def test_tiny_sft_lowers_the_loss_and_writes_a_loadable_model(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM, GenerationConfig

    from discmed.train.sft import run_sft

    out = tmp_path / "sft"
    summary = run_sft(sft_config(tiny_model, out, max_steps=12, learning_rate=2e-3))
    assert summary["steps"] == 12 and summary["samples"] == 20
    assert summary["packing"]["rows"] < summary["samples"]  # packed
    assert summary["final_loss"] < summary["first_loss"] - 0.3
    assert json.loads((out / "discmed_train.json").read_text())["final_loss"] == summary["final_loss"]
    gen = GenerationConfig.from_pretrained(out)
    assert (gen.user_token_id, gen.assistant_token_id, gen.eos_token_id) == (195, 196, 2)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert not torch.equal(
        model.state_dict()["model.norm.weight"], weights(Path(tiny_model))["model.norm.weight"]
    )


class Crash(RuntimeError):
    pass


def crash_at(step: int):
    from transformers import TrainerCallback

    class CrashAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise Crash(f"killed at step {step}")

    return CrashAt()


def test_resume_ends_with_the_same_weights(tiny_model, tmp_path):
    """A run that dies at step 5 and resumes from checkpoint 4 ends where an uninterrupted run ends."""
    from discmed.train.sft import run_sft

    common = dict(max_steps=8, save_steps=2, save_total_limit=2, resume="auto")
    straight = tmp_path / "straight"
    run_sft(sft_config(tiny_model, straight, **common))

    broken = tmp_path / "broken"
    with pytest.raises(Crash):
        run_sft(sft_config(tiny_model, broken, **common), callbacks=[crash_at(5)])
    kept = sorted(p.name for p in broken.glob("checkpoint-*"))
    assert kept == ["checkpoint-2", "checkpoint-4"]  # rotation keeps the newest two
    # a checkpoint the crash left half-written is never resumed from
    partial = broken / "checkpoint-6"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"truncated")
    summary = run_sft(sft_config(tiny_model, broken, **common))
    assert summary["resumed_from"].endswith("checkpoint-4")  # the newer, partial checkpoint-6 is passed over
    assert (partial / "model.safetensors").stat().st_size > 1000  # ... and rewritten whole by the resumed run
    assert all((p / COMPLETE_MARKER).is_file() for p in broken.glob("checkpoint-*"))

    a, b = weights(straight), weights(broken)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)


def test_lora_trains_saves_and_merges_to_the_same_outputs(tiny_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from discmed.train.merge import export, merge
    from discmed.train.sft import run_sft

    out = tmp_path / "lora"
    summary = run_sft(
        sft_config(tiny_model, out, method="lora", learning_rate=5e-3, lora={"r": 8, "alpha": 16})
    )
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    assert summary["final_loss"] < summary["first_loss"]

    merged_dir = tmp_path / "merged"
    merge(out, merged_dir)
    x = torch.tensor([[1, 195, 300, 400, 500, 196]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    base_logits = base(x).logits
    with torch.no_grad():
        adapter_logits = PeftModel.from_pretrained(base, str(out)).eval()(x).logits
        merged_logits = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)(x).logits
    assert not torch.allclose(adapter_logits, base_logits, atol=1e-3)  # the adapter learnt something
    torch.testing.assert_close(merged_logits, adapter_logits, atol=1e-4, rtol=1e-4)

    exported = export(out, tmp_path / "export", dtype="fp32")
    assert "model.safetensors" in exported["files"] and "generation_config.json" in exported["files"]
    gen = json.loads((tmp_path / "export" / "generation_config.json").read_text())
    assert gen["user_token_id"] == 195 and gen["assistant_token_id"] == 196


def _logp(model, tok, fmt, prompt, reply) -> float:
    from discmed.train.dpo import completion_ids

    p, c = completion_ids(fmt, prompt, reply, tok)
    ids = torch.tensor([p + c])
    with torch.no_grad():
        logits = model(ids).logits[0, len(p) - 1 : -1].log_softmax(-1)
    return float(logits.gather(-1, torch.tensor(c)[:, None]).sum())


def test_dpo_prefers_chosen_after_training(tiny_model, tmp_path):
    """DPO on a handful of pairs widens log p(chosen) - log p(rejected), with the SFT layout."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from discmed.formats import get_format
    from discmed.train.config import read_pairs
    from discmed.train.dpo import completion_ids, run_dpo

    tok = AutoTokenizer.from_pretrained(tiny_model)
    fmt = get_format("disc")
    pairs = read_pairs(Path(PAIRS))[:4]
    # the prompt discmed trains DPO on is the one serving generates from
    prompt_ids, chosen_ids = completion_ids(fmt, pairs[0]["prompt"], pairs[0]["chosen"], tok)
    assert prompt_ids == fmt.prompt(pairs[0]["prompt"], tok) and prompt_ids[-1] == 196
    assert chosen_ids[-1] == tok.eos_token_id

    def margin(model_dir):
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        return sum(
            _logp(model, tok, fmt, p["prompt"], p["chosen"])
            - _logp(model, tok, fmt, p["prompt"], p["rejected"])
            for p in pairs
        )

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")
    out = tmp_path / "dpo"
    summary = run_dpo(
        dict(
            model=str(tiny_model),
            data=[str(data)],
            output_dir=str(out),
            max_length=256,
            max_prompt_length=128,
            batch_size=2,
            learning_rate=5e-4,
            max_steps=6,
            warmup_steps=0,
            logging_steps=1,
            save_steps=100,
            resume=False,
        )
    )
    assert summary["pairs"] == 4 and summary["steps"] == 6
    assert summary["final_loss"] < summary["first_loss"]
    assert margin(out) > margin(tiny_model) + 1.0


def test_guard_stops_a_diverging_run_naming_the_cause(tiny_model, tmp_path):
    from discmed.train.sft import run_sft

    with pytest.raises(TrainingGuardError, match="loss is (NaN|infinite|0) at an early step.*learning rate"):
        run_sft(sft_config(tiny_model, tmp_path / "nan", learning_rate=1e9, max_grad_norm=1e9, max_steps=4))


def test_guards_that_fire_before_any_model_loads(tiny_model, tmp_path):
    from discmed.train.sft import run_sft

    out = tmp_path / "never"
    with pytest.raises(ConfigError, match="every label would be masked"):
        run_sft(sft_config(tiny_model, out, max_length=20))
    with pytest.raises(ConfigError, match="fp16: mixed precision needs a CUDA GPU"):
        run_sft(sft_config(tiny_model, out, fp16=True))
    with pytest.raises(ConfigError, match="qlora needs a CUDA GPU"):
        run_sft(sft_config(tiny_model, out, method="qlora"))
    fake = tmp_path / "baichuan"
    fake.mkdir()
    (fake / "config.json").write_text(json.dumps({"model_type": "baichuan"}))
    with pytest.raises(ConfigError, match="fp16.*Baichuan"):
        run_sft(sft_config(fake, out, fp16=True))
    assert not out.exists()


def test_diagnosis_names_masked_labels_fp16_and_pad_eos(tiny_model):
    from transformers import AutoTokenizer

    from discmed.train.config import recipe_from_dict
    from discmed.train.runtime import diagnose

    tok = AutoTokenizer.from_pretrained(tiny_model)
    recipe = recipe_from_dict({"data": ["x"], "fp16": True})
    msg = diagnose(0.0, recipe, tok, {"labels": torch.full((1, 8), -100)})
    assert "loss is 0" in msg and "every label in the batch is masked" in msg and "fp16" in msg
    tok.pad_token = tok.eos_token
    msg = diagnose(math.nan, recipe_from_dict({"data": ["x"]}), tok, {"labels": torch.tensor([[5, 6]])})
    assert "NaN" in msg and "pad id equals eos id" in msg


@pytest.mark.slow
def test_dpo_with_lora_trains_an_adapter(tiny_model, tmp_path):
    from discmed.train.dpo import run_dpo

    out = tmp_path / "dpo-lora"
    summary = run_dpo(
        dict(
            model=str(tiny_model),
            data=[PAIRS],
            output_dir=str(out),
            method="lora",
            lora={"r": 8, "alpha": 16},
            max_length=256,
            max_prompt_length=128,
            batch_size=2,
            learning_rate=2e-3,
            max_steps=5,
            logging_steps=1,
            save_steps=100,
            resume=False,
        )
    )
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    assert summary["method"] == "lora" and summary["steps"] == 5
    assert summary["final_loss"] < summary["first_loss"] and summary["reward_margin"] > 0


def test_resume_refuses_a_checkpoint_of_another_recipe(tiny_model, tmp_path):
    """Reproduction 3: rerunning with learning_rate=3e-3 max_steps=12 resumed the old optimizer
    and schedule silently; now the checkpoint's recipe is compared and the change named."""
    from discmed.train.runtime import RECIPE_NAME
    from discmed.train.sft import run_sft

    out = tmp_path / "run"
    common = dict(max_steps=4, save_steps=2, resume="auto")
    with pytest.raises(Crash):
        run_sft(sft_config(tiny_model, out, **common), callbacks=[crash_at(3)])
    saved = json.loads((out / "checkpoint-2" / RECIPE_NAME).read_text())
    assert saved["recipe"]["learning_rate"] == 1e-3 and saved["data"][0]["sha256"]
    with pytest.raises(ConfigError, match=r"max_steps: 4 → 12; learning_rate: 0\.001 → 0\.003\).*resume=force"):
        run_sft(sft_config(tiny_model, out, **{**common, "learning_rate": 3e-3, "max_steps": 12}))
    other = tmp_path / "other.jsonl"
    other.write_text(Path(BEHAVIOUR).read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="data: other files or contents"):
        run_sft(sft_config(tiny_model, out, **{**common, "data": [{"path": str(other), "weight": 2.0}]}))
    forced = run_sft(sft_config(tiny_model, out, **{**common, "learning_rate": 3e-3, "resume": "force"}))
    assert forced["resumed_from"].endswith("checkpoint-2") and forced["steps"] == 4
    same = run_sft(sft_config(tiny_model, tmp_path / "fresh", **common))  # nothing to resume: trains
    assert same["resumed_from"] is None


def test_trained_and_exported_folders_prompt_as_trained(tiny_model, tmp_path):
    """Reproduction 4: a trained or exported folder carried the tiny tokenizer's ChatML template
    beside disc-trained weights, TRL's "fine-tuned version of [None]" card, and an adapter base
    that was an absolute cache path."""
    from transformers import AutoTokenizer

    from discmed.formats import get_format
    from discmed.train.merge import export
    from discmed.train.sft import run_sft

    conv = [{"role": "system", "content": "你是医生。"}, {"role": "user", "content": "头痛三天"},
            {"role": "assistant", "content": "有没有发烧？"}, {"role": "user", "content": "没有"}]
    fmt = get_format("disc")
    out = tmp_path / "lora"
    run_sft(sft_config("tiny", out, method="lora", max_steps=2, lora={"r": 4, "alpha": 8}))
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny"
    exported = tmp_path / "export"
    export(out, exported, dtype="fp32")
    for folder in (out, exported):
        tok = AutoTokenizer.from_pretrained(folder)
        want, _ = fmt.encode(conv + [{"role": "assistant", "content": "好的"}], tok, max_length=None)
        got = tok.apply_chat_template(conv + [{"role": "assistant", "content": "好的"}], tokenize=True)
        got = list(got["input_ids"] if hasattr(got, "keys") else got)
        assert got == want and got[0] == tok.bos_token_id and got[-1] == tok.eos_token_id
        assert got.count(195) == 2 and got.count(196) == 2  # each user turn after 195, each reply after 196
        prompt = tok.apply_chat_template(conv, tokenize=True, add_generation_prompt=True)
        prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
        assert prompt == fmt.prompt(conv, tok, max_length=10**6, reserve=0) and prompt[-1] == 196
        card = (folder / "README.md").read_text(encoding="utf-8")
        assert "[None]" not in card and "base model `tiny`" in card and "token 195" in card
        assert "| final_loss |" in card and "## Recipe" in card
    # The adapter's portable base (`tiny`) loads through discmed, and answers as its merged export.
    from discmed.backend import GenParams, load_backend

    params = GenParams(max_new_tokens=6)
    replies = [load_backend(f"hf:{f}").chat([conv], params)[0] for f in (out, exported)]
    assert replies[0] == replies[1]
