"""The red-flag safety layer: the shipped catalogue against the corpus written for discmed.

The corpus: discmed/assets/safety/authors/ (eight independent writers, each 40 urgent + 50 not urgent;
authors/triage_categories.jsonl gives each urgent message its category) and the
project's own sets (triage_dev.jsonl, triage_heldout.jsonl, triage_en.jsonl, beside authors/).
The catalogue has been developed on all of it — the writers a3, a6 and a8 only after their
one blind run (benchmarks/safety_loao.py keeps that figure) — so the recall asserted here is
a regression net per category, not the figure of merit: that is leave-one-author-out, in
benchmarks/RESULTS.md. The classifier's own leave-one-author-out figure is asserted in
tests/test_triage_clf.py. triage_dev.jsonl was written for issue 14 (its first 499 lines
before any rule changed); triage_heldout.jsonl was that issue's held-out fifth."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from discmed.serve.safety import Rules, first_strings, last_user_text, load_rules, required_strings, triage

DATA = Path(__file__).resolve().parents[1] / "discmed" / "assets" / "safety"  # the shipped corpus
AUTHORS = DATA / "authors"


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]


DEV = _rows("triage_dev.jsonl")
HELDOUT = _rows("triage_heldout.jsonl")


def test_sets_are_big_mixed_and_apart():
    assert len(DEV) + len(HELDOUT) >= 600 and len(HELDOUT) >= 100
    categories = {r["category"] for r in DEV}
    assert len(categories) >= 30 and categories == {r["category"] for r in HELDOUT}
    for rows in (DEV, HELDOUT):
        assert sum(not r["urgent"] for r in rows) / len(rows) >= 0.40
    assert not {r["text"] for r in DEV} & {r["text"] for r in HELDOUT}
    assert any(not re.search(r"[\u4e00-\u9fff]", r["text"]) for r in DEV)  # some English
    assert sum(len(r["text"]) > 80 for r in DEV) >= 30  # long messages with the flag buried


def _score(rows: list[dict]) -> tuple[dict, list, list]:
    hit, total, missed, alarms = Counter(), Counter(), [], []
    for r in rows:
        urgent = triage(r["text"]).urgent
        if r["urgent"]:
            total[r["category"]] += 1
            hit[r["category"]] += urgent
            if not urgent:
                missed.append(r["text"])
        elif urgent:
            alarms.append(r["text"])
    return {c: hit[c] / total[c] for c in total}, missed, alarms


def test_recall_per_category_and_false_alarms_on_the_dev_set():
    recall, missed, alarms = _score(DEV)
    urgent = sum(r["urgent"] for r in DEV)
    print(f"\ntriage dev: recall {1 - len(missed) / urgent:.3f} on {urgent}, "
          f"false alarms {len(alarms) / (len(DEV) - urgent):.3f} on {len(DEV) - urgent}")
    low = {c: round(v, 2) for c, v in recall.items() if v < 0.9}
    assert not low, f"categories under 0.9 recall: {low}; missed: {missed}"
    assert 1 - len(missed) / urgent >= 0.95, missed
    assert len(alarms) / (len(DEV) - urgent) <= 0.05, alarms


def test_held_out_fifth_meets_the_goal():
    recall, missed, alarms = _score(HELDOUT)
    urgent = sum(r["urgent"] for r in HELDOUT)
    r_all, fa = 1 - len(missed) / urgent, len(alarms) / (len(HELDOUT) - urgent)
    print(f"\ntriage held-out: recall {r_all:.3f} on {urgent}, false alarms {fa:.3f} on {len(HELDOUT) - urgent}")
    assert r_all >= 0.90 and fa <= 0.05


@pytest.mark.parametrize("text", [
    "我爸以前中风过，现在走路还有点不稳，吃什么药好",                  # history, mention-level
    "没有胸痛，也没有出汗，就是有点累",                              # negated
    "心肌梗死有哪些症状？",                                          # informational
    "如果孩子高热惊厥，家长应该怎么做？",                            # hypothetical
    "我是急诊护士，过敏性休克肾上腺素肌注成人用多少？",              # a professional asking a dose
    "新闻里说有人熬夜突然中风，半边身子动不了，我也熬夜，会不会中风",  # news
    "我老公打呼噜，中间会停几秒不喘气然后又接上，白天犯困",            # snoring
    "家里有小孩，哪些药对孩子特别危险，要怎么收纳",                  # prevention
    "血压135/85，心率72，血氧98，体温36.8",                          # normal numbers
    "累死了，加班到十二点",                                          # hyperbole
])
def test_not_urgent(text):
    t = triage(text)
    assert not t.urgent and t.instruction == "" and t.prefix() == "" and t.notice, (text, t.rule_ids)


@pytest.mark.parametrize("text, category", [
    ("我爸胸口像压了块大石头，出冷汗。他说跟以前的心绞痛不一样", "acs"),   # a past word does not silence the present
    ("我爸以前中风过一次，今天早上又左手没劲，嘴角往右歪", "stroke"),
    ("没有发烧，但是胸口疼，还出了很多冷汗", "acs"),                      # negation ends at 但是
    ("我妈嘴巴有点斜，讲话不灵光", "stroke"),                              # everyday words
    ("孩子抽了5分钟了还在抽", "seizure"),
    ("活着没意思，不如死了算了", "suicide"),
    ("婆婆血压78/45，人很虚", "shock"),                                  # numbers read as vital signs
    ("指脉氧86，喘得厉害", "breathing"),
    ("血糖2.1，一身冷汗", "hypoglycaemia"),
    ("血糖仪显示HI，一直吐", "dka"),
    ("手表显示心率185，头晕", "arrhythmia"),
    ("宝宝出生25天，体温38.2", "infant"),
    ("孕34周，量血压165/112，头痛", "pregnancy"),
    ("胸口通，出冷汉", "acs"),                                          # typos
    ("俺娘半边身子不得劲，说话呜呜啦啦的", "stroke"),                    # dialect
    ("my dad has chest pain and is sweating a lot", "acs"),
])
def test_urgent_with_its_category(text, category):
    t = triage(text)
    assert t.urgent and category in t.rule_ids, (text, t.rule_ids)


def test_urgent_reply_in_the_patients_language():
    t = triage("胸口压榨样疼痛，出冷汗")
    assert t.urgent and t.rule_ids == ["acs"] and "心肌梗死" in t.reasons[0] and t.source == "rules"
    assert t.instruction.startswith("【紧急】") and "120" in t.instruction and "急诊" in t.instruction
    assert t.prefix() == t.instruction + "\n\n"
    assert "不能替代医生" in t.notice and t.lang == "zh"
    en = triage("My dad's face is drooping on one side and his speech is slurred")
    assert en.urgent and en.rule_ids == ["stroke"] and en.lang == "en"
    assert en.instruction.startswith("[URGENT]") and "not a substitute" in en.notice
    assert "400-161-9995" in triage("我不想活了").instruction  # a crisis line for self-harm
    assert "988" in triage("I want to kill myself").instruction


def test_mentions_show_their_context():
    m = load_rules().mentions("我爸三年前心梗，没有胸痛，现在胸口疼")
    assert ("没有胸痛", "negated") not in m["chest_pain"]  # the cue is outside the mention
    contexts = dict(m["chest_pain"])
    assert contexts["胸痛"] == "negated" and contexts["胸口疼"] == "current"


def test_switch_off_and_own_rules(tmp_path):
    off = triage("胸口压榨样疼痛，出冷汗", enabled=False)
    assert not off.urgent and off.notice == "" and off.prefix() == ""
    own = tmp_path / "rules.yaml"
    own.write_text(
        "concepts:\n  ear: ['耳朵剧痛', 'ear agony']\n"
        "categories:\n  - id: ear\n    reason_zh: 耳朵剧痛\n    reason_en: severe ear pain\n    any: [ear]\n"
        "urgent_zh: '【紧急】请去急诊：{reasons}'\n",
        encoding="utf-8",
    )
    t = triage("耳朵剧痛", rules=own, learned=False)
    assert t.urgent and t.instruction == "【紧急】请去急诊：耳朵剧痛" and t.score is None
    assert not triage("胸口压榨样疼痛，出冷汗", rules=own, learned=False).urgent  # only the given rules apply
    bad = tmp_path / "bad.yaml"
    bad.write_text("concepts:\n  x: ['(unclosed']\ncategories: []\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.yaml: concepts\.x: bad pattern"):
        Rules(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("concepts: {}\ncategories:\n  - {id: x, reason_zh: a, reason_en: b, any: [nope]}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"unknown\.yaml: categories\[0\] \(x\): unknown concept 'nope'"):
        Rules(unknown)
    missing = tmp_path / "missing.yaml"
    missing.write_text("categories:\n  - id: x\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"missing\.yaml: categories\[0\]: reason_zh"):
        Rules(missing)


def test_last_user_text():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}]  # fmt: skip
    assert last_user_text(msgs) == "c"
    assert last_user_text([]) == ""


# -- the catalogue and the pooled corpus (issue 24) ---------------------------------------------------

RULES = Rules(learned=False)  # the rules' verdict alone: the classifier can only add to it


WRITERS = json.loads((AUTHORS / "writers.json").read_text(encoding="utf-8"))["writers"]
ROUND_ONE = sorted(w for w, v in WRITERS.items() if v["round"] == 1)


def _pooled() -> list[tuple[str, str, str, bool]]:
    """(writer, category, text, urgent) for every triage message: the first round's eight writers'
    (categories from triage_categories.jsonl) and the project's own sets. The second round's
    writers are measured apart (`test_rounds_2_to_6_held_out_together`): the catalogue is not
    developed on them to the first round's per-category floor."""
    cats = {(o["file"], o["line"]): o["category"] for o in map(
        json.loads, (AUTHORS / "triage_categories.jsonl").read_text(encoding="utf-8").splitlines())}
    rows = []
    for path in [AUTHORS / f"{w}.jsonl" for w in ROUND_ONE]:
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            o = json.loads(line)
            if o["kind"] == "triage":
                urgent = o["label"] == "urgent"
                rows.append((path.stem, cats.pop((path.name, i)) if urgent else "", o["text"], urgent))
    assert not cats, f"categories for lines that are not urgent triage messages: {sorted(cats)}"
    for name in ("triage_dev.jsonl", "triage_heldout.jsonl", "triage_en.jsonl"):
        rows += [("project", r["category"] if r["urgent"] else "", r["text"], r["urgent"]) for r in _rows(name)]
    return rows


