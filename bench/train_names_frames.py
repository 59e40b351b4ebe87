"""Sentence frames of the name tagger's training notes (bench/train_names.py). None of them is a frame of
bench/deid_corpus.py: tests/test_deid_names.py checks that no benchmark sentence shares a frame's wording.

{N}, {M}: a person's name. {E}: an eponym or population word that is not a person; {T}: a capitalised clinical term;
{W}, {V}: Chinese clinical words. Eponyms and populations named in the over-masking check of docs/privacy.md
(Huntington, Duchenne, Ashkenazi Jewish) are deliberately absent, so that check stays a held-out one.
"""
from __future__ import annotations

EN_FRAMES = (
    "Handoff given to {N} at 19:00.",
    "{N} from physical therapy assessed gait and balance.",
    "Report called to {N} on the receiving unit.",
    "Blood cultures drawn by {N} without difficulty.",
    "{N} called to ask about the biopsy results.",
    "Will update {N} after rounds.",
    "Message left for {N} regarding the follow-up visit.",
    "Interpreter {N} was present for the whole visit.",
    "Chaplain {N} met the family this afternoon.",
    "Per {N}, the patient fell at home last week.",
    "{N} (social work) arranged transport to the rehabilitation facility.",
    "Consent witnessed by {N}.",
    "Dressing changed with help from {N}.",
    "I spoke with {N} on the telephone about the discharge plan.",
    "The patient lives with {N} in a second floor apartment.",
    "Case manager {N} is arranging home oxygen.",
    "Specimen labelled and handed to {N} for transport.",
    "{N} will bring the home medication list tomorrow.",
    "Day team: {N}; evening team: {M}.",
    "Pharmacist {N} recommended a lower dose.",
    "The ultrasound was read by {N} in radiology.",
    "Please page {N} with any change in status.",
    "{N} and {M} assisted with the transfer to the chair.",
    "Handover from {N} to {M} completed at the bedside.",
    "Collateral history obtained from {N}, a neighbour.",
    "{N} brought the patient to the emergency department.",
    "Nutrition consult completed by {N}; tube feeds adjusted.",
    "Scribe: {N}.",
    "Time-out performed; {N} confirmed the site.",
    "Results reviewed together with {N} today.",
    "Appointment booked with {N} for next Tuesday.",
    "{N} asked whether the patient may shower.",
    "Awaiting callback from {N} at the nursing home.",
    "Teaching provided to {N}, who verbalised understanding.",
    "The family asked that {N} be the main contact.",
    "Transferred under the care of {N}.",
    "{N}, the respiratory therapist, weaned the oxygen to 2 L.",
    "Seen together with {N} and the medical student.",
    "Hospice liaison {N} met the patient and family.",
    "Vaccine administered by {N} in the left deltoid.",
    "According to {N}, the rash started three days ago.",
    "{N} requests a copy of the imaging report.",
    "Home health nurse {N} will visit twice weekly.",
    "Procedure note written by {N}.",
    "Physiotherapist {N} advised a walking frame.",
)
# chat-style handover messages, written in lower case by train_names.py ("ask mike about the drain"): the cue words
# around a name in a team chat
EN_CHAT_FRAMES = (
    "ask {N} about the drain output",
    "can you tell {N} the bloods are back",
    "@{N} pt in bed 4 is asking for you",
    "call {N} when the family arrives",
    "{N} said she'd cover the evening meds",
    "thanks {N}, will recheck at 6",
    "{N} is off today, {M} has her patients",
    "pinged {N} re the insulin sliding scale",
    "hey {N} can u sign the order",
    "{N} wants a repeat lactate",
    "spoke to {N}, ok to discharge",
    "text {N} if the bp drops again",
)
EN_NEGATIVES = (
    "Family history is notable for {E} disease in a maternal aunt.",
    "Findings are consistent with {E} syndrome.",
    "The patient is of {E} descent.",
    "Screening for {E} carriers was offered.",
    "Started {T} and will reassess in the morning.",
    "The {T} was removed without complication.",
    "{T} was negative.",
    "No evidence of {E} disease on biopsy.",
    "Transferred from the {T} overnight.",
    "A {E} sign was present on examination.",
    "Risk is higher among {E} women.",
    "{E} patients were excluded from the trial.",
    "Continue {T} as before; stop {T} if the rash returns.",
    "The {E} classification was used to grade the injury.",
    "Admitted to the Intensive Care Unit with {E} disease.",
    "History of {E} palsy in 2010 with full recovery.",
)
EN_EPONYMS = (
    "Parkinson", "Alzheimer", "Crohn", "Hodgkin", "Cushing", "Graves", "Addison", "Wilson", "Marfan", "Down",
    "Tourette", "Kawasaki", "Guillain-Barre", "Bell", "Raynaud", "Sjogren", "Paget", "Wegener", "Hashimoto",
    "Kaposi", "Ewing", "Wilms", "Fabry", "Gaucher", "Tay-Sachs", "Niemann-Pick", "Hirschsprung", "Meniere", "Behcet",
    "Stevens-Johnson", "Cowden", "Lynch", "Fanconi", "Bartter", "Gitelman", "Alport", "Turner", "Klinefelter",
    "Noonan", "Williams", "Angelman", "Prader-Willi", "Rett", "Becker", "Friedreich", "Charcot-Marie-Tooth",
    "Caucasian", "Hispanic", "African American", "Asian", "Japanese", "Finnish", "Italian", "Amish", "Dutch",
    "Korean", "Chinese", "Indian", "European", "Mediterranean", "Scandinavian", "Native American", "Pacific Islander",
    "Irish", "French Canadian", "Sardinian", "Icelandic", "Bedouin", "Maori", "Hutterite",
)
EN_TERMS = (
    "Tylenol", "Lasix", "Coumadin", "Keppra", "Zofran", "Norco", "Ativan", "Flomax", "Lipitor", "Plavix", "Eliquis",
    "Xarelto", "Foley catheter", "Glasgow Coma Scale", "Braden score", "Swan-Ganz catheter", "Apgar score",
    "Gram stain", "Doppler study", "Holter monitor", "Whipple procedure", "Nissen fundoplication", "Emergency Department",
    "Cardiology", "Oncology", "Neurology", "Medicine", "Surgery", "Radiology", "Western blot", "Southern blot",
    "Kaplan-Meier analysis", "Cox regression", "Fisher exact test", "Student t test", "Bonferroni correction",
    "Ringer lactate", "Ziehl-Neelsen stain", "Denver shunt", "Hickman line", "Jackson-Pratt drain", "Mayo Clinic",
    "Boston", "Chicago", "Texas", "Canada", "Europe", "Medicare", "Medicaid", "COVID-19", "Omicron",
)
ZH_FRAMES = (
    "由{N}陪同来院。", "今日{N}来院探视。", "已向{N}交代病情及注意事项。", "{N}为患者办理入院手续。",
    "交班时{N}反映患者夜间睡眠差。", "请{N}协助完成术前准备。", "{N}已签署手术知情同意书。",
    "康复治疗师{N}指导下肢功能锻炼。", "药师{N}核对医嘱无误。", "{N}电话询问检查结果。", "社工{N}协助联系转院。",
    "标本由{N}送检。", "与{N}沟通后决定保守治疗。", "{N}理解病情并配合治疗。", "{N}称患者近日食欲下降。",
    "据{N}介绍，患者曾在外院就诊。", "联系{N}后确认过敏史。", "{N}协助患者下床活动。", "营养师{N}会诊后调整饮食方案。",
    "{N}、{M}参与抢救。", "邻居{N}送患者来院。", "{N}上午十点来电。", "由{N}记录。", "{N}核对腕带信息。",
    "值班人员：{N}", "{N}和{M}轮流照顾患者。", "患者朋友{N}提供病史。", "{N}带来既往检查资料。",
    "转交{N}处理。", "{N}安排门诊随访。", "经{N}同意后行穿刺。", "{N}询问出院后注意事项。", "向{N}说明手术风险。",
    "{N}来电告知检查已预约。", "麻醉评估由{N}完成。", "{N}于下午完成换药。", "通知{N}及时复查血常规。",
    "{N}认为目前不宜手术。", "请示{N}后调整剂量。", "{N}诉患者昨晚咳嗽加重。", "会诊意见：{N}同意加用抗生素。",
    "今天{N}陪患者做检查。", "{N}说患者在家里摔倒过一次。", "我和{N}都很担心他的病情。", "我叫{N}，想咨询一下。",
)
ZH_NEGATIVES = (
    "{W}病史5年。", "查体：{W}（-）。", "给予{W}治疗。", "考虑{W}可能。", "复查{W}。", "{W}较前好转。", "否认{W}史。",
    "予{W}对症处理。", "患者{W}明显，伴{V}。", "患者{W}三天。", "病人{W}，{V}。", "家属{W}，要求{V}。", "医生说是{W}。",
    "{W}和{V}有什么区别？", "请问{W}怎么治疗？", "{W}能吃{V}吗？", "孩子{W}怎么办？", "{W}需要做{V}吗？",
    "入院后{W}，予{V}。", "出院诊断：{W}；{V}。", "既往{W}，长期口服{V}。", "{W}是什么原因引起的？",
)
ZH_CLINICAL = (
    "高血压", "高血糖", "高热", "高脂血症", "白细胞", "白蛋白", "白癜风", "黄疸", "黄体酮", "血常规", "尿常规", "石膏固定",
    "甘油三酯", "毛细血管", "单核细胞", "双侧肺炎", "包块", "雷诺综合征", "金黄色葡萄球菌", "左侧肢体无力", "全身乏力",
    "叶酸", "万古霉素", "严重感染", "体温升高", "周围神经病变", "平稳", "康复训练", "水肿", "罗红霉素", "柴胡", "牛黄解毒片",
    "陶土样便", "查体", "安静", "花粉过敏", "阳性", "阴性", "阿司匹林", "麻木", "干燥综合征", "干咳", "利尿剂", "华法林",
    "皮疹", "皮肤瘙痒", "胃溃疡", "糖尿病", "冠心病", "房颤", "肝硬化", "肾结石", "甲状腺结节", "乳腺增生", "宫颈糜烂",
    "支气管哮喘", "慢性胃炎", "头孢曲松", "布洛芬", "钙片", "钾离子", "钠离子", "程序性死亡", "季节性过敏", "夏季皮炎",
    "秦皮", "龙胆泻肝丸", "何首乌", "牛蒡", "薛氏", "孔隙", "方案调整", "管型", "易感体质", "连续监测", "温度", "路径",
    "姜黄素", "蒋氏", "苏打水", "毛囊炎", "贺氏", "苗条", "邵氏", "白内障", "黄斑变性", "宋体", "欧洲", "江苏", "湖南",
    "杨梅疮", "桂枝汤", "汪洋", "田七", "车前子", "冬虫夏草", "钱癣", "尹氏", "常山", "沈阳", "孙辈", "鲁米那",
)
