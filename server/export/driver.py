"""export_dataset: one streaming pass over Label Studio tasks writes every format at once into a temp dir
inside ``<out_root>/<slug>/``, which becomes a version only when everything is written and fsynced."""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from ml_backend.schema import TaskSpec

from ..agreement import AgreementAccumulator
from ..errors import ExportError
from .atomic import HashingFile, clean_stale_tmp, dumps, latest_manifest, make_temp_dir, publish, write_text
from .labelcheck import LabelCheck
from .llm import LLMOutputs, LLMSettings, load_tokenizer
from .manifest import ExportFacts, build_manifest, datasheet, hf_card
from .options import ExportOptions, ExportResult, ProjectInfo, check_request
from .parse import Parser, Problems, Stats
from .prompts import build_prompt
from .writers import Writers


def export_dataset(tasks: Iterable[dict], spec: TaskSpec, project: ProjectInfo, options: ExportOptions) -> ExportResult:
    """Export a project's annotated tasks as a new versioned gold dataset (or report that nothing changed)."""
    options = replace(options, formats=tuple(dict.fromkeys(options.formats)))
    check_request(project, options)
    project_dir = Path(options.out_root) / project.slug
    tmp = make_temp_dir(project_dir)
    clean_stale_tmp(project_dir)
    try:
        return _export_into(tmp, project_dir, tasks, spec, project, options)
    except OSError as exc:
        raise ExportError(f"cannot write export to {project_dir}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class _Pass:
    """One streaming pass over the tasks into ``tmp``: parser, agreement, format writers and the side files."""

    def __init__(self, tmp: Path, spec: TaskSpec, options: ExportOptions, total: int | None, llm: LLMSettings | None):
        self.tmp = tmp
        self.options = options
        self.stats = Stats()
        self.problems_file = HashingFile(tmp / "problems.jsonl")
        self.conflicts_file = HashingFile(tmp / "conflicts.jsonl")
        self.problems = Problems(self.problems_file)
        self.parser = Parser(spec, options.resolve, options.only_reviewed, self.problems, self.stats)
        self.agreement = AgreementAccumulator(
            {c.name: (c.labels, c.multi) for c in spec.choice_controls}, [c.name for c in spec.span_controls]
        )
        self.writers = Writers(tmp, spec, options.formats, self.parser.primary, options.parallel, expected=total)
        self.check = LabelCheck(spec, options.check_labels)
        self.llm = LLMOutputs(tmp, spec, options.formats, llm) if llm is not None else None

    def run(self, tasks: Iterable[dict], total: int | None, desc: str) -> None:
        """Parse, resolve and write every task; on any error close what is open and re-raise."""
        from tqdm import tqdm

        show = sys.stderr.isatty() if self.options.progress is None else self.options.progress
        try:
            for task in tqdm(tasks, total=total, disable=not show, unit="task", desc=desc):
                self.stats.tasks_seen += 1
                parsed = self.parser.parse(task)
                if parsed is None:
                    continue
                self.agreement.add_document([str(w) for w in parsed.annotators], parsed.choice_votes, parsed.span_votes)
                if parsed.conflict is not None:
                    self.conflicts_file.write_json(parsed.conflict)
                self.writers.write(parsed.record)
                if self.llm is not None:
                    self.llm.write(parsed.record, parsed.prediction)
                self.check.add(parsed.record)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self.writers.abort()
        if self.llm is not None:
            self.llm.abort()
        self.problems_file.close()
        self.conflicts_file.close()

    def close(self) -> tuple[dict[str, str], dict[str, int]]:
        """Close every file (the label check's included, run here); their sha256 and sizes by relative path."""
        writers = self.writers
        writers.close()
        self.stats.overlaps_dropped = Counter(writers.overlaps_dropped)
        files, sizes = dict(writers.hashes), dict(writers.sizes)
        if self.llm is not None:
            hashes, llm_sizes = self.llm.close()
            files.update(hashes)
            sizes.update(llm_sizes)
        if self.check.active:
            sf = HashingFile(self.tmp / "suspect_labels.jsonl")
            for row in self.check.run():
                sf.write_json(row)
            files["suspect_labels.jsonl"], sizes["suspect_labels.jsonl"] = sf.close(), sf.bytes
        for name, f in (("problems.jsonl", self.problems_file), ("conflicts.jsonl", self.conflicts_file)):
            files[name], sizes[name] = f.close(), f.bytes
        return files, sizes

    def facts(self) -> ExportFacts:
        formats = self.writers.format_paths()
        if self.llm is not None:
            formats.update(self.llm.format_paths())
        return ExportFacts(self.stats, self.problems, self.agreement.summary(), formats, self.check.notes,
                           self.llm.summary() if self.llm is not None else None)


def _llm_settings(spec: TaskSpec, project: ProjectInfo, options: ExportOptions) -> LLMSettings | None:
    """The prompt and tokenizer of the LLM formats (None when none is asked for)."""
    if not options.wants_llm:
        return None
    from ..config import default_model

    name = options.tokenizer or default_model()
    return LLMSettings(build_prompt(spec, project.label_config, options.template), options.max_tokens, name,
                       load_tokenizer(name))


def _nothing_exported(project: ProjectInfo, options: ExportOptions, stats: Stats) -> ExportError:
    why = (
        "has no reviewed annotations (only_reviewed)"
        if options.only_reviewed and stats.skipped.get("not_reviewed")
        else "has no completed annotations"
    )
    return ExportError(
        f"project {project.id} ({project.slug}) {why}; nothing exported "
        f"({stats.tasks_seen} tasks seen, skipped: {dict(stats.skipped) or 'none'})"
    )


def _content_hash(files: dict[str, str], options: ExportOptions, spec: TaskSpec, facts: ExportFacts) -> str:
    """The hash of what a version holds (never when it was made): equal hashes mean nothing changed."""
    summary_core = {"agreement": facts.agreement, "overlaps_dropped_in_bio": dict(facts.stats.overlaps_dropped)}
    return hashlib.sha256(
        dumps({
            "files": dict(sorted(files.items())),
            "options": options.recorded(),
            "label_config_hash": spec.config_hash,
            "summary": summary_core,
        }).encode("utf-8")
    ).hexdigest()


def _export_into(tmp: Path, project_dir: Path, tasks: Iterable[dict], spec: TaskSpec, project: ProjectInfo,
                 options: ExportOptions) -> ExportResult:
    total = options.total
    if total is None and hasattr(tasks, "__len__"):
        total = len(tasks)  # type: ignore[arg-type]
    run = _Pass(tmp, spec, options, total, _llm_settings(spec, project, options))
    run.run(tasks, total, desc=f"export {project.slug}")
    if run.stats.documents == 0:
        run.abort()
        raise _nothing_exported(project, options, run.stats)
    files, sizes = run.close()
    facts = run.facts()
    content_hash = _content_hash(files, options, spec, facts)

    latest = latest_manifest(project_dir)
    if latest is not None and latest[1].get("content_hash") == content_hash:
        return ExportResult(project_dir / latest[0], latest[0], False, latest[1], f"no change since {latest[0]}")

    now = datetime.now(timezone.utc)
    version = f"{now:%Y%m%dT%H%M%SZ}-{content_hash[:8]}"
    if run.writers.hf_info is not None:
        files["hf/README.md"], sizes["hf/README.md"] = write_text(tmp / "hf" / "README.md",
                                                                  hf_card(project, run.writers.hf_info))
    manifest = build_manifest(version, content_hash, now, project, spec, options, facts)
    files["README.md"], sizes["README.md"] = write_text(tmp / "README.md", datasheet(manifest, project, spec))
    manifest["files"] = {k: {"sha256": files[k], "bytes": sizes[k]} for k in sorted(files)}
    (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    final = publish(tmp, project_dir, version, unsynced=("README.md", "manifest.json", "hf/README.md"))
    return ExportResult(final, version, True, manifest, f"exported {run.stats.documents} documents to {final}")
