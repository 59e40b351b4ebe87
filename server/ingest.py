"""Document import: readers (.txt, .jsonl, .json, .csv), cleaning, dedup, PII masking (server/deid), import report."""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from server.deid import PII_KINDS, DeidOptions, deidentify, redact, review_entries
from server.errors import IngestError

SUPPORTED_EXTENSIONS = (".txt", ".jsonl", ".json", ".csv")
DROP_REASONS = ("bad_line", "not_text", "empty", "too_short", "duplicate", "near_duplicate")
SHINGLE_SIZE = 5
NUM_PERM = 128
MINHASH_CHUNK = 20_000
_SHINGLE_BASE = 0x100000001B3  # FNV-1a 64-bit prime: odd, so the hash keeps every code point
PROGRESS_MIN_DOCS = 200
MAX_ERRORS_SHOWN = 20


@dataclass
class CleanOptions:
    """How documents are cleaned before they become Label Studio tasks."""

    min_chars: int = 20
    near_duplicate_threshold: float = 0.9
    mask_pii: bool = False
    text_field: str = "text"
    pseudonymize: bool = False  # with mask_pii: consistent fake names instead of [NAME]
    shift_dates: bool = False  # with mask_pii: dates moved by one per-document offset instead of [DATE]


@dataclass
class RawDocument:
    """One record as read from a file, before cleaning; `error` marks an unreadable record."""

    text: object
    data: dict
    source: str
    line: int | None
    error: str | None = None


@dataclass
class ImportReport:
    """What an import read, kept, dropped (by reason), masked (by kind) and which records failed."""

    read: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    masked: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PII_KINDS, 0))
    # kept documents holding a span the masking could not decide on (left unmasked), and those spans
    borderline_documents: int = 0
    borderline_spans: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The report as plain JSON-serialisable data."""
        return asdict(self)

    def summary_lines(self) -> list[str]:
        """Human-readable lines: read, kept, dropped by reason, masked by kind, errors."""
        lines = [f"read: {self.read} documents", f"kept: {self.kept}"]
        dropped = {k: v for k, v in self.dropped.items() if v}
        if dropped:
            detail = ", ".join(f"{k} {v}" for k, v in dropped.items())
            lines.append(f"dropped: {sum(dropped.values())} ({detail})")
        else:
            lines.append("dropped: 0")
        masked = {k: v for k, v in self.masked.items() if v}
        if masked:
            lines.append("masked: " + ", ".join(f"{k} {v}" for k, v in masked.items()))
        if self.borderline_documents:
            lines.append(f"borderline: {self.borderline_documents} document(s) hold {self.borderline_spans} span(s) the "
                         "masking could not decide on, left unmasked (--review-pii PATH lists them)")
        if self.errors:
            lines.append(f"errors: {len(self.errors)}")
            lines.extend(f"  {e}" for e in self.errors[:MAX_ERRORS_SHOWN])
            if len(self.errors) > MAX_ERRORS_SHOWN:
                lines.append(f"  ... and {len(self.errors) - MAX_ERRORS_SHOWN} more")
        return lines


# --------------------------------------------------------------------------- readers


def read_documents(paths: list[Path], text_column: str = "text") -> list[RawDocument]:
    """Read every document from files or directories (all supported files under them, sorted)."""
    docs: list[RawDocument] = []
    for path in _expand(paths):
        docs.extend(_read_file(path, text_column))
    return docs


def _expand(paths: Iterable[Path]) -> list[Path]:
    """Files named directly plus supported files found under named directories."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise IngestError(
                    f"{path}: no {', '.join(SUPPORTED_EXTENSIONS)} files in this directory; "
                    "point to a folder or files that hold documents"
                )
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise IngestError(f"{path}: no such file or directory; check the path")
    return files


