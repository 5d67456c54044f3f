"""Exposure from an address (bastion.ingest.hosts.exposure_of_address): a property test over
the ipaddress module, and the rule that an inferred value never replaces one set before."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, strategies as st

from bastion.ingest.hosts import INTERNAL_NETWORKS, exposure_of_address, inferred_exposure

V4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
V6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)


@st.composite
def internal_address(draw):
    net = draw(st.sampled_from(INTERNAL_NETWORKS))
    return net[draw(st.integers(0, net.num_addresses - 1))]


@given(internal_address())
def test_every_address_of_an_internal_network_is_internal(addr):
    assert exposure_of_address(str(addr)) == "internal"
    if addr.version == 4:  # the same address written as IPv4-mapped IPv6
        assert exposure_of_address(f"::ffff:{addr}") == "internal"


@given(st.one_of(V4, V6))
def test_the_classification_agrees_with_ipaddress(addr):
    result = exposure_of_address(str(addr))
    mapped = addr.ipv4_mapped if addr.version == 6 else None
    real = mapped or addr
    inside = any(real in n for n in INTERNAL_NETWORKS if n.version == real.version)
    assert result == ("internal" if inside else "external" if real.is_global and not real.is_multicast
                      else None)
    if result == "external":  # never a private, loopback or link-local address
        assert not (real.is_private or real.is_loopback or real.is_link_local)
    assert exposure_of_address(addr.exploded) == result  # spelling does not matter
    assert exposure_of_address(f"[{addr}]") == result if addr.version == 6 else True


@pytest.mark.parametrize("value, exposure", [
    ("10.1.2.3", "internal"), ("172.31.255.255", "internal"), ("172.32.0.1", "external"),
    ("192.168.0.10", "internal"), ("127.0.0.1", "internal"), ("169.254.169.254", "internal"),
    ("100.64.0.1", "internal"), ("100.127.255.255", "internal"), ("100.128.0.1", "external"),
    ("fd00::1", "internal"), ("fc00::1", "internal"), ("::1", "internal"), ("fe80::1", "internal"),
    ("8.8.8.8", "external"), ("2606:4700::1111", "external"),
    ("203.0.113.7", None), ("2001:db8::1", None), ("224.0.0.1", None), ("0.0.0.0", None),
    ("app.example.com", None), ("", None),
])
def test_known_addresses(value, exposure):
    assert exposure_of_address(value) == exposure


def test_an_exposure_set_before_or_given_is_never_replaced():
    asset = {"identifier": "10.0.0.5", "group": "10.0.0.5"}
    assert inferred_exposure({**asset, "exposure": "unknown"}, {}) == "internal"
    assert inferred_exposure({**asset, "exposure": None}, {}) == "internal"
    assert inferred_exposure({**asset, "exposure": "external"}, {}) is None  # an analyst's
    assert inferred_exposure({**asset, "exposure": "unknown"}, {"exposure": "unknown"}) is None
    assert inferred_exposure({"identifier": "db.example.com", "group": "db.example.com"}, {}) is None
