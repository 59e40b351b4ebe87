"""A learned person-name tagger for sentences no context rule covers ("Handoff given to Ivy Fogarty", "ask mike",
"由叶鹏婷陪同", "刘洋头痛三天").

Two small linear models whose weights ship as plain JSON (data/name_tagger.json, written by bench/train_names.py from
annotated tweets, web text and Wikipedia sentences plus generated notes):

- English: every capitalised word (accented Latin letters included: Zbigniew, Ní Bhriain, Élodie) and every
  lowercase word that is not a function word is a candidate; a logistic model decides name / not name from the word's
  shape, suffixes, name-list membership, how the document writes the word elsewhere (lower case, capitalised
  mid-sentence), whether the document is written in lower case (chat), its neighbours, chat cues (@, ask, tell, call)
  and the previous word's decision (greedy left to right). Consecutive name words form one span.
- Chinese: every position holding a common surname is a candidate; a three-class model decides no name / surname +
  one given character / surname + two, from the characters around it (two before, four after) and their classes
  (stop character, given-name character, surname, Han or not).

Only candidates are scored, so a note costs a few thousand dictionary look-ups. Features are strings; a feature absent
from the weights counts zero.
"""
from __future__ import annotations

import json
import math
import re
from importlib import resources

MODEL_FILE = "name_tagger.json"
# Latin letters with the accented ones of Latin-1 and Latin Extended (Élodie, Ní, Kowalczyk, Nguyễn), not Han
LATIN = "A-Za-zÀ-ÖØ-öø-ɏḀ-ỿ"
EN_TOKEN = re.compile(rf"[{LATIN}]+(?:['’\\-][{LATIN}]+)*|\d+|[^\s{LATIN}\d]")
_SENTENCE_END = frozenset(".!?:;")
_HAN_LO, _HAN_HI = "\u4e00", "\u9fff"
# pronouns and particles are never part of a given name (祝您健康, 但你们): a candidate holding one is no name
ZH_NEVER_GIVEN = frozenset("您你我他她它们这那哪什么吗呢吧啊呀哦嗯很太更最也都还就才又再不没别"
                           # nor are the words of a ward (王医生, 李护士, 张患者, 3床): the name stops before them
                           "医护患病药诊床")
# near misses go to the review list: an English word scored up to this much probability under the threshold, a
# Chinese reading up to this much logit margin under its margin
REVIEW_EN_BAND = 0.2
# a capitalised word next to a name (or a near miss) joins it from this probability on: a multi-part name's later
# parts score low alone (Ní, Van, Okonkwo-Reyes)
CONTINUE_EN = 0.15
REVIEW_ZH_BAND = 1.0


# ------------------------------------------------------------------------------------------------ English features


def _shape(word: str) -> str:
    out = []
    for ch in word:
        c = "X" if ch.isupper() else "x" if ch.isalpha() else "d" if ch.isdigit() else ch
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out)


# words before a name in chat-style notes ("ask mike", "tell rose", "@kevin", "thanks jo"); one shared feature so that
# the few chat examples in the training data teach all of them
CHAT_CUES = frozenset("@ ask asked asking tell told telling call called calling text texted ping pinged cc thanks "
                      "thank thx hi hey hello dear via per w with and or to for from by page paged msg message "
                      "messaged let".split())
# words after a name in chat-style notes ("mike said", "rose will", "kevin's")
CHAT_AFTER = frozenset("said says say asked asks wants wanted will can could should would is was has had did does "
                       "thinks thought called calls texted told tells mentioned".split())


def en_candidate(token: str, stop: frozenset = frozenset()) -> bool:
    """A capitalised word (or an initial), or a lowercase word of two letters or more that is no function word: the
    only tokens the English model scores."""
    if token[0].isupper():
        return len(token) == 1 or not token.isupper()
    return token[0].isalpha() and len(token) > 1 and token not in stop and not token[0].isdigit()


def en_tokens(text: str) -> list[tuple[str, int, int, bool]]:
    """(token, start, end, starts a sentence) for every token of the text."""
    out = []
    prev_end, prev_tok = 0, ""
    for m in EN_TOKEN.finditer(text):
        tok = m.group()
        start = m.start()
        sent = not prev_tok or prev_tok in _SENTENCE_END or "\n" in text[prev_end:start]
        out.append((tok, start, m.end(), sent))
        prev_end, prev_tok = m.end(), tok
    return out


