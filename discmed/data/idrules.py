"""The validated rules of de-identification: patterns, validators and the NER's windows and
judgement, which `discmed.data.deid` runs as Presidio recognizers (and `discmed.data.scrub`, the file
step, reads for its placeholders).

The rules (regular expressions plus validators) take the structured identifiers:
phone numbers, resident ID numbers in any grouping (checksum- and date-validated), bank
cards (Luhn), other 15+ digit runs, emails, URLs, WeChat and QQ ids, record numbers after
their cue words (病历号, 住院号, 门诊号, 医保卡号, 就诊卡号 …), licence plates, street
addresses through building, unit and room, hospitals with a proper name or a common
abbreviation (北医三院, 省人医, 华西), and names next to a title or cue word. A learned
Chinese NER (`discmed.data.ner`, Baidu's LAC) tags people, organisations and places
in the short windows where they can occur (a clause with a family word, a title, a
greeting, a nickname shape, a hospital word, or a message's opening words), so names after
家人 words, compound surnames, 老X/小X and doubled-character nicknames go too.

What the tagger calls a person is taken as a name only if it looks like one (a surname and
one or two characters, or a nickname shape), carries no chemistry character (米氮平), and is
not a word of the language (jieba's 349k-word dictionary: 窦道, 安生, 青光眼) unless the text
says it is a name (a family word, 叫, a title, the sex or age after it) or the tagger is sure
(its CRF marginals, `ner.Tagger`). A bare "医院" after a generic place (因地区和医院而异) names
no hospital; an organisation is a hospital only when its name ends like one.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from pathlib import Path

from discmed.data.ner import default_tagger

PLACEHOLDER = {
    "email": "[邮箱]", "url": "[网址]", "id_card": "[身份证号]", "bank_card": "[银行卡号]",
    "phone": "[电话]", "long_number": "[号码]", "wechat": "[微信号]", "qq": "[QQ号]",
    "name": "[姓名]", "hospital": "[医院]", "address": "[地址]", "record_number": "[病历号]", "plate": "[车牌号]",
    "org": "[机构]",
    # issue 24's taxonomy (discmed.data.deid)
    "date": "[日期]", "age": "[年龄]", "bed": "[床号]", "school": "[学校]", "account": "[账号]",
    "profession": "[职业]", "code": "[编号]", "document": "[证件号]", "ip": "[IP地址]",
}

# Common surnames. Characters that are far more often ordinary words right before a title
# (于 "on", 高 in 高烧, 白 in 白细胞, 方 in 方面, 史 in 病史, 任 in 任何 …) are left out: a
# missed rare surname costs less than mangling medical text.
SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜"
            "苏魏吕沈姚卢姜崔钟谭陆汪范金廖贾夏韦邹熊孟秦邱江尹薛闫雷侯龙陶黎贺顾毛郝龚邵"
            "覃武戴莫欧岳葛")
TITLES = "医生|大夫|主任|教授|医师|护士长|护士|院长|老师|博士|先生|女士|小姐|阿姨|叔叔|大爷|奶奶|爷爷"
# Characters that end a name: function words, sex, numerals, and punctuation.
NOT_NAME = "上去找了的是在给让叫请问看和跟说到向被把就也都还又再要会能可男女岁今年月日因自诉述无有没不两个位些，。、：；！？ "
HAN = "\u4e00-\u9fff"
_G = f"(?:[{HAN}](?<![{NOT_NAME}]))"  # one given-name character

_DIGITS_EDGE_L = r"(?<![0-9A-Za-z.])"
_DIGITS_EDGE_R = r"(?![0-9A-Za-z])"

RE_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
RE_URL = re.compile(r"(?:https?://|www\.)[^\s，。；！？、）)\]】\u4e00-\u9fff]+"
                    r"|\b[a-z0-9-]+\.(?:com|cn|net|org)(?:/[^\s，。；！？\u4e00-\u9fff]*)?", re.I)
# 18-digit ID, possibly written with spaces between groups (6-8-4).
RE_ID = re.compile(_DIGITS_EDGE_L + r"(\d{6})[ ]?(\d{8})[ ]?(\d{3}[0-9Xx])" + _DIGITS_EDGE_R)
RE_CARD = re.compile(_DIGITS_EDGE_L + r"\d{4}(?:[ -]?\d{4}){2,3}(?:[ -]?\d{1,3})?" + _DIGITS_EDGE_R)
RE_MOBILE = re.compile(r"(?<![0-9A-Za-z.])(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}" + _DIGITS_EDGE_R)
RE_LANDLINE = re.compile(_DIGITS_EDGE_L + r"(?:\(0\d{2,3}\)|（0\d{2,3}）|0\d{2,3}[ -]?)\d{7,8}(?:-\d{1,4})?"
                         + _DIGITS_EDGE_R + r"|" + _DIGITS_EDGE_L + r"(?:400|0\d{2,3})[ -]\d{3,4}[ -]\d{3,4}" + _DIGITS_EDGE_R)
# After a cue word, take the number even when a validator would not (a mistyped ID is still an ID).
RE_ID_CUE = re.compile(r"((?:身份证(?:号码|号)?|(?i:national id|id card|citizen id|resident id)(?: number| no\.?)?)\s*(?:是|为|：|:)?\s*)(\d{15}|\d{17}[\dXx]|\d{3,6}(?:[ -]\d{1,8}){2,5}[Xx]?)"
                       + _DIGITS_EDGE_R)
RE_PHONE_CUE = re.compile(r"((?:座机|电话|手机|联系方式|号码|打)\s*(?:号码|号)?\s*(?:是|为|：|:)?\s*)(\d{7,8})" + _DIGITS_EDGE_R)
RE_LONG = re.compile(_DIGITS_EDGE_L + r"\d{15,}" + _DIGITS_EDGE_R)
RE_WECHAT = re.compile(r"(微信号?|vx|VX|Vx|v信|V信|wx|WX|weixin|(?i:wechat))(\s*(?:号|号码|id|ID|,? ID)?\s*(?:是|为|：|:)?\s*)"
                       r"([A-Za-z][-_A-Za-z0-9]{4,19})")
RE_QQ = re.compile(r"(QQ|qq|扣扣|企鹅)(\s*(?:号|号码|number|no\.?)?\s*(?:是|为|：|:|is)?\s*)([1-9]\d{4,11})" + _DIGITS_EDGE_R)
# Names: surname + 0-2 given characters right before a title; or after a cue word.
# "谢谢医生" / "感谢医生" thank the doctor; 谢 is a surname only when not part of that.
RE_NAME_TITLE = re.compile(f"(?<![一二两三四五六七八九十几每上下本这那前后个疗])(?!谢谢|谢(?:医生|大夫)|(?<=[谢感])谢)([{SURNAMES}]{_G}{{0,2}}?)(?={TITLES})")
SURNAMES_WIDE = SURNAMES + "于高白方史任叶程苏丁石付邱段万钱严孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁翟殷詹申耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩佘池查麻苑迟邝"
# 小X / 老X with X a surname, before a word that follows a name ("班上的小向也得了", "我是小方，").
RE_NICKNAME = re.compile(f"(?<![0-9个两几半多一二三四五六七八九十大])[小老](?![时于和年人儿便孩伙子姨舅叔婆公板师头])[{SURNAMES_WIDE}]"
                         f"(?=也|说|的|在|得|今|是|住|吃|做|查|刚|收|最近|昨|前|他|她|[，,。！？：:\\s]|$)")
RE_NAME_CUE = re.compile(f"(患者|病人|患儿|姓名|名字叫|名字是|我叫|本人叫|孩子叫|宝宝叫|儿子叫|女儿叫|户名|收件人|收货人|联系人|家属|持卡人)"
                         f"([：:，,\\s]*)([{SURNAMES_WIDE}](?:某某|某|{_G}{{1,2}}))")
RELATIONS = ("婆婆|公公|老公|老婆|爱人|媳妇|丈夫|妻子|太太|老爸|老妈|爸爸|妈妈|我爸|我妈|爷爷|奶奶|外公|外婆|姥姥|姥爷|"
             "大伯|伯伯|叔叔|阿姨|小姨|大姨|姨妈|舅舅|老舅|姑姑|姑妈|哥哥|姐姐|弟弟|妹妹|表哥|表姐|表弟|表妹|堂哥|堂姐|堂弟|堂妹|"
             "儿子|女儿|闺女|孩子|宝宝|侄子|侄女|外甥|外甥女|孙子|孙女|老大|老二|老三|朋友|同事|邻居|同学|老板|闺蜜|领导|室友")
# After a relation word, a nickname (小X / 老X / 阿X), a doubled name (亮亮) or a compound surname.
RE_NAME_RELATION = re.compile(f"(?:{RELATIONS})(?:叫|是)?((?:[小老阿][{SURNAMES}于高白方史任叶程苏丁沈石付邱段万钱严孔向汤])(?![{HAN}]?(?:师|板|家|人|年|大|二|三|公|婆|伴))"
                              f"|([{HAN}])\\2(?!了)|(?:欧阳|司马|诸葛|上官|皇甫|慕容|令狐|夏侯|尉迟|端木|公孙)[{HAN}]{{1,2}}?(?=[^{HAN}]|得|在|说|的|也|今|是|住|吃|做|查|刚|[{HAN}]{{0,1}}[0-9]))")
RE_COMPOUND_NAME = re.compile(f"(?:欧阳|司马|诸葛|上官|皇甫|慕容|令狐|夏侯|尉迟|端木|公孙)[{HAN}](?:[{HAN}](?=[^{HAN}]|得|在|说|的|也|今|是|住|吃|做|查|刚|收))?")
RE_NAME_SELF = re.compile(f"(?:我是|替|帮|叫)([{SURNAMES}]{_G}{{1,2}})(?=的|，|,|。)")
RE_NAME_COLON = re.compile(f"(主治医生|主治医师|医生|大夫|医师|联系人)([：:]\\s*)([{SURNAMES}](?:某某|某|{_G}{{1,2}}))")
HOSPITAL_TAIL = "医院|卫生院|卫生服务中心|健康服务中心|健康服务站|卫生服务站|社区门诊|社康中心|诊所|医疗中心|保健院|门诊部|医务所|医务中心|诊疗所|医学检验实验室|医学检验所"
RE_HOSPITAL = re.compile(f"([{HAN}A-Za-z0-9]{{2,16}}?)({HOSPITAL_TAIL})")
# "医院" follows plain words far too often (很多医院, 费用因医院而异): a named hospital shows a
# place, an institution word, a number, or a well-known proper name.
HOSPITAL_MARK = re.compile(r"[省市县区镇州]|人民|中心|附属|第[一二三四五六七八九十\d]|大学|医科|学院|中医|中西医|妇幼|妇儿|儿童|"
                           r"肿瘤|军区|解放军|部队|总|市立|省立|协和|同济|湘雅|华西|齐鲁|友谊|积水潭|天坛|瑞金|华山|仁济|"
                           r"西京|宣武|安贞|鼓楼|中山|长庚|和睦家|\d|"
                           # a city's name opens a hospital's (北京妇产医院, 成都妇女儿童中心医院)
                           r"北京|上海|天津|重庆|广州|深圳|成都|杭州|武汉|南京|西安|长沙|郑州|济南|青岛|沈阳|大连|哈尔滨|"
                           r"长春|石家庄|太原|合肥|南昌|福州|厦门|南宁|昆明|贵阳|兰州|西宁|银川|乌鲁木齐|呼和浩特|拉萨|海口|"
                           r"三亚|苏州|无锡|宁波|温州|东莞|佛山|珠海|汕头|泉州|烟台|徐州|常州|香港|澳门|台北")
# Words that cannot start a hospital's proper name: we cut the candidate after the last one.
HOSPITAL_BREAK = re.compile(r".*(?:在|到|去|于|的|是|从|我|你|他|她|您|们|了|过|个|这|那|跟|或|找|看|住|转|回|进|为|该|说|某|请|往|议|约|有|子|及|因|至|按|依|据|随|由|向|可以|联系|决定|考虑|选择|一下|一些|县里|市里|省里|咗|嘅)")
# Words a generic mention of hospitals opens with, a generic place (地区, 城市, 县级: "费用因地区和医院
# 而异", "大城市医院和县级医院" name no hospital) joined by 和/与 included.
GENERIC_PREFIX = re.compile(r"^(?:[和与及、]?(?:一般|当地|本地|附近|周边|大型|正规|综合|专业|公立|私立|较大的?|大一点的?|"
                            r"地区|城市|市区|郊区|山区|农村|乡村|乡镇|县城|县级|市级|省级|区级|本市|本省|本县|外省|外市|"
                            r"外地|各地|各省|各市|全省|全市|全国|国内|国外|省内|省外|市内|市外|大城市|小城市))+")
GENERIC_HOSPITAL = {"当地", "本地", "附近", "大", "小", "正规", "专科", "三甲", "二甲", "综合", "上级", "下级", "县级",
                    "市级", "省级", "公立", "私立", "民营", "其他", "别的", "一家", "各大", "好", "好的", "大型",
                    "基层", "社区", "乡镇", "中医", "西医", "儿童", "妇幼", "肿瘤", "精神病", "口腔", "眼科", "皮肤病",
                    "专业", "正规的", "大一点的", "更好的", "同一家", "多家", "几家", "两家", "人民", "男科", "不孕不育",
                    "传染病", "县城", "地区", "部队", "城里", "胸科", "骨科", "整形", "美容", "宠物", "动物", "兽", "县", "市", "省", "镇"}
ADMIN = f"(?:[{HAN}]{{2,7}}?(?:省|自治区|市|自治州|州|盟|区|县|旗|镇|乡|街道))"
RE_ADDRESS = re.compile(
    f"(?:{ADMIN}){{0,4}}[{HAN}A-Za-z0-9]{{1,10}}?(?:路|街|大道|大街|巷|胡同|弄)"
    r"\d+(?:-\d+)?号(?:院)?(?:\d+(?:号楼|栋|幢|座))?(?:\d+单元)?(?:\d+(?:室|号|层))?"
    f"|(?:{ADMIN}){{0,4}}[{HAN}A-Za-z0-9]{{2,10}}?(?:小区|花园|公寓|新村|家园|社区)"
    r"\d+(?:号楼|栋|幢|座)(?:\d+单元)?(?:\d+(?:室|号))?"
    f"|(?:{ADMIN}){{1,4}}[{HAN}]{{1,6}}?村\\d*(?:组|号)")
ADDRESS_BREAK = re.compile(r".*(?:往|送至|转至|来自|住在|住址是|住址：|住址:|地址是|地址：|地址:|家在|家住|位于|在|住|到|去|从|是|我|的)")

# Record numbers after their cue words: any code with a digit in it (Z12345678, 2023001234).
RE_RECORD = re.compile(r"((?:病历|病案|住院|门诊|医保卡?|就诊卡?|社保卡?|检查|登记|挂号|条码|流水|患者\s*ID|病人\s*ID|ID)\s*(?:号码|号|卡号)?"
                       r"\s*(?:是|为|：|:)?\s*)([A-Za-z]{0,3}\d[\dA-Za-z-]{3,20})" + _DIGITS_EDGE_R)
RE_RECORD_GATE = re.compile(r"号|ID|id|卡")
# Mainland licence plates: province, letter, optional separator, 5 (6 for new-energy) characters.
RE_PLATE = re.compile(r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-HJ-NP-Z][·•・.\- ]?"
                      r"[A-HJ-NP-Z0-9]{5,6}(?![0-9A-Za-z])")
# An ID or card number in any grouping (4-4-4-4-2, 6-8-4, 3-3-4-4-4 …): validated after
# the separators are removed.
RE_GROUPED = re.compile(_DIGITS_EDGE_L + r"\d(?:[ -]?\d){13,20}(?:[ -]?[Xx])?" + _DIGITS_EDGE_R)
# An address: an anchor (…路88号, 3栋, 2单元, 312号楼, 村3组) grown left over the place
# name and right through building, unit and room.
RE_ADDR_ANCHOR = re.compile(r"(?:路|街|大道|大街|巷|胡同|弄|道)\d+(?:-\d+)?号|\d+(?:号楼|栋|幢|座|单元)|村\d+组")
RE_ADDR_LEFT = re.compile(f"[{HAN}A-Za-z0-9]{{1,24}}$")
RE_ADDR_RIGHT = re.compile(r"^(?:(?:\d+|[A-Za-z]\d*)(?:号楼|栋|幢|座|单元|室|号|层|楼|户|组)?|号院|院)*")
# Hospital abbreviations people actually write: numbered hospitals (北医三院, 湘雅二院,
# 省人医, 苏大附一院) and well-known short names. Generic words (医院, 当地医院) are not here.
RE_HOSPITAL_ABBR = re.compile(
    f"(?:[{HAN}]{{1,4}}?|[省市县区])(?:人医|妇幼|[一二三四五六七八九]院|附[一二三]院?|[一二三]附院|附院)(?![{HAN}]{{0,1}}(?:士|长|子))"
    r"|(?:北京|上海|武汉|华科|川大)?(?:协和|华西|湘雅|齐鲁|同济|西京|瑞金|华山|仁济|长海|长征|天坛|宣武|安贞|积水潭|阜外|鼓楼|"
    r"邵逸夫|浙一|浙二|儿研所|东方肝胆|同仁(?!堂)|荣总|北荣|中荣|高荣|三总|马偕|长庚|万芳|亚东|慈济|彰基|美中宜和|新桥|大坪|中南医院|西南医院|爱尔眼科|美年大健康|和睦家|(?<!\d)301(?:医院)?(?!\d)|北医)(?:医院)?")


URL_CUES = ("http", "www", ".com", ".cn", ".net", ".org")
WECHAT_CUES = ("微信", "vx", "v信", "wx", "weixin", "wechat")
RE_DIGIT_GATE = re.compile(r"\d{5}|\d{3}[ -]\d{3}")
RE_ADDRESS_GATE = re.compile(r"[号栋幢座组]")
RE_HOSPITAL_GATE = re.compile(HOSPITAL_TAIL.replace("卫生服务中心", "中心"))


def id_checksum_ok(number: str) -> bool:
    """GB 11643-1999 check digit and a plausible birth date."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(d) * w for d, w in zip(number[:17], weights, strict=True)) % 11]
    year, month, day = int(number[6:10]), int(number[10:12]), int(number[12:14])
    return number[17].upper() == check and 1900 <= year <= 2100 and 1 <= month <= 12 and 1 <= day <= 31


