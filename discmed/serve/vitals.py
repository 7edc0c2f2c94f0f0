"""Vital signs and lab values read as numbers from a patient's message, for red-flag triage.

`read_vitals(text, thresholds)` returns `{concept: [(start, end), …]}` for the vital-sign
concepts of the catalogue (`vital_bp_low`, `vital_spo2_low`, `vital_infant_young`, …): each
span is the number that crossed a threshold, so the safety layer can give it a context like
any other mention ("上周查血钾6.1" is history). Thresholds come from the catalogue's `vitals`
section; heart rate, breathing rate and blood pressure use the age band read from the
message (an infant's age in days, weeks or months, a child's in years), adults' when no age
is given. Text is expected lower-cased and half-width (`safety._normalize`).
"""

from __future__ import annotations

import functools
import re

VITALS = {
    "vital_bp_low", "vital_bp_high", "vital_bp_extreme", "vital_bp_preg", "vital_bp_preg_mild", "vital_spo2_low",
    "vital_hr_high", "vital_hr_extreme", "vital_hr_low", "vital_rr_high", "vital_temp_fever", "vital_temp_fn",
    "vital_temp_high", "vital_temp_very_high", "vital_temp_extreme", "vital_temp_low", "vital_temp_hypothermia",
    "vital_glucose_low", "vital_glucose_high", "vital_glucose_extreme", "vital_infant_young", "vital_age_older",
    "vital_k_high", "vital_k_very_high", "vital_k_low", "vital_k_very_low", "vital_inr_high", "vital_inr_very_high", "vital_anc_low",
    "vital_pain_severe",
}

_CN_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_NUM = r"(\d+(?:\.\d+)?|[零一二两三四五六七八九十百]+)"
_CN2 = r"[一二两三四五六七八九十百]{2,4}"  # a spoken number: 八十, 一百二

_BP = re.compile(r"(?<![0-9.])(\d{2,3}|" + _CN2 + r")[多几]?\s*[/／]\s*(\d{2,3}|" + _CN2 + r")(?![0-9])(\s*mmhg)?")
_BP_CUE = re.compile(r"血压|雪压|bp|高压|低压|mmhg|量了|blood pressure|pressure")
_BP_WORDS = re.compile(r"(?:高压|收缩压)[^0-9，。]{0,4}(\d{2,3})[^0-9。]{0,6}(?:低压|舒张压)[^0-9，。]{0,4}(\d{2,3})"
                       r"|(?:低压|舒张压)[^0-9，。]{0,4}(\d{2,3})[^0-9。]{0,6}(?:高压|收缩压)[^0-9，。]{0,4}(\d{2,3})")
_BP_SINGLE = re.compile(r"(?:血压|雪压)[^0-9，。/]{0,6}(\d{3})(?![0-9/.])|(?:左手|右手)(\d{3})(?![0-9/.])")
_SPO2 = re.compile(r"(血氧(饱和度)?|指脉氧|氧饱和度|spo2|sao2|o2 sat|saturation|sats|oxygen( level| saturation| sat)?"
                   r"|血氧仪|血氧夹|pulse ox|oximeter|oxymeter)[^0-9。，]{0,10}?(\d{2,3}(?![0-9]|\.\d)|" + _CN2 + r")")
_HR = re.compile(r"(心率|心跳|脉搏|脉率|摸[^，。]{0,3}脉|(?<![a-z])hr(?![a-z])|heart rate|pulse|watch (?:says|shows|reads))[^0-9。，]{0,10}?"
                 r"(\d{2,3}(?![0-9]|\.\d)|[一二两三四五六七八九十百]{2,}(?=[几多来]?(下|次|左右|bpm|/分)))")
_RR = re.compile(r"(呼吸|喘气|breathing rate|breaths|(?<![a-z])rr(?![a-z]))[^。]{0,12}?(每分钟|一分钟|/min)?"
                 + _NUM + r"多?(次|下|/min)|(?:数了?|数)[^。]{0,8}(?:一分钟|每分钟)" + _NUM + r"多?(次|下)")
_TEMP = re.compile(r"(?<![0-9.])(?P<v1>\d{2,3}(?:\.\d{1,2})?)\s*(?P<unit>度|℃|°\s*[cf]?|摄氏度|degrees|deg|f\b|c\b)"
                   r"(?!高温|的天|天气|大太阳|的水|水温|室温|气温)"
                   r"|(?P<cue>体温|发烧|发热|烧到|高烧|温度|耳温枪?|腋下|肛温|额温|temp(?:erature)?(?: of| is| was| at|:)?"
                   r"|fever(?: of)?|thermometer(?: has)? (?:read|reads|says|said|showed|shows)(?: a)?)[^0-9。，]{0,6}(?P<v2>\d{2,3}(?:\.\d{1,2})?)(?![0-9])")
