"""The limits every import reader enforces, in one place (docs/formats.md, "Limits").

A hostile or broken input must be refused (or accepted) in bounded time and memory, with one
line naming the file, the position and the limit, never a traceback or an excerpt of megabytes.
The shared layers enforce them, not each parser:

- `files.Run.open` / `inputs.Opened`: decompressed size and compression ratio of a gzip input
  (`Bounded`);
- `records.json_lines` and `line()`: the length of one line of a line-based input;
- `json_events` / `json_items`: the nesting depth of a streamed JSON document (ijson builds a
  prefix per level, so depth costs memory quadratically); `loads`: one JSON value in memory
  (orjson's own recursion limit is 1024, below which it is linear);
- `load_yaml`: aliases (a "billion laughs" bomb is a few hundred bytes of aliases);
- `csv_reader`: the length of one CSV field (the csv module's own limit is 131,072 characters
  and raises a bare `csv.Error`);
- `excerpt`: how much of an input value an error message quotes.

Each limit has a documented default, overridden by an environment variable read when a file is
opened (`current()`), so a test or a deployment can tighten or relax it without code.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, fields
from typing import Any, BinaryIO, Iterator

from bastion.ingest.records import Malformed

MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    depth: int = 100  # BASTION_MAX_DEPTH: nesting of JSON arrays/objects (and YAML collections)
    line: int = 16 * MiB  # BASTION_MAX_LINE: bytes of one line (JSON lines, CSV, text)
    field: int = 1 * MiB  # BASTION_MAX_FIELD: characters of one CSV field
    string: int = 16 * MiB  # BASTION_MAX_STRING: bytes of one JSON string, XML tag or text
    decompressed: int = 16 * 1024 * MiB  # BASTION_MAX_DECOMPRESSED: bytes a gzip input expands to
    ratio: int = 200  # BASTION_MAX_RATIO: decompressed / compressed bytes of a gzip input …
    ratio_after: int = 4 * MiB  # BASTION_MAX_RATIO_AFTER: … checked once this much is expanded
    yaml_aliases: int = 0  # BASTION_MAX_YAML_ALIASES: alias uses (*name) in one YAML document
    excerpt: int = 80  # BASTION_MAX_EXCERPT: characters of an input value quoted in an error


ENV = {f.name: f"BASTION_MAX_{f.name.upper()}" for f in fields(Limits)}


def current() -> Limits:
    """The limits in force: the defaults, overridden by BASTION_MAX_* environment variables."""
    given: dict[str, int] = {}
    for name, var in ENV.items():
        raw = os.environ.get(var)
        if raw:
            try:
                given[name] = int(raw.replace("_", ""))
            except ValueError:
                raise Malformed(f"{var}={raw!r} is not a whole number") from None
    return Limits(**given)


class LimitExceeded(Malformed):
    """An input goes beyond one of the limits; the message names the position and the limit."""


def refuse(what: str, where: str, name: str) -> LimitExceeded:
    value = getattr(current(), name)
    return LimitExceeded(f"{where}: {what} (limit {ENV[name]}={value})" if where
                         else f"{what} (limit {ENV[name]}={value})")


def excerpt(value: Any, limit: int | None = None) -> str:
    """At most `limit` characters of a value for an error message, saying how long it was."""
    text = value if isinstance(value, str) else str(value)
    n = limit if limit is not None else current().excerpt
    if len(text) <= n:
        return text
    return f"{text[:n]}… ({len(text):,} characters)"


# -- decompressed size and ratio -------------------------------------------------------------


class Through(io.RawIOBase):
    """A raw stream reading through to `self.raw`, showing each piece read to `seen(data)`."""

    raw: BinaryIO

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.seen(data)
        return n

    def seen(self, data: bytes) -> None:
        raise NotImplementedError


class Bounded(Through):
    """Reads through to a decompressing stream `raw`, refusing more than `limits.decompressed`
    bytes in all, or more than `limits.ratio` times the compressed bytes read so far
    (`compressed()`) once `limits.ratio_after` bytes have been expanded."""

    def __init__(self, raw: BinaryIO, compressed, limits: Limits | None = None):
        self.raw, self.compressed, self.limits, self.bytes = raw, compressed, limits or current(), 0

    def seen(self, data: bytes) -> None:
        self.bytes += len(data)
        lim = self.limits
        if self.bytes > lim.decompressed:
            raise refuse(f"gzip content expands beyond {lim.decompressed:,} bytes",
                         f"at byte {self.bytes:,} (decompressed)", "decompressed")
        if self.bytes > lim.ratio_after and self.bytes > lim.ratio * max(self.compressed(), 1):
            raise refuse(f"gzip content expands more than {lim.ratio} times "
                         f"({self.compressed():,} bytes to {self.bytes:,})",
                         f"at byte {self.bytes:,} (decompressed)", "ratio")


class _Counting:
    """A file object counting the bytes read from it: what the decompressor consumed."""

    mode = "rb"

    def __init__(self, raw: BinaryIO):
        self.raw, self.bytes = raw, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.bytes += len(data)
        return data


def gunzip(raw: BinaryIO, limits: Limits | None = None) -> io.BufferedReader:
    """A gzip stream decompressed through `Bounded` (the ratio measured against the compressed
    bytes the decompressor has consumed), buffered (peekable)."""
    import gzip

    counting = _Counting(raw)
    return io.BufferedReader(Bounded(gzip.GzipFile(fileobj=counting, mode="rb"),  # type: ignore[arg-type]
                                     lambda: counting.bytes, limits), buffer_size=1 << 20)


# -- lines -----------------------------------------------------------------------------------


def lines(stream: BinaryIO, limits: Limits | None = None) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of a binary stream, refusing a line longer than `limits.line` bytes
    before reading more of it."""
    cap = (limits or current()).line
    number = 0
    while True:
        line = stream.readline(cap + 1)
        if not line:
            return
        number += 1
        if len(line) > cap and not line.endswith(b"\n"):
            raise refuse(f"a line longer than {cap:,} bytes", f"line {number}", "line")
        yield number, line