def luhn_ok(number: str) -> bool:
    digits = [int(d) for d in number]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _hospital(text: str) -> list[tuple[int, int, str, str]]:
    spans = []
    for m in RE_HOSPITAL.finditer(text):
        name = m.group(1)
        cut = HOSPITAL_BREAK.match(name)
        if cut:
            name = name[cut.end():]
        if name[:1] in ("和", "与") and HOSPITAL_MARK.search(name[1:]):
            name = name[1:]  # "同民医院和厦门市第一医院": the 和 joins two names (协和 is an abbreviation, above)
        core = GENERIC_PREFIX.sub("", name)
        if len(core) < 2 or core in GENERIC_HOSPITAL or (core.endswith("科") and len(core) <= 3):
            continue
        if m.group(2) == "医院" and not HOSPITAL_MARK.search(core):
            continue
        spans.append((m.end(1) - len(name), m.end(), "hospital", "rule:hospital"))
    return spans


def _address(text: str) -> list[tuple[int, int, str, str]]:
    spans = []
    for m in RE_ADDRESS.finditer(text):
        cut = ADDRESS_BREAK.match(m.group(0))
        a = m.start() + (cut.end() if cut else 0)
        if m.end() - a >= 4:
            spans.append((a, m.end(), "address", "rule:address"))
    return spans