def _read_file(path: Path, text_column: str) -> list[RawDocument]:
    """Read one file with the reader its extension names."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise IngestError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; "
            f"use one of {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    content = _read_text(path)
    if suffix == ".txt":
        return [RawDocument(text=content, data={}, source=str(path), line=None)]
    if suffix == ".jsonl":
        return list(_read_jsonl(path, content, text_column))
    if suffix == ".json":
        return _read_json(path, content, text_column)
    return list(_read_csv(path, content, text_column))


def _read_text(path: Path) -> str:
    """The file's content as UTF-8 text; binary and non-UTF-8 files raise IngestError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IngestError(
            f"{path}: cannot read the file ({exc.strerror or exc}); check its permissions"
        ) from exc
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise IngestError(
            f"{path}: binary file (NUL byte at offset {nul}); import text files "
            f"({', '.join(SUPPORTED_EXTENSIONS)}) — convert PDFs or Office files to text first"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start:exc.start + 1].hex()
        raise IngestError(
            f"{path}: not UTF-8 (byte 0x{bad} at offset {exc.start}); "
            "re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from exc


def _record_document(
    record: object, path: Path, line: int, where: str, text_column: str
) -> RawDocument:
    """A RawDocument from one parsed JSON record, or an error document when it is unusable."""
    if not isinstance(record, dict):
        return _bad(path, line, f"{where}: not a JSON object (got {type(record).__name__})")
    if text_column not in record:
        fields = ", ".join(map(str, record)) or "none"
        return _bad(path, line, f"{where}: no {text_column!r} field (fields: {fields})")
    data = {k: v for k, v in record.items() if k != text_column}
    return RawDocument(text=record[text_column], data=data, source=str(path), line=line)


def _bad(path: Path, line: int | None, message: str) -> RawDocument:
    """An error document: it yields no task and is counted as a bad line."""
    return RawDocument(text=None, data={}, source=str(path), line=line, error=message)


def _read_jsonl(path: Path, content: str, text_column: str) -> Iterator[RawDocument]:
    """One document per non-blank line; bad lines become error documents."""
    # split on \n only: str.splitlines() would also split inside JSON strings (U+2028, U+0085, ...)
    for number, line in enumerate(content.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield _bad(path, number, f"{where}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        yield _record_document(record, path, number, where, text_column)


def _read_json(path: Path, content: str, text_column: str) -> list[RawDocument]:
    """A list of objects (line = 1-based item number) or a single object."""
    try:
        value = json.loads(content)
    except json.JSONDecodeError as exc:
        raise IngestError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "fix the file, or use .jsonl for one object per line"
        ) from exc
    if isinstance(value, dict):
        return [_record_document(value, path, 1, str(path), text_column)]
    if not isinstance(value, list):
        raise IngestError(
            f"{path}: expected a JSON list of objects or one object, got {type(value).__name__}"
        )
    return [
        _record_document(item, path, number, f"{path} item {number}", text_column)
        for number, item in enumerate(value, start=1)
    ]


def _read_csv(path: Path, content: str, text_column: str) -> Iterator[RawDocument]:
    """One document per row (line = the row's first line in the file); header row required."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise IngestError(f"{path}: empty CSV file; expected a header row with a {text_column!r} column")
        header = [h.strip() for h in header]
        if text_column not in header:
            raise IngestError(
                f"{path}: no {text_column!r} column (columns found: {', '.join(header) or 'none'}); "
                "say which column holds the text"
            )
        index = header.index(text_column)
        start = reader.line_num + 1
        for row in reader:
            line, start = start, reader.line_num + 1
            if not row or (len(row) == 1 and not row[0].strip() and len(header) > 1):
                continue
            if len(row) != len(header):
                yield _bad(path, line, f"{path} line {line}: {len(row)} fields, the header has {len(header)}")
                continue
            data = {h: v for i, (h, v) in enumerate(zip(header, row)) if i != index}
            yield RawDocument(text=row[index], data=data, source=str(path), line=line)
    except csv.Error as exc:
        raise IngestError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from exc


# --------------------------------------------------------------------------- normalisation

_NEWLINES = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
# control characters (Unicode Cc) except \t and \n, plus invisible format characters
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b\u2060\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def normalize(text: str) -> str:
    """NFC, newlines unified, control characters removed, whitespace runs collapsed, stripped."""
    text = unicodedata.normalize("NFC", text)
    text = _NEWLINES.sub("\n", text)
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()


def text_hash(text: str) -> str:
    """sha256 hex digest of the (cleaned) text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- PII masking


def mask_pii(text: str, options: CleanOptions | None = None) -> tuple[str, Counter]:
    """De-identify one text (server/deid: Presidio and goldloop's recognizers): the masked text and counts per kind."""
    options = options or CleanOptions(mask_pii=True)
    return deidentify(text, _deid_options(options))


# --------------------------------------------------------------------------- cleaning


def _shingle_hashes(text: str) -> list[int]:
    """Distinct 32-bit hashes of the case-folded text's character 5-grams (fine for Chinese too)."""
    import numpy as np

    codes = np.frombuffer(text.casefold().encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) < SHINGLE_SIZE:
        codes = np.concatenate([codes, np.zeros(SHINGLE_SIZE - len(codes), dtype=np.uint64)])
    count = len(codes) - SHINGLE_SIZE + 1
    hashes = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):  # polynomial hash modulo 2**64: wrap-around is intended
        for k in range(SHINGLE_SIZE):
            hashes = hashes * np.uint64(_SHINGLE_BASE) + codes[k:k + count]
    folded = (hashes ^ (hashes >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
    return np.unique(folded).tolist()


@functools.lru_cache(maxsize=1)
def _empty_minhash():
    """An empty MinHash whose permutations every signature shares (building them is the slow part)."""
    from datasketch import MinHash

    return MinHash(num_perm=NUM_PERM, hashfunc=int)  # values are already 32-bit shingle hashes


def _minhash(text: str):
    """MinHash signature of the text's character shingles."""
    signature = _empty_minhash().copy()
    hashes = _shingle_hashes(text)
    for start in range(0, len(hashes), MINHASH_CHUNK):  # bounded memory on very long documents
        signature.update_batch(hashes[start:start + MINHASH_CHUNK])
    return signature


class _NearDuplicateIndex:
    """MinHash LSH index; a candidate counts only if its estimated Jaccard reaches the threshold."""

    def __init__(self, threshold: float) -> None:
        from datasketch import MinHashLSH

        self.threshold = threshold
        # A lower LSH threshold finds nearly all pairs at the real threshold; the estimate then filters.
        self.lsh = MinHashLSH(threshold=min(0.95, max(0.05, threshold - 0.15)), num_perm=NUM_PERM)
        self.signatures: dict[str, object] = {}

    def is_near_duplicate(self, signature) -> bool:
        """Whether an indexed text is at least `threshold` similar."""
        return any(
            self.signatures[key].jaccard(signature) >= self.threshold
            for key in self.lsh.query(signature)
        )

    def add(self, key: str, signature) -> None:
        """Index one text under a unique key."""
        if key not in self.signatures:
            self.signatures[key] = signature
            self.lsh.insert(key, signature)


def _existing_forms(text: str, options: CleanOptions) -> set[str]:
    """The forms of a text already in the project that a new document may equal: as held, and masked (a raw text is
    masked before comparing; a text imported masked, with pseudonyms or shifted dates, equals the new output as held)."""
    cleaned = normalize(text)
    if not cleaned:
        return set()
    return {cleaned, mask_pii(cleaned, options)[0]} if options.mask_pii else {cleaned}


def _where(doc: RawDocument) -> str:
    """'file line N' or 'file' for messages."""
    return f"{doc.source} line {doc.line}" if doc.line is not None else doc.source


def _progress(items: list, desc: str):
    """A tqdm bar over the items when a person is watching a long import."""
    from tqdm import tqdm

    disable = len(items) < PROGRESS_MIN_DOCS or not sys.stderr.isatty()
    return tqdm(items, desc=desc, unit="doc", disable=disable, leave=False)


def clean_documents(
    docs: Iterable[RawDocument], options: CleanOptions, existing_texts: Iterable[str] = (),
    review: list[dict] | None = None,
) -> tuple[list[dict], ImportReport]:
    """Clean, mask, deduplicate documents into Label Studio tasks, with a report of every drop. With masking on, the
    borderline spans of the kept documents are counted in the report and, when `review` is a list, appended to it as
    review records (server.deid.review_entries: they hold the original text around each span)."""
    threshold = options.near_duplicate_threshold
    if not 0 < threshold <= 1:
        raise IngestError(f"near_duplicate_threshold must be in (0, 1], got {threshold}")
    report = ImportReport()
    seen: set[str] = set()
    index = _NearDuplicateIndex(threshold)

    existing = [t for t in existing_texts if isinstance(t, str)]
    for text in _progress(existing, "indexing existing"):
        for cleaned in _existing_forms(text, options):
            digest = text_hash(cleaned)
            seen.add(digest)
            index.add(digest, _minhash(cleaned))

    tasks: list[dict] = []
    for doc in _progress(list(docs), "cleaning"):
        report.read += 1
        reason, cleaned, masked, doubts = _clean_document(doc, options, report)
        if reason is None:
            digest = text_hash(cleaned)
            signature = None if digest in seen else _minhash(cleaned)
            if signature is None:
                reason = "duplicate"
            elif index.is_near_duplicate(signature):
                reason = "near_duplicate"
        if reason is not None:
            report.dropped[reason] += 1
            continue
        seen.add(digest)
        index.add(digest, signature)
        for kind, count in masked.items():
            report.masked[kind] = report.masked.get(kind, 0) + count
        data = {options.text_field: cleaned}
        for k, v in doc.data.items():
            if k != options.text_field:
                data[k] = _mask_field(v, options, report, doubts, doc, k)
        if doubts:
            report.borderline_documents += 1
            report.borderline_spans += len(doubts)
            if review is not None:  # the task's meta.goldloop_hash finds it in Label Studio
                review.extend({**d, "goldloop_hash": digest} for d in doubts)
        tasks.append({
            "data": data,
            "meta": {"source": doc.source, "line": doc.line, "goldloop_hash": digest},
        })
        report.kept += 1
    return tasks, report


def _mask_field(value: object, options: CleanOptions, report: ImportReport, doubts: list[dict], doc: RawDocument,
                name: str) -> object:
    """Another field of the record: its text is masked too when masking is on (a name column must not slip through);
    its borderline spans join the document's."""
    if not options.mask_pii or not isinstance(value, str) or not value.strip():
        return value
    result = redact(value, _deid_options(options))
    for kind, count in result.counts.items():
        report.masked[kind] = report.masked.get(kind, 0) + count
    doubts.extend(review_entries(value, result.borderline, source=doc.source, line=doc.line, field=name))
    return result.text


def _deid_options(options: CleanOptions) -> DeidOptions:
    return DeidOptions(pseudonymize=options.pseudonymize, shift_dates=options.shift_dates)


def _clean_document(
    doc: RawDocument, options: CleanOptions, report: ImportReport
) -> tuple[str | None, str, Counter, list[dict]]:
    """(drop reason or None, cleaned text, masked counts, review records of its borderline spans) for one record,
    before dedup."""
    if doc.error is not None:
        report.errors.append(doc.error)
        return "bad_line", "", Counter(), []
    if not isinstance(doc.text, str):
        report.errors.append(f"{_where(doc)}: text is {type(doc.text).__name__}, not a string")
        return "not_text", "", Counter(), []
    cleaned = normalize(doc.text)
    if not cleaned:
        return "empty", "", Counter(), []
    if len(cleaned) < options.min_chars:
        return "too_short", "", Counter(), []
    if options.mask_pii:
        result = redact(cleaned, _deid_options(options))
        doubts = review_entries(cleaned, result.borderline, source=doc.source, line=doc.line, field=options.text_field)
        return None, result.text, result.counts, doubts
    return None, cleaned, Counter(), []
