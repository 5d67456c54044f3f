"""Value normalization: one canonical spelling for DNS names, addresses, URLs, CVEs, CPEs.

Every function is idempotent (f(f(x)) == f(x)) and raises InvalidValue with a reason.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

import idna

from bastion.errors import InvalidValue

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC = re.compile(r"[0-9]+")
MAX_DNS_LENGTH = 253
MAX_LABEL_LENGTH = 63


@lru_cache(maxsize=65536)  # pure; scans name the same hosts over and over
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
                label if label.isascii() else idna.alabel(label).decode("ascii")
                for label in name.split(".")
            )
        except (idna.IDNAError, UnicodeError) as exc:
            raise InvalidValue(f"invalid internationalized DNS name {value!r}: {exc}") from None
    name = name.lower().rstrip(".")
    if not name:
        raise InvalidValue("empty DNS name")
    if len(name) > MAX_DNS_LENGTH:
        raise InvalidValue(f"DNS name {value!r} is longer than {MAX_DNS_LENGTH} characters")
    labels = name.split(".")
    if labels == ["*"]:
        raise InvalidValue(f"invalid DNS name {value!r}: a wildcard needs a name below which "
                           "it stands ('*.example.com')")
    for i, label in enumerate(labels):
        if label == "*":
            if i != 0:
                raise InvalidValue(f"invalid DNS name {value!r}: '*' is allowed only as the "
                                   "leftmost label")
        elif not label:
            raise InvalidValue(f"invalid DNS name {value!r}: empty label")
        elif len(label) > MAX_LABEL_LENGTH:
            raise InvalidValue(f"invalid DNS name {value!r}: label {label[:20]!r}… is longer "
                               f"than {MAX_LABEL_LENGTH} characters")
        elif not _LABEL.fullmatch(label):
            raise InvalidValue(f"invalid DNS name {value!r}: label {label!r} may hold only "
                               "letters, digits, '-' and '_' and may not start or end with '-'")
    # RFC 3696 §2: a top-level label is never all-numeric. Without this rule '010.1.2.3' (an
    # IPv4 address with leading zeros) or '1.2.3.4' given as a domain would become a DNS name
    # whose key collides with, or shadows, an address asset.
    if _NUMERIC.fullmatch(labels[-1]):
        raise InvalidValue(f"invalid DNS name {value!r}: the last label is all digits "
                           "(an IP address is not a DNS name)")
    return name


def _ip_reason(text: str, network: bool) -> str:
    """Why `ipaddress` refused `text`, from the parser of the family it looks like."""
    head = text.split("/")[0]
    if network:
        cls = ipaddress.IPv6Network if ":" in head else ipaddress.IPv4Network
    else:
        cls = ipaddress.IPv6Address if ":" in head else ipaddress.IPv4Address
    try:
        cls(text, strict=False) if network else cls(text)
    except ValueError as exc:
        return str(exc)
    return "not an address"  # pragma: no cover - the generic parser refused it


@lru_cache(maxsize=65536)  # pure; scans name the same hosts over and over
def ip_address(value: str) -> str:
    """Canonical IPv4 dotted quad or compressed IPv6."""
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidValue(f"invalid IP address {value!r}: {_ip_reason(text, False)}") from None
    if addr.version == 6 and addr.ipv4_mapped is not None and addr.scope_id is None:
        # RFC 5952 §5 mixed notation, spelled out: str() gives '::ffff:c000:201' before
        # Python 3.13 and '::ffff:192.0.2.1' from 3.13 on, and a key must not depend on that.
        return f"::ffff:{addr.ipv4_mapped}"
    return str(addr)


_IPV4_CHARS = frozenset("0123456789.")


def ip_version(value: str) -> int | None:
    """4 or 6 when `value` is an IP address, else None."""
    text = str(value)
    if ":" not in text and not _IPV4_CHARS.issuperset(text.strip()):
        return None  # the common case, a DNS name: skip the parser and its exception
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
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidValue(f"invalid CIDR {value!r}: {_ip_reason(text, True)}") from None
    return f"{ip_address(str(net.network_address))}/{net.prefixlen}"  # see ip_address()


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


@lru_cache(maxsize=65536)  # pure; scans name the same hosts over and over
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
        try:
            host = dns_name(host)
        except InvalidValue as exc:
            raise InvalidValue(f"invalid URL {value!r}: host: {exc}") from None
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    path = _normalize_escapes(parts.path or "/", _PATH_SAFE)
    query = _normalize_escapes(parts.query, _QUERY_SAFE)
    return urlunsplit((scheme, host, path, query, ""))


def url_host(normalized_url: str) -> str:
    """The host of an already normalized URL, without brackets or port."""
    host = urlsplit(normalized_url).hostname or ""
    return ip_address(host) if ip_version(host) else host


# ASCII digits only: \d would accept Arabic-Indic or fullwidth digits and keep them in the key.
_CVE = re.compile(r"CVE-[0-9]{4}-[0-9]{4,}")


def cve(value: str) -> str:
    text = str(value).strip().upper()
    if not _CVE.fullmatch(text):
        raise InvalidValue(f"invalid CVE id {value!r} (expected CVE-YYYY-NNNN)")
    return text


def risk_name(value: str) -> str:
    """Lower-case with runs of white space as '-'; a CVE id stays a CVE id (upper-case)."""
    text = "-".join(str(value).lower().split())
    if not text:
        raise InvalidValue("empty risk name")
    return text.upper() if _CVE.fullmatch(text.upper()) else text


_CPE_FIELDS = 11  # part … other, after the "cpe:2.3:" prefix
_CPE22_FIELDS = 7  # a CPE 2.2 URI stops at language; edition may pack the 2.3 extras
_CPE_PARTS = ("a", "o", "h", "*")


def _cpe_literal(ch: str) -> str:
    """One literal character in CPE 2.3 formatted-string form (NISTIR 7695 §6.2): lower-case,
    white space as '_', letters, digits, '_', '.' and '-' bare, any other character quoted."""
    out = []
    for c in ch.lower():  # lower() may give two characters ('İ' → 'i' + U+0307)
        if c.isspace():
            out.append("_")
        elif c.isalnum() or c in "_.-":
            out.append(c)
        else:
            out.append("\\" + c)
    return "".join(out)


def _cpe_value(chars: list[str], literal_only: bool) -> str:
    value = "".join(chars)
    if value == "-" and literal_only:
        return "\\-"  # a literal hyphen on its own must not read as the NA value
    return value


def _fs_split(body: str, value: str) -> list[str]:
    """Split a formatted string's components on the colons that are not quoted."""
    comps, cur, i = [], [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if i + 1 == len(body):
                raise InvalidValue(f"invalid CPE {value!r}: it ends with a lone '\\'")
            cur.append(body[i:i + 2])
            i += 2
            continue
        if ch == ":":
            comps.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    comps.append("".join(cur))
    return comps


def _fs_component(raw: str) -> str:
    """Canonical form of one CPE 2.3 component: quoting made minimal and uniform; an unquoted
    '*' or '?' is a wildcard, any other unquoted punctuation is taken literally."""
    raw = raw.strip()
    if raw in ("", "*"):
        return "*"  # ANY
    if raw == "-":
        return "-"  # NA
    out: list[str] = []
    literal_only = True
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\":
            # A '\\' left last by strip() quoted white space: a literal blank, written '_'.
            out.append(_cpe_literal(raw[i + 1] if i + 1 < len(raw) else " "))
            i += 2
            continue
        if ch in "*?":
            out.append(ch)
            literal_only = False
        else:
            out.append(_cpe_literal(ch))
        i += 1
    return _cpe_value(out, literal_only)


def _uri_component(raw: str, value: str) -> str:
    """A CPE 2.2 URI component in 2.3 form: percent-escapes decoded (%01 and %02 are the
    '?' and '*' wildcards), literal punctuation quoted."""
    raw = raw.strip()
    if raw == "":
        return "*"
    if raw == "-":
        return "-"
    out: list[str] = []
    literal_only = True
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "%":
            m = _PCT.match(raw, i)
            if not m:
                raise InvalidValue(f"invalid CPE {value!r}: bad percent-escape in {raw!r}")
            code = int(m.group(1), 16)
            if code in (1, 2):
                out.append("?" if code == 1 else "*")
                literal_only = False
            elif 0x20 <= code < 0x7F:
                out.append(_cpe_literal(chr(code)))
            else:
                raise InvalidValue(f"invalid CPE {value!r}: %{m.group(1)} is not a printable "
                                   "ASCII character")
            i += 3
            continue
        out.append(_cpe_literal(ch))
        i += 1
    return _cpe_value(out, literal_only)


def _cpe_comps(value: str) -> list[str]:
    """The 11 canonical components (part … other) of a CPE 2.3 string or 2.2 URI."""
    text = str(value).strip()
    low = text.lower()
    if low.startswith("cpe:2.3:"):
        raw = _fs_split(text[8:], value)
        if len(raw) > _CPE_FIELDS:
            raise InvalidValue(f"invalid CPE {value!r}: more than {_CPE_FIELDS + 2} components")
        comps = [_fs_component(c) for c in raw]
    elif low.startswith("cpe:/"):
        raw = text[5:].split(":")
        if len(raw) > _CPE22_FIELDS:
            raise InvalidValue(f"invalid CPE {value!r}: a CPE 2.2 URI has at most "
                               f"{_CPE22_FIELDS} components after 'cpe:/'")
        extra: list[str] = []
        if len(raw) >= 6 and raw[5].startswith("~"):
            # Packed edition: ~edition~sw_edition~target_sw~target_hw~other (NISTIR 7695 §6.1).
            packed = raw[5][1:].split("~")
            if len(packed) != 5:
                raise InvalidValue(f"invalid CPE {value!r}: a packed edition has five "
                                   "'~'-separated fields")
            raw[5], extra = packed[0], packed[1:]
        comps = [_uri_component(c, value) for c in raw]
        if extra:
            comps += ["*"] * (_CPE22_FIELDS - len(comps))
            comps += [_uri_component(c, value) for c in extra]
    else:
        raise InvalidValue(f"invalid CPE {value!r} (expected cpe:2.3:… or cpe:/…)")
    if not raw[0].strip():
        raise InvalidValue(f"invalid CPE {value!r}: the part (a, o or h) is missing")
    comps += ["*"] * (_CPE_FIELDS - len(comps))
    if comps[0] not in _CPE_PARTS:
        raise InvalidValue(f"invalid CPE {value!r}: part must be a, o or h, not {comps[0]!r}")
    return comps


def cpe(value: str) -> str:
    """CPE 2.3 formatted string, lower-case, 13 components; a CPE 2.2 URI is converted."""
    return "cpe:2.3:" + ":".join(_cpe_comps(value))


def cpe_components(value: str) -> list[str]:
    """The 11 values (part, vendor, product, version, update, edition, language, sw_edition,
    target_sw, target_hw, other) of a CPE, quoting removed: '*' is ANY, '-' is NA."""
    out = []
    for comp in _cpe_comps(value):
        chars, i = [], 0
        while i < len(comp):
            if comp[i] == "\\":
                i += 1
            chars.append(comp[i])
            i += 1
        out.append("".join(chars))
    return out


def cpe_from_name(product: str, version: str | None = None, vendor: str | None = None) -> str:
    """The CPE 2.3 string naming an application known only by name (and version)."""
    def esc(s: object) -> str:
        # Every character of a name is literal: quote it so that '*', ':' or '\\' in a product
        # name can neither act as a wildcard nor split the string.
        s = "" if s is None else str(s).strip()
        if not s:
            return "*"
        return _cpe_value([_cpe_literal(ch) for ch in s], True)

    if not product or not str(product).strip():
        raise InvalidValue("technology needs a CPE or a name")
    return cpe(f"cpe:2.3:a:{esc(vendor)}:{esc(product)}:{esc(version)}")


def text(value: str) -> str:
    """Trimmed text; used for free-text identifiers."""
    return str(value).strip()


def lower(value: str) -> str:
    return str(value).strip().lower()


_ATTACK_TECHNIQUE = re.compile(r"T[0-9]{4}(\.[0-9]{3})?")


def attack_technique(value: str) -> str:
    """An ATT&CK technique or sub-technique id, upper-case: `t1078.004` → `T1078.004`."""
    text = str(value).strip().upper()
    if not _ATTACK_TECHNIQUE.fullmatch(text):
        raise InvalidValue(f"invalid ATT&CK technique id {value!r} (expected T1234 or T1234.001)")
    return text
