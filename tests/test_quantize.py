"""Quantized inference on CPU: bitsandbytes int8 loads, generates and takes less memory than the
full-precision model; `discmed quantize` writes a copy that loads quantized without the flag;
int4 is refused without a GPU, saying why."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from discmed.backend import BackendError, GenParams, load_backend

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def linear_types(model) -> set[str]:
    return {type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__}


def test_int8_loads_generates_and_is_smaller(tiny_model):
    full = load_backend("tiny")
    q = load_backend("tiny", quantize="int8")
    assert "Linear8bitLt" in linear_types(q.model) and "Linear8bitLt" not in linear_types(full.model)
    assert q.model.get_memory_footprint() < full.model.get_memory_footprint()
    params = GenParams(max_new_tokens=12, temperature=0)
    reply = q.chat([[{"role": "user", "content": "我头痛两天了，怎么办？"}]], params)[0]
    assert isinstance(reply, str) and reply.strip()
    assert "".join(q.stream([{"role": "user", "content": "我头痛两天了，怎么办？"}], params)) == reply


def test_int4_is_refused_without_a_gpu(tiny_model):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: int4 is allowed here")
    with pytest.raises(BackendError, match="GPU"):
        load_backend("tiny", quantize="int4")
    from discmed.cli import app

    r = CliRunner().invoke(app, ["quantize", "--model", "tiny", "--out", "unused", "--quantize", "int4"])
    assert r.exit_code == 2 and "GPU" in r.output


@pytest.mark.slow  # loads the model three times
def test_quantize_command_writes_a_copy_that_loads_quantized(tiny_model, tmp_path):
    from discmed.cli import app

    out = tmp_path / "tiny-int8"
    r = CliRunner().invoke(
        app, ["quantize", "--model", "tiny", "--out", str(out), "--quantize", "int8", "--json"]
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["bits"] == "int8" and summary["weight_mb_quantized"] < summary["weight_mb_original"]
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["load_in_8bit"] is True
    copy = load_backend(f"hf:{out}")  # no --quantize: the copy says it is int8
    assert "Linear8bitLt" in linear_types(copy.model)
    assert (
        copy.chat([[{"role": "user", "content": "发烧三天"}]], GenParams(max_new_tokens=6, temperature=0))[0]
        is not None
    )
    again = CliRunner().invoke(app, ["quantize", "--model", "tiny", "--out", str(out)])
    assert again.exit_code == 2 and "not empty" in again.output  # never overwrites a folder
