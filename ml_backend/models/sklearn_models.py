"""Cheap models for cold start: TF-IDF + logistic regression for Choices, an exact-string matcher for spans."""
from __future__ import annotations

import itertools
import os
import re
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..alignment import Span
from .base import Examples, Model, TextPrediction, choice_predictions
from .recognizers import recognize, recognizers_for


SKOPS_FILE = "tfidf_lr.skops"
LEGACY_JOBLIB_FILE = "tfidf_lr.joblib"  # read only: the format before skops


class TfidfClassifier(Model):
    """TF-IDF (word 1–2-grams + character 2–5-grams, so Chinese works) + logistic regression."""

    kind = "tfidf_lr"
    task = "choices"

    def __init__(self, labels: Sequence[str], multi: bool = False, **_: Any):
        super().__init__(labels, multi)
        self.pipeline = None
        self.revision = 0

    def cache_key(self) -> str:
        return f"{self.kind}:{id(self)}:{self.revision}"

    def _make(self):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.pipeline import FeatureUnion, make_pipeline

        feats = FeatureUnion(
            [
                ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
                ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=1, max_features=200_000)),
            ]
        )
        clf = LogisticRegression(max_iter=2000, class_weight="balanced", C=4.0)
        return make_pipeline(feats, OneVsRestClassifier(clf) if self.multi else clf)

    def fit(self, examples: Examples, **options: Any) -> dict:
        index = {lbl: i for i, lbl in enumerate(self.labels)}
        for t in examples.targets:
            bad = [lbl for lbl in t if lbl not in index]
            if bad:
                raise ValueError(f"labels {bad} are not among {self.labels}")
        if self.multi:
            y = np.array([[1 if lbl in t else 0 for lbl in self.labels] for t in examples.targets])
            if y.sum(0).min() == 0 or (y.sum(0) == len(y)).any():
                keep = [i for i in range(len(self.labels)) if 0 < y[:, i].sum() < len(y)]
                if not keep:
                    raise ValueError("every label is always on or always off: nothing to learn")
        else:
            if any(len(t) != 1 for t in examples.targets):
                raise ValueError("single-choice control needs exactly one label per text")
            y = np.array([index[t[0]] for t in examples.targets])
            if len(set(y.tolist())) < 2:
                raise ValueError(f"need at least two classes to train, got only {sorted({self.labels[i] for i in y})}")
        pipe = self._make()
        kw = {}
        if examples.weights is not None:
            kw[pipe.steps[-1][0] + "__sample_weight"] = np.asarray(examples.weights)
        if self.multi:
            self._multi_cols = [i for i in range(len(self.labels)) if 0 < y[:, i].sum() < len(y)]
            self._multi_const = {i: float(y[0, i]) for i in range(len(self.labels)) if i not in self._multi_cols}
            pipe.fit(list(examples.texts), y[:, self._multi_cols], **kw)
        else:
            pipe.fit(list(examples.texts), y, **kw)
        self.pipeline = pipe
        self.revision += 1
        return {"examples": len(examples.texts)}

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        if self.pipeline is None:
            raise RuntimeError("model is not fitted")
        raw = self.pipeline.predict_proba(list(texts))
        out = np.zeros((len(texts), len(self.labels)))
        if self.multi:
            for j, col in enumerate(self._multi_cols):
                out[:, col] = raw[:, j]
            for col, v in self._multi_const.items():
                out[:, col] = v
        else:
            classes = self.pipeline.classes_
            out[:, classes] = raw
        return out

    def predict(self, texts: Sequence[str]) -> list[TextPrediction]:
        return choice_predictions(self.labels, self.probabilities(texts), independent=self.multi)

    def save(self, path: Path) -> None:
        """skops for the fitted pipeline (loading it runs no code), JSON for the multi-label columns."""
        import json

        import skops.io as sio

        path = Path(path)
        self._write_meta(path)
        sio.dump(self.pipeline, path / SKOPS_FILE)
        cols, const = getattr(self, "_multi_cols", None), getattr(self, "_multi_const", None)
        (path / "tfidf_lr.json").write_text(json.dumps({"cols": cols, "const": {str(k): v for k, v in (const or {}).items()} if const is not None else None}))

    @classmethod
    def load(cls, path: Path, **options: Any) -> "TfidfClassifier":
        """Load a saved pipeline. The skops file is loaded with no type trusted beyond skops' defaults (scikit-learn
        and numpy types): a file naming any other type raises skops' UntrustedTypesFoundException (a TypeError).
        A model saved before the skops format (``tfidf_lr.joblib``) still loads; joblib unpickles, so that path is
        only for models dirs goldloop itself wrote."""
        import json

        path = Path(path)
        meta = cls.read_meta(path)
        m = cls(meta["labels"], meta.get("multi", False))
        if (path / SKOPS_FILE).exists():
            import skops.io as sio

            m.pipeline = sio.load(path / SKOPS_FILE, trusted=[])
            extra = json.loads((path / "tfidf_lr.json").read_text())
            m._multi_cols = extra["cols"]
            m._multi_const = {int(k): v for k, v in extra["const"].items()} if extra["const"] is not None else None
            return m
        import joblib

        state = joblib.load(path / LEGACY_JOBLIB_FILE)
        m.pipeline, m._multi_cols, m._multi_const = state["pipeline"], state["cols"], state["const"]
        return m


