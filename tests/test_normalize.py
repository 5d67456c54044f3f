"""Table-driven tests of every value normalizer, with spellings seen in real scanner output.

Each accepted case also checks idempotence on its own output; each rejection checks that the
InvalidValue message says what is wrong (the CLI shows it to the user as is).
"""

from __future__ import annotations

import pytest

from bastion.errors import InvalidValue
from bastion.schema import normalize as norm

LABEL_63 = "a" * 63
NAME_253 = ".".join(["b" * 63] * 3 + ["c" * 61])  # the longest name DNS allows
assert len(NAME_253) == 253


def _check_accepted(fn, raw, expected):
    assert fn(raw) == expected
    assert fn(expected) == expected  # the canonical spelling is a fixed point


def _check_rejected(fn, raw, reason):
    with pytest.raises(InvalidValue, match=reason):
        fn(raw)


# --- DNS names -------------------------------------------------------------------------------

DNS_OK = [
    ("WWW.Example.COM.", "www.example.com"),
    ("  example.com  ", "example.com"),
    ("Bücher.DE", "xn--bcher-kva.de"),
    ("xn--bcher-kva.de", "xn--bcher-kva.de"),
    ("XN--BCHER-KVA.DE.", "xn--bcher-kva.de"),
    ("BÜCHER.de", "xn--bcher-kva.de"),
    ("münchen.DE", "xn--mnchen-3ya.de"),
    ("straße.de", "xn--strae-oqa.de"),  # IDNA 2008, non-transitional: ß is kept, not 'ss'
    ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
    ("example\uff0ecom", "example.com"),  # FULLWIDTH FULL STOP
    ("example\u3002com", "example.com"),  # IDEOGRAPHIC FULL STOP
    ("example\uff61com", "example.com"),  # HALFWIDTH IDEOGRAPHIC FULL STOP
    ("bücher.de\u3002", "xn--bcher-kva.de"),  # trailing ideographic dot is a trailing dot
    ("\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", "example.com"),  # fullwidth letters
    ("_dmarc.Example.com", "_dmarc.example.com"),
    ("_sip._tcp.example.com", "_sip._tcp.example.com"),
    ("*.Example.com", "*.example.com"),
    ("a-b--c.example.com", "a-b--c.example.com"),
    ("1.2.3.example.com", "1.2.3.example.com"),  # digits are fine below the top label
    ("localhost", "localhost"),
    (f"{LABEL_63}.com", f"{LABEL_63}.com"),
    (NAME_253, NAME_253),
]

DNS_BAD = [
    ("", "empty DNS name"),
    ("   ", "empty DNS name"),
    (".", "empty DNS name"),
    ("a.*.com", r"'\*' is allowed only as the leftmost label"),
    ("*", "a wildcard needs a name below"),
    ("a..b.com", "empty label"),
    ("-a.example.com", "may not start or end with '-'"),
    ("a-.example.com", "may not start or end with '-'"),
    ("exa mple.com", "may hold only letters, digits"),
    ("exa\n.com", "may hold only letters, digits"),  # '$' used to accept a label ending in \n
    ("example.com/login", "may hold only letters, digits"),
    ("user@example.com", "may hold only letters, digits"),
    (f"{LABEL_63}a.com", "longer than 63 characters"),
    ("c." + NAME_253, "longer than 253 characters"),
    ("010.1.2.3", "the last label is all digits"),  # a zero-padded IPv4 is not a domain
    ("1.2.3.4", "the last label is all digits"),
    ("i\u2764.ws", "invalid internationalized DNS name"),  # emoji are not IDNA 2008
    ("ü" * 70 + ".de", "invalid internationalized DNS name.*too long"),
    (123, "DNS name must be text, got int"),
]


@pytest.mark.parametrize(("raw", "expected"), DNS_OK)
def test_dns_name_accepts(raw, expected):
    _check_accepted(norm.dns_name, raw, expected)


@pytest.mark.parametrize(("raw", "reason"), DNS_BAD)
def test_dns_name_rejects(raw, reason):
    _check_rejected(norm.dns_name, raw, reason)


def test_unicode_and_punycode_spellings_are_one_name():
    spellings = ["Bücher.DE", "bücher.de.", "BÜCHER\u3002DE", "xn--bcher-kva.de", "XN--Bcher-KVA.De."]
    assert {norm.dns_name(s) for s in spellings} == {"xn--bcher-kva.de"}


