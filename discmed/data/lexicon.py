"""The medical lexicon de-identification matches first and never replaces: drug names (generic and
brand), eponymous and place-named diseases, anatomy, departments, gestational ages, lab and scale
names. A name or place recognizer whose span falls inside one of these is dropped, and one that runs
into one is cut where it begins (`discmed.data.deid`): 华法林 is a drug, not 华 + a given name;
韦尼克脑病 and 唐氏综合征 are diseases; 孕12+3周 is a gestational age.

Word lists are written from general medical knowledge (Chinese drug, disease and anatomy vocabulary,
not from any test text); the drug-ending and unit patterns catch the many drugs no list can hold.

    protected_spans("华法林3mg，孕12+3周")   # [(0, 3), (7, 13)]
"""

from __future__ import annotations

import re
from functools import cache

HAN = "\u4e00-\u9fff"

# Eponymous and place-named diseases, signs, syndromes, scales and procedures.
EPONYMS = """
桥本 阿尔波特 奥尔波特 阿尔茨海默 帕金森 克罗恩 川崎 格林巴利 格林-巴利 吉兰巴雷 吉兰-巴雷 唐氏 布鲁氏 马凡 马方 海姆立克 霍奇金 非霍奇金 亨廷顿
雷诺 库欣 艾迪生 阿狄森 白塞 贝赫切特 梅尼埃 美尼尔 特纳 贝尔 巴特 斯蒂尔 威尔逊 韦尼克 科萨科夫 韦格纳 格雷夫斯 毒性弥漫
香港脚 德国麻疹 日本脑炎 西尼罗 中东呼吸 埃博拉 马尔堡 寨卡 拉沙 新疆出血热 莱姆 立克次体 巴氏 格拉斯哥 阿普加 Apgar
阿-斯 阿斯综合征 阿斯 预激 沃-帕-怀 法洛 艾森曼格 马尔尼菲 卡波西 伯基特 尤文 威尔姆斯 肾母细胞 朗格汉斯 斯-琼 史蒂文斯-约翰逊
史蒂文斯 约翰逊综合征 雷特 雷特综合征 普拉德-威利 天使综合征 安格尔曼 狄乔治 克氏 克兰费尔特 努南 爱德华 帕陶 猫叫
芬兰型 戈谢 法布里 庞贝 尼曼-匹克 泰-萨 苯丙酮尿 枫糖尿 吉尔伯特 杜宾-约翰逊 罗托 克里格勒 瑞氏 瑞夷 雷耶 Reye
墨菲 麦氏 巴宾斯基 克尼格 布鲁津斯基 霍纳 霍夫曼 奥本海姆 戈登 查多克 罗姆伯格 拉塞格 直腿抬高 托马斯 福斯特 麦克默里
贝克 贝克囊肿 奥斯古德 施拉特 佩尔特斯 德奎尔万 腱鞘 莫顿 夏科 雷特尔 赖特 费尔蒂 舍格伦 干燥综合征 雷诺现象 皮罗 斯皮格
科利斯 史密斯 孟氏 盖氏 蒙泰贾 加莱亚齐 巴顿 本内特 乔帕特 波特 哈里斯 席汉 希恩 卡尔曼 康恩 嗜铬 佐林格-埃利森
卓-艾 马洛里-魏斯 巴雷特 希尔施普龙 先天性巨结肠 梅克尔 麦克尔 亨诺 许兰 过敏性紫癜 贾第 幽门螺杆 布加 布-加 巴德-基亚里 威尔逊病 肝豆状
吉兰 巴利 格林 重症肌无力 兰伯特-伊顿 杜氏 贝克型 德尚 埃默里 图雷特 抽动秽语 阿斯伯格 孟乔森 斯德哥尔摩 科塔尔
卡普格拉 弗雷戈利 德克莱朗博 埃克博姆 奥赛罗 巴林特 格斯特曼 韦伯 本尼迪克特 瓦伦贝格 米亚尔-居布勒 布朗-塞卡
高血压 糖尿病 桥本甲状腺炎 桥本氏 格雷夫斯病 唐氏筛查 唐筛 无创DNA NIPT 福氏 宫内节育器 曼月乐 宫颈TCT
柯萨奇 EB病毒 巨细胞病毒 弓形虫 TORCH 乙肝 丙肝 大三阳 小三阳 HPV HIV 梅毒 淋病 支原体 衣原体 疱疹
汉密尔顿 HAMD HAMA 贝克抑郁 PHQ-9 GAD-7 SCL-90 SDS SAS MMSE MoCA 韦氏 比奈 丹佛 格赛尔 Gesell 埃文斯 Evans
明尼苏达 MMPI 艾森克 EPQ 耶鲁 Y-BOCS 爱丁堡 EPDS 卡氏 KPS ECOG NYHA 格拉斯哥评分 GCS 布里斯托 Bristol 纽约心功能
"""

