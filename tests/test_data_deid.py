"""Issue 24's de-identification: the Presidio pipeline, the full identifier taxonomy, the medical
lexicon, and the eight blind writers' texts (discmed/assets/safety/authors) per identifier type."""

import json
import sys
from collections import Counter
from pathlib import Path

from discmed.data.scrub import scrub_edits, scrub_text

ROOT = Path(__file__).resolve().parents[1]


def test_the_pipeline_is_presidios():
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    from discmed.data import deid

    engine = deid.analyzer()
    assert isinstance(engine, AnalyzerEngine) and isinstance(engine.registry, RecognizerRegistry)
    names = {r.name for r in engine.registry.recognizers}
    assert {"lac", "spacy_en", "phonenumbers", "email", "id_card", "date", "bed", "code_cue"} <= names
    assert any(isinstance(r, PhoneRecognizer) for r in engine.registry.recognizers)
    # Presidio's context step: a bare short number is an identifier only near its cue word.
    assert scrub_text("工号 0207，今天值班")[0] == "工号 [编号]，今天值班"
    assert scrub_text("血糖0207？不对，是7.2")[0] == "血糖0207？不对，是7.2"
    # phonenumbers for a foreign patient's number; the placeholders come from Presidio's anonymizer
    assert scrub_text("My UK mobile is +44 7911 123456.")[0] == "My UK mobile is [电话]."


def test_the_taxonomy_each_kind():
    cases = {
        # dates that identify go, the relative timeline stays
        "2024年3月5日入院，术后第3天拆线，3天前开始发热": "[日期]入院，术后第3天拆线，3天前开始发热",
        "出生日期：2019-03-05 14:32，2023年12月复查": "出生日期：[日期]，[日期]复查",
        "Admitted on 12 March 2024, discharged 03/15/2024.": "Admitted on [日期], discharged [日期].",
        # ages: 90 and over (Safe Harbor); younger ages are medicine
        "患者93岁，其子65岁": "患者[年龄]，其子65岁",
        # wards, rooms, beds, seats
        "心内科3病区21床，康护楼3层312室2床，座位号：3-07": "心内科[床号]，[床号]，座位号：[床号]",
        # record, sample, insurance, staff numbers, alphanumeric included
        "病理号：P24-08817，标本号 240318-E0219，保单号GP-CD-2023-66120": "病理号：[编号]，标本号 [编号]，保单号[编号]",
        "透析号HD-0219，警号031642": "透析号[编号]，警号[编号]",
        "交警事故认定书(乐公交认字[2024]第01275号)": "交警事故认定书([编号])",
        # schools, classes, employers, professions, accounts
        "就读于上海市浦东新区建平中学初二（3）班": "就读于[学校][学校]",
        "工作单位：北京星河数科信息技术有限公司，仓储部主管": "工作单位：[机构]，[职业]",
        "开户行：中国工商银行成都春熙支行": "开户行：[机构]",
        "网名：小鲸鱼，在谢家亲友群里": "网名：[账号]，在[账号]里",
        # places below a city, IPs, passports, names in Latin letters
        "户籍：广东省广州市天河区，住李家村三组": "户籍：[地址]，住[地址]",
        "登录IP 192.168.10.23": "登录IP [IP地址]",
        "Passport no. E12345678, seen by Dr. Sarah Johnson": "Passport no. [证件号], seen by Dr. [姓名]",
        # names: staff by title, masked, after a role word, foreign names in Chinese
        "已转介家庭医生牛医生上门随访": "已转介家庭医生[姓名]医生上门随访",
        "参保人王**，陪同：男友戴宇航，电话13812345678": "参保人[姓名]，陪同：男友[姓名]，电话[电话]",
        "主治医生约翰·史密斯": "主治医生[姓名]",
    }
    for text, want in cases.items():
        assert scrub_text(text)[0] == want, text


def test_medicine_is_never_replaced():
    for text in [
        "罗哌卡因0.1%硬膜外镇痛", "华法林3mg，INR 2.5", "何首乌和当归煎服", "格林-巴利综合征，丙种球蛋白冲击",
        "孕12+3周行NT检查", "韦尼克脑病可能，补充维生素B1", "Stevens-Johnson syndrome after carbamazepine",
        "左附件区混合回声包块4.1×3.5cm", "右腹股沟区压痛", "房间隔缺损为II孔型", "Ann Arbor分期 II期", "ALT 156 U/L，AST 132 U/L",
        "血液科二病区", "Hunt-Hess Ⅱ级", "舌系带过短（Coryllos II型）", "GDM A1级", "SpO2 93%", "BMI 15.2 kg/m²",
        "唐氏筛查低风险", "川崎病，IVIG 2g/kg", "桥本甲状腺炎，优甲乐50μg",
    ]:
        assert scrub_text(text)[0] == text, text
    # a name that holds a medical word is still a name; the word elsewhere stays
    assert scrub_text("患者王灵芝，吃灵芝孢子粉")[0] == "患者[姓名]，吃灵芝孢子粉"


def test_changes_name_each_new_rule_and_point_at_the_original():
    text = "2024年3月5日入院，12床，病理号：P24-08817，Dr. Sarah Johnson"
    doc = scrub_edits(text)
    assert doc.text == "[日期]入院，[床号]，病理号：[编号]，Dr. [姓名]"
    got = [(text[s:e], kind, rule) for s, e, kind, rule in doc.changes]
    assert got == [("2024年3月5日", "date", "rule:date"), ("12床", "bed", "rule:bed"),
                   ("P24-08817", "code", "rule:code_cue"), ("Sarah Johnson", "name", "rule:name_en_title")]


def test_packed_ner_windows_agree_with_one_at_a_time():
    from discmed.data.ner import default_tagger

    tagger = default_tagger()
    windows = ["我婆婆王秀英今年68岁", "老公张伟昨天在北医三院做了CT", "左下腹疼", "x" * 120 + "李明说"]
    packed = tagger.tag_windows(windows, row=48, batch=2)
    alone = [tagger.entities([w], scores=True)[0] for w in windows]
    assert [[(a, b, lab) for a, b, lab, _ in p] for p in packed] == [[(a, b, lab) for a, b, lab, _ in x] for x in alone]
    assert packed[0][0][3] > 0.9  # a person's confidence is the CRF marginal


