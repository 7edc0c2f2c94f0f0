"""Chinese as patients write it, brought to the Mandarin the red-flag rules and the classifier read:
traditional characters to simplified, written Cantonese (粤语口语字) to its Mandarin words, and the
commonest Hakka (客家话: 𠊎/涯 I, 今晡日 today, 目珠 eyes, 徛 stand), Wu (Shanghainese), Northeastern and
Southwestern Mandarin words.

Traditional → simplified is OpenCC's character table (`opencc-python-reimplemented`'s
`TSCharacters.txt`, the first candidate of each character) applied with `str.translate`: a table
lookup per character, microseconds a message, where OpenCC's phrase segmentation would cost a
millisecond. A handful of characters whose simplified form depends on the word (乾/干, 著/着) are
left to the first candidate, which is right for symptoms.

Cantonese → Mandarin is a short lexicon of the grammatical words, verbs and body words written
Cantonese uses instead of Mandarin's (唔 不, 冇 没有, 佢 他, 咗 了, 喺 在, 睇 看, 瞓 睡, 攰 累, 心口
胸口, 急症室 急诊, 白車 救护车 …), written from the standard descriptions of the written language
(Matthews & Yip, *Cantonese: A Comprehensive Grammar*, 2nd ed., 2011; CantoDict), not from any test
message. Words that are also Mandarin in other senses are mapped only in the contexts where they
are Cantonese (食 before 咗/藥/飯, 郁 not in 忧郁).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

# Written Cantonese → Mandarin, in traditional or simplified characters; applied before the
# character table, longest word first. The order of the keys does not matter.
CANTONESE = {
    "係唔係": "是不是", "系唔系": "是不是", "係咪": "是不是", "系咪": "是不是", "唔係": "不是", "唔系": "不是",
    "唔識": "不会", "唔识": "不会", "唔該": "谢谢", "唔该": "谢谢", "唔得": "不行", "唔到": "不到", "唔好": "不好",
    "冇咗": "没了", "冇": "没有", "唔": "不",
    "乜嘢": "什么", "咩嘢": "什么", "乜": "什么", "點解": "为什么", "点解": "为什么", "點算": "怎么办", "点算": "怎么办",
    "點樣": "怎么样", "点样": "怎么样", "點知": "谁知", "边度": "哪里", "邊度": "哪里", "呢度": "这里", "嗰度": "那里",
    "呢個": "这个", "呢个": "这个", "嗰個": "那个", "嗰个": "那个", "呢啲": "这些", "嗰啲": "那些", "嗰": "那",
    "佢哋": "他们", "我哋": "我们", "你哋": "你们", "佢": "他", "嘅": "的", "咗": "了", "喺": "在", "一啲": "一些",
    "啲": "些", "係": "是", "畀": "给", "俾": "给", "嚟": "来", "咁": "这么", "嘢": "东西", "啱啱": "刚刚", "琴日": "昨天",
    "尋日": "昨天", "寻日": "昨天", "聽日": "明天", "听日": "明天", "今日": "今天", "成日": "经常", "好似": "好像",
    "睇醫生": "看医生", "睇医生": "看医生", "睇": "看", "瞓覺": "睡觉", "瞓觉": "睡觉", "瞓": "睡", "攰": "累",
    "心口": "胸口", "急症室": "急诊", "白車": "救护车", "白车": "救护车", "細路": "小孩", "细路": "小孩",
    "老豆": "爸爸", "老竇": "爸爸", "阿媽": "妈妈", "阿嫲": "奶奶", "阿爺": "爷爷", "阿爷": "爷爷",
    "暈低": "晕倒", "晕低": "晕倒", "索唔到氣": "喘不上气", "索唔到气": "喘不上气", "唞唔到氣": "喘不上气",
    "唞唔到气": "喘不上气", "唞氣": "呼吸", "唞气": "呼吸", "肚屙": "腹泻", "屙血": "便血", "屙": "拉",
    "嘔": "吐", "凍冰冰": "冰冷", "冻冰冰": "冰冷",
    "抖氣": "呼吸", "抖气": "呼吸", "哽親": "呛到", "哽亲": "呛到", "嚿": "块", "大髀罅": "腹股沟", "髀罅": "腹股沟",
    "大髀": "大腿", "脷": "舌头", "凍汗": "冷汗", "冻汗": "冷汗", "翳": "闷", "揿": "按", "撳": "按",
    "尋晚": "昨晚", "寻晚": "昨晚", "琴晚": "昨晚", "而家": "现在", "聽朝": "明早", "听朝": "明早", "今朝": "今早",
    "下晝": "下午", "下昼": "下午", "跌低": "摔倒", "跌親": "摔伤", "跌亲": "摔伤",
    "撞親": "撞伤", "撞亲": "撞伤", "整親": "弄伤", "整亲": "弄伤", "熱親": "中暑", "热亲": "中暑", "凍親": "着凉",
    "冻亲": "着凉", "咩": "什么", "幾多": "多少", "几多": "多少", "使唔使": "要不要", "使不使": "要不要",
    "定係": "还是", "定系": "还是", "同埋": "和", "啫喱": "果冻", "覆診": "复诊", "覆诊": "复诊", "好返": "好转",
    "攞": "拿", "搵": "找", "諗": "想", "谂": "想", "瞓低": "躺下", "眼瞓": "困", "屙屎": "大便", "面青": "脸色发青",
    "孫仔": "孙子", "孙仔": "孙子", "個仔": "儿子", "个仔": "儿子", "我仔": "我儿子", "仔仔": "宝宝", "女女": "女儿",
    "細佬": "弟弟", "细佬": "弟弟", "探熱": "量体温", "探热": "量体温", "發冷震": "发冷发抖", "发冷震": "发冷发抖", "冷震": "发抖",
    "牙窿": "牙洞", "入面": "里面", "起唔到身": "起不来", "口唇": "嘴唇", "膊頭": "肩膀", "膊头": "肩膀", "手瓜": "上臂", "肚痛": "肚子痛",
    # Hakka (客家话) as Meizhou and Huizhou patients write it
    "𠊎": "我", "今晡日": "今天", "昨晡日": "昨天", "前晡日": "前天", "今晡": "今天", "目珠": "眼睛", "出世": "出生",
    "细妹仔": "小女孩", "细妹": "小女孩", "细孙": "小孙子", "细人仔": "小孩", "眠床": "床", "活落去": "活下去", "么个": "什么",
    "转来": "回来", "行路打斜": "走路不稳", "徛": "站", "寻唔到": "找不到", "扣子电池": "纽扣电池", "一啖": "一口",
    "肚屎": "肚子", "屙唔出尿": "尿不出来", "擘唔开": "睁不开", "擘": "睁", "面色": "脸色", "脚眼": "脚踝", "脚肚": "小腿",
    "个卵子": "个睾丸", "卵子好痛": "睾丸好痛", "卵子痛": "睾丸痛", "卵子肿": "睾丸肿",  # a testis; IVF's 卵子 stays
    # Minnan (Hokkien, 闽南话) as Xiamen, Quanzhou and Taiwanese patients write it
    "阮阿母": "我妈", "阮阿爸": "我爸", "阮某": "我老婆", "伊某": "他老婆", "阮厝": "我家", "厝边": "邻居", "厝": "家",
    "汝": "你", "呣认得": "不认得", "呣": "不", "袂振动": "动不了", "应袂出来": "答不上来", "袂": "不", "这马": "现在",
    "今仔日": "今天", "昨暗": "昨晚", "早起": "早上", "头殼": "头", "头壳": "头", "目睭": "眼睛", "骹": "脚", "喙": "嘴",
    "家己": "自己", "过身": "去世", "小可": "有点", "佇": "在", "无张持": "不小心", "倒爿": "左边", "正爿": "右边",
    "拍着": "打到", "昏去": "昏过去", "欲困": "想睡", "跋倒": "摔倒", "跋落": "掉进", "攏": "都", "按呢": "这样",
    "雾雾": "模糊", "浮浮": "晕", "彩色圈": "彩虹圈", "一点钟": "一个小时", "肩胛头": "肩膀", "手骨节": "关节",
    "行路": "走路",
    # Wu (Shanghainese), Northeastern and Southwestern Mandarin words patients write in characters
    "侬": "你", "阿拉": "我们", "覅": "不要", "交关": "很", "一眼眼": "一点点", "晓得": "知道", "困觉": "睡觉",
    "咋整": "怎么办", "嘎哈": "干什么", "不得劲": "不舒服", "瞅": "看", "啷个": "怎么", "莫得": "没有", "没得": "没有",
}
# Characters that are Cantonese only in some words: (character, where: a regex around it, Mandarin).
CONTEXTUAL = [
    ("食", "食(?=[咗了唔完藥药飯饭嘢过過左晒多少奶粥])", "吃"),  # 食咗藥 → 吃了药; 食道 and 食物 stay
    ("涯", "(?<![天生无])涯(?![际])", "我"),  # Hakka 涯 (I); 天涯, 生涯 stay
    ("阮", "阮(?=[厝兜逐某囝阿爸妈母翁])", "我"),  # Minnan 阮 (I, we); the surname 阮 stays
    ("伊", "(?<![木])伊(?![朗利犁拉斯丽始甸藤万])", "他"),  # Minnan 伊 (he, she); 伊朗, 伊利 stay
    ("甲", "(?<=[痛红肿烧喘咳疼])甲", "得"),  # Minnan 痛甲 (so painful that); 指甲, 甲状腺 stay
    ("摆", "(?<=[两三四五几一])摆", "次"),  # Minnan 吐两摆 (twice)
    ("飲", "飲(?=[咗水酒])", "喝"),
    ("饮", "饮(?=[咗水酒])", "喝"),
    ("郁", "(?<![忧憂抑])郁(?=[唔不得到下手脚腳])", "动"),  # 郁唔到 → 动不了; 忧郁, 郁闷 stay
    ("行", "行(?=[唔不得路])", "走"),
    ("企", "企(?=[唔不穩稳起])", "站"),
    ("跌", "跌(?=[親亲倒咗落])", "摔"),
    ("仲", "仲(?=[有係系未要好])", "还"),
    ("喊", "喊(?=[到紧緊咗個个])", "哭"),  # 喊到好凄厉 (crying); 喊不醒 (calling) stays
    ("伐", "伐(?=[？?。，,！!\\s]|$)", "吗"),  # Shanghainese 好伐 → 好吗; 采伐, 步伐 stay
]
_SINGLE = {ch: rep for ch, _, rep in CONTEXTUAL}
_CJK_EXTRA = re.compile("[" + "".join(sorted({c for w in CANTONESE for c in w} | set(_SINGLE))) + "]")


@cache
def _table() -> dict[int, str]:
    """OpenCC's traditional → simplified characters as a `str.translate` table."""
    import opencc

    path = Path(opencc.__file__).parent / "dictionary" / "TSCharacters.txt"
    table: dict[int, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        src, _, dst = line.partition("\t")
        if len(src) == 1 and dst:
            table[ord(src)] = dst.split()[0]
    return table


@cache
def _table_same_length() -> dict[int, str]:
    """The character table without the few entries that map one character to several."""
    return {k: v for k, v in _table().items() if len(v) == 1}


def simplified_same_length(text: str) -> str:
    """`text` with traditional characters simplified one for one: every position keeps its
    meaning (de-identification finds spans on this and replaces them in the text as written)."""
    return text.translate(_table_same_length()) if text and not text.isascii() else text


@cache
def _pattern() -> re.Pattern:
    words = sorted(CANTONESE, key=len, reverse=True)
    return re.compile("|".join([*(re.escape(w) for w in words), *(p for _, p, _ in CONTEXTUAL)]))


def _replace(m: re.Match) -> str:
    word = m.group(0)
    return CANTONESE.get(word) or _SINGLE[word]


def to_mandarin(text: str) -> str:
    """`text` with written Cantonese in Mandarin words and traditional characters simplified.
    Text with no Chinese character comes back unchanged."""
    if not text or not any("\u4e00" <= ch <= "\u9fff" for ch in text):
        return text
    if _CJK_EXTRA.search(text):
        text = _pattern().sub(_replace, text)
    return text.translate(_table())


_SPACE_BETWEEN_HAN = re.compile("(?<=[\u4e00-\u9fff])[ \u3000]+(?=[\u4e00-\u9fff])")


def _join_spaced_words(text: str) -> str:
    """Chinese written word by word with spaces (as many signers of Chinese Sign Language and some input methods
    write: "我 不 发烧 朋友 说 是 癫痫") joined up, so cues of two words ("朋友说", "不发烧") read as written together.
    Only where spaces split most words (one every four characters or more often): a space between clauses, as
    voice input leaves, stays a pause."""
    if " " not in text and "\u3000" not in text:
        return text  # most messages: nothing to scan
    gaps = len(_SPACE_BETWEEN_HAN.findall(text))
    if gaps < 3 or gaps * 4 < sum("\u4e00" <= ch <= "\u9fff" for ch in text):
        return text
    return _SPACE_BETWEEN_HAN.sub("", text)


def normalize(text: str) -> str:
    """What triage reads: `to_mandarin`, then full-width ASCII as half-width, lower case and straight
    apostrophes ("Ｉ can’t" → "i can't"). The rules and the classifier both read this."""
    out = []
    text = _join_spaced_words(text)
    for ch in to_mandarin(text):
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E and ch not in "，：；！？（）":
            ch = chr(code - 0xFEE0)
        out.append(ch)
    return "".join(out).lower().replace("\u2019", "'").replace("\u2018", "'")
