"""Opening what `bastion import` is given: files, directories, `-` (stdin), gzip; and telling
which format an input is from its content."""

from __future__ import annotations

import hashlib
import io
import sys
import zlib
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import BinaryIO, Iterator, Mapping

import orjson

from bastion.errors import InvalidValue
from bastion.ingest import FORMAT_NAMES, format_module, formats, limits
from bastion.ingest.records import Malformed, Sample

SAMPLE_BYTES = 64 * 1024
FIRST_RECORD_BYTES = 1 << 20  # the first record is looked for this far (the read buffer)
GZIP_MAGIC = b"\x1f\x8b"
STDIN = "-"


class UnknownFormat(Malformed):
    """Content that is none of the formats."""


@dataclass(frozen=True)
class Input:
    name: str  # as shown to the user: the path, or "<stdin>"
    path: Path | None  # None for stdin
    in_directory: bool = False  # found under a directory given (not named by the user)

    @property
    def is_stdin(self) -> bool:
        return self.path is None


# What an input is called where its path is not what the user knows it by: the server stores
# each uploaded file under a temporary path, and its runs, results and messages name the file
# as it was uploaded. Path given → name shown; a directory's files are named under its name.
input_names: ContextVar[Mapping[str, str] | None] = ContextVar("bastion_input_names", default=None)


@contextmanager
def named(names: Mapping[str, str]) -> Iterator[None]:
    """Inputs given by a path of `names` are called by its name inside the block."""
    token = input_names.set(names)
    try:
        yield
    finally:
        input_names.reset(token)


def shown(raw: str) -> str:
    """The name an input given as `raw` is shown by (`named`); `raw` itself by default."""
    names = input_names.get()
    return names.get(raw, raw) if names else raw


def check_exist(paths: list[str]) -> None:
    """Refuse a run naming a path that is not there (a typo), before anything is recorded."""
    for raw in paths:
        if raw != STDIN and not Path(raw).exists():
            raise InvalidValue(f"cannot read {raw}: No such file or directory")


def expand(paths: list[str]) -> Iterator[Input | tuple[str, str]]:
    """Every input named: a file, each file under a directory (sorted, hidden ones skipped), or
    stdin. A path that does not exist yields (name, reason)."""
    for raw in paths:
        if raw == STDIN:
            yield Input("<stdin>", None)
            continue
        path, name = Path(raw), shown(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                yield (name, "directory has no files")
            yield from (Input(str(Path(name) / p.relative_to(path)), p, in_directory=True)
                        for p in found)
        elif path.is_file():
            yield Input(name, path)
        elif path.exists():
            yield (name, "not a regular file")
        else:
            yield (name, "no such file or directory")


_stdin: io.BufferedReader | None = None


def stdin() -> io.BufferedReader:
    """Standard input as one peekable binary stream (a caller may peek before the importer reads)."""
    global _stdin
    raw = sys.stdin.buffer
    if _stdin is None or _stdin.raw is not raw:
        _stdin = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)
    return _stdin


GRAPH_FORMAT = "bastion-graph"
_FOREIGN_MEMBERS = frozenset({"runs", "$schema"})  # SARIF's


def looks_like_graph(head: bytes) -> bool:
    """Bastion's own JSON graph (docs/graph.md), which `bastion import` hands to its own reader.
    Recognised by what only it has: `"format": "bastion-graph"`, or a top-level `nodes` or
    `edges` member. Another format's top-level member (SARIF's `runs`, `$schema`) rules it out,
    wherever it comes: a SARIF log may start with `"version"`. (Other members a graph document
    does not have are left for its reader to report, naming them.) Only the top level of the
    first `len(head)` bytes is read."""
    members, fmt = _top_level_members(head)
    if fmt is not None:
        return fmt == GRAPH_FORMAT
    return bool(members & {"nodes", "edges"}) and not members & _FOREIGN_MEMBERS


def all_graph_documents(paths: list[str]) -> bool:
    """Whether every input named is a file (or standard input) of Bastion's own JSON graph (the
    format `bastion graph export` writes): `bastion import` without --format then reads them as
    one graph import."""
    for p in paths:
        if p == STDIN:
            head = stdin().peek(4096)[:4096]
        elif Path(p).is_file():
            with open(p, "rb") as fh:
                head = fh.read(4096)
        else:
            return False
        if not looks_like_graph(head):
            return False
    return bool(paths)