# -- the eight blind writers: per identifier type, pooled, and per writer --------------------

def _authors():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import deid_loao

    return deid_loao


def test_blind_writers_per_type_and_per_writer():
    """discmed/assets/safety/authors: 8 writers x 20 texts. The pipeline was built on five of them; a2, a7 and
    a8 were locked and scored once, blind (benchmarks/RESULTS.md has that figure), then tuned on
    too: every writer is scored here, and these floors (a little under the measured figures) are
    tuned-on figures, not a forecast for a new writer."""
    loao = _authors()
    per_type_hit, per_type_n = Counter(), Counter()
    worst_sh, worst_med = 1.0, 1.0
    for author in _round(loao, 1):
        r = loao.score(author, ner=True, show=False)
        for cat, (hit, n) in r["by_type"].items():
            per_type_hit[cat] += hit
            per_type_n[cat] += n
        worst_sh = min(worst_sh, r["removed_sh"] / r["identifiers_sh"])
        worst_med = min(worst_med, r["kept"] / r["medical"])
    recall = {c: per_type_hit[c] / per_type_n[c] for c in per_type_n}
    print("\nper type:", {c: f"{per_type_hit[c]}/{per_type_n[c]}" for c in sorted(per_type_n)},
          f"worst writer (Safe Harbor) {worst_sh:.3f}, medical kept worst {worst_med:.3f}")
    assert recall["age<90"] < 0.5  # kept on purpose: medicine, not a Safe Harbor identifier
    floors = {"name": 0.97, "date": 0.97, "phone": 0.98, "record_number": 0.98, "hospital_care": 0.97,
              "address_place": 0.9, "ward_room_bed": 0.97, "id_document": 0.95, "school": 0.95, "employer_org": 0.9}
    for cat, floor in floors.items():
        assert recall[cat] >= floor, (cat, recall[cat])
    assert worst_sh >= 0.95 and worst_med >= 0.995


def _round(loao, n: int) -> list[str]:
    writers = json.loads((loao.AUTHORS / "writers.json").read_text(encoding="utf-8"))["writers"]
    return sorted(w for w, v in writers.items() if v["round"] == n)


def _meet(loao, floors: dict[str, tuple[float, float]]) -> None:
    """Each writer's identifiers removed and medical values kept at or above its floors."""
    for author, (removed, kept) in floors.items():
        r = loao.score(author, ner=True, show=False)
        assert r["removed"] / r["identifiers"] >= removed and r["kept"] / r["medical"] >= kept, \
            (author, r["removed"] / r["identifiers"], r["kept"] / r["medical"])


def test_later_rounds_writers():
    """The second round's writers (writers.json; a12-a14 locked and scored once first): Cantonese,
    Hong Kong and British documents, campus and community records. Floors a little under the
    figures measured when they were set (tuned on: their misses were read and fixed)."""
    loao = _authors()
    floors = {"a9_en_parent": (0.94, 0.995), "a10_gp_relay": (0.96, 0.995), "a11_student": (0.93, 0.99),
              "a12_cantonese": (0.96, 0.995), "a13_pharmacist": (0.94, 0.995), "a14_en_codeswitch": (0.89, 0.99),
              "a15_hk_mother": (0.95, 0.99), "a16_en_retiree": (0.9, 0.98), "a17_en_student": (0.91, 0.975),
              "a18_dongbei": (0.945, 0.995), "a19_intl_nurse": (0.91, 0.995), "a20_taiwan_mother": (0.92, 0.995),
              "a21_en_traveller": (0.91, 0.985), "a22_shanghai_elder": (0.97, 0.99), "a23_med_student": (0.965, 0.99),
              "a24_en_hr": (0.865, 0.995), "a25_ru_business": (0.875, 0.96), "a26_village_doctor": (0.95, 0.975),
              "a27_chongqing_worker": (0.975, 0.995), "a28_en_india_engineer": (0.92, 0.99), "a29_pd_patient": (0.95, 0.98),
              "a30_en_helper_hk": (0.92, 0.98)}
    assert set(floors) <= {w for n in (2, 3, 4, 5, 6) for w in _round(loao, n)}
    _meet(loao, floors)


def test_rounds_7_to_10_writers():
    """Rounds 7 to 10 (sixteen writers, each scored blind once, then developed on): Nigerian, Korean,
    Australian, British and Pakistani English; Minnan, Shaanxi, Guangxi, Yunnan, Hunan and Hong Kong
    Chinese; Tibetan names; care-home, transplant, psychiatric and trucking records. Floors a little
    under the figures measured when they were set (benchmarks/RESULTS.md, "Issue 24, rounds 8 to 11")."""
    loao = _authors()
    floors = {"a31_en_nigeria_student": (0.915, 0.985), "a32_minnan_grandson": (0.930, 0.990),
              "a33_xian_daughter": (0.975, 0.995), "a34_en_korean_mom": (0.920, 0.970),
              "a35_guangxi_transplant_wife": (0.955, 0.990), "a36_en_aussie_teacher": (0.875, 0.990),
              "a37_yunnan_young_mother": (0.955, 0.985), "a38_beijing_bipolar_brother": (0.935, 0.990),
              "a39_hangzhou_carehome_worker": (0.955, 0.995), "a40_en_british_engineer": (0.905, 0.995),
              "a41_hunan_grandfather": (0.970, 0.995), "a42_shenzhen_pregnant_coder": (0.960, 0.995),
              "a43_xining_herder_son": (0.940, 0.990), "a44_en_pakistani_yiwu": (0.915, 0.995),
              "a45_shandong_trucker": (0.980, 0.990), "a46_hk_teen_crossborder": (0.910, 0.995)}
    assert set(floors) <= {w for n in (7, 8, 9, 10) for w in _round(loao, n)}
    _meet(loao, floors)


