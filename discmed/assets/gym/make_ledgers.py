"""The shipped ledgers (ledgers.jsonl), written for discmed and checked by hand: eight cases,
one per disposition at least twice, with red flags where a clinician would see them. Run this
file to rewrite ledgers.jsonl after editing a case here (the JSONL is what the gym reads)."""

import json
from pathlib import Path


def f(id, kind, fact, say, disclosure, synonyms=(), weight=1.0):
    return {"id": id, "kind": kind, "fact": fact, "say": say, "disclosure": disclosure,
            "synonyms": list(synonyms), "weight": weight}


CASES = [
    {
        "id": "gym-appendicitis", "source": "discmed", "demographics": {"age": 24, "sex": "男"},
        "chief_complaint": "转移性右下腹痛14小时",
        "opening": "医生您好，我从昨天晚上开始肚子疼，一开始在肚脐周围，现在跑到右下边了，挺疼的。",
        "findings": [
            f("pain_migration", "symptom", "腹痛始于脐周，后转移至右下腹", "一开始肚脐周围疼，后来转到右下边了", "volunteered",
              ["肚子疼", "腹痛"]),
            f("duration", "symptom", "腹痛持续约14小时", "疼了大概14个小时了", "on_question", ["多久", "多长时间", "什么时候开始"]),
            f("fever", "symptom", "低热，体温37.9℃", "有点发烧，量了是37.9度", "on_question", ["发烧", "发热", "体温"], 1.5),
            f("nausea", "symptom", "恶心，呕吐1次", "有点恶心，吐过一次", "on_question", ["恶心", "呕吐", "吐"]),
            f("movement", "symptom", "走路及咳嗽时疼痛加重", "走路、咳嗽的时候疼得更厉害", "on_question",
              ["走路", "加重", "活动"], 1.5),
            f("appetite", "symptom", "食欲下降", "不太想吃东西", "on_question", ["胃口", "食欲", "吃东西"], 0.5),
            f("bowel", "symptom", "无腹泻", "没有拉肚子", "on_question", ["大便", "拉肚子", "腹泻"], 0.5),
            f("history", "history", "既往体健，无手术史", "以前身体挺好的，没做过手术", "on_question", ["以前", "既往", "手术", "病史"], 0.5),
            f("mcburney", "exam", "右下腹麦氏点压痛、反跳痛", "右下腹麦氏点压痛，有反跳痛", "on_exam", ["压痛", "反跳痛", "按压"], 2.0),
            f("wbc", "test", "血常规：白细胞12.8×10^9/L，中性粒细胞85%", "血常规：白细胞 12.8×10^9/L，中性粒细胞 85%", "on_test",
              ["血常规", "白细胞", "验血"], 1.5),
            f("ultrasound", "test", "腹部超声：阑尾增粗，直径9mm", "腹部超声：阑尾增粗，直径 9mm", "on_test", ["B超", "超声", "彩超"]),
        ],
        "red_flags": [{"id": "peritoneal", "name": "腹膜刺激征", "reveals": ["movement", "mcburney"]},
                      {"id": "fever", "name": "发热", "reveals": ["fever"]}],
        "diagnosis": {"name": "急性阑尾炎", "synonyms": ["阑尾炎"], "differential": [
            {"name": "急性胃肠炎", "synonyms": ["胃肠炎"]}, {"name": "输尿管结石", "synonyms": ["肾结石", "尿路结石"]}]},
        "disposition": "emergency", "persona": {"talkativeness": "normal", "anxiety": "worried"}, "turn_budget": 7,
    },
    {
        "id": "gym-mi", "source": "discmed", "demographics": {"age": 61, "sex": "男"},
        "chief_complaint": "胸痛伴出汗40分钟",
        "opening": "医生，我胸口这一块很不舒服，有40分钟了，一直没缓过来。",
        "findings": [
            f("chest", "symptom", "胸骨后不适40分钟，持续不缓解", "胸口不舒服40分钟了，一直没好", "volunteered", ["胸口", "胸痛", "胸闷"]),
            f("character", "symptom", "压榨样疼痛，像石头压着", "像有块石头压着一样", "on_question", ["什么样", "性质", "怎么疼", "压"], 1.5),
            f("radiation", "symptom", "疼痛放射至左肩和左臂", "疼到左边肩膀和胳膊", "on_question", ["放射", "肩膀", "胳膊", "左臂"], 1.5),
            f("sweat", "symptom", "大汗淋漓", "一直在出冷汗", "on_question", ["出汗", "冷汗", "汗"], 2.0),
            f("breath", "symptom", "气短", "有点喘不上气", "on_question", ["气短", "呼吸", "喘"], 1.0),
            f("hypertension", "history", "高血压10年，服氨氯地平", "有高血压10年了，一直吃氨氯地平", "on_question",
              ["高血压", "血压", "以前", "病史"], 1.0),
            f("smoking", "social", "吸烟30年，每天一包", "抽烟30年了，一天一包", "on_question", ["抽烟", "吸烟"], 0.5),
            f("bp", "exam", "血压150/95mmHg，心率102次/分", "血压 150/95mmHg，心率 102 次/分", "on_exam", ["血压", "心率"], 1.0),
            f("ecg", "test", "心电图：V1-V4导联ST段抬高", "心电图：V1-V4 导联 ST 段抬高", "on_test", ["心电图"], 2.0),
        ],
        "red_flags": [{"id": "acs", "name": "急性冠脉综合征表现", "reveals": ["character", "radiation", "sweat"]}],
        "diagnosis": {"name": "急性心肌梗死", "synonyms": ["心梗", "心肌梗死", "急性冠脉综合征"], "differential": [
            {"name": "主动脉夹层"}, {"name": "肺栓塞"}, {"name": "心绞痛"}]},
        "disposition": "emergency", "persona": {"talkativeness": "terse", "anxiety": "panicked", "dialect": "northern"},
        "turn_budget": 5,
    },
    {
        "id": "gym-cold", "source": "discmed", "demographics": {"age": 30, "sex": "女"},
        "chief_complaint": "流涕、咽痛2天",
        "opening": "医生好，我这两天流鼻涕、嗓子疼，需要吃点什么药吗？",
        "findings": [
            f("nose", "symptom", "流清涕、鼻塞2天", "流鼻涕、鼻子有点堵，两天了", "volunteered", ["流鼻涕", "流涕", "鼻塞"]),
            f("throat", "symptom", "咽痛", "嗓子疼", "volunteered", ["嗓子", "咽痛", "喉咙"]),
            f("fever", "symptom", "体温37.3℃，无高热", "量了37.3度，没有高烧", "on_question", ["发烧", "发热", "体温"], 1.5),
            f("cough", "symptom", "轻微干咳", "有点干咳", "on_question", ["咳嗽", "咳"], 1.0),
            f("breath", "symptom", "无气短、无胸痛", "不喘，胸口也不疼", "on_question", ["气短", "呼吸", "喘", "胸痛"], 1.5),
            f("contacts", "social", "同事近期感冒", "办公室同事最近也感冒了", "on_question", ["身边", "同事", "家人", "接触"], 0.5),
            f("allergy", "allergy", "无药物过敏", "没有药物过敏", "on_question", ["过敏"], 0.5),
            f("pregnancy", "history", "未怀孕", "没有怀孕", "on_question", ["怀孕", "妊娠", "备孕"], 1.0),
        ],
        "red_flags": [],
        "diagnosis": {"name": "普通感冒", "synonyms": ["上呼吸道感染", "上感", "感冒"], "differential": [
            {"name": "流行性感冒", "synonyms": ["流感"]}, {"name": "急性咽炎"}]},
        "disposition": "self-care", "persona": {"talkativeness": "talkative", "anxiety": "calm"}, "turn_budget": 5,
    },
    {
        "id": "gym-ectopic", "source": "discmed", "demographics": {"age": 28, "sex": "女"},
        "chief_complaint": "停经7周，下腹痛伴少量阴道流血半天",
        "opening": "医生，我今天下午开始小肚子一侧疼，还有一点点出血，这是怎么回事？",
        "findings": [
            f("pain", "symptom", "左下腹痛半天", "左边小肚子疼，从下午开始", "volunteered", ["肚子疼", "腹痛", "小肚子"]),
            f("bleeding", "symptom", "少量阴道流血", "下面有一点点出血", "volunteered", ["出血", "流血"]),
            f("amenorrhea", "history", "停经7周", "月经推迟了大概7周没来", "on_question", ["月经", "例假", "停经", "末次"], 2.0),
            f("dizzy", "symptom", "起身时头晕，晕倒1次", "刚才站起来头晕，还晕倒过一次", "on_question",
              ["头晕", "晕倒", "晕"], 2.0),
            f("shoulder", "symptom", "右肩部疼痛", "右边肩膀也有点疼", "on_question", ["肩膀", "肩"], 1.0),
            f("contraception", "history", "未避孕", "没有避孕", "on_question", ["避孕", "怀孕", "同房"], 1.0),
            f("history", "history", "1年前盆腔炎", "一年前得过盆腔炎", "on_question", ["以前", "病史", "妇科"], 0.5),
            f("vitals", "exam", "血压90/60mmHg，心率112次/分", "血压 90/60mmHg，心率 112 次/分", "on_exam", ["血压", "心率"], 1.5),
            f("hcg", "test", "血hCG阳性", "血 hCG：阳性", "on_test", ["hCG", "HCG", "验孕", "早孕"], 1.5),
            f("us", "test", "超声：宫内未见孕囊，左附件区包块，盆腔积液", "超声：宫内未见孕囊，左附件区包块，盆腔积液", "on_test",
              ["B超", "超声", "彩超"], 1.5),
        ],
        "red_flags": [{"id": "shock", "name": "失血征象", "reveals": ["dizzy", "vitals"]},
                      {"id": "pregnancy", "name": "停经", "reveals": ["amenorrhea"]}],
        "diagnosis": {"name": "异位妊娠", "synonyms": ["宫外孕", "输卵管妊娠"], "differential": [
            {"name": "先兆流产"}, {"name": "黄体破裂"}, {"name": "急性阑尾炎"}]},
        "disposition": "emergency", "persona": {"talkativeness": "normal", "anxiety": "worried"}, "turn_budget": 6,
    },
    {
        "id": "gym-diabetes", "source": "discmed", "demographics": {"age": 52, "sex": "男"},
        "chief_complaint": "口干多饮多尿3个月",
        "opening": "医生您好，我最近老是口渴，喝水特别多，这正常吗？",
        "findings": [
            f("thirst", "symptom", "口干、多饮3个月", "老口渴，水喝得多，有3个月了", "volunteered", ["口渴", "口干", "喝水"]),
            f("urine", "symptom", "尿量增多，夜尿3次", "尿也多，晚上要起来3次", "on_question", ["尿", "小便", "夜尿"], 1.5),
            f("weight", "symptom", "3个月体重下降5公斤", "3个月瘦了5公斤", "on_question", ["体重", "瘦", "消瘦"], 1.5),
            f("vision", "symptom", "视物稍模糊", "看东西有点模糊", "on_question", ["视力", "看东西", "眼睛"], 1.0),
            f("family", "family", "母亲有糖尿病", "我妈有糖尿病", "on_question", ["家里", "家族", "父母", "遗传"], 1.0),
            f("meds", "medication", "未服用药物", "平时不吃什么药", "on_question", ["吃药", "药物", "服药"], 0.5),
            f("glucose", "test", "空腹血糖11.2mmol/L，糖化血红蛋白8.6%", "空腹血糖 11.2mmol/L，糖化血红蛋白 8.6%", "on_test",
              ["血糖", "糖化"], 2.0),
            f("ketone", "test", "尿酮体阴性", "尿酮体：阴性", "on_test", ["尿常规", "酮体"], 1.0),
        ],
        "red_flags": [],
        "diagnosis": {"name": "2型糖尿病", "synonyms": ["糖尿病"], "differential": [{"name": "尿崩症"}, {"name": "甲状腺功能亢进", "synonyms": ["甲亢"]}]},
        "disposition": "clinic", "persona": {"talkativeness": "normal", "anxiety": "calm", "health_literacy": "low"},
        "turn_budget": 6,
    },
    {
        "id": "gym-febrile-seizure", "source": "discmed", "demographics": {"age": 2, "sex": "男"},
        "chief_complaint": "发热1天，抽搐1次",
        "opening": "医生，我家孩子2岁，发烧一天了，刚才突然抽了一下，现在在睡觉，怎么办？",
        "findings": [
            f("fever", "symptom", "发热1天，最高39.6℃", "发烧一天，最高烧到39.6度", "volunteered", ["发烧", "发热", "体温"]),
            f("seizure", "symptom", "抽搐1次", "刚才抽了一次", "volunteered", ["抽", "抽搐", "惊厥"]),
            f("seizure_time", "symptom", "抽搐持续约3分钟，全身性", "抽了大概3分钟，全身都在抖", "on_question",
              ["多久", "多长时间", "几分钟", "全身"], 2.0),
            f("wake", "symptom", "抽后嗜睡，叫不太醒", "抽完一直睡，叫他不太醒", "on_question", ["叫", "醒", "精神", "意识"], 2.0),
            f("rash", "symptom", "无皮疹", "身上没有出疹子", "on_question", ["皮疹", "疹子", "出疹"], 1.0),
            f("vomit", "symptom", "呕吐2次", "吐了两次", "on_question", ["呕吐", "吐"], 1.0),
            f("first", "history", "既往无抽搐史", "以前从来没抽过", "on_question", ["以前", "第一次", "病史"], 1.0),
            f("neck", "exam", "颈部稍抵抗", "颈部稍有抵抗", "on_exam", ["脖子", "颈部", "颈强直"], 2.0),
        ],
        "red_flags": [{"id": "prolonged", "name": "意识恢复差", "reveals": ["wake", "neck"]},
                      {"id": "meningism", "name": "脑膜刺激征", "reveals": ["neck", "vomit"]}],
        "diagnosis": {"name": "热性惊厥", "synonyms": ["高热惊厥"], "differential": [
            {"name": "中枢神经系统感染", "synonyms": ["脑膜炎", "脑炎"]}, {"name": "癫痫"}]},
        "disposition": "emergency", "persona": {"talkativeness": "talkative", "anxiety": "panicked",
                                                 "dialect": "southwestern"},
        "turn_budget": 5,
    },
    {
        "id": "gym-uti", "source": "discmed", "demographics": {"age": 34, "sex": "女"},
        "chief_complaint": "尿频尿急尿痛2天",
        "opening": "医生，我这两天老想上厕所，尿的时候还疼，是不是发炎了？",
        "findings": [
            f("frequency", "symptom", "尿频、尿急2天", "老想上厕所，憋不住，两天了", "volunteered", ["尿频", "尿急", "上厕所"]),
            f("dysuria", "symptom", "排尿疼痛", "尿的时候疼", "volunteered", ["尿痛", "疼"]),
            f("fever", "symptom", "无发热", "没有发烧", "on_question", ["发烧", "发热", "体温"], 1.5),
            f("flank", "symptom", "无腰痛", "腰不疼", "on_question", ["腰", "后背"], 1.5),
            f("blood", "symptom", "尿色稍红", "尿有点发红", "on_question", ["颜色", "血尿", "发红"], 1.0),
            f("pregnancy", "history", "未怀孕", "没有怀孕", "on_question", ["怀孕", "月经"], 1.0),
            f("allergy", "allergy", "青霉素过敏", "我对青霉素过敏", "on_question", ["过敏"], 1.5),
            f("urine", "test", "尿常规：白细胞3+，亚硝酸盐阳性", "尿常规：白细胞 3+，亚硝酸盐阳性", "on_test", ["尿常规", "验尿"], 1.5),
        ],
        "red_flags": [{"id": "pyelo", "name": "上尿路感染征象", "reveals": ["fever", "flank"]}],
        "diagnosis": {"name": "急性膀胱炎", "synonyms": ["膀胱炎", "尿路感染", "泌尿系感染"], "differential": [
            {"name": "急性肾盂肾炎", "synonyms": ["肾盂肾炎"]}, {"name": "尿道炎"}]},
        "disposition": "clinic", "persona": {"talkativeness": "normal", "anxiety": "calm", "recall": "vague"},
        "turn_budget": 5,
    },
    {
        "id": "gym-stroke", "source": "discmed", "demographics": {"age": 68, "sex": "女"},
        "chief_complaint": "右侧肢体无力、口角歪斜1小时",
        "opening": "医生，我妈一个小时前说话突然有点不清楚，您看要紧吗？",
        "findings": [
            f("speech", "symptom", "言语含糊1小时", "说话突然有点不清楚，一个小时前开始", "volunteered", ["说话", "言语"]),
            f("weakness", "symptom", "右侧手脚无力", "右边胳膊和腿没劲，拿不住东西", "on_question",
              ["无力", "没劲", "手脚", "胳膊", "腿"], 2.0),
            f("face", "symptom", "口角向左歪斜", "嘴有点歪", "on_question", ["嘴", "口角", "脸", "歪"], 2.0),
            f("onset", "symptom", "1小时前突然发生", "就是一个小时前突然这样的", "on_question",
              ["什么时候", "多久", "突然", "几点"], 1.5),
            f("af", "history", "房颤病史，未规律服药", "她有房颤，药没好好吃", "on_question", ["房颤", "心脏", "以前", "病史"], 1.0),
            f("anticoag", "medication", "未服用抗凝药", "没吃抗凝的药", "on_question", ["抗凝", "华法林", "吃药", "药"], 1.0),
            f("headache", "symptom", "无剧烈头痛", "头不怎么疼", "on_question", ["头痛", "头疼"], 0.5),
            f("fast", "exam", "右侧鼻唇沟变浅，右上肢肌力3级", "右侧鼻唇沟变浅，右上肢肌力 3 级", "on_exam", ["肌力", "鼻唇沟"], 1.5),
        ],
        "red_flags": [{"id": "fast", "name": "卒中征象", "reveals": ["weakness", "face", "fast"]},
                      {"id": "window", "name": "溶栓时间窗内", "reveals": ["onset"]}],
        "diagnosis": {"name": "急性缺血性脑卒中", "synonyms": ["脑卒中", "中风", "脑梗死", "脑梗"], "differential": [
            {"name": "脑出血"}, {"name": "短暂性脑缺血发作", "synonyms": ["TIA"]}]},
        "disposition": "emergency", "persona": {"talkativeness": "normal", "anxiety": "worried"}, "turn_budget": 5,
    },
]

if __name__ == "__main__":
    out = Path(__file__).with_name("ledgers.jsonl")
    out.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in CASES), encoding="utf-8")
    print(f"{len(CASES)} ledgers -> {out}")