POOLED = _pooled()


def test_every_concept_and_category_names_its_source_and_speaks_both_languages():
    import yaml

    raw = yaml.safe_load((Path(RULES.path)).read_text(encoding="utf-8"))
    sources = raw["sources"]
    for key in ("CTAS", "CN2018", "NICE_FEVER", "FN", "KIDNEY", "TRANSPLANT", "ANTICOAG", "OBS", "CSSRS"):
        assert key in sources and len(sources[key]) > 40, key  # the standards the issue names, cited in full
    for name, c in raw["concepts"].items():
        assert str(c.get("source", "")).split()[0] in sources, f"concept {name} names no known source"
        assert c.get("zh") and c.get("en"), f"concept {name} needs Chinese and English forms"
    for c in raw["categories"]:
        assert str(c.get("source", "")).split()[0] in sources and c.get("level"), c["id"]
    # every concept is used by a category, and the missing kinds are categories now
    used = {n for c in RULES.categories for n in c.any + c.unless + [x for combo in c.all for x in combo]}
    assert set(RULES.concepts) <= used, set(RULES.concepts) - used
    ids = {c.id for c in RULES.categories}
    assert {"neutropenic_fever", "renal", "transplant", "anticoagulated", "kawasaki", "paediatric_surgical",
            "limb_threat", "rabies", "child_abuse", "psychiatric", "postpartum"} <= ids
    assert len(POOLED) > 2000 and sum(r[3] for r in POOLED) > 1000


def test_recall_per_category_on_the_pooled_corpus():
    hit, total = Counter(), Counter()
    missed = []
    for writer, category, text, urgent in POOLED:
        if urgent:
            fired = bool(RULES.categories_for(text))
            total[category] += 1
            hit[category] += fired
            if not fired:
                missed.append((writer, category, text[:60]))
    recall = {c: hit[c] / total[c] for c in total}
    print(f"\npooled: {sum(total.values())} urgent in {len(total)} categories; recall "
          f"{sum(hit.values()) / sum(total.values()):.3f}; lowest: "
          f"{sorted(recall.items(), key=lambda kv: kv[1])[:5]}")
    assert len(total) >= 55  # the writers' 54 categories and the project's own
    low = {c: (round(v, 2), total[c]) for c, v in recall.items() if v < 0.9}
    assert not low, f"categories under 0.9 recall: {low}; missed: {missed}"


def test_false_alarms_per_writer_on_the_pooled_corpus():
    alarms, negatives = Counter(), Counter()
    for writer, _, text, urgent in POOLED:
        if not urgent:
            negatives[writer] += 1
            alarms[writer] += bool(RULES.categories_for(text))
    rates = {w: alarms[w] / negatives[w] for w in negatives}
    print(f"\nfalse alarms per writer (rules): {({w: round(v, 3) for w, v in rates.items()})}")
    assert all(v <= 0.05 for v in rates.values()), rates


def test_context_measured_on_its_own():
    # The context rules, switched off and on: the hard negatives they silence, and the urgent
    # messages they must not silence.
    removed = raw_fa = silenced = raw_urgent = 0
    for _, _, text, urgent in POOLED:
        raw = bool(RULES.categories_for(text, context=False))
        kept = bool(RULES.categories_for(text))
        if urgent:
            raw_urgent += raw
            silenced += raw and not kept
        else:
            raw_fa += raw
            removed += raw and not kept
    print(f"\ncontext: removed {removed} of {raw_fa} false alarms, silenced {silenced} of {raw_urgent} urgent")
    assert raw_fa > 100 and removed / raw_fa >= 0.9
    assert silenced / raw_urgent <= 0.005


@pytest.mark.parametrize("text, context", [
    ("我爸三年前心梗过，现在挺好的", "history"),                           # past
    ("我爸十年前中风过，一直右边腿脚不利索，这几年一直这样没加重", "history"),   # chronic and unchanged
    ("如果孩子突然抽搐，家长应该怎么做", "hypothetical"),                  # hypothetical
    ("网上说胸口压榨样疼痛是心梗", "hypothetical"),                        # something read
    ("昨晚梦见自己喘不上气，醒来就好了", "hypothetical"),                  # a dream
    ("保姆以为她咳血了，其实是牙龈出的血", "hypothetical"),                # a mistaken belief
    ("疼了一会儿就好了，现在一点不疼", "resolved"),                        # resolved
    ("没有不想活的想法，就是情绪低落", "negated"),                          # a denied negation
    ("My grandfather had a heart attack ten years ago", "history"),
    ("I read an article about strokes in young people", "hypothetical"),
    ("no thoughts of harming myself, just tired", "negated"),
    ("lots of blood on her shirt, but it stopped after pinching for 10 minutes", "resolved"),
])
def test_mention_context(text, context):
    found = [ctx for mentions in RULES.mentions(text).values() for _, ctx in mentions]
    assert context in found and "current" not in found or not RULES.categories_for(text), (text, found)
    assert not RULES.categories_for(text), (text, [c.id for c in RULES.categories_for(text)])


