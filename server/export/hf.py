"""Hugging Face datasets export: one Parquet file per split, typed `datasets` Features in the schema metadata.

`datasets` and `pyarrow` are imported only when this format is written: they are heavy.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ml_backend.schema import Control, TaskSpec
from ml_backend.splits import SPLITS

from .atomic import fsync_path

HF_BATCH_ROWS = 2000  # a Parquet row group holds at most this many documents ...
HF_BATCH_CHARS = 8_000_000  # ... or about this many characters of text, whichever comes first
RESERVED_HF_COLUMNS = {"id", "text", "tokens", "ner_tags", "spans"}


def _hf_column_names(spec: TaskSpec, bio_controls: Sequence[Control]) -> tuple[dict[str, str], dict[str, str]]:
    """Parquet column of each span control's tags and of each choice control (renamed off reserved names)."""
    tag_columns = {c.name: ("ner_tags" if len(bio_controls) == 1 else f"ner_tags_{c.name}") for c in bio_controls}
    choice_columns = {
        c.name: (f"choice_{c.name}" if c.name in RESERVED_HF_COLUMNS or c.name.startswith("ner_tags") else c.name)
        for c in spec.choice_controls
    }
    return tag_columns, choice_columns


def hf_layout(spec: TaskSpec, bio_controls: Sequence[Control], names: Mapping[str, Sequence[str]]) -> tuple[Any, list[tuple[str, str]]]:
    """The Parquet export's Arrow schema (typed `datasets` Features in its metadata) and column descriptions."""
    import datasets  # imported here: heavy, and only needed when hf is asked for

    tag_columns, choice_columns = _hf_column_names(spec, bio_controls)
    V, L, CL = datasets.Value, datasets.List, datasets.ClassLabel
    feats: dict[str, Any] = {"id": V("int64"), "text": V("string")}
    if bio_controls:
        feats["tokens"] = L(V("string"))
        for c in bio_controls:
            feats[tag_columns[c.name]] = L(CL(names=list(names[c.name])))
    feats["spans"] = L(
        {"start": V("int64"), "end": V("int64"), "label": V("string"), "text": V("string"), "from_name": V("string")}
    )
    for c in spec.choice_controls:
        feats[choice_columns[c.name]] = L(CL(names=list(c.labels))) if c.multi else CL(names=list(c.labels))
    features = datasets.Features(feats)
    return features.arrow_schema, [(name, _feature_text(feat)) for name, feat in features.items()]


class HFWriter:
    """Parquet per split with Hugging Face `datasets` Features in the schema metadata, in row-group batches."""

    def __init__(self, root: Path, spec: TaskSpec, bio_controls: list[Control], names: Mapping[str, list[str]],
                 splits: Sequence[str] = SPLITS, layout: tuple[Any, list[tuple[str, str]]] | None = None):
        self.root = root
        self.splits = tuple(splits)
        root.mkdir(parents=True, exist_ok=True)
        self.spec = spec
        self.bio_controls = bio_controls
        self.tag_columns, self.choice_columns = _hf_column_names(spec, bio_controls)
        self.choice_index = {c.name: {lbl: i for i, lbl in enumerate(c.labels)} for c in spec.choice_controls}
        # (Arrow schema with the `datasets` Features in its metadata, column descriptions): built once by
        # hf_layout, passed to helper processes so they need not import `datasets`
        self.schema, self.column_texts = layout or hf_layout(spec, bio_controls, names)
        self.columns = [f.name for f in self.schema]
        self.flat_columns = {"tokens", *self.tag_columns.values()}
        self.buffers: dict[str, dict[str, list]] = {sp: self._empty() for sp in self.splits}
        self.writers: dict[str, Any] = {}
        self.rows: Counter = Counter()

    def _empty(self) -> dict[str, list]:
        buf: dict[str, list] = {k: [] for k in self.columns}
        buf["_offsets"] = [0]
        buf["_chars"] = [0]
        return buf

    def add(self, rec: dict, tokens: list[str], tag_ids: Mapping[str, list[int]]) -> None:
        """Buffer one document; flush its split's buffer as a row group when full."""
        buf = self.buffers[rec["split"]]
        buf["id"].append(rec["id"])
        buf["text"].append(rec["text"])
        buf["_chars"][0] += len(rec["text"])
        if self.bio_controls:
            # token-level columns are kept flat (+ offsets) and become Arrow list arrays without nesting
            buf["tokens"] += tokens
            buf["_offsets"].append(len(buf["tokens"]))
            for c in self.bio_controls:
                buf[self.tag_columns[c.name]] += tag_ids[c.name]
        buf["spans"].append(rec["spans"])
        for c in self.spec.choice_controls:
            idx = self.choice_index[c.name]
            got = [idx[lbl] for lbl in rec["choices"][c.name]]
            buf[self.choice_columns[c.name]].append(got if c.multi else (got[0] if got else -1))
        if len(buf["id"]) >= HF_BATCH_ROWS or buf["_chars"][0] >= HF_BATCH_CHARS:
            self._flush(rec["split"])

    def _writer(self, split: str) -> Any:
        import pyarrow.parquet as pq

        if split not in self.writers:
            self.writers[split] = pq.ParquetWriter(self.root / f"{split}.parquet", self.schema)
        return self.writers[split]

    def _flush(self, split: str) -> None:
        import pyarrow as pa

        buf = self.buffers[split]
        if not buf["id"]:
            return
        offsets = pa.array(buf["_offsets"], type=pa.int32())
        arrays = []
        for f in self.schema:
            if f.name in self.flat_columns:
                arrays.append(pa.ListArray.from_arrays(offsets, pa.array(buf[f.name], type=f.type.value_type)))
            else:
                arrays.append(pa.array(buf[f.name], type=f.type))
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        self._writer(split).write_table(table)
        self.rows[split] += table.num_rows
        self.buffers[split] = self._empty()

    def close(self) -> list[str]:
        """Flush and close every split file (an empty split gets a schema-only file); return relative paths."""
        out = []
        for split in self.splits:
            self._flush(split)
            w = self._writer(split)
            if self.rows[split] == 0:
                w.write_table(self.schema.empty_table())
            w.close()
            fsync_path(self.root / f"{split}.parquet")
            out.append(f"hf/{split}.parquet")
        return out

    def abort(self) -> None:
        """Close open writers, ignoring errors."""
        for w in self.writers.values():
            try:
                w.close()
            except (OSError, ValueError):
                pass


def _feature_text(feat: Any) -> str:
    names = getattr(feat, "names", None)
    if names is not None:
        return f"ClassLabel {list(names)}"
    inner = getattr(feat, "feature", None)
    if inner is not None:
        return f"list of {_feature_text(inner) if not isinstance(inner, dict) else 'struct ' + str(list(inner))}"
    return str(getattr(feat, "dtype", feat))
