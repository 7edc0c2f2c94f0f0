"""`discmed demo` end to end (slow; one demo run shared by the module): every stage runs on the
tiny model, the counts agree from stage to stage, the report and its charts are written, the
trained model's server answered a chat request, a second run reuses every finished stage, and
`--serve` opens the API and the page until Ctrl+C. The quick test checks how the report names
stages that could not run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from discmed.demo import STAGES
from discmed.process import run_watched


def run_demo(out: Path, timeout: float) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = run_watched([sys.executable, "-m", "discmed", "demo", "--out", str(out), "--json"], env=env,
                       limit=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:] + proc.stdout[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def demo(tiny_model, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "demo-out"
    return out, run_demo(out, timeout=1500)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_every_stage_ran(demo):
    out, summary = demo
    stages = summary["stages"]
    assert list(stages) == list(STAGES)
    for name, s in stages.items():
        assert "status" not in s, f"stage {name}: {s}"  # only stages that did not run carry a status
        assert s["seconds"] >= 0
        marker = json.loads((out / "stages" / f"{name}.json").read_text(encoding="utf-8"))
        assert marker["status"] == "done" and marker["counts"] == {k: v for k, v in s.items() if k != "seconds"}


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_counts_agree_from_stage_to_stage(demo):
    _, summary = demo
    s = summary["stages"]
    # 15 consultations in the sample file, all well formed; personal identifiers planted in 4.
    assert s["load"]["records"] == s["scrub"]["records"] == s["rewrite"]["input"] == 15
    assert s["scrub"]["records_changed"] >= 3 and s["scrub"]["replaced"] >= s["scrub"]["records_changed"]
    rw = s["rewrite"]
    assert rw["accepted"] + rw["rejected"] + rw["failed"] == rw["input"]
    assert rw["records_out"] == rw["accepted"] + rw["carried_raw"] == rw["input"]
    assert rw["teacher_calls"] >= rw["input"]  # at least one call per conversation (cache empty at first)
    kg = s["kgqa"]
    assert kg["entities"] == 4 and kg["accepted"] + kg["rejected"] + kg["failed"] == kg["entities"]
    dd = s["dedup"]
    assert dd["input"] == rw["records_out"] + kg["accepted"]
    assert dd["kept"] + dd["removed_exact"] + dd["removed_near"] == dd["input"]
    # The samples hold one exact copy, one near copy and one consultation quoting an eval case.
    assert dd["removed_exact"] >= 1 and dd["removed_near"] >= 1
    dc = s["decontam"]
    assert dc["input"] == dd["kept"] and dc["kept"] + dc["removed"] == dc["input"] and dc["removed"] >= 1
    assert s["mix"]["records"] == dc["kept"]
    assert s["sft1"]["conversations"] == s["mix"]["records"]
    assert s["sft1"]["samples"] == s["sft1"]["conversations"] - s["sft1"]["dropped_no_target"] > 0
    cu = s["curate"]
    assert cu["items"] == 6 and cu["decisions"] == cu["sft"] <= cu["items"]
    assert cu["dpo"] == cu["shown"] > 0  # every shown candidate was rejected against the written reply
    assert s["sft2"]["conversations"] == cu["sft"]
    assert s["dpo"]["pairs"] == cu["dpo"]
    for name in ("sft1", "sft2", "dpo"):
        assert s[name]["steps"] > 0
    ex = s["exam"]
    assert ex["questions"] == 20 and 0 <= ex["correct_base"] <= 20 and 0 <= ex["correct_trained"] <= 20
    co = s["consult"]
    assert co["cases"] == co["dialogues"] == co["judged"] == 4
    assert co["parsed"] == co["judged"] and co["unparsed"] == 0  # the judge is held to SCORES_SCHEMA
    assert 4 <= co["doctor_turns"] <= 8  # two doctor turns at most per case
    rl = s["rl"]
    assert rl["steps"] == 8 and rl["train_cases"] == 2 and rl["held_out_cases"] == 2  # CMB-clin-shaped / CMD-shaped
    gg = s["gym_grpo"]  # sixteen training ledgers, the eight shipped ones held out; eval gym: two doctors × eight
    assert (gg["warmup_steps"], gg["grpo_steps"], gg["train_ledgers"], gg["held_out_ledgers"]) == (20, 4, 16, 8)
    assert gg["eval_episodes"] == 16 and gg["failed"] == 0
    assert s["serve"]["replies"] == 1 and s["serve"]["page_bytes"] > 0


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_report_and_charts(demo):
    out, summary = demo
    report = Path(summary["report"])
    assert report == out / "report.md"
    text = report.read_text(encoding="utf-8")
    assert "proves the machinery, not medicine" in text
    assert "not available" not in text
    for name in STAGES:
        assert f"| {name} | done |" in text
    # The verdict states the figures it rests on.
    rw = summary["stages"]["rewrite"]
    assert f"{rw['accepted']} of {rw['accepted'] + rw['rejected']} conversations passed" in text
    assert "chance is 20%" in text
    # GRPO in the gym: its steps, its reward curve, the held-out ledgers before and after, eval gym's table of the
    # starting model and the GRPO model, and what it does not show.
    gym_grpo = json.loads((out / "stages" / "gym_grpo.json").read_text(encoding="utf-8"))
    assert [c["step"] for c in gym_grpo["curve"]] == [1, 2, 3, 4]
    for label in ("before", "after"):
        assert gym_grpo[label]["episodes"] == 16 and 0 <= gym_grpo[label]["info_recall"] <= 1
    section = text[text.index("## GRPO in the consultation gym"):]
    assert "This shows the path working, not learning." in section and "benchmarks/gym_grpo.py" in section
    assert "| before | 16 |" in section and "| after | 16 |" in section
    assert "| start (warm-up) | 8 of 8 |" in section and "| GRPO | 8 of 8 |" in section
    assert "**GRPO in the gym:** after 4 steps, held-out information recall" in text
    for chart in ("stage_times", "data_funnel", "training_loss", "exam_accuracy", "rl_reward", "gym_grpo_reward"):
        png = out / "charts" / f"{chart}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](charts/{chart}.png)" in text
    assert (out / "mix" / "card" / "DATA_CARD.md").exists()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_server_answered_a_chat_request(demo):
    out, _ = demo
    serve = json.loads((out / "stages" / "serve.json").read_text(encoding="utf-8"))
    assert serve["reply"].strip() and serve["finish_reason"] in ("stop", "length")
    assert "不能替代医生" in serve["notice"]  # the safety layer was on: the standing notice came back
    assert serve["question"] in (out / "report.md").read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_second_run_reuses_every_stage(demo):
    out, first = demo
    again = run_demo(out, timeout=900)
    assert again["stages"] == first["stages"]  # same recorded times and counts: nothing ran again
    text = Path(again["report"]).read_text(encoding="utf-8")
    assert all(f"| {name} | done (reused) |" in text for name in STAGES)


def expect_progressing(child, pattern: str, stall: float = 180.0, limit: float = 1500.0) -> None:
    """`child.expect(pattern)`, waiting as long as the child's process tree uses CPU (a busy
    machine loads the model slowly), failing after `stall` seconds without progress."""
    import time

    import pexpect

    from discmed.cpu import tree_cpu_seconds

    t0 = last = time.time()
    cpu = tree_cpu_seconds(child.pid)
    while True:
        try:
            child.expect(pattern, timeout=5)
            return
        except pexpect.TIMEOUT:
            now, used = time.time(), tree_cpu_seconds(child.pid)
            if used is not None and cpu is not None and used > cpu + 0.05:
                last = now
            cpu = used
            if now - last > stall or now - t0 > limit:
                raise


def _process_state(pid: int) -> str:
    """What a hung child is doing: its signal masks, its threads' wait channels, its process
    tree and (where py-spy is installed) its Python stacks; for the failure message."""
    import shutil
    import subprocess

    parts = []
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        parts.append("".join(line + "\n" for line in status.splitlines() if line.startswith(("State", "Sig", "Shd"))))
        for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
            parts.append(f"thread {task.name} {(task / 'comm').read_text().strip()}: {(task / 'wchan').read_text()}\n")
    except OSError as e:
        parts.append(f"(/proc/{pid}: {e})\n")
    parts.append(subprocess.run(["ps", "-e", "-o", "pid,ppid,pgid,sid,stat,etime,cmd", "--forest"],
                                capture_output=True, text=True).stdout[-4000:])  # fmt: skip
    if shutil.which("py-spy"):
        parts.append(subprocess.run(["py-spy", "dump", "--pid", str(pid)], capture_output=True, text=True).stdout[-4000:])
    return "".join(parts)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_serve_flag_opens_api_and_page_until_ctrl_c(demo, free_port, as_at_a_terminal):
    """`--serve` (every stage reused) prints the API and page addresses; both answer; Ctrl+C stops the server."""
    import urllib.error
    import urllib.request

    import openai
    import pexpect

    out, _ = demo
    child = pexpect.spawn(sys.executable, ["-m", "discmed", "demo", "--out", str(out), "--serve", "--port", str(free_port)],
                          env={**os.environ, "COLUMNS": "200"}, encoding="utf-8", timeout=240,
                          preexec_fn=as_at_a_terminal)  # fmt: skip
    try:
        expect_progressing(child, r"API:\s+(http://127\.0\.0\.1:\d+/v1)")
        api = child.match.group(1)
        child.expect(r"web page: (http://127\.0\.0\.1:\d+/)")
        page = child.match.group(1)
        assert api == f"http://127.0.0.1:{free_port}/v1" and page == f"http://127.0.0.1:{free_port}/"
        reply = openai.OpenAI(base_url=api, api_key="EMPTY").chat.completions.create(
            model="discmed-demo", max_tokens=16, messages=[{"role": "user", "content": "医生您好，我头痛两天了。"}])
        assert reply.choices[0].message.content.strip()
        with urllib.request.urlopen(page, timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        child.sendintr()
        try:
            child.expect(pexpect.EOF, timeout=120)
        except pexpect.TIMEOUT:
            pytest.fail(f"`discmed demo --serve` still running 120 s after Ctrl+C:\n{_process_state(child.pid)}")
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    with pytest.raises(urllib.error.URLError):  # the server went with it
        urllib.request.urlopen(page, timeout=5)


def test_report_says_which_stages_did_not_run(tmp_path):
    """A stage whose part is missing is reported as such, with the reason, never filled in."""
    from discmed.demo_report import write_report

    results = {
        "load": {"status": "done", "seconds": 0.1, "counts": {"records": 15}},
        "scrub": {"status": "not available", "reason": "No module named 'discmed.data.scrub'", "seconds": 0.0, "counts": {}},
        "rewrite": {"status": "not available", "reason": "needs scrub, which did not run", "seconds": 0.0, "counts": {}},
    }
    text = write_report(tmp_path, results).read_text(encoding="utf-8")
    assert "stage scrub: not available: No module named 'discmed.data.scrub'" in text
    assert "stage rewrite: not available: needs scrub, which did not run" in text
    assert "| 1 | load | done | 0.1 | records 15 |" in text
    assert "Exam:" not in text  # no figures are stated for stages that did not run
    assert all((tmp_path / "charts" / f"{c}.png").stat().st_size > 0 for c in ("stage_times", "data_funnel"))