# -- NER: where to look, and what to keep --------------------------------------------------

# A clause is tagged when something in it says a name or an institution can be there.
RE_NER_GATE = re.compile(
    "婆婆|公公|老公|老婆|爱人|媳妇|丈夫|妻子|先生|太太|爸|妈|爷|奶|姥|外公|外婆|叔|姨|舅|姑|伯|哥|姐|弟|妹|儿子|女儿|闺女|孩子|宝宝|"
    "侄|甥|孙|朋友|同事|邻居|同学|老板|闺蜜|领导|老乡|家属|患者|病人|患儿|本人|"
    "叫|姓|名字|我是|是我|收件|收货|联系|找|问问|转告|户名|"
    "医生|大夫|主任|教授|医师|护士|老师|女士|小姐|阿姨|院长|专家|宝妈|您好|你好|谢谢|"
    "医院|院|诊所|中心|卫生|保健|门诊|住院|就诊|转院|看的|看过|查的|做的|"
    f"[小老阿][{HAN}]|([{HAN}])\\1|欧阳|司马|诸葛|上官|皇甫|东方|慕容|令狐|夏侯|尉迟|端木|公孙")
# Anything that could hold a name: a surname character, a nickname prefix, a doubled character.
RE_NAME_CANDIDATE = re.compile(f"[{SURNAMES}于高白方史任叶程苏丁沈石付邱段万钱严孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝小老阿]|([{HAN}])\\1")
RE_CLAUSE = re.compile(r"[^，,。！？!?；;：:\n（）()、\s]+")
# Medical words that LAC may take for a name or a place: eponymous and place-named diseases.
RE_MEDICAL_NAMES = re.compile(
    "桥本|阿尔茨海默|帕金森|克罗恩|川崎|格林巴利|吉兰巴雷|唐氏|布鲁氏|马凡|马方|海姆立克|霍奇金|亨廷顿|雷诺|库欣|艾迪生|白塞|"
    "梅尼埃|特纳|贝尔|巴特|斯蒂尔|威尔逊|香港脚|德国麻疹|日本脑炎|西尼罗|中东呼吸|埃博拉|马尔堡|寨卡|拉沙|新疆出血热|"
    "优甲乐|优思明|达英|妈富隆|拜阿司匹林|泰诺|美林|芬必得|诺和|来得时|格华止|波立维|立普妥|可定|倍他乐克|络活喜|拜新同|"
    "开瑞坦|顺尔宁|思密达|妈咪爱|金双歧|吗丁啉|斯达舒|达喜|奥希替尼|易瑞沙|格列卫|赫赛汀|英夫利西|修美乐|"
    "内科|外科|妇科|产科|儿科|急诊|眼科|皮肤科|骨科|中医科|康复科|神经内科|消化内科|心内科|呼吸科|肿瘤科|科|"
    # anatomy and findings a name must not run into ("右肺上叶磨玻璃结节", "腺样体肥大")
    "磨玻璃|玻璃结节|结节|腺样体|扁桃体|甲状腺|乳腺|前列腺|淋巴|息肉|囊肿|积液|增生|钙化|肥大|肿大|溃疡|糜烂|"
    "上叶|下叶|中叶|肺|肝|肾|胃|肠|脾|胆|胰|脑|心脏|心肌|血管|动脉|静脉|骨折|关节|腰椎|颈椎|胸椎|椎间盘|半月板|韧带|"
    "宫颈|子宫|卵巢|输卵管|附件|盆腔|膀胱|尿道|阴道|睾丸|阴囊|鼻窦|咽|喉|食管|十二指肠|结肠|直肠|肛|腹|胸|腰|"
    "高血压|糖尿病|冠心病|哮喘|肺炎|胃炎|肠炎|肝炎|肾炎|湿疹|痛风|贫血|感冒|发烧|发热|咳嗽|头痛|头晕|"
    "病|症|炎|癌|瘤|综合征|片|胶囊|颗粒|注射液|口服液|丸|散|膏|贴|滴|喷雾|疫苗|试纸|"
    # drug names by their endings (华法林, 氨氯地平, 奥美拉唑 …)
    f"[{HAN}]{{1,4}}(?:西林|法林|匹林|沙星|霉素|洛尔|普利|沙坦|地平|他汀|替尼|单抗|格雷|双胍|拉唑|替丁|昔布|洛芬|沙班|培南|米松|尼松|西汀|必得|"
    # 芬 ends drugs (布洛芬, 他莫昔芬) and given names (桂芬, 淑芬): the names' first characters are kept out
    "胰岛素|维素|(?<![桂淑秀丽美惠凤彩金兰翠玉素月春爱梅琼艳])芬|唑|嗪|酯|肽|铵|钠|钾|钙|锌|铁)|"
    # brands and herbal medicines with a name or a place inside
    "王老吉|云南白药|季德胜|同仁堂|九芝堂|王氏|康王|施慧达|欧姆龙|强生|伍德灯|马应龙|片仔癀|白加黑|金嗓子|汤臣倍健|江中|葵花|三九|"
    "修正|仁和|哈药|白云山|东阿|鱼跃|三诺|雅培|美赞臣|惠氏|飞鹤|达克宁|皮炎平|扶他林|泰诺|百服宁|新康泰克|感康|快克|张仲景|仲景|"
    "陈李济|雷允上|胡庆余堂|连花清瘟|藿香正气|安宫牛黄|牛黄|田七|三七|当归|黄芪|党参|人参|西洋参|枸杞|白术|茯苓|甘草|陈皮|川芎|丹参|"
    "何首乌|杜仲|金银花|连翘|板蓝根|黄连|黄芩|柴胡|白芍|熟地|生地|麦冬|五味子|山药|菊花|决明子|罗汉果|胖大海|鱼腥草|蒲公英|"
    "夏枯草|益母草|艾叶|红花|桃仁|阿胶|鹿茸|冬虫夏草|灵芝|石斛|天麻|钩藤|半夏|厚朴|苍术|薏米|芡实|莲子|百合|玉竹|黄精|山楂|"
    "鸡内金|龙骨|牡蛎|酸枣仁|远志|白芷|防风|荆芥|薄荷|葛根|升麻|知母|石膏|大黄|番泻叶|火麻仁")
