"""Multi-process training on CPU (gloo) and a hard kill mid-run: slow, real launchers, real processes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from discmed.process import run_watched

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BEHAVIOUR = "discmed/assets/behaviour/sft.jsonl"

# The launches are timed by their progress (run_watched); this is only the backstop against a hang.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    env.pop("RANK", None)
    return env


def _args(model: Path, out: Path, **kw) -> list[str]:
    items = dict(
        model=str(model),
        data=f"[{BEHAVIOUR}]",
        output_dir=str(out),
        max_length=256,
        batch_size=2,
        grad_accum=1,
        max_steps=4,
        save_steps=2,
        learning_rate="1e-3",
        warmup_steps=1,
        logging_steps=1,
        resume="false",
    )
    items.update(kw)
    return [f"{k}={v}" for k, v in items.items()]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _run(cmd: list[str]) -> str:
    # Timed by progress, not a guess: two launches of 2 workers each take minutes on a busy machine.
    proc = run_watched(cmd, cwd=ROOT, env=_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_two_processes_ddp_and_deepspeed_zero2_zero3_agree(tiny_model, tmp_path, free_port):
    """DDP (accelerate launch --multi_gpu, gloo), DeepSpeed ZeRO-2 (torchrun) and ZeRO-3 (accelerate
    launch with the shipped config) on 2 CPU processes: the same steps give the same weights."""
    import json

    runs = {}
    out = tmp_path / "ddp"
    stdout = _run(
        [
            str(BIN / "accelerate"),
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--main_process_port",
            str(free_port),
            "-m",
            "discmed.train",
            "sft",
            *_args(tiny_model, out),
            "--json",
        ]
    )
    runs["ddp"] = out
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["steps"] == 4 and summary["final_loss"] < summary["first_loss"]
    # ZeRO-2 from the recipe (`deepspeed=zero2`) under torchrun; ZeRO-3 from the shipped
    # accelerate config under accelerate launch: both ways a user would start DeepSpeed.
    launches = {
        "zero2": [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port + 1)],
        "zero3": [
            str(BIN / "accelerate"),
            "launch",
            "--config_file",
            "discmed/train/accelerate/zero3.yaml",
            "--num_processes",
            "2",
            "--main_process_port",
            str(free_port + 2),
        ],
    }
    for stage, launcher in launches.items():
        out = tmp_path / stage
        extra = {"deepspeed": stage} if stage == "zero2" else {}
        _run([*launcher, "-m", "discmed.train", "sft", *_args(tiny_model, out, **extra), "--json"])
        runs[stage] = out
        ckpt = out / "checkpoint-4"
        assert (ckpt / "discmed-complete").is_file()
        assert (ckpt / "global_step4").is_dir()  # DeepSpeed's own (sharded) checkpoint
    ref = _weights(runs["ddp"])
    for stage in ("zero2", "zero3"):
        w = _weights(runs[stage])
        for k in ref:
            torch.testing.assert_close(w[k], ref[k], atol=1e-4, rtol=1e-4, msg=f"{stage}: {k}")


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tiny_model, tmp_path):
    steps = dict(max_steps=10, save_steps=2, save_total_limit=2, resume="auto")
    straight = tmp_path / "straight"
    _run([sys.executable, "-m", "discmed.train", "sft", *_args(tiny_model, straight, **steps)])

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "discmed.train", "sft", *_args(tiny_model, killed, **steps)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    try:
        while not any(killed.glob("checkpoint-*/discmed-complete")):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (killed / "discmed_train.json").exists()  # it really died mid-run
    _run([sys.executable, "-m", "discmed.train", "sft", *_args(tiny_model, killed, **steps)])
    a, b = _weights(straight), _weights(killed)
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0, msg=k)
