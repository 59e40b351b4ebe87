"""The LLM's answers, kept by (text hash, prompt hash, model) in a SQLite file of the data dir
(DataDir.llm_cache_path), and which tasks already got a prediction of a model version.

Every answer is written (and committed) as it arrives, so a run killed half-way loses nothing: the next run asks
only for what is not here. A dropped document is not cached: the next run asks again. The file holds no key or URL.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Iterable

import sqlite_utils

ANSWERS = "answers"
POSTED = "posted"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class AnswerCache:
    """Answers and posted tasks in one SQLite file."""

    def __init__(self, path: Path | str):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite_utils.Database(path)
        self.db.execute("PRAGMA busy_timeout = 10000")
        if ANSWERS not in self.db.table_names():
            self.db[ANSWERS].create({"text_hash": str, "prompt_hash": str, "model": str, "answer": str, "created_at": float},
                                    pk=("text_hash", "prompt_hash", "model"))
        if POSTED not in self.db.table_names():
            self.db[POSTED].create({"project_id": int, "task_id": int, "model_version": str, "created_at": float},
                                   pk=("project_id", "task_id", "model_version"))

    def get(self, text: str, prompt_hash: str, model: str) -> dict | None:
        """The cached answer object, or None when there is none."""
        row = next(iter(self.db[ANSWERS].rows_where("text_hash = ? and prompt_hash = ? and model = ?",
                                                    [text_hash(text), prompt_hash, model], limit=1)), None)
        return json.loads(row["answer"]) if row else None

    def latest(self, text: str, model: str) -> dict | None:
        """The newest cached answer of ``model`` for a text under any prompt (a prompt's few-shot examples change as
        labels come in; the answer stays the model's reading of that text), or None."""
        row = next(iter(self.db[ANSWERS].rows_where("text_hash = ? and model = ?", [text_hash(text), model],
                                                    order_by="created_at desc", limit=1)), None)
        return json.loads(row["answer"]) if row else None

    def put(self, text: str, prompt_hash: str, model: str, answer: dict) -> None:
        self.db[ANSWERS].upsert({"text_hash": text_hash(text), "prompt_hash": prompt_hash, "model": model,
                                 "answer": json.dumps(answer, ensure_ascii=False), "created_at": time.time()},
                                pk=("text_hash", "prompt_hash", "model"))

    def posted(self, project_id: int, model_version: str) -> set[int]:
        """The tasks of a project that already hold a prediction of this model version (stored by an earlier run)."""
        return {r["task_id"] for r in self.db[POSTED].rows_where("project_id = ? and model_version = ?", [int(project_id), model_version])}

    def mark_posted(self, project_id: int, task_ids: Iterable[int], model_version: str) -> None:
        now = time.time()
        self.db[POSTED].upsert_all([{"project_id": int(project_id), "task_id": int(t), "model_version": model_version, "created_at": now}
                                    for t in task_ids], pk=("project_id", "task_id", "model_version"))

    def __len__(self) -> int:
        return self.db[ANSWERS].count