def _is_cjk(ch: str) -> bool:
    return "CJK" in unicodedata.name(ch, "") or "HIRAGANA" in unicodedata.name(ch, "") or "KATAKANA" in unicodedata.name(ch, "") or "HANGUL" in unicodedata.name(ch, "")


def surface_regex(surface: str) -> str:
    """The regex of one labeled string: whole-word at an end that is a (non-CJK) word character; a CJK end
    needs no boundary, since CJK text has no spaces between words."""
    pre = r"(?<!\w)" if re.match(r"\w", surface[0]) and not _is_cjk(surface[0]) else ""
    return pre + re.escape(surface) + _word_end(surface)


# Nesting depth of the prefix tree's groups. Below it the tree branches per character; at it, a node's remaining
# strings become one flat alternation, longest first, which matches the same. So no labeled string, however long or
# repetitive, makes this module or the regex compiler recurse more than a few hundred frames.
MAX_TREE_DEPTH = 40


def _word_end(surf: str) -> str:
    return r"(?!\w)" if re.match(r"\w", surf[-1]) and not _is_cjk(surf[-1]) else ""


def lexicon_regex(surfaces) -> str:
    """One regex matching any of ``surfaces`` under :func:`surface_regex`'s rules, the longest first at a position.

    A prefix tree, not a flat alternation: the engine tries one branch per character instead of every string at
    every position (600 strings over 5,000 characters: milliseconds, not a tenth of a second). At each node the
    longer continuations come before the string that ends there, so the longest match wins, as in a flat
    alternation sorted by length. The tree is built from the sorted strings: a run of characters the strings
    below a node share is one literal, and below :data:`MAX_TREE_DEPTH` branch points a node's strings are a flat
    alternation. So neither this builder nor the regex compiler recurses per character, and a 5,000-character
    clause or a thousand nested prefixes compile like any other string.
    """
    items = sorted({s for s in surfaces if s})

    def branch(strs: list[str], p: int, depth: int) -> str:
        """The regex of ``strs`` (sorted, sharing their first ``p`` characters) after those characters."""
        ends = strs[0] if len(strs[0]) == p else None  # the string that ends here sorts first
        rest = strs[1:] if ends is not None else strs
        if depth >= MAX_TREE_DEPTH:
            alts = [re.escape(s[p:]) + _word_end(s) for s in sorted(rest, key=lambda s: (-len(s), s))]
        else:
            alts = []
            for _, group in itertools.groupby(rest, key=lambda s: s[p]):
                group = list(group)
                q = p + len(os.path.commonprefix([group[0][p:], group[-1][p:]]))  # sorted: first and last bound it
                alts.append(re.escape(group[0][p:q]) + branch(group, q, depth + 1))
        if ends is not None:
            alts.append(_word_end(ends))  # ends here: after every longer continuation
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    def starts_word(s: str) -> bool:
        return bool(re.match(r"\w", s[0])) and not _is_cjk(s[0])

    bounded = [s for s in items if starts_word(s)]
    free = [s for s in items if not starts_word(s)]
    parts = ([r"(?<!\w)" + branch(bounded, 0, 0)] if bounded else []) + ([branch(free, 0, 0)] if free else [])
    return "|".join(parts) if parts else r"(?!x)x"


def compile_lexicon(surfaces) -> "re.Pattern[str]":
    """:func:`lexicon_regex` compiled case-insensitively, and not kept in ``re``'s own cache: the matcher recompiles
    after every annotation, and ``re`` keeps its last 512 patterns by their text, which for lexicons near the bounds
    below would pin gigabytes of dead patterns."""
    pattern = lexicon_regex(surfaces)
    compiled = re.compile(pattern, re.IGNORECASE)
    if len(pattern) > 10_000:
        re.purge()  # the cache holds compiled patterns only: the rest of the process recompiles its few on next use
    return compiled


