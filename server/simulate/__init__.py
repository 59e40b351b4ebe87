"""Offline active-learning simulation: gold labels play the annotator, query strategies compete.

``corpus`` reads the documents and splits off the fixed test set, ``features`` computes frozen-encoder
features, ``query_models`` holds the models each round refits (one interface, chosen by name), ``run`` is the
loop over strategies, repeats and rounds, ``report`` turns curves into labels-to-95% figures and a table.
"""
from .corpus import Corpus, load_corpus, load_jsonl, split_test
from .features import encode_texts, encode_tokens
from .query_models import PSEUDO_DEFAULTS, QUERY_MODELS, QueryModel, build_query_model, pseudo_defaults
from .report import labels_to_target, per_repeat_spread, summary_table
from .run import run_simulation

__all__ = [
    "PSEUDO_DEFAULTS", "QUERY_MODELS", "Corpus", "QueryModel", "build_query_model", "encode_texts", "encode_tokens",
    "labels_to_target", "load_corpus", "load_jsonl", "per_repeat_spread", "pseudo_defaults", "run_simulation",
    "split_test", "summary_table",
]