def test_rounds_12_to_14_writers():
    """Rounds 12 to 14 (twelve writers, each scored blind once, then developed on): a Chengdu school
    nurse's class and dormitory records, a Filipino seafarer's crew logs (vessels, ranks, capitals
    dates), a Dongguan factory doctor's workshop, line and dormitory papers, a Wenzhou grandmother's
    voice-typed family records; a haemophilia father's clinic letters, a Ghanaian trader's records
    from Guangzhou and Accra, a Harbin ICU nurse's handovers, a Tianjin student's counselling and
    hospital papers; a Japanese engineer's family and factory records in Dalian, a Miao village doctor's
    registers, a Shanxi miner's family papers, a Macanese croupier's Portuguese, Cantonese and English
    records. Floors a little under the figures measured when they were set."""
    loao = _authors()
    floors = {"a51_chengdu_school_nurse": (0.945, 0.995), "a52_en_filipino_seafarer": (0.875, 0.980),
              "a53_dongguan_factory_doctor": (0.940, 0.995), "a54_wenzhou_voice_input_wife": (0.955, 0.985),
              "a55_nanjing_hemophilia_father": (0.955, 0.985), "a56_en_ghanaian_trader_guangzhou": (0.915, 0.995),
              "a57_harbin_icu_nurse": (0.950, 0.990), "a58_tianjin_student_ed": (0.905, 0.995),
              "a59_en_japanese_engineer_dalian": (0.830, 0.985), "a60_guizhou_miao_village_doctor": (0.935, 0.970),
              "a61_shanxi_miner_wife": (0.905, 0.995), "a62_macau_croupier": (0.780, 0.990)}
    assert set(floors) <= {w for n in (12, 13, 14) for w in _round(loao, n)}
    _meet(loao, floors)


def test_rounds_15_to_17_writers():
    """Rounds 15 to 17 (each scored blind once, then developed on): a German postdoc's insurance
    claims, lab incident reports and discharge letters; a Lanzhou restaurant owner's staff health
    certificates, reimbursement forms and family messages; a Taipei nurse's discharge summaries,
    refill slips and long-term-care papers; a Sanya tour guide's incident reports and insurance
    claims; a Kazakh teacher's township and pasture records; an American teacher's pump, insurance
    and sick-leave papers; an IVF patient's reproductive-centre records; a Lhasa nurse's emergency,
    transfer and monastery-clinic notes; a Vietnamese bride's papers from both sides of the border, a
    Shanghai pharmacist's review notes, a Singaporean engineer's memos and claims, a delivery rider's
    accident certificates. Floors a little under the figures measured when they were set."""
    loao = _authors()
    floors = {"a63_en_german_postdoc_shanghai": (0.930, 0.980), "a64_lanzhou_hui_noodle_owner": (0.925, 0.995),
              "a65_taipei_retired_nurse": (0.945, 0.995), "a66_sanya_tour_guide": (0.990, 0.995),
              "a67_altay_kazakh_herder_daughter": (0.915, 0.995), "a68_en_us_teacher_chengdu_t1d": (0.965, 0.995),
              "a69_hangzhou_ivf_patient": (0.945, 0.980), "a70_lhasa_han_nurse": (0.915, 0.995),
              "a71_guangxi_vietnamese_bride": (0.950, 0.990), "a72_shanghai_community_pharmacist": (0.945, 0.995),
              "a73_en_singaporean_suzhou": (0.965, 0.990), "a74_zhengzhou_delivery_rider": (0.895, 0.995)}
    assert set(floors) <= {w for n in (15, 16, 17) for w in _round(loao, n)}
    _meet(loao, floors)


def _gone_and_kept(cases: list[tuple[str, list[str], list[str]]]) -> None:
    """Each text scrubbed: every identifier listed gone, every medical value listed still there."""
    from discmed.data import deid

    for text, gone, kept in cases:
        out = deid.anonymize(text, deid.analyze_many([text])[0])
        for g in gone:
            assert g not in out, (g, out)
        for k in kept:
            assert k in out, (k, out)


def test_crew_and_factory_papers():
    """The round-12 kinds, on text written here: a vessel and a name after a ship's rank go, the
    mitral valve and medical departments stay; a workshop, a line and a dormitory room go, the
    abdomen (腹部) and first-line treatment (一线治疗) stay; a labelled card number goes without a
    valid check digit."""
    cases = [
        ("Master MV SILVER GULL reports 2/O Marco Dizon, DOB 03 MAR 1991, MV prolapse on echo, seen in Cardiology Department",
         ["MV SILVER GULL", "Marco Dizon", "03 MAR 1991"], ["MV prolapse", "Cardiology Department"]),
        ("焊接车间SMT三线的工人，住宿舍B栋407，腹部压痛，一线治疗用头孢，工资卡号 6217 0000 1111 2222 333",
         ["焊接车间", "SMT三线", "宿舍B栋407", "6217 0000 1111 2222 333"], ["腹部压痛", "一线治疗", "头孢"]),
        # dates as dd.mm.yy, mm/yyyy and yyyy-mm; tests and a job an English NER took for a company or a person
        ("DOB 02.11.88, follow-up 09/2025, tested 2024-07: Direct Coombs negative, HIV Ag/Ab negative. "
         "Dr Amara Mensah, Attending Haematologist", ["02.11.88", "09/2025", "2024-07", "Amara Mensah"],
         ["Direct Coombs negative", "HIV Ag/Ab negative", "Attending Haematologist"]),
        # round 14: Macau and Hong Kong identity cards, accented Latin names, a Japanese name with a space,
        # a Macau health centre
        ("Nome: CONCEIÇÃO, ANA LÚCIA; BIR 7123456(3); HKID Z654321(A); Dr. Sérgio Tam; 患者：石川 翔太；转诊至黑沙环卫生中心。"
         "Diagnóstico: Diabetes mellitus tipo 2, HbA1c 8.2%",
         ["CONCEIÇÃO, ANA LÚCIA", "7123456(3)", "Z654321(A)", "Sérgio Tam", "石川 翔太", "黑沙环卫生中心"],
         ["Diabetes mellitus tipo 2", "HbA1c 8.2%"]),
    ]
    _gone_and_kept(cases)


