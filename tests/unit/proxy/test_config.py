"""The configuration contract: defaults, refusals naming the field, cross-field checks, file loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sc_proxy.config import ConfigError, ProxyConfig, dump_config, load_config, parse_config, parse_resolver
from sc_proxy.policy import effective_timeouts


def base(**extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "version": "v1",
        "admin": {"address": "127.0.0.1", "port": 9901},
        "egress": {"mode": "redirect", "port": 15001},
        "endpoints": [
            {
                "name": "backend",
                "appProtocol": "http",
                "discovery": {"static": [{"address": "10.0.0.1", "port": 80}]},
            }
        ],
        "aliases": [{"address": "127.255.0.1", "port": 80, "endpoint": "backend"}],
        "ingress": [{"discoveryName": "front", "port": 15080, "appPort": 8080, "interceptPort": 8080}],
    }
    cfg.update(extra)
    return cfg


def error_of(cfg: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(cfg)
    return str(info.value)


def test_defaults_are_the_service_connect_ones() -> None:
    cfg = parse_config(base())
    ep = cfg.endpoints[0]
    assert ep.retries.attempts == 2
    assert (ep.outlier.failures, ep.outlier.interval_seconds) == (5, 30)
    assert (ep.outlier.base_ejection_seconds, ep.outlier.max_ejection_seconds) == (30, 300)
    assert cfg.drain_seconds == 20
    assert cfg.limits.max_header_bytes == 65536
    assert cfg.ingress[0].app_address == "127.0.0.1"
    assert effective_timeouts("http", ep.timeouts) == (15.0, 300.0)
    assert effective_timeouts("tcp", cfg.ingress[0].timeouts) == (None, 3600.0)


def test_zero_disables_timeouts() -> None:
    cfg = parse_config(
        base(
            endpoints=[
                {
                    "name": "backend",
                    "appProtocol": "http",
                    "timeouts": {"perRequestTimeoutSeconds": 0, "idleTimeoutSeconds": 0},
                    "discovery": {"static": []},
                }
            ]
        )
    )
    assert effective_timeouts("http", cfg.endpoints[0].timeouts) == (None, None)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c.update(bogus=1), "bogus: Extra inputs are not permitted"),
        (lambda c: c["admin"].update(port=70000), "admin.port: Input should be less than or equal to 65535"),
        (
            lambda c: c["admin"].update(localAddress="0.0.0.0"),
            "admin.localAddress: 0.0.0.0 is not a loopback address",
        ),
        (
            lambda c: c["admin"].update(localAddress="10.0.0.1"),
            "admin.localAddress: 10.0.0.1 is not a loopback address",
        ),
        (lambda c: c["admin"].update(localPort=c["admin"]["port"]), "admin.localPort: port 9901 is already"),
        (lambda c: c["egress"].update(port=9902), "egress.port: port 9902 is already used by admin.local"),
        (lambda c: c.update(limits={"maxHeaderCount": 0}), "limits.maxHeaderCount: Input should be greater"),
        (lambda c: c["aliases"][0].update(endpoint="nope"), "aliases.0.endpoint: 'nope' is not the name"),
        (
            lambda c: c["aliases"][0].update(address="10.1.1.1"),
            "aliases.0.address: 10.1.1.1 is not in",
        ),
        (
            lambda c: c["aliases"].append(dict(c["aliases"][0])),
            "aliases.1: duplicate address:port 127.255.0.1:80",
        ),
        (lambda c: c["egress"].pop("port"), "egress.port: required when mode is 'redirect'"),
        (
            lambda c: c["endpoints"][0].update(discovery={}),
            "endpoints.0.discovery: discovery needs exactly one",
        ),
        (
            lambda c: c["endpoints"][0].update(appProtocol="tcp", timeouts={"perRequestTimeoutSeconds": 5}),
            "endpoints.0.timeouts.perRequestTimeoutSeconds: applies only to appProtocol http",
        ),
        (lambda c: c["endpoints"][0].update(appProtocol="HTTP"), "endpoints.0.appProtocol: Input should be"),
        (
            lambda c: c["endpoints"][0].update(name="Bad Name"),
            "endpoints.0.name: String should match pattern",
        ),
        (
            lambda c: c["endpoints"][0].update(discovery={"dns": {"name": "x.svc"}}),
            "endpoints.0.discovery.dns.srvName: dns discovery needs srvName or port",
        ),
        (
            lambda c: c["endpoints"][0].update(
                discovery={"dns": {"name": "x.svc", "port": 80, "resolver": "127.0.0.1:99999"}}
            ),
            "endpoints.0.discovery.dns.resolver: resolver port 99999 is out of range",
        ),
        (
            lambda c: c["endpoints"][0].update(outlier={"baseEjectionSeconds": 30, "maxEjectionSeconds": 10}),
            "endpoints.0.outlier.maxEjectionSeconds: must be >= baseEjectionSeconds",
        ),
        (
            lambda c: c["endpoints"][0].update(outlier={"consecutiveFailures": 5}),
            "endpoints.0.outlier.consecutiveFailures: renamed to failures: failures within intervalSeconds "
            "eject a task, whatever succeeded in between",
        ),
        (
            lambda c: c["endpoints"].append(dict(c["endpoints"][0])),
            "endpoints: duplicate endpoint name 'backend'",
        ),
        (
            lambda c: c["ingress"][0].update(port=9901),
            "ingress.0.port: port 9901 is already used by admin.port",
        ),
        (
            lambda c: c["ingress"][0].update(port=15001),
            "ingress.0.port: port 15001 is already used by egress.port",
        ),
        (
            lambda c: c["ingress"].append({"discoveryName": "other", "port": 15080, "appPort": 81}),
            "ingress.1.port: port 15080 is already used by ingress.0.port",
        ),
        (
            lambda c: c["ingress"][0].update(interceptPort=15001),
            "ingress.0.interceptPort: 15001 collides with egress.port",
        ),
        (lambda c: c.update(egress=None), "egress: required when aliases are configured"),
        (
            lambda c: c["ingress"][0].update(appAddress="localhost"),
            "ingress.0.appAddress: 'localhost' is not an IPv4",
        ),
        (
            lambda c: c.update(accessLog={"format": "XML"}),
            "accessLog.format: Input should be 'TEXT' or 'JSON'",
        ),
        (lambda c: c.pop("version"), "version: Field required"),
    ],
)
def test_refusals_name_the_field(mutate: Any, expected: str) -> None:
    cfg = base()
    mutate(cfg)
    assert expected in error_of(cfg)


def test_no_privilege_mode_needs_no_egress_port() -> None:
    cfg = base(egress={"mode": "listeners"})
    assert parse_config(cfg).egress is not None


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="mapping at the top level"):
        parse_config(["version"])


def test_load_yaml_and_json_and_dump_roundtrip(tmp_path: Path) -> None:
    import json

    import yaml

    y = tmp_path / "c.yaml"
    y.write_text(yaml.safe_dump(base()))
    j = tmp_path / "c.json"
    j.write_text(json.dumps(base()))
    a, b = load_config(y), load_config(j)
    assert a == b
    again = ProxyConfig.model_validate(json.loads(dump_config(a)))
    assert again == a
    assert '"appProtocol": "http"' in dump_config(a)


def test_a_json_file_the_operator_writes_is_read_without_the_yaml_parser(tmp_path: Path) -> None:
    """The operator writes JSON; a namespace of hundreds of endpoints pins them all into the file, and
    PyYAML's pure-Python parser takes about 0.2 s for 300 of them, all of it before the proxy is ready."""
    import json
    import subprocess
    import sys

    doc = {
        "version": "big",
        "endpoints": [{"name": f"svc{i}", "discovery": {"dns": {"name": f"svc{i}.ns.svc", "port": 80}}}
                      for i in range(300)],
    }  # fmt: skip
    path = tmp_path / "proxy.json"
    path.write_text(json.dumps(doc, separators=(",", ":")))
    probe = (
        "import sys; from sc_proxy.config import load_config; "
        f"c = load_config({str(path)!r}); print(len(c.endpoints), 'yaml' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["300", "False"]


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [unclosed\n")
    with pytest.raises(ConfigError, match="neither YAML nor JSON"):
        load_config(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10.0.0.10", ("10.0.0.10", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)), ("[::1]:54", ("::1", 54))],
)
def test_parse_resolver(text: str, expected: tuple[str, int]) -> None:
    assert parse_resolver(text) == expected


def test_the_readme_example_is_valid() -> None:
    """The configuration example in sidecar/README.md is the documentation users copy: it must load."""
    import yaml

    readme = Path(__file__).resolve().parents[3] / "sidecar" / "README.md"
    text = readme.read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = parse_config(yaml.safe_load(block))
    assert cfg.aliases[0].endpoint == cfg.endpoints[0].name
    assert cfg.ingress[0].intercept_port == cfg.ingress[0].app_port


# -- TLS (the operator renders these; sidecar/README.md, TLS) ------------------------------------------------


def _tls_cfg(ingress_tls: dict[str, Any] | None = None, endpoint_tls: dict[str, Any] | None = None) -> Any:
    cfg = base()
    if ingress_tls is not None:
        cfg["ingress"][0]["tls"] = ingress_tls
    if endpoint_tls is not None:
        cfg["endpoints"][0]["tls"] = endpoint_tls
    return cfg


def test_tls_blocks_are_read_and_only_paths_are_shown() -> None:
    ing = {
        "certFile": "/var/run/serviceconnect/tls/front/tls.crt",
        "keyFile": "/var/run/serviceconnect/tls/front/tls.key",
    }
    ep = {"caFile": "/var/run/serviceconnect/ca/shop/ca.crt", "serverName": "backend"}
    cfg = parse_config(_tls_cfg(ing, ep))
    assert cfg.ingress[0].tls is not None
    assert cfg.ingress[0].tls.key_file.endswith("tls.key")
    assert cfg.ingress[0].tls.allowed_callers == []
    assert cfg.endpoints[0].tls is not None
    assert cfg.endpoints[0].tls.server_name == "backend"
    shown = dump_config(cfg)
    assert '"keyFile": "/var/run/serviceconnect/tls/front/tls.key"' in shown
    assert "BEGIN" not in shown


_I = {"certFile": "/c", "keyFile": "/k"}
_TLS_REFUSALS = [
    ({"certFile": "tls.crt", "keyFile": "/k"}, None,
     "ingress.0.tls.certFile: 'tls.crt' is not an absolute file path"),
    ({"certFile": "/c"}, None, "ingress.0.tls.keyFile: Field required"),
    ({**_I, "allowedCallers": ["spiffe://a/b"]}, None, "ingress.0.tls.allowedCallers: needs clientCaFile"),
    ({**_I, "clientCaFile": "/ca", "allowedCallers": ["frontend"]}, None,
     "ingress.0.tls.allowedCallers: 'frontend' is not a URI identity"),
    ({**_I, "minVersion": "1.2"}, None, "ingress.0.tls.minVersion: Extra inputs"),
    (None, {"caFile": "/ca", "serverName": "bad name"},
     "endpoints.0.tls.serverName: 'bad name' is not a DNS name"),
    (None, {"caFile": "/ca"}, "endpoints.0.tls.serverName: Field required"),
    (None, {"caFile": "/ca", "serverName": "b", "certFile": "/c"},
     "endpoints.0.tls.certFile: certFile and keyFile go together"),
    (None, {"caFile": "relative/ca.crt", "serverName": "b"},
     "endpoints.0.tls.caFile: 'relative/ca.crt' is not an absolute"),
]  # fmt: skip


@pytest.mark.parametrize(("ingress_tls", "endpoint_tls", "message"), _TLS_REFUSALS)
def test_tls_refusals_name_the_field(
    ingress_tls: dict[str, Any] | None, endpoint_tls: dict[str, Any] | None, message: str
) -> None:
    assert message in error_of(_tls_cfg(ingress_tls, endpoint_tls))


def test_the_tls_contract_shape_with_explicit_nulls_is_accepted() -> None:
    """The shape the operator renders (issue 10's contract), optional fields written out as null / []."""
    doc = yaml.safe_load(
        """
version: v1
egress: {mode: redirect, port: 15001}
ingress:
  - discoveryName: nginx
    port: 15100
    appPort: 80
    appProtocol: http
    tls:
      certFile: /var/run/serviceconnect/tls/nginx/tls.crt
      keyFile: /var/run/serviceconnect/tls/nginx/tls.key
      clientCaFile: null
      allowedCallers: []
endpoints:
  - name: nginx
    appProtocol: http
    discovery: {dns: {name: nginx-sc.shop.svc.cluster.local, port: 15100}}
    tls:
      caFile: /var/run/serviceconnect/ca/shop/ca.crt
      serverName: nginx
      certFile: null
      keyFile: null
"""
    )
    cfg = parse_config(doc)
    assert cfg.ingress[0].tls is not None
    assert cfg.ingress[0].tls.client_ca_file is None
    assert cfg.endpoints[0].tls is not None
    assert cfg.endpoints[0].tls.cert_file is None
