"""Property tests of natural keys (docs/keys.md).

The strategies produce the messy spellings scanners and people actually write: random case,
trailing and ideographic dots, Unicode and punycode labels, exploded/bracketed IPv6, CIDRs with
host bits set, URLs with default ports, credentials, fragments and needless percent-escapes,
CPE 2.2 URIs next to CPE 2.3 strings. The expected canonical form is built alongside each messy
spelling, independently of bastion's normalizers (idna is the oracle for punycode).
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

import idna
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from bastion.errors import InvalidValue, ValidationFailed
from bastion.schema import normalize as norm
from bastion.schema.batch import key_for, prepare_values
from bastion.schema.keys import MAX_KEY_BYTES, build_key, kind_of, node_id, parse_key
from bastion.schema.kinds import REGISTRY
from bastion.schema.registry import FieldType

# No deadline: the machine is shared and a slow example is not a failure.
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KINDS = REGISTRY.node_kinds

# ---------------------------------------------------------------------------------------------
# Spelling strategies. Each yields (canonical, messy).


def _swap(ch: str) -> str:
    up = ch.upper()
    return up if len(up) == 1 and up.lower() == ch else ch  # 'ß'.upper() is 'SS': keep 'ß'


@st.composite
def messy_case(draw, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(_swap(c) if f else c for c, f in zip(text, flips))


def _pad(draw) -> str:
    return draw(st.sampled_from(["", " ", "  ", "\t"]))


ASCII_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True).filter(
    lambda s: "--" not in s[2:4]  # 'ab--' prefixes are reserved for A-labels
)
TLD = st.from_regex(r"[a-z]{2,6}", fullmatch=True)
UNICODE_LABELS = ["bücher", "münchen", "straße", "café", "日本", "例え", "テスト", "пример",
                  "ελληνικά", "한국", "中文", "españa", "köln"]
UNICODE_TLDS = ["テスト", "рф", "中文"]
DOTS = [".", "\uff0e", "\u3002", "\uff61"]  # full stop, fullwidth, ideographic, halfwidth ideographic


@st.composite
def dns_label(draw, top: bool = False) -> tuple[str, str]:
    if draw(st.booleans()):
        word = draw(TLD if top else ASCII_LABEL)
        return word, draw(messy_case(word))
    word = draw(st.sampled_from(UNICODE_TLDS if top else UNICODE_LABELS))
    alabel = idna.alabel(word).decode("ascii")
    # The same label as its Unicode form or its A-label, in any case.
    return alabel, draw(messy_case(draw(st.sampled_from([word, alabel]))))


@st.composite
def dns_spelling(draw) -> tuple[str, str]:
    labels = draw(st.lists(dns_label(), min_size=0, max_size=3)) + [draw(dns_label(top=True))]
    if draw(st.booleans()):
        labels.insert(0, ("_dmarc", draw(messy_case("_dmarc"))))
    canonical = ".".join(c for c, _ in labels)
    any_unicode = any(not m.isascii() for _, m in labels)
    messy = ""
    for i, (_, m) in enumerate(labels):
        if i:  # exotic dots only where the name takes the Unicode path anyway
            messy += draw(st.sampled_from(DOTS)) if any_unicode or draw(st.booleans()) else "."
        messy += m
    messy += draw(st.sampled_from(["", ".", "\u3002"]))
    return canonical, messy


def _canonical_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """RFC 5952 (compressed, lower-case; IPv4-mapped in mixed notation)."""
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return str(ip)


@st.composite
def ip_spelling(draw, brackets: bool = True) -> tuple[str, str]:
    ip = draw(st.ip_addresses())
    canonical = _canonical_ip(ip)
    if ip.version == 4:
        return canonical, str(ip)
    messy = draw(messy_case(draw(st.sampled_from([ip.exploded, ip.compressed, str(ip)]))))
    if brackets and draw(st.booleans()):
        messy = f"[{messy}]"
    return canonical, messy


@st.composite
def cidr_spelling(draw) -> tuple[str, str]:
    ip = draw(st.ip_addresses())  # host bits set at random, as in '10.1.2.3/8'
    prefix = draw(st.integers(0, ip.max_prefixlen))
    net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    canonical = f"{_canonical_ip(net.network_address)}/{prefix}"
    if ip.version == 4:
        messy_ip = str(ip)
    else:
        messy_ip = draw(messy_case(draw(st.sampled_from([ip.exploded, str(ip)]))))
    if ip.version == 4 and draw(st.booleans()):
        return canonical, f"{messy_ip}/{net.netmask}"
    return canonical, f"{messy_ip}/{prefix}"


# One unit of a URL path or query: (canonical, messy).
UNRESERVED = "abcXYZ019-._~"


@st.composite
def url_unit(draw) -> tuple[str, str]:
    kind = draw(st.sampled_from(["plain", "escaped-unreserved", "unicode", "escaped-slash"]))
    if kind == "unicode":
        return "%C3%BC", draw(st.sampled_from(["ü", "%c3%bc", "%C3%bc"]))
    if kind == "escaped-slash":
        return "%2F", draw(st.sampled_from(["%2f", "%2F"]))
    ch = draw(st.sampled_from(UNRESERVED))
    if kind == "plain":
        return ch, ch
    hexa = f"{ord(ch):02X}"
    return ch, "%" + draw(messy_case(hexa.lower()))


def _join(units: list[tuple[str, str]]) -> tuple[str, str]:
    return "".join(c for c, _ in units), "".join(m for _, m in units)


DEFAULT_PORTS = {"http": 80, "https": 443}


@st.composite
def url_spelling(draw) -> tuple[str, str, str]:
    """(canonical URL, canonical host for the asset group, messy URL)."""
    scheme = draw(st.sampled_from(["http", "https"]))
    host_kind = draw(st.sampled_from(["dns", "ip"]))
    if host_kind == "dns":
        host, messy_host = draw(dns_spelling())
        group, url_host = host, host
    else:
        ip = draw(st.ip_addresses())
        group = _canonical_ip(ip)
        if ip.version == 4:
            url_host, messy_host = group, group
        else:
            url_host = f"[{group}]"
            messy_host = "[" + draw(messy_case(draw(st.sampled_from([ip.exploded, str(ip)])))) + "]"
    port_kind = draw(st.sampled_from(["none", "default", "other"]))
    port = ""
    messy_port = ""
    if port_kind == "default":
        messy_port = ":" + draw(st.sampled_from(["", "0"])) + str(DEFAULT_PORTS[scheme])
    elif port_kind == "other":
        number = draw(st.integers(1, 65535).filter(lambda n: n != DEFAULT_PORTS[scheme]))
        port = messy_port = f":{number}"
    segments = draw(st.lists(st.lists(url_unit(), max_size=4).map(_join), max_size=3))
    if segments:
        path = "/" + "/".join(c for c, _ in segments)
        messy_path = "/" + "/".join(m for _, m in segments)
    else:
        path, messy_path = "/", draw(st.sampled_from(["", "/"]))
    params = draw(st.lists(st.tuples(st.lists(url_unit(), min_size=1, max_size=3).map(_join),
                                     st.lists(url_unit(), max_size=3).map(_join)), max_size=2))
    query = "&".join(f"{k[0]}={v[0]}" for k, v in params)
    messy_query = "&".join(f"{k[1]}={v[1]}" for k, v in params)
    canonical = f"{scheme}://{url_host}{port}{path}" + (f"?{query}" if query else "")
    userinfo = draw(st.sampled_from(["", "user@", "user:s3cret@"]))
    fragment = draw(st.sampled_from(["", "#", "#section-2"]))
    messy = (f"{draw(messy_case(scheme))}://{userinfo}{messy_host}{messy_port}{messy_path}"
             + (f"?{messy_query}" if messy_query else draw(st.sampled_from(["", "?"]))) + fragment)
    return canonical, group, messy


@st.composite
def cve_spelling(draw) -> tuple[str, str]:
    year = draw(st.integers(1999, 2099))
    seq = draw(st.integers(1, 10**7))
    canonical = f"CVE-{year}-{seq:04d}"
    return canonical, _pad(draw) + draw(messy_case(canonical.lower())) + _pad(draw)


# CPE component units: (canonical 2.3, CPE 2.2 URI spelling, CPE 2.3 spelling). '*' and '?' are
# left out because unquoted they are wildcards; '#' and '%' exercise the key's escaping.
CPE_PUNCT = "$!+@&()~:#%,;="


@st.composite
def cpe_unit(draw) -> tuple[str, str, str]:
    if draw(st.integers(0, 3)) == 0:
        p = draw(st.sampled_from(CPE_PUNCT))
        uri = "%" + draw(messy_case(f"{ord(p):02x}"))
        fs = "\\" + p if p == ":" or draw(st.booleans()) else p  # unquoted is read literally
        return "\\" + p, uri, fs
    ch = draw(st.sampled_from("abcxyz0189_."))
    fs = "\\." if ch == "." and draw(st.booleans()) else ch  # needless quoting
    return ch, draw(messy_case(ch)), draw(messy_case(fs))


@st.composite
def cpe_value(draw) -> tuple[str, str, str]:
    units = draw(st.lists(cpe_unit(), min_size=1, max_size=8))
    return tuple("".join(u[i] for u in units) for i in range(3))


@st.composite
def cpe_spelling(draw) -> tuple[str, str, str]:
    """(canonical 2.3, 2.2 URI, 2.3 formatted string) of one application."""
    part = draw(st.sampled_from("aoh"))
    vendor, product, version = draw(cpe_value()), draw(cpe_value()), draw(cpe_value())
    target = draw(st.none() | cpe_value())
    canonical = f"cpe:2.3:{part}:{vendor[0]}:{product[0]}:{version[0]}:*:*:*:*:" \
                f"{target[0] if target else '*'}:*:*"
    uri = f"cpe:/{draw(messy_case(part))}:{vendor[1]}:{product[1]}:{version[1]}"
    fs = f"cpe:2.3:{draw(messy_case(part))}:{vendor[2]}:{product[2]}:{version[2]}"
    if target:
        uri += f"::~~~{target[1]}~~"  # CPE 2.2 packs target_sw into the edition
        fs += f":*:*:*:*:{target[2]}"
    elif draw(st.booleans()):
        fs += ":*:*:*:*:*:*:*"
    prefix = draw(st.sampled_from(["cpe", "CPE"]))
    return canonical, prefix + uri[3:], prefix + fs[3:]


# Free text with the characters the key grammar must escape, and spellings of its own escapes.
TEXT = st.lists(st.characters(exclude_categories=("Cs", "Cc"))
                | st.sampled_from(["#", "%", "%23", "%25", "##", " "]),
                min_size=1, max_size=12).map("".join)

# ---------------------------------------------------------------------------------------------
# (a) every normalizer is idempotent


def _asset_key(group: str, identifier: str) -> str:
    esc = lambda s: s.replace("%", "%25").replace("#", "%23")  # noqa: E731 - docs/keys.md rule
    return f"#asset#{esc(group)}#{esc(identifier)}"


@PROPS
@given(dns_spelling())
def test_dns_name_spellings(pair):
    canonical, messy = pair
    assert norm.dns_name(messy) == canonical
    assert norm.dns_name(canonical) == canonical


@PROPS
@given(ip_spelling())
def test_ip_address_spellings(pair):
    canonical, messy = pair
    assert norm.ip_address(messy) == canonical
    assert norm.ip_address(canonical) == canonical


@PROPS
@given(cidr_spelling())
def test_cidr_spellings(pair):
    canonical, messy = pair
    assert norm.cidr(messy) == canonical
    assert norm.cidr(canonical) == canonical


@PROPS
@given(url_spelling())
def test_url_spellings(triple):
    canonical, group, messy = triple
    assert norm.url(messy) == canonical
    assert norm.url(canonical) == canonical
    assert norm.url_host(canonical) == group


@PROPS
@given(cve_spelling())
def test_cve_and_risk_name_spellings(pair):
    canonical, messy = pair
    assert norm.cve(messy) == canonical == norm.cve(canonical)
    assert norm.risk_name(messy) == canonical == norm.risk_name(canonical)


@PROPS
@given(cpe_spelling())
def test_cpe_spellings(triple):
    canonical, uri, fs = triple
    assert norm.cpe(uri) == canonical
    assert norm.cpe(fs) == canonical
    assert norm.cpe(canonical) == canonical


@PROPS
@given(st.text(max_size=40), st.text(max_size=10))
def test_cpe_from_name_is_a_fixed_point_of_cpe(product, version):
    try:
        value = norm.cpe_from_name(product, version)
    except InvalidValue:
        assert not product.strip()
        return
    assert norm.cpe(value) == value
    # The name is literal: it comes back from the components unchanged (modulo case/space).
    assert norm.cpe_components(value)[2] == "".join(
        "_" if c.isspace() else c for c in product.strip().lower())


# Fragments that make arbitrary text look like each value type, so that random inputs reach
# the interesting code paths instead of failing the first check.
FRAGMENTS = st.lists(
    st.sampled_from(list("aZ09.-_*:/[]%#?@ ~\\$ßİüÜ例。．") + [
        "%7e", "%C3%bc", "xn--", "::", "[::1]", "http://", "HTTPS://", "cpe:/", "cpe:2.3:",
        "CVE-2021-", "1234", ":443", ":80", "192.0.2.", "/24", "~~~", "\\ :", "%01"]),
    max_size=20).map("".join)

NORMALIZERS = [norm.dns_name, norm.ip_address, norm.cidr, norm.url, norm.cve, norm.risk_name,
               norm.cpe, norm.text, norm.lower]


@pytest.mark.parametrize("fn", NORMALIZERS, ids=lambda f: f.__name__)
@PROPS
@given(raw=FRAGMENTS | st.text(max_size=30))
def test_every_normalizer_is_idempotent_or_refuses(fn, raw):
    # Anything but InvalidValue escaping here would be a crash the CLI prints as a bug.
    try:
        once = fn(raw)
    except InvalidValue as exc:
        assert str(exc)  # a reason, never an empty message
        return
    assert fn(once) == once


# ---------------------------------------------------------------------------------------------
# (b) equal inputs in any spelling give equal keys


@PROPS
@given(dns_spelling(), st.sampled_from(["", " ", "\t"]))
def test_asset_key_by_domain(pair, pad):
    canonical, messy = pair
    assert key_for("asset", identifier=pad + messy + pad) == _asset_key(canonical, canonical)
    assert key_for("asset", identifier=canonical) == _asset_key(canonical, canonical)


@PROPS
@given(ip_spelling())
def test_asset_key_by_ip(pair):
    canonical, messy = pair
    expected = _asset_key(canonical, canonical)
    assert key_for("asset", identifier=messy) == expected
    cls = "ipv4" if ":" not in canonical else "ipv6"
    assert key_for("asset", identifier=canonical, **{"class": cls}) == expected


@PROPS
@given(cidr_spelling())
def test_asset_key_by_cidr(pair):
    canonical, messy = pair
    assert key_for("asset", identifier=messy) == _asset_key(canonical, canonical)


@PROPS
@given(url_spelling())
def test_asset_key_by_url(triple):
    canonical, group, messy = triple
    assert key_for("asset", identifier=messy) == _asset_key(group, canonical)
    assert key_for("asset", identifier=canonical, **{"class": "url"}) == _asset_key(group, canonical)


@st.composite
def host_asset(draw) -> tuple[str, str, str]:
    """(asset key, its group, a messy identifier spelling of the same asset)."""
    canonical, messy = draw(dns_spelling() | ip_spelling())
    return _asset_key(canonical, canonical), canonical, messy


@PROPS
@given(host_asset(), st.sampled_from(["tcp", "udp", "sctp"]), st.integers(0, 65535), st.data())
def test_port_key(asset, protocol, number, data):
    key, _, messy = asset
    messy_protocol = data.draw(messy_case(protocol)) + data.draw(st.sampled_from(["", " "]))
    messy_number = data.draw(st.sampled_from([number, str(number)]))
    via_messy = key_for("port", asset=key_for("asset", identifier=messy),
                        protocol=messy_protocol, number=messy_number)
    assert via_messy == key_for("port", asset=key, protocol=protocol, number=number)
    assert via_messy == f"#port#{protocol}#{number}{key}"


def test_port_protocol_defaults_to_tcp():
    asset = key_for("asset", identifier="example.com")
    assert key_for("port", asset=asset, number=22) == f"#port#tcp#22{asset}"


@PROPS
@given(host_asset(), cve_spelling(), st.sampled_from(["name", "cve", "both"]), st.integers(1, 65535))
def test_risk_key_with_cve_names(asset, cve, given_as, port):
    key, group, messy = asset
    canonical, messy_cve = cve
    values = {"name": messy_cve} if given_as == "name" else {"cve": messy_cve}
    if given_as == "both":
        values["name"] = canonical.lower()
    expected = f"#risk#{group}#{canonical}"
    # The same finding on the asset (any spelling) or on one of its ports is one risk: the key
    # holds the asset group, not the target.
    assert key_for("risk", target=key_for("asset", identifier=messy), severity="high",
                   **values) == expected
    port_key = key_for("port", asset=key, number=port)
    assert key_for("risk", target=port_key, severity="low", name=canonical) == expected


@PROPS
@given(host_asset(), st.sampled_from(["Log4Shell RCE", "SQL  Injection", "exposed .git"]))
def test_risk_key_with_plain_names(asset, name):
    key, group, messy = asset
    canonical = "-".join(name.lower().split())
    spelled = " " + name.upper() + " "
    assert key_for("risk", target=key, name=spelled, severity="info") == f"#risk#{group}#{canonical}"


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace("#", "%23")


@PROPS
@given(cpe_spelling())
def test_technology_key_by_cpe_22_and_23(triple):
    canonical, uri, fs = triple
    expected = "#technology#" + _escape(canonical)
    assert key_for("technology", cpe=uri) == expected
    assert key_for("technology", cpe=fs) == expected


def test_technology_key_by_name_and_version():
    expected = "#technology#cpe:2.3:a:*:apache_http_server:2.4.1:*:*:*:*:*:*:*"
    assert key_for("technology", name="Apache HTTP Server", version="2.4.1") == expected
    assert key_for("technology", name=" apache  http server ", version="2.4.1") != expected
    assert key_for("technology", cpe="cpe:2.3:a:*:Apache_HTTP_Server:2.4.1") == expected


@PROPS
@given(host_asset(), TEXT.filter(lambda s: s.strip()), TEXT.filter(lambda s: s.strip()), st.data())
def test_attribute_key_with_hash_and_percent(asset, name, value, data):
    key, _, messy = asset
    name_c, value_c = name.strip().lower(), value.strip()
    assume(name_c.lower() == name_c)  # a few letters lower-case to something that is not lower
    messy_name = data.draw(messy_case(name_c)) + " "
    messy_value = " " + value_c + data.draw(st.sampled_from(["", " ", "\t"]))
    expected = f"#attribute#{_escape(name_c)}#{_escape(value_c)}{key}"
    got = key_for("attribute", parent=key_for("asset", identifier=messy), name=messy_name,
                  value=messy_value)
    assert got == expected
    parsed = parse_key(got)
    assert parsed.parts["name"] == name_c and parsed.parts["value"] == value_c
    assert parsed.parts["parent"] == key


@PROPS
@given(TEXT, TEXT)
def test_escaping_is_injective(a, b):
    assume(a.strip() and b.strip() and a.strip() != b.strip())
    parent = "#capability#nuclei"
    ka = key_for("attribute", parent=parent, name="banner", value=a)
    kb = key_for("attribute", parent=parent, name="banner", value=b)
    assert ka != kb
    assert parse_key(ka).parts["value"] == a.strip()


# ---------------------------------------------------------------------------------------------
# (c) every produced key parses back and rebuilds to itself, for every node kind


def _key(kind: str, values: dict[str, Any]) -> str:
    return key_for(kind, **values)


NAME = st.from_regex(r"[A-Za-z][A-Za-z0-9 _.:#%-]{0,15}", fullmatch=True)


@st.composite
def asset_values(draw) -> dict[str, Any]:
    shape = draw(st.sampled_from(["dns", "ip", "cidr", "url", "cloud", "repository"]))
    if shape == "dns":
        return {"identifier": draw(dns_spelling())[1]}
    if shape == "ip":
        return {"identifier": draw(ip_spelling())[1]}
    if shape == "cidr":
        return {"identifier": draw(cidr_spelling())[1]}
    if shape == "url":
        return {"identifier": draw(url_spelling())[2]}
    if shape == "cloud":
        return {"class": "cloud_resource", "identifier": draw(TEXT.filter(str.strip)),
                "account": draw(st.sampled_from(["123456789012", "Prod#1", "100%"])),
                "provider": "aws"}
    return {"class": "repository", "identifier": draw(st.sampled_from(
        ["github.com/Acme/API", "gitlab.example.com/group/repo#1"])), "group": draw(NAME)}


def key_of(kinds: tuple[str, ...]):
    return st.sampled_from(kinds).flatmap(lambda k: VALUES[k]().map(lambda v: _key(k, v)))


def port_values():
    return st.fixed_dictionaries({
        "asset": key_of(("asset",)),
        "number": st.integers(0, 65535),
        "protocol": st.sampled_from(["tcp", "UDP", "Sctp"]),
    })


def technology_values():
    return (st.fixed_dictionaries({"cpe": cpe_spelling().flatmap(lambda t: st.sampled_from(t[1:]))})
            | st.fixed_dictionaries({"name": NAME,
                                     "version": st.none() | st.sampled_from(["1.0", "2.4.1", "7.4p1"])}))


def attribute_values():
    return st.fixed_dictionaries({
        "parent": key_of(KINDS["attribute"].field("parent").ref_kinds),
        "name": NAME,
        "value": TEXT.filter(str.strip),
    })


def risk_values():
    name = NAME | cve_spelling().map(lambda p: p[1])
    return st.fixed_dictionaries({
        "target": key_of(KINDS["risk"].field("target").ref_kinds),
        "name": name,
        "severity": st.sampled_from(["info", "low", "Medium", "HIGH", "critical"]),
    })


def seed_values():
    return st.one_of(
        dns_spelling().map(lambda p: {"identifier": p[1]}),
        cidr_spelling().map(lambda p: {"identifier": p[1]}),
        ip_spelling().map(lambda p: {"class": "ip", "identifier": p[1]}),
        TEXT.filter(str.strip).map(lambda t: {"class": "cloud_account", "identifier": t}),
    )


def capability_values():
    return st.fixed_dictionaries({"name": NAME})


def job_values():
    return st.fixed_dictionaries({
        "target": key_of(KINDS["job"].field("target").ref_kinds),
        "capability": NAME,
    })


def integration_values():
    return st.fixed_dictionaries({"type": NAME, "name": NAME})


TECHNIQUE = st.tuples(st.integers(1000, 1700), st.none() | st.integers(1, 20)).map(
    lambda t: f"t{t[0]}" + (f".{t[1]:03d}" if t[1] else ""))


def cloud_account_values():
    return st.fixed_dictionaries({"provider": st.sampled_from(["aws", "AZURE", "gcp", "other"]),
                                  "identifier": TEXT.filter(str.strip)})


def detection_values():
    return st.fixed_dictionaries({"account": key_of(("cloud_account",)),
                                  "rule_id": TEXT.filter(str.strip)})


def mapping_values():
    return st.fixed_dictionaries({"detection": key_of(("detection",)), "technique": TECHNIQUE})


def gap_values():
    return st.fixed_dictionaries({"account": key_of(("cloud_account",)), "technique": TECHNIQUE})


VALUES = {
    "cloud_account": cloud_account_values,
    "detection": detection_values,
    "mapping": mapping_values,
    "gap": gap_values,
    "asset": asset_values,
    "port": port_values,
    "technology": technology_values,
    "attribute": attribute_values,
    "risk": risk_values,
    "seed": seed_values,
    "capability": capability_values,
    "job": job_values,
    "integration": integration_values,
}


def any_key():
    return key_of(tuple(sorted(KINDS)))


def test_strategies_cover_every_node_kind():
    # A kind added to the registry must get a strategy here, or (c) silently skips it.
    assert set(VALUES) == set(KINDS)


def _assert_round_trip(key: str, kind: str) -> None:
    parsed = parse_key(key)
    assert parsed.kind == kind == kind_of(key)
    assert key.startswith(f"#{kind}#")
    ek = KINDS[kind]
    assert set(parsed.parts) == set(ek.key)
    assert build_key(ek, parsed.parts) == key
    refs = [p for p in ek.key if ek.field(p).type is FieldType.KEY]
    if refs:
        embedded = parsed.parts[refs[0]]
        assert parsed.ref == parse_key(embedded)
        _assert_round_trip(embedded, parsed.ref.kind)
    else:
        assert parsed.ref is None


@pytest.mark.parametrize("kind", sorted(KINDS))
@PROPS
@given(data=st.data())
def test_every_key_parses_back(kind, data):
    values = data.draw(VALUES[kind](), label="values")
    prepared = prepare_values(KINDS[kind], values)
    key = build_key(KINDS[kind], prepared)
    assert key_for(kind, **values) == key
    _assert_round_trip(key, kind)
    # The parsed parts are exactly the normalized values the key was built from.
    parsed = parse_key(key)
    assert parsed.parts == {p: str(prepared[p]) for p in KINDS[kind].key}


def test_nested_keys_spelled_out():
    asset = key_for("asset", identifier="WWW.Example.COM.")
    port = key_for("port", asset=asset, number=443)
    job = key_for("job", target=port, capability="Nuclei")
    risk = key_for("risk", target=port, name="cve-2021-44228", severity="critical")
    on_risk = key_for("attribute", parent=risk, name="Source", value="nvd#2 100%")
    on_job = key_for("attribute", parent=job, name="exit", value="0")
    assert asset == "#asset#www.example.com#www.example.com"
    assert port == "#port#tcp#443#asset#www.example.com#www.example.com"
    assert job == "#job#port#tcp#443#asset#www.example.com#www.example.com#nuclei"
    assert risk == "#risk#www.example.com#CVE-2021-44228"
    assert on_risk == "#attribute#source#nvd%232 100%25#risk#www.example.com#CVE-2021-44228"
    assert on_job == "#attribute#exit#0" + job
    parsed = parse_key(on_job)
    assert (parsed.kind, parsed.ref.kind, parsed.ref.ref.kind, parsed.ref.ref.ref.kind) == (
        "attribute", "job", "port", "asset")
    assert parsed.ref.ref.ref.parts == {"group": "www.example.com", "identifier": "www.example.com"}
    assert parse_key(on_risk).parts["value"] == "nvd#2 100%"
    for key in (asset, port, job, risk, on_risk, on_job):
        _assert_round_trip(key, kind_of(key))


@pytest.mark.parametrize(("kind", "values", "key"), [
    ("technology", {"cpe": "cpe:/a:openbsd:openssh:7.4"},
     "#technology#cpe:2.3:a:openbsd:openssh:7.4:*:*:*:*:*:*:*"),
    ("seed", {"identifier": "10.1.2.3/8"}, "#seed#cidr#10.0.0.0/8"),
    ("seed", {"identifier": "Example.COM."}, "#seed#domain#example.com"),
    ("seed", {"class": "ip", "identifier": "2001:DB8::1"}, "#seed#ip#2001:db8::1"),
    ("capability", {"name": "Nmap"}, "#capability#nmap"),
    ("integration", {"type": "AWS", "name": "Prod Account"}, "#integration#aws#prod account"),
    ("job", {"target": "#seed#domain#example.com", "capability": "Subfinder"},
     "#job#seed#domain#example.com#subfinder"),
    ("asset", {"class": "cloud_resource", "identifier": "arn:aws:s3:::logs", "account": "1234"},
     "#asset#1234#arn:aws:s3:::logs"),
    ("asset", {"identifier": "https://user:pw@Bücher.DE:443/x#top"},
     "#asset#xn--bcher-kva.de#https://xn--bcher-kva.de/x"),
    ("risk", {"target": "#technology#cpe:2.3:a:openbsd:openssh:7.4:*:*:*:*:*:*:*",
              "name": "CVE-2018-15473", "severity": "medium"}, "#risk#openbsd:openssh#CVE-2018-15473"),
])
def test_key_recipes(kind, values, key):
    assert key_for(kind, **values) == key
    _assert_round_trip(key, kind)


# ---------------------------------------------------------------------------------------------
# (d) keys over MAX_KEY_BYTES are rejected


@PROPS
@given(st.integers(1, MAX_KEY_BYTES), st.sampled_from(["a", "é", "例", "𝔸", "#"]))
def test_key_length_limit_counts_utf8_bytes(n, ch):
    name = ch * n
    key_bytes = len(("#capability#" + name.replace("#", "%23")).encode("utf-8"))
    if key_bytes <= MAX_KEY_BYTES:
        key = build_key(KINDS["capability"], {"name": name})
        assert len(key.encode("utf-8")) == key_bytes
        assert parse_key(key).parts["name"] == name
    else:
        with pytest.raises(InvalidValue, match=f"longer than {MAX_KEY_BYTES} bytes"):
            build_key(KINDS["capability"], {"name": name})


def test_key_length_limit_boundary():
    room = MAX_KEY_BYTES - len("#capability#")
    assert len(build_key(KINDS["capability"], {"name": "a" * room})) == MAX_KEY_BYTES
    with pytest.raises(InvalidValue, match="capability key is longer than 2048 bytes"):
        build_key(KINDS["capability"], {"name": "a" * (room + 1)})
    with pytest.raises(InvalidValue, match="key is longer than 2048 bytes"):
        parse_key("#capability#" + "a" * (room + 1))


def test_nesting_cannot_exceed_the_limit():
    # An asset key that fits leaves no room for a port on it.
    host = ".".join(["h" * 63] * 3 + ["x" * 61])
    room = MAX_KEY_BYTES - len(f"#asset#{host}#") - 5
    asset = build_key(KINDS["asset"], {"group": host, "identifier": "u" * room})
    assert len(asset) == MAX_KEY_BYTES - 5
    with pytest.raises(InvalidValue, match="port key is longer than 2048 bytes"):
        build_key(KINDS["port"], {"protocol": "tcp", "number": 443, "asset": asset})


def test_long_url_asset_is_refused_with_the_reason():
    host = ".".join(["h" * 63] * 3 + ["x" * 61])
    url = f"https://{host}/" + "p" * 1700
    with pytest.raises(InvalidValue, match="asset key is longer than 2048 bytes"):
        key_for("asset", identifier=url)


# ---------------------------------------------------------------------------------------------
# (e) malformed keys raise InvalidValue


MALFORMED = [
    ("", "a key starts with '#kind#'"),
    ("#", "a key starts with '#kind#'"),
    ("asset#example.com#example.com", "a key starts with '#kind#'"),
    ("#tenant#default", "unknown kind 'tenant'"),  # tenants are not nodes
    ("#widget#x", "unknown kind 'widget'"),
    ("#Asset#example.com#example.com", "unknown kind 'Asset'"),
    ("#asset", "no parts after the kind"),
    ("#asset#example.com", "expected 2 parts"),
    ("#asset#example.com#example.com#extra", "expected 2 parts"),
    ("#asset##example.com", "expected 2 parts"),
    ("#capability#", "expected 1 parts"),
    ("#capability#a%2Fb", "'%' must be written '%25'"),
    ("#capability#100%", "'%' must be written '%25'"),
    ("#port#tcp#443", "missing number"),
    ("#port#tcp#443#", "asset:"),
    ("#port##443#asset#a.com#a.com", "missing protocol"),
    ("#port#tcp#443#asset#a.com", "asset: .*expected 2 parts"),
    ("#port#tcp#443#risk#a.com#x", "asset cannot be a risk"),
    ("#port#tcp#443#port#tcp#1#asset#a.com#a.com", "asset cannot be a port"),
    ("#job#capability#nmap#nmap", "target cannot be a capability"),
    ("#job#asset#a.com#a.com", "target: .*expected 2 parts"),
    ("#job#asset#a.com#a.com#", "missing capability"),
    ("#attribute#k#v#attribute#k#v#asset#a.com#a.com", "parent cannot be a attribute"),
    ("#attribute#k#v", "missing value"),
    ("#capability#nul\x00", "NUL character"),
    ("#capability#\ud800", "not valid Unicode text"),
]


@pytest.mark.parametrize(("key", "reason"), MALFORMED)
def test_malformed_keys(key, reason):
    with pytest.raises(InvalidValue, match=reason):
        parse_key(key)


@pytest.mark.parametrize("key", [None, 5, b"#asset#a.com#a.com", ["#capability#x"]])
def test_non_text_keys(key):
    with pytest.raises(InvalidValue, match="invalid key"):
        parse_key(key)
    with pytest.raises(InvalidValue, match="invalid key"):
        kind_of(key)


@pytest.mark.parametrize(("key", "reason"), [
    ("asset#a#a", "starts with '#kind#'"), ("#widget#x", "unknown kind 'widget'"), ("", "starts with")])
def test_kind_of_rejects(key, reason):
    with pytest.raises(InvalidValue, match=reason):
        kind_of(key)


@PROPS
@given(st.text(max_size=30).filter(lambda s: not s.startswith("#")))
def test_text_without_leading_hash_is_no_key(text):
    with pytest.raises(InvalidValue, match="a key starts with '#kind#'"):
        parse_key(text)


@PROPS
@given(st.text(st.characters(exclude_characters="#\x00", exclude_categories=("Cs",)),
               min_size=1, max_size=12).filter(lambda s: s not in KINDS),
       st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=20))
def test_unknown_kinds_are_refused(name, rest):
    with pytest.raises(InvalidValue, match="unknown kind"):
        parse_key(f"#{name}#{rest}")


# Key-shaped noise: kind names, separators, escapes and values in random order.
KEY_NOISE = st.lists(st.sampled_from(
    ["#", "#", "asset", "port", "job", "attribute", "risk", "seed", "capability", "tcp", "443",
     "a.com", "domain", "x", "%23", "%25", "%", "%2F"]), max_size=14).map("".join)


@PROPS
@given(KEY_NOISE)
def test_whatever_parses_has_one_spelling(text):
    # parse_key accepts only canonical keys: rebuilding from the parts gives the text back, so
    # a key read from outside can be compared with computed keys as a plain string.
    try:
        parsed = parse_key(text)
    except InvalidValue as exc:
        assert str(exc)
        return
    assert build_key(KINDS[parsed.kind], parsed.parts) == text


@pytest.mark.parametrize("kind", sorted(KINDS))
@PROPS
@given(data=st.data())
def test_a_key_missing_its_last_part_is_refused(kind, data):
    # The kinds read left to right fix how many parts a key has; one fewer never parses.
    key = _key(kind, data.draw(VALUES[kind]()))
    truncated = key[:key.rfind("#")]
    with pytest.raises(InvalidValue):
        parse_key(truncated)


@pytest.mark.parametrize(("kind", "values", "reason"), [
    ("port", {"protocol": "tcp", "number": 1, "asset": "#risk#a.com#x"},
     "must name a asset, not a risk"),
    ("port", {"protocol": "tcp", "number": 1, "asset": "example.com"},
     "key part 'asset': invalid key"),
    ("port", {"protocol": "tcp", "number": 1, "asset": "#asset#a.com"},
     "key part 'asset': .*expected 2 parts"),
    ("job", {"target": "#capability#nmap", "capability": "nmap"},
     "must name a asset, port, seed, not a capability"),
    ("port", {"protocol": "tcp", "asset": "#asset#a.com#a.com"}, "key part 'number' is missing"),
    ("capability", {"name": ""}, "key part 'name' is missing"),
    ("attribute", {"name": "k", "value": "a\x00b", "parent": "#capability#x"}, "NUL character"),
    ("capability", {"name": "\udcff"}, "not valid Unicode text"),
])
def test_build_key_refuses_bad_parts(kind, values, reason):
    with pytest.raises(InvalidValue, match=reason):
        build_key(KINDS[kind], values)


def test_batch_reports_a_non_text_reference_as_a_problem():
    # A number where a key belongs used to escape as TypeError from kind_of.
    with pytest.raises(ValidationFailed, match="field 'asset': invalid key 5"):
        key_for("port", asset=5, number=1)


# ---------------------------------------------------------------------------------------------
# (f) node ids: stable, 63 bits


def test_node_id_is_pinned():
    # Ids are stored; changing how they derive from keys would orphan every stored row.
    key = "#asset#example.com#example.com"
    expected = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") >> 1
    assert node_id(key) == expected == 0x49997BE4ED229545


@PROPS
@given(any_key())
def test_node_id_is_stable_and_63_bits(key):
    nid = node_id(key)
    assert 0 <= nid < 2**63  # fits PostgreSQL BIGINT and SQLite INTEGER without sign games
    assert node_id(str(key)) == nid == node_id(key.encode().decode())


@PROPS
@given(st.lists(any_key(), min_size=2, max_size=10, unique=True))
def test_distinct_keys_get_distinct_ids(keys):
    assert len({node_id(k) for k in keys}) == len(keys)