# Places down to a district, street or compound are addresses; a city or country alone is not.
RE_FINE_PLACE = re.compile(r"(?:区|县|镇|乡|村|街道|路|街|巷|里|弄|小区|花园|苑|园|城|大厦|广场|新村|家园|公寓|幢|栋|号楼|组)$")
RE_INSTITUTION = re.compile(r"公司|集团|学校|大学|学院|中学|小学|幼儿园|单位|厂|局|委|银行|研究所|派出所|法院")
RE_HOSPITAL_ORG = re.compile(r"医|院|诊所|卫生|保健|中心|眼科|口腔|健康|妇幼|门诊")
# A place named where care happens ("在华西看过") is a hospital.
RE_CARE_AFTER = re.compile(r"^(?:的)?(?:看|住院|做|查|就诊|复查|确诊|诊断|的医生|的专家|开的|治疗|手术|照|透析|化疗|产检|建档|挂号|检查)")
# Words LAC sometimes tags as a person that are not anyone's name here.
NOT_A_NAME = {"医生", "大夫", "宝宝", "宝贝", "老人", "老公", "老婆", "小孩", "孩子", "刚刚", "天天", "常常", "慢慢", "渐渐"}
_NER_CACHE: dict[str, list] = {}
_NER_STATS = Counter()