class EnDoc:
    """What the features need to know about the whole document: the words it writes in lower case, those it
    capitalises mid-sentence, and whether it is written in lower case (chat: sentences start in lower case)."""

    __slots__ = ("lower", "capital", "lower_doc")

    def __init__(self, tokens) -> None:
        self.lower = frozenset(t for t, *_ in tokens if t.islower())
        self.capital = frozenset(t.lower() for t, _, _, sent in tokens if not sent and t[0].isupper() and t != "I")
        starts = [t for t, _, _, sent in tokens if sent and t[0].isalpha()]
        self.lower_doc = bool(starts) and sum(t[0].islower() for t in starts) * 2 >= len(starts)


def _is_cap(tok: str) -> bool:
    return tok[0].isupper()


def en_features(tokens, i: int, doc: EnDoc, lists: tuple[frozenset, frozenset], prev_name: bool,
                use_lists: bool = True) -> list[str]:
    """Feature strings of candidate token i; prev_name is the decision on token i-1. Lowercase candidates get their
    own copy of the case-sensitive features (prefixed "l"), so that the many lowercase words that are no name do not
    pull down the weights of capitalised ones."""
    tok, _, _, sent = tokens[i]
    low = tok.lower()
    cap = _is_cap(tok)
    p1 = tokens[i - 1][0] if i > 0 else "<s>"
    p2 = tokens[i - 2][0] if i > 1 else "<s>"
    n1 = tokens[i + 1][0] if i + 1 < len(tokens) else "</s>"
    n2 = tokens[i + 2][0] if i + 2 < len(tokens) else "</s>"
    p1l, n1l = p1.lower(), n1.lower()
    p1c, n1c = p1 != "<s>" and _is_cap(p1), n1 != "</s>" and _is_cap(n1)
    k = "" if cap else "l"
    feats = [
        # no prefix feature: "Tha", "The" … start more words than names, and it outweighed rare names (Thaddeus)
        "w=" + low, k + "s3=" + low[-3:], k + "s2=" + low[-2:], "shape=" + _shape(tok),
        k + "len=" + str(min(len(tok), 10)), k + "p1=" + p1l, k + "p2p1=" + p2.lower() + "_" + p1l,
        k + "n1=" + n1l, k + "n1n2=" + n1l + "_" + n2.lower(), k + "p1cap=" + str(p1c), k + "n1cap=" + str(n1c),
        k + "prev_name=" + str(prev_name), k + "sent=" + str(sent), k + "sent_n1cap=" + str(sent) + str(n1c),
        k + "p1name_n1cap=" + str(prev_name) + str(n1c), k + "lower_doc=" + str(doc.lower_doc),
    ]
    if cap:
        if low in doc.lower:
            feats.append("lower_in_doc")
        if not tok.isascii():
            feats.append("accented")
    else:
        if low in doc.capital:
            feats.append("lcap_in_doc")
        if doc.lower_doc:
            feats += ["ldoc_p1=" + p1l, "ldoc_n1=" + n1l]
    if p1l in CHAT_CUES:
        feats.append(k + "chat_cue")
    if n1l in CHAT_AFTER or n1 in ("'s", "’s"):
        feats.append(k + "chat_after")
    if use_lists:
        title = tok if cap else tok.capitalize()
        if title in lists[0]:
            feats.append(k + "first_list")
        if title in lists[1]:
            feats.append(k + "last_list")
        # a listed name next to a capitalised word suggests a full name; next to a lowercase word it says nothing
        # about that word ("mike check the iv")
        if cap and n1c and n1 in lists[1]:
            feats.append("n1_last_list")
        if cap and p1c and p1 in lists[0]:
            feats.append("p1_first_list")
    if len(tok) == 1 and n1 == ".":
        feats.append("initial")
    return feats


# ------------------------------------------------------------------------------------------------ Chinese features


