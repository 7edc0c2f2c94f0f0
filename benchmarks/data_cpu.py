"""CPU data steps at DISC scale: scrub + dedup + decontam over 470k generated dialogues.

    .venv/bin/python benchmarks/data_cpu.py                 # the goal run: 470,000 dialogues
    .venv/bin/python benchmarks/data_cpu.py --n 20000       # a smaller run (figures extrapolate)
    .venv/bin/python benchmarks/data_cpu.py --no-ner        # scrub by rules alone, as before issue 14

The dialogues are generated from templates written here (2–4 patient/doctor exchanges,
~500–900 characters like MedDialog's, with doses, lab values, phone numbers and names to
scrub, ~5% near-duplicates and a few planted copies of evaluation questions). Generation is
not timed. Timed: the three steps exactly as `discmed data scrub|dedup|decontam` run them,
file to file, JSON parsing included, with `--workers` processes per step (default 2: the
goal machine has 2 cores; the per-record work is shared, dedup's comparison stays in order). Goals: wall time ≤ 10 minutes and peak memory ≤ 4 GB
(the process's max RSS). The "peer" is the 600 s budget: ratio = wall / 600, met when ≤ 1.
The scrub's full-size time is printed on its own (`scrub_full_s`, projected from a smaller `--n`):
issue 24's goal is ≤ 20 minutes on 2 cores with the NER on.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

SYMPTOMS = ["头疼", "发烧", "咳嗽", "胸闷", "腹痛", "腹泻", "失眠", "腰疼", "皮疹", "心慌", "乏力", "恶心", "关节痛", "耳鸣",
            "尿频", "便秘", "咽痛", "头晕", "胃胀", "牙疼"]
WHO = ["我", "我妈妈", "我爸爸", "孩子", "我老公", "我老婆", "我奶奶", "宝宝"]
DRUGS = [("阿莫西林", "0.5g"), ("布洛芬", "0.3g"), ("奥美拉唑", "20mg"), ("二甲双胍", "0.5g"), ("氨氯地平", "5mg"),
         ("头孢克肟", "100mg"), ("蒙脱石散", "3g"), ("氯雷他定", "10mg"), ("左氧氟沙星", "0.5g"), ("甲硝唑", "0.2g")]
TESTS = ["血常规", "尿常规", "肝功能", "肾功能", "胸部CT", "腹部B超", "心电图", "胃镜", "甲功", "血糖"]
DIAG = ["上呼吸道感染", "慢性胃炎", "高血压", "2型糖尿病", "过敏性皮炎", "腰肌劳损", "焦虑状态", "肠胃炎", "支气管炎", "偏头痛"]
SURN = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗郑"


def dialogue(rng: random.Random, i: int) -> dict:
    who, sym, sym2 = rng.choice(WHO), rng.choice(SYMPTOMS), rng.choice(SYMPTOMS)
    age, days = rng.randint(1, 85), rng.randint(1, 30)
    drug, dose = rng.choice(DRUGS)
    test, test2, diag = rng.choice(TESTS), rng.choice(TESTS), rng.choice(DIAG)
    wbc, temp = round(rng.uniform(3.5, 15.0), 1), round(rng.uniform(36.5, 40.0), 1)
    turns = [
        (f"{rng.choice(SURN)}医生您好，{who}今年{age}岁，{sym}已经{days}天了，最高体温{temp}℃，还有点{sym2}，"
         f"之前自己吃了{drug}，效果不明显，晚上睡不好，白天没精神，想问一下这是什么原因，需要做什么检查吗？"
         + (f"方便的话打我电话1{rng.randint(3, 9)}{rng.randint(100000000, 999999999)}。" if rng.random() < 0.1 else "")),
        (f"您好，根据您的描述，{sym}持续{days}天，伴有{sym2}，需要考虑{diag}的可能，但还要结合检查结果判断。"
         f"建议先到医院查一下{test}和{test2}，必要时做进一步检查。{drug}可以继续用，每次{dose}，每天{rng.choice(['两', '三'])}次，"
         f"注意多休息、多喝水，饮食清淡，避免辛辣刺激的食物。如果症状加重或者出现高热不退，要及时就医。"),
        (f"谢谢医生，今天查了{test}，白细胞{wbc}×10^9/L，其他指标医生说基本正常，这个结果严重吗？还需要吃别的药吗？"),
        (f"白细胞{wbc}×10^9/L{'偏高，提示可能有细菌感染' if wbc > 10 else '在正常范围内'}，"
         f"结合您的症状，目前考虑{diag}。治疗上可以继续{drug}，疗程{rng.randint(3, 14)}天，同时观察体温变化。"
         f"如果{rng.randint(2, 5)}天后仍然没有好转，建议复查{test}，必要时到专科门诊就诊。平时注意作息规律，适当锻炼。"),
    ]
    if rng.random() < 0.5:  # a follow-up exchange, as many real consultations have
        turns += [f"那{drug}要吃多久？饭前吃还是饭后吃？{who}平时还有{rng.choice(DIAG)}，一直在吃药，会不会有冲突？"
                  f"另外{sym}的时候能不能洗澡、运动？",
                  f"{drug}一般建议饭后服用，可以减少对胃的刺激，疗程按医生交代的来，不要自行停药。"
                  f"和您平时吃的药一般没有明显冲突，但最好把正在服用的药物都告诉接诊医生。{sym}期间可以正常洗澡，"
                  f"水温不要太高，剧烈运动先暂停，等症状缓解后再慢慢恢复。有任何新的不适，请及时到医院就诊。"]
    n = rng.choice([2, 4, 4, 4]) if len(turns) == 4 else 6
    conv = [{"role": "user" if k % 2 == 0 else "assistant", "content": t} for k, t in enumerate(turns[:n])]
    return {"_id": f"syn-{i}", "source": "MedDialog", "conversation": conv}


def generate(path: Path, n: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    evals = []
    if (SHARED / "disc-medllm").exists():
        evals = [x["question"] for x in json.loads((SHARED / "disc-medllm/eval/samples/cmd_samples.json").read_text(encoding="utf-8"))]
    recent: list[dict] = []
    planted = dups = chars = 0
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            if recent and rng.random() < 0.05:  # a near-duplicate of a recent dialogue
                rec = json.loads(json.dumps(rng.choice(recent)))
                rec["_id"] = f"syn-{i}"
                rec["conversation"][0]["content"] += rng.choice(["谢谢！", "麻烦了", "在线等"])
                dups += 1
            else:
                rec = dialogue(rng, i)
            if evals and i % 10_000 == 5_000:  # a planted evaluation question
                rec["conversation"][0]["content"] = evals[(i // 10_000) % len(evals)]
                planted += 1
            recent = (recent + [rec])[-1000:]
            chars += sum(len(m["content"]) for m in rec["conversation"])
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return {"dialogues": n, "near_duplicates_planted": dups, "eval_copies_planted": planted, "avg_chars": round(chars / n)}


def main() -> None:
    ap = argparse.ArgumentParser(description="scrub + dedup + decontam over generated dialogues")
    ap.add_argument("--n", type=int, default=470_000)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=2, help="processes per step (the goal machine has 2 cores)")
    ap.add_argument("--no-ner", action="store_true",
                    help="scrub by rules alone (the NER's own cost is measured by benchmarks/scrub_ner.py)")
    args = ap.parse_args()

    from discmed.data.decontam import EvalIndex, decontam_file, default_eval_paths
    from discmed.data.dedup import dedup_file
    from discmed.data.scrub import scrub_file

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        gen = generate(tmp / "in.jsonl", args.n)
        print(f"generated {gen} in {time.perf_counter() - t:.0f}s", file=sys.stderr)

        # The scrub's one-time cost (importing Presidio, which imports transformers; loading LAC, spaCy's
        # English model and jieba's dictionary) is paid once per run, not per dialogue: measured apart
        # on 20 dialogues, so the full-size projection is setup + per-dialogue time x 470,000.
        generate(tmp / "warm.jsonl", 20, seed=1)
        ts = time.perf_counter()
        scrub_file(tmp / "warm.jsonl", tmp / "warm.out.jsonl", progress=False, workers=args.workers, ner=not args.no_ner)
        setup_s = time.perf_counter() - ts
        t0, c0 = time.perf_counter(), time.process_time()
        s1 = scrub_file(tmp / "in.jsonl", tmp / "scrubbed.jsonl", progress=False, workers=args.workers, ner=not args.no_ner)
        t1, c1 = time.perf_counter(), time.process_time()
        s2 = dedup_file(tmp / "scrubbed.jsonl", tmp / "deduped.jsonl", report=tmp / "dedup.removed.jsonl", progress=False,
                        workers=args.workers)
        t2, c2 = time.perf_counter(), time.process_time()
        index = EvalIndex.from_paths(default_eval_paths(SHARED))
        s3 = decontam_file(tmp / "deduped.jsonl", tmp / "clean.jsonl", index, report=tmp / "decontam.removed.jsonl",
                           progress=False, workers=args.workers)
        t3 = time.perf_counter()
    # CPU of this process and of the worker processes it waited for.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, cpu = t3 - t0, time.process_time() - c0 + children.ru_utime + children.ru_stime
    # Peak resident memory: the main process plus the largest worker (forked, mostly shared pages).
    peak_gb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + children.ru_maxrss) / 1024**2
    c3 = time.process_time()
    print(f"CPU seconds: scrub {c1 - c0:.1f}, dedup {c2 - c1:.1f}, decontam {c3 - c2:.1f}")
    print(f"n={args.n} avg_chars={gen['avg_chars']}: scrub {t1 - t0:.1f}s ({s1['replaced_total']} replaced), "
          f"dedup {t2 - t1:.1f}s (exact {s2['removed_exact']}, near {s2['removed_near']} of {gen['near_duplicates_planted']} planted), "
          f"decontam {t3 - t2:.1f}s (removed {s3['removed']} of {gen['eval_copies_planted']} planted)")
    print(f"wall {wall:.1f}s ({args.n / wall:.0f} dialogues/s), CPU {cpu:.1f}s (all processes), "
          f"peak RSS {peak_gb:.2f} GB")
    # The scrub's time at full size, projected linearly from this run (issue 24's goal: ≤ 20 minutes
    # on 2 cores with NER); exact when n is 470,000.
    scrub_full = setup_s + (t1 - t0) * 470_000 / args.n
    print(f"scrub at 470,000 dialogues ({'NER on' if not args.no_ner else 'rules alone'}, {args.workers} workers): "
          f"{scrub_full / 60:.1f} min ({'measured' if args.n >= 470_000 else 'projected from n=' + str(args.n)}; "
          f"setup {setup_s:.1f}s once)")
    print(json.dumps({"benchmark": "data_cpu", "discmed": round(wall, 1), "peer": 600.0, "unit": "s (wall, lower is better)",
                      "ratio": round(wall / 600.0, 4), "goal": 1.0, "peak_rss_gb": round(peak_gb, 3), "peak_goal_gb": 4.0,
                      "cpu_s": round(cpu, 1), "workers": args.workers, "n": args.n, "met": wall <= 600.0 and peak_gb <= 4.0 and args.n >= 470_000,
                      "scrub_ner": not args.no_ner, "scrub_s": round(t1 - t0, 1), "scrub_full_s": round(scrub_full),
                      "scrub_full_goal_s": 1200, "scrub_full_met": scrub_full <= 1200, "scrub_setup_s": round(setup_s, 1), "dedup_s": round(t2 - t1, 1), "decontam_s": round(t3 - t2, 1)}))


if __name__ == "__main__":
    main()
