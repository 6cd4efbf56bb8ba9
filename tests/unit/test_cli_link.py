"""`scctl link` / `unlink` without a cluster: arguments, refusals, the peer-side role and kubeconfig (the
API-server side is tests/integration/operator/test_multicluster.py)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest

from sc_operator import cli
from sc_operator.cli_link import account_name, peer_kubeconfig, reader_role
from sc_operator.render.names import is_dns1035_label


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = cli.build_parser().parse_args(argv)
    from sc_operator import cli_link

    code = cli_link.run(args, out, err)
    return code, out.getvalue(), err.getvalue()


BASE = ["link", "mesh", "--peer-name", "a", "--peer-kubeconfig", "/nonexistent", "--cluster-name", "b"]


def test_gateway_without_its_address_is_refused_before_touching_a_cluster() -> None:
    code, _, err = run([*BASE, "--network", "gateway"])
    assert code == 1
    assert "--gateway-address: required with network: gateway" in err
    code, _, err = run([*BASE, "--network", "gateway", "--gateway-address", "gw.example.com"])
    assert code == 1
    assert "is not an IP address" in err
    code, _, err = run([*BASE, "--gateway-address", "192.0.2.7"])  # flat
    assert code == 1
    assert "set only with network: gateway" in err


def test_a_cluster_cannot_link_itself_by_name() -> None:
    code, _, err = run(["link", "mesh", "--peer-name", "b", "--peer-kubeconfig", "x", "--cluster-name", "b"])
    assert code == 1
    assert "must differ" in err


def test_no_cluster_is_a_clear_error(tmp_path: Path) -> None:
    code, _, err = run([*BASE, "--kubeconfig", str(tmp_path / "missing")])
    assert code == 1
    assert err.startswith("scctl link: ")
    assert "Traceback" not in err


def test_cluster_name_is_required() -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["link", "mesh", "--peer-name", "a", "--peer-kubeconfig", "x"])


def test_the_peer_side_role_reads_one_connect_namespace_and_endpoint_slices_only() -> None:
    role = reader_role("sc-link-b-1", "mesh")
    assert role["rules"] == [
        {
            "apiGroups": ["serviceconnect.dev"],
            "resources": ["connectnamespaces"],
            "resourceNames": ["mesh"],
            "verbs": ["get"],
        },
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]},
    ]


def test_account_names_are_valid_and_differ_per_namespace() -> None:
    long = account_name("c" * 63, "mesh")
    assert is_dns1035_label(long)
    assert account_name("b", "mesh") != account_name("b", "other")


def test_the_kubeconfig_embeds_ca_and_token() -> None:
    doc = peer_kubeconfig("https://a.example:6443", b"PEM", False, "tok", "a")
    cluster = doc["clusters"][0]["cluster"]
    assert cluster == {
        "server": "https://a.example:6443",
        "certificate-authority-data": base64.b64encode(b"PEM").decode(),
    }
    assert doc["users"][0]["user"] == {"token": "tok"}
    assert doc["current-context"] == "a"