# The same in English (eponyms, stagings and scales a name recognizer may take for a person or a place).
EPONYMS_EN = """
Ann Arbor Alport Alport's Parkinson Parkinson's Alzheimer Alzheimer's Crohn Crohn's Kawasaki Hashimoto Hashimoto's Down's Cushing Cushing's Addison
Addison's Graves Graves' Hodgkin Hodgkin's Guillain-Barre Guillain-Barré Bell's Raynaud Raynaud's Wilson's Huntington Huntington's
Tourette Tourette's Asperger Asperger's Sjogren Sjögren Behcet Behçet Meniere Ménière Stevens-Johnson Wernicke Korsakoff Apgar Glasgow
Murphy's McBurney Babinski Kernig Brudzinski Barrett's Hirschsprung Kaposi Burkitt Ewing Wilms Marfan Turner Klinefelter Noonan
Gilbert's Reye's Lyme Epstein-Barr Coombs Gleason Breslow Clark Child-Pugh Ranson Wells Centor Killip NYHA GOLD FIGO TNM BI-RADS
TI-RADS Coryllos Bishop Bishop's Braxton Braxton-Hicks Naegele Cobb Salter-Harris Weber Gustilo Tanner Denver Mallampati Allen
Libman-Sacks Hill-Sachs Roper-Hall Orton-Gillingham Epworth ROP Hunt-Hess Fisher Spetzler-Martin Rankin Barthel Norton Braden Morse Caprini Padua CURB-65 qSOFA SOFA APACHE Wagner
German-measles Spanish-flu
Tinel Phalen Finkelstein Lachman McMurray Trendelenburg Valsalva Heimlich Holter Doppler Foley Swan-Ganz Whipple Nissen Roux-en-Y
Hoehn Yahr Hoehn-Yahr Kellgren-Lawrence Forrest Garden Lasègue Lasegue Ottawa Mini-Mental MMSE MoCA Modified Lund-Browder
"""

# Drugs in English, generic and brand (an English NER takes a capitalised brand for a person or a company).
DRUGS_EN = """
Tylenol Panadol Advil Motrin Nurofen Calpol Aspirin Lipitor Crestor Zocor Norvasc Glucophage Januvia Lantus Humalog NovoRapid
Levemir Tresiba Ventolin Seretide Symbicort Pulmicort Flixotide Singulair Augmentin Zithromax Tamiflu Plavix Eliquis Xarelto
Coumadin Warfarin Zoloft Prozac Lexapro Cipralex Xanax Valium Ambien Stilnox Seroquel Risperdal Abilify Lithium Depakote Lamictal
Keppra Tegretol Synthroid Euthyrox Eltroxin Nexium Losec Zantac Gaviscon Imodium Buscopan Clarityne Claritin Zyrtec Benadryl
Piriton EpiPen Steri-Strips Steri-Strip Mepilex Aquacel Tegaderm Duoderm Allevyn Diprivan Ozempic Wegovy Metformin Insulin Prednisone Prednisolone Medrol Dexamethasone Amoxicillin Ibuprofen
Paracetamol Acetaminophen Codeine Tramadol Morphine Salbutamol Albuterol Montelukast Loratadine Cetirizine Oseltamivir
Azithromycin Ceftriaxone Clopidogrel Atorvastatin Rosuvastatin Amlodipine Losartan Lisinopril Bisoprolol Metoprolol Furosemide
Spironolactone Levothyroxine Sertraline Fluoxetine Escitalopram Quetiapine Olanzapine Risperidone Aripiprazole Lorazepam Diazepam
Clonazepam Zolpidem Mirtazapine Venlafaxine Duloxetine Bupropion Methylphenidate Ritalin Concerta Strattera Duphaston Utrogestan
Progesterone Clomid Letrozole Gonal-f Cyclogest Clexane Enoxaparin Heparin Oxytocin Syntocinon Misoprostol Mifepristone Labetalol
Nifedipine Methyldopa Hydralazine Rhogam Anti-D Smecta Dioralyte Pedialyte Oralyte Calpol Ciprofloxacin Levofloxacin Doxycycline
Metronidazole Nitrofurantoin Cephalexin Clarithromycin Penicillin Vancomycin Gentamicin Fluconazole Acyclovir Valacyclovir
Omeprazole Pantoprazole Esomeprazole Ranitidine Famotidine Domperidone Ondansetron Loperamide Lactulose Movicol Senna Dulcolax
Hydrocortisone Betamethasone Mometasone Clobetasol Fucidin Bactroban Daktarin Canesten Lamisil Voltaren Diclofenac Naproxen
Celecoxib Gabapentin Pregabalin Lyrica Neurontin Sumatriptan Propranolol Atenolol Carvedilol Ramipril Enalapril Valsartan
Candesartan Irbesartan Hydrochlorothiazide Indapamide Digoxin Amiodarone Nitroglycerin GTN Rivaroxaban Apixaban Dabigatran
Tamoxifen Herceptin Keytruda Opdivo Avastin Rituximab Cisplatin Carboplatin Paclitaxel Docetaxel Capecitabine Xeloda Gemcitabine
Erythropoietin EPO Epogen Sevelamer Calcitriol Cinacalcet Tacrolimus Cyclosporine Mycophenolate Methotrexate Hydroxychloroquine
Allopurinol Colchicine Febuxostat Vitamin Multivitamin Elevit Pregnacare Folate Ferrous Iron Calcium Zinc Melatonin
Turbuhaler Accuhaler Evohaler Diskus Respimat Ellipta Handihaler Spiriva Relvar Trelegy Breo Flovent Qvar Atrovent
"""