def _top_level_members(head: bytes) -> tuple[set[str], str | None]:
    """(names of the top-level members of a JSON object that `head` starts, the `format`
    member's text value) as far as `head` reaches."""
    import ijson

    text = head.lstrip()
    if text.startswith(b"\xef\xbb\xbf"):
        text = text[3:].lstrip()
    if text[:1] != b"{":
        return set(), None
    members: set[str] = set()
    fmt = None
    try:
        for prefix, event, value in limits.json_events(io.BytesIO(text)):
            if prefix == "" and event == "map_key":
                members.add(value)
            elif prefix == "format" and event == "string":
                fmt = value
    except (ijson.JSONError, ijson.IncompleteJSONError, limits.LimitExceeded):
        pass  # cut off by the sample, or not JSON (or too deep): what was read decides
    return members, fmt


class Hashing(limits.Through):
    """Reads through to `raw`, keeping the SHA-256 and byte count of what was read (the file as
    stored, before decompression) and reporting progress."""

    def __init__(self, raw: BinaryIO, progress=None):
        self.raw, self.sha256, self.bytes, self.progress = raw, hashlib.sha256(), 0, progress

    def seen(self, data: bytes) -> None:
        if data:
            self.sha256.update(data)
            self.bytes += len(data)
            if self.progress is not None:
                self.progress(len(data))


class Opened:
    """An input opened for parsing: `stream` is decompressed and peekable."""

    def __init__(self, item: Input, progress=None):
        self.item = item
        self._file = stdin() if item.is_stdin else open(item.path, "rb")
        self.hashing = Hashing(self._file, progress)
        raw = io.BufferedReader(self.hashing, buffer_size=1 << 20)
        self.compressed = raw.peek(2)[:2] == GZIP_MAGIC
        # A gzip input is read through the limits on decompressed size and ratio.
        self.stream: io.BufferedReader = limits.gunzip(raw) if self.compressed else raw

    def sample(self) -> Sample:
        try:
            head = self.stream.peek(SAMPLE_BYTES)[:SAMPLE_BYTES]
            first = _first_value(head)
            if first is None and len(head) >= SAMPLE_BYTES:
                # A first record longer than the sample (a nuclei result with a large response):
                # look as far as the stream's buffer reaches.
                first = _first_value(self.stream.peek(FIRST_RECORD_BYTES)[:FIRST_RECORD_BYTES])
        except (OSError, EOFError, zlib.error) as exc:
            raise Malformed(f"cannot decompress: {exc}") from None
        return Sample(head, first)

    def finish(self) -> tuple[str, int]:
        """Read what the parser left (so the hash covers the whole file); (sha256, size)."""
        while self.hashing.read(1 << 20):
            pass
        return self.hashing.sha256.hexdigest(), self.hashing.bytes

    def close(self) -> None:
        if not self.item.is_stdin:
            self._file.close()


def _first_value(head: bytes):
    """The first JSON value of JSON lines (the first line) or of a JSON array (its first
    element), when the sample holds it whole."""
    text = head.lstrip()
    if text[:1] == b"[":
        import ijson

        try:  # incremental: the first element is yielded before a cut-off rest is reached
            return next(limits.json_items(io.BytesIO(text), "item", use_float=True), None)
        except (ijson.JSONError, limits.LimitExceeded):
            return None
    line = text.split(b"\n", 1)[0]
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def is_empty(head: bytes) -> bool:
    """Whether an input holds no records at all: nothing but white space, or an empty JSON
    array (nuclei -je of a clean run). A clean scan, not an error."""
    text = head.strip()
    return len(head) < SAMPLE_BYTES and (not text or (text[:1] == b"[" and text[1:].strip() == b"]"))


def detect(sample: Sample, name: str) -> ModuleType:
    """The format module for an input, by content; raises Malformed with the reason."""
    head = sample.head
    if not head.strip():
        raise Malformed("empty file")
    if b"\x00" in head[:4096]:
        raise Malformed("binary content, not a scanner output (or a compressed format other than gzip)")
    for module in formats().values():
        if module.sniff(sample):
            return module
    raise UnknownFormat("unknown format: not " + ", ".join(FORMAT_NAMES)
                    + " output (name it with --format if it is one of them)")


def chosen(fmt: str) -> ModuleType | None:
    """The module for `--format NAME`, or None for auto."""
    if fmt == "auto":
        return None
    if fmt not in FORMAT_NAMES:
        raise InvalidValue(f"unknown format {fmt!r}; one of: auto, {', '.join(FORMAT_NAMES)}")
    return format_module(fmt)