def ner_windows(text: str, everywhere: bool = True, max_len: int = 40) -> list[tuple[int, str]]:
    """The (offset, clause) windows of `text` worth tagging. `everywhere` (a patient's own
    words): every clause that holds a possible name; otherwise (a doctor's reply, long and
    rarely naming anyone but the patient) the clauses with a name or institution signal and
    the message's first clause (names open messages: "王芳，女，45岁")."""
    out = []
    gate = RE_NAME_CANDIDATE if everywhere else RE_NER_GATE
    for i, m in enumerate(RE_CLAUSE.finditer(text)):
        clause = m.group(0)
        if len(clause) < 2 or not re.search(f"[{HAN}]", clause):
            continue
        if i == 0 or gate.search(clause):
            for k in range(0, len(clause), max_len):  # long clauses in pieces, overlapping by 8
                start = max(0, k - 8)
                out.append((m.start() + start, clause[start:k + max_len]))
    return out


def _tag(windows: list[str]) -> list[list]:
    """Entities per window, (start, end, label, confidence). The windows not seen before are
    tagged in one call, packed into batched rows (`ner.Tagger.tag_windows`): one encoder pass
    for many windows, which is where the time went on short clauses. Entities never cross a
    window's edge."""
    todo = [w for w in dict.fromkeys(windows) if w not in _NER_CACHE]
    if todo:
        per = default_tagger().tag_windows(todo)
        if len(_NER_CACHE) > 200_000:
            _NER_CACHE.clear()
        _NER_CACHE.update(zip(todo, per, strict=True))
        _NER_STATS["windows_tagged"] += len(todo)
        _NER_STATS["chars_tagged"] += sum(map(len, todo))
    _NER_STATS["windows"] += len(windows)
    return [_NER_CACHE[w] for w in windows]


