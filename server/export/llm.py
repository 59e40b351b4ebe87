"""The LLM fine-tuning outputs: chat, instruction (Alpaca) and preference JSON Lines per split, and gold/.

- ``chat/{split}.jsonl``: ``{"messages": [system, user, assistant], "id", "split"}``; the user turn is the
  instruction and the document, the assistant turn the gold answer (prompts.answer_of).
- ``instruction/{split}.jsonl``: ``{"instruction", "input", "output", "id", "split"}`` with the same content.
- ``preference/{split}.jsonl``: ``{"prompt", "chosen", "rejected", "id", "split", "model_version"}`` for every
  document whose annotator changed the model's pre-annotation: the gold answer chosen, the model's rejected.
- ``gold/{split}.jsonl``: per example, its text and gold spans with character offsets and choices: what
  ``goldloop score`` reads.

A document longer than ``max_tokens`` becomes several examples (chunking.chunk_document), ids ``<task id>-<n>``.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ml_backend.results import choices_of, spans_of
from ml_backend.schema import TaskSpec
from ml_backend.splits import SPLITS

from ..errors import ExportError
from .atomic import HashingFile, close_quietly
from .chunking import Chunk, TokenEnds, chunk_document, hf_token_ends
from .options import LLM_FORMATS
from .prompts import SYSTEM_PROMPT, Prompt, answer_of, answer_text


@dataclass
class LLMSettings:
    """What the LLM outputs need beyond the record: the rendered prompt, the chunk size, the tokenizer."""

    prompt: Prompt
    max_tokens: int
    tokenizer_name: str
    token_ends: TokenEnds


def load_tokenizer(name: str) -> TokenEnds:
    """Token end offsets from a Hugging Face fast tokenizer, loaded from a local path or the local cache only."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name, local_files_only=True, use_fast=True)
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot load tokenizer {name!r} offline: {str(exc).splitlines()[0]}") from None
    if not getattr(tok, "is_fast", False):
        raise ExportError(f"tokenizer {name!r} has no fast version (character offsets are needed to cut chunks)")
    return hf_token_ends(tok)


def model_answer(spec: TaskSpec, text: str, result: Sequence) -> tuple[list[dict], dict[str, list[str]]]:
    """The spans and choices of a prediction's result, as a record holds them (spans off the text dropped)."""
    spans = []
    for c in spec.span_controls:
        for s, e, lbl in spans_of(result, c.name):
            if 0 <= s < e <= len(text) and lbl in c.labels:
                spans.append({"start": s, "end": e, "label": lbl, "text": text[s:e], "from_name": c.name})
    choices = {c.name: [x for x in dict.fromkeys(choices_of(result, c.name)) if x in c.labels]
               for c in spec.choice_controls}
    return spans, choices


