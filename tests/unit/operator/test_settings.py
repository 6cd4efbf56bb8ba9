"""OperatorSettings from SC_* environment variables and CLI overrides."""

from __future__ import annotations

import pytest

from sc_operator.render import interception_mode, parse_server_version
from sc_operator.settings import OperatorSettings, SettingsError


def test_defaults() -> None:
    s = OperatorSettings.load({})
    assert s.interception == "redirect"
    assert s.cluster_domain == "cluster.local"
    assert s.dns_resolver == ""
    assert (s.proxy_sizing.cpu_units, s.proxy_sizing.memory_mib) == (256, 64)
    assert s.effective_proxy_version == "0.1.0"


def test_environment_and_cli_overrides() -> None:
    env = {
        "SC_PROXY_IMAGE": "registry.local:5000/sc-proxy@sha256:abc",
        "SC_INTERCEPTION": "listeners",
        "SC_ADMIN_PORT": "19901",
        "SC_PROXY_SIZING": '{"memory_mib": 96}',
        "SC_LOG_LEVEL": "debug",  # read elsewhere, not a setting
        "SC_TOOLS_DIR": "/opt/tools",  # the test tooling's, nothing like a setting: ignored
        "PATH": "/usr/bin",
    }
    s = OperatorSettings.load(env, {"cluster_domain": "k8s.example", "admin_port": None})
    assert s.proxy_image == "registry.local:5000/sc-proxy@sha256:abc"
    assert s.effective_proxy_version == "sha256:abc"
    assert s.interception == "listeners"
    assert s.admin_port == 19901  # None in the overrides means "not given on the command line"
    assert s.proxy_sizing.memory_mib == 96
    assert s.cluster_domain == "k8s.example"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SC_INTERCEPTION": "tproxy"}, "SC_INTERCEPTION: Input should be 'redirect' or 'listeners'"),
        ({"SC_ADMIN_PORT": "70000"}, "SC_ADMIN_PORT: Input should be less than or equal to 65535"),
        ({"SC_PROXY_IMAGES": "x"}, "SC_PROXY_IMAGES: unknown setting; did you mean SC_PROXY_IMAGE?"),
        ({"SC_INTERCEPTON": "x"}, "did you mean SC_INTERCEPTION?"),
        ({"SC_PROXY_RESOURCES": "{bad"}, "SC_PROXY_RESOURCES: not valid JSON"),
        ({"SC_PROXY_RESOURCES": '{"request": {}}'}, "only 'requests' and 'limits' are allowed"),
        ({"SC_PROXY_SIZING": '{"cpu_units": 0}'}, "SC_PROXY_SIZING.cpu_units: Input should be greater than"),
        ({"SC_CLUSTER_NAME": "prod eu"}, "SC_CLUSTER_NAME: String should match pattern"),
        ({"SC_CLUSTER_NAME": ""}, "SC_CLUSTER_NAME: String should match pattern"),
        ({"SC_PROMETHEUS_ANNOTATIONS": "maybe"}, "SC_PROMETHEUS_ANNOTATIONS: Input should be a valid bool"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace("{", r"\{")):
        OperatorSettings.load(env)


def test_cluster_name_and_scrape_annotations() -> None:
    assert OperatorSettings().cluster_name == "kubernetes"
    assert OperatorSettings().prometheus_annotations is True
    env = {"SC_CLUSTER_NAME": "k8s.eu-west-1.example", "SC_PROMETHEUS_ANNOTATIONS": "false"}
    s = OperatorSettings.load(env)
    assert s.cluster_name == "k8s.eu-west-1.example"
    assert s.prometheus_annotations is False


def test_interception_from_namespace_label() -> None:
    default = OperatorSettings()
    assert interception_mode(None, default) == "redirect"
    assert interception_mode({"serviceconnect.dev/interception": "listeners"}, default) == "listeners"
    listeners = OperatorSettings(interception="listeners")
    assert interception_mode({"serviceconnect.dev/interception": "redirect"}, listeners) == "redirect"
    assert interception_mode({"serviceconnect.dev/interception": "bogus"}, listeners) == "listeners"


def test_server_version() -> None:
    assert parse_server_version("1", "20") == (1, 20)
    assert parse_server_version("1", "29+") == (1, 29)
    with pytest.raises(ValueError, match="no number"):
        parse_server_version("1", "")
