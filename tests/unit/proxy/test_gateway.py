"""PROXY protocol v2 header (against the byte layout of HAProxy's spec, written out by hand), the gateway's
allow decision, and the config fields of the gateway shape."""

from __future__ import annotations

import pytest

from sc_proxy import proxyproto
from sc_proxy.cluster import Cluster, Host
from sc_proxy.config import ConfigError, parse_config
from sc_proxy.gateway import allowed

# Spec §2.2: 12-byte signature, 0x21 (v2, PROXY), 0x11 (TCP over IPv4), length 12, src, dst, sport, dport.
TCP4 = bytes.fromhex(
    "0d0a0d0a000d0a515549540a" "21" "11" "000c" "00000000" "c6120105" "0000" "1f90"
)  # fmt: skip
# 0x21 family byte: TCP over IPv6, length 36.
TCP6 = bytes.fromhex(
    "0d0a0d0a000d0a515549540a" "21" "21" "0024"
    + "00" * 16
    + "fd000000000000000000000000000007"
    + "0000" "0050"
)  # fmt: skip
LOCAL = bytes.fromhex("0d0a0d0a000d0a515549540a" "20" "00" "0000")  # fmt: skip


def test_encode_matches_the_spec_layout() -> None:
    assert proxyproto.encode(("198.18.1.5", 8080)) == TCP4
    assert proxyproto.encode(("fd00::7", 80)) == TCP6


def test_decode_reads_destination_and_leaves_the_payload() -> None:
    header, used = proxyproto.decode(TCP4 + b"\x16\x03\x01 tls hello") or (None, 0)
    assert header is not None
    assert header.destination == ("198.18.1.5", 8080)
    assert used == len(TCP4)
    header6, _ = proxyproto.decode(TCP6) or (None, 0)
    assert header6 is not None
    assert header6.destination == ("fd00::7", 80)


def test_decode_is_incremental() -> None:
    for cut in range(len(TCP4)):
        assert proxyproto.decode(TCP4[:cut]) is None
    assert proxyproto.decode(TCP4) is not None


def test_tlvs_after_the_addresses_are_skipped() -> None:
    tlv = b"\x04\x00\x02ab"  # PP2_TYPE_NOOP, 2 bytes
    raw = TCP4[:14] + (12 + len(tlv)).to_bytes(2, "big") + TCP4[16:] + tlv + b"payload"
    header, used = proxyproto.decode(raw) or (None, 0)
    assert header is not None
    assert header.destination == ("198.18.1.5", 8080)
    assert raw[used:] == b"payload"


def test_local_command_has_no_destination() -> None:
    header, used = proxyproto.decode(LOCAL) or (None, 0)
    assert header is not None
    assert header.destination is None
    assert used == 16


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"GET / HTTP/1.1\r\n", "signature"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "signature"),  # version 1 (text) is refused
        (TCP4[:12] + b"\x11" + TCP4[13:], "version 1"),
        (TCP4[:12] + b"\x22" + TCP4[13:], "command"),
        (TCP4[:13] + b"\x12" + TCP4[14:], "not TCP"),  # UDP over IPv4
        (TCP4[:14] + b"\xff\xff", "exceeds"),
    ],
)
def test_bad_headers_are_refused(raw: bytes, why: str) -> None:
    with pytest.raises(proxyproto.HeaderError, match=why):
        proxyproto.decode(raw)


def test_allowed_only_a_discovered_task_on_its_port() -> None:
    clusters = [Cluster("a", hosts=[Host("198.18.1.5", 8080)]), Cluster("b", hosts=[Host("198.18.1.6", 80)])]
    assert allowed(("198.18.1.5", 8080), clusters)
    assert allowed(("198.18.1.6", 80), clusters)
    assert not allowed(("198.18.1.5", 80), clusters)  # a task, but not the port its clients dial
    assert not allowed(("198.18.1.7", 8080), clusters)  # not a task of an allowed endpoint
    assert not allowed(None, clusters)  # LOCAL
    assert not allowed(("198.18.1.5", 8080), [])
    clusters[0].set_hosts([])  # the task went NotReady
    assert not allowed(("198.18.1.5", 8080), clusters)


def test_config_gateway_and_via() -> None:
    cfg = parse_config(
        {
            "version": "v",
            "gateway": {"port": 15443, "allow": [{"dns": {"name": "a.svc", "srvName": "_sc._tcp.a.svc"}}]},
            "endpoints": [
                {
                    "name": "nginx",
                    "discovery": {"static": [{"address": "198.18.1.5", "port": 80}]},
                    "via": {"address": "198.19.0.9", "port": 15443},
                }
            ],
        }
    )
    assert cfg.gateway is not None
    assert cfg.gateway.port == 15443
    assert cfg.endpoints[0].via is not None
    assert cfg.endpoints[0].via.address == "198.19.0.9"
    with pytest.raises(ConfigError, match=r"gateway\.allow\.0"):
        parse_config({"version": "v", "gateway": {"port": 15443, "allow": [{}]}})
    with pytest.raises(ConfigError, match=r"gateway\.port: port 9901 is already used by admin\.port"):
        parse_config({"version": "v", "gateway": {"port": 9901, "allow": [{"static": []}]}})
    with pytest.raises(ConfigError, match=r"endpoints.0.via.address"):
        parse_config(
            {
                "version": "v",
                "endpoints": [
                    {"name": "n", "discovery": {"static": []}, "via": {"address": "gw.example", "port": 1}}
                ],
            }
        )