@pytest.mark.parametrize("text, category", [
    ("上周四刚打完化疗，今天下午开始发冷打寒战，体温38.6", "neutropenic_fever"),  # background: chemo last week
    ("我爱人透析的，这周少做了一次，今天腿软站不起来，心跳一下快一下慢", "renal"),
    ("刚才说话突然说不清楚，右手没劲，十分钟就好了", "stroke"),                # a TIA that passed still counts
    ("女儿高烧第6天了，眼睛发红没有眼屎，嘴唇通红干裂，舌头像草莓", "kawasaki"),
    ("宝宝10个月，一阵一阵哭，大便像果酱一样", "paediatric_surgical"),
    ("俺娘摔了一跤起不来，右腿比左腿短一截，脚往外撇", "trauma"),
    ("她把存款和银行卡密码都交代给我了，还说以后拜托你了", "suicide"),        # farewells, said indirectly
    ("He's been giving away his things and texted me goodbye", "suicide"),
    ("I'm on chemo, last cycle 9 days ago, and my temperature is 38.4", "neutropenic_fever"),
    ("My 5 week old baby has a fever of 100.8F", "infant"),                    # Fahrenheit, infant age in English
    ("孩子3岁，呼吸一分钟45次，鼻翼一扇一扇的", "breathing"),                # breathing rate by age band
    ("儿子7岁，血压160/110，头痛看东西模糊", "hypertensive"),                 # a child's blood pressure
    ("俺爹量了四十度五，身上干干的没汗，叫他不搭理，晌午在地里干活", "heat_stroke"),  # a temperature in words
    ("吃华法林，INR 9.2，牙龈一直渗血", "anticoagulated"),
    ("透析病人，化验血钾6.9", "renal"),
])
def test_populations_vitals_and_english(text, category):
    t = triage(text, learned=False)
    assert t.urgent and category in t.rule_ids, (text, t.rule_ids)



def _assert_fires(text: str, fires: str | None) -> None:
    """`fires` among the categories the rules give `text`, or none at all when `fires` is None."""
    ids = [c.id for c in RULES.categories_for(text)]
    assert (fires in ids) if fires else not ids, (text, ids)


@pytest.mark.parametrize("text, fires", [
    # An explanation (`unless`) cancels what it explains, not what it does not (`unless_except`).
    ("说个吓人的词儿：我真想一了百了——把辞职信拍老板桌上，哈哈。不是那个意思，我没有任何伤害自己的想法，就是累", None),
    ("我没有自杀的想法，但是我已经攒了50片安眠药，够了", "suicide"),
    ("I keep waking up at night with my thumb and first two fingers numb. I shake my hand and it goes away. "
     "Google said stroke but I reckon it's the carpal tunnel thing", None),
    ("I have carpal tunnel, my fingers go numb at night, but this morning the left side of my face is drooping "
     "and my speech is slurred", "stroke"),
    ("伢子流鼻血 止住了以后吐了一口黑红色的血块 他讲是流到喉咙里吞下去的", None),
    ("我妈蹲着择菜，一下子站起来眼前黑了两秒，扶了一下桌子就好了", None),
    ("我爸站起来头晕了一下，现在右眼突然看不见了，像拉了个黑帘子", "vision_loss"),
])
def test_explanations_cancel_only_what_they_explain(text, fires):
    _assert_fires(text, fires)


@pytest.mark.parametrize("text, fires", [
    # a drug's sulfate salt is not sulfuric acid
    ("我女儿贫血，吃了硫酸亚铁以后胃有点不舒服，饭后吃会好些吗", None),
    ("工友搬桶的时候硫酸溅到脸上和眼睛里，冲了水还是痛得睁不开", "burns"),
    # a calf cramp is not a seizure; a child's limbs jerking is
    ("儿子晚上小腿抽筋，抽了两三分钟才松开，现在能走路", None),
    ("孩子发烧到39度，刚才手脚抽了三分钟，翻白眼叫不应", "seizure"),
    # one calcium tablet is not an adult's medicine
    ("孙女偷吃了一粒钙片，以为是糖，现在玩得好好的", None),
    ("孙女偷吃了爷爷的降糖药，不知道吃了几颗", "poisoning"),
    # a whole strip taken, said with the strip first
    ("室友说她昨晚把一整板安眠药都吃了，现在只是想睡", "poisoning"),
    # English: magnets, a toddler and an adult's tablets written with a decimal dose
    ("My 4 year old swallowed 3 little magnets from his brother's toy an hour ago, he seems fine", "airway"),
    ("my daughter 2 yrs old got into the pill box, amlodipine 2.5mg tablets are missing", "poisoning"),
    # round 13: a bleeding disorder and a head knock; a sibling's disease is not the patient's
    ("儿子有血友病，昨天头撞到门框上，今天一直说困，说话慢吞吞的", "anticoagulated"),
    ("女儿额头碰了一下，没吐也没嗜睡，因为哥哥是血友病所以有点担心", None),
    # fever without a working spleen; a critical haemoglobin in sickle-cell disease
    ("I had my spleen removed after an accident, now fever 38.6 and shivering", "sepsis"),
    ("I'm SS, the clinic checked my Hb today and it was 4.2.", "sickle_cell"),
    # a toothbrush swallowed; crackling under the skin after vomiting
    ("刚才不小心把一整根牙刷咽下去了，胸口有点疼", "airway"),
    ("吐完胸口剧痛，脖子摸上去像捏雪一样咯吱响", "aortic"),
    # a breath-holding spell, a night out that ended asleep, a figure of speech
    ("He was crying hard, held his breath and went a bit blue for a few seconds, then took a big breath and was back to normal", None),
    ("I passed out drunk at a wedding last night, didn't hit anything, awake and normal now, just a headache", None),
    ("期末周真的想死（口头禅哈，不是真想死），熬夜熬得头疼", None),
    # round 14: digoxin toxicity; a retinal detachment told as a curtain; a young infant's projectile vomiting
    ("我爸吃地高辛好几年了。这两天一直恶心，今天说看东西发黄发绿，脉搏只有44", "poisoning"),
    ("Saw lots of flashes and floaters last night and now I can't see the upper half of my left eye", "vision_loss"),
    ("宝宝出生三周，这两天吃完奶就喷出去老远，尿也少了", "infant"),
    # a cigarette, gums that bleed, a blood sugar said to be normal before an age, Cantonese 晒 ("all")
    ("他刚爬完楼又抽了根烟，量血压150/90，歇了一会儿就好了", None),
    ("今早刷牙吐出来的口水有血，是牙龈出血，牙肉有点肿", None),
    ("体检血糖都正常 62岁 胆固醇有点高，要吃药吗", None),
    ("佢抽血嗰陣暈咗兩秒，即刻醒返，而家好返晒", None),
])
def test_rounds_12_to_14_forms(text, fires):
    _assert_fires(text, fires)


