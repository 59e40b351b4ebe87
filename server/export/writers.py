"""The per-format outputs of one export behind one write(record): JSONL, CSV, and the token outputs."""
from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from ml_backend.schema import TaskSpec
from ml_backend.splits import SPLITS

from .atomic import HashingFile, close_quietly
from .parallel import TokenWorkers
from .tokens import TokenOutputs, conll_paths

PARALLEL_MIN_DOCS = 20_000  # larger exports build CoNLL/Parquet in helper processes (measured break-even ~10k)


class Writers:
    """Every per-format output of one export, written incrementally.

    JSONL and CSV are written here; CoNLL and Parquet (tokenisation, the costly part) by TokenOutputs, in
    a helper process once the export is large enough for a second core to pay (``parallel``: None = auto).
    """

    def __init__(self, root: Path, spec: TaskSpec, formats: Sequence[str], primary: str,
                 parallel: bool | None = None, expected: int | None = None):
        self.root = root
        self.spec = spec
        self.formats = formats
        self.primary = primary
        self.files: dict[str, HashingFile] = {}
        self.hashes: dict[str, str] = {}
        self.sizes: dict[str, int] = {}
        self.conll_paths = conll_paths(spec, formats, primary)
        self.hf_info: dict | None = None
        self.overlaps_dropped: dict[str, int] = {}
        if "jsonl" in formats:
            self._open("data.jsonl")
        self.csv_writer = None
        if "csv" in formats and spec.choice_controls:
            self.csv_writer = csv.writer(self._open("data.csv"), lineterminator="\n")
            self.csv_writer.writerow(["id", "text", "split", *(c.name for c in spec.choice_controls)])
        self.has_hf = "hf" in formats
        wanted = bool(self.conll_paths) or self.has_hf
        self._pending: list[dict] | None = None
        if parallel is None:
            parallel = wanted and (os.cpu_count() or 1) > 1
            if parallel and (expected or 0) < PARALLEL_MIN_DOCS:
                self._pending = []  # size unknown or small: decide once PARALLEL_MIN_DOCS are seen
        self.tokens: TokenOutputs | TokenWorkers | None = None
        if wanted and self._pending is None:
            self.tokens = (TokenWorkers if parallel else TokenOutputs)(root, spec, formats, primary)

    def _open(self, rel: str) -> HashingFile:
        self.files[rel] = HashingFile(self.root / rel)
        return self.files[rel]

    def _start_tokens(self, parallel: bool) -> None:
        pending, self._pending = self._pending or [], None
        self.tokens = (TokenWorkers if parallel else TokenOutputs)(self.root, self.spec, self.formats, self.primary)
        for rec in pending:
            self.tokens.write(rec)

    def write(self, rec: dict) -> None:
        """Write one resolved document to every open format."""
        if "data.jsonl" in self.files:
            self.files["data.jsonl"].write_json(rec)
        if self.csv_writer is not None:
            self.csv_writer.writerow(
                [rec["id"], rec["text"], rec["split"],
                 *("|".join(rec["choices"][c.name]) for c in self.spec.choice_controls)]
            )
        if self._pending is not None:
            self._pending.append(rec)
            if len(self._pending) >= PARALLEL_MIN_DOCS:
                self._start_tokens(parallel=True)
        elif self.tokens is not None:
            self.tokens.write(rec)

    def close(self) -> None:
        """Close (flush + fsync) every file and record its sha256 and size."""
        for rel, f in self.files.items():
            self.hashes[rel] = f.close()
            self.sizes[rel] = f.bytes
        if self._pending is not None:
            self._start_tokens(parallel=False)  # small export: a helper process would cost more than it saves
        if self.tokens is not None:
            result = self.tokens.close()
            self.hashes.update(result["hashes"])
            self.sizes.update(result["sizes"])
            self.overlaps_dropped = result["overlaps_dropped"]
            self.hf_info = result["hf"]

    def abort(self) -> None:
        """Close whatever is open without caring about the content."""
        close_quietly(self.files.values())
        if self.tokens is not None:
            self.tokens.abort()

    def format_paths(self) -> dict:
        """The manifest's ``formats``: the file (or files per control and split) of each format, None if not written."""
        return {
            "jsonl": "data.jsonl" if "jsonl" in self.formats else None,
            "conll": self.conll_paths or None,
            "hf": {sp: f"hf/{sp}.parquet" for sp in SPLITS} if self.has_hf else None,
            "csv": "data.csv" if self.csv_writer is not None else None,
        }