# Drugs, generic and brand (Chinese trade names people write), vaccines and common herbal medicines.
DRUGS = """
阿莫西林 头孢 头孢克肟 头孢呋辛 头孢曲松 头孢他啶 头孢哌酮 阿奇霉素 红霉素 克拉霉素 左氧氟沙星 莫西沙星 环丙沙星 甲硝唑 替硝唑
奥硝唑 万古霉素 利奈唑胺 美罗培南 亚胺培南 哌拉西林 他唑巴坦 青霉素 庆大霉素 阿米卡星 多西环素 米诺环素 复方新诺明 磺胺
利福平 异烟肼 乙胺丁醇 吡嗪酰胺 氟康唑 伏立康唑 伊曲康唑 制霉菌素 阿昔洛韦 伐昔洛韦 更昔洛韦 奥司他韦 恩替卡韦 替诺福韦
布洛芬 对乙酰氨基酚 扑热息痛 阿司匹林 拜阿司匹林 双氯芬酸 塞来昔布 依托考昔 美洛昔康 吲哚美辛 曲马多 吗啡 羟考酮 芬太尼
哌替啶 地佐辛 布托啡诺 纳洛酮 氯胺酮 丙泊酚 咪达唑仑 罗哌卡因 布比卡因 利多卡因 普鲁卡因 七氟烷 瑞芬太尼 舒芬太尼
奥美拉唑 兰索拉唑 泮托拉唑 雷贝拉唑 艾司奥美拉唑 法莫替丁 雷尼替丁 铝碳酸镁 硫糖铝 枸橼酸铋钾 多潘立酮 莫沙必利 甲氧氯普胺
昂丹司琼 格拉司琼 帕洛诺司琼 阿瑞匹坦 地塞米松 甲泼尼龙 泼尼松 氢化可的松 蒙脱石散 洛哌丁胺 乳果糖 聚乙二醇 开塞露 益生菌
二甲双胍 格列美脲 格列齐特 格列吡嗪 阿卡波糖 伏格列波糖 西格列汀 利格列汀 达格列净 恩格列净 卡格列净 利拉鲁肽 司美格鲁肽
度拉糖肽 胰岛素 门冬胰岛素 赖脯胰岛素 甘精胰岛素 地特胰岛素 德谷胰岛素 精蛋白 优泌林 优泌乐 诺和灵 诺和锐 来得时 长秀霖
氨氯地平 硝苯地平 非洛地平 左氨氯地平 贝尼地平 厄贝沙坦 缬沙坦 氯沙坦 替米沙坦 奥美沙坦 坎地沙坦 沙库巴曲 培哚普利 依那普利
卡托普利 贝那普利 福辛普利 美托洛尔 比索洛尔 卡维地洛 普萘洛尔 阿替洛尔 拉贝洛尔 氢氯噻嗪 吲达帕胺 呋塞米 托拉塞米 螺内酯
阿托伐他汀 瑞舒伐他汀 辛伐他汀 普伐他汀 匹伐他汀 依折麦布 非诺贝特 氯吡格雷 替格瑞洛 华法林 利伐沙班 达比加群 阿哌沙班
艾多沙班 低分子肝素 依诺肝素 那屈肝素 肝素 硝酸甘油 单硝酸异山梨酯 地高辛 胺碘酮 普罗帕酮 伊伐布雷定 曲美他嗪 尼可地尔
左甲状腺素 优甲乐 甲巯咪唑 丙硫氧嘧啶 碘化钾 骨化三醇 阿法骨化醇 碳酸钙 维生素D 钙尔奇 阿仑膦酸钠 唑来膦酸 地舒单抗
促红素 促红细胞生成素 重组人促红素 蔗糖铁 右旋糖酐铁 琥珀酸亚铁 多糖铁 叶酸 甲钴胺 维生素B12 司维拉姆 碳酸镧 西那卡塞
左卡尼汀 复方α-酮酸 开同 肾衰宁 尿毒清 海昆肾喜 百令胶囊 金水宝 他克莫司 环孢素 吗替麦考酚酯 霉酚酸 来氟米特 羟氯喹
甲氨蝶呤 环磷酰胺 硫唑嘌呤 柳氮磺吡啶 秋水仙碱 别嘌醇 非布司他 苯溴马隆 顺铂 卡铂 奥沙利铂 紫杉醇 白蛋白紫杉醇 多西他赛
吉西他滨 培美曲塞 卡培他滨 替吉奥 氟尿嘧啶 伊立替康 依托泊苷 长春新碱 长春瑞滨 多柔比星 表柔比星 吡柔比星 阿糖胞苷
曲妥珠单抗 帕妥珠单抗 贝伐珠单抗 西妥昔单抗 利妥昔单抗 帕博利珠单抗 纳武利尤单抗 信迪利单抗 卡瑞利珠单抗 替雷利珠单抗
特瑞普利单抗 奥希替尼 吉非替尼 厄洛替尼 埃克替尼 阿法替尼 克唑替尼 阿来替尼 安罗替尼 阿帕替尼 伊马替尼 索拉非尼 仑伐替尼
瑞戈非尼 呋喹替尼 他莫昔芬 来曲唑 阿那曲唑 依西美坦 氟维司群 戈舍瑞林 亮丙瑞林 比卡鲁胺 恩扎卢胺 阿比特龙 哌柏西利
重组人粒细胞集落刺激因子 粒细胞集落刺激因子 升白针 聚乙二醇化 长效升白 G-CSF 昂丹 止吐 地榆升白片 利可君
舍曲林 氟西汀 帕罗西汀 艾司西酞普兰 西酞普兰 氟伏沙明 文拉法辛 度洛西汀 米氮平 曲唑酮 阿戈美拉汀 伏硫西汀 安非他酮
喹硫平 奥氮平 利培酮 阿立哌唑 齐拉西酮 帕利哌酮 氯氮平 氟哌啶醇 舒必利 氨磺必利 鲁拉西酮 布南色林 碳酸锂 丙戊酸钠
丙戊酸镁 拉莫三嗪 卡马西平 奥卡西平 左乙拉西坦 左乙 腰硬联合麻醉 腰硬联合 门诊药房 住院药房 急诊药房 中心药房 托吡酯 加巴喷丁 普瑞巴林 苯妥英 苯巴比妥 氯硝西泮 劳拉西泮 阿普唑仑
艾司唑仑 地西泮 奥沙西泮 唑吡坦 右佐匹克隆 佐匹克隆 扎来普隆 褪黑素 哌甲酯 托莫西汀 专注达 择思达 丁螺环酮 坦度螺酮
普萘洛尔 氯丙嗪 奋乃静 多奈哌齐 美金刚 卡巴拉汀 加兰他敏 多巴丝肼 美多芭 卡左双多巴 息宁 普拉克索 罗匹尼罗 司来吉兰
雷沙吉兰 恩他卡朋 金刚烷胺 苯海索 巴氯芬 替扎尼定 乙哌立松 甲钴胺 维生素B1 硫胺素 维生素B6 维生素C 维生素E 维生素K1
孟鲁司特 顺尔宁 布地奈德 普米克 沙丁胺醇 万托林 特布他林 异丙托溴铵 噻托溴铵 沙美特罗 福莫特罗 舒利迭 信必可 氨茶碱 多索茶碱
氯雷他定 地氯雷他定 西替利嗪 左西替利嗪 依巴斯汀 氯苯那敏 扑尔敏 苯海拉明 酮替芬 色甘酸钠 氨溴索 溴己新 乙酰半胱氨酸 羧甲司坦
右美沙芬 可待因 复方甘草 氯化钾 枸橼酸钾 碳酸氢钠 硫酸镁 葡萄糖酸钙 氯化钠 生理盐水 葡萄糖 甘露醇 白蛋白 人血白蛋白 丙种球蛋白
免疫球蛋白 破伤风 狂犬病疫苗 狂犬疫苗 狂犬病免疫球蛋白 乙肝疫苗 卡介苗 脊灰 百白破 麻腮风 水痘疫苗 流感疫苗 肺炎疫苗 HPV疫苗
九价 四价 二价 新冠疫苗 轮状病毒疫苗 手足口疫苗 EV71 乙脑疫苗 流脑疫苗 甲肝疫苗 13价 23价 五联疫苗
黄体酮 地屈孕酮 达芙通 雪诺酮 安琪坦 雌二醇 芬吗通 补佳乐 戊酸雌二醇 炔雌醇 屈螺酮 优思明 优思悦 妈富隆 达英-35 达英
左炔诺孕酮 米非司酮 米索前列醇 缩宫素 催产素 卡前列素 欣母沛 卡贝缩宫素 地诺前列酮 普贝生 硫酸镁 利托君 阿托西班 硝苯地平
来曲唑 克罗米芬 尿促性素 果纳芬 促排卵 HCG 绒促性素 艾泽 达菲林 阿司匹林肠溶片 低分子肝素钙 速碧林 克赛 叶酸片 爱乐维
玛特纳 钙尔奇D 碳酸钙D3 DHA 铁剂 维铁缓释片 福乃得 右旋糖酐铁 蛋白琥珀酸铁 硫酸亚铁 乳酸亚铁 葡萄糖酸锌
对乙酰氨基酚混悬滴剂 泰诺林 美林 布洛芬混悬液 小儿氨酚黄那敏 护彤 易坦静 开喉剑 蒲地蓝 小儿豉翘 抗病毒口服液 头孢克洛
希刻劳 阿莫西林克拉维酸钾 安奇 奥格门汀 小儿肺热咳喘 肺力咳 妈咪爱 枯草杆菌 益生菌 双歧杆菌 布拉氏酵母菌 亿活 口服补液盐
思密达 蒙脱石 小儿七星茶 健胃消食片 乳糖酶 维生素AD 伊可新 星鲨 D3 铁锌
泰诺 芬必得 散利痛 百服宁 白加黑 新康泰克 感康 快克 999感冒灵 感冒灵 连花清瘟 藿香正气 板蓝根 双黄连 清开灵 安宫牛黄
云南白药 片仔癀 季德胜 马应龙 达克宁 皮炎平 扶他林 红霉素软膏 莫匹罗星 百多邦 夫西地酸 丁酸氢化可的松 尤卓尔 地奈德 他克莫司软膏
卡泊三醇 阿达帕林 维A酸 异维A酸 过氧苯甲酰 特比萘芬 酮康唑 联苯苄唑 咪康唑 克霉唑 硝酸咪康唑 凡士林 硅油 尿素乳膏
络活喜 拜新同 波立维 立普妥 可定 倍他乐克 代文 安博维 洛汀新 雅施达 格华止 拜糖平 诺和龙 亚莫利 达美康 捷诺维 欧唐宁
安达唐 拜唐苹 开瑞坦 仙特明 顺尔宁 吗丁啉 斯达舒 达喜 耐信 洛赛克 波利特 易瑞沙 格列卫 赫赛汀 泰瑞沙 凯美纳 特罗凯 英夫利西
修美乐 恩利 类克 喜达诺 可瑞达 欧狄沃 达伯舒 艾瑞卡 百泽安 拓益 安维汀 爱必妥 美罗华 希罗达 艾素 泰素 力朴素 健择 力比泰
乐沙定 艾恒 草酸铂 百优解 左洛复 赛乐特 来士普 怡诺思 欣百达 瑞美隆 思瑞康 再普乐 维思通 安律凡 恒德 思贝格 德巴金 利必通
得理多 开浦兰 妥泰 乐瑞卡 文拉法辛缓释胶囊 黛力新 氟哌噻吨美利曲辛 思诺思 舒乐安定 安定 阿普唑仑片 佳乐定 罗拉 氯硝安定
王老吉 同仁堂 九芝堂 康王 施慧达 欧姆龙 强生 伍德灯 金嗓子 汤臣倍健 江中 葵花 三九 修正 仁和 哈药 白云山 东阿 鱼跃 三诺
雅培 美赞臣 惠氏 飞鹤 张仲景 仲景 陈李济 雷允上 胡庆余堂 六味地黄丸 逍遥丸 乌鸡白凤丸 复方丹参滴丸 丹参滴丸 速效救心丸
麝香保心丸 消心痛 力普妥 阿思匹林 田七 三七 当归 黄芪 党参 人参 西洋参 枸杞 白术 茯苓 甘草 陈皮 川芎 丹参 何首乌 杜仲 金银花
连翘 黄连 黄芩 柴胡 白芍 熟地 生地 麦冬 五味子 山药 菊花 决明子 罗汉果 胖大海 鱼腥草 蒲公英 夏枯草 益母草 艾叶 红花 桃仁
阿胶 鹿茸 冬虫夏草 灵芝 石斛 天麻 钩藤 半夏 厚朴 苍术 薏米 芡实 莲子 百合 玉竹 黄精 山楂 鸡内金 龙骨 牡蛎 酸枣仁 远志 白芷
防风 荆芥 薄荷 葛根 升麻 知母 石膏 大黄 番泻叶 火麻仁 蛇药 季德胜蛇药片
"""

