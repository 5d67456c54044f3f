"""Value normalization: one canonical spelling for DNS names, addresses, URLs, CVEs, CPEs.

Every function is idempotent (f(f(x)) == f(x)) and raises InvalidValue with a reason.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

import idna

from bastion.errors import InvalidValue

_LABEL = re.compile(r"^(?:\*|[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)$")
MAX_DNS_LENGTH = 253


def dns_name(value: str) -> str:
    """Lower-case, IDNA (punycode) encoded, no trailing dot."""
    if not isinstance(value, str):
        raise InvalidValue(f"DNS name must be text, got {type(value).__name__}")
    name = value.strip().rstrip(".")
    if not name:
        raise InvalidValue("empty DNS name")
    if not name.isascii():
        try:
            # UTS #46 maps case, width and ideographic dots; labels stay separately checked
            # so that underscore labels (_dmarc) remain allowed.
            name = idna.uts46_remap(name, std3_rules=False, transitional=False)
            name = ".".join(
                label if label.isascii() else idna.alabel(label) for label in name.split(".")
            )
        except idna.IDNAError as exc:
            raise InvalidValue(f"invalid internationalized DNS name {value!r}: {exc}") from None
    name = name.lower().rstrip(".")
    if len(name) > MAX_DNS_LENGTH:
        raise InvalidValue(f"DNS name longer than {MAX_DNS_LENGTH} characters")
    labels = name.split(".")
    for i, label in enumerate(labels):
        if not _LABEL.match(label) or (label == "*" and i != 0):
            raise InvalidValue(f"invalid DNS name {value!r} (label {label!r})")
    return name


def ip_address(value: str) -> str:
    """Canonical IPv4 dotted quad or compressed IPv6."""
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidValue(f"invalid IP address {value!r}") from None


def ip_version(value: str) -> int | None:
    """4 or 6 when `value` is an IP address, else None."""
    try:
        return ipaddress.ip_address(str(value).strip().strip("[]")).version
    except ValueError:
        return None


def cidr(value: str) -> str:
    """Network form: host bits cleared (10.1.2.3/8 → 10.0.0.0/8)."""
    text = str(value).strip()
    if "/" not in text:
        raise InvalidValue(f"invalid CIDR {value!r}: no prefix length")
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise InvalidValue(f"invalid CIDR {value!r}") from None


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_SAFE = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
_QUERY_SAFE = _PATH_SAFE | frozenset("?")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")


def _normalize_escapes(text: str, safe: frozenset[str]) -> str:
    """RFC 3986 §6.2.2: decode escaped unreserved octets, upper-case the rest, escape the unsafe."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        m = _PCT.match(text, i) if ch == "%" else None
        if m:
            octet = chr(int(m.group(1), 16))
            out.append(octet if octet in _UNRESERVED else "%" + m.group(1).upper())
            i += 3
            continue
        if ch in safe:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
        i += 1
    return "".join(out)


def url(value: str) -> str:
    """Lower-case scheme and host, no default port, no fragment or credentials, '/' for an empty
    path, canonical percent-escapes."""
    text = str(value).strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidValue(f"invalid URL {value!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname:
        raise InvalidValue(f"invalid URL {value!r}: scheme and host are required")
    host = parts.hostname
    if ip_version(host) == 6:
        host = f"[{ip_address(host)}]"
    elif ip_version(host) == 4:
        host = ip_address(host)
    else:
        host = dns_name(host)
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    path = _normalize_escapes(parts.path or "/", _PATH_SAFE)
    query = _normalize_escapes(parts.query, _QUERY_SAFE)
    return urlunsplit((scheme, host, path, query, ""))


def url_host(normalized_url: str) -> str:
    """The host of an already normalized URL, without brackets or port."""
    host = urlsplit(normalized_url).hostname or ""
    return ip_address(host) if ip_version(host) else host


_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")


def cve(value: str) -> str:
    text = str(value).strip().upper()
    if not _CVE.match(text):
        raise InvalidValue(f"invalid CVE id {value!r} (expected CVE-YYYY-NNNN)")
    return text


def risk_name(value: str) -> str:
    """Lower-case with runs of white space as '-'; a CVE id stays a CVE id (upper-case)."""
    text = "-".join(str(value).lower().split())
    if not text:
        raise InvalidValue("empty risk name")
    return text.upper() if _CVE.match(text.upper()) else text


_CPE_FIELDS = 11  # part … other, after the "cpe:2.3:" prefix
_CPE_SPLIT = re.compile(r"(?<!\\):")


def _cpe_component(text: str) -> str:
    text = text.strip().lower().replace(" ", "_")
    return text or "*"


def cpe(value: str) -> str:
    """CPE 2.3 formatted string, lower-case, 13 components; a CPE 2.2 URI is converted."""
    text = str(value).strip()
    low = text.lower()
    if low.startswith("cpe:2.3:"):
        comps = _CPE_SPLIT.split(text[8:])
    elif low.startswith("cpe:/"):
        comps = text[5:].split(":")
    else:
        raise InvalidValue(f"invalid CPE {value!r} (expected cpe:2.3:… or cpe:/…)")
    if len(comps) > _CPE_FIELDS or not comps[0]:
        raise InvalidValue(f"invalid CPE {value!r}")
    comps = [_cpe_component(c) for c in comps] + ["*"] * (_CPE_FIELDS - len(comps))
    if comps[0] not in ("a", "o", "h", "*"):
        raise InvalidValue(f"invalid CPE {value!r}: part must be a, o or h")
    return "cpe:2.3:" + ":".join(comps)


def cpe_from_name(product: str, version: str | None = None, vendor: str | None = None) -> str:
    """The CPE 2.3 string naming an application known only by name (and version)."""
    def esc(s: str | None) -> str:
        return _cpe_component((s or "").replace(":", "\\:"))

    if not product or not str(product).strip():
        raise InvalidValue("technology needs a CPE or a name")
    return cpe(f"cpe:2.3:a:{esc(vendor)}:{esc(product)}:{esc(version)}")


def text(value: str) -> str:
    """Trimmed text; used for free-text identifiers."""
    return str(value).strip()


def lower(value: str) -> str:
    return str(value).strip().lower()
