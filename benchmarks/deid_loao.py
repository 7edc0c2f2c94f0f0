"""De-identification, leave-one-author-out (issue 24): identifiers removed and medical values kept,
per blind writer of discmed/assets/safety/authors/, per identifier type.

    .venv/bin/python benchmarks/deid_loao.py                 # the authors developed on, with their misses
    .venv/bin/python benchmarks/deid_loao.py --locked        # the final figure: every author, the locked ones too
    .venv/bin/python benchmarks/deid_loao.py --no-ner        # the rules alone

Each writer's 20 "deid" texts list every identifier ({text, type in the writer's own words}) and
the medical values that must survive. Scored on `discmed.data.scrub.scrub_text` (the pipeline
`discmed data scrub` runs): an identifier is removed (strict) when its text no longer appears in
the output; a medical value is kept when its text still does.

How the figure is kept honest. Before any de-identification work on this corpus, three writers
were LOCKED: a2_peds_parent and a7_rural (two Chinese writers) and a8_english (the English one,
whose English recognizers were written from general knowledge). Their texts were never opened,
printed or scored while the pipeline was built; only their identifier TYPE words were read (to
build the mapping below, which was made from type words alone). The pipeline was developed on
a1, a3, a4, a5 and a6, whose misses this script prints. `--locked` scores everyone and prints no
text of a locked writer, only counts; it was run once, at the end (benchmarks/RESULTS.md).

The mapping from the writers' free-text types onto discmed's taxonomy (HIPAA Safe Harbor and
i2b2-2014 categories in Chinese practice) is `TAXONOMY` below, keyword by keyword.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AUTHORS = ROOT / "discmed" / "assets" / "safety" / "authors"
LOCKED = ("a2_peds_parent", "a7_rural", "a8_english") + tuple(sorted(
    # and every later writer never developed on (writers.json): their misses are not printed either
    w for w, v in json.loads((AUTHORS / "writers.json").read_text(encoding="utf-8"))["writers"].items()
    if "developed" not in v["use"]))

# Writers' type words → taxonomy category: the first keyword (a regex on the lowercased type) that
# matches wins, so the more specific come first. Built from the type words only.
TAXONOMY = [
    (r"\bage\b|年龄", "age"),
    (r"日期|时间|年月|date|time|expiry", "date"),
    (r"微信|网名|昵称|wechat|group name|群名", "account"),
    (r"姓名|称呼|小名|name|监护人|guardian|医生$", "name"),
    (r"邮箱|email", "email_url_ip"),
    (r"电话|phone|尾号", "phone"),
    (r"车牌|plate|航班", "plate_vehicle"),
    (r"身份证|id card|passport|社会保障|work permit", "id_document"),
    (r"床|房间|病房|病区|座位|宿舍|楼层|ward|bed|room", "ward_room_bed"),
    (r"班级|年级|学院|学校|幼儿园|school", "school"),
    (r"医院|机构|卫生|诊所|health center|hospital(?! (?:number|id|patient))|institution|接种单位|药店|养老", "hospital_care"),
    (r"单位|employer|保险公司|insurer|银行网点|开户行|开户银行|bank branch|police station|职务", "employer_org"),
    (r"住址|地址|地点|乡镇|村|城市|籍贯|参保地|place|location|address|nationality", "address_place"),
    (r"银行|bank|sort code", "bank_account"),
    (r"号|编号|代码|id|number|code|密码|医保|card|证", "record_number"),
]


def category(type_word: str, text: str = "") -> str:
    """The taxonomy category of a writer's type word; an age under 90 is `age<90`: Safe Harbor
    does not count it as an identifier and discmed keeps it (it is medicine)."""
    t = type_word.lower()
    if re.search(TAXONOMY[0][0], t):
        m = re.search(r"\d+", text)
        return "age" if not m or int(m.group(0)) >= 90 else "age<90"
    for pattern, cat in TAXONOMY:
        if re.search(pattern, t):
            return cat
    return "other"


def load(author: str) -> list[dict]:
    rows = [json.loads(line) for line in (AUTHORS / f"{author}.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if r["kind"] == "deid"]


def score(author: str, ner: bool, show: bool) -> dict:
    from discmed.data.scrub import scrub_text

    removed, total = Counter(), Counter()
    kept = meds = 0
    misses, lost = [], []
    for r in load(author):
        out, _ = scrub_text(r["text"], ner=ner)
        for ident in r["identifiers"]:
            cat = category(ident["type"], ident["text"])
            total[cat] += 1
            if ident["text"] in out:
                misses.append((cat, ident["type"], ident["text"]))
            else:
                removed[cat] += 1
        for m in r["medical"]:
            meds += 1
            if m in out:
                kept += 1
            else:
                lost.append(m)
    if show:
        for cat, typ, text in misses:
            print(f"    miss {author} {cat:15s} {typ}: {text}")
        for m in lost:
            print(f"    lost {author} medical: {m}")
    return {"removed": sum(removed.values()), "identifiers": sum(total.values()), "kept": kept, "medical": meds,
            "removed_sh": sum(removed.values()) - removed["age<90"], "identifiers_sh": sum(total.values()) - total["age<90"],
            "by_type": {c: (removed[c], total[c]) for c in total}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--locked", action="store_true", help="score the locked writers too (the final figure)")
    ap.add_argument("--no-ner", action="store_true", help="the rules alone")
    ap.add_argument("--quiet", action="store_true", help="no per-miss lines")
    args = ap.parse_args()
    authors = sorted(p.stem for p in AUTHORS.glob("a*.jsonl"))
    if not args.locked:
        authors = [a for a in authors if a not in LOCKED]
    rows = {}
    for a in authors:
        rows[a] = score(a, not args.no_ner, show=not args.quiet and a not in LOCKED)
    print(f"\n{'writer':18s} {'set':10s} {'identifiers removed (strict)':>30s} {'Safe Harbor (ages<90 out)':>27s}"
          f" {'medical values kept':>22s}")
    groups: dict[str, Counter] = defaultdict(Counter)
    by_type: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for a, r in rows.items():
        group = "locked" if a in LOCKED else "developed"
        print(f"{a:18s} {group:10s} {r['removed'] / r['identifiers']:10.3f} ({r['removed']:3d}/{r['identifiers']:3d})"
              f"        {r['removed_sh'] / r['identifiers_sh']:10.3f} ({r['removed_sh']:3d}/{r['identifiers_sh']:3d})"
              f"        {r['kept'] / r['medical']:10.3f} ({r['kept']:3d}/{r['medical']:3d})")
        for k in ("removed", "identifiers", "removed_sh", "identifiers_sh", "kept", "medical"):
            groups[group][k] += r[k]
        for cat, (hit, n) in r["by_type"].items():
            by_type[group][cat]["hit"] += hit
            by_type[group][cat]["n"] += n
    for group, g in groups.items():
        print(f"{'all ' + group:29s} {g['removed'] / g['identifiers']:10.3f} ({g['removed']:3d}/{g['identifiers']:3d})"
              f"        {g['removed_sh'] / g['identifiers_sh']:10.3f} ({g['removed_sh']:3d}/{g['identifiers_sh']:3d})"
              f"        {g['kept'] / g['medical']:10.3f} ({g['kept']:3d}/{g['medical']:3d})")
    worst_ids = min(rows, key=lambda a: rows[a]["removed"] / rows[a]["identifiers"])
    worst_med = min(rows, key=lambda a: rows[a]["kept"] / rows[a]["medical"])
    print("\nper identifier type (strict removed): " + "  ".join(groups))
    cats = sorted({c for g in by_type.values() for c in g})
    for c in cats:
        cells = [f"{by_type[g][c]['hit'] / by_type[g][c]['n']:.3f} ({by_type[g][c]['hit']}/{by_type[g][c]['n']})"
                 if by_type[g][c]["n"] else "-" for g in groups]
        print(f"  {c:16s} " + "   ".join(f"{x:>18s}" for x in cells))
    ids_worst = rows[worst_ids]["removed"] / rows[worst_ids]["identifiers"]
    worst_sh = min(rows, key=lambda a: rows[a]["removed_sh"] / rows[a]["identifiers_sh"])
    sh_worst = rows[worst_sh]["removed_sh"] / rows[worst_sh]["identifiers_sh"]
    med_worst = rows[worst_med]["kept"] / rows[worst_med]["medical"]
    print(json.dumps({
        "benchmark": "deid_loao", "discmed": round(ids_worst, 4), "peer": 0.151,
        "unit": "identifiers removed (strict), worst writer (peer: main's blind figure, worst writer)",
        "ratio": round(ids_worst / 0.151, 2), "goal": 0.95, "worst_writer": worst_ids,
        "safe_harbor_worst": round(sh_worst, 4), "safe_harbor_worst_writer": worst_sh,
        "medical_kept_worst": round(med_worst, 4), "medical_worst_writer": worst_med, "medical_goal": 0.995,
        "writers": {a: {"removed": round(r["removed"] / r["identifiers"], 4), "kept": round(r["kept"] / r["medical"], 4),
                        "removed_safe_harbor": round(r["removed_sh"] / r["identifiers_sh"], 4),
                        "locked": a in LOCKED} for a, r in rows.items()},
        "locked_scored": args.locked, "ner": not args.no_ner,
        "met": bool(args.locked and ids_worst >= 0.95 and med_worst >= 0.995)}, ensure_ascii=False))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