# Anatomy, departments and wards by specialty, lab tests, imaging and findings a name or place must not eat.
ANATOMY_DEPARTMENTS_LABS = """
涂阳 涂阴 痰涂片 痰培养
内科 外科 妇科 产科 妇产科 儿科 新生儿科 听力筛查中心 急诊科 急诊 眼科 耳鼻喉科 口腔科 皮肤科 骨科 中医科 康复科 神经内科 神经外科 消化内科
心内科 心血管内科 心外科 胸外科 呼吸科 呼吸内科 肾内科 肾病科 内分泌科 血液科 风湿免疫科 感染科 肿瘤科 肿瘤内科 放疗科 介入科
泌尿外科 肝胆外科 胃肠外科 普外科 乳腺外科 甲乳外科 甲状腺外科 血管外科 烧伤科 整形科 疼痛科 麻醉科 重症医学科 ICU NICU PICU
CCU EICU 急诊ICU 抢救室 留观室 输液室 手术室 产房 分娩室 待产室 透析室 血透室 腹透室 化疗室 日间病房 精神科 心理科 精神卫生科
睡眠科 老年科 全科 营养科 检验科 病理科 放射科 影像科 超声科 B超室 核医学科 药剂科 发热门诊 肠道门诊 产前诊断中心 生殖中心
生殖医学中心 辅助生殖 试管婴儿 胚胎 囊胚 冻胚 移植 取卵 促排 宫腔镜 腹腔镜 胃镜 肠镜 支气管镜 膀胱镜 输尿管镜 关节镜
磨玻璃 玻璃结节 结节 腺样体 扁桃体 甲状腺 乳腺 前列腺 淋巴结 中央区淋巴结 颈中央区 侧颈区 淋巴 息肉 囊肿 积液 增生 钙化 肥大 肿大 溃疡 糜烂
上叶 下叶 中叶 左肺 右肺 双肺 肺门 纵隔 胸膜 心包 心脏 心肌 心房 心室 主动脉 冠状动脉 颈动脉 椎动脉 门静脉 下腔静脉
肝脏 胆囊 胆管 胰腺 脾脏 肾脏 肾盂 输尿管 膀胱 尿道 子宫 宫颈 宫腔 内膜 子宫内膜 卵巢 输卵管 附件 盆腔 阴道 外阴 胎盘
羊水 脐带 胎心 胎动 胎头 胎位 宫高 腹围 双顶径 股骨长 头围 NT 颈项透明层 绒毛 羊水穿刺 脐血穿刺
食管 胃窦 胃体 贲门 幽门 十二指肠 空肠 回肠 结肠 直肠 乙状结肠 阑尾 肛门 腹膜 大网膜 膈肌 腹股沟
颅脑 大脑 小脑 脑干 脑室 基底节 丘脑 额叶 颞叶 顶叶 枕叶 颞区 额区 顶区 枕区 额颞区 颞顶区 中央区 前颞区 中颞区 后颞区 海马 垂体 脊髓 颈椎 胸椎 腰椎 骶椎 尾椎 椎间盘 半月板 韧带
房间隔 室间隔 卵圆孔 动脉导管 二尖瓣 三尖瓣 主动脉瓣 肺动脉瓣 液性暗区 暗区
肩关节 肘关节 腕关节 髋关节 膝关节 踝关节 股骨 胫骨 腓骨 肱骨 桡骨 尺骨 锁骨 肋骨 髌骨 跟腱 足跟 鼻窦 鼻甲 咽喉 喉 声带
视网膜 角膜 晶状体 玻璃体 黄斑 眼底 眼压 中耳 内耳 鼓膜 耳蜗 前庭 牙龈 牙周 智齿 舌 颌下腺 腮腺 皮下 表皮 真皮 毛囊
血常规 尿常规 便常规 大便常规 肝功能 肾功能 肝功 肾功 血脂 血糖 空腹血糖 餐后血糖 糖化血红蛋白 糖耐量 OGTT 甲功 甲状腺功能
电解质 凝血 凝血功能 D-二聚体 血气 血气分析 心肌酶 肌钙蛋白 BNP NT-proBNP 降钙素原 PCT C反应蛋白 CRP 超敏C反应蛋白 血沉
ESR 白细胞 红细胞 血红蛋白 血小板 中性粒细胞 淋巴细胞 嗜酸 网织红 ALT AST GGT ALP 总胆红素 直接胆红素 白蛋白 球蛋白
肌酐 尿素氮 尿酸 eGFR 胱抑素 β2微球蛋白 尿蛋白 尿微量白蛋白 24小时尿蛋白 尿比重 尿潜血 隐血 粪隐血 钾 钠 氯 钙 磷 镁
铁蛋白 转铁蛋白 叶酸 维生素B12 同型半胱氨酸 TSH FT3 FT4 TPOAb TgAb TRAb 皮质醇 ACTH 睾酮 雌二醇 孕酮 泌乳素 PRL LH FSH AMH
β-HCG HCG 血HCG 甲胎蛋白 AFP CEA CA125 CA199 CA19-9 CA153 CA15-3 CA724 NSE CYFRA21-1 SCC PSA fPSA HE4 ROMA
乙肝五项 两对半 HBsAg HBV-DNA HCV HIV抗体 梅毒抗体 TPPA RPR TORCH 病毒载量 CD4 EB病毒 核酸检测 抗原 抗体 IgG IgM IgE IgA
心电图 动态心电图 Holter 心脏彩超 超声心动图 彩超 B超 CT 增强CT PET-CT MRI 核磁 核磁共振 DR X光 X线 钼靶 骨密度 脑电图
肌电图 肺功能 胃镜 肠镜 活检 病理 免疫组化 基因检测 EGFR ALK ROS1 KRAS BRAF HER2 Ki-67 PD-L1 PD-1 BRCA MSI TMB
HLA-B HLA-B27 羊水穿刺 无创DNA 唐筛 四维 大排畸 小排畸 NT检查 胎心监护 OCT 宫颈TCT TCT HPV分型 阴道镜 白带常规
血透 血液透析 腹膜透析 腹透 透析 内瘘 动静脉内瘘 人工血管 中心静脉导管 PICC 输液港 CRRT 超滤 干体重 Kt/V URR
"""

