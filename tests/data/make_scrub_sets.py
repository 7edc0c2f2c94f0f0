"""Writes tests/data/scrub_dev.jsonl and scrub_heldout.jsonl: the de-identification sets.

Carriers are consultation messages written for discmed; `{type}` is a slot filled with a
made-up identifier of that type, `[[...]]` marks a medical value that must survive the scrub.
Every fifth carrier, and every fifth value of each identifier pool, goes to the held-out file,
so the held-out part has sentences and identifiers the rules were never tuned on.

    python tests/data/make_scrub_sets.py   # deterministic (seed 14)
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).parent

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
COMPOUND = ["欧阳", "司马", "诸葛", "上官", "皇甫", "东方", "慕容", "令狐", "夏侯", "尉迟", "端木", "公孙"]
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英建华文辉玉兰志强海燕国庆春梅小红晓东红梅德明淑珍子轩梓涵浩然欣怡宇航雨桐一诺思远佳怡俊杰婉清"
NICK_CHARS = "芳敏丽军强涛杰红梅婷乐豆贝妞宝峰刚亮斌燕琳"


def names(rng: random.Random, n: int) -> list[str]:
    out = []
    while len(out) < n:
        k = rng.random()
        if k < 0.6:
            out.append(rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2)))))
        elif k < 0.75:
            out.append(rng.choice(COMPOUND) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2)))))
        elif k < 0.9:
            out.append(rng.choice("小老") + rng.choice(SURNAMES))
        else:
            c = rng.choice(NICK_CHARS)
            out.append(c + c)
    return out


HOSPITALS = ["北京协和医院", "复旦大学附属中山医院", "四川大学华西医院", "华西", "湘雅二院", "省人医", "市一院", "北医三院",
             "浙大一院", "中山六院", "天坛医院", "积水潭", "瑞金医院", "东方肝胆医院", "广州市妇女儿童医疗中心", "南京鼓楼医院",
             "郑大一附院", "齐鲁医院", "西京医院", "同济医院", "仁济", "武汉协和", "长沙市第三医院", "青岛大学附属医院",
             "县人民医院", "临沂市人民医院", "兰州大学第二医院", "宁波市第一医院", "温州医科大学附属第二医院", "昆明医科大学第一附属医院",
             "苏大附一院", "安贞医院", "哈医大一院", "厦门中山医院", "市中心医院", "省肿瘤医院", "爱尔眼科", "美年大健康",
             "深圳市儿童医院", "重医附一院", "西南医院", "新桥医院", "湘雅医院", "中南医院", "上海九院", "北大人民医院"]


def phones(rng):
    def mobile():
        d = rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))
        n = "1" + d
        return rng.choice([n, f"{n[:3]}-{n[3:7]}-{n[7:]}", f"{n[:3]} {n[3:7]} {n[7:]}", "+86 " + n])

    def landline():
        area = rng.choice(["010", "021", "020", "0755", "028", "0571", "027"])
        return rng.choice([f"{area}-{rng.randint(20000000, 89999999)}", f"({area}){rng.randint(2000000, 8999999)}"])

    return [mobile() if rng.random() < 0.75 else landline() for _ in range(200)]


def id_numbers(rng):
    out = []
    w = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    for _ in range(200):
        body = rng.choice(["110105", "310104", "440106", "510107", "330106", "420102", "370102"]) + \
            f"{rng.randint(1940, 2015)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
        n = body + "10X98765432"[sum(int(a) * b for a, b in zip(body, w, strict=True)) % 11]
        out.append(rng.choice([n, n, f"{n[:6]} {n[6:14]} {n[14:]}", f"{n[:4]} {n[4:8]} {n[8:12]} {n[12:16]} {n[16:]}",
                               f"{n[:6]}-{n[6:14]}-{n[14:]}"]))
    return out


def bank_cards(rng):
    out = []
    for _ in range(200):
        body = rng.choice(["622202", "621700", "622848", "621483", "625965"]) + "".join(rng.choice("0123456789") for _ in range(12))
        s = sum((int(d) * 2 - 9 if int(d) * 2 > 9 else int(d) * 2) if i % 2 == 0 else int(d) for i, d in enumerate(reversed(body)))
        n = body + str((10 - s % 10) % 10)
        out.append(rng.choice([n, " ".join(n[i:i + 4] for i in range(0, 19, 4))]))
    return out


def simple(rng, kind):
    letters = "abcdefghijkmnpqrstuvwxyz"
    out = []
    for _ in range(200):
        word = "".join(rng.choice(letters) for _ in range(rng.randint(4, 8)))
        num = str(rng.randint(1000, 99999))
        if kind == "email":
            out.append(f"{word}{num[:2]}@{rng.choice(['qq.com', '163.com', 'gmail.com', 'outlook.com', 'sina.cn'])}")
        elif kind == "url":
            out.append(rng.choice([f"https://www.{word}.com/p/{num}", f"http://{word}.cn/{num}", f"www.{word}.net"]))
        elif kind == "wechat":
            out.append(word + rng.choice(["_", "-", ""]) + num)
        elif kind == "qq":
            out.append(str(rng.randint(10000, 9999999999)))
        elif kind == "record_number":
            out.append(rng.choice([str(rng.randint(100000, 99999999)), f"{rng.choice('ZMHB')}{rng.randint(1000000, 99999999)}",
                                   f"{rng.randint(2018, 2025)}{rng.randint(100000, 999999)}"]))
        elif kind == "plate":
            prov = rng.choice("京沪粤川浙苏鲁豫鄂湘闽皖")
            tail = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(5))
            out.append(rng.choice([f"{prov}{rng.choice('ABCDEFG')}{tail}", f"{prov}{rng.choice('ABCDE')}·{tail}",
                                   f"{prov}{rng.choice('ABC')}D{tail}"]))
    return out


def addresses(rng):
    out = []
    for _ in range(200):
        city = rng.choice(["北京市朝阳区", "上海市浦东新区", "成都市武侯区", "杭州市西湖区", "广州市天河区", "武汉市洪山区", "", ""])
        k = rng.random()
        if k < 0.4:
            out.append(f"{city}{rng.choice(['幸福', '和平', '建设', '人民', '解放', '长江'])}{rng.choice(['路', '街', '大道'])}"
                       f"{rng.randint(1, 999)}号{rng.choice(['', f'{rng.randint(1, 30)}栋'])}{rng.randint(1, 6)}单元{rng.randint(101, 2805)}室")
        elif k < 0.8:
            out.append(f"{city}{rng.choice(['阳光', '金色', '碧桂园', '万科', '锦绣', '翠苑'])}{rng.choice(['花园', '小区', '家园', '城', '新村'])}"
                       f"{rng.randint(1, 40)}{rng.choice(['栋', '幢', '号楼'])}{rng.randint(1, 6)}单元{rng.randint(101, 2805)}")
        else:
            out.append(f"{rng.choice(['临沂市', '南充市', '信阳市'])}{rng.choice(['沂水县', '营山县', '光山县'])}"
                       f"{rng.choice(['王庄', '李家', '河口'])}村{rng.randint(1, 12)}组{rng.randint(1, 99)}号")
    return out


def load_carriers() -> list[str]:
    text = (HERE / "scrub_carriers.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def main() -> None:
    rng = random.Random(14)
    pools = {"name": names(rng, 400), "hospital": HOSPITALS[:], "phone": phones(rng), "id_card": id_numbers(rng),
             "bank_card": bank_cards(rng), "address": addresses(rng)}
    for kind in ("email", "url", "wechat", "qq", "record_number", "plate"):
        pools[kind] = simple(rng, kind)
    parts: dict[str, list] = {"dev": [], "heldout": []}
    for i, carrier in enumerate(load_carriers()):
        part = "heldout" if i % 5 == 4 else "dev"
        for _ in range(3):  # each carrier three times, with different identifiers
            idents, medical = [], []

            def fill(m: re.Match, part: str = part, idents: list = idents) -> str:
                kind = m.group(1)
                pool = [v for j, v in enumerate(pools[kind]) if (j % 5 == 4) == (part == "heldout")]
                value = rng.choice(pool)
                idents.append({"type": kind, "text": value})
                return value

            text = re.sub(r"\{(\w+)\}", fill, carrier)
            medical = re.findall(r"\[\[(.+?)\]\]", text)
            text = text.replace("[[", "").replace("]]", "")
            parts[part].append({"text": text, "identifiers": idents, "medical": medical})
    for part, rows in parts.items():
        with open(HERE / f"scrub_{part}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(part, len(rows), "rows", sum(len(r["identifiers"]) for r in rows), "identifiers",
              sum(len(r["medical"]) for r in rows), "medical values")


if __name__ == "__main__":
    main()
