"""Traffic interception rules (reference §2.2), rendered from the same config the proxy serves.

``sc-proxy install-redirect --config FILE`` runs in an init container with NET_ADMIN. It owns two chains in
the nat table, flushed and refilled on every run (idempotent: a restarted init container converges):

- ``SC_EGRESS`` (jumped to from OUTPUT): TCP to the client-alias range 127.255.0.0/16 is redirected to the
  egress listener, which reads the original VIP:port with ``SO_ORIGINAL_DST``. Other traffic goes direct.
- ``SC_INGRESS`` (jumped to from PREROUTING for non-local sources only): TCP to a served containerPort
  (``interceptPort``) is redirected to that endpoint's ingress listener, so callers using the task address
  pass through the proxy; the app and the proxy still reach the app directly on loopback. The same chain
  goes into ip6tables (best effort) for dual-stack callers.

The proxy's own upstream connections go to task addresses, never to the VIP range, so they are not caught;
``egress.excludeUid`` additionally exempts a UID. Rendering is pure (:func:`render`); :func:`apply` runs
``iptables``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from sc_proxy.config import VIP_NETWORK, ProxyConfig

EGRESS_CHAIN = "SC_EGRESS"
INGRESS_CHAIN = "SC_INGRESS"


@dataclass(frozen=True)
class Jump:
    """A rule in a built-in chain that sends traffic to one of ours (added once, never duplicated)."""

    chain: str
    match: tuple[str, ...]
    target: str

    def spec(self) -> list[str]:
        return [*self.match, "-j", self.target]


@dataclass(frozen=True)
class RuleSet:
    """The nat-table rules for one config."""

    chains: dict[str, list[list[str]]] = field(default_factory=dict)  # our chain -> rule specs
    jumps: list[Jump] = field(default_factory=list)


def render(config: ProxyConfig) -> RuleSet:
    """The rules ``config`` needs (pure)."""
    egress_rules: list[list[str]] = []
    egress = config.egress
    if egress is not None and egress.mode == "redirect" and egress.port is not None:
        if egress.exclude_uid is not None:
            egress_rules.append(["-m", "owner", "--uid-owner", str(egress.exclude_uid), "-j", "RETURN"])
        egress_rules.append(
            ["-d", str(VIP_NETWORK), "-p", "tcp", "-j", "REDIRECT", "--to-ports", str(egress.port)]
        )
    ingress_rules = [
        ["-p", "tcp", "--dport", str(ing.intercept_port), "-j", "REDIRECT", "--to-ports", str(ing.port)]
        for ing in config.ingress
        if ing.intercept_port is not None
    ]
    return RuleSet(
        chains={EGRESS_CHAIN: egress_rules, INGRESS_CHAIN: ingress_rules},
        jumps=[
            Jump("OUTPUT", ("-p", "tcp"), EGRESS_CHAIN),
            Jump("PREROUTING", ("-p", "tcp", "-m", "addrtype", "!", "--src-type", "LOCAL"), INGRESS_CHAIN),
        ],
    )


def render6(config: ProxyConfig) -> RuleSet | None:
    """The ip6tables rules (pure): ingress interception only, since ingress listeners also listen on [::]
    and dual-stack callers may dial the containerPort over IPv6. Client-alias VIPs are IPv4, so there is no
    IPv6 egress rule. ``None`` when nothing is intercepted."""
    v4 = render(config)
    if not v4.chains[INGRESS_CHAIN]:
        return None
    return RuleSet(chains={INGRESS_CHAIN: v4.chains[INGRESS_CHAIN]}, jumps=[v4.jumps[1]])


def commands(rules: RuleSet) -> list[list[str]]:
    """The iptables invocations (without the binary) that make the nat table match ``rules``.

    ``-N`` may fail with "already exists" and each jump is preceded by a ``-C`` check; :func:`apply` handles
    both. Shown by ``--dry-run``.
    """
    out: list[list[str]] = []
    for chain, specs in rules.chains.items():
        out.append(["-t", "nat", "-N", chain])
        out.append(["-t", "nat", "-F", chain])
        out.extend(["-t", "nat", "-A", chain, *spec] for spec in specs)
    for jump in rules.jumps:
        out.append(["-t", "nat", "-C", jump.chain, *jump.spec()])
        out.append(["-t", "nat", "-A", jump.chain, *jump.spec()])
    return out


class RedirectError(Exception):
    """The rules could not be installed; the message says why and what to do."""


_PRIVILEGE_HINTS = ("permission denied", "you must be root", "can't initialize", "operation not permitted")


def _explain(argv: list[str], stderr: str) -> RedirectError:
    text = stderr.strip()
    if any(h in text.lower() for h in _PRIVILEGE_HINTS):
        return RedirectError(
            "installing the interception rules needs the NET_ADMIN capability (and NET_RAW for the nft "
            "backend): add it to this init container's securityContext.capabilities, or run the proxy in "
            f"no-privilege mode (egress.mode: listeners). iptables said: {text}"
        )
    return RedirectError(f"{' '.join(argv)} failed: {text}")


class Runner:
    """Runs iptables; a seam so tests can record commands without touching the kernel."""

    def __init__(self, binary: str | None = None, ipv6: bool = False) -> None:
        v4 = os.environ.get("SC_PROXY_IPTABLES", "iptables")
        # iptables-legacy -> ip6tables-legacy, iptables-nft -> ip6tables-nft.
        self.binary = binary or (v4.replace("iptables", "ip6tables", 1) if ipv6 else v4)

    def __call__(self, args: list[str]) -> tuple[int, str]:
        argv = [self.binary, "-w", "5", *args]
        if shutil.which(self.binary) is None:
            raise RedirectError(f"{self.binary} not found: the init container image needs iptables")
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stderr


def apply(rules: RuleSet, run: Runner | None = None) -> None:
    """Make the nat table match ``rules``; idempotent."""
    runner = run or Runner()
    skip_next = False
    for args in commands(rules):
        if skip_next:  # the -A after a successful -C: the jump is already there
            skip_next = False
            continue
        verb = args[2]
        code, err = runner(args)
        if code == 0:
            skip_next = verb == "-C"
            continue
        lowered = err.lower()
        privileged = any(h in lowered for h in _PRIVILEGE_HINTS)
        if verb == "-N" and "exists" in lowered:
            continue
        if verb == "-C" and not privileged:
            continue  # missing: the following -A adds it
        raise _explain([runner.binary, *args], err)


def install_redirect(config: ProxyConfig, dry_run: bool = False) -> int:
    """The ``install-redirect`` subcommand; returns the exit code.

    IPv4 rules are required; the IPv6 ingress rules are best effort (a pod or node without IPv6, or an image
    without ip6tables, only loses interception of IPv6 callers of the containerPort, and says so).
    """
    rules = render(config)
    rules6 = render6(config)
    if dry_run:
        for args in commands(rules):
            print("iptables", " ".join(args))
        for args in commands(rules6) if rules6 else []:
            print("ip6tables", " ".join(args))
        return 0
    try:
        apply(rules)
    except RedirectError as exc:
        print(f"sc-proxy install-redirect: {exc}", file=sys.stderr)
        return 1
    n = sum(len(v) for v in rules.chains.values())
    print(f"sc-proxy install-redirect: {n} rules installed in {EGRESS_CHAIN}/{INGRESS_CHAIN}")
    if rules6 is not None:
        try:
            apply(rules6, Runner(ipv6=True))
        except RedirectError as exc:
            print(f"sc-proxy install-redirect: IPv6 ingress interception skipped: {exc}", file=sys.stderr)
        else:
            print(f"sc-proxy install-redirect: {len(rules6.chains[INGRESS_CHAIN])} IPv6 rules installed")
    return 0
