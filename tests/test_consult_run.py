"""The patient–doctor–judge loop with the tiny model: over real HTTP through discmed's own
server, and in-process for resume and the call cache. The tiny model proves the machinery,
not medicine: its judgements are mostly unreadable, which the harness must report honestly."""

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import typer
from typer.testing import CliRunner

from discmed.eval.cli import register
from discmed.eval.consult import load_cases, read_dialogues, run_consult
from discmed.eval.judge import parse_scores, render_prompt
from discmed.process import run_watched

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def samples(shared_data):
    return shared_data / "disc-medllm" / "eval" / "samples"


@pytest.fixture
def cli():
    app = typer.Typer()
    register(app)
    return app


def _check_disc_dialogue(d, case, turns):
    assert list(d) == ["id", "model", "source", "dataset_info", "conversation"]
    conv = d["conversation"]
    assert conv[0] == {"role": "patient", "content": case.opening}
    assert [t["role"] for t in conv] == ["patient", "doctor"] * (len(conv) // 2)
    assert 1 <= len(conv) // 2 <= turns


def test_consult_judge_score_over_http(tiny_server, samples, tmp_path, cli):
    spec = f"openai:{tiny_server}@tiny"
    dialogues = tmp_path / "tiny_cmid.json"
    cache = str(tmp_path / "cache.sqlite")
    run = CliRunner().invoke(cli, [
        "consult", "--doctor", spec, "--patient", spec, "--set", "cmid", "--samples", str(samples), "--limit", "2",
        "--turns", "2", "--doctor-max-new-tokens", "24", "--patient-max-new-tokens", "16", "--out", str(dialogues),
        "--cache-file", cache, "--concurrency", "2", "--timeout", "60", "--json"])
    assert run.exit_code == 0, run.output
    summary = json.loads(run.output.strip().splitlines()[-1])
    assert (summary["cases"], summary["dialogues"], summary["failed"]) == (2, 2, 0), summary
    assert summary["calls"] >= 2 and summary["completion_tokens"] > 0
    cases = {c.id: c for c in load_cases("cmid", samples)}
    written = read_dialogues(dialogues)
    assert [d["model"] for d in written] == ["tiny", "tiny"]
    for d in written:
        _check_disc_dialogue(d, cases[d["id"]], turns=2)
    assert summary["doctor_turns"] == sum(len(d["conversation"]) // 2 for d in written)

    # The Chinese rubric: DISC's English one is ~1,800 tokens in the tiny model's Chinese
    # tokenizer, and asking again would run past its 2,048-token context.
    judged = tmp_path / "result_tiny_cmid.jsonl"
    run = CliRunner().invoke(cli, ["judge", str(dialogues), "--judge", spec, "--out", str(judged), "--rubric", "zh",
                                   "--max-new-tokens", "24", "--cache-file", cache, "--timeout", "60", "--json"])
    assert run.exit_code == 0, run.output
    jsum = json.loads(run.output.strip().splitlines()[-1])
    lines = [json.loads(x) for x in judged.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2 and all(list(x) == ["id", "model", "source", "scores", "prompt", "judge", "receipt"]
                                   for x in lines), jsum
    assert all(x["receipt"]["prompt_sha256"] == hashlib.sha256(x["prompt"].encode()).hexdigest() for x in lines)
    by_id = {d["id"]: d for d in written}
    assert all(x["prompt"] == render_prompt(by_id[x["id"]], rubric="zh") for x in lines)
    unreadable = sum(parse_scores(x["scores"]) is None for x in lines)
    assert jsum["unparsed"] == unreadable and jsum["parsed"] == 2 - unreadable
    assert jsum["asked_again"] >= unreadable  # every unreadable reply was asked again first

    run = CliRunner().invoke(cli, ["score", str(judged), "--samples", str(samples), "--json"])
    assert run.exit_code == 0, run.output
    row = json.loads(run.output.strip().splitlines()[-1])["tiny"]["cmid"]
    assert row["unparsed"] == unreadable and row["n"] == 2 - unreadable
    assert row["N"] == 120 and row["judge"][0]["spec"] == spec  # 2 of CMID's 120 cases, by this judge

    pairs = tmp_path / "pairs.jsonl"
    run = CliRunner().invoke(cli, ["judge", "--pairwise", str(dialogues), str(dialogues), "--judge", spec,
                                   "--out", str(pairs), "--max-new-tokens", "16", "--cache-file", cache, "--timeout", "60", "--json"])
    assert run.exit_code == 0, run.output
    psum = json.loads(run.output.strip().splitlines()[-1])
    assert psum["cases"] == 2 and psum["x_wins"] + psum["y_wins"] + psum["ties"] + psum["undecided"] == 2
    assert all(len(json.loads(x)["replies"]) == 2 for x in pairs.read_text(encoding="utf-8").splitlines())


@pytest.mark.slow
def test_resume_and_cache(tiny_model, samples, tmp_path):
    from discmed.backend import GenParams, load_backend

    backend = load_backend("tiny")
    cases = load_cases("cmd", samples)[:3]
    kw = dict(doctor_spec="tiny", patient_spec="tiny", model="tiny", turns=2, concurrency=2,
              doctor_params=GenParams(max_new_tokens=16), patient_params=GenParams(max_new_tokens=12, temperature=0.7),
              cache=tmp_path / "cache.sqlite", progress=False)
    out = tmp_path / "tiny_cmd.json"
    first = run_consult(cases[:2], backend, backend, out, **kw)
    assert (first["generated"], first["resumed"]) == (2, 0) and first["calls"] > 0
    head = read_dialogues(out)
    second = run_consult(cases, backend, backend, out, **kw)
    assert (second["generated"], second["resumed"], second["dialogues"]) == (1, 2, 3)
    full = read_dialogues(out)
    assert full[:2] == head and [d["id"] for d in full] == [c.id for c in cases]
    for d, case in zip(full, cases, strict=True):
        _check_disc_dialogue(d, case, turns=2)
    # a fresh journal with the same cache: every call answered from the cache, same dialogues
    again = run_consult(cases, backend, backend, tmp_path / "again.json", **kw)
    assert again["calls"] == 0 and again["cache_hits"] > 0 and read_dialogues(tmp_path / "again.json") == full
    # changing the settings under an existing journal is refused, not mixed in
    with pytest.raises(ValueError, match="other settings"):
        run_consult(cases, backend, backend, out, **{**kw, "turns": 3})


@pytest.mark.slow
def test_killed_run_resumes(tiny_model, samples, tmp_path):
    """SIGKILL a real `discmed eval consult` mid-run; the rerun keeps what was finished."""
    out = tmp_path / "tiny_cmb.json"
    cmd = [sys.executable, "-m", "discmed.cli", "eval", "consult", "--doctor", "tiny", "--patient", "tiny",
           "--set", "cmb-clin", "--samples", str(samples), "--limit", "6", "--turns", "3", "--concurrency", "1",
           "--doctor-max-new-tokens", "48", "--patient-max-new-tokens", "24", "--out", str(out), "--no-cache", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    journal = tmp_path / "tiny_cmb.json.journal.sqlite"
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if journal.exists():
            try:
                with sqlite3.connect(journal) as con:
                    done = con.execute("SELECT COUNT(*) FROM items WHERE status='done'").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 2:
                break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing half-written
    rerun = run_watched(cmd, cwd=ROOT, env=env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["resumed"] >= 2 and summary["resumed"] + summary["generated"] == 6
    assert [d["id"] for d in read_dialogues(out)] == [str(i) for i in range(6)]


def test_unreachable_server_fails_the_run_before_any_case(samples, tmp_path, free_port):
    """A real closed port: the run fails at once, naming the endpoint, before any case is
    started, rather than failing every case one by one after the client's retries."""
    from discmed.backend import CallError, GenParams, load_backend

    spec = f"openai:http://127.0.0.1:{free_port}/v1@tiny"
    backend = load_backend(spec, timeout=5, max_retries=1)
    t0 = time.time()
    with pytest.raises(CallError, match=f"cannot reach the OpenAI-compatible endpoint at http://127.0.0.1:{free_port}/v1"):
        run_consult(load_cases("cmid", samples)[:2], backend, backend, tmp_path / "down.json", doctor_spec=spec,
                    patient_spec=spec, model="tiny", turns=2, concurrency=2,
                    doctor_params=GenParams(max_new_tokens=8), cache="none", progress=False)
    assert time.time() - t0 < 10
    assert not (tmp_path / "down.json").exists()


def test_consult_after_retraining_in_place_asks_the_new_weights(tiny_model, samples, tmp_path, cli):
    """Reproduction 1 for `eval consult`: a fresh `--out` used to make 0 model calls and write
    the old weights' dialogues from the shared cache, keyed by the model's name."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "runs" / "x"
    shutil.copytree(tiny_model, folder)
    spec = f"hf:{folder}"

    def consult(out, *extra):
        run = CliRunner().invoke(cli, [
            "consult", "--doctor", spec, "--patient", spec, "--set", "cmid", "--samples", str(samples),
            "--limit", "1", "--turns", "1", "--doctor-max-new-tokens", "8", "--patient-max-new-tokens", "8",
            "--out", str(tmp_path / out), "--json", *extra])
        assert run.exit_code == 0, run.output
        return json.loads(run.stdout.strip().splitlines()[-1])

    shared = ["--cache-file", str(tmp_path / "shared.sqlite")]
    first = consult("a.json", *shared)
    assert first["calls"] > 0 and (tmp_path / "a.json").exists()
    old = read_dialogues(tmp_path / "a.json")
    assert consult("b.json", *shared)["calls"] == 0  # same weights, shared cache: nothing asked
    assert not (tmp_path / "b.json.cache.sqlite").exists()
    own = consult("own.json")  # by default a run has its own cache: a new run asks anew
    assert own["calls"] > 0 and (tmp_path / "own.json.cache.sqlite").exists()

    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.lm_head.weight.mul_(-1.0)
    model.save_pretrained(folder)
    fresh = consult("other.json", *shared)
    assert fresh["calls"] > 0 and fresh["cache_hits"] == 0
    rerun = consult("a.json", *shared)  # the old journal is of the old weights: started anew
    assert rerun["resumed"] == 0 and rerun["generated"] == 1
    new = read_dialogues(tmp_path / "a.json")
    assert new == read_dialogues(tmp_path / "other.json") and new != old  # the new weights' dialogues