# Characters a drug or disease name does not carry but the words around it do: a pattern's free
# prefix (…沙星, …综合征) is made of other characters, so it cannot swallow "孩子在医院诊断" or a name.
NOT_IN_TERM = "的了是在有和与或及患得诊断查出为因伴并说医院科我你他她们孩子吃用服打做去到从给被把让要会能可也都还又再就这那哪个位些叫姓名"
_T = f"(?:(?![{NOT_IN_TERM}])[{HAN}])"

# Characters of transliterated foreign names and eponyms (as `deid.TRANSLIT`).
TRANSLIT = ("阿埃艾安奥巴拜班邦保鲍贝本比彼毕宾波伯博布查达黛戴丹道德迪蒂丁东杜多敦厄恩法范菲费芬丰冯弗福盖甘高戈格葛哥古瓜哈海汉豪"
            "赫亨洪胡华霍基吉济加嘉贾杰金卡凯坎康柯科克肯库奎拉莱赖兰朗劳勒雷蕾里丽利莉林琳卢鲁路伦罗洛吕马玛迈麦曼梅蒙米密明"
            "莫姆穆纳娜奈南内尼妮纽努诺欧帕潘庞佩彭皮珀普齐奇恰乔切琴丘萨塞桑瑟森沙莎山善尚什施史斯松苏索塔泰坦汤唐陶特提"
            "汀廷图托瓦万旺威韦维温翁沃乌伍武西希锡夏辛欣休雅亚扬杨耶伊依因英尤于约扎泽詹朱卓兹佐翰尔顿夫娃娅丝琪瑞莲霞露薇佛茨赛许")

