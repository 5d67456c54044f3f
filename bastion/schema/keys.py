"""Natural keys: built from a kind's key recipe, parsed back to kind and parts.

Grammar (docs/keys.md):

    key       = "#" kind component*
    component = "#" escaped-text      ; a plain field, '%' and '#' percent-escaped
              | key                   ; a field that references another entity (starts with '#')

e.g. ``#port#tcp#443#asset#example.com#example.com``.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
import re
from dataclasses import dataclass
from typing import Any, Mapping

from bastion.errors import InvalidValue
from bastion.schema.kinds import REGISTRY
from bastion.schema.registry import EntityKind, FieldType

MAX_KEY_BYTES = 2048


_BAD_ESCAPE = re.compile(r"%(?!2[35])")


def escape(text: str) -> str:
    return text.replace("%", "%25").replace("#", "%23")


def unescape(text: str) -> str:
    """Inverse of escape(); raises InvalidValue for a '%' that escape() cannot have written."""
    if "%" in text and _BAD_ESCAPE.search(text):
        raise InvalidValue(f"invalid key component {text!r}: '%' must be written '%25'")
    return text.replace("%23", "#").replace("%25", "%")


def _component(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def build_key(kind: EntityKind, values: Mapping[str, Any]) -> str:
    """The key of an entity whose values are already normalized (see validation.prepare)."""
    out = ["#", kind.name]
    for part in kind.key:
        value = values.get(part)
        if value is None or value == "":
            raise InvalidValue(f"{kind.name} key part {part!r} is missing")
        field = kind.field(part)
        if field.type is FieldType.KEY:
            # Embedded verbatim, so it must itself be a well-formed key of an allowed kind;
            # otherwise the result could not be parsed back.
            try:
                ref = parse_key(value)
            except InvalidValue as exc:
                raise InvalidValue(f"{kind.name} key part {part!r}: {exc}", part) from None
            if ref.kind not in field.ref_kinds:
                allowed = ", ".join(field.ref_kinds)
                raise InvalidValue(f"{kind.name} key part {part!r} must name a {allowed}, "
                                   f"not a {ref.kind}", part)
            out.append(value)
        else:
            text = _component(value)
            if "\x00" in text:
                # PostgreSQL text cannot hold NUL; refuse it here rather than at insert time.
                raise InvalidValue(f"{kind.name} key part {part!r} contains a NUL character", part)
            out.append("#")
            out.append(escape(text))
    key = "".join(out)
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, e.g. from badly decoded JSON
        raise InvalidValue(f"{kind.name} key is not valid Unicode text") from None
    if size > MAX_KEY_BYTES:
        raise InvalidValue(f"{kind.name} key is longer than {MAX_KEY_BYTES} bytes")
    return key


@dataclass(frozen=True)
class ParsedKey:
    kind: str
    parts: dict[str, str]
    ref: "ParsedKey | None" = None  # the embedded key, for kinds whose key references another


def parse_key(key: str) -> ParsedKey:
    """Split a key into its kind and parts; raises InvalidValue for anything malformed."""
    if not isinstance(key, str):
        raise InvalidValue(f"invalid key {key!r}: a key is text starting with '#kind#'")
    return _parse_key(key)


@lru_cache(maxsize=1 << 16)  # the same asset key is parsed for each of its ports and risks
def _parse_key(key: str) -> ParsedKey:
    """Split a key into its kind and parts; raises InvalidValue for anything malformed."""
    if not isinstance(key, str) or not key.startswith("#") or len(key) < 2:
        raise InvalidValue(f"invalid key {key!r}: a key starts with '#kind#'")
    if "\x00" in key:
        raise InvalidValue(f"invalid key {key!r}: it contains a NUL character")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidValue(f"invalid key {key!r}: not valid Unicode text") from None
    if size > MAX_KEY_BYTES:
        raise InvalidValue(f"key is longer than {MAX_KEY_BYTES} bytes")
    name, sep, _ = key[1:].partition("#")
    kind = REGISTRY.node_kinds.get(name)
    if kind is None:
        raise InvalidValue(f"invalid key {key!r}: unknown kind {name!r}")
    if not sep:
        raise InvalidValue(f"invalid {name} key {key!r}: no parts after the kind")
    rest = key[1 + len(name):]
    fields = [kind.field(p) for p in kind.key]
    ref_at = next((i for i, f in enumerate(fields) if f.type is FieldType.KEY), None)
    parts: dict[str, str] = {}
    if ref_at is None:
        pieces = rest.split("#")
        if len(pieces) != len(fields) + 1 or pieces[0] != "" or "" in pieces[1:]:
            raise InvalidValue(f"invalid {name} key {key!r}: expected {len(fields)} parts")
        return ParsedKey(name, {f.name: unescape(p) for f, p in zip(fields, pieces[1:])})
    s = rest
    for f in fields[:ref_at]:
        end = s.find("#", 1)
        if not s.startswith("#") or end <= 1:
            raise InvalidValue(f"invalid {name} key {key!r}: missing {f.name}")
        parts[f.name], s = unescape(s[1:end]), s[end:]
    for f in reversed(fields[ref_at + 1:]):
        start = s.rfind("#")
        if start <= 0 or start == len(s) - 1:
            raise InvalidValue(f"invalid {name} key {key!r}: missing {f.name}")
        parts[f.name], s = unescape(s[start + 1:]), s[:start]
    ref_field = fields[ref_at]
    try:
        ref = parse_key(s)
    except InvalidValue as exc:
        raise InvalidValue(f"invalid {name} key {key!r}: {ref_field.name}: {exc}") from None
    if ref.kind not in ref_field.ref_kinds:
        raise InvalidValue(f"invalid {name} key {key!r}: {ref_field.name} cannot be a {ref.kind}")
    parts[ref_field.name] = s
    return ParsedKey(name, parts, ref)


def kind_of(key: str) -> str:
    """The kind named by a key's first component, without parsing the rest."""
    if not isinstance(key, str):
        raise InvalidValue(f"invalid key {key!r}: a key is text, not {type(key).__name__}")
    if not key.startswith("#"):
        raise InvalidValue(f"invalid key {key!r}: a key starts with '#kind#'")
    name = key[1:].partition("#")[0]
    if name not in REGISTRY.node_kinds:
        raise InvalidValue(f"invalid key {key!r}: unknown kind {name!r}")
    return name


@lru_cache(maxsize=1 << 16)  # a parent's id is needed once per child in a batch
def node_id(key: str) -> int:
    """The node's 63-bit id: stable across engines, computed without a round trip."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big") >> 1