@pytest.mark.parametrize("text, fires", [
    # round 15: a parent's heart attack at an age is family history; first aid that stopped a nosebleed
    ("My blood test from the company check-up: LDL 3.9 mmol/L. My dad had his heart attack at 61. Do I need a statin?", None),
    ("Our son had a nosebleed this morning, quite a lot of blood on the pillow. We pressed the soft part of the nose "
     "for 10 min and it stopped.", None),
    # ... but a fit that has stopped is still a fit
    ("Our son had a fit, eyes rolled up, whole body shaking for 5 minutes, lips blue. Now it stopped, he has fever "
     "and is very sleepy", "seizure"),
    # weakness left by a stroke years ago is no new stroke; a new weakness after an old stroke is
    ("阿达中风三年了 左手还是有点不灵活 扣扣子费劲 想问问在家做些啥锻炼", None),
    ("我爸中风三年了，今天早上突然左手没劲，说话也不清楚", "stroke"),
    # once a day is no diarrhoea, "也不会晕" no faintness; ten watery stools and blacking out on standing are
    ("吃铁剂第四天，大便发黑但成形，一天一次，站起来也不会晕", None),
    ("化疗后拉肚子一天十几次，全是水，站起来就眼前发黑", "dehydration"),
    # grape-sized clots after a birth are not the large clots of a haemorrhage
    ("产后第四天，早上流出两个葡萄大小的血块，之后量就正常了，不头晕", None),
    ("产后一周，血块有鸡蛋那么大，一小时湿透一片卫生巾", "pph"),
    # a skin test is no pregnancy test; bottles of water are no poison; bottles of medicine are
    ("看护做体检，结核菌素皮肤测试是阳性，胸片正常，不咳嗽", None),
    ("导游说下午一个大叔头晕，喝了两瓶水一瓶电解质水，休息二十分钟就好了", None),
    ("孩子把一瓶退烧药都喝了，大概半小时前", "poisoning"),
    # (developed writers) twenty years of drinking is no overdose; purple lips after mulberries are a stain,
    # unless the child also breathes hard
    ("老者每天中午晚上各二两苞谷酒，喝了二十多年，现在想少喝点，需要吃药不", None),
    ("小丫头的嘴唇舌头都紫了 后来发现她偷吃了一碗桑葚 活蹦乱跳的 没事吧", None),
    ("孩子嘴唇发紫，呼吸很费力，刚吃了蓝莓", "breathing"),
    # round 16: a belly that hardens now and then without pain late in pregnancy; a board-hard painful one
    ("我32周，今天肚子硬了几次，每次十几秒，不疼，不规律，休息就好了，胎动正常", None),
    ("怀孕35周，肚子一直硬邦邦的，疼得厉害，还见红了", "acute_abdomen"),
    # 打算 ("plan to") is no beating; a boyfriend who beats is
    ("我和男朋友打算明年要孩子，他有1型糖尿病，孩子会遗传吗", None),
    ("她男朋友喝醉了就打她，今天脸上全是淤青", "child_abuse"),
    # a febrile seizure at one year old is history; chilli on the hands burns without blisters
    ("My niece had a seizure with a fever when she was 1. Now she has a runny nose and 99.5F, playing as usual.", None),
    ("My hands are burning after chopping chilies without gloves, red but no blisters.", None),
    ("Spilled boiling water on my arm, the burn has big blisters and the skin is white", "burns"),
    # a heart rate that came down after running was measured again; one that stays at 180 was not
    ("儿子跑1000米的时候手环显示心跳180，跑完几分钟就降到100以下了，没胸痛没晕", None),
    ("我妈心跳一直180，休息了半小时还是180，胸口闷", "arrhythmia"),
    ("心率150，再量血压130/85，心慌", "arrhythmia"),  # a blood pressure measured again sets no heart rate aside
    ("心跳180，休息后再测心率是88，人没事", None),
    # a leg that does not obey, a dragged foot, buttons that cannot be done up; an insulin overdose
    # before the sugar falls; a blue inhaler used six times
    ("我奶奶今天早上左边的腿不太听话，走路拖着，左手扣扣子也扣不上，她有高血压", "stroke"),
    ("meant to bolus 3.0 units and the pump took 30.0, BG 145 now, I live alone", "poisoning"),
    ("My student has asthma, used his blue inhaler 6 times in 20 mins, can only say 2-3 words", "breathing"),
    # round 17: a vaccine is no beating; a blocked nose is no breathlessness; a grandmother's saying is no fit
    ("爸爸想打带状疱疹疫苗，他在吃华法林，INR 2.5，打完按压多久", None),
    ("Jun Hao cannot breathe through his nose at night, very blocked. Chest is fine, no wheeze.", None),
    ("媳妇怀孕三个月 俺娘说怀孕吃羊肉孩子生下来会得羊角风 有说法没有", None),
    # weedkiller said as 除草的; a child into a pill organiser; a baby that has stopped moving at 37 weeks
    ("我小女儿4岁 刚才拿了那个绿色瓶子喝了一口 就是除草的那个 她马上吐出来了 现在好好的在玩", "poisoning"),
    ("Xin Yi found Ah Gong's pill organiser and ate some pills, maybe 3-4 of his amlodipine 10mg", "poisoning"),
    ("媳妇37周了 从夜儿黑到现在孩子都没咋动 今儿个一上午一下都没觉着", "pregnancy"),
    # rhabdomyolysis: long shifts in the heat or a workout, muscles too sore to touch, cola urine; a sore run is not
    ("这几天40度 俺一天跑十四五个钟头 今儿个腿上胳膊上的肉疼的碰都不敢碰 尿的尿跟可乐一个色", "rhabdo"),
    ("健身教练让我做了200个深蹲，第二天大腿疼得碰都不敢碰，尿是浓茶色的", "rhabdo"),
    ("跑了个半马，腿有点酸，尿是正常的颜色", None),
])
def test_rounds_15_to_17_forms(text, fires):
    _assert_fires(text, fires)