# Patterns: gestational ages (孕12+3周, 12周+3天, 孕8周), drug endings, scale scores, gene names.
PATTERNS = [
    r"(?:孕|妊娠|怀孕)?\d{1,2}\s*(?:\+|＋)\s*\d\s*周",
    r"(?:孕|妊娠|怀孕|停经)\s*\d{1,2}\s*(?:周|w|W)(?:\s*(?:\+|＋|又)\s*\d\s*天?)?",
    r"孕周\s*(?:约|为|[:：])?\s*\d{1,2}(?:\s*(?:\+|＋)\s*\d)?\s*周",
    r"\d{1,2}\s*周\s*(?:\+|＋|又)\s*\d\s*天",
    r"G\d+P\d+(?:A\d+)?",
    # drugs by their endings (华法林, 氨氯地平, 奥美拉唑 …); 芬 alone ends given names (小芬, 桂芬) as often as drugs:
    # only 洛芬, 昔芬, 米芬 and the listed ones
    f"{_T}{{1,5}}(?:西林|法林|匹林|沙星|霉素|洛尔|普利|沙坦|地平|他汀|替尼|单抗|格雷|双胍|拉唑|替丁|昔布|洛芬|沙班|培南|米松|尼松|"
    f"西汀|必得|卡因|芬太尼|西泮|唑仑|哌酮|哌啶|肝素|铂|他赛|比星|嘧啶|瑞林|鲁肽|列净|列汀|格列|膦酸|昔芬|米芬|"
    "唑|嗪|酯|肽|铵)",
    f"{_T}{{1,8}}(?:片|胶囊|颗粒|注射液|口服液|混悬液|滴剂|缓释片|肠溶片|软膏|乳膏|凝胶|喷雾剂|气雾剂|栓剂|贴剂|糖浆|冲剂|丸)(?![{HAN}]{{0,1}}(?:区|路|街|村))",
    f"{_T}{{1,6}}(?:综合征|综合症|氏病|氏症|氏征|氏综合征|病毒|杆菌|球菌|螺旋体)",
    r"HLA-[A-Z]+\*?\d*(?::\d+)?",
    # departments by specialty (消化科, 心血管内科 …)
    "(?:[内外妇产儿眼骨皮肤口腔耳鼻喉头颈消化呼吸心血管神经肾内分泌血液肿瘤感染风湿免疫泌尿肝胆胃肠乳腺甲状腺烧伤整形疼痛麻醉"
    "急诊康复中医精神心理老年全营养检验病理放射影像超声核医学普胸足踝手脊柱关节创伤生殖遗传]{1,6})科(?![大学技研院])",
    # transliterated eponyms before a disease word (麦克尔憩室, 亨诺-许兰紫癜, 格林-巴利综合征)
    f"[{TRANSLIT}]{{2,6}}(?:[-－·][{TRANSLIT}]{{1,6}})*氏?(?:病|综合征|综合症|憩室|紫癜|囊肿|骨折|征|症|瘤|试验|评分|分级|分期|手法|反射|现象|畸形|脑病)",
    # English departments and roles, and the bacteria written with an initial
    r"\b(?:(?!(?:Hospital|Clinic|Infirmary|Centre|Center)\b)[A-Z][a-z]+\s+){0,3}(?:Department|Dept\.?|Unit|Surgeon|Physician|Consultant|Registrar)\b|\b(?:ED|A&E|ER|ICU|HDU|NICU)\b",
    r"\b(?:Department|Dept\.?|Division|Unit|Service|Centre|Center) (?:of|for) (?:[A-Z][a-z]+|&|and)(?:,? (?:[A-Z][a-z]+|&|and)){0,4}"
    r"(?: \([A-Z][A-Za-z ]+\))?|\b(?:Consultant|Specialist|Senior|Staff)?\s?(?:[A-Z][a-z]+ical|[A-Z][a-z]+ic) (?:Surgeon|Physician|Nurse)\b",
    r"\b[A-Z]\.\s?(?:coli|aureus|pneumoniae|influenzae|pylori|difficile|aeruginosa|albicans)\b",
    # a hyphenated eponym before a Chinese test or score word (Kleihauer-Betke试验); dosing days (4 mg Mon/Wed/Fri);
    # assisted-reproduction procedures
    r"[A-Z][a-z]+(?:[-–][A-Z][a-z]+)+(?=\s*(?:试验|评分|综合征|征|病|分级|分期|量表|手法|骨折|反射))",
    r"\b(?:Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun)(?:/(?:Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun))+\b",
    r"(?i:\b(?:frozen |fresh )?embryo transfer\b|\bintracytoplasmic sperm injection\b|\bin vitro fertili[sz]ation\b)",
    # English drug names by their stems (amoxicillin, omeprazole, atorvastatin, trastuzumab …)
    r"(?i:\b[a-z]{2,}(?:cillin|mycin|floxacin|cycline|conazole|prazole|tidine|olol|pril|sartan|dipine|statin|gliptin|gliflozin|"
    r"glutide|parin|xaban|gatran|zumab|ximab|umab|tinib|navir|ciclovir|clovir|semide|thiazide|formin|profen|fenac|coxib|dronate|"
    r"triptan|setron|lukast|terol|tropium|sonide|solone|olone|asone|zepam|zolam|oxetine|pramine|triptyline|peridol|apine|idone|"
    r"caine|barbital|vastatin)\b)",
    # English syndromes and eponymous diseases: X's disease, X syndrome, X-Y syndrome
    r"\b[A-Z][a-z]+(?:[-–][A-Z][a-z]+)*(?:'s)?\s+(?:disease|syndrome|palsy|sign|test|score|scale|classification|stage|staging|"
    r"criteria|maneuver|manoeuvre|reflex|phenomenon|fracture|ulcer|tumou?r|lymphoma|sarcoma|anomaly|procedure|operation|tear|"
    r"lesion|hernia|diverticulum|cyst|block|triad|node|nodes|"
    r"purpura|an(?:a)?emia|[a-z]+(?:itis|osis|aemia|emia|oma|pathy|ectomy|plasty|algia|uria|plegia))\b",
    # Hyperbaric oxygen's recompression tables (US Navy Treatment Table 6)
    r"\b(?:US Navy |USN |U\.S\. Navy )?Treatment Table \d[A-Z]?\b",
    # English specialties, as departments are named (Family Medicine, Paediatric Surgery, Internal Medicine)
    r"\b(?:(?:Family|Internal|Emergency|General|Sports|Respiratory|Travel|Nuclear|Tropical|Rehabilitation)\s+Medicine"
    r"|(?:Paediatric|Pediatric|General|Plastic|Cardiac|Vascular|Thoracic|Orthopaedic|Orthopedic)\s+Surgery"
    r"|Paediatrics|Pediatrics|Obstetrics(?:\s*(?:&|and)\s*Gyn(?:a)?ecology)?|Gyn(?:a)?ecology|Cardiology|Neurology|Oncology"
    r"|Hand Surgery|(?:Pediatric|Paediatric) Dentistry|Dentistry|Pseudoword Decoding|Word Reading|Phonological Awareness(?: composite)?|CTOPP-2|WIAT-4|WISC-V"
    r"|(?:Dokter )?Spesialis Penyakit Dalam|Penyakit Dalam|Out-?patients?(?: (?:Department|Clinic))?|In-?patients?|Infectious Diseases?|(?:(?:Orthopaedics|Orthopedics) & )?Spine Surgery"
    r"|Medicina (?:Familiar|Interna|General|Preventiva|del Trabajo)|Ginecolog[íi]a y Obstetricia|Pediatr[íi]a|Cardiolog[íi]a|Urgencias"
    r"|Neurosurgery|Surgery|Accident\s*(?:&|and)\s*Emergency|Geriatric Day Hospital"
    r"|(?:(?:Kidney|Renal|Liver|Organ) )?Transplant(?:ation)? Cent(?:re|er)|Dialysis Cent(?:re|er)"
    r"|(?:Paediatric|Pediatric|Neonatal) (?:[Ww]ard|[Uu]nit|ICU)"
    r"|Dermatology|Orthopaedics|Orthopedics|Psychiatry|Radiology|Urology|Nephrology|Gastroenterology|Endocrinology"
    r"|Rheumatology|Ophthalmology|Otolaryngology|Haematology|Hematology|Neonatology|Pulmonology|Physiotherapy"
    r"|(?:Chemical |Clinical |Anatomical )?Pathology|Microbiology|Immunology|Geriatrics|Traumatology|Anaesthesia|Anesthesiology"
    r"|Orthopaedics & Traumatology|Medicine & Geriatrics|(?:Pediatric|Paediatric|Adult|Obstetric) Emergency"
    r"|(?:Heart Failure|Diabetes|Diabetic|Asthma|Fertility|Vaccination|Antenatal|Fever|Wound|Pain|Memory|Sleep|"
    r"Anticoagulation|Warfarin|INR|Dialysis|Sports|Sports Injury|Arrhythmia|Pacemaker|Heart Rhythm|Respiratory|Student Health|Occupational Health|Well[- ]Baby|Travel|Epilepsy|Sports Medicine|Obstetrics|Antenatal|Fracture|"
    r"Eye|Skin|Chest|Stroke|Memory|Renal|Kidney|Liver|Cardiac|Heart|Child Health|Smoking Cessation|Paediatric Diabetes|"
    r"Pediatric Diabetes|Specialist Out-?patient|Neurology Specialist Out-?patient|Family Planning|Methadone|TB|Chest and TB) Clinic(?: \([A-Z][a-z]+\))?"
    r"|General Practice|Child (?:&|and) Adolescent (?:Psychiatry|Mental Health)"
    r"|(?:Out|In)-?patient Pharmacy|(?:Student|Occupational) Health (?:Cent(?:re|er)|Service|Department|Unit)|(?<=\()(?:Student|Occupational) Health(?=\))"
    r"|(?:Respiratory|Pulmonary) (?:and|&) Critical Care Medicine|Critical Care Medicine|Respiratory Medicine"
    r"|(?:Maternal-Fetal|Fetal|Neonatal|Adolescent|Geriatric|Sports|Clinical|Family|Internal|Tropical|Travel|Reproductive) "
    r"(?:Medicine|Cardiology|Neurology|Surgery|Oncology|Laboratory|Pharmacy|Nutrition)"
    r"|(?:Paediatric|Pediatric) (?:Cardiology|Neurology|Surgery|Oncology|Respiratory|Gastroenterology|Nephrology|Endocrinology"
    r"|Orthopaedics|Orthopedics|Urology|Dermatology|Ophthalmology|Haematology|Hematology|Rheumatology|Psychiatry|Radiology)"
    r"|Clinical Laboratory)\b",
]


