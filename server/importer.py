"""The document import pipeline: read, clean and deduplicate files, import them into a project in batches,
pre-annotate the new tasks, and record each import in goldloop's store."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from label_studio_sdk import LabelStudio

from . import ingest, ls_client, store
from .config import Settings
from .deid import write_review
from .errors import LabelStudioError, StackError
from .schema_files import text_field_of


@dataclass
class ImportOutcome:
    """What one import did: the report of the cleaning, the new task ids, the predictions attached."""

    project_id: int
    schema_name: str
    task_ids: list[int]
    report: Any
    pre_annotated: int = 0
    import_id: int = 0
    warnings: list[str] = field(default_factory=list)
    review_path: Path | None = None  # where the borderline spans were asked for (--review-pii)
    review_spans: int = 0  # how many were written there

    def summary_lines(self) -> list[str]:
        """Human lines for the CLI."""
        lines = list(self.report.summary_lines()) if hasattr(self.report, "summary_lines") else []
        if self.review_path is not None and self.review_spans:
            lines.append(f"review list: {self.review_spans} borderline span(s) written to {self.review_path} (mode 0600: "
                         "it holds the original text around each span; delete it once reviewed)")
        elif self.review_path is not None:
            lines.append(f"review list: no borderline spans, nothing written to {self.review_path}")
        lines.append(f"imported {len(self.task_ids)} new task(s) into project {self.project_id} ({self.schema_name})")
        if self.task_ids:
            lines.append(f"pre-annotated: {self.pre_annotated} prediction(s) from the ML backend")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return lines


def import_files(
    client: LabelStudio,
    settings: Settings,
    db,
    ref: str | int,
    paths: list[Path | str],
    *,
    min_chars: int | None = None,
    mask_pii: bool | None = None,
    pseudonymize: bool = False,
    shift_dates: bool = False,
    text_column: str | None = None,
    pre_annotate: bool = True,
    progress: bool = True,
    review_pii: Path | str | None = None,
) -> ImportOutcome:
    """Read, clean and deduplicate documents, import them into a project in batches, then pre-annotate them.
    `review_pii`: a file to write the spans the masking left undecided to (JSON Lines, mode 0600, personal data by
    design), before the documents go to Label Studio; nothing is written when there are none."""
    project = ls_client.resolve_project(client, ref, db)
    text_field = text_field_of(project.label_config)
    row = store.get_project(db, project.id) or {}
    schema_name = ls_client.schema_name_of(project) or row.get("schema_name") or str(project.id)
    if mask_pii is None:
        mask_pii = pseudonymize or shift_dates or schema_name in settings.mask_pii_schemas
    elif not mask_pii and (pseudonymize or shift_dates):
        raise ingest.IngestError("--pseudonymize and --shift-dates are ways of masking; drop --no-mask-pii to use them")
    if review_pii is not None and not mask_pii:
        raise ingest.IngestError("--review-pii lists what the masking could not decide on; it needs masking on "
                                 f"(project {schema_name} imports unmasked: add --mask-pii)")
    if review_pii is not None and not Path(review_pii).resolve().parent.is_dir():
        raise ingest.IngestError(f"--review-pii {review_pii}: its folder does not exist; create it or name another file")

    docs = ingest.read_documents([Path(p) for p in paths], text_column=text_column or text_field)
    options: dict[str, Any] = {"mask_pii": mask_pii, "text_field": text_field, "pseudonymize": pseudonymize,
                               "shift_dates": shift_dates}
    if min_chars is not None:
        options["min_chars"] = min_chars
    store.settle_killed_imports(db, project.id)
    existing = list(ls_client.task_texts(client, project.id, text_field))
    review: list[dict] | None = [] if review_pii is not None else None
    tasks, report = ingest.clean_documents(docs, ingest.CleanOptions(**options), existing_texts=existing, review=review)
    if review:  # written before the import, so a failed import still leaves the list to check
        write_review(review_pii, review)
    report_dict = report.to_dict() if hasattr(report, "to_dict") else {}
    recorded = {"project_id": project.id, "schema_name": schema_name, "paths": [str(p) for p in paths], "report": report_dict}

    # recorded before the first batch: a killed import stays "running" and the next import of the project marks it
    # "interrupted"; its batches that Label Studio committed are in existing_texts above, so a re-run skips them
    import_id = store.record_import(db, **recorded, status="running", task_ids=[])
    try:
        ids = ls_client.import_tasks(client, project.id, tasks, settings.import_batch_size, progress)
    except (LabelStudioError, StackError) as exc:
        went_in = getattr(exc, "task_ids", [])
        store.update_import(db, import_id, status="partial" if went_in else "failed", imported=len(went_in),
                            task_ids=json.dumps(list(went_in)), error=str(exc))
        raise
    outcome = ImportOutcome(project.id, schema_name, ids, report)
    outcome.import_id = import_id
    if review_pii is not None:
        outcome.review_path, outcome.review_spans = Path(review_pii), len(review or [])
    store.update_import(db, import_id, status="ok", imported=len(ids), task_ids=json.dumps(list(ids)))
    if ids and pre_annotate:
        lengths = {tid: len(str((task.get("data") or {}).get(text_field, ""))) for tid, task in zip(ids, tasks)}
        _pre_annotate(client, settings, db, project.id, lengths, outcome, progress)
        store.update_import(db, outcome.import_id, pre_annotated=outcome.pre_annotated)
    return outcome


def _pre_annotate(client: LabelStudio, settings: Settings, db, project_id: int, lengths: dict[int, int], outcome: ImportOutcome,
                  progress: bool) -> None:
    """Ask the connected ML backend for predictions of the new tasks; problems become warnings on the outcome."""
    ml_ids = ls_client.ml_backend_ids(client, project_id)
    if not ml_ids:
        outcome.warnings.append(f"project {project_id} has no ML backend connected; run goldloop up to connect it")
        return
    try:
        outcome.pre_annotated = ls_client.retrieve_predictions(client, project_id, list(lengths.items()), settings, progress)
        if outcome.pre_annotated < len(lengths):
            outcome.warnings.append(
                f"only {outcome.pre_annotated} of {len(lengths)} new task(s) got a prediction; "
                "check the ML backend log (goldloop status shows where it is)"
            )
        # the new predictions carry the backend's current version: let the project serve it
        version = ls_client.backend_model_version(client, ml_ids[0])
        if ls_client.adopt_model_version(client, project_id, version):
            store.upsert_project(db, id=project_id, model_version=version)
    except (LabelStudioError, StackError) as exc:
        outcome.warnings.append(f"pre-annotation stopped: {exc}")