# -- JSON ------------------------------------------------------------------------------------


def json_events(source, limits: Limits | None = None, **options) -> Iterator[tuple[str, str, Any]]:
    """`ijson.parse(source)` (prefix, event, value), refusing nesting deeper than
    `limits.depth` before ijson builds the prefix of a deeper level (its prefixes make depth
    cost quadratic memory: 200 KB of `[` needed more than 3 GiB)."""
    import ijson

    lim = limits or current()
    if hasattr(source, "read"):
        source = tokens(source, b'"', "a JSON string or number", lim)
    options.setdefault("buf_size", 1 << 20)  # yajl joins a string across reads: fewer, larger
    return ijson.parse(_depth_checked(ijson.basic_parse(source, **options), lim.depth))


def json_items(source, prefix: str, limits: Limits | None = None, **options) -> Iterator[Any]:
    """`ijson.items(source, prefix)` with the depth limit of `json_events`."""
    import ijson

    return ijson.items(json_events(source, limits, **options), prefix)


class Tokens(Through):
    """Reads through, refusing more than `cap` bytes without a `delimiter` byte: one token
    (a JSON string or number between `"`, an XML tag or text between `<`) that long, which a
    parser fed piece by piece joins (ijson) or rescans (expat) in time quadratic in its length
    (a 64 MiB JSON string took 21.6 s, a 100 MB XML attribute more than 200 s)."""

    def __init__(self, raw: BinaryIO, cap: int, delimiter: bytes, what: str):
        self.raw, self.cap, self.delimiter, self.what = raw, cap, delimiter, what
        self.run = self.bytes = 0

    def seen(self, data: bytes) -> None:
        n = len(data)
        first = data.find(self.delimiter)
        if (self.run + (n if first < 0 else first)) > self.cap:
            raise refuse(f"{self.what} longer than {self.cap:,} bytes",
                         f"at byte {self.bytes + max(first, 0):,}", "string")
        if first >= 0:
            self.run = n - data.rfind(self.delimiter) - 1
        else:
            self.run += n
        self.bytes += n


def tokens(stream: BinaryIO, delimiter: bytes, what: str, limits: Limits | None = None):
    """`stream` read through `Tokens` with the string limit, buffered (peekable)."""
    return io.BufferedReader(Tokens(stream, (limits or current()).string, delimiter, what),
                             buffer_size=1 << 20)


def _depth_checked(events, cap: int):
    depth = 0
    for event in events:
        kind = event[0]
        if kind == "start_map" or kind == "start_array":
            depth += 1
            if depth > cap:
                raise refuse(f"JSON nested deeper than {cap} levels", "", "depth")
        elif kind == "end_map" or kind == "end_array":
            depth -= 1
        yield event


def loads(data: bytes | str) -> Any:
    """One JSON value in memory (orjson), refusing nesting deeper than the depth limit. orjson
    refuses beyond 1,024 levels itself ("recursion limit exceeded"), in linear time."""
    import orjson

    value = orjson.loads(data)
    cap = current().depth
    if cap < 1024 and _deeper(value, cap):
        raise refuse(f"JSON nested deeper than {cap} levels", "", "depth")
    return value


def _deeper(value: Any, cap: int) -> bool:
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        elif not isinstance(v, list):
            continue
        if d > cap:
            return True
        stack.extend((x, d + 1) for x in v if isinstance(x, (dict, list)))
    return False


# -- YAML ------------------------------------------------------------------------------------


def load_yaml(text: str) -> Any:
    """One YAML document with the safe loader (libyaml's when there), refusing more than
    `limits.yaml_aliases` aliases (`*name`) and nesting deeper than `limits.depth` before the
    document is built: a few hundred bytes of nested aliases expand to billions of nodes when
    the value is walked."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    lim = current()
    if "*" in text:  # no alias without a star: skip the extra pass for the common file
        aliases = depth = 0
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > lim.yaml_aliases:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise refuse(f"YAML alias *{excerpt(event.anchor, 40)} (more than "
                                 f"{lim.yaml_aliases} aliases)", f"line {line}", "yaml_aliases")
            elif isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > lim.depth:
                    raise refuse(f"YAML nested deeper than {lim.depth} levels", "", "depth")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader


# -- CSV -------------------------------------------------------------------------------------


def csv_reader(text, *, dicts: bool = False, **options):
    """`csv.reader` (`csv.DictReader` with `dicts`) with the field limit in force; a longer
    field raises `csv.Error`, which `csv_error` turns into one line naming the limit."""
    import csv

    csv.field_size_limit(current().field)
    return csv.DictReader(text, **options) if dicts else csv.reader(text, **options)


def csv_error(exc: Exception, line: int) -> Malformed:
    """A csv.Error as one line; the field limit named as a limit."""
    msg = str(exc)
    if "field larger than field limit" in msg:
        return refuse(f"a CSV field longer than {current().field:,} characters", f"line {line}",
                      "field")
    return Malformed(f"line {line}: not valid CSV: {excerpt(msg)}")