MAX_TERM = 24  # the longest term a pattern or a list word spans, in characters (a window's margin)


@cache
def _pattern() -> re.Pattern:
    """The patterns (gestational ages, drug endings, syndromes …) as one regex."""
    return re.compile("|".join(PATTERNS))


@cache
def _words() -> dict[str, list[str]]:
    """The listed words by their first character, longest first (桥本甲状腺炎 before 桥本). Matched
    by lookup at each position: a regex alternation of ~1,500 words costs ~1,500 tries a position."""
    words = {"Ann Arbor", "Braxton Hicks", "Down syndrome", "Bell's palsy", "German measles", "Spanish flu",
             "Japanese encephalitis", "Mediterranean diet", "Graves/Basedow", "Basedow",
             # tests an English NER takes for a company (Direct Coombs, HIV Ag/Ab)
             "Direct Coombs", "Indirect Coombs", "HIV Ag/Ab", "Ag/Ab",
             # a stain and the streptococci of Lancefield's groups (Rose is a name; Group B an organisation)
             "Rose Bengal", "Group A Streptococcus", "Group B Streptococcus", "Group A Strep", "Group B Strep"}
    for block in (EPONYMS, EPONYMS_EN, DRUGS, DRUGS_EN, ANATOMY_DEPARTMENTS_LABS):
        words.update(block.split())
    index: dict[str, list[str]] = {}
    for w in sorted(words, key=len, reverse=True):
        index.setdefault(w[0].lower(), []).append(w)
    return index