def test_rounds_15_to_17_papers():
    """The kinds of rounds 15 to 17, on text written here: Taiwan's licence numbers, landlines, Minguo dates
    before 100 and a day of the month with no year; a hospital named before 综合; a caregiver's
    name in capitals; a hospital, an insurer, a German address and a phone in an expat's papers;
    an island pier and a tour group. Medicine stays: a fraction of a tablet, an eponymous tear, a
    recompression table, a button cell, a xaban, "1# q6h", 胰岛素, the emergency department."""
    cases = [
        ("醫師：林志明（醫師證書字號：台醫字第012345號）電話：(02)2712-3456 轉 123，家裡 02-2345-6789。出生日期：052/03/14。"
         "下次回診 11/5（三）上午，Bisoprolol 1.25mg 吃1/2顆，Acetaminophen 500mg 1# q6h prn",
         ["台醫字第012345號", "(02)2712-3456 轉 123", "02-2345-6789", "052/03/14", "11/5"],
         ["1/2顆", "1# q6h prn", "Bisoprolol 1.25mg"]),
        ("處方來源：永康綜合醫院；外籍看護 DEWI LESTARI 陪同；建議轉大型綜合醫院，長期服利伐沙班。",
         ["永康綜合醫院", "DEWI LESTARI"], ["大型綜合醫院", "利伐沙班"]),
        ("Transferred to Ruijin Hospital Emergency Department. Insurer: HanseMerkur Reiseversicherung AG. "
         "GP: Dr. med. K. Huber, Bahnhofstraße 12, 93047 Regensburg, Tel. 0941 12 34 56. "
         "Dx: Mallory-Weiss tear, Graves/Basedow; hyperbaric US Navy Treatment Table 6; swallowed a CR2032 cell",
         ["Ruijin Hospital", "HanseMerkur Reiseversicherung AG", "Bahnhofstraße 12, 93047 Regensburg", "0941 12 34 56"],
         ["Emergency Department", "Mallory-Weiss tear", "Graves/Basedow", "US Navy Treatment Table 6", "CR2032"]),
        ("团号 KR-SY-1102C 的游客在天涯岛码头上船前晕倒，平时打胰岛素，血糖2.3mmol/L",
         ["KR-SY-1102C", "天涯岛码头"], ["胰岛素", "血糖2.3mmol/L"]),
        # round 16: Tibetan names of one part by their cue, a hostel, a flight taken, a card after its account
        # label; kept: a gestational age after 孕周, an oestradiol of 3012 (no 301 Hospital)
        ("丈夫多吉 手机13800000000；交班：旦增；扎西医生会诊；住拉萨雪域青年旅舍，明天坐3U8696回成都；"
         "收款账户：农业银行 6228 4801 9382 7760 413。超声孕周约30周，E2 3012 pg/mL",
         ["多吉", "旦增", "扎西", "雪域青年旅舍", "3U8696", "6228 4801 9382 7760 413"],
         ["超声孕周约30周", "E2 3012 pg/mL"]),
        # US dates, a device's serial and lot, a name in capitals after its field, a school in capitals
        ("Discharged 11/04. Sensor serial 8MKQ2XN4 (lot 2026-0611-B) read 40 mg/dL. 申报人：KOWALSKI RYAN MATTHEW. "
         "Employer: PANDA BRIDGE ENGLISH TRAINING CENTER. Take 1/2 tablet; MMT 4/5.",
         ["11/04", "8MKQ2XN4", "2026-0611-B", "KOWALSKI RYAN MATTHEW", "PANDA BRIDGE ENGLISH TRAINING CENTER"],
         ["40 mg/dL", "1/2 tablet", "MMT 4/5"]),
        # round 17: Vietnamese names, places, clinics and dates, in Vietnamese and in characters; Singapore's HDB
        # addresses, hospitals by initials, names surname-first in capitals; a Guangxi hamlet; a log line's date
        ("Bệnh nhân: Trần Thị Mai, sinh ngày 03 tháng 05 năm 1990, địa chỉ thôn Nà Lầu, xã Tân Mỹ, huyện Văn Lãng, "
         "tỉnh Lạng Sơn. Trạm y tế xã Tân Mỹ. 中文名阮氏梅，住下冻镇板弄村那坡屯12号。Sốt xuất huyết, tiểu cầu 45 G/L",
         ["Trần Thị Mai", "ngày 03 tháng 05 năm 1990", "thôn Nà Lầu, xã Tân Mỹ, huyện Văn Lãng, tỉnh Lạng Sơn",
          "Trạm y tế xã Tân Mỹ", "阮氏梅", "下冻镇板弄村那坡屯12号"], ["Sốt xuất huyết", "tiểu cầu 45 G/L"]),
        ("LIM AH KOW, BENJAMIN of Blk 231 Bishan St 22 #07-118 Singapore 570231, seen at TTSH A&E; flight SQ 838. "
         "CA 125 35 U/mL, Pap smear 巴氏涂片 normal\n09-03 患者头孢克洛 0.25g tid",
         ["LIM AH KOW, BENJAMIN", "Blk 231 Bishan St 22 #07-118 Singapore 570231", "TTSH", "SQ 838", "09-03"],
         ["CA 125 35 U/mL", "巴氏涂片", "头孢克洛 0.25g tid"]),
    ]
    _gone_and_kept(cases)