# --- IP addresses ----------------------------------------------------------------------------

IP_OK = [
    ("192.0.2.1", "192.0.2.1"),
    (" 192.0.2.1\n", "192.0.2.1"),
    ("2001:DB8:0:0::1", "2001:db8::1"),
    ("2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:db8::ff00:42:8329"),
    ("[::1]", "::1"),
    ("[2001:DB8::1]", "2001:db8::1"),
    ("0:0:0:0:0:0:0:0", "::"),
    # IPv4-mapped: mixed notation on every Python (3.11 str() gives '::ffff:c000:201').
    ("::FFFF:192.0.2.1", "::ffff:192.0.2.1"),
    ("::ffff:c000:201", "::ffff:192.0.2.1"),
    ("fe80:0:0:0:0:0:0:1", "fe80::1"),
]

IP_BAD = [
    ("010.1.1.1", "Leading zeros are not permitted"),  # octal or decimal? refuse to guess
    ("192.168.001.1", "Leading zeros are not permitted"),
    ("256.1.1.1", r"Octet 256 \(> 255\)"),
    ("1.2.3", "Expected 4 octets"),
    ("1.2.3.4.5", "Expected 4 octets"),
    ("2001:db8::g", "Only hex digits permitted"),
    ("2001:db8::1::2", "At most one '::'"),
    ("example.com", "invalid IP address 'example.com'"),
    ("", "invalid IP address ''"),
]


@pytest.mark.parametrize(("raw", "expected"), IP_OK)
def test_ip_address_accepts(raw, expected):
    _check_accepted(norm.ip_address, raw, expected)


@pytest.mark.parametrize(("raw", "reason"), IP_BAD)
def test_ip_address_rejects(raw, reason):
    _check_rejected(norm.ip_address, raw, reason)


@pytest.mark.parametrize(("raw", "version"), [("192.0.2.1", 4), ("[::1]", 6), ("2001:db8::1", 6),
                                              ("example.com", None), ("010.1.1.1", None),
                                              ("10.0.0.0/8", None)])
def test_ip_version(raw, version):
    assert norm.ip_version(raw) == version


# --- CIDRs -----------------------------------------------------------------------------------

CIDR_OK = [
    ("10.1.2.3/8", "10.0.0.0/8"),
    ("192.168.1.77/24", "192.168.1.0/24"),
    ("192.0.2.1/32", "192.0.2.1/32"),
    ("0.0.0.0/0", "0.0.0.0/0"),
    ("10.0.0.0/255.0.0.0", "10.0.0.0/8"),  # netmask spelling
    ("2001:DB8::1/32", "2001:db8::/32"),
    (" 2001:db8:0:0:1::/64 ", "2001:db8::/64"),
    ("2001:db8::1/128", "2001:db8::1/128"),
    ("::FFFF:192.0.2.7/120", "::ffff:192.0.2.0/120"),
]

CIDR_BAD = [
    ("10.0.0.0", "no prefix length"),
    ("10.0.0.0/33", "'33' is not a valid netmask"),
    ("10.0.0.0/x", "'x' is not a valid netmask"),
    ("2001:db8::/129", "'129' is not a valid netmask"),
    ("010.0.0.0/8", "Leading zeros are not permitted"),
    ("10.0.0.0/8/8", "Only one '/' permitted"),
    ("example.com/24", "invalid CIDR 'example.com/24'"),
]


@pytest.mark.parametrize(("raw", "expected"), CIDR_OK)
def test_cidr_accepts(raw, expected):
    _check_accepted(norm.cidr, raw, expected)


@pytest.mark.parametrize(("raw", "reason"), CIDR_BAD)
def test_cidr_rejects(raw, reason):
    _check_rejected(norm.cidr, raw, reason)


# --- URLs ------------------------------------------------------------------------------------