def _zh_class(ch: str, stop: frozenset, given: frozenset) -> str:
    if not ch:
        return "E"
    if ch in stop:
        return "S"
    if _HAN_LO <= ch <= _HAN_HI:
        return "G" if ch in given else "H"
    if ch.isdigit():
        return "D"
    if ch.isspace():
        return "W"
    return "P"


def zh_features(text: str, i: int, surname_len: int, stop: frozenset, given: frozenset,
                use_lists: bool = True) -> list[str]:
    """Feature strings of the candidate surname at text[i:i+surname_len]."""
    j = i + surname_len
    p2, p1 = text[i - 2:i - 1] if i >= 2 else "", text[i - 1:i] if i >= 1 else ""
    c1, c2, c3, c4 = text[j:j + 1], text[j + 1:j + 2], text[j + 2:j + 3], text[j + 3:j + 4]
    cls = [_zh_class(c, stop, frozenset() if not use_lists else given) for c in (p1, c1, c2, c3, c4)]
    s = text[i:j]
    return [
        "s=" + s, "p1=" + p1, "p2p1=" + p2 + p1, "c1=" + c1, "c2=" + c2, "c3=" + c3, "sc1=" + s + c1,
        "c1c2=" + c1 + c2, "c2c3=" + c2 + c3, "c3c4=" + c3 + c4, "c2c3c4=" + c2 + c3 + c4, "p1s=" + p1 + s,
        "cls=" + "".join(cls), "cls_c=" + "".join(cls[1:4]), "p1cls=" + cls[0] + cls[1], "c1cls=" + cls[1],
        "c2cls=" + cls[2], "c3cls=" + cls[3], "p1c3=" + p1 + "_" + c3, "p1c4=" + p1 + "_" + c4,
    ]


# ------------------------------------------------------------------------------------------------ the model