# "三十八度六", "四十度五", "三十九度多": a temperature said in words.
_TEMP_WORDS = re.compile(r"([三四]十[一二三四五六七八九]?)度([一二三四五六七八九]|半|多)?")
_TEMP_BODY = re.compile(r"体温|量|腋|肛温|耳温|额温|temp|measured|thermometer")
_GLUCOSE = re.compile(r"(血糖|glucose|sugar|血糖仪|(?<![a-z])(?<!last )(?:bg|bm)(?![a-z])|(?:(?<![a-z])|(?<=gluco))meter (?:says|said|reads?|showed|shows))(?:(?!正常|normal|差了|相差|差距|误差)[^0-9。]){0,12}?"
                      r"(\d{1,3}(?:\.\d{1,2}|点\d|点几)?|[一二三四五六七八九十]{1,3}点[一二三四五六七八九])(?![0-9%]|\.\d|\s*(?:days?|times|x)\b)\s*(mg)?")
_GLUCOSE_WORD = re.compile(r"(血糖|glucose|(?:(?<![a-z])|(?<=gluco))meter|血糖仪)[^。]{0,12}?(?:(?<![a-z])(hi|lo|high|low)(?![a-z])"
                           r"|(显示高|测不出来?|爆表|超出范围|超过量程))")
_POTASSIUM = re.compile(r"(血钾|钾离子|钾|potassium|(?<![a-z])k\+?(?= ?(is|was|of|:|=|\d)))[^0-9。，]{0,6}(\d(?:\.\d{1,2})?)(?![0-9])")
_INR = re.compile(r"(?<![a-z])inr(?:[^0-9。，]{0,20}|[^0-9。.!?]{0,45}(?:says|said|was|is|came back|of|at|:))\s*(\d{1,2}(?:\.\d{1,2})?)(?![0-9])")
_ANC = re.compile(r"(中性粒(细胞)?(计数|绝对值)?|(?<![a-z])anc(?![a-z])|neutrophils?)[^0-9。，]{0,8}(\d+(?:\.\d+)?)")
_PAIN = re.compile(r"(?:疼痛?|痛|pain)[^0-9。，]{0,8}(\d{1,2})\s*(?:分|/\s*10|out of 10)|(?<![0-9/])(\d{1,2})\s*(?:/|out of)\s*10(?![0-9])")
_N = r"(?P<n>\d+|[零一二两三四五六七八九十百]+)"
_KID = r"(?:宝宝|孩子|婴儿|娃娃?|闺女|儿子|女儿|孙子|孙女|外孙女?|[大二三小]宝|崽崽?)"
# An infant's age in days: each form has one number, `n` (none for 新生儿, 满月, 半个月).
_AGE_DAYS = re.compile("|".join(f"(?:{p})" for p in (
    r"(?:出生|出世|生下来|生了)[才正]?第?" + _N + r"[多来几]?[天日]",
    _N.replace("<n>", "<n2>") + r"[多来几]?天大?的?(?:宝宝|新生儿|婴儿|娃|孩子|闺女|儿子)",
    _KID + r"(?:才|刚|刚刚|出生)" + _N.replace("<n>", "<n3>") + r"[多来几]?天",
    # "宝宝七十天" (adjacent, 10 days or more: "孩子两天没拉" is a duration)
    _KID + r"(?P<n4>[1-9]\d|[一二三四五六七八]十[一二三四五六七八九]?)[多来几]?天(?![没不])",
    r"新生儿|满月|出生半个月|半个月大?的(?:宝宝|婴儿|孩子)|(?:宝宝|孩子)(?:才|刚)半个月|newborn|neonat")))
