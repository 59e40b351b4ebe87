"""Documents, labeling config and the fixed test split (server/simulate/corpus.py), on tests/data/simulate."""
from pathlib import Path

import numpy as np
import pytest

from server.errors import ConfigError
from server.simulate.corpus import load_corpus, split_test

DATA = Path(__file__).parent / "data" / "simulate"


def test_test_split_is_fixed_and_stratified():
    corpus = load_corpus(DATA / "tweets_300.jsonl", DATA / "tweets.xml")
    pool, test = split_test(corpus, 0.2, 0)
    pool2, test2 = split_test(corpus, 0.2, 0)
    assert list(test) == list(test2) and not set(pool) & set(test)
    y = np.asarray(corpus.targets)
    assert abs(np.bincount(y[test], minlength=3) / len(test) - np.bincount(y, minlength=3) / len(y)).max() < 0.05


def test_load_corpus_errors():
    with pytest.raises(ConfigError, match="Labels"):
        load_corpus(DATA / "ncbi_60.jsonl", DATA / "tweets.xml")
    with pytest.raises(ConfigError, match="not one of"):
        load_corpus(DATA / "tweets_300.jsonl", (DATA / "tweets.xml").read_text().replace("Bearish", "Down"))
    with pytest.raises(ConfigError, match="labeling config: .*no control named 'nope'"):
        load_corpus(DATA / "tweets_300.jsonl", (DATA / "tweets.xml").read_text(), control="nope")
    with pytest.raises(ConfigError, match="schema .*missing.xml cannot be read"):
        load_corpus(DATA / "tweets_300.jsonl", DATA / "missing.xml")