def cjk_end(surface: str) -> bool:
    """Whether the string starts or ends with a CJK character (an end :func:`surface_regex` leaves unbounded)."""
    return bool(surface) and (_is_cjk(surface[0]) or _is_cjk(surface[-1]))


# The matcher's memory bound. A labeled string longer than MAX_SURFACE_CHARS is not learned (a clause that long
# recurring word for word is the fine-tuned model's to find); past MAX_SURFACES strings or MAX_LEXICON_CHARS
# characters, new strings are not learned while known ones still count. At the bounds the compiled pattern takes
# ~100 MB and ~2.5 s to build (after each annotation); NCBI's whole training set is ~2,100 strings, ~30,000 characters.
MAX_SURFACE_CHARS = 10_000
MAX_SURFACES = 50_000
MAX_LEXICON_CHARS = 1_000_000


class SpanMatcher(Model):
    """Cold-start span proposals: every exact occurrence of a string annotators already labeled.

    Case-insensitive; whole-word where the string starts/ends with a (non-CJK) word character; longest
    match first (leftmost-longest, no overlaps). The label is the one most often given to that string;
    the score is the share of that label among the string's labeled occurrences.

    Labels whose name is a known kind (Date, Amount, Party ...: :mod:`.recognizers`) also get the built-in
    pattern's spans, from the first document on; where one overlaps a labeled string, the labeled string wins.
    """

    kind = "span_matcher"
    learns_online = True
    task = "spans"
    EMPTY_CONFIDENCE = 0.5  # a document with no proposal: the matcher knows nothing about it

    def __init__(self, labels: Sequence[str], multi: bool = False, **_: Any):
        super().__init__(labels, multi)
        self.lexicon: dict[str, Counter] = defaultdict(Counter)
        self.chars = 0  # characters of the lexicon's strings (MAX_LEXICON_CHARS)
        self._regex = None
        self.revision = 0
        self.recognizers = recognizers_for(self.labels)  # follow from the labels: nothing to save

    def cache_key(self) -> str:
        return f"{self.kind}:{id(self)}:{self.revision}"

    def add(self, surface: str, label: str) -> bool:
        """Learn one labeled string (called per annotation, so proposals improve as annotators work); False when
        it is not learned: an unknown label, an empty string, or one past the lexicon's bounds."""
        surface = surface.strip()
        if not surface or label not in self.labels:
            return False
        key = surface.casefold()
        if key not in self.lexicon:
            if len(key) > MAX_SURFACE_CHARS or len(self.lexicon) >= MAX_SURFACES or self.chars + len(key) > MAX_LEXICON_CHARS:
                return False
            self.chars += len(key)
        self.lexicon[key][label] += 1
        self._regex = None
        self.revision += 1
        return True

    def fit(self, examples: Examples, **options: Any) -> dict:
        for text, spans in zip(examples.texts, examples.targets):
            for s, e, label in spans:
                self.add(text[s:e], label)
        info = {"surfaces": len(self.lexicon)}
        if self.recognizers:
            info["recognizers"] = {label: rec.kind for label, rec in self.recognizers.items()}
        return info

    def _pattern(self):
        if self._regex is None and self.lexicon:
            self._regex = compile_lexicon(self.lexicon)
        return self._regex

    def predict(self, texts: Sequence[str]) -> list[TextPrediction]:
        pat = self._pattern()
        out = []
        for text in texts:
            spans = []
            if pat is not None:
                for m in pat.finditer(text):
                    counts = self.lexicon.get(m.group(0).casefold())
                    if not counts:
                        continue
                    label, n = counts.most_common(1)[0]
                    spans.append(Span(m.start(), m.end(), label, n / sum(counts.values())))
            if self.recognizers:
                spans = sorted(spans + recognize(text, self.recognizers, taken=spans), key=lambda sp: sp.start)
            conf = float(np.mean([s.score for s in spans])) if spans else self.EMPTY_CONFIDENCE
            out.append(TextPrediction(spans=spans, confidence=conf))
        return out

    def save(self, path: Path) -> None:
        import json

        self._write_meta(Path(path))
        (Path(path) / "lexicon.json").write_text(json.dumps({k: dict(v) for k, v in self.lexicon.items()}, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path, **options: Any) -> "SpanMatcher":
        import json

        meta = cls.read_meta(path)
        m = cls(meta["labels"])
        for k, v in json.loads((Path(path) / "lexicon.json").read_text()).items():
            m.lexicon[k] = Counter(v)
            m.chars += len(k)
        return m