# Rounds 18 to 22 (a75-a94) and the leave-one-writer-out misses of a25, a26 and a30, in sentences written here.
@pytest.mark.parametrize("text,fires", [
    # round 5-6 writers' English, as a second language says it
    ("Since morning something heavy like a brick on chest, it go to left arm. Sweating cold.", "acs"),
    ("Three days my poo is black like tar. This morning I stand up and everything go dark, almost fall.", "bleeding"),
    ("My husband take methimazole for thyroid since one month, now fever 39 and very sore throat.", "neutropenic_fever"),
    ("Since last night I not can make pee, only drops come, belly is hard and hurts.", "urinary_retention"),
    ("Cough and came out blood, maybe half cup, two times today.", "bleeding"),
    ("A little blood on the paper after hard poo, only few drops and it stopped. Haemorrhoid?", None),
    # a known harmless snake, a rabies-free bite, a vaccinated indoor cat, a content newborn
    ("下午被一条菜花蛇咬了一口，牙印很浅，不肿不痛，人好好的", None),
    ("Our cat is indoor only and vaccinated, she scratched my arm while playing, tiny scratch.", None),
    ("宝宝出生第六天，尿布上有一点粉色的血，吃奶好，不哭不闹，不黄", None),
    ("他说自己吐血了，问清楚了原来是流鼻血咽下去又吐出来的，现在不流了", None),
    ("昨天喝醉了吐了一晚上，今天说话走路都正常，就是头有点疼", None),
    ("She is giving away her things because she finished her contract and is going home for good.", None),
    # round 18: oliguria, digits that stay black, a faint at a blood draw, a heart rate back to normal, a past date
    ("化验肌酐比上次高了很多，24小时尿量只有280ml，脚也肿了", "aki"),
    ("脚趾头这几天发紫发黑，冰凉，疼得睡不着，有个地方好像烂了，捂着也不回红", "limb_threat"),
    ("早上抽了6管血，站起来的时候眼前一黑晕了一下，躺了一会儿就好了，现在一切正常", None),
    ("跑步的时候手表报警心率165，停下来几分钟就回到90，现在70，没有不舒服", None),
    ("去年今天我因为心梗住进了ICU，现在恢复得很好，想问阿司匹林还要吃多久", None),
    ("我没有想伤害自己，就是最近压力大睡不好", None),
    # round 19: SJS, a nosebleed on warfarin, a neck swelling after a biopsy, a child pulled from a pool
    ("吃了新开的药一周，身上起红疹变成水泡，皮一碰就掉，嘴里全烂了，还发烧", "skin_emergency"),
    ("我爸吃华法林，流鼻血了，捏着鼻子捏了半小时还在流", "bleeding"),
    ("After the thyroid biopsy this morning my neck keeps swelling and now it is hard to swallow and a bit hard to breathe.",
     "airway"),
    ("He fell into the pool and was under water for about 20 seconds; now he is breathing fast and his lips look a bit blue.",
     "drowning"),
    ("My toddler is drooling and chewing everything, temperature 37.3, teething?", None),
    ("Meter said HI after I peeled an orange, washed my hands and did it again: 7.9. I feel fine.", None),
    ("Do I need a blood test for poisoning? I touched sprayed leaves with gloves on two days ago, no symptoms.", None),
    ("The CO alarm chirped at night, it was the battery; none of us had any headache.", None),
    ("这几天热到我想死，背上起了很多小红点，好痒", None),
    # round 20: Chinese written word by word, as many signers write it
    ("我 爸爸 突然 右边 手 没 力气，说话 不 清楚，嘴 歪", "stroke"),
    ("我 不 发烧 喉咙 不 痛 感觉 好好，白细胞 3.8 医生 说 下周 再 查", None),
    ("女儿 最近 两个月 老是 眨眼，同学 说 是 抽风，她 玩 上学 都 正常", None),
    # waters said as fluid that keeps coming; a knocked-out tooth; a blocked nose; idioms
    ("She's 34 weeks and clear fluid keeps running down her legs when she stands up, no contractions.", "pregnancy"),
    ("He got his front tooth knocked clean out in the game, we have it in milk.", "trauma"),
    ("He says he can't breathe at night, but it's because his nose is blocked from a cold.", None),
    ("The scrum collapsed twice in training and nobody was hurt.", None),
    ("My mum had a fit when she saw the phone bill, haha.", None),
    ("Uncle passed out on the sofa after the party and snored all night, fine this morning.", None),
    # blood after a tooth was pulled; "vomiting blood" that was a nosebleed
    ("昨天拔了颗牙，今天吐口水还带点血丝，牙窝里有血块，不发烧", None),
    ("工人说他吐血了，问清楚了原来是鼻子干出血流到嗓子里，现在止住了", None),
    # round 21: COPD's target saturation, a child given an adult's theophylline, a missing hearing-aid battery,
    # a condom failure with a partner of unknown status, jaundice with pale stools, an injection injury
    ("老伴慢阻肺在家吸氧，血氧一直89、90，医生说保持88到92就行，他自己觉得挺好", None),
    ("老伴慢阻肺，今天血氧掉到84，嘴唇发紫，喘得说不了话", "breathing"),
    ("手忙脚乱拿错了药，给孙子喂了半片他爷爷的氨茶碱，现在看着还好", "poisoning"),
    ("孩子拿着奶奶的助听器电池玩，盒子里少了一颗，找不着，不知道咽没咽", "airway"),
    ("昨晚套套破了，对方说不知道自己的状态，我没吃PrEP，现在过了18个小时", "bbv_exposure"),
    ("这几天眼白越来越黄，大便颜色很浅，像陶土，尿像浓茶", "jaundice_acute"),
    ("A jet of hydraulic oil went into the pad of his finger at the machine, tiny hole, finger swelling.", "trauma"),
    # idioms and asked questions
    ("I about had a heart attack when I saw the bill, but we're all fine. Question about vaccines.", None),
    ("He has been seizure free for two years on Keppra. Can he switch brands?", None),
    ("Got a static shock off the door handle, finger tingled for a second.", None),
    ("Had food poisoning on Sunday, all fine now, eating normally.", None),
    ("When she falls asleep her arms jerk once, like a startle. Is this a seizure?", None),
    ("宝宝睡觉时胳膊突然一抖，抖一下就好了，这是抽风吗？", None),
    ("CO alarm chirped, changed the battery. Nobody's had a headache.", None),
    ("我今天早上好像把降压药吃了两遍，血压120/75，没有不舒服", None),
    ("改方案改到想死😂 讲笑嘅，眼睛好干用咩眼药水？", None),
    ("Pain started around the belly button and moved to the lower right, every bump in the car hurts, fever 38.2.",
     "acute_abdomen"),
    ("Hard training yesterday, lots of sprints; today my thighs are very painful and swollen and my urine is dark like cola.",
     "rhabdo"),
    # round 22: a bowel movement is no glucose, a meter's difference is no reading, a vaccine given on time is no
    # beating, mushrooms not eaten, a neighbour rescued, a numb lip after a filling, winded then breathing
    ("Last BM 3 days ago, tummy soft, passing gas. Can I increase the lactulose?", None),
    ("我的血糖仪和医院抽血差了0.5，哪个准？", None),
    ("孩子膝盖擦破了，已经止血了，疫苗都是按时打的，要打破伤风吗", None),
    ("爸爸在山上捡了一篮菌子，有几朵不认识，还没吃，怎么分辨有没有毒", None),
    ("隔壁村有一家烧炭中毒了，送到县医院救回来了，我们家冬天也烧炭，怎么烧才安全", None),
    ("Had a filling an hour ago, my lip is numb and droopy and I'm drooling, the dentist said the freezing wears off.", None),
    ("He got hit in the stomach and couldn't breathe for a few seconds, gasping. Then he got his wind back and played on.",
     None),
    ("今天站起来太快眼前一黑，扶着墙几秒钟就好了，没有晕倒", None),
    # missed before: reduced fetal movements said as hardly felt; a child into the paracetamol
    ("孕27周，今天从中午到晚上几乎没感觉到宝宝动，吃了东西躺了一小时还是很少", "pregnancy"),
    ("Our 6 year old got into the children's Tylenol, the bottle was nearly full and now maybe 10 left out of 40.",
     "poisoning"),
])
def test_rounds_18_to_22_forms(text, fires):
    _assert_fires(text, fires)


@pytest.mark.parametrize("text", [
    "孩子3岁，呼吸一分钟28次，精神好",          # normal for a 3-year-old
    "保姆早上测血糖显示2.1，洗了手重新测是7.4，又测一次7.6，人好好的",  # re-measured and normal
    "吃奶的时候奶从嘴角流出来，宝宝精神很好",      # an infant-feeding sign is not a stroke sign
    "我弟血锂化验单上写着中毒浓度>1.5，他这次0.8，人好好的",
    "上周一透析前查血钾6.1，当天透完复查是4.0，这周饮食注意了",
    "家里买了个胎心仪，宝宝心跳一分钟150多下，正常吗",
    "Measured my BP right after climbing 6 floors: 160/95; 15 minutes later it was 122/78",
])
def test_numbers_read_in_context(text):
    t = triage(text, learned=False)
    assert not t.urgent, (text, t.rule_ids)


