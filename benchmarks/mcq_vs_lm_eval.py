"""discmed's exam logprob scorer against lm-evaluation-harness on CMMLU's medical subjects.

    .venv/bin/python benchmarks/mcq_vs_lm_eval.py [--data ../shared/data/cmmlu] [--batch-size 16]

Both harnesses score the same tiny model (discmed.tiny.ensure_tiny) on the 1,815 CMMLU medical
test questions with the same prompt (lm_eval's own cmmlu wording, which discmed's cmmlu task
uses) and the same choice letters, zero-shot. lm_eval reads the same CSV files through a task
YAML written into a temporary folder (target_delimiter "" so both score "答案：A", not
"答案： A"). Each harness runs as a whole command in its own process, timed from start to exit,
with the same batch size and thread count, after one untimed one-question warm-up of each
(so lm_eval's datasets cache is built: steady state, not a first run). Goals: the predicted letter agrees on >= 99% of
questions, and discmed's wall-clock time is <= 0.5x lm_eval's.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LM_EVAL_TASK = """task: {task}
dataset_path: csv
dataset_kwargs:
  data_files:
    test: {test}
    dev: {dev}
test_split: test
fewshot_split: dev
fewshot_config:
  sampler: first_n
output_type: multiple_choice
description: {description}
doc_to_text: "{{{{Question.strip()}}}}\\nA. {{{{A}}}}\\nB. {{{{B}}}}\\nC. {{{{C}}}}\\nD. {{{{D}}}}\\n答案："
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: "{{{{['A', 'B', 'C', 'D'].index(Answer)}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
"""


def timed(cmd: list[str], env: dict, log: Path) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of the child) for one whole command. CPU time is printed
    too because on a shared machine other jobs stretch wall-clock time unevenly."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{cmd[:3]} failed (exit {proc.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cmmlu"))
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shots", type=int, default=0, help="k-shot from dev (both harnesses take the first k)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N questions per subject")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    ap.add_argument("--model-path", default=None, help="a local HF model folder (default: the tiny model)")
    ap.add_argument("--work", default=None, help="keep outputs here (default: a temporary folder)")
    args = ap.parse_args()

    from discmed.eval.loaders import load_task
    from discmed.tiny import ensure_tiny

    tiny = Path(args.model_path).resolve() if args.model_path else ensure_tiny()
    data = Path(args.data).resolve()
    task = load_task("cmmlu")
    work = Path(args.work or tempfile.mkdtemp(prefix="mcq-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "HF_DATASETS_CACHE": str(work / "hf-datasets"),
    }

    # lm_eval's side: one task per subject over the same CSV files.
    tasks_dir = work / "lm_eval_tasks"
    tasks_dir.mkdir(exist_ok=True)
    names = []
    for subject, zh in task.subsets.items():
        name = f"discmed_cmmlu_{subject}"
        names.append(name)
        description = json.dumps(task.description.format(subject=zh, kind="单项选择题"), ensure_ascii=False)
        (tasks_dir / f"{name}.yaml").write_text(
            LM_EVAL_TASK.format(
                task=name,
                test=data / "test" / f"{subject}.csv",
                dev=data / "dev" / f"{subject}.csv",
                description=description,
            ),
            encoding="utf-8",
        )

    discmed_out = work / "discmed"
    discmed_cmd = [
        str(Path(sys.executable).with_name("discmed")),
        "eval",
        "mcq",
        "--model",
        f"hf:{tiny}",
        "--task",
        "cmmlu",
        "--data-dir",
        str(data),
        "--mode",
        "logprob",
        "--shots",
        str(args.shots),
        "--batch-size",
        str(args.batch_size),
        "--out",
        str(discmed_out),
        "--json",
    ]
    lm_out = work / "lm_eval"
    lm_cmd = [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={tiny},dtype=float32",
        "--device",
        "cpu",
        "--tasks",
        ",".join(names),
        "--include_path",
        str(tasks_dir),
        "--num_fewshot",
        str(args.shots),
        "--batch_size",
        str(args.batch_size),
        "--log_samples",
        "--output_path",
        str(lm_out),
    ]

    if args.limit:
        discmed_cmd[-1:-1] = ["--limit", str(args.limit)]
        lm_cmd += ["--limit", str(args.limit)]
    for folder in (discmed_out, work / "warmup"):  # a kept --work folder: start afresh, not resumed
        if folder.exists():
            shutil.rmtree(folder)
    # Untimed warm-up of both (one question each): lm_eval's datasets cache gets built and the
    # model files and Python modules sit in the page cache, so the timed runs are steady-state.
    timed([*lm_cmd[: lm_cmd.index("--log_samples")], "--limit", "1"], env, work / "lm_eval_warmup.log")
    timed(
        [*discmed_cmd[: discmed_cmd.index("--out")], "--limit", "1", "--out", str(work / "warmup")],
        env,
        work / "discmed_warmup.log",
    )
    t_lm, cpu_lm = timed(lm_cmd, env, work / "lm_eval.log")
    t_discmed, cpu_discmed = timed(discmed_cmd, env, work / "discmed.log")

    ours = json.loads((discmed_out / "results.json").read_text(encoding="utf-8"))["questions"]
    ours_by_pos: dict[tuple[str, int], dict] = {}
    for subject in task.subsets:
        for pos, r in enumerate(x for x in ours if x["subset"] == subject):
            ours_by_pos[(subject, pos)] = r
    same = total = lm_correct = 0
    max_diff = 0.0
    for subject in task.subsets:
        files = sorted(
            glob.glob(str(lm_out / "**" / f"samples_discmed_cmmlu_{subject}_*.jsonl"), recursive=True)
        )
        if not files:
            sys.exit(f"no lm_eval samples for {subject} under {lm_out}")
        for line in Path(files[-1]).read_text(encoding="utf-8").splitlines():
            s = json.loads(line)
            lls = [float(r[0]) for r in s["filtered_resps"]]
            theirs = "ABCD"[max(range(4), key=lambda i: lls[i])]
            mine = ours_by_pos[(subject, s["doc_id"])]
            total += 1
            same += theirs == mine["extracted"]
            lm_correct += theirs == mine["answer"]
            max_diff = max(
                max_diff, max(abs(a - mine["logprobs"][k]) for a, k in zip(lls, "ABCD", strict=True))
            )

    agreement = same / total
    ratio = t_discmed / t_lm
    print(f"questions: {total} (discmed scored {len(ours)})")
    print(f"predicted letters agreeing: {same}/{total} = {agreement:.4f} (goal >= 0.99)")
    print(f"largest |log-prob difference| on any choice: {max_diff:.2e}")
    print(
        f"accuracy: discmed {sum(r['verdict'] == 'correct' for r in ours) / len(ours):.4f}, "
        f"lm_eval {lm_correct / total:.4f}"
    )
    print(f"wall-clock: discmed {t_discmed:.1f} s, lm_eval {t_lm:.1f} s, ratio {ratio:.3f} (goal <= 0.5)")
    print(f"CPU time: discmed {cpu_discmed:.1f} s, lm_eval {cpu_lm:.1f} s, ratio {cpu_discmed / cpu_lm:.3f}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{args.shots}-shot, batch size {args.batch_size}, {args.threads} threads; outputs in {work}")
    print(
        json.dumps(
            {
                "benchmark": "mcq_vs_lm_eval",
                "discmed": round(t_discmed, 2),
                "peer": round(t_lm, 2),
                "unit": "s",
                "ratio": round(ratio, 3),
                "goal": 0.5,
                "met": bool(ratio <= 0.5 and agreement >= 0.99),
                "agreement": round(agreement, 4),
                "agreement_goal": 0.99,
                "questions": total,
                "shots": args.shots,
                "max_logprob_diff": max_diff,
                "cpu_s": {"discmed": round(cpu_discmed, 2), "peer": round(cpu_lm, 2)},
            }
        )
    )


if __name__ == "__main__":
    main()
