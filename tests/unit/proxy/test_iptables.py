"""Interception rules rendered from the config, idempotent application, and the NET_ADMIN message."""

from __future__ import annotations

from typing import Any

import pytest

from sc_proxy import iptables
from sc_proxy.config import parse_config


def config(**extra: Any) -> Any:
    cfg: dict[str, Any] = {
        "version": "v1",
        "egress": {"mode": "redirect", "port": 15001},
        "endpoints": [{"name": "b", "discovery": {"static": [{"address": "10.0.0.1", "port": 80}]}}],
        "aliases": [{"address": "127.255.0.1", "port": 80, "endpoint": "b"}],
        "ingress": [
            {"discoveryName": "front", "port": 15080, "appPort": 8080, "interceptPort": 8080},
            {
                "discoveryName": "admin-api",
                "port": 15081,
                "appPort": 9000,
            },  # ingressPortOverride: no intercept
        ],
    }
    cfg.update(extra)
    return parse_config(cfg)


def test_render() -> None:
    rules = iptables.render(config())
    assert rules.chains == {
        "SC_EGRESS": [["-d", "127.255.0.0/16", "-p", "tcp", "-j", "REDIRECT", "--to-ports", "15001"]],
        "SC_INGRESS": [["-p", "tcp", "--dport", "8080", "-j", "REDIRECT", "--to-ports", "15080"]],
    }
    assert [(j.chain, j.spec()) for j in rules.jumps] == [
        ("OUTPUT", ["-p", "tcp", "-j", "SC_EGRESS"]),
        ("PREROUTING", ["-p", "tcp", "-m", "addrtype", "!", "--src-type", "LOCAL", "-j", "SC_INGRESS"]),
    ]


def test_render_excluded_uid_and_no_privilege_mode() -> None:
    rules = iptables.render(config(egress={"mode": "redirect", "port": 15001, "excludeUid": 20000}))
    assert rules.chains["SC_EGRESS"][0] == ["-m", "owner", "--uid-owner", "20000", "-j", "RETURN"]
    assert iptables.render(config(egress={"mode": "listeners"})).chains["SC_EGRESS"] == []


class FakeTable:
    """Records commands and answers like iptables would (a stand-in for the kernel; the real thing runs in
    tests/integration/proxy/test_interception.py)."""

    binary = "iptables"

    def __init__(
        self, chains: set[str] | None = None, jumps: set[str] | None = None, deny: bool = False
    ) -> None:
        self.chains = chains or set()
        self.jumps = jumps or set()
        self.deny = deny
        self.calls: list[list[str]] = []

    def __call__(self, args: list[str]) -> tuple[int, str]:
        self.calls.append(args)
        if self.deny:
            return (
                4,
                "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: "
                "Permission denied (you must be root)\n",
            )
        verb, chain, rest = args[2], args[3], " ".join(args[4:])
        if verb == "-N":
            if chain in self.chains:
                return 1, "iptables: Chain already exists.\n"
            self.chains.add(chain)
        elif verb == "-C":
            return (0, "") if f"{chain} {rest}" in self.jumps else (1, "iptables: Bad rule.\n")
        elif verb == "-A" and chain in ("OUTPUT", "PREROUTING"):
            self.jumps.add(f"{chain} {rest}")
        return 0, ""


def test_apply_twice_adds_jumps_once() -> None:
    table = FakeTable()
    rules = iptables.render(config())
    iptables.apply(rules, table)  # type: ignore[arg-type]
    first = [c for c in table.calls if c[2] == "-A" and c[3] in ("OUTPUT", "PREROUTING")]
    table.calls.clear()
    iptables.apply(rules, table)  # type: ignore[arg-type]
    second = [c for c in table.calls if c[2] == "-A" and c[3] in ("OUTPUT", "PREROUTING")]
    assert len(first) == 2
    assert second == []
    assert ["-t", "nat", "-F", "SC_EGRESS"] in table.calls  # our chains are refilled every time


def test_missing_net_admin_names_it() -> None:
    with pytest.raises(iptables.RedirectError, match="needs the NET_ADMIN capability"):
        iptables.apply(iptables.render(config()), FakeTable(deny=True))  # type: ignore[arg-type]


def test_dry_run_prints_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert iptables.install_redirect(config(), dry_run=True) == 0
    out = capsys.readouterr().out
    assert "iptables -t nat -A SC_EGRESS -d 127.255.0.0/16 -p tcp -j REDIRECT --to-ports 15001" in out
    assert "ip6tables -t nat -A SC_INGRESS -p tcp --dport 8080 -j REDIRECT --to-ports 15080" in out


def test_render6_is_ingress_only() -> None:
    rules6 = iptables.render6(config())
    assert rules6 is not None
    assert rules6.chains == {
        "SC_INGRESS": [["-p", "tcp", "--dport", "8080", "-j", "REDIRECT", "--to-ports", "15080"]]
    }
    assert [j.chain for j in rules6.jumps] == ["PREROUTING"]
    no_intercept = config(ingress=[{"discoveryName": "front", "port": 15080, "appPort": 8080}])
    assert iptables.render6(no_intercept) is None


def test_ip6tables_binary_follows_the_iptables_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SC_PROXY_IPTABLES", "iptables-legacy")
    assert iptables.Runner(ipv6=True).binary == "ip6tables-legacy"
    assert iptables.Runner().binary == "iptables-legacy"