def _latin(c: str) -> bool:
    return c.isascii() and c.isalpha()


def protected_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every medical term in `text`, in order, not overlapping (the longest wins)."""
    found: list[tuple[int, int]] = []
    index = _words()
    low = text.lower()
    i, n = 0, len(text)
    while i < n:
        hit = 0
        for w in index.get(low[i], ()):
            if low.startswith(w.lower(), i):
                end = i + len(w)
                # Latin words stand alone (CT, not CTx); Chinese words need no boundary.
                if _latin(w[0]) and ((i and _latin(text[i - 1])) or (end < n and _latin(text[end]))):
                    continue
                hit = len(w)
                break
        if hit:
            found.append((i, i + hit))
            i += hit
        else:
            i += 1
    # The patterns where no listed word is: a listed word is exact (克罗恩 in 侯兰克罗恩病), a pattern's
    # free prefix is not (it would take the name before the eponym). A pattern that starts where the
    # word starts has no such prefix and only runs on (Glasgow | -Blatchford score): it is taken.
    words = list(found)
    for m in _pattern().finditer(text):
        a, b = m.span()
        if b > a and all(wb <= a or b <= wa or (wa == a and wb <= b) for wa, wb in words):
            found.append((a, b))
    found.sort(key=lambda s: (s[0], -s[1]))
    out: list[tuple[int, int]] = []
    for a, b in found:
        if out and a < out[-1][1]:  # overlapping terms are one medical stretch (Summary Department | of Cardiology)
            out[-1] = (out[-1][0], max(b, out[-1][1]))
            continue
        out.append((a, b))
    return out
