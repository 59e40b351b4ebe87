"""Which LLM a project trusts: the newest `goldloop llm eval` record of a model (and prompt) decides. Kept apart from
evaluate.py, which runs rounds' code, so the round itself (silver labels) can ask without importing it."""
from __future__ import annotations

from .. import store

TRUSTED, NOT_TRUSTED = "trusted", "not trusted"  # an llm-eval record's status: the gate's decision
KIND = "llm"
TRIGGER = "llm-eval"


def _evals(db, project_id: int) -> list[dict]:
    return [r for r in store.list_versions(db, project_id) if r.get("trigger") == TRIGGER and r.get("status") in (TRUSTED, NOT_TRUSTED)]


def trusted(db, project_id: int, model: str, prompt_hash: str) -> dict | None:
    """The newest llm-eval record of this model and prompt for the project when it was trusted, else None."""
    rows = [r for r in _evals(db, project_id) if r.get("llm_model") == model and r.get("prompt_hash") == prompt_hash]
    return rows[-1] if rows and rows[-1]["status"] == TRUSTED else None


def trusted_model(db, project_id: int) -> dict | None:
    """The project's newest llm-eval record when it trusted its LLM (the newest eval of any model decides), else None."""
    rows = _evals(db, project_id)
    return rows[-1] if rows and rows[-1]["status"] == TRUSTED else None
