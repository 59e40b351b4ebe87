"""Atomic, verifiable files: hashing sinks, fsync, JSON Lines encoding and the versioned temp-dir lifecycle.

An export writes into a temp dir ``<project_dir>/.tmp-<pid>-*`` and renames it to its version name only
when everything is written and fsynced, so a killed export never leaves a partial version; the next export
removes temp dirs whose owner process is gone.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from ..errors import ExportError
from ..procs import pid_alive

VERSION_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
TMP_PREFIX = ".tmp-"


class HashingFile:
    """A text sink writing UTF-8 bytes to a file while computing their sha256."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "wb", buffering=1 << 20)
        self._h = hashlib.sha256()
        self.bytes = 0

    def write(self, s: str) -> int:
        self.write_bytes(s.encode("utf-8"))
        return len(s)

    def write_bytes(self, b: bytes) -> None:
        self._h.update(b)
        self._f.write(b)
        self.bytes += len(b)

    def write_json(self, obj: Any) -> None:
        """Write `obj` as one JSON Lines record."""
        self.write_bytes(json_line(obj))

    def close(self) -> str:
        """Flush, fsync, close; return the hex sha256."""
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
        return self._h.hexdigest()


def close_quietly(files: Iterable[HashingFile]) -> None:
    """Close files on an abort path, where a failing close must not hide the original error."""
    for f in files:
        try:
            f.close()
        except OSError:
            pass


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_path(path: Path) -> None:
    """fsync a file or a directory by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: Path, text: str) -> tuple[str, int]:
    """Write a UTF-8 text file (fsynced when its version is published); return its sha256 and size."""
    data = text.encode("utf-8")
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest(), len(data)


def dumps(obj: Any) -> str:
    """Compact JSON, non-ASCII kept."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def json_line(obj: Any) -> bytes:
    """`obj` as one compact JSON Lines record in UTF-8, non-ASCII kept.

    orjson writes it (ten times faster than the standard library; the JSON encoding was a fifth of a large
    export's own CPU time); a value orjson cannot hold (an integer beyond 64 bits, a non-string key, an
    unpaired surrogate) falls back to the standard library, with \\u escapes where UTF-8 cannot hold a string.
    Both give the same JSON values; orjson writes small floats without an exponent (0.00001, not 1e-05) and
    NaN as null (the standard library writes NaN, which is not JSON).
    """
    try:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        line = dumps(obj) + "\n"
    try:
        return line.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate in some other field: keep it as a \u escape
        return (json.dumps(obj, separators=(",", ":")) + "\n").encode("ascii")


# ------------------------------------------------------------------------------------------ versions
def make_temp_dir(project_dir: Path) -> Path:
    """A new temp dir inside the project's export dir, named after this process (see clean_stale_tmp)."""
    try:
        project_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=project_dir))
    except OSError as exc:
        raise ExportError(f"cannot write exports under {project_dir}: {exc.strerror or exc}") from None


def clean_stale_tmp(project_dir: Path, max_age_s: float = 3600.0) -> list[Path]:
    """Remove temp dirs left by killed exports (owner process gone, or older than max_age_s)."""
    removed = []
    if not project_dir.is_dir():
        return removed
    for p in project_dir.iterdir():
        if not p.name.startswith(TMP_PREFIX) or not p.is_dir():
            continue
        parts = p.name[len(TMP_PREFIX):].split("-", 1)
        pid = int(parts[0]) if parts[0].isdigit() else None
        try:
            old = time.time() - p.stat().st_mtime > max_age_s
        except OSError:
            continue
        if old or pid is None or (pid != os.getpid() and not pid_alive(pid)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def list_versions(project_dir: Path) -> list[str]:
    """Version names of a project's exports, oldest first (temp dirs ignored)."""
    if not project_dir.is_dir():
        return []
    return sorted(p.name for p in project_dir.iterdir() if p.is_dir() and VERSION_RE.match(p.name))


def latest_manifest(project_dir: Path) -> tuple[str, dict] | None:
    """The newest version with a readable manifest, and that manifest (None when there is none)."""
    for name in reversed(list_versions(project_dir)):
        try:
            return name, json.loads((project_dir / name / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return None


def publish(tmp: Path, project_dir: Path, version: str, unsynced: Sequence[str]) -> Path:
    """fsync the files written without a HashingFile (``unsynced``, relative) and every dir, then rename the
    temp dir to its version name; return the version dir."""
    for rel in unsynced:
        if (tmp / rel).exists():
            fsync_path(tmp / rel)
    for d in {tmp, *(p.parent for p in tmp.rglob("*") if p.is_file())}:
        fsync_path(d)
    final = project_dir / version
    if final.exists():
        raise ExportError(f"export version {version} already exists in {project_dir}; run the export again")
    os.rename(tmp, final)
    fsync_path(project_dir)
    return final
