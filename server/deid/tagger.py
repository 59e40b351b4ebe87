"""A learned person-name tagger for sentences no context rule covers ("Handoff given to Ivy Fogarty", "由叶鹏婷陪同").

Two small linear models whose weights ship as plain JSON (data/name_tagger.json, written by train_names.py):

- English: every capitalised word is a candidate; a logistic model decides name / not name from the word's shape,
  suffixes, name-list membership, whether the document also writes it in lower case, its neighbours and the previous
  word's decision (greedy left to right). Consecutive name words form one span.
- Chinese: every position holding a common surname is a candidate; a three-class model decides no name / surname +
  one given character / surname + two, from the characters around it (two before, four after) and their classes
  (stop character, given-name character, Han or not).

Only candidates are scored, so a note costs a few hundred dictionary look-ups. Features are strings; a feature absent
from the weights counts zero.
"""
from __future__ import annotations

import json
import math
import re
from importlib import resources

MODEL_FILE = "name_tagger.json"
EN_TOKEN = re.compile(r"[A-Za-z]+(?:['’\-][A-Za-z]+)*|\d+|[^\sA-Za-z\d]")
_SENTENCE_END = frozenset(".!?:;")
_HAN_LO, _HAN_HI = "\u4e00", "\u9fff"
# pronouns and particles are never part of a given name (祝您健康, 但你们): a candidate holding one is no name
ZH_NEVER_GIVEN = frozenset("您你我他她它们这那哪什么吗呢吧啊呀哦嗯很太更最也都还就才又再不没别")
# near misses go to the review list: an English word scored up to this much probability under the threshold, a
# Chinese reading up to this much logit margin under its margin
REVIEW_EN_BAND = 0.2
REVIEW_ZH_BAND = 1.0


# ------------------------------------------------------------------------------------------------ English features


def _shape(word: str) -> str:
    out = []
    for ch in word:
        c = "X" if ch.isupper() else "x" if ch.isalpha() else "d" if ch.isdigit() else ch
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out)


def en_candidate(token: str) -> bool:
    """A capitalised word (or an initial): the only tokens the English model scores."""
    return token[0].isupper() and (len(token) == 1 or not token.isupper())


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


def en_features(tokens, i: int, lower_words: frozenset, lists: tuple[frozenset, frozenset], prev_name: bool,
                use_lists: bool = True) -> list[str]:
    """Feature strings of candidate token i; prev_name is the decision on token i-1."""
    tok, _, _, sent = tokens[i]
    low = tok.lower()
    p1 = tokens[i - 1][0] if i > 0 else "<s>"
    p2 = tokens[i - 2][0] if i > 1 else "<s>"
    n1 = tokens[i + 1][0] if i + 1 < len(tokens) else "</s>"
    n2 = tokens[i + 2][0] if i + 2 < len(tokens) else "</s>"
    p1c, n1c = en_candidate(p1) and p1 != "<s>", en_candidate(n1) and n1 != "</s>"
    feats = [
        "w=" + low, "s3=" + low[-3:], "s2=" + low[-2:], "p3=" + low[:3], "shape=" + _shape(tok),
        "len=" + str(min(len(tok), 10)), "p1=" + p1.lower(), "p2p1=" + p2.lower() + "_" + p1.lower(),
        "n1=" + n1.lower(), "n1n2=" + n1.lower() + "_" + n2.lower(), "p1cap=" + str(p1c), "n1cap=" + str(n1c),
        "prev_name=" + str(prev_name), "sent=" + str(sent), "sent_n1cap=" + str(sent) + str(n1c),
        "p1name_n1cap=" + str(prev_name) + str(n1c),
    ]
    if low in lower_words:
        feats.append("lower_in_doc")
    if use_lists:
        if tok in lists[0]:
            feats.append("first_list")
        if tok in lists[1]:
            feats.append("last_list")
        if n1c and n1 in lists[1]:
            feats.append("n1_last_list")
        if p1c and p1 in lists[0]:
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
                 given: frozenset, stop: frozenset) -> None:
        self.en_w: dict[str, float] = model["en"]["weights"]
        self.en_bias: float = model["en"]["bias"]
        self.en_threshold: float = model["en"]["threshold"]
        self.en_threshold_one: float = model["en"]["threshold_one_word"]
        self.zh_w: dict[str, list[float]] = model["zh"]["weights"]
        self.zh_bias: list[float] = model["zh"]["bias"]
        self.zh_margin: float = model["zh"]["margin"]
        self.zh_margin_one: float = model["zh"]["margin_one_char"]
        self.lists = (first, last)
        self.surnames, self.compound, self.given, self.stop = surnames, compound, given, stop

    def en_score(self, feats: list[str]) -> float:
        w = self.en_w
        return self.en_bias + sum(w.get(f, 0.0) for f in feats)

    def english(self, text: str) -> list[tuple[int, int]]:
        return self.english_scored(text)[0]

    def english_scored(self, text: str) -> tuple[list[tuple[int, int]], list[tuple[int, int, float, float]]]:
        """Name spans, and the near misses (start, end, probability, threshold missed): runs of capitalised words
        scored within REVIEW_EN_BAND below the threshold, and one-word names under the one-word threshold."""
        tokens = en_tokens(text)
        lower_words = frozenset(t for t, *_ in tokens if t.islower())
        logit = _logit(self.en_threshold)
        one_word = _logit(self.en_threshold_one)
        near_logit = _logit(max(0.01, self.en_threshold - REVIEW_EN_BAND))
        spans: list[list] = []  # [start, end, words, best score]
        near: list[list] = []  # [start, end, best score] of sub-threshold runs
        prev_name = prev_near = False
        for i, (tok, start, end, _) in enumerate(tokens):
            score = self.en_score(en_features(tokens, i, lower_words, self.lists, prev_name)) if en_candidate(
                tok) else -99.0
            is_name = score > logit
            is_near = not is_name and score > near_logit
            if is_name:
                if prev_name and spans:
                    spans[-1][1], spans[-1][2], spans[-1][3] = end, spans[-1][2] + 1, max(spans[-1][3], score)
                else:
                    spans.append([start, end, 1, score])
            elif is_near:
                if prev_near and near:
                    near[-1][1], near[-1][2] = end, max(near[-1][2], score)
                else:
                    near.append([start, end, score])
            elif (prev_name or prev_near) and tok == "." and len(tokens[i - 1][0]) == 1:
                continue  # the full stop of an initial ("Ivy J. Fogarty") keeps the name open
            prev_name, prev_near = is_name, is_near
        found = [(s, e) for s, e, words, score in spans if e - s > 1 and (words > 1 or score > one_word)]
        missed = [(s, e, _sigmoid(score), self.en_threshold_one) for s, e, words, score in spans
                  if e - s > 1 and words == 1 and score <= one_word]
        missed += [(s, e, _sigmoid(score), self.en_threshold) for s, e, score in near if e - s > 1]
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


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x > -60 else 0.0


def load_model_json() -> dict:
    return json.loads(resources.files("server.deid").joinpath("data", MODEL_FILE).read_text(encoding="utf-8"))

