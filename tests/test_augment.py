"""Mention replacement (models/augment.py) on real Chinese clinical questions: swapped mentions keep their tags
exact, the rest of each text stays as it was, pseudo-labels are never touched, and a fit trains on each epoch's draw."""
from dataclasses import replace

import pytest

from ml_backend.models import Examples, TokenClassifier
from ml_backend.models.augment import MentionSwap
from ml_backend.schema import parse_label_config
from ml_backend.training import SPAN_RECIPES, TrainOptions, examples_for, span_recipe, train_control
from tests.plugins.backend import DATA, read_jsonl


def zh(n: int) -> Examples:
    docs = read_jsonl(DATA / "zh_cmedqaner" / "test.jsonl")[:n]
    return Examples([d["text"] for d in docs], [[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in docs])


def outside(text: str, spans) -> list[str]:
    """The text between the mentions, in order."""
    parts, at = [], 0
    for s, e, _ in sorted(spans):
        parts.append(text[at:s])
        at = e
    return [*parts, text[at:]]


def test_swapped_mentions_are_mentions_of_the_same_label_at_exact_offsets_and_the_context_stays():
    docs = zh(40)
    swap = MentionSwap(docs, 0.5, seed=0)
    drawn = swap.draw(0)
    changed = 0
    for text, spans, new_text, new_spans in zip(docs.texts, docs.targets, drawn.texts, drawn.targets):
        assert [lbl for *_, lbl in sorted(spans)] == [lbl for *_, lbl in new_spans]
        assert outside(text, spans) == outside(new_text, new_spans)
        for (s, e, lbl), (ns, ne, _) in zip(sorted(spans), new_spans):
            assert new_text[ns:ne] == text[s:e] or new_text[ns:ne] in swap.mentions[lbl]
        changed += new_text != text
    mentions = sum(len(t) for t in docs.targets)
    assert mentions > 100 and 10 < changed < len(docs.texts)


def test_each_epoch_draws_anew_and_the_same_seed_draws_the_same():
    docs = zh(40)
    first, again = MentionSwap(docs, 0.3, seed=1).draw(0), MentionSwap(docs, 0.3, seed=1).draw(0)
    assert first.texts == again.texts and first.targets == again.targets
    assert MentionSwap(docs, 0.3, seed=1).draw(1).texts != first.texts
    assert MentionSwap(docs, 0.3, seed=2).draw(0).texts != first.texts
    assert MentionSwap(docs, 0.0, seed=1).draw(0).texts == docs.texts and not MentionSwap(docs, 0.0).active


def test_pseudo_labeled_and_overlapping_documents_are_left_as_they_are():
    docs = zh(30)
    n = len(docs.texts)
    overlapping = (docs.texts[0], [(0, 4, "disease"), (2, 6, "symptom")])
    mixed = Examples([*docs.texts, docs.texts[1], docs.texts[2], overlapping[0]],
                     [*docs.targets, docs.targets[1], docs.targets[2], overlapping[1]],
                     [1.0] * n + [0.3, 1.0, 1.0], [[]] * n + [[], [(0, 2)], []])
    swap = MentionSwap(mixed, 1.0, seed=0)
    drawn = swap.draw(0)
    assert drawn.texts[n:] == mixed.texts[n:] and drawn.targets[n:] == mixed.targets[n:]
    assert drawn.weights == mixed.weights and drawn.masks == mixed.masks
    assert sum(a != b for a, b in zip(drawn.texts[:n], docs.texts)) > n // 2
    # only gold documents give mentions: a label whose mentions are all pseudo-labels has none to swap in
    only_pseudo = Examples([docs.texts[0], docs.texts[1]], [[(0, 2, "x")], [(0, 3, "x")]], [0.3, 0.3])
    assert not MentionSwap(only_pseudo, 1.0).active


def test_a_probability_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="probability"):
        MentionSwap(zh(5), 1.5)


def test_a_span_fit_trains_on_each_epochs_draw_on_the_same_schedule(tiny_model_dir, monkeypatch):
    docs = zh(12)
    labels = sorted({lbl for t in docs.targets for *_, lbl in t})
    fit = TrainOptions(span_min_steps=6, span_floor_window=0, batch_size=4, span_mention_swap=0, progress=False)
    plain = TokenClassifier(labels, model_name=tiny_model_dir, train_length=64, stride=16).fit(docs, **fit.fit_kwargs())
    model = TokenClassifier(labels, model_name=tiny_model_dir, train_length=64, stride=16)
    seen: list[list[str]] = []
    features = model.features
    monkeypatch.setattr(model, "features", lambda texts, targets, masks=None: seen.append(list(texts)) or features(texts, targets, masks))
    info = model.fit(docs, **TrainOptions(span_min_steps=6, span_floor_window=0, batch_size=4, span_mention_swap=0.5,
                                           progress=False).fit_kwargs())
    assert info["mention_swap"] == 0.5 and plain["mention_swap"] == 0.0
    assert info["steps"] == plain["steps"] and info["epochs_run"] == plain["epochs_run"] > 1
    epochs = [seen[i : i + len(docs.texts)] for i in range(len(docs.texts), len(seen), len(docs.texts))]
    assert len(epochs) == info["epochs_run"]
    as_texts = [[t[0] for t in epoch] for epoch in epochs]
    assert all(texts != docs.texts for texts in as_texts) and as_texts[0] != as_texts[1]


def test_the_default_span_recipe_swaps_mentions_and_the_round_records_it(tiny_model_dir):
    assert TrainOptions().fit_kwargs()["mention_swap"] == SPAN_RECIPES["new"]["span_mention_swap"] == 0.3
    assert span_recipe("old").fit_kwargs()["mention_swap"] == 0.0 and "mention_swap" not in TrainOptions().fit_kwargs("choices")
    spec = parse_label_config("""<View><Labels name="ents" toName="text"><Label value="symptom"/><Label value="disease"/>
      <Label value="body"/><Label value="crowd"/></Labels><Text name="text" value="$text"/></View>""")
    records = read_jsonl(DATA / "zh_cmedqaner" / "test.jsonl")[:8]
    opts = TrainOptions(cold_start_labels=2, model_name=tiny_model_dir, span_min_steps=2, epochs=1, train_length=32, progress=False)
    for swap in (0.3, 0.0):
        _, info = train_control(spec.controls[0], examples_for(spec.controls[0], records), examples_for(spec.controls[0], []),
                                replace(opts, span_mention_swap=swap))
        assert info["kind"] == "token_classifier" and info["fit"]["mention_swap"] == swap
