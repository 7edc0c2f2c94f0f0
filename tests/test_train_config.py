"""Recipes and their guards: bad keys, values and data files fail clearly before any model loads."""

import json
from pathlib import Path

import pytest

from discmed.train.config import (
    ConfigError,
    SFTRecipe,
    check_dpo_data,
    check_sft_data,
    load_recipe,
    recipe_from_dict,
)
from discmed.train.pack import pad_fraction, position_ids

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"


@pytest.mark.parametrize(
    "name", ["tiny.yaml", "tiny-stage2.yaml", "tiny-dpo.yaml", "disc.yaml", "qwen2.5-7b.yaml"]
)
def test_shipped_recipes_parse_and_open_with_their_command(name):
    text = (RECIPES / name).read_text(encoding="utf-8")
    first = text.splitlines()[0]
    assert first.startswith("# ") and ("discmed train " in first or "-m discmed.train " in first)
    kind = "dpo" if "dpo" in name else "sft"
    recipe = load_recipe(RECIPES / name, kind=kind)
    assert recipe.data


def test_disc_recipe_is_discs():
    r = load_recipe(RECIPES / "disc.yaml")
    assert (r.learning_rate, r.epochs, r.batch_size, r.grad_accum, r.max_length) == (1e-5, 1.0, 4, 3, 1200)
    assert (r.warmup_steps, r.scheduler, r.deepspeed, r.bf16, r.method) == (
        800,
        "cosine",
        "zero3",
        True,
        "full",
    )
    ds = json.loads((ROOT / "discmed/train/deepspeed/zero3.json").read_text())
    assert ds["bf16"] == {"enabled": "auto"} and ds["zero_optimization"]["stage"] == 3
    assert (
        json.loads((ROOT / "discmed/train/deepspeed/zero2.json").read_text())["zero_optimization"]["stage"]
        == 2
    )