URL_OK = [
    ("HTTPS://Example.COM:443/a%7eb?x=1#frag", "https://example.com/a~b?x=1"),
    ("http://example.com:8080", "http://example.com:8080/"),
    ("http://example.com:80/", "http://example.com/"),
    ("https://example.com:80/", "https://example.com:80/"),  # 80 is not https's default
    ("http://example.com:0443/", "http://example.com:443/"),
    ("https://example.com:0443/", "https://example.com/"),
    ("wss://example.com:443/socket", "wss://example.com/socket"),
    ("ftp://files.example.com:21/pub", "ftp://files.example.com/pub"),
    ("http://[2001:DB8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
    ("http://[2001:db8:0:0::1]:80/", "http://[2001:db8::1]/"),
    ("http://192.0.2.1:80/", "http://192.0.2.1/"),
    ("http://[::ffff:c000:201]:8080/", "http://[::ffff:192.0.2.1]:8080/"),
    ("https://example.com/ü?q=ä", "https://example.com/%C3%BC?q=%C3%A4"),
    ("https://example.com/%c3%bc", "https://example.com/%C3%BC"),
    ("https://user:secret@example.com/", "https://example.com/"),
    ("https://admin@Example.com:8443/x", "https://example.com:8443/x"),
    ("https://Bücher.de/Katalog", "https://xn--bcher-kva.de/Katalog"),  # path case is kept
    ("HTTP://EXAMPLE.COM./Path", "http://example.com/Path"),
    ("http://example.com/a%2fb", "http://example.com/a%2Fb"),  # an escaped '/' stays escaped
    ("http://example.com/%41%42", "http://example.com/AB"),  # escaped unreserved are decoded
    ("http://example.com/a b", "http://example.com/a%20b"),
    ("http://example.com/100%", "http://example.com/100%25"),  # a bare '%' is escaped
    ("http://example.com?x=1", "http://example.com/?x=1"),
    ("http://example.com/?", "http://example.com/"),
    ("http://example.com/p;a=1/q?a=1&b=2+3", "http://example.com/p;a=1/q?a=1&b=2+3"),
    ("https://example.com/#", "https://example.com/"),
]

URL_BAD = [
    ("example.com", "scheme and host are required"),
    ("//example.com/", "scheme and host are required"),
    ("http:///path", "scheme and host are required"),
    ("mailto:a@example.com", "scheme and host are required"),
    ("http://example.com:99999/", "Port out of range"),
    ("http://example.com:http/", "Port could not be cast"),
    ("http://exa mple.com/", "host: invalid DNS name.*may hold only"),
    ("http://a.*.com/", r"host: .*'\*' is allowed only as the leftmost label"),
    ("http://[2001:db8::g]/", "invalid URL"),
]


@pytest.mark.parametrize(("raw", "expected"), URL_OK)
def test_url_accepts(raw, expected):
    _check_accepted(norm.url, raw, expected)


@pytest.mark.parametrize(("raw", "reason"), URL_BAD)
def test_url_rejects(raw, reason):
    _check_rejected(norm.url, raw, reason)


@pytest.mark.parametrize(("url", "host"), [
    ("https://example.com/", "example.com"),
    ("http://example.com:8080/", "example.com"),
    ("http://[2001:db8::1]:8080/x", "2001:db8::1"),
    ("http://192.0.2.1/", "192.0.2.1"),
])
def test_url_host_is_the_bare_host(url, host):
    assert norm.url_host(norm.url(url)) == host


# --- CVE ids and risk names ------------------------------------------------------------------

CVE_OK = [
    ("cve-2021-44228", "CVE-2021-44228"),
    (" CVE-2014-0160 ", "CVE-2014-0160"),
    ("Cve-2023-1234567", "CVE-2023-1234567"),  # ids have had 5+ digit sequences since 2014
]

CVE_BAD = [
    ("CVE-21-44228", "expected CVE-YYYY-NNNN"),
    ("CVE-2021-123", "expected CVE-YYYY-NNNN"),
    ("2021-44228", "expected CVE-YYYY-NNNN"),
    ("CVE-2021-44228a", "expected CVE-YYYY-NNNN"),
    ("CVE 2021 44228", "expected CVE-YYYY-NNNN"),
    # Arabic-Indic digits: '\d' matched them and kept them in the key
    ("CVE-\u0662\u0660\u0662\u0661-\u0664\u0664\u0662\u0662\u0668", "expected CVE-YYYY-NNNN"),
    ("CVE-２０２１-44228", "expected CVE-YYYY-NNNN"),  # fullwidth digits
    ("", "invalid CVE id ''"),
]


@pytest.mark.parametrize(("raw", "expected"), CVE_OK)
def test_cve_accepts(raw, expected):
    _check_accepted(norm.cve, raw, expected)


@pytest.mark.parametrize(("raw", "reason"), CVE_BAD)
def test_cve_rejects(raw, reason):
    _check_rejected(norm.cve, raw, reason)


RISK_OK = [
    ("Log4Shell RCE", "log4shell-rce"),
    ("  SQL   Injection\tin  Login ", "sql-injection-in-login"),
    ("cve-2021-44228", "CVE-2021-44228"),  # a CVE id stays a CVE id
    ("CVE-2021-44228", "CVE-2021-44228"),
    ("nuclei:tech-detect", "nuclei:tech-detect"),
    ("Exposed .git Directory", "exposed-.git-directory"),
    ("cve-2021-44228 variant", "cve-2021-44228-variant"),  # not a bare id: plain lower-case
    ("Weak TLS #3", "weak-tls-#3"),  # '#' is escaped by the key, not by the name
]


@pytest.mark.parametrize(("raw", "expected"), RISK_OK)
def test_risk_name_accepts(raw, expected):
    _check_accepted(norm.risk_name, raw, expected)


@pytest.mark.parametrize("raw", ["", "   ", "\t\n"])
def test_risk_name_rejects_empty(raw):
    _check_rejected(norm.risk_name, raw, "empty risk name")


# --- CPE -------------------------------------------------------------------------------------

STAR7 = ":*:*:*:*:*:*:*"

CPE_OK = [
    ("cpe:/a:openbsd:openssh:7.4", "cpe:2.3:a:openbsd:openssh:7.4" + STAR7),
    ("CPE:/O:Linux:Linux_Kernel", "cpe:2.3:o:linux:linux_kernel:*" + STAR7),
    ("cpe:/h:cisco:asa_5505", "cpe:2.3:h:cisco:asa_5505:*" + STAR7),
    ("cpe:/a:openbsd:openssh:7.4p1:-", "cpe:2.3:a:openbsd:openssh:7.4p1:-:*:*:*:*:*:*"),
    # NVD's CPE 2.2 names: percent-escapes decoded, packed edition unpacked into target_sw.
    ("cpe:/a:%240.99_kindle_books_project:%240.99_kindle_books:6::~~~android~~",
     "cpe:2.3:a:\\$0.99_kindle_books_project:\\$0.99_kindle_books:6:*:*:*:*:android:*:*"),
    ("cpe:/a:microsoft:internet_explorer:8.%02", "cpe:2.3:a:microsoft:internet_explorer:8.*" + STAR7),
    ("cpe:/a:foo:bar:1.0:beta:~pro~~windows~x64~:en",
     "cpe:2.3:a:foo:bar:1.0:beta:pro:en:*:windows:x64:*"),
    ("cpe:2.3:a:openbsd:openssh:7.4:*:*:*:*:*:*:*", "cpe:2.3:a:openbsd:openssh:7.4" + STAR7),
    ("cpe:2.3:a:openbsd:openssh:7.4", "cpe:2.3:a:openbsd:openssh:7.4" + STAR7),  # padded
    ("CPE:2.3:A:Apache:HTTP_Server:2.4.41", "cpe:2.3:a:apache:http_server:2.4.41" + STAR7),
    # An escaped colon is part of the value, not a separator.
    ("cpe:2.3:a:foo:bar\\:baz:1.0", "cpe:2.3:a:foo:bar\\:baz:1.0" + STAR7),
    ("cpe:2.3:a:foo\\\\bar:big\\$money_2010:*:*:*:*:special:ipod_touch:80gb:*",
     "cpe:2.3:a:foo\\\\bar:big\\$money_2010:*:*:*:*:special:ipod_touch:80gb:*"),
    # Needless quoting of '.', '-' and '_' is dropped; unquoted punctuation is quoted.
    ("cpe:2.3:a:vendor:prod:1\\.0\\-rc1", "cpe:2.3:a:vendor:prod:1.0-rc1" + STAR7),
    ("cpe:2.3:a:vendor:c++:1", "cpe:2.3:a:vendor:c\\+\\+:1" + STAR7),
    ("cpe:2.3:a:vendor:prod:\\-", "cpe:2.3:a:vendor:prod:\\-" + STAR7),  # literal '-', not NA
    ("cpe:2.3:a:vendor:prod\\ :1", "cpe:2.3:a:vendor:prod_:1" + STAR7),  # quoted blank
    ("cpe:/a:vendor:prod%20x:1", "cpe:2.3:a:vendor:prod_x:1" + STAR7),
    ("cpe:2.3:a:vendor:prod::", "cpe:2.3:a:vendor:prod:*:*" + STAR7[:-2]),
]

CPE_BAD = [
    ("openssh 7.4", r"expected cpe:2.3:… or cpe:/…"),
    ("cpe:/", r"the part \(a, o or h\) is missing"),
    ("cpe:2.3:", r"the part \(a, o or h\) is missing"),
    ("cpe:2.3:x:vendor:product", "part must be a, o or h, not 'x'"),
    ("cpe:/a:b:c:1:2:3:4:5", "a CPE 2.2 URI has at most 7 components"),
    ("cpe:2.3:a:b:c:1:2:3:4:5:6:7:8:9", "more than 13 components"),
    ("cpe:/a:b:c:1::~x~y", "a packed edition has five '~'-separated fields"),
    ("cpe:/a:b:c%zz", "bad percent-escape"),
    ("cpe:/a:b:c%7f", "not a printable ASCII character"),
    ("cpe:2.3:a:b:c\\", r"ends with a lone '\\'"),
]


@pytest.mark.parametrize(("raw", "expected"), CPE_OK)
def test_cpe_accepts(raw, expected):
    _check_accepted(norm.cpe, raw, expected)
    assert len(expected.split(":")) - expected.count("\\:") == 13


@pytest.mark.parametrize(("raw", "reason"), CPE_BAD)
def test_cpe_rejects(raw, reason):
    _check_rejected(norm.cpe, raw, reason)


def test_cpe_22_and_23_spellings_are_one_cpe():
    spellings = [
        "cpe:/a:%240.99_kindle_books_project:%240.99_kindle_books:6::~~~android~~",
        "cpe:2.3:a:\\$0.99_kindle_books_project:\\$0.99_kindle_books:6:*:*:*:*:android:*:*",
        "CPE:2.3:A:$0.99_Kindle_Books_Project:$0.99_kindle_books:6:*:*:*:*:ANDROID",
    ]
    assert len({norm.cpe(s) for s in spellings}) == 1


@pytest.mark.parametrize(("args", "expected"), [
    (("Apache HTTP Server", "2.4.1"), "cpe:2.3:a:*:apache_http_server:2.4.1" + STAR7),
    (("nginx",), "cpe:2.3:a:*:nginx:*" + STAR7),
    (("nginx", ""), "cpe:2.3:a:*:nginx:*" + STAR7),
    (("OpenSSH", "7.4p1 Debian-10"), "cpe:2.3:a:*:openssh:7.4p1_debian-10" + STAR7),
    (("Foo:Bar", "1.0", "ACME Inc."), "cpe:2.3:a:acme_inc.:foo\\:bar:1.0" + STAR7),
    # Names are literal: '*' is no wildcard and '\' cannot swallow the next separator.
    (("C++ Builder *", "11"), "cpe:2.3:a:*:c\\+\\+_builder_\\*:11" + STAR7),
    (("foo\\", "1"), "cpe:2.3:a:*:foo\\\\:1" + STAR7),
    (("-", "1"), "cpe:2.3:a:*:\\-:1" + STAR7),
])
def test_cpe_from_name(args, expected):
    assert norm.cpe_from_name(*args) == expected
    assert norm.cpe(expected) == expected


@pytest.mark.parametrize("product", ["", "   ", None])
def test_cpe_from_name_needs_a_name(product):
    _check_rejected(lambda p: norm.cpe_from_name(p, "1.0"), product, "technology needs a CPE or a name")


@pytest.mark.parametrize(("raw", "values"), [
    ("cpe:/a:openbsd:openssh:7.4", ["a", "openbsd", "openssh", "7.4"] + ["*"] * 7),
    ("cpe:2.3:a:foo:bar\\:baz:1.0", ["a", "foo", "bar:baz", "1.0"] + ["*"] * 7),
    ("cpe:/a:%240.99_kindle_books_project:%240.99_kindle_books:6::~~~android~~",
     ["a", "$0.99_kindle_books_project", "$0.99_kindle_books", "6", "*", "*", "*", "*",
      "android", "*", "*"]),
])
def test_cpe_components_unquotes(raw, values):
    assert norm.cpe_components(raw) == values


# --- text helpers ----------------------------------------------------------------------------

@pytest.mark.parametrize(("fn", "raw", "expected"), [
    (norm.text, "  Prod Account \n", "Prod Account"),
    (norm.lower, "  AWS ", "aws"),
])
def test_text_helpers(fn, raw, expected):
    _check_accepted(fn, raw, expected)