def test_start_string_prefilter_is_exact():
    # The prefilter must never skip a concept that matches: every pattern that matches a
    # message starts with one of its start strings.
    assert first_strings("(肚子|腹|右下腹)[^，。]{0,4}(疼|痛)") == {"肚子", "腹", "右下腹"}
    assert first_strings("(把)?药") == {"把药", "药"} and first_strings("a?b|[^x]") is None
    # ... and every match contains one of its required strings (cut to four characters): the
    # rarest part of the pattern, not its start.
    assert required_strings("(吃了|喝了)[^，。]{0,10}(百草枯|敌敌畏)") == {"百草枯", "敌敌畏"}
    assert required_strings("胸痛|(?:突然)?胸闷") == {"胸痛", "胸闷"}
    assert required_strings("(?:突然)?(胸|心口)[^，。]{0,3}(疼|痛)") == {"胸", "心口"}
    assert required_strings("electrocut(ed|ion)|struck by lightning") == {"elec", "stru"}
    assert required_strings("a?b|[^x]") is None and required_strings("(?i)abc") is None
    assert required_strings("(?i:chest) pain") == {" pai"} and required_strings("(?i:chest pain)") is None
    assert len(RULES.required) > 400
    for _, _, text, _ in POOLED[::7]:
        norm = text.lower()
        starts = {norm[i:i + k] for k in range(1, 5) for i in range(len(norm) - k + 1)}
        for name, patterns in RULES.concepts.items():
            for pattern, first in patterns:
                if pattern.search(norm):
                    assert first is None or not first.isdisjoint(starts), (name, pattern.pattern[:60], text)
                    need = RULES.required.get(pattern)
                    assert need is None or not need.isdisjoint(starts), (name, pattern.pattern[:60], text)


# Rounds 2-6 (a9-a30): one classifier trained without all 22 writers (the classifier has seen none
# of their rounds, harder than leave-one-writer-out, benchmarks/safety_loao.py), the rules as shipped
# (developed on these writers' misses, so not blind). Floors one message under the figures measured
# when they were set; the blind figure of the locked writers is in benchmarks/RESULTS.md, not here.
LATER_FLOORS = {  # writer: (combined recall at least, false alarms at most); rounds 2-6
    "a9_en_parent": (0.975, 0.04), "a10_gp_relay": (0.95, 0.02), "a11_student": (0.95, 0.02),
    "a12_cantonese": (0.925, 0.06), "a13_pharmacist": (0.9, 0.02), "a14_en_codeswitch": (0.925, 0.06),
    "a15_hk_mother": (0.975, 0.06), "a16_en_retiree": (0.975, 0.06), "a17_en_student": (0.975, 0.04),
    "a18_dongbei": (0.925, 0.06), "a19_intl_nurse": (0.925, 0.02), "a20_taiwan_mother": (0.925, 0.08),
    "a21_en_traveller": (0.975, 0.04), "a22_shanghai_elder": (0.9, 0.04), "a23_med_student": (0.975, 0.02),
    "a24_en_hr": (0.95, 0.08), "a25_ru_business": (0.85, 0.04), "a26_village_doctor": (0.975, 0.14),
    "a27_chongqing_worker": (0.975, 0.02), "a28_en_india_engineer": (0.975, 0.04), "a29_pd_patient": (0.975, 0.02),
    "a30_en_helper_hk": (0.95, 0.08),  # round 6
}


def _combined(clf, test) -> tuple[float, float]:
    """The combined verdict's (recall, false alarms) on one writer's messages: rules or `clf`."""
    from discmed.serve import triage_clf
    from discmed.serve.safety import _normalize

    verdicts = [bool(RULES.categories_for(r.text)) or clf.probability(_normalize(r.text)) >= triage_clf.THRESHOLD
                for r in test]
    urgent = [v for v, r in zip(verdicts, test, strict=True) if r.urgent]
    calm = [v for v, r in zip(verdicts, test, strict=True) if not r.urgent]
    return sum(urgent) / len(urgent), sum(calm) / len(calm)


def _held_out_together(floors: dict[str, tuple[float, float]]) -> None:
    """One classifier trained without every writer of `floors`; each writer's combined figures
    against its floor (recall at least, false alarms at most)."""
    from discmed.serve import triage_clf

    rows = triage_clf.corpus()
    assert set(floors) <= {r.author for r in rows}
    clf = triage_clf.train([r for r in rows if r.author not in floors], triage_clf.THRESHOLD)
    for writer, (floor, ceiling) in floors.items():
        recall, alarms = _combined(clf, [r for r in rows if r.author == writer])
        assert recall >= floor and alarms <= ceiling, (writer, round(recall, 3), round(alarms, 3))


@pytest.mark.slow
def test_rounds_2_to_6_held_out_together():
    _held_out_together(LATER_FLOORS)


# Rounds 7-10 and 12-14 (a31-a46, a51-a62), each scored blind once and then developed on (round 11
# was added unread and has no floor here). One classifier is trained without all twenty-eight.
ROUNDS_7_14_FLOORS = {  # writer: (combined recall at least, false alarms at most)
    "a31_en_nigeria_student": (0.975, 0.02), "a32_minnan_grandson": (0.95, 0.02), "a33_xian_daughter": (0.95, 0.04),
    "a34_en_korean_mom": (0.95, 0.04), "a35_guangxi_transplant_wife": (0.95, 0.04), "a36_en_aussie_teacher": (0.95, 0.02),
    "a37_yunnan_young_mother": (0.975, 0.02), "a38_beijing_bipolar_brother": (0.95, 0.04),
    "a39_hangzhou_carehome_worker": (0.975, 0.02), "a40_en_british_engineer": (0.95, 0.02),
    "a41_hunan_grandfather": (0.95, 0.02), "a42_shenzhen_pregnant_coder": (0.95, 0.02),
    "a43_xining_herder_son": (0.975, 0.04), "a44_en_pakistani_yiwu": (0.975, 0.02), "a45_shandong_trucker": (0.975, 0.02),
    "a46_hk_teen_crossborder": (0.975, 0.02),
    "a51_chengdu_school_nurse": (0.975, 0.02), "a52_en_filipino_seafarer": (0.975, 0.04),  # round 12
    "a53_dongguan_factory_doctor": (0.95, 0.02), "a54_wenzhou_voice_input_wife": (0.975, 0.02),
    "a55_nanjing_hemophilia_father": (0.975, 0.02), "a56_en_ghanaian_trader_guangzhou": (0.925, 0.04),  # round 13
    "a57_harbin_icu_nurse": (0.975, 0.08), "a58_tianjin_student_ed": (0.975, 0.02),
    "a59_en_japanese_engineer_dalian": (0.925, 0.04), "a60_guizhou_miao_village_doctor": (0.95, 0.04),  # round 14
    "a61_shanxi_miner_wife": (0.975, 0.04), "a62_macau_croupier": (0.975, 0.02),
}


@pytest.mark.slow
def test_rounds_7_to_14_held_out_together():
    _held_out_together(ROUNDS_7_14_FLOORS)


