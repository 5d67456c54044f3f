"""Hosts and addresses as scanners write them (`https://x:8443/p`, `x:8443`, `[v6]:443`), turned
into asset keys with errors that name the input member."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from bastion.errors import InvalidValue, ValidationFailed
from bastion.ingest.records import Malformed, Record
from bastion.schema import normalize as norm


def host_of(value: Any) -> str | None:
    """The host part of a URL (`https://x:8443/p`), `host:port`, `[v6]:port`, `host/path` or a
    bare host or address; None when `value` is empty. Case and trailing dots are left to the
    normalizers."""
    return _host_of(value) if isinstance(value, str) else _host_of_any(value)


@lru_cache(maxsize=65536)  # pure; a scan names the same hosts and URLs over and over
def _host_of(value: str) -> str | None:
    return _host_of_any(value)


def _host_of_any(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Malformed(f"expected a host name or URL, got {type(value).__name__} {value!r}")
    text = value.strip()
    if not text:
        return None
    if "://" in text:
        text = text.lstrip("/")  # `/http://app_1/`, as some nuclei versions write `url`
        try:
            host = urlsplit(text).hostname
        except ValueError as exc:
            raise Malformed(f"invalid URL {value!r}: {exc}") from None
        if not host:
            raise Malformed(f"URL {value!r} has no host")
        return host
    text = text.split("/", 1)[0]
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise Malformed(f"unbalanced '[' in {value!r}")
        return text[1:end]
    if text.count(":") == 1:  # host:port (a bare IPv6 address has several colons)
        text = text.split(":", 1)[0]
    return text or None


def add_host(record: Record, member: str, value: Any) -> str | None:
    """Add the asset named by the host part of `value` (read from input member `member`) and
    return its key; None when `value` is empty. A bad name fails the record naming the member."""
    host = host_of(value)
    if host is None:
        return None
    return add_asset(record, member, host)


def add_asset(record: Record, member: str, identifier: str) -> str:
    """`record.add("asset", identifier=…)` with errors that name the input member."""
    try:
        return record.add("asset", identifier=identifier)
    except ValidationFailed as exc:
        reason = "; ".join(p.reason for p in exc.problems)
        raise Malformed(f"member {member!r}: {reason}") from None


def add_ip(record: Record, member: str, value: Any) -> str | None:
    """Add the IP asset of member `member` (which must hold an address) and return its key."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise Malformed(f"member {member!r} is not an IP address: {value!r}")
    try:
        address = norm.ip_address(value)
    except InvalidValue as exc:
        raise Malformed(f"member {member!r}: {exc}") from None
    return add_asset(record, member, address)


def is_ip_key(key: str | None) -> bool:
    """Whether an asset key names an IP address (`#asset#192.0.2.1#192.0.2.1`)."""
    return key is not None and norm.ip_version(key.rsplit("#", 1)[-1]) is not None


def string_list(value: Any, split: str | None = ",") -> list[str]:
    """A list of strings from a list, a `split`-separated string (one item when `split` is
    None) or None; blanks dropped, order kept, duplicates removed."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(split) if split else [value]
    elif isinstance(value, list):
        items = [v for v in value if v is not None]
    else:
        items = [value]
    return list(dict.fromkeys(s for s in (str(i).strip() for i in items) if s))


# Addresses that are not reachable from the internet: RFC 1918, loopback, link-local, CGNAT
# (RFC 6598), IPv6 unique-local and link-local.
INTERNAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
    "100.64.0.0/10", "::1/128", "fe80::/10", "fc00::/7"))


@lru_cache(maxsize=65536)
def exposure_of_address(value: str) -> str | None:
    """The exposure an address implies: `internal` for the INTERNAL_NETWORKS, `external` for a
    globally routable one, None when it says neither (documentation, multicast, reserved,
    unspecified addresses) or `value` is no address. An IPv4-mapped IPv6 address counts as its
    IPv4 address."""
    try:
        addr = ipaddress.ip_address(value.strip().strip("[]"))
    except (ValueError, AttributeError):
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if any(addr in net for net in INTERNAL_NETWORKS if net.version == addr.version):
        return "internal"
    return "external" if addr.is_global and not addr.is_multicast else None


def inferred_exposure(values: dict[str, Any], given: dict[str, Any]) -> str | None:
    """The exposure to write for an asset a scanner reports, when it may be inferred: the
    scanner gave none and the asset has none yet (`unknown`, the default), and its group is an
    address that implies one. A value set before — by an analyst, a CMDB, an earlier
    inference — is never replaced."""
    if "exposure" in given or values.get("exposure") not in (None, "unknown"):
        return None
    group = values.get("group") or values.get("identifier")
    return exposure_of_address(group) if isinstance(group, str) else None
