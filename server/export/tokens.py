"""The outputs built from the token layout: CoNLL per (span control, split) and Parquet per split.

The most expensive part of an export; it runs in the export's process, or in helper processes
(server/export/parallel.py) that the export feeds records to, with identical results.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ml_backend.alignment import bio_labels, select_non_overlapping
from ml_backend.schema import Control, TaskSpec
from ml_backend.splits import SPLITS

from .atomic import HashingFile, close_quietly, sha256_file
from .hf import HFWriter
from .layout import layout_document

OVERLAP_RULE = (
    "BIO formats (CoNLL, hf ner_tags) cannot hold overlapping or nested spans: per span control the longer "
    "span is kept, ties go to the earlier start (then label order); data.jsonl keeps every span"
)


def bio_controls(spec: TaskSpec, primary: str) -> list[Control]:
    """The span controls on the primary text: the ones CoNLL and the Parquet tag columns hold."""
    return [c for c in spec.span_controls if c.value_field == primary]


def tag_names(controls: Sequence[Control]) -> dict[str, list[str]]:
    """BIO tag names per span control: O, then B-/I- per label in schema order (I- ids are even)."""
    return {c.name: bio_labels(c.labels) for c in controls}


def conll_paths(spec: TaskSpec, formats: Sequence[str], primary: str) -> dict[str, dict[str, str]]:
    """CoNLL file per (span control, split): conll/<split>.conll, or conll/<control>/<split>.conll for several."""
    if "conll" not in formats:
        return {}
    controls = bio_controls(spec, primary)
    single = len(controls) == 1
    return {
        c.name: {sp: (f"conll/{sp}.conll" if single else f"conll/{c.name}/{sp}.conll") for sp in SPLITS}
        for c in controls
    }


class TokenOutputs:
    """CoNLL and Parquet files of the splits this instance owns, written one record at a time."""

    def __init__(self, root: Path, spec: TaskSpec, formats: Sequence[str], primary: str,
                 splits: Sequence[str] = SPLITS, hf_schema: tuple[Any, list[tuple[str, str]]] | None = None):
        self.root = root
        self.splits = tuple(splits)  # the splits whose files this instance owns (all of them when in-process)
        self.bio_controls = bio_controls(spec, primary)
        self.label_index = {c.name: {lbl: i for i, lbl in enumerate(c.labels)} for c in self.bio_controls}
        self.names = tag_names(self.bio_controls)
        self.conll_paths = conll_paths(spec, formats, primary)
        self.files: dict[str, HashingFile] = {}
        for paths in self.conll_paths.values():
            for sp in self.splits:
                self.files[paths[sp]] = HashingFile(root / paths[sp])
        self.hf = (
            HFWriter(root / "hf", spec, self.bio_controls, self.names, self.splits, hf_schema)
            if "hf" in formats else None
        )
        self.need_tokens = bool(self.bio_controls) and ("conll" in formats or "hf" in formats)
        self.overlaps_dropped: Counter = Counter()

    def write(self, rec: dict) -> None:
        tokens: list[str] = []
        tag_ids: dict[str, list[int]] = {}
        if self.need_tokens:
            bio: dict[str, list] = {}
            for c in self.bio_controls:
                kept, dropped = select_non_overlapping(
                    (s["start"], s["end"], s["label"]) for s in rec["spans"] if s["from_name"] == c.name
                )
                bio[c.name] = kept
                if dropped:
                    self.overlaps_dropped[c.name] += dropped
            lay = layout_document(rec["text"], bio, self.label_index, self.names, conll=bool(self.conll_paths))
            tokens, tag_ids = lay.tokens, lay.tag_ids
            split = rec["split"]
            for c, paths in self.conll_paths.items():
                self.files[paths[split]].write(lay.conll[c])
        if self.hf is not None:
            self.hf.add(rec, tokens, tag_ids)

    def close(self) -> dict:
        """Close (flush + fsync) every file; the sha256 and size of each, overlap counts, Parquet facts."""
        hashes, sizes = {}, {}
        for rel, f in self.files.items():
            hashes[rel] = f.close()
            sizes[rel] = f.bytes
        hf_info = None
        if self.hf is not None:
            for rel in self.hf.close():
                path = self.root / rel
                hashes[rel] = sha256_file(path)
                sizes[rel] = path.stat().st_size
            hf_info = {
                "rows": {sp: self.hf.rows.get(sp, 0) for sp in self.splits},
                "columns": self.hf.column_texts,
            }
        return {"hashes": hashes, "sizes": sizes, "overlaps_dropped": dict(self.overlaps_dropped), "hf": hf_info}

    def abort(self) -> None:
        """Close whatever is open without caring about the content."""
        close_quietly(self.files.values())
        if self.hf is not None:
            self.hf.abort()
