"""What a caller hands an export and gets back: the project, the options, the result."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..agreement import RESOLVE_POLICIES
from ..errors import ExportError

DEFAULT_FORMATS = ("jsonl", "conll", "hf", "csv")
LLM_FORMATS = ("chat", "instruction", "preference")
FORMATS = (*DEFAULT_FORMATS, *LLM_FORMATS)


@dataclass
class ProjectInfo:
    """The Label Studio project being exported."""

    id: int
    slug: str
    title: str
    label_config: str


@dataclass(frozen=True)
class ExportOptions:
    """How to export: where to, which formats, which annotations count and how conflicts resolve.

    ``total`` is the number of tasks when the caller knows it (progress bar, and whether helper processes
    start at once). ``parallel``: build CoNLL and Parquet in helper processes (True), in the export's own
    process (False), or decide by size (None: helpers once more than PARALLEL_MIN_DOCS documents arrive and
    a second core exists; from the start when ``total`` says so). Both give byte-identical files.

    The LLM formats (chat, instruction, preference) use ``template`` (a jinja2 file; None: the default of
    the task kind), cut documents over ``max_tokens`` tokens of ``tokenizer`` (a Hugging Face id or path,
    loaded offline; None: the project's default encoder).
    """

    out_root: Path
    formats: Sequence[str] = DEFAULT_FORMATS
    resolve: str = "majority"
    only_reviewed: bool = False
    check_labels: bool = False
    goldloop_version: str = "0.1.0"
    progress: bool | None = None
    total: int | None = None
    parallel: bool | None = None
    template: Path | None = None
    max_tokens: int = 2048
    tokenizer: str | None = None

    @property
    def wants_llm(self) -> bool:
        return any(f in LLM_FORMATS for f in self.formats)

    def recorded(self) -> dict:
        """The options that shape the content: the manifest's ``options`` and part of the content hash."""
        out = {
            "formats": list(self.formats), "resolve": self.resolve, "only_reviewed": self.only_reviewed,
            "check_labels": self.check_labels,
        }
        if self.wants_llm:
            out.update(template=None if self.template is None else Path(self.template).name, max_tokens=self.max_tokens,
                       tokenizer=self.tokenizer)
        return out


@dataclass
class ExportResult:
    """What an export did: the version written (or the unchanged latest one) and its manifest."""

    version_dir: Path | None
    version: str | None
    changed: bool
    manifest: dict
    message: str


def check_request(project: ProjectInfo, options: ExportOptions) -> None:
    """Raise ExportError for unknown formats or policy, or a slug that is not a plain directory name."""
    formats = options.formats
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ExportError(f"export formats must be a non-empty subset of {list(FORMATS)}, got {list(formats)}")
    if options.wants_llm and (not isinstance(options.max_tokens, int) or options.max_tokens < 16):
        raise ExportError(f"--max-tokens must be an integer of at least 16, got {options.max_tokens!r}")
    if options.resolve not in RESOLVE_POLICIES:
        raise ExportError(f"--resolve must be one of {list(RESOLVE_POLICIES)}, got {options.resolve!r}")
    slug = project.slug
    if not slug or slug in (".", "..") or "/" in slug or "\\" in slug or slug.startswith("."):
        raise ExportError(f"project slug must be a plain directory name, got {slug!r}")
