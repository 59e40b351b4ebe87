"""Chunking of long documents: sentence boundaries, never inside an entity (a property over real contracts)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from server.config import default_model
from server.export.chunking import chunk_document, cut_points, hf_token_ends
from tests.plugins.export import ROOT

CUAD = Path("/work/shared/data/cuad/cuad_contracts_spans.jsonl")


@pytest.fixture(scope="module")
def token_ends():
    from transformers import AutoTokenizer

    return hf_token_ends(AutoTokenizer.from_pretrained(default_model(), local_files_only=True))


def words(text: str) -> list[tuple[int, int]]:
    out, pos = [], 0
    for w in text.split():
        pos = text.index(w, pos)
        out.append((pos, pos + len(w)))
        pos += len(w)
    return out


def random_spans(text: str, rng: random.Random) -> list[dict]:
    """Entities of 1 to 40 words (many cross a sentence end), some nested, at random places."""
    ws = words(text)
    spans = []
    for _ in range(rng.randint(5, 40)):
        i = rng.randrange(len(ws))
        j = min(len(ws) - 1, i + rng.choice([0, 0, 1, 2, 5, 40]))
        spans.append({"start": ws[i][0], "end": ws[j][1], "label": rng.choice("AB"), "from_name": "entities"})
    return spans


def contracts(rng: random.Random) -> list[tuple[str, list[dict]]]:
    """The repository's sample contracts with random entities, and CUAD contracts with their real spans when present."""
    docs = [json.loads(ln)["text"] for ln in (ROOT / "server/samples/contracts/docs.jsonl").read_text().splitlines() if ln.strip()]
    out = [(t, random_spans(t, rng)) for t in docs]
    if CUAD.exists():
        with open(CUAD, encoding="utf-8") as f:
            for n, line in enumerate(f):
                if n >= 12:
                    break
                r = json.loads(line)
                out.append((r["text"], [{**s, "from_name": "entities"} for s in r["spans"]]))
    return out


def check(text: str, spans: list[dict], max_tokens: int, token_ends) -> None:
    chunks = chunk_document(text, spans, max_tokens, token_ends)
    seen = []
    for c in chunks:
        assert text[c.start:c.end] == c.text and c.text
        assert c.over_limit or len(token_ends(c.text)) <= max_tokens
        for s in c.spans:
            assert c.text[s["start"]:s["end"]] == text[c.start + s["start"]:c.start + s["end"]]
            seen.append((c.start + s["start"], c.start + s["end"], s["label"]))
        for s in spans:  # no entity crosses the chunk's edges
            assert not (s["start"] < c.start < s["end"]) and not (s["start"] < c.end < s["end"])
    assert sorted(seen) == sorted((s["start"], s["end"], s["label"]) for s in spans)  # every entity in one chunk
    assert all(a.end <= b.start for a, b in zip(chunks, chunks[1:]))
    assert not text[chunks[-1].end:].strip() and not text[:chunks[0].start].strip()


def test_chunking_never_splits_an_entity_on_real_contracts(token_ends):
    rng = random.Random(20)
    docs = contracts(rng)
    chunked = 0
    for text, spans in docs:
        for max_tokens in (64, 256, 1024):
            check(text, spans, max_tokens, token_ends)
            chunked += len(chunk_document(text, spans, max_tokens, token_ends)) > 1
    assert chunked >= len(docs)  # the property was exercised on cut documents, not only on whole ones


def test_short_document_is_one_chunk(token_ends):
    text = "Aspirin helps. 阿司匹林有效。"
    spans = [{"start": 0, "end": 7, "label": "Drug", "from_name": "entities"}]
    [c] = chunk_document(text, spans, 64, token_ends)
    assert (c.start, c.end, c.text, c.spans, c.over_limit) == (0, len(text), text, spans, False)


def test_cuts_at_sentences_outside_entities(token_ends):
    text = "Alpha beta. Gamma delta. Epsilon zeta. 阿司匹林有效。青霉素无效。"
    assert cut_points(text, []) == [12, 25, 39, 46]
    assert cut_points(text, [{"start": 6, "end": 17}]) == [25, 39, 46]  # "beta. Gamma" is one entity
    chunks = chunk_document(text, [{"start": 6, "end": 17, "label": "X", "from_name": "e"}], 6, token_ends)
    assert [c.text for c in chunks][0] == "Alpha beta. Gamma delta."
    assert chunks[0].spans == [{"start": 6, "end": 17, "label": "X", "from_name": "e"}]


def test_no_legal_cut_gives_one_chunk_over_the_limit(token_ends):
    text = "word " * 50
    spans = [{"start": 0, "end": len(text.rstrip()), "label": "X", "from_name": "e"}]
    [c] = chunk_document(text, spans, 10, token_ends)
    assert c.over_limit and c.text == text.rstrip() and c.spans == spans
