"""What the cloud CLI export formats share (gcloud, az): reading their JSON lists, canonical
configurations without volatile fields, and health as a chain (bastion.discovery.chain, the same
links and states as AWS discovery)."""

from __future__ import annotations

from typing import Any, Iterator

import orjson

from bastion.coverage.importers import Invalid, Malformed
from bastion.discovery.chain import Chain, deprecated_apis

__all__ = ["Chain", "canonical", "items", "flattened", "settle"]


def load(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"not valid JSON ({exc})") from None


def items(text: str | Any, what: str, *, wrappers: tuple[str, ...] = ("value",)) -> Iterator[tuple[str, Any]]:
    """(place, item) of a JSON list as the CLI writes it (text, or the document already read), or
    of the list under one of `wrappers` (the REST API's `value`); a non-object item is yielded as
    Invalid."""
    doc = load(text) if isinstance(text, str) else text
    key = None
    if isinstance(doc, dict):
        key = next((k for k in wrappers if isinstance(doc.get(k), list)), None)
        if key is None:
            raise Malformed(f"not {what}: expected a JSON list"
                            + (f" or an object with {' or '.join(wrappers)}" if wrappers else ""))
        doc = doc[key]
    if not isinstance(doc, list):
        raise Malformed(f"not {what}: expected a JSON list")
    for i, item in enumerate(doc):
        place = f"{key}[{i}]" if key else f"item {i + 1}"
        yield place, item if isinstance(item, dict) else Invalid(place, "not a JSON object")


def flattened(resource: dict[str, Any]) -> dict[str, Any]:
    """An Azure resource with its `properties` on top, as `az` prints it (the REST API and ARM
    templates nest them)."""
    props = resource.get("properties")
    if not isinstance(props, dict):
        return dict(resource)
    return {**{k: v for k, v in resource.items() if k != "properties"}, **props}


def canonical(value: Any, *volatile: str) -> str:
    """A configuration as canonical JSON without its volatile fields (timestamps, etags): its
    content hash changes only when the configuration does."""
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in volatile}
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()


def settle(chain: Chain, raw: str) -> tuple[str, list[str] | None]:
    """The chain's health once the deprecated APIs the configuration uses are counted."""
    deprecated_apis(chain, raw)
    return chain.health


def truthy(value: Any, default: bool = True) -> bool:
    """A JSON flag as the CLIs write it (a bool, sometimes a string); missing → `default`."""
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)