# What a person's name looks like: a surname (single or compound, after 小/老 or not) and one
# or two characters, or a nickname (小X, 老X, 阿X, a doubled character, a surname and one).
SURNAMES_ALL = SURNAMES_WIDE + "岳欧时和明沈"
# The surnames of issue 24's taxonomy work: the rarer ones too (楼, 倪, 鞠, 傅 …), for names judged
# by shape or taken before a title; the rules of issue 14 keep their narrower lists.
SURNAMES_FULL = (SURNAMES_ALL + "朴楼倪鞠卓傅应戴裘缪闻芮郁蔺宓冀井籍邰隗钮弓荀羊於惠查计伏蒯桓斯怀佴漆郜禹訾阚那薄暴郦"
                 "毋付牛邢樊葛温鲍喻赖哈"
                 # Korean-Chinese (朝鲜族) surnames beside the Han ones (朴 is above): 玄永吉, 河英子, 表英顺, 太明淑
                 "玄权洪延琴咸廉慎宣奇印表河太"
                 "普粟")  # 普: Yi and Hani (普文秀); 粟: Dong and Miao (粟美英)
COMPOUND_SURNAMES = "欧阳|司马|诸葛|上官|皇甫|东方|慕容|令狐|夏侯|尉迟|端木|公孙"
RE_NAME_SHAPE = re.compile(f"(?:{COMPOUND_SURNAMES})[{HAN}]{{1,2}}|[{SURNAMES_FULL}]([{HAN}])\\1|[小老]?[{SURNAMES_FULL}][{HAN}]{{1,2}}"
                           f"|[小老阿][{HAN}]|([{HAN}])\\2")