# (a duration is no age: "儿子最近两个月经常眨眼", "孩子这两个月")
_AGE_MONTHS = re.compile(r"(宝宝|孩子|婴儿|娃娃?|闺女|儿子|女儿|孙子|孙女|外孙女?|[大二三小]宝|崽崽?|才|刚满|baby)(?:(?!最近|近|这|过去)[^，。0-9]){0,4}?"
                         + _NUM + r"个(半)?月|" + _NUM + r"个(半)?月(大)?的(宝宝|孩子|婴儿|娃)"
                         r"|(\d+|a|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)[- ]"
                         r"(day|week|month)s?[- ]old|\((?P<en_n>\d{1,2}) ?(?P<en_u>days?|wks?|weeks?|mos?|months?)\)|(?<![0-9])(?P<en_n2>\d{1,2}) ?(?P<en_u2>mos?|wks?)(?![a-z])|(?:出生|出世)[才正]?" + _NUM + r"(?:周|个?星期|个?礼拜)|(\d+|[一二两三四五六七八九])(?:周|个星期)的(宝宝|娃|孩子|婴儿)"
                         + r"|(?:宝宝|婴儿|娃娃?|崽崽?)[才刚满]?(?P<wk>\d+|[一二两三四五六七八九十]+)(?:周|个?星期)(?![前后内岁])")
_EN_NUM = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
           "ten": 10, "eleven": 11, "twelve": 12}
_AGE_YEARS = re.compile(r"(?<![0-9.])(\d{1,3})\s*(多|来)?(岁|周岁)(半)?|(\d{1,2})[- ](?:year|yr)s?[- ]old|(\d{1,2}) ?yo(?![a-z])"
                        r"|(?<![一二两三四五六七八九十])([一二两三四五六七八九十]{1,3})(岁|周岁)(半)?"
                        r"|今年(\d{2})(?![0-9])|([五六七八九])十多?岁|爷爷|奶奶|外公|外婆|姥姥|姥爷|老人|婆婆|公公|老伴|老头|grand(ma|pa|mother|father)|elderly")
_FEVER_CUE = re.compile(r"发烧|发热|体温|烫|高烧|腋下|腋温|肛温|耳温|额温|fever|temperature|thermometer")
_BARE_TEMP = re.compile(r"(?<![0-9.])(3[7-9]\.\d|4[0-2]\.\d)(?![0-9%]|\.\d|\s*(mmol|mg|g|kg|cm|mm|u|iu|ng|pg|μ|ml|l/|x|×))")
# Chronic lung disease or home oxygen, where 88-92% is the target saturation (BTS oxygen guideline).
_COPD = re.compile(r"(平时|平常|大夫说|医生说)[^，。]{0,12}8[5-9]到9[0-4]就行|慢阻肺|copd|肺气肿|慢支|慢性支气管炎|二氧化碳潴留|家庭氧疗|制氧机|吸着氧|在家吸氧|home oxygen|oxygen concentrator|emphysema")
_ALTITUDE = re.compile(r"高原|西藏|拉萨|青海|海拔|雪山|altitude|lhasa|tibet|plateau|high camp|\b[3-6][,.]?\d{3} ?(?:m|metres|meters|米)\b")
_EXERCISE = re.compile(r"跑|运动|健身|爬山|爬楼|锻炼|run|exercis|workout|gym")
_PREG_BP = re.compile(r"孕([2-4]\d|[二三四]十)|怀孕([2-4]\d周|[五六七八九]个?月|\d+个月)|孕妇|孕晚期|(?<![0-9])(2\d|3\d|4[0-2])周"
                      r"|产后|生完|月子|剖(腹|宫)产|顺产|pregnan|postpartum|gave birth|weeks along")


def cn_number(s: str) -> float:
    """'38.5' -> 38.5; '七十' -> 70; '二十五' -> 25; '两' -> 2 (enough for ages and rates)."""
    try:
        return float(s)
    except ValueError:
        pass
    total, cur = 0, 0
    for ch in s:
        if ch in _CN_DIGITS:
            cur = _CN_DIGITS[ch]
        elif ch == "十":
            total += (cur or 1) * 10
            cur = 0
        elif ch == "百":
            total += (cur or 1) * 100
            cur = 0
    return float(total + cur)


