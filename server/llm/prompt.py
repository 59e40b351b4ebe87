"""The prompt of a project, from its labeling config: the instruction, the JSON schema of the answer, few-shot gold.

The instruction is the LLM export's (server/export/prompts.py): control and label names with their ``hint`` /
``alias`` attributes, the answer format, an example; the project's own instructions (Label Studio's
``expert_instruction``) go in the system message. The answer's JSON schema is sent as ``response_format`` and,
for servers that ignore it, written into the prompt too. Each document gets the ``k`` train-split gold documents
most like it (TF-IDF cosine over words and character n-grams, so Chinese text works too) as earlier user /
assistant turns, their answers written exactly as the gold export writes them.

The prompt hash names what makes answers differ: system message, instruction, schema, k and the example length
limit. It does not cover which gold documents are picked, so the cache survives new annotations, and a trust
decision holds for a prompt until its wording changes.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from ml_backend.schema import TaskSpec

from ..export.prompts import SYSTEM_PROMPT, answer_of, answer_text, build_prompt, span_keys
from .provider import LLMError

MAX_DOC_CHARS = 6000  # a longer document is cut here (the rest gets no suggestions): keeps one prompt bounded
MAX_EXAMPLE_CHARS = 600  # a few-shot example is cut here, its spans past the cut left out
_TAGS = re.compile(r"<[^>]+>")


def answer_schema(spec: TaskSpec) -> dict:
    """The JSON schema of an answer: a list of {text, label} per span control, a label (or list) per Choices one."""
    props: dict[str, Any] = {}
    for c in spec.span_controls:
        props[span_keys(spec)[c.name]] = {
            "type": "array",
            "items": {"type": "object", "properties": {"text": {"type": "string"}, "label": {"type": "string", "enum": list(c.labels)}},
                      "required": ["text", "label"]}}
    for c in spec.choice_controls:
        one = {"type": "string", "enum": list(c.labels)}
        props[c.name] = {"type": "array", "items": one} if c.multi else one
    return {"type": "object", "properties": props, "required": list(props)}


def gold_answer(spec: TaskSpec, record: dict, limit: int | None = None) -> tuple[str, dict]:
    """A gold record's text (cut at ``limit``) and its answer object as the export writes it."""
    text = record_text(spec, record)
    if limit is not None and len(text) > limit:
        text = text[:limit]
    spans = [{"from_name": s.get("from_name", spec.span_controls[0].name if spec.span_controls else ""), "label": s["label"],
              "start": s["start"], "end": s["end"], "text": text[s["start"]:s["end"]]}
             for s in record.get("spans") or [] if s["end"] <= len(text)]
    return text, answer_of(spec, spans, record.get("choices") or {})


def record_text(spec: TaskSpec, record: dict) -> str:
    """The text of a gold record (``text``, else the config's value field in ``data``)."""
    text = record.get("text")
    if not isinstance(text, str):
        text = (record.get("data") or {}).get(text_field(spec), "")
    return text if isinstance(text, str) else ""


def project_instruction(project) -> str | None:
    """A Label Studio project's labeling instructions (``expert_instruction``), when it has any."""
    text = getattr(project, "expert_instruction", None)
    return text if isinstance(text, str) and text.strip() else None


def text_field(spec: TaskSpec) -> str:
    """The one task data field the LLM reads; LLMError for a config whose controls read several."""
    fields = spec.value_fields
    if len(fields) != 1:
        raise LLMError(f"LLM pre-annotation reads one text field; this labeling config's controls read {len(fields)}: {list(fields)}")
    return fields[0]


class FewShot:
    """The train split's gold documents, and the ``k`` most similar to a text (TF-IDF cosine)."""

    def __init__(self, spec: TaskSpec, records: Sequence[dict], k: int):
        self.spec, self.k = spec, k
        self.records = [r for r in records if record_text(spec, r).strip()]
        self._vec = self._matrix = None
        if k > 0 and self.records:
            from sklearn.feature_extraction.text import TfidfVectorizer

            # character n-grams inside word boundaries: words for Latin script, bigrams for CJK (no spaces there)
            self._vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, max_features=50_000)
            self._matrix = self._vec.fit_transform([record_text(spec, r)[:MAX_DOC_CHARS] for r in self.records])

    def pick(self, text: str) -> list[dict]:
        """The k records most like ``text``, most similar last (nearest the question), the text itself left out."""
        if self._vec is None:
            return []
        sims = (self._matrix @ self._vec.transform([text[:MAX_DOC_CHARS]]).T).toarray().ravel()
        order = [i for i in sims.argsort()[::-1] if record_text(self.spec, self.records[i]) != text][: self.k]
        return [self.records[i] for i in reversed(order)]


@dataclass
class PromptBuilder:
    """Messages for one document: system, few-shot turns, the document."""

    spec: TaskSpec
    instruction: str
    system: str
    schema: dict
    k: int = 3
    fewshot: FewShot | None = None
    hash: str = field(init=False)

    def __post_init__(self) -> None:
        key = json.dumps([self.system, self.instruction, self.schema, self.k, MAX_EXAMPLE_CHARS, MAX_DOC_CHARS], sort_keys=True)
        self.hash = hashlib.sha256(key.encode("utf-8")).hexdigest()

    @classmethod
    def for_project(cls, spec: TaskSpec, label_config: str, train: Sequence[dict] = (), k: int = 3,
                    expert_instruction: str | None = None) -> "PromptBuilder":
        """The prompt of a project: its labeling config, its instructions, few-shot examples from ``train``."""
        text_field(spec)
        schema = answer_schema(spec)
        instruction = (build_prompt(spec, label_config).instruction
                       + "\nThe answer must match this JSON schema: " + json.dumps(schema, ensure_ascii=False)
                       + ("\nCopy each entity's text exactly as it is written in the document." if spec.span_controls else ""))
        system = SYSTEM_PROMPT
        guide = _TAGS.sub(" ", expert_instruction or "").strip()
        if guide:  # Label Studio's instructions may hold HTML; the model needs their words
            system += "\nThe project's labeling instructions:\n" + re.sub(r"\s+", " ", guide)[:2000]
        # the instruction goes in the system message once, not before every few-shot document: on a small server
        # the prompt's length is most of a request's time
        return cls(spec, instruction, system + "\n\n" + instruction, schema, k, FewShot(spec, train, k) if k > 0 else None)

    @property
    def hash8(self) -> str:
        return self.hash[:8]

    def messages(self, text: str) -> list[dict]:
        """The chat messages that ask for ``text``'s answer."""
        msgs = [{"role": "system", "content": self.system}]
        for rec in self.fewshot.pick(text) if self.fewshot is not None else []:
            ex_text, answer = gold_answer(self.spec, rec, MAX_EXAMPLE_CHARS)
            msgs += [{"role": "user", "content": self._user(ex_text)}, {"role": "assistant", "content": answer_text(answer)}]
        msgs.append({"role": "user", "content": self._user(text[:MAX_DOC_CHARS])})
        return msgs

    @staticmethod
    def _user(text: str) -> str:
        return f"Document:\n{text}"