def test_rounds_18_to_22_writers():
    """Rounds 18 to 22 (each scored blind once, then developed on): a Korean-Chinese home-care nurse's visit
    records and long-term-care assessments; a French student's clinic notes, insurance refunds and GP letters; a
    fishing captain's wife's boat, insurance and plant-injury papers; a lupus patient's rheumatology, biopsy and
    support-group papers; a Kenyan student's clinic notes and scholarship letters; a Chaoshan family's township
    records and clan lists; a hospice daughter's visit, opioid and funeral papers; a Mexican teacher's IMSS, school
    and insurance papers; a deaf woman's disability, relay and hospital papers; a rugby coach's incident and
    medical-aid papers; a construction-camp medic's injury logs; an Indonesian student's clinic and BPJS papers; a
    grandmother's NICU and home-oxygen papers; an adoptive mother's orphanage, court and insurance papers; a peer
    group's clinic, PrEP and aftercare papers; an occupational-health nurse's incident reports and Irish papers; a
    caregiver's care logs and Philippine papers; a Dong family's township records; a hockey coach's rink and
    shipyard reports and Canadian papers; a pregnant teacher's antenatal booklet and school accident reports.
    Floors a little under the figures measured when they were set."""
    loao = _authors()
    floors = {"a75_yanbian_korean_home_nurse": (0.950, 0.995), "a76_en_french_student_wuhan": (0.930, 0.995),
              "a77_ningde_fisherman_wife": (0.955, 0.995), "a78_kunming_lupus_patient": (0.940, 0.995),
              "a79_en_kenyan_phd_beijing": (0.955, 0.995), "a80_chaoshan_granddaughter": (0.970, 0.995),
              "a81_hangzhou_hospice_daughter": (0.945, 0.995), "a82_en_mexican_teacher_guangzhou": (0.955, 0.995),
              "a83_deaf_signer_chengdu": (0.940, 0.995), "a84_en_south_african_coach_shanghai": (0.915, 0.995),
              "a85_xinjiang_site_medic": (0.905, 0.995), "a86_en_indonesian_student_xiamen": (0.955, 0.995),
              "a87_shenyang_preemie_twins_grandma": (0.970, 0.995), "a88_en_us_adoptive_mom_xian": (0.930, 0.995),
              "a89_guangzhou_trans_woman": (0.920, 0.995), "a90_en_irish_nurse_suzhou": (0.900, 0.995),
              "a91_en_filipina_caregiver_beijing": (0.895, 0.995), "a92_guiyang_dong_grandfather_via_son": (0.945, 0.995),
              "a93_en_canadian_hockey_dad_dalian": (0.890, 0.995), "a94_wuxi_pregnant_teacher_gdm": (0.930, 0.995)}
    assert set(floors) <= {w for n in (18, 19, 20, 21, 22) for w in _round(loao, n)}
    _meet(loao, floors)


