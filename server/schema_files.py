"""Schema files: the labeling configs of schemas/ (one per domain), read, titled and matched by config hash."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ml_backend.errors import SchemaError
from ml_backend.schema import config_hash, parse_label_config

from .errors import ConfigError

TITLE_MAX = 50  # Label Studio's limit on project titles


@dataclass(frozen=True)
class Schema:
    """One labeling config file of schemas/: its name (file stem), title, XML and what goldloop reads from it."""

    name: str
    title: str
    xml: str
    path: Path
    config_hash: str
    text_field: str


def schemas_dir() -> Path:
    """The schemas folder: server/schemas (a link to the repository's schemas/, packaged as files in a wheel),
    else the checkout's schemas/ (a checkout where the link is not a link)."""
    here = Path(__file__).resolve().parent
    candidates = [here / "schemas"]
    if (here.parent / "pyproject.toml").exists():
        candidates.append(here.parent / "schemas")
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob("*.xml")):
            return candidate
    raise ConfigError(f"no schemas folder with *.xml next to {here}; reinstall goldloop")


def _title_of(xml: str, name: str) -> str:
    """The 'Title: ...' line of the schema's header comment, else the schema name."""
    comment = re.match(r"\s*<!--(.*?)-->", xml, re.S)
    if comment:
        found = re.search(r"^\s*Title:\s*(.+?)\s*$", comment.group(1), re.M)
        if found:
            return found.group(1)[:TITLE_MAX]
    return name[:TITLE_MAX]


def load_schema(path: Path) -> Schema:
    """Read one schema file; ConfigError when goldloop cannot use it."""
    path = Path(path)
    try:
        xml = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"schema {path} cannot be read ({exc}); fix or remove the file") from None
    try:
        spec = parse_label_config(xml)
    except SchemaError as exc:
        raise ConfigError(f"schema {path}: {exc}; fix the file") from None
    return Schema(path.stem, _title_of(xml, path.stem), xml, path, config_hash(xml), spec.value_fields[0])


def load_schemas(folder: Path | None = None) -> list[Schema]:
    """Every schema of a folder (default: schemas_dir()), sorted by name."""
    folder = Path(folder) if folder is not None else schemas_dir()
    return [load_schema(p) for p in sorted(folder.glob("*.xml"))]


def text_field_of(label_config: str) -> str:
    """The task data key holding the text, read from a labeling config."""
    try:
        return parse_label_config(label_config).value_fields[0]
    except SchemaError as exc:
        raise ConfigError(f"the project's labeling config is not usable: {exc}") from None


def needs_push(schema: Schema, synced_hash: str | None, live_config: str | None) -> bool:
    """True when the schema file changed since its last sync (or was never synced: synced_hash None) and the
    project's live labeling config differs from it; an unchanged schema leaves edits made in Label Studio's UI alone."""
    return synced_hash != schema.config_hash and config_hash(live_config or "") != schema.config_hash