class NameTagger:
    """The two linear models and the lists their features use; find(text) gives name spans."""

    def __init__(self, model: dict, first: frozenset, last: frozenset, surnames: frozenset, compound: frozenset,
                 given: frozenset, stop: frozenset, en_stop: frozenset = frozenset()) -> None:
        self.en_w: dict[str, float] = model["en"]["weights"]
        self.en_bias: float = model["en"]["bias"]
        self.en_threshold: float = model["en"]["threshold"]
        self.en_threshold_one: float = model["en"]["threshold_one_word"]
        # a lowercase word in a note written with capitals ("her bp rose", "gene") is a name far more rarely than in
        # a chat note written all in lower case
        self.en_threshold_lower: float = model["en"].get("threshold_lower", 0.95)
        self.zh_w: dict[str, list[float]] = model["zh"]["weights"]
        self.zh_bias: list[float] = model["zh"]["bias"]
        self.zh_margin: float = model["zh"]["margin"]
        self.zh_margin_one: float = model["zh"]["margin_one_char"]
        self.lists = (first, last)
        self.surnames, self.compound, self.given, self.stop = surnames, compound, given, stop
        self.en_stop = en_stop

    def en_score(self, feats: list[str]) -> float:
        w = self.en_w
        return self.en_bias + sum(w.get(f, 0.0) for f in feats)

    def english(self, text: str) -> list[tuple[int, int]]:
        return self.english_scored(text)[0]

    def english_scored(self, text: str) -> tuple[list[tuple[int, int]], list[tuple[int, int, float, float]]]:
        """Name spans, and the near misses (start, end, probability, threshold missed): runs of words scored within
        REVIEW_EN_BAND below the threshold, and one-word names under the one-word threshold."""
        tokens = en_tokens(text)
        doc = EnDoc(tokens)
        stop = self.en_stop
        logit = _logit(self.en_threshold)
        one_word = _logit(self.en_threshold_one)
        lower = _logit(max(self.en_threshold_lower, self.en_threshold_one))
        near_logit = _logit(max(0.01, self.en_threshold - REVIEW_EN_BAND))
        cont_logit = _logit(CONTINUE_EN)
        # runs of neighbouring candidates, each [start, end, words, best score]: a run whose best word passes the
        # threshold is one name ("Thaddeus Okonkwo-Reyes", "Siobhán Ní Bhriain": the surname is likelier once the
        # first name is taken as one), a run that only comes near it is a near miss
        runs: list[list] = []
        prev_name = in_run = False
        for i, (tok, start, end, _) in enumerate(tokens):
            if not en_candidate(tok, stop) or _in_address(text, start, end):
                if in_run and tok == "." and len(tokens[i - 1][0]) == 1:
                    continue  # the full stop of an initial ("Ivy J. Fogarty") keeps the name open
                prev_name = in_run = False
                continue
            score = self.en_score(en_features(tokens, i, doc, self.lists, prev_name))
            capital = tok[0].isupper()
            bar = logit if doc.lower_doc or capital else lower
            # a lowercase word near the threshold goes to review only in a lowercase (chat) note: in ordinary prose
            # the many lowercase words would flood the review list
            near = score > near_logit and (doc.lower_doc or capital)
            continues = in_run and capital and score > cont_logit
            if score > bar or near or continues:
                if in_run:
                    runs[-1][1], runs[-1][2], runs[-1][3] = end, runs[-1][2] + 1, max(runs[-1][3], score)
                    runs[-1][4] = runs[-1][4] or score > bar
                else:
                    runs.append([start, end, 1, score, score > bar])
                # the next word sees a name before it when this one is one, or a capitalised near miss (a first name
                # the model doubts until the surname follows); a doubtful lowercase word passes nothing on
                in_run, prev_name = True, score > bar or capital
            else:
                in_run = prev_name = False
        found = [(s, e) for s, e, words, score, hit in runs if hit and e - s > 1 and (words > 1 or score > one_word)]
        missed = [(s, e, _sigmoid(score), self.en_threshold_one if hit else self.en_threshold)
                  for s, e, words, score, hit in runs if e - s > 1 and not (hit and (words > 1 or score > one_word))]
        return found, missed

    def chinese(self, text: str) -> list[tuple[int, int]]:
        return self.chinese_scored(text)[0]

    def chinese_scored(self, text: str) -> tuple[list[tuple[int, int]], list[tuple[int, int, float, float]]]:
        """Name spans, and the near misses (start, end, probability, threshold missed): a surname whose best name
        reading beats "no name" by less than the margin, within REVIEW_ZH_BAND of it. Probability and threshold are
        the two-way softmax of the name reading against "no name" and of the margin."""
        spans: list[tuple[int, int]] = []
        missed: list[tuple[int, int, float, float]] = []
        i, n = 0, len(text)
        w, bias = self.zh_w, self.zh_bias
        while i < n:
            ch = text[i]
            if ch in self.surnames or text[i:i + 2] in self.compound:
                surname_len = 2 if text[i:i + 2] in self.compound else 1
                scores = list(bias)
                for f in zh_features(text, i, surname_len, self.stop, self.given):
                    v = w.get(f)
                    if v:
                        scores[0] += v[0]
                        scores[1] += v[1]
                        scores[2] += v[2]
                best = max((1, 2), key=lambda k: scores[k])
                end = i + surname_len + best
                margin = self.zh_margin if best == 2 else self.zh_margin_one
                diff = scores[best] - scores[0]
                if diff > margin - REVIEW_ZH_BAND and end <= n and all(
                        _HAN_LO <= c <= _HAN_HI and c not in ZH_NEVER_GIVEN for c in text[i + surname_len:end]):
                    if diff > margin:
                        spans.append((i, end))
                        i = end
                        continue
                    missed.append((i, end, _sigmoid(diff), _sigmoid(margin)))
            i += 1
        return spans, missed


_ADDRESS_BEFORE = frozenset("/.:_=?&#\\")
_ADDRESS_AFTER = frozenset("/_=?&#@\\")


def _in_address(text: str, start: int, end: int) -> bool:
    """A word inside a URL, path or e-mail address ("https://site.org/page"): part of another identifier."""
    before = text[start - 1] if start else " "
    after = text[end:end + 2]
    return before in _ADDRESS_BEFORE or after[:1] in _ADDRESS_AFTER or (after[:1] == "." and after[1:].isalnum())


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x > -60 else 0.0


def load_model_json() -> dict:
    return json.loads(resources.files("server.deid").joinpath("data", MODEL_FILE).read_text(encoding="utf-8"))