def test_rounds_18_to_22_papers():
    """The kinds of rounds 18 to 22, on text written here: numbers in spaced groups, French addresses, phones and
    insurance funds, a position at sea, a fishing boat, Korean-Chinese and Japanese names, a Latin name in brackets,
    Madame; Australian addresses and phones, an initial and a surname after a field; Mexico's CURP, voter key,
    dates, addresses, family-medicine unit, licence and phones; a Chaoshan lane, an ancestral hall, a lab room.
    Medicine stays: 肾周未见 (no 周 name), an eponym, departments in English and Spanish, a bacterium with a
    capital (H. Pylori), a result after mg/L, a ward of a department (心内科三病区)."""
    cases = [
        # round 18: spaced long numbers, a French address, phone and fund, coordinates, a boat, Korean-Chinese names
        ("Assuré: Paul MARTIN, N° sécurité sociale 1 85 03 75 112 054 33, CPAM de la Gironde, 12 rue des Carmes, "
         "33000 Bordeaux, tél. 05 56 12 34 78. Diagnostic: otite moyenne aiguë, amoxicilline 1 g x3/j",
         ["Paul MARTIN", "1 85 03 75 112 054 33", "CPAM de la Gironde", "12 rue des Carmes, 33000 Bordeaux", "05 56 12 34 78"],
         ["otite moyenne aiguë", "amoxicilline 1 g"]),
        ("渔船闽连渔07731在北纬25°40′ 东经120°12′作业时船员受伤，被评估人：玄春花，工资卡 6217 0012 3456 7890 123，"
         "诊断：左前臂开放性骨折，破伤风抗毒素1500U肌注",
         ["闽连渔07731", "北纬25°40′ 东经120°12′", "玄春花", "6217 0012 3456 7890 123"],
         ["左前臂开放性骨折", "破伤风抗毒素1500U"]),
        ("姓名：王丽（Sophie DUBOIS）；Madame Claire BERNARD；复查超声肾周未见积液；Libman-Sacks endocarditis; "
         "Gynecology Outpatients",
         ["Sophie DUBOIS", "Claire BERNARD"], ["肾周未见积液", "Libman-Sacks endocarditis", "Gynecology Outpatients"]),
        # Japanese and Australian papers
        ("患者：田中 美咲；报告人：佐藤健一（生产部）；Copy to: K. Tanaka; 12 Beach Pde, Manly NSW 2095, (02) 9977 1234; "
         "Dx: H. Pylori gastritis, CRP 8 mg/L. Influenza A/B negative",
         ["田中 美咲", "佐藤健一", "K. Tanaka", "12 Beach Pde, Manly NSW 2095", "(02) 9977 1234"],
         ["H. Pylori gastritis", "CRP 8 mg/L", "Influenza A/B negative"]),
        # round 19: Mexico's papers, a Chaoshan lane, an ancestral hall, a lab room; Spanish and English departments stay
        ("CURP GOMJ850312HJCMRN07, clave de elector GMMRJN85031214H500, 3 de marzo de 2024, Calle Hidalgo 845, Col. Centro, "
         "C.P. 44100, UMF No. 12, Céd. Prof. 4512398, tel. 33 3612 4455. Medicina Interna; Ginecología y Obstetricia; "
         "Infectious Diseases clinic; Orthopaedics & Spine Surgery",
         ["GOMJ850312HJCMRN07", "GMMRJN85031214H500", "3 de marzo de 2024", "Calle Hidalgo 845, Col. Centro, C.P. 44100",
          "UMF No. 12", "4512398", "33 3612 4455"],
         ["Medicina Interna", "Ginecología y Obstetricia", "Infectious Diseases", "Orthopaedics & Spine Surgery"]),
        ("住址：澄海区外砂镇凤岭村前巷三横5号；捐资：陈氏宗祠；样本存作物所215实验室；Lab 302；心内科三病区，胰岛素 8U",
         ["凤岭村前巷三横5号", "陈氏宗祠", "215实验室", "Lab 302"], ["心内科三病区", "胰岛素 8U"]),
        # round 20: names with particles, a coach, a player's field, medical-aid and BPJS numbers, Indonesian
        # streets, hospitals and rooms, an imaging centre and a physio, a site dormitory, a highway stake after a date
        ("Player: Ruan van der Berg | Coach J. Pretorius; Discovery 204 113 908-01; member no. 554 201 337; "
         "MRI at Pudong Imaging Centre, physio at Core Motion Physio. Dx: Hill-Sachs lesion, Bankart repair",
         ["Ruan van der Berg", "Pretorius", "204 113 908-01", "554 201 337", "Pudong Imaging Centre", "Core Motion Physio"],
         ["Hill-Sachs lesion", "Bankart repair"]),
        ("Nama: Siti Rahma. No. BPJS Kesehatan: 0002345678912. Alamat: Jl. Raya Kupang Indah II No. 8, Surabaya. "
         "Dirawat di RS Zhongshan lantai 9 kamar 912. Dokter Spesialis Penyakit Dalam; demam berdarah, trombosit 45",
         ["0002345678912", "Jl. Raya Kupang Indah II No. 8, Surabaya", "RS Zhongshan", "lantai 9 kamar 912"],
         ["Dokter Spesialis Penyakit Dalam", "trombosit 45"]),
        ("【通达项目部】工人于2024年10月11日在K61+200涵洞工地受伤，住三标段生活区B排7号宿舍，"
         "右胫腓骨骨折；甲状腺全切+中央区淋巴结清扫术后；家长：Hendrik du Plessis",
         ["通达项目部", "K61+200", "三标段生活区B排7号宿舍", "Hendrik du Plessis"], ["右胫腓骨骨折", "中央区淋巴结清扫"]),
        # round 21: a US SSN and a two-digit-year date, an Irish Eircode and PPS number, an adoption agency, a US
        # street with its direction; kept: reading tests and a sleep scale, hand surgery, ROP, a department after a
        # hospital, a diagnosis before a Cantonese verb and a hospital
        ("SSN 412-55-9087, DOB 6/22/19, home 1420 W Grand Ave, Columbus; agency: Little Lantern Adoptions. "
         "Eircode D04 X2K9, PPS 1234567TA. WIAT-4 Pseudoword Decoding SS 80; Epworth Sleepiness Scale 11; "
         "referred to Hand Surgery; OD ROP 1期 Ⅱ区",
         ["412-55-9087", "6/22/19", "1420 W Grand Ave", "Little Lantern Adoptions", "D04 X2K9", "1234567TA"],
         ["Pseudoword Decoding SS 80", "Epworth Sleepiness Scale 11", "Hand Surgery", "ROP 1期 Ⅱ区"]),
        ("我老豆今日因为糖尿病酮症酸中毒入咗广州市白云医院ICU；转介：广州市越秀区东山社区健康服务站；"
         "听力复筛请到沈阳市妇幼保健院听力筛查中心",
         ["广州市白云医院", "广州市越秀区东山社区健康服务站"], ["糖尿病酮症酸中毒", "听力筛查中心"]),
        # round 22: Canadian health and social insurance numbers after their cue, an ice arena, a month written out is
        # no part of a surname (Martin 11%), Indonesian month names; Dong and Miao surnames; a dressing's brand stays
        ("PHIN 123 456 789, SIN 046 454 286; incident at Harbour Ice Arena; COHb: Chloe Martin 11%, Ethan Park 9%; "
         "seen 12 Januari 2025. 患者：粟秀英。Applied foam dressing (Mepilex Border), silver sulfadiazine",
         ["123 456 789", "046 454 286", "Harbour Ice Arena", "12 Januari 2025", "粟秀英"],
         ["11%", "Mepilex Border", "silver sulfadiazine"]),
    ]
    _gone_and_kept(cases)



def test_round_23_writers():
    """Round 23 (scored blind once at 3787c32, then developed on): an epileptic teenager's seizure diary, exam
    papers and ride-hailing messages; a dairy-farm adviser's incident reports, translated discharge letters and
    insurance claims; a psychiatric social worker's hotline logs, consent forms and referrals; a Malaysian mother's
    school health forms, claims and prescriptions. Floors a little under the figures measured when they were set."""
    loao = _authors()
    floors = {"a95_hefei_epilepsy_teen": (0.935, 0.995), "a96_en_nz_dairy_adviser_inner_mongolia": (0.955, 0.995),
              "a97_nanning_psych_social_worker": (0.975, 0.995), "a98_en_malaysian_mum_shenzhen": (0.965, 0.99)}
    assert set(floors) <= set(_round(loao, 23))
    _meet(loao, floors)