def test_unknown_key_names_file_and_suggests(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("model: tiny\nlearnig_rate: 1e-5\ndata: [x.jsonl]\n")
    with pytest.raises(ConfigError) as e:
        load_recipe(p)
    assert str(p) in str(e.value) and "learnig_rate" in str(e.value) and "learning_rate" in str(e.value)


def test_bad_values_are_refused():
    with pytest.raises(ConfigError, match="method"):
        recipe_from_dict({"data": ["a.jsonl"], "method": "prefix"})
    with pytest.raises(ConfigError, match="batch_size: expected an integer"):
        recipe_from_dict({"data": ["a.jsonl"], "batch_size": "four"})
    with pytest.raises(ConfigError, match="unknown key 'lora.rank'"):
        recipe_from_dict({"data": ["a.jsonl"], "lora": {"rank": 8}})
    with pytest.raises(ConfigError, match="no training files"):
        recipe_from_dict({})
    with pytest.raises(ConfigError, match="deepspeed"):
        recipe_from_dict({"data": ["a.jsonl"], "deepspeed": "zero9"})


def test_overrides_reach_nested_keys_and_parse_numbers():
    r = load_recipe(RECIPES / "tiny.yaml", ["learning_rate=2e-5", "lora.r=8", "packing=false", "method=lora"])
    assert isinstance(r, SFTRecipe)
    assert r.learning_rate == 2e-5 and r.lora.r == 8 and r.packing is False and r.method == "lora"
    with pytest.raises(ConfigError, match="key=value"):
        load_recipe(RECIPES / "tiny.yaml", ["learning_rate"])


def test_bad_data_file_lists_file_line_and_field(tmp_path):
    data = tmp_path / "bad.jsonl"
    good = {
        "_id": "1",
        "source": "t",
        "conversation": [{"role": "user", "content": "头痛"}, {"role": "assistant", "content": "您好"}],
    }
    data.write_text(
        json.dumps(good, ensure_ascii=False)
        + "\n"
        + '{"_id": "2", "conversation": [{"role": "doctor", "content": "x"}]}\n'
        + "{not json\n",
        encoding="utf-8",
    )
    recipe = recipe_from_dict({"data": [str(data)]})
    with pytest.raises(ConfigError) as e:
        check_sft_data(recipe)
    msg = str(e.value)
    assert "2 bad record(s)" in msg
    assert f"{data}:2: conversation[0].role" in msg
    assert f"{data}:3: json" in msg
    with pytest.raises(ConfigError, match="not found"):
        check_sft_data(recipe_from_dict({"data": [str(tmp_path / "missing.jsonl")]}))


def test_bad_preference_pairs_are_named(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        json.dumps(
            {"prompt": [{"role": "user", "content": "咳嗽"}], "chosen": "请问多久了？", "rejected": "吃药"},
            ensure_ascii=False,
        )
        + "\n"
        + json.dumps({"prompt": [{"role": "user", "content": "咳嗽"}], "chosen": "", "rejected": "x"})
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=rf"{data}:2: chosen"):
        check_dpo_data(recipe_from_dict({"data": [str(data)]}, "dpo"))


def test_shipped_behaviour_data_is_valid():
    r = load_recipe(RECIPES / "tiny-stage2.yaml")
    assert check_sft_data(r)
    assert check_dpo_data(load_recipe(RECIPES / "tiny-dpo.yaml", kind="dpo"))


def test_position_ids_restart_per_sequence_and_pad_fraction():
    assert position_ids([3, 2]) == [0, 1, 2, 0, 1]
    assert pad_fraction([4, 2, 3, 3], batch_size=2) == pytest.approx(1 - 12 / 14)


def test_cli_reports_a_bad_recipe_and_exits_2(tmp_path):
    import subprocess
    import sys

    p = tmp_path / "r.yaml"
    p.write_text("model: tiny\ndata: [discmed/assets/behaviour/sft.jsonl]\nepoch: 2\n")
    proc = subprocess.run(
        [sys.executable, "-m", "discmed.train", "sft", "--config", str(p), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert f"{p}: unknown key 'epoch' (did you mean 'epochs'?)" in proc.stderr


def _unusual(kind: str) -> dict:
    """A recipe whose every TRL-bound key differs from TRL's default, so each one must arrive."""
    raw = {"data": ["x.jsonl"], "output_dir": "runs/odd", "epochs": 2.5, "max_steps": 7, "batch_size": 3,
           "grad_accum": 5, "learning_rate": 3.3e-4, "scheduler": "linear", "warmup_steps": 4, "weight_decay": 0.05,
           "max_grad_norm": 0.7, "gradient_checkpointing": False, "save_steps": 11, "save_total_limit": 4,
           "logging_steps": 2, "seed": 123, "dataloader_workers": 0, "max_length": 333}
    if kind == "dpo":
        raw.update(beta=0.25, loss_type="ipo", max_prompt_length=100)
    return raw


@pytest.mark.parametrize("kind", ["sft", "dpo"])
def test_every_recipe_key_reaches_trl_or_discmed(kind):
    """Reproduction 2: TRL 1.16 defaults gradient_checkpointing to True and the recipe's false was
    only passed when true; now every key is mapped explicitly and checked to arrive."""
    from discmed.train.config import DPORecipe
    from discmed.train.dpo import dpo_config
    from discmed.train.runtime import CONVERTED, DISCMED_FIELDS, DPO_TRL_FIELDS, TRL_FIELDS
    from discmed.train.sft import sft_config

    cls = SFTRecipe if kind == "sft" else DPORecipe
    mapped = set(TRL_FIELDS) | set(CONVERTED) | set(DISCMED_FIELDS) | (set(DPO_TRL_FIELDS) if kind == "dpo" else set())
    assert set(cls.model_fields) <= mapped, f"recipe keys with no stated destination: {set(cls.model_fields) - mapped}"
    recipe = recipe_from_dict(_unusual(kind), kind)
    config = (sft_config if kind == "sft" else dpo_config)(recipe, False, False)
    fields = {**TRL_FIELDS, **(DPO_TRL_FIELDS if kind == "dpo" else {})}
    for key, trl in fields.items():
        got = getattr(config, trl)
        want = getattr(recipe, key)
        assert (got.value if hasattr(got, "value") else got) == want, f"{key} → {trl}: {got!r} != {want!r}"
    assert config.gradient_checkpointing is False and config.activation_checkpointing is False
    assert config.data_seed == 123 and config.report_to == [] and config.bf16 is False
    if kind == "dpo":
        assert config.loss_type == ["ipo"]
    else:
        assert config.padding_free is True and config.max_length is None  # discmed packs to max_length itself
    on = (sft_config if kind == "sft" else dpo_config)(
        recipe_from_dict({**_unusual(kind), "gradient_checkpointing": True}, kind), False, False)
    assert on.gradient_checkpointing is True and on.activation_checkpointing_kwargs == {"use_reentrant": False}


def test_recipes_share_their_common_keys():
    from discmed.train.config import CommonRecipe, DataRecipe, DPORecipe
    from discmed.train.grpo import GRPORecipe

    assert issubclass(SFTRecipe, DataRecipe) and issubclass(DPORecipe, DataRecipe)
    assert issubclass(DataRecipe, CommonRecipe) and issubclass(GRPORecipe, CommonRecipe)
    assert set(SFTRecipe.model_fields) - set(DataRecipe.model_fields) == {"packing"}
    assert set(DPORecipe.model_fields) - set(DataRecipe.model_fields) == {"max_prompt_length", "beta", "loss_type"}
    assert "data" not in GRPORecipe.model_fields  # GRPO reads cases, not data files: no key it would ignore


def test_a_typo_on_the_command_line_is_the_command_lines(tmp_path):
    """An override's error names the override, not the YAML file it was applied to."""
    p = tmp_path / "r.yaml"
    p.write_text("model: tiny\ndata: [x.jsonl]\n")
    with pytest.raises(ConfigError) as e:
        load_recipe(p, ["lerning_rate=1e-5"])
    assert str(e.value) == ("command-line override 'lerning_rate=1e-5': unknown key 'lerning_rate' "
                            "(did you mean 'learning_rate'?)")
    with pytest.raises(ConfigError, match=r"^command-line override 'lora.r=eight': lora.r: expected an integer"):
        load_recipe(p, ["lora.r=eight"])
    p.write_text("model: tiny\ndata: [x.jsonl]\nlerning_rate: 1e-5\n")  # the file's own typo stays the file's
    with pytest.raises(ConfigError, match=f"^{p}: unknown key 'lerning_rate'"):
        load_recipe(p, ["seed=3"])
    from discmed.train.grpo import load_recipe as load_grpo

    with pytest.raises(ConfigError, match=r"^command-line override 'rewards.aks=1': rewards.aks: unknown reward"):
        load_grpo(ROOT / "recipes" / "tiny-grpo.yaml", ["rewards.aks=1"])


@pytest.mark.parametrize("kind", ["sft", "dpo", "grpo"])
def test_train_keys_documents_every_key(kind):
    """`discmed train keys KIND` has a description for every key the recipe kind accepts."""
    from discmed.train.config import KEY_HELP, recipe_keys

    rows = recipe_keys(kind)
    assert [r["key"] for r in rows if not r["help"]] == []
    assert {"learning_rate", "data" if kind != "grpo" else "rewards"} <= {r["key"] for r in rows}
    lr = next(r for r in rows if r["key"] == "learning_rate")
    assert lr["default"] == {"sft": "1e-05", "dpo": "5e-07", "grpo": "1e-06"}[kind]
    if kind == "grpo":  # nothing in the reference that no recipe has
        from discmed.train.config import DPORecipe, SFTRecipe
        from discmed.train.grpo import GRPORecipe

        assert set(KEY_HELP) == set(SFTRecipe.model_fields) | set(DPORecipe.model_fields) | set(GRPORecipe.model_fields)


def test_cli_version_and_train_keys():
    import subprocess
    import sys

    run = lambda *a: subprocess.run([sys.executable, "-m", "discmed", *a], cwd=ROOT, capture_output=True,  # noqa: E731
                                    text=True, timeout=120)
    v = run("--version")
    assert v.returncode == 0 and v.stdout.startswith("discmed ")
    keys = run("train", "keys", "grpo", "--json")
    assert keys.returncode == 0 and "num_generations" in {r["key"] for r in json.loads(keys.stdout)}
    assert "grpo" in run("train", "--help").stdout


def test_a_recipe_names_its_model_as_every_command_does(tiny_model):
    """`model=hf:…` in a recipe reads as `--model hf:…` does everywhere (one resolver); an API
    endpoint is refused as something that cannot be trained."""
    from discmed.train.runtime import resolve_model

    assert resolve_model("tiny") == resolve_model(f"hf:{tiny_model}") == resolve_model(str(tiny_model)) == str(tiny_model)
    assert resolve_model("hf:Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"  # a hub id, as given
    with pytest.raises(ConfigError, match="is not weights to train"):
        resolve_model("openai:http://127.0.0.1:8000/v1@m")
    with pytest.raises(ConfigError, match="unknown model kind 'hff'"):
        resolve_model("hff:/x")