# Characters of chemistry and pharmacy that no given name carries (米氮平, 氯雷他定, 甘油三酯).
NOT_IN_NAMES = re.compile("[氮氯氟氨氧氢氰硫磷碘溴硒砷钾钠钙镁锌铝锰钴汞铅唑嗪酮酯胺醇酚酶酸碱肽苷烷烯炔醛酐脲胍]")
# Where a name is said to be one: a family word, 叫/是 or a cue before it; a title, the sex or
# the age after it, or a verb of speech.
NAME_CUE_BEFORE = re.compile(f"(?:(?:{RELATIONS})(?:叫|是)?|我是|我叫|名叫|叫做|姓名|名字|患者|病人|患儿|家属|联系人|"
                             f"参保人|申请人|投保人|被保险人|受益人|陪同人?|室友|男友|女友|未婚夫|未婚妻|妻|夫|尊敬的|亲爱的|签名|签字)[：:，, ]?$")
NAME_CUE_AFTER = re.compile(f"^(?:{TITLES}|[，,、（(\\s]*[男女][性孩]?[，,、）)\\s]|[，,\\s]*\\d{{1,3}}岁|说|讲|告诉|问)")
# LAC's span confidence (mean CRF marginal, `ner.Tagger`) below which a PER span is noise, and
# the confidence a dictionary word needs to be taken as a name with no cue around it: on the
# real DISC sample and the word probe, the words LAC called names (窦道, 安生, 舒张压) sat at
# 0.40-0.52, names that are also words (王平, 李娜, 马超) at 0.94-1.0 (benchmarks/RESULTS.md).
NAME_MIN_CONFIDENCE = 0.35
WORD_NAME_CONFIDENCE = 0.9
# Doubled characters that are adverbs, verbs or numerals in the dictionary (刚刚, 常常, 看看) are no nickname.
NOT_NICKNAME_TAGS = {"d", "ad", "v", "vd", "m", "q", "p", "c", "u", "r", "f"}


@cache
def _dictionary() -> dict[str, str]:
    """jieba's general dictionary (349k words of Chinese with their part of speech), the words
    that have a name's shape: a candidate found there is a word of the language (安生, 窦道, 青光眼)
    or a public figure's name, not a private person's, unless the text says it is a name."""
    from importlib.util import find_spec

    words = {}
    # The file alone: importing jieba would build its segmenter, which scrub does not use.
    with open(Path(find_spec("jieba").origin).parent / "dict.txt", encoding="utf-8") as f:
        for line in f:
            word, _, tag = line.split()
            if 2 <= len(word) <= 4 and RE_NAME_SHAPE.fullmatch(word):
                words[word] = tag
    return words


def _person(text: str, a: int, b: int, conf: float) -> int | None:
    """Where the name in NER's PER span text[a:b] ends, or None if it is not taken as a name:
    it must look like a name, carry no chemistry, and not be a dictionary word unless the
    text around it says it is a name (王平 in "我爸王平，65岁") or the tagger is sure of it
    (王平 in "王平昨天开始发烧", 0.998; 安生 in "一晚上没安生" is 0.52)."""
    word = text[a:b]
    title = re.search(f"(?:{TITLES})$", word)  # 王医生 -> 王, as the title rule does
    if title:
        word = word[: -len(title.group(0))]
    m = RE_NAME_SHAPE.match(word)
    if not m or conf < NAME_MIN_CONFIDENCE:
        return None
    word = m.group(0)
    if NOT_IN_NAMES.search(word) or word in NOT_A_NAME:
        return None
    cued = NAME_CUE_BEFORE.search(text[max(0, a - 6):a]) or NAME_CUE_AFTER.match(text[a + len(word):a + len(word) + 6])
    if word[1:2] in "未无" and not cued:  # 周未见 in "肾周未见血肿": a report's "not seen", not 周 + a given name
        return None
    tag = _dictionary().get(word)
    if tag is not None:
        doubled = word[-1] == word[-2]
        if (doubled and tag in NOT_NICKNAME_TAGS) or (not doubled and not cued and conf < WORD_NAME_CONFIDENCE):
            return None
    return a + len(word)