# Rounds 15 to 17 (a63-a74), each scored blind once (at 45e3ff4, 5c104f1 and 13de0ce) and then developed on; one
# classifier without all twelve.
ROUNDS_15_17_FLOORS = {"a63_en_german_postdoc_shanghai": (0.975, 0.02), "a64_lanzhou_hui_noodle_owner": (0.975, 0.02),
                       "a65_taipei_retired_nurse": (0.975, 0.04), "a66_sanya_tour_guide": (0.975, 0.02),
                       "a67_altay_kazakh_herder_daughter": (0.95, 0.02), "a68_en_us_teacher_chengdu_t1d": (0.975, 0.04),
                       "a69_hangzhou_ivf_patient": (0.975, 0.04), "a70_lhasa_han_nurse": (0.975, 0.02),
                       "a71_guangxi_vietnamese_bride": (0.975, 0.02), "a72_shanghai_community_pharmacist": (0.975, 0.02),
                       "a73_en_singaporean_suzhou": (0.975, 0.02), "a74_zhengzhou_delivery_rider": (0.975, 0.02)}


@pytest.mark.slow
def test_rounds_15_to_17_held_out_together():
    _held_out_together(ROUNDS_15_17_FLOORS)


# Rounds 18 to 22 (a75-a94), each scored blind once (at 22810e6, e93acbf, 646160f, a3aa0b5 and 6d522b3) and then
# developed on; one classifier without all twenty.
ROUNDS_18_22_FLOORS = {"a75_yanbian_korean_home_nurse": (0.975, 0.02), "a76_en_french_student_wuhan": (0.975, 0.04),
                       "a77_ningde_fisherman_wife": (0.975, 0.02), "a78_kunming_lupus_patient": (0.975, 0.02),
                       "a79_en_kenyan_phd_beijing": (0.975, 0.02), "a80_chaoshan_granddaughter": (0.975, 0.02),
                       "a81_hangzhou_hospice_daughter": (0.975, 0.04), "a82_en_mexican_teacher_guangzhou": (0.975, 0.02),
                       "a83_deaf_signer_chengdu": (0.975, 0.04), "a84_en_south_african_coach_shanghai": (0.975, 0.02),
                       "a85_xinjiang_site_medic": (0.975, 0.02), "a86_en_indonesian_student_xiamen": (0.975, 0.02),
                       "a87_shenyang_preemie_twins_grandma": (0.975, 0.04), "a88_en_us_adoptive_mom_xian": (0.975, 0.08),
                       "a89_guangzhou_trans_woman": (0.975, 0.02), "a90_en_irish_nurse_suzhou": (0.975, 0.04),
                       "a91_en_filipina_caregiver_beijing": (0.975, 0.04), "a92_guiyang_dong_grandfather_via_son": (0.975, 0.02),
                       "a93_en_canadian_hockey_dad_dalian": (0.975, 0.02), "a94_wuxi_pregnant_teacher_gdm": (0.975, 0.02)}


@pytest.mark.slow
def test_rounds_18_to_22_held_out_together():
    _held_out_together(ROUNDS_18_22_FLOORS)


# Round 23 (a95-a98), scored blind once at 3787c32 and then developed on; one classifier without all four.
ROUND_23_FLOORS = {"a95_hefei_epilepsy_teen": (0.975, 0.02), "a96_en_nz_dairy_adviser_inner_mongolia": (0.975, 0.02),
                   "a97_nanning_psych_social_worker": (0.975, 0.04), "a98_en_malaysian_mum_shenzhen": (0.975, 0.02)}


@pytest.mark.slow
def test_round_23_held_out_together():
    _held_out_together(ROUND_23_FLOORS)


@pytest.mark.parametrize("text, fires", [
    # missed before: a wrist bent at an odd angle, a faint while running, mains voltage with a short, an infant's
    # age in 星期, a fever counted in days written short, a floppy baby with blotchy skin
    ("我弟从双层床上摔下来，右手腕弯成一个怪角度，肿得很厉害，要不要先揉一揉", "trauma"),
    ("体育课跑800米的时候同学突然倒下了，过了一会儿醒了说没事", "exertional_syncope"),
    ("He collapsed halfway through the football match, came round after a minute and says he's fine", "exertional_syncope"),
    ("Grabbed the 240V extension lead and it shorted, threw me back across the room, my chest feels odd", "electrocution"),
    ("宝宝出生才6个星期，今天摸着有点烫，量了38.2度", "infant"),
    ("Fever 6 days already, eyes red, lips cracked and swollen hands", "kawasaki"),
    ("Baby is very floppy and hard to wake for feeds, and his skin looks blotchy", "sepsis"),
    # false alarms before: "exploding" without a head, an eyelid's twitch, a bitten tongue that hurts to touch, a dry
    # bed, a bruise turning colours, a poisoning asked about
    ("额头下巴的痘痘爆炸了，能用什么药膏", None),
    ("报警器响得跟要炸了一样，原来是锅糊了，现在没事了", None),
    ("我眼皮一直在抽搐，好几天了，是不是熬夜熬的", None),
    ("昨晚咬到舌头，有个小口子，一碰就疼，已经不出血了", None),
    ("早上枕头上有血，原来是挤破了痘，床单也没尿", None),
    ("She bumped her head two days ago and the bruise is turning blue and purple, she's playing normally", None),
    ("He licked some toothpaste off the brush, fluoride poisoning? He's totally fine", None),
])
def test_round_23_forms(text, fires):
    _assert_fires(text, fires)


# Round 24 (a99-a102), scored blind once at 4639649 and then developed on; one classifier without all four.
ROUND_24_FLOORS = {"a99_en_shanghai_retired_english_teacher": (0.975, 0.02), "a100_meizhou_hakka_grandmother": (0.975, 0.02),
                   "a101_en_egyptian_med_student_tianjin": (0.975, 0.02), "a102_beijing_120_dispatcher": (0.975, 0.04)}


@pytest.mark.slow
def test_round_24_held_out_together():
    _held_out_together(ROUND_24_FLOORS)


@pytest.mark.parametrize("text, fires", [
    # missed before: a nosebleed that keeps running on warfarin (an INR named), blood in the urine on warfarin, Hakka
    # (an infant's age in 出世…日, a neighbour's pesticide bought and life not worth living, a fever in the fields,
    # a dog bite that went through, a testis), the calf and breath after a long bus ride
    ("My nose started to bleed an hour ago and it keeps running despite pinching; my INR was 3.6 on Monday.",
     "anticoagulated"),
    ("I take warfarin and this morning my urine was pink, and my gums bleed when I brush.", "anticoag_haematuria"),
    ("细妹仔出世正十八日，今夜摸起来好烫，探热针38.3度", "infant"),
    ("隔壁阿婶话活落去冇意思，农药已经买好放在眠床下", "suicide"),
    ("阿公中午在田里割禾，转来全身好烫，冇出汗，体温计40度6", "heat_stroke"),
    ("孙仔被狗咬到手，咬穿咗，流咗好多血", "rabies"),
    ("孙仔半夜痛醒，话下面个卵子好痛，肿起来，呕咗一次", "testicular"),
    ("坐咗十个钟头大巴，左脚肚肿痛，今晡日突然喘唔到气，吸气心口刺痛", "dvt_pe"),
    # false alarms before: a faint when blood was taken, a febrile fit as a toddler, a sterile practice needle, pink
    # urine after dragon fruit, a stroke asked about
    ("My son fainted when they took blood at school, came round in seconds and has played football since.", None),
    ("She had a febrile convulsion when she was two years old; she is twelve now and has had none since.", None),
    ("I pricked my finger with a brand new sterile needle on the practice pad; do I need HIV tests?", None),
    ("He is on apixaban and his wee was pink today, but he ate two whole red dragon fruits yesterday and feels fine.",
     None),
    ("体检报告写腔隙性脑梗，佢冇任何唔舒服，系唔系中风了？", None),
])
def test_round_24_forms(text, fires):
    _assert_fires(text, fires)