@functools.lru_cache(maxsize=16)
def _infant_days(text: str) -> tuple[tuple[float, tuple[int, int]], ...]:
    """Every infant age in the message, in days, with its span (read once per message: the
    age bands and the infant rules both ask)."""
    found = []
    for m in _AGE_DAYS.finditer(text):
        g, d = m.group(0), m.groupdict()
        num = d["n"] or d["n2"] or d["n3"] or d["n4"]
        found.append((cn_number(num) if num else 30 if g == "满月" else 14, m.span()))
    for m in _AGE_MONTHS.finditer(text):
        g = m.groups()
        if g[1]:
            days = cn_number(g[1]) * 30 + (15 if g[2] else 0)
        elif g[3]:
            days = cn_number(g[3]) * 30 + (15 if g[4] else 0)
        elif g[7]:
            n = _EN_NUM.get(g[7]) or int(g[7])
            days = n * {"day": 1, "week": 7, "month": 30}[g[8]]
        elif m.group("en_n") or m.group("en_n2"):  # "baby (3 weeks)", "my 4mo"
            unit = (m.group("en_u") or m.group("en_u2"))[0]
            days = int(m.group("en_n") or m.group("en_n2")) * {"d": 1, "w": 7, "m": 30}[unit]
        elif g[13]:
            days = cn_number(g[13]) * 7
        elif m.group("wk"):  # "宝宝5周"
            days = cn_number(m.group("wk")) * 7
        else:
            days = cn_number(g[14]) * 7
        if 0 < days and not re.search(r"孕|怀|停经", text[max(0, m.start() - 4):m.start()]):
            found.append((days, m.span()))
    return tuple(found)


def _ages(text: str) -> tuple[list[tuple[float, tuple[int, int]]], float | None]:
    """(ages in years with their spans, the youngest age in years or None)."""
    ages = [(d / 365, span) for d, span in _infant_days(text)]
    for m in _AGE_YEARS.finditer(text):
        g = m.groups()
        if g[0]:
            age = float(g[0]) + (0.5 if g[3] else 0)
        elif g[4] or g[5]:
            age = float(g[4] or g[5])
        elif g[6]:
            age = cn_number(g[6]) + (0.5 if g[8] else 0)
        elif g[9]:
            age = float(g[9])
        elif g[10]:
            age = cn_number(g[10]) * 10
        else:
            age = 75.0  # grandparents, "老人"
        if 0 < age < 120:
            ages.append((age, m.span()))
    return ages, (min(a for a, _ in ages) if ages else None)


def _band(age: float | None) -> str:
    if age is None or age >= 13:
        return "adult"
    return "infant" if age < 1 else "child" if age < 6 else "school"


_NURSLING = re.compile(r"吃奶|喂奶|母乳|奶粉|奶瓶|尿布|尿不湿|breast-?fe|bottle-?fe|formula|nappy|nappies|diaper")
_SPO2_AGAIN = re.compile(r"(?<![0-9.])(9[4-9]|100)(?![0-9.])")
_GLUCOSE_AGAIN = re.compile(r"(?<![0-9.])([4-9]\.\d|1[0-5]\.\d)(?![0-9])")
# A resting rate (50-119) said as a heart rate, or as where it came down to: a bare number after a re-measure
# cue may be a blood pressure's ("再量血压130/85" must not set a heart rate of 150 aside).
_HR_AGAIN = re.compile(r"(?:心跳|心率|脉搏|脉|hr|pulse|heart rate|降到|降至|回落到|恢复到|回到|came (?:back )?down to|dropped back to|"
                       r"settled (?:back )?to)[^0-9，。,.]{0,6}([5-9]\d|1[01]\d)(?![0-9.])")
_BP_AGAIN = re.compile(r"(?<![0-9.])(1[0-3]\d|9\d)(?:\s*[/／]\s*|\s+)([5-8]\d)(?![0-9])")  # 142/88 or "142 88"


def _remeasured_normal(text: str, remeasure: re.Pattern | None) -> dict[str, int]:
    """{quantity: position} for readings measured again and found normal: after a
    re-measure cue, a normal value of the same kind. An abnormal reading of that quantity
    before the position is set aside (a fingertip with nail varnish, unwashed hands)."""
    if remeasure is None:
        return {}
    cue = remeasure.search(text)
    if cue is None:
        return {}
    rest, found = text[cue.start():], {}
    for name, again in (("spo2", _SPO2_AGAIN), ("glucose", _GLUCOSE_AGAIN), ("bp", _BP_AGAIN), ("hr", _HR_AGAIN)):
        last = None
        for last in again.finditer(rest):  # noqa: B007 - the loop keeps the last one
            pass
        if last is not None:
            found[name] = cue.start() + last.start()
    return found