# An organisation is a hospital when its name ends like one (a place of care); national and
# international bodies (世界卫生组织, 国家卫健委, 中华医学会) identify nobody.
RE_CARE_END = re.compile(r"(?:医院|卫生院|卫生室|卫生所|服务中心|服务站|诊所|门诊部|门诊|中心|保健院|保健站|保健所|妇幼|眼科|"
                         r"口腔|医务室|疗养院|(?<![学法究计察影剧])院)$")
RE_PUBLIC_BODY = re.compile(r"^(?:国家|中国|中华|全国|世界|国际|联合国|国务院)")


def _judge(text: str, a: int, b: int, label: str, conf: float,
           medical: list[tuple[int, int]] | None = None) -> tuple[int, int, str] | None:
    """What NER's `label` span text[a:b] is taken for: (start, end, kind), or None when it is
    kept: a person only with a name's shape (`_person`), an organisation a hospital when it ends
    like one and a workplace or school when it says so, a place below a city an address."""
    word = text[a:b]
    if "[" in word or "]" in word or not re.search(f"[{HAN}]", word):
        return None
    # Never into a medical word: cut the entity where one begins, drop it if inside one.
    for ma, mb in medical if medical is not None else [m.span() for m in RE_MEDICAL_NAMES.finditer(text)]:
        if ma < b and a < mb:
            b = ma if ma > a else a
    word = text[a:b]
    if len(word) < 2:
        return None
    if label == "PER":
        end = _person(text, a, b, conf)
        return (a, end, "name") if end else None
    if label == "ORG":
        core = GENERIC_PREFIX.sub("", re.sub(f"(?:{HOSPITAL_TAIL})$", "", word))
        if not core or core in GENERIC_HOSPITAL:
            return None  # 社区卫生服务中心, 当地医院: not anyone's hospital
        if RE_CARE_END.search(word):
            return a, b, "hospital"
        if RE_INSTITUTION.search(word) and not RE_PUBLIC_BODY.match(word):  # a workplace or school
            return a, b, "org"  # brands (同仁堂) and public bodies stay
        return None
    if label == "LOC":
        # A district, street or compound is an address; a city is not (新乡, 聊城: a one-character
        # name before 乡 or 城 is a city's).
        if RE_FINE_PLACE.search(word) and not (len(word) == 2 and word[-1] in "乡城"):
            return a, b, "address"
        if RE_CARE_AFTER.match(text[b:b + 4]) and word[-1] not in "省市县区镇乡村州城":
            return a, b, "hospital"  # 在华西看过; 去新乡看看 names a city
    return None


# "和" and "与" join two hospitals ("北医三院和省人医") but sit inside some names (武汉协和).
ABBR_BREAK = re.compile(HOSPITAL_BREAK.pattern + r"|.*(?:和|与)(?=[省市县区]|[^协]{1,4}?(?:人医|妇幼|[一二三四五六七八九]院|附))")


def _hospital_abbr(text: str) -> list[tuple[int, int, str, str]]:
    spans = []
    for m in RE_HOSPITAL_ABBR.finditer(text):
        cut = ABBR_BREAK.match(m.group(0))
        a = m.start() + (cut.end() if cut else 0)
        if m.end() - a >= 2:
            spans.append((a, m.end(), "hospital", "rule:hospital_abbr"))
    return spans


def _grouped_numbers(text: str) -> list[tuple[int, int, str, str]]:
    spans = []
    for m in RE_GROUPED.finditer(text):
        digits = re.sub(r"[ -]", "", m.group(0))
        if len(digits) == 18 and id_checksum_ok(digits):
            spans.append((m.start(), m.end(), "id_card", "rule:id_card_grouped"))
        elif 16 <= len(digits) <= 19 and digits.isdigit() and luhn_ok(digits):
            spans.append((m.start(), m.end(), "bank_card", "rule:bank_card_grouped"))
    return spans


def _address_tails(text: str) -> list[tuple[int, int, str, str]]:
    spans = []
    for m in RE_ADDR_ANCHOR.finditer(text):
        left = RE_ADDR_LEFT.search(text[:m.start()])
        a = left.start() if left else m.start()
        cut = ADDRESS_BREAK.match(text[a:m.start()])
        if cut:
            a += cut.end()
        b = m.end() + RE_ADDR_RIGHT.match(text[m.end():]).end()
        if b - a >= 5:
            spans.append((a, b, "address", "rule:address_tail"))
    return spans
