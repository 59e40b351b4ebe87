"""Gold dataset writers + manifest: the only code that writes exports/.

One streaming pass over Label Studio tasks writes every format at once into a temp dir inside
``<out_root>/<slug>/``; the dir is renamed to its version name only when everything is written and
fsynced, so a killed export never leaves a partial version. Layout: see exports/README.md.

Modules: options (what a caller passes and gets back), driver (export_dataset), parse (task → record),
writers (JSONL, CSV), tokens + layout (CoNLL, Parquet tags), hf (Parquet), parallel (helper processes),
labelcheck (suspect labels), manifest (manifest, datasheet, dataset card), atomic (hashed, fsynced files
and versions), readers (reading an export back), llm + prompts + chunking (the LLM fine-tuning formats).
"""
from __future__ import annotations

from .atomic import list_versions
from .driver import export_dataset
from .layout import bio_to_spans, layout_document, tokenize_for_conll
from .options import FORMATS, LLM_FORMATS, ExportOptions, ExportResult, ProjectInfo
from .prompts import answer_of, answer_text, build_prompt, find_template
from .readers import read_conll, read_jsonl, read_jsonl_spans

__all__ = [
    "FORMATS",
    "LLM_FORMATS",
    "ExportOptions",
    "ExportResult",
    "ProjectInfo",
    "answer_of",
    "answer_text",
    "build_prompt",
    "find_template",
    "bio_to_spans",
    "export_dataset",
    "layout_document",
    "list_versions",
    "read_conll",
    "read_jsonl",
    "read_jsonl_spans",
    "tokenize_for_conll",
]