def test_round_23_papers():
    """The kinds of round 23, on text written here: Mc surnames, a first name before its ID or after a relative's,
    a note signed by a first name, a nickname in brackets, a credential after a name, Malaysian titles, NRIC and
    addresses, a class named by a tree, a county CDC, a railway station, a numbered farm, zero-led receipt numbers,
    a phone after "ph"; 自称「…」, 申请人 and 身份为 before a name, a ward by its name, a room in a named building,
    a district bureau, a booking code. Medicine stays: Rose Bengal, Group B Streptococcus, a diagnosis's qualifier,
    左乙 (levetiracetam), an EEG region."""
    cases = [
        ("Investigator: Fergus McTavish. Witness: Tumen (ID 150402) and Bayar (stockman, ID 150417). Amar's wife "
         "Oyuna was told. From Fergus: sent to Xilingol CDC, Rose Bengal test positive, Group B Streptococcus "
         "in the urine. Dx: Complete Kawasaki disease. Receipts 0031207–0031209. Dr Hale, MCNZ 31902, ph 07 846 2231."
         "\n\nFergus",
         ["Fergus McTavish", "Tumen", "Bayar", "Amar", "Oyuna", "Fergus", "Xilingol CDC", "0031207–0031209", "31902",
          "07 846 2231"],
         ["Rose Bengal test positive", "Group B Streptococcus", "Complete Kawasaki disease"]),
        ("Name: Tan Mei Ling (Chloe)   Class: Year 5 Willow\nTAN, MEI LING   DOB 2014-03-02\nNRIC 880412-14-5532, "
         "12, Jalan Bukit Bintang, Kuala Lumpur. Met at Bayan Lepas railway station. Mdm Koh signed. "
         "Nurse: Priya Nair RN. WeChat for refills: MeiLingTan88. Asthma, salbutamol 2 puffs PRN",
         ["Chloe", "Year 5 Willow", "TAN, MEI LING", "880412-14-5532", "12, Jalan Bukit Bintang", "Bayan Lepas railway station",
          "Koh", "Priya Nair", "MeiLingTan88"],
         ["salbutamol 2 puffs PRN"]),
        ("来电者自称「小鱼」，后经查询身份为韦丽芳，申请人覃建国；病区：男三病区；考试安排在教学楼305；"
         "抄送合肥市包河区教育体育局；预约识别码：582061。用药：左乙 500mg bid，脑电图示右侧颞区尖波",
         ["小鱼", "韦丽芳", "覃建国", "男三病区", "教学楼305", "合肥市包河区教育体育局", "582061"],
         ["左乙 500mg bid", "右侧颞区尖波"]),
    ]
    _gone_and_kept(cases)



def test_round_24_writers():
    """Round 24 (scored blind once at 4639649, then developed on): a retired teacher's anticoagulation, GP and
    insurance letters and residents' notices; a Hakka grandmother's village-doctor and county-hospital papers; an
    Egyptian student's logbooks, exposure reports and certificates; a 120 dispatcher's logs, handovers and notices.
    Floors a little under the figures measured when they were set."""
    loao = _authors()
    floors = {"a99_en_shanghai_retired_english_teacher": (0.975, 0.99), "a100_meizhou_hakka_grandmother": (0.955, 0.995),
              "a101_en_egyptian_med_student_tianjin": (0.97, 0.995), "a102_beijing_120_dispatcher": (0.975, 0.995)}
    assert set(floors) <= set(_round(loao, 24))
    _meet(loao, floors)


def test_round_24_papers():
    """The kinds of round 24, on text written here: an extension, a house number in brackets, a street with an
    ordinal, a class with its stream, a student code, initials after "Pt", a name in characters after its Latin
    spelling, a pharmacy in capitals, Yemeni; an ambulance station and crew by district, a compound's block, a
    ring-road bridge, a fire brigade, a village group. Medicine stays: 房颤 in brackets after a dose, an arrhythmia
    clinic, Occupational Health in brackets, a department of critical care."""
    cases = [
        ("Seen by: nurse, ext. 6618. Mr Wang (No. 15) to collect. Address: 88 Wulumuqi 3rd Road. Class 7(2), student "
         "2020MBBS117, Yemeni. Pt K.M. (bed 4). Patient: Zhou Meilan (周美兰). ANKANG PHARMACY. Reviewed in the "
         "Arrhythmia Clinic, then Dr Ali (Occupational Health); refer to the Department of Respiratory and Critical "
         "Care Medicine",
         ["6618", "No. 15", "88 Wulumuqi 3rd Road", "Class 7(2)", "2020MBBS117", "Yemeni", "K.M.", "周美兰",
          "ANKANG PHARMACY"],
         ["Arrhythmia Clinic", "Occupational Health", "Respiratory and Critical Care Medicine"]),
        ("派出海淀分站车辆，前往海淀区甘家口三里5号楼，途经西三环航天桥；车组：昌平08；联动海淀消防救援支队；"
         "村医去五组出诊。口服利伐沙班20mg qd（房颤）",
         ["海淀分站", "甘家口三里5号楼", "西三环航天桥", "昌平08", "海淀消防救援支队", "五组"], ["利伐沙班20mg", "房颤"]),
    ]
    _gone_and_kept(cases)



def test_round_25_writers():
    """Round 25 (scored blind once at 9ebb390, then developed on): a Nigerian nurse's triage notes, lab forms and
    pre-authorisations; a retired railwayman's pacemaker cards and reimbursement forms; an exchange student's program
    forms and claims; a fish-farm owner's work-injury, maritime and hospital papers. Floors a little under the figures
    measured when they were set."""
    loao = _authors()
    floors = {"a103_en_nigerian_nurse_guangzhou_clinic": (0.96, 0.995), "a104_harbin_retired_railway_worker": (0.98, 0.995),
              "a105_en_us_exchange_student_kunming": (0.925, 0.995), "a106_xiamen_minnan_fisherman_son": (0.96, 0.995)}
    assert set(floors) <= set(_round(loao, 25))
    _meet(loao, floors)


def test_round_25_papers():
    """The kinds of round 25, on text written here: a railway unit, a PIN and a pager number, a maiden name, a plate in
    pinyin, an age over 89 in years, a consortium, a fish raft, an office's document number. Medicine stays:
    Steri-Strips, a sports clinic, the outpatient pharmacy."""
    cases = [
        ("退休单位：沈阳铁路局苏家屯机务段；收费处在门诊药房旁；渔工在3号渔排受伤；通知书编号闽厦渔政2024-0315",
         ["沈阳铁路局苏家屯机务段", "3号渔排", "闽厦渔政2024-0315"], ["门诊药房"]),
        ("Pager 6031, phone PIN: 2718. Maiden name: Okafor. Car Yun A-5T2K9. Grandmother, 93 years, lives alone. "
         "Sponsor: Pacific Study Consortium. Wound closed with Steri-Strips; follow-up at the Sports Clinic.",
         ["6031", "2718", "Okafor", "Yun A-5T2K9", "93 years", "Pacific Study Consortium"], ["Steri-Strips", "Sports Clinic"]),
    ]
    _gone_and_kept(cases)