# Round 25 (a103-a106), scored blind once at 9ebb390 and then developed on; one classifier without all four.
ROUND_25_FLOORS = {"a103_en_nigerian_nurse_guangzhou_clinic": (0.975, 0.06), "a104_harbin_retired_railway_worker": (0.975, 0.02),
                   "a105_en_us_exchange_student_kunming": (0.975, 0.02), "a106_xiamen_minnan_fisherman_son": (0.975, 0.04)}


@pytest.mark.slow
def test_round_25_held_out_together():
    _held_out_together(ROUND_25_FLOORS)


@pytest.mark.parametrize("text, fires", [
    # missed before: Minnan (a mother talking nonsense with a fever, a worker hit on the head then vomiting, joint pain
    # after a deep dive, lime sprayed in an eye), a baby not felt to move, pens counted against a dose, a cast with
    # purple fingers, mushrooms picked on a hike and cooked
    ("阮阿母今仔日早起开始乱讲，呣认得阮某，摸起来有小可烧", "unconscious"),
    ("工人予吊杆拍着头壳，过两点钟吐两摆，一直欲困", "head_injury"),
    ("工人潜水落去二十外米深，起来半点钟后肩胛头、手骨节痛甲袂振动", "decompression"),
    ("37 weeks and I haven't felt my baby move since last night.", "pregnancy"),
    ("Last night I caught myself counting how many insulin pens I have and how much would be enough.", "suicide"),
    ("Got a cast yesterday for a fracture, tonight the pain is insane and my fingers are swollen and purple.",
     "limb_threat"),
    ("We picked some mushrooms on a hike, cooked them for dinner, and ten hours later we both had vomiting.",
     "poisoning"),
    # false alarms before: hearing a spouse unclearly, a COPD saturation in the range a doctor set, "dry drowning" heard
    # about a week after a dunk, wild mushrooms eaten days ago with no illness, a faint standing in church unfed
    ("耳朵背了，老伴说话我听不清，想配助听器", None),
    ("手指头夹的血氧88，上回住院大夫说我这病平时88到92就行，现在喘气跟平时一样", None),
    ("上礼拜工人跋落海，一分钟就捞起来，到今仔日攏无咳、无喘，听人讲有「干性溺水」", None),
    ("My host family ate wild mushrooms on Sunday; it's Thursday now and we never felt sick at all.", None),
    ("A girl in the choir fainted while standing through a long service; she had not eaten breakfast and was fine "
     "after a drink.", None),
])
def test_round_25_forms(text, fires):
    _assert_fires(text, fires)


# Round 26 (a107-a110), scored blind once at 0ea2d4e and then developed on; one classifier without all four.
ROUND_26_FLOORS = {"a107_chongqing_dialysis_nurse": (0.975, 0.02), "a108_en_zimbabwean_mining_engineer_xinjiang": (0.975, 0.02),
                   "a109_shenzhen_young_first_time_mother": (0.975, 0.02), "a110_en_kazakh_student_urumqi": (0.975, 0.02)}


@pytest.mark.slow
def test_round_26_held_out_together():
    _held_out_together(ROUND_26_FLOORS)


@pytest.mark.parametrize("text, fires", [
    # missed before: pulmonary and cerebral oedema at altitude (WMS), an infant's age as 宝宝N周 with projectile vomiting
    ("At the 4200m camp one of the drillers is breathless even lying flat and his spit is pink and frothy.",
     "altitude_illness"),
    ("海拔4500米的工地上，工友走路不稳像喝醉了，同一句话问了三遍", "altitude_illness"),
    ("宝宝4周 每次喝完奶都喷出来 喷得老远", "infant"),
    # false alarms before: sunburn at altitude, an "overdose" of vitamin C, a saturation of 89 in Lhasa
    ("What sunscreen do the guys need on the plateau? Even I am getting burnt lips and faces up there.", None),
    ("I think I made overdose, I took two vitamin C tablets instead of one. I feel normal.", None),
    ("Arrived in Lhasa two days ago, feeling fine, my finger oximeter says 89% sitting. Normal here?", None),
])
def test_round_26_forms(text, fires):
    _assert_fires(text, fires)


# Round 28 (a115-a118), scored blind once at 8dffa70 and then developed on; one classifier without all four.
ROUND_28_FLOORS = {"a115_wuhan_pharmacy_night_clerk": (0.975, 0.02), "a116_en_brazilian_footballer_guangzhou": (0.975, 0.02),
                   "a117_hainan_rubber_farmer_daughter": (0.975, 0.02), "a118_shanghai_esports_teen_slang": (0.975, 0.02)}


@pytest.mark.slow
def test_round_28_held_out_together():
    _held_out_together(ROUND_28_FLOORS)


@pytest.mark.parametrize("text, fires", [
    # missed before: a generator run indoors (and 叫无醒), reduced fetal movements in a second language,
    # compartment syndrome after a blow with no fracture, a tooth out with its root, a cut tendon,
    # fever after travel to an African capital, hypothermia with no reading, heat said as the day's temperature
    ("我们家停电，把发电机搬进车库开着，今早我和我妈都头疼恶心，我爸叫无醒", "poisoning"),
    ("She is 33 weeks and since this morning she dont feel the baby move at all.", "pregnancy"),
    ("Took a studs-up tackle on the calf, now 3 hours later the calf is hard and tight like a rock and when the physio "
     "bends my toes I scream; painkillers do nothing.", "limb_threat"),
    ("My son's adult front tooth fell out with the root after he came off his bike.", "trauma"),
    ("切菜的时候刀划到了左手食指，现在食指伸不直", "trauma"),
    ("He came back from Kampala last week. Tonight he has fever 39.5 and shaking chills.", "sepsis"),
    ("Found grandpa in the garden this morning, it was minus 15 outside overnight; he has stopped shivering and is "
     "very sleepy.", "hypothermia"),
    ("It's 38 degrees outside today; my dad did yard work all afternoon, now he is confused and stopped sweating.",
     "heat_stroke"),
    ("My glucometer read 2.4 and I am shaky and sweaty, I cannot think straight.", "hypoglycaemia"),
    # false alarms before: a wish to die taken back as a joke, a gamer's "suicidal" play, a thermometer read as a
    # glucose meter, betel-nut saliva, gum bleeding in pregnancy, blood in the foam after brushing
    ("他进门就喊不想活了，后来说不想活是开玩笑的，其实就是被蚊子咬得痒", None),
    ("教练老说我打法太自杀，一个人冲，手腕有点酸", None),
    ("Forehead thermometer read 39.2 right after he came out of the hot car; 15 minutes later the ear thermometer "
     "reads 37.0 and he is playing.", None),
    ("阿公嚼槟榔，吐的口水红红的，家里人以为吐血，其实是槟榔汁，他一天吃好几颗槟榔", None),
    ("怀孕24周，刷牙时牙龈出血，其他都好", None),
    ("刷牙吐出来的泡沫带血，是牙龈出的，吃饭都正常", None),
])
def test_round_28_forms(text, fires):
    _assert_fires(text, fires)
