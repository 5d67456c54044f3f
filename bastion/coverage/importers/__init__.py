"""Detection inventories in: one module per format, each turning a file into parsed detections.

A format module declares:

    NAME = "sigma"                         # the --format name (and the default snapshot source)
    DESCRIPTION = "Sigma rules (YAML)"
    SUFFIXES = (".yml", ".yaml")           # files a directory contributes
    INVALID_ITEM = "mapping"               # optional: its bad rows are mappings (CTID, Navigator),
                                           # counted as skipped mappings, not skipped detections
    def sniff(name: str, head: bytes) -> bool
    def parse(path: Path, text: str, where: str) -> Iterator[Parsed | Invalid | Note | Context]
    def link(detections: list[Parsed], contexts: list[Context]) -> None   # optional, see below

`parse` never touches the store: it yields one `Parsed` detection per rule/control (with the
mappings the format itself states and, when the rule says, the cloud provider it runs in) or an
`Invalid(where, reason)` naming the item. A file that states what it is for as a whole (a CTID
file's `mapping_framework`) yields an `Origin` first: the inventory it belongs to and its
provider. A whole-file problem (not JSON, a bundle of the wrong type) raises `Malformed`. The importer
(`bastion.coverage.inventory`) checks technique ids against the ATT&CK catalog, adds
indicator-pattern mappings, merges with what is stored and writes through the one write path.

Some health is a chain across files: a GCP log-based metric fires only through an alert policy
listed in another export. Such a file yields `Context` facts (no detections of their own); after
every file of the import is read, the importer calls the `link` of each format that has one with
that format's detections and every context of the import, and `link` sets their health.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from bastion.errors import InvalidValue
from bastion.ingest.records import Invalid, Malformed
from bastion.schema.kinds import CLOUD_PROVIDERS

__all__ = ["Context", "Invalid", "Malformed", "Mapped", "Note", "Origin", "Parsed", "FORMAT_NAMES", "format_module",
           "detect", "expand", "sha256", "cloud_provider"]

# Detection tries them in this order: the most specific signatures first.
FORMAT_NAMES = ("gcp_metrics", "gcp_policies", "azure_alerts", "sentinel", "ctid", "navigator", "simple",
                "sigma")
FORMAT_CHOICES = ("auto", "sigma", "ctid", "navigator", "csv", "json", "gcp_metrics", "gcp_policies",
                  "azure_alerts", "sentinel")


@dataclass(frozen=True)
class Mapped:
    """A mapping a format states: detection → technique."""

    technique: str  # as written (normalized and checked by the importer)
    confidence: float
    method: str  # tag | vendor | pattern | analyst
    mapped_by: str
    rationale: str | None = None
    attack_version: str | None = None  # the version the source says it mapped against


@dataclass(frozen=True)
class Note:
    """Something a parser skipped on purpose (listed, never an error)."""

    where: str
    text: str


@dataclass(frozen=True)
class Context:
    """A fact a file states for the detections of other files of the same import (a GCP alert
    policy watching a log-based metric): no detection itself, read by the formats' `link`."""

    kind: str  # what it is ("gcp.alert_policy")
    where: str
    data: Any


@dataclass(frozen=True)
class Origin:
    """What a whole file says it is for (yielded before its detections)."""

    source: str  # the inventory it belongs to: the default snapshot source ("ctid:aws")
    provider: str | None  # the cloud provider its detections run in (None: not a provider)
    where: str  # where the file says so ("metadata.mapping_framework")
    stated: str  # the value as written ("azure")


def cloud_provider(name: object) -> str | None:
    """The cloud provider a rule's `logsource.product` or a file's platform names (aws, azure,
    gcp, m365, okta, github, kubernetes), else None."""
    low = str(name or "").strip().lower()
    return low if low in CLOUD_PROVIDERS and low != "other" else None


@dataclass
class Parsed:
    """One detection as a format states it."""

    where: str  # the item's place, for messages ("document 2", "mapping_objects[4]", "line 3")
    rule_id: str
    raw: str  # verbatim rule text / canonical JSON of the control
    type: str = "other"
    name: str | None = None
    service: str | None = None
    status: str = "enabled"
    level: str | None = None
    owner: str | None = None
    rule_tags: list[str] | None = None
    logsource: dict[str, Any] | None = None
    source_path: str | None = None
    provider: str | None = None  # the cloud provider the rule runs in, when it says (logsource.product)
    mappings: list[Mapped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # skipped parts worth listing (not errors)
    # Health the source itself establishes (discovery's chains, an alert policy that is off):
    # None keeps the stored health (a file import never knows it).
    health: str | None = None
    health_issues: list[str] | None = None

    @property
    def content_hash(self) -> str:
        return sha256(self.raw)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def format_module(name: str) -> ModuleType:
    if name in ("csv", "json"):
        name = "simple"
    if name not in FORMAT_NAMES:
        raise InvalidValue(f"unknown detection format {name!r}; formats: {', '.join(FORMAT_CHOICES)}")
    return importlib.import_module(f"bastion.coverage.importers.{name}")


def formats() -> dict[str, ModuleType]:
    return {name: format_module(name) for name in FORMAT_NAMES}


def detect(name: str, head: bytes) -> ModuleType:
    """The format of a file, from its name and first bytes."""
    for module in formats().values():
        if module.sniff(name, head):
            return module
    raise Malformed("not a recognised detection format (Sigma YAML, CTID mappings JSON, "
                    "ATT&CK Navigator layer, the simple CSV/JSON format, gcloud logging metrics or "
                    "alert policies, az activity-log alerts, Sentinel analytic rules); use --format")


SUFFIXES = (".yml", ".yaml", ".json", ".csv")


def expand(paths: list[str]) -> list:
    """Every input `paths` name, as the file-import framework expands them (bastion.ingest.inputs:
    files, directories recursively without hidden files, `-` for standard input), keeping of a
    directory's files those with a detection suffix (gzip: `.yml.gz` …); an input that is no
    regular file is (name, reason). Refuses paths that do not exist."""
    from bastion.ingest.inputs import STDIN, Input
    from bastion.ingest.inputs import expand as expand_inputs

    missing = [p for p in paths if p != STDIN and not Path(p).exists()]
    if missing:
        raise InvalidValue("no such file or directory: " + ", ".join(missing))
    out: list[Input | tuple[str, str]] = []
    for item in expand_inputs(paths):
        if isinstance(item, tuple):
            if item[1] != "directory has no files":
                out.append(item)
        elif not item.in_directory or _suffix(item.name) in SUFFIXES:
            out.append(item)
    return out


def _suffix(name: str) -> str:
    path = Path(name[:-3] if name.lower().endswith(".gz") else name)
    return path.suffix.lower()