def test_round_26_writers():
    """Round 26 (scored blind once at 0ea2d4e, then developed on): a dialysis nurse's session records and handovers;
    a mining engineer's incident reports, site-clinic notes and evacuation forms; a young mother's newborn and
    postnatal papers; a Kazakh student's clinic, dormitory and permit papers. Floors a little under the figures
    measured when they were set."""
    loao = _authors()
    floors = {"a107_chongqing_dialysis_nurse": (0.96, 0.995), "a108_en_zimbabwean_mining_engineer_xinjiang": (0.91, 0.995),
              "a109_shenzhen_young_first_time_mother": (0.97, 0.995), "a110_en_kazakh_student_urumqi": (0.93, 0.995)}
    assert set(floors) <= set(_round(loao, 26))
    _meet(loao, floors)


def test_round_26_papers():
    """The kinds of round 26, on text written here: a mine, a quarry and a survey camp by name, a file number of
    letters, year and sequence, a teacher in pinyin, a student group, a 社康 by its place, a birth time, a checksum
    code. Medicine stays: a Glasgow score out of 15, dental pain, Alport syndrome, combined spinal-epidural."""
    cases = [
        ("Injured at Karamay Copper Mine, moved to Hoxtolgay survey camp; file PGH/2021/33812; told Zhang laoshi; "
         "student of group 23-05. GCS improved from 11/15 to 15/15. Dental pain since Monday.",
         ["Karamay Copper Mine", "Hoxtolgay survey camp", "PGH/2021/33812", "Zhang laoshi", "group 23-05"],
         ["11/15", "15/15", "Dental pain"]),
        ("转龙华社康复查；出生时间：07:12；校验码：9b2e4f。诊断：阿尔波特综合征，腰硬联合麻醉下剖宫产",
         ["龙华社康", "07:12", "9b2e4f"], ["阿尔波特综合征", "腰硬联合麻醉"]),
    ]
    _gone_and_kept(cases)



def test_round_28_writers():
    """Round 28 (scored blind once at 8dffa70, then developed on): a pharmacy clerk's receipts, delivery orders and
    prescriptions; a footballer's club, contract and hotel papers; a Hainan farming family's village, cooperative
    and ferry papers; an esports player's café, team and platform records. Floors a little under the figures
    measured when they were set."""
    loao = _authors()
    floors = {"a115_wuhan_pharmacy_night_clerk": (0.99, 0.995), "a116_en_brazilian_footballer_guangzhou": (0.92, 0.995),
              "a117_hainan_rubber_farmer_daughter": (0.97, 0.995), "a118_shanghai_esports_teen_slang": (0.99, 0.995)}
    assert set(floors) <= set(_round(loao, 28))
    _meet(loao, floors)


def test_round_28_papers():
    """The kinds of round 28, on text written here: full English names with no cue (census given name and
    surnames), a cashier's number, an order's time, a signature, a village, a route on a ticket, a plantation
    section, an internet café and its seat, a team in quotes, a nickname after a position, a game id, a Discord
    channel and user, an ambulance plate, a counselling studio, a laboratory, a shirt number, a CRM licence and a
    CPF. Medicine stays: a Mallory-Weiss tear, an arrow in a clinical note, heat cramps."""
    cases = [
        ("Rooming list: 1203 - Marcos Oliveira Santos: hamstring strain; physio Bruno Carvalho on call. "
         "Shirt No. 9. Dr. Ana Souza (CRM-RJ 523114), CPF 123.456.789-09. Report: Pearl River Sports Laboratory; "
         "referred to Xuhui Harbour Counselling Studio. Mallory Weiss tear excluded. Maria Lopez's son is well.",
         ["Marcos Oliveira Santos", "Bruno Carvalho", "Shirt No. 9", "CRM-RJ 523114", "123.456.789-09",
          "Pearl River Sports Laboratory", "Xuhui Harbour Counselling Studio", "Maria Lopez"], ["Mallory Weiss tear"]),
        ("收银员：0386 下单时间 02-14 22:40 医生签名 郑华 我是沙坪村的，车票：屯昌→海口汽车票 第3林段割胶 "
         "星河网咖5号包厢 咱们战队『烈焰电竞』的打野阿豪（QQ is 28817365）游戏ID：LH_Blaze 派车：琼A·急救305。"
         "先兆中暑 → 补液后好转",
         ["0386", "02-14 22:40", "郑华", "沙坪村", "屯昌→海口", "第3林段", "星河网咖", "5号包厢", "烈焰电竞", "阿豪",
          "28817365", "LH_Blaze", "琼A·急救305"], ["先兆中暑", "补液后好转"]),
        ("[Discord #lh-academy] coach_min: update on our support 'Blaze' (real name withheld), he has heat cramps only.",
         ["#lh-academy", "coach_min", "Blaze"], ["heat cramps"]),
    ]
    _gone_and_kept(cases)

def test_real_sample_changes_are_identifiers(shared_data):
    """The real DISC sample: what the taxonomy's new rules replace there (reviewed one by one when
    they were written: dates of visits, a 94-year-old's age, a checkup chain, hospitals)."""
    from discmed.chat import Conversation
    from discmed.data.scrub import scrub_records

    rows = [json.loads(x) for x in (shared_data / "disc-medllm" / "train" / "test_examples.jsonl").read_text(
        encoding="utf-8").splitlines()]
    convs = [Conversation(str(i), "MedDialog", r["conversation"], {}) for i, r in enumerate(rows)]
    kinds = Counter(c["type"] for _, changes in scrub_records(convs) for c in changes)
    # no ward, room, account or profession in these consultations: those rules stay quiet (two
    # colleges are named: 福建中医学院国医堂, a misspelt 川倍医学院)
    assert kinds["bed"] == 0 and kinds["account"] == 0 and kinds["profession"] == 0 and kinds["school"] <= 2
    assert kinds["date"] >= 30 and kinds["hospital"] >= 40