class LLMOutputs:
    """The chat, instruction and preference files (those asked for) and gold/, written one record at a time."""

    def __init__(self, root: Path, spec: TaskSpec, formats: Sequence[str], settings: LLMSettings):
        self.root = root
        self.spec = spec
        self.settings = settings
        self.formats = [f for f in LLM_FORMATS if f in formats]
        self.files: dict[str, HashingFile] = {}
        for sp in SPLITS:
            for kind in (*self.formats, "gold"):
                self.files[f"{kind}/{sp}.jsonl"] = HashingFile(root / kind / f"{sp}.jsonl")
        self.examples: Counter = Counter()
        self.chunked_documents: Counter = Counter()
        self.over_limit: Counter = Counter()
        self.tokens: Counter = Counter()
        self.pairs: Counter = Counter()
        self._instruction_tokens = len(settings.token_ends(settings.prompt.instruction))
        self._system_tokens = len(settings.token_ends(SYSTEM_PROMPT))

    def write(self, rec: Mapping, prediction: Sequence | None) -> None:
        """Write one resolved document (``prediction``: the result of the pre-annotation the annotator changed)."""
        split, text = rec["split"], rec["text"]
        chunks = chunk_document(text, rec["spans"], self.settings.max_tokens, self.settings.token_ends)
        rejected_spans, rejected_choices = (
            model_answer(self.spec, text, prediction) if prediction is not None and rec["origin"] == "human_changed"
            else (None, None)
        )
        if len(chunks) > 1:
            self.chunked_documents[split] += 1
        for n, chunk in enumerate(chunks):
            eid = rec["id"] if len(chunks) == 1 else f"{rec['id']}-{n}"
            gold = answer_of(self.spec, chunk.spans, rec["choices"])
            self._write_example(split, eid, chunk, gold)
            if rejected_spans is not None and "preference" in self.formats:
                inner = [{**s, "start": s["start"] - chunk.start, "end": s["end"] - chunk.start}
                         for s in rejected_spans if chunk.start <= s["start"] and s["end"] <= chunk.end]
                rejected = answer_of(self.spec, inner, rejected_choices)
                if rejected != gold:
                    self.pairs[split] += 1
                    self.files[f"preference/{split}.jsonl"].write_json({
                        "prompt": self._user(chunk.text), "chosen": answer_text(gold), "rejected": answer_text(rejected),
                        "id": eid, "split": split, "model_version": rec.get("model_version"),
                    })

    def _user(self, text: str) -> str:
        return f"{self.settings.prompt.instruction}\n\nDocument:\n{text}"

    def _write_example(self, split: str, eid, chunk: Chunk, gold: dict) -> None:
        output = answer_text(gold)
        self.examples[split] += 1
        self.over_limit[split] += chunk.over_limit
        self.tokens[split] += (self._system_tokens + self._instruction_tokens + chunk.tokens
                               + len(self.settings.token_ends(output)))
        if "chat" in self.formats:
            self.files[f"chat/{split}.jsonl"].write_json({
                "messages": [
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": self._user(chunk.text)},
                    {"role": "assistant", "content": output},
                ],
                "id": eid, "split": split,
            })
        if "instruction" in self.formats:
            self.files[f"instruction/{split}.jsonl"].write_json({
                "instruction": self.settings.prompt.instruction, "input": chunk.text, "output": output,
                "id": eid, "split": split,
            })
        self.files[f"gold/{split}.jsonl"].write_json({
            "id": eid, "split": split, "text": chunk.text, "offset": chunk.start,
            "spans": [{"start": s["start"], "end": s["end"], "label": s["label"], "from_name": s["from_name"]}
                      for s in chunk.spans],
            "choices": gold_choices(self.spec, gold),
        })

    def close(self) -> tuple[dict[str, str], dict[str, int]]:
        """Close every file; their sha256 and sizes by relative path."""
        hashes, sizes = {}, {}
        for rel, f in self.files.items():
            hashes[rel], sizes[rel] = f.close(), f.bytes
        return hashes, sizes

    def abort(self) -> None:
        close_quietly(self.files.values())

    def format_paths(self) -> dict:
        """The manifest's ``formats`` entries of the LLM outputs."""
        return {f: {sp: f"{f}/{sp}.jsonl" for sp in SPLITS} for f in (*self.formats, "gold")}

    def summary(self) -> dict:
        """The manifest's ``llm`` section: template, tokenizer, chunking and per-split counts."""
        p = self.settings.prompt
        return {
            "template": {"source": p.source, "sha256": p.sha256, "text": p.template},
            "system_prompt": SYSTEM_PROMPT,
            "instruction": p.instruction,
            "tokenizer": self.settings.tokenizer_name,
            "max_tokens": self.settings.max_tokens,
            "per_split": {
                sp: {"examples": self.examples.get(sp, 0), "tokens": self.tokens.get(sp, 0),
                     "chunked_documents": self.chunked_documents.get(sp, 0),
                     "chunks_over_limit": self.over_limit.get(sp, 0),
                     "preference_pairs": self.pairs.get(sp, 0) if "preference" in self.formats else None}
                for sp in SPLITS
            },
        }


def gold_choices(spec: TaskSpec, answer: Mapping) -> dict[str, list[str]]:
    """The choices of an answer object as lists per control (a single choice as a one-item list)."""
    out = {}
    for c in spec.choice_controls:
        v = answer.get(c.name)
        out[c.name] = [x for x in v if isinstance(x, str)] if isinstance(v, list) else ([v] if isinstance(v, str) else [])
    return out
