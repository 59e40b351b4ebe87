"""Presidio's NLP engine, offline: a regular-expression tokenizer, lower-cased tokens as lemmas, spaCy's stop words.

Presidio's AnalyzerEngine asks an NlpEngine for tokens and lemmas, which its context enhancer reads to raise the score
of a pattern match near a context word ("phone", "DOB"). Its default engine loads en_core_web_lg, which cannot be had
offline, and no Chinese pipeline exists offline at all. The recognizers here find entities themselves (no NER from the
engine), so tokens are all the engine has to supply. Tokens are plain strings, not spaCy Tokens: the context enhancer
walks the token list for every match, and building Token objects for that was half the analysis time.
"""
from __future__ import annotations

import functools
import re
from typing import Iterable, Iterator

from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine

LANGUAGES = ("en", "zh")
# a word, a run of Chinese characters split per character, or one punctuation mark
_TOKEN = re.compile(r"[\u4e00-\u9fff]|[^\W\u4e00-\u9fff]+|[^\w\s]")


@functools.lru_cache(maxsize=None)
def stop_words(language: str) -> frozenset[str]:
    """spaCy's stop-word list of a language (a plain set; no pipeline is loaded)."""
    import importlib

    try:
        return frozenset(importlib.import_module(f"spacy.lang.{language}.stop_words").STOP_WORDS)
    except ImportError:
        return frozenset()


class TokenizerNlpEngine(NlpEngine):
    """An NlpEngine that tokenizes with one regular expression and runs no statistical model."""

    engine_name = "goldloop_tokenizer"
    is_available = True

    def __init__(self, languages: Iterable[str] = LANGUAGES) -> None:
        self.languages = tuple(languages)
        self.nlp: dict[str, frozenset[str]] | None = None

    def load(self) -> None:
        """Read the stop-word lists (milliseconds: nothing is read from the network)."""
        self.nlp = {lang: stop_words(lang) for lang in self.languages}

    def is_loaded(self) -> bool:
        return self.nlp is not None

    def _stop_words(self, language: str) -> frozenset[str]:
        if self.nlp is None:
            self.load()
        if language not in self.nlp:
            raise ValueError(f"language {language!r} is not one of {', '.join(self.languages)}")
        return self.nlp[language]

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        """Tokens (strings), their offsets and lower-cased forms as lemmas; no entities."""
        self._stop_words(language)
        matches = list(_TOKEN.finditer(text))
        tokens = [m.group(0) for m in matches]
        return NlpArtifacts(
            entities=[], tokens=tokens, tokens_indices=[m.start() for m in matches], lemmas=[t.lower() for t in tokens],
            nlp_engine=self, language=language, scores=[],
        )  # fmt: skip

    def process_batch(
        self, texts: Iterable, language: str, batch_size: int = 1, n_process: int = 1, as_tuples: bool = False, **kwargs
    ) -> Iterator:
        """process_text over many texts, as Presidio's BatchAnalyzerEngine expects."""
        for item in texts:
            if as_tuples:
                text, context = item
                yield text, self.process_text(str(text), language), context
            else:
                yield item, self.process_text(str(item), language)

    def is_stopword(self, word: str, language: str) -> bool:
        return word.lower() in self._stop_words(language)

    def is_punct(self, word: str, language: str) -> bool:
        return bool(word) and not any(ch.isalnum() for ch in word)

    def get_supported_entities(self) -> list[str]:
        return []

    def get_supported_languages(self) -> list[str]:
        return list(self.languages)