def read_vitals(text: str, t: dict[str, float], remeasure: re.Pattern | None = None) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    normal_again = _remeasured_normal(text, remeasure)

    def add(name: str, m: re.Match | tuple[int, int]) -> None:
        span = m if isinstance(m, tuple) else m.span()
        quantity = "spo2" if name == "vital_spo2_low" else "glucose" if name.startswith("vital_glucose") else \
            "bp" if name.startswith("vital_bp") else "hr" if name.startswith("vital_hr") else ""
        if quantity in normal_again and span[1] <= normal_again[quantity]:
            return  # measured again and normal
        out.setdefault(name, []).append(span)

    ages, youngest = _ages(text)
    band = _band(youngest)
    preg = _PREG_BP.search(text)

    def bp(m: re.Match, sys_: float, dia: float) -> None:
        if not 40 <= sys_ <= 300 or not 20 <= dia <= 200 or dia >= sys_:
            return
        if sys_ < t.get("bp_low_systolic", 90):
            add("vital_bp_low", m)
        child = band != "adult"
        high_s = t.get("bp_high_child_systolic", 140) if child else t.get("bp_high_systolic", 180)
        high_d = t.get("bp_high_child_diastolic", 90) if child else t.get("bp_high_diastolic", 120)
        if sys_ >= high_s or dia >= high_d:
            add("vital_bp_high", m)
        if sys_ >= t.get("bp_extreme_systolic", 220) or dia >= t.get("bp_extreme_diastolic", 130):
            add("vital_bp_extreme", m)
        if preg:
            if sys_ >= t.get("bp_preg_systolic", 160) or dia >= t.get("bp_preg_diastolic", 110):
                add("vital_bp_preg", m)
            if sys_ >= t.get("bp_preg_mild_systolic", 140) or dia >= t.get("bp_preg_mild_diastolic", 90):
                add("vital_bp_preg_mild", m)

    if "/" in text or "／" in text:
        for m in _BP.finditer(text):
            # A slash pair is a blood pressure when a cue names it ("血压", "BP", mmHg);
            # "1/2" or "3/4" never qualify.
            if m.group(3) or _BP_CUE.search(text[max(0, m.start() - 24):m.start()]):  # "BP machine is reading 212/124"
                bp(m, cn_number(m.group(1)), cn_number(m.group(2)))
    if "压" in text:
        for m in _BP_WORDS.finditer(text):
            if m.group(1):
                bp(m, float(m.group(1)), float(m.group(2)))
            else:
                bp(m, float(m.group(4)), float(m.group(3)))
        for m in _BP_SINGLE.finditer(text):
            s = float(m.group(1) or m.group(2))
            if t.get("bp_high_systolic", 180) <= s <= 300:
                add("vital_bp_high", m)
                if s >= t.get("bp_extreme_systolic", 220):
                    add("vital_bp_extreme", m)
    altitude = _ALTITUDE.search(text)
    copd = _COPD.search(text)
    for m in _SPO2.finditer(text):
        v = cn_number(m.group(4))
        if altitude and v >= t.get("spo2_low_altitude", 85):
            continue  # 85-90 is common at altitude (a low figure there is still caught below 85)
        if copd and v >= t.get("spo2_low_copd", 88):
            continue  # COPD or home oxygen: the target is 88-92 (BTS); a figure below 88 is still low
        if 50 <= v <= t.get("spo2_low", 91):
            add("vital_spo2_low", m)
    hr_high = {"infant": t.get("hr_high_infant", 180), "child": t.get("hr_high_child", 160),
               "school": t.get("hr_high_school", 140)}.get(band, t.get("hr_high", 150))
    hr_low = {"infant": t.get("hr_low_infant", 100), "child": t.get("hr_low_child", 60)}.get(band, t.get("hr_low", 40))
    tachy = {"infant": 160, "child": 140, "school": 120}.get(band, 120)  # with fever: sepsis
    for m in _HR.finditer(text):
        v = cn_number(m.group(2))
        clause = text[max(0, m.start() - 12):m.end()]
        if "胎心" in clause or "胎儿" in clause or "fetal" in clause:
            continue  # a fetal heart rate of 150 is normal
        if tachy <= v <= 300:
            add("vital_hr_high", m)
        if (hr_high <= v <= 300 and not _EXERCISE.search(clause)) or 10 <= v <= hr_low:
            add("vital_hr_extreme", m)
        if 10 <= v <= max(hr_low, 50):
            add("vital_hr_low", m)
    # A breathing rate counted in a message about a feeding baby whose age is not given is the
    # baby's: 40 a minute is normal under 1 year (NICE NG143: RR > 60), not an adult's 30.
    rates = list(_RR.finditer(text))
    rr_band = "infant" if rates and youngest is None and _NURSLING.search(text) else band
    rr_high = {"infant": t.get("rr_high_infant", 60), "child": t.get("rr_high_child", 40),
               "school": t.get("rr_high_school", 30)}.get(rr_band, t.get("rr_high_adult", 30))
    for m in rates:
        v = cn_number(m.group(3) or m.group(5))
        if rr_high <= v <= 150:
            add("vital_rr_high", m)

    def temperature(m: re.Match | tuple[int, int], v: float, body: bool) -> None:
        if v > 90:  # Fahrenheit
            v = (v - 32) * 5 / 9
        if not 30 <= v <= 44:
            return
        for key, name, default in (("temp_fever", "vital_temp_fever", 37.8), ("temp_fn", "vital_temp_fn", 38.0),
                                   ("temp_high", "vital_temp_high", 39.0), ("temp_very_high", "vital_temp_very_high", 40.0),
                                   ("temp_extreme", "vital_temp_extreme", 41.0)):
            if v >= t.get(key, default):
                add(name, m)
        # A low reading must be a body temperature (not "35度大太阳"): a cue or a decimal.
        if body and v < t.get("temp_low", 36.0):
            add("vital_temp_low", m)
        if body and v < t.get("temp_hypothermia", 35.0):
            add("vital_temp_hypothermia", m)

    for m in _TEMP.finditer(text):
        raw, unit, cue = m.group("v1") or m.group("v2"), (m.group("unit") or "").strip(), m.group("cue") or ""
        v = float(raw)
        if v > 90 and not (unit.endswith("f") or unit == "degrees" or cue.startswith(("temp", "fever"))):
            continue  # a three-digit number is a temperature only in Fahrenheit
        body = bool(cue) or "." in raw or bool(_TEMP_BODY.search(text[max(0, m.start() - 8):m.start()]))
        temperature(m, v, body)
    if "度" in text:
        for m in _TEMP_WORDS.finditer(text):
            tail = m.group(2)
            v = cn_number(m.group(1)) + (0.5 if tail in ("半", "多") else cn_number(tail) / 10 if tail else 0)
            if v >= 37:
                temperature(m, v, True)
    if _FEVER_CUE.search(text):
        # A bare decimal in the fever range ("腋下量了38.1") when the message talks of fever.
        for m in _BARE_TEMP.finditer(text):
            temperature(m, float(m.group(1)), True)
    if "36以下" in text or "体温不升" in text:
        add("vital_temp_low", re.search(r"36以下|体温不升", text))
    for m in _GLUCOSE.finditer(text):
        raw = m.group(2)
        if "点" in raw and not raw[0].isdigit():
            a, b = raw.split("点")
            v = cn_number(a) + cn_number(b) / 10
        else:
            v = float(raw.replace("点几", ".5").replace("点", "."))
        if m.group(3) or v > 60:
            v = v / 18  # mg/dL
        if 0.5 <= v <= t.get("glucose_low", 3.0):
            add("vital_glucose_low", m)
        if v >= t.get("glucose_high", 16.7):
            add("vital_glucose_high", m)
        if v >= t.get("glucose_extreme", 30.0):
            add("vital_glucose_extreme", m)
    for m in _GLUCOSE_WORD.finditer(text):
        if m.group(2) in ("hi", "high") or m.group(3):
            add("vital_glucose_extreme", m)
            add("vital_glucose_high", m)
        else:
            add("vital_glucose_low", m)
    for m in _POTASSIUM.finditer(text):
        v = float(m.group(3))
        if t.get("potassium_high", 6.0) <= v <= 10:
            add("vital_k_high", m)
        if t.get("potassium_very_high", 6.5) <= v <= 10:
            add("vital_k_very_high", m)
        if 1.0 <= v < t.get("potassium_low", 3.0):
            add("vital_k_low", m)
        if 1.0 <= v <= t.get("potassium_very_low", 2.5):
            add("vital_k_very_low", m)
    for m in _INR.finditer(text):
        v = float(m.group(1))
        if v >= t.get("inr_high", 5.0):
            add("vital_inr_high", m)
        if v >= t.get("inr_very_high", 10.0):
            add("vital_inr_very_high", m)
    for m in _ANC.finditer(text):
        v = float(m.group(4))
        v = v / 1000 if v >= 50 else v  # cells/µL
        if v < t.get("anc_low", 0.5):
            add("vital_anc_low", m)
    for m in _PAIN.finditer(text):
        v = int(m.group(1) or m.group(2))
        if t.get("pain_severe", 8) <= v <= 10:
            add("vital_pain_severe", m)
    for days, span in _infant_days(text):
        if days < t.get("infant_days", 90):
            add("vital_infant_young", span)
    for age, span in ages:
        if age >= t.get("older_age", 65):
            add("vital_age_older", span)
    return out
