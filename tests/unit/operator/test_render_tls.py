"""TLS in the rendering: the leaf and CA mounts, the proxy's tls blocks, the cert-manager Certificate."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

from sc_operator.api.common import Endpoint
from sc_operator.api.tls import IssuerRef
from sc_operator.render import render_children
from sc_operator.render.names import PROXY_CONTAINER
from sc_operator.render.tls import certificate_object, leaf_request
from support.render import (
    NAMESPACE,
    NGINX_SPEC,
    client_inputs,
    container,
    endpoint,
    k8s_validate,
    make_inputs,
)

TLS_SPEC: dict[str, Any] = copy.deepcopy(NGINX_SPEC)
TLS_SPEC["serviceConnectConfiguration"]["services"][0]["tls"] = {"issuerCertificateAuthority": {}}
TLS_NGINX = {**endpoint("nginx", "nginx", 80, "http", "nginx", port_name="nginx"), "tls": True}


def _doc(children: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(children.config_map["data"]["proxy.json"])
    return doc


def test_server_mounts_its_leaf_and_listens_with_tls() -> None:
    children = render_children(make_inputs(TLS_SPEC, endpoints=[]))
    k8s_validate(children.deployment)
    spec = children.deployment["spec"]["template"]["spec"]
    assert {"name": "sc-tls", "secret": {"secretName": "sc-tls-nginx"}} in spec["volumes"]
    proxy = container(spec, PROXY_CONTAINER)
    assert {"name": "sc-tls", "mountPath": "/var/run/serviceconnect/tls/nginx", "readOnly": True} in proxy[
        "volumeMounts"
    ]
    # Only the proxy sees the key.
    app = container(spec, "webserver")
    assert all(m["name"] != "sc-tls" for m in app.get("volumeMounts", []))
    (ingress,) = _doc(children)["ingress"]
    assert ingress["tls"] == {
        "certFile": "/var/run/serviceconnect/tls/nginx/tls.crt",
        "keyFile": "/var/run/serviceconnect/tls/nginx/tls.key",
    }
    assert children.proxy_config is not None
    assert children.proxy_config.ingress[0].tls is not None


def test_client_trusts_the_namespace_bundle_for_tls_pins_only() -> None:
    plain = endpoint("redis", "redis", 6379, None, "cache")
    children = render_children(client_inputs(endpoints=[TLS_NGINX, plain]))
    k8s_validate(children.deployment)
    spec = children.deployment["spec"]["template"]["spec"]
    assert {"name": "sc-ca", "configMap": {"name": f"sc-ca-{NAMESPACE}"}} in spec["volumes"]
    assert {"name": "sc-ca", "mountPath": f"/var/run/serviceconnect/ca/{NAMESPACE}", "readOnly": True} in (
        container(spec, PROXY_CONTAINER)["volumeMounts"]
    )
    endpoints = {e["name"]: e for e in _doc(children)["endpoints"]}
    assert endpoints["nginx"]["tls"] == {
        "caFile": f"/var/run/serviceconnect/ca/{NAMESPACE}/ca.crt",
        "serverName": "nginx",
        # Its own certificate, presented when the server asks (mutual TLS).
        "certFile": "/var/run/serviceconnect/tls/client/tls.crt",
        "keyFile": "/var/run/serviceconnect/tls/client/tls.key",
    }
    assert {"name": "sc-tls", "secret": {"secretName": "sc-tls-client"}} in spec["volumes"]
    assert "tls" not in endpoints["redis"]  # pinned before (or without) TLS: plaintext


def test_without_tls_nothing_changes() -> None:
    spec = render_children(client_inputs())
    names = {v["name"] for v in spec.deployment["spec"]["template"]["spec"]["volumes"]}
    assert not names & {"sc-tls", "sc-ca"}


def test_nothing_secret_in_the_config_map() -> None:
    children = render_children(make_inputs(TLS_SPEC, endpoints=[TLS_NGINX]))
    text = children.config_map["data"]["proxy.json"] if children.config_map else ""
    assert "PRIVATE KEY" not in text
    assert "BEGIN" not in text


def test_leaf_names_cover_every_name_clients_use() -> None:
    eps = [
        Endpoint.model_validate({**TLS_NGINX, "dnsName": "nginx.shop"}),
        Endpoint.model_validate({**TLS_NGINX, "dnsName": "web", "port": 8080}),
        Endpoint.model_validate(endpoint("plain", "plain", 81, None, "nginx")),
    ]
    req = leaf_request(eps, "shop", "web", "nginx")
    assert req.dns_names == ("nginx", "nginx.shop", "web")
    assert req.uri == "spiffe://shop/ns/web/connectservice/nginx"


def test_cert_manager_certificate() -> None:
    req = leaf_request([Endpoint.model_validate(TLS_NGINX)], "shop", "web", "nginx")
    owner = {
        "apiVersion": "serviceconnect.dev/v1alpha1",
        "kind": "ConnectService",
        "name": "nginx",
        "uid": "u",
    }
    cert = certificate_object(
        "nginx",
        "web",
        owner,
        req,
        IssuerRef(name="ca", kind="ClusterIssuer"),
        dt.timedelta(days=7),
        dt.timedelta(days=2),
        "ECDSA_P256",
    )
    assert cert["apiVersion"] == "cert-manager.io/v1"
    assert cert["metadata"]["ownerReferences"] == [owner]
    assert cert["spec"]["secretName"] == "sc-tls-nginx"  # the Secret the pods mount
    assert cert["spec"]["dnsNames"] == ["nginx"]
    assert cert["spec"]["uris"] == ["spiffe://shop/ns/web/connectservice/nginx"]
    assert (cert["spec"]["duration"], cert["spec"]["renewBefore"]) == ("168h0m0s", "48h0m0s")
    assert cert["spec"]["privateKey"] == {
        "algorithm": "ECDSA",
        "size": 256,
        "encoding": "PKCS8",
        "rotationPolicy": "Always",
    }
    assert cert["spec"]["issuerRef"] == {"name": "ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}


def test_mutual_tls_server_verifies_callers_and_lists_who_may_call() -> None:
    spec = copy.deepcopy(TLS_SPEC)
    spec["serviceConnectConfiguration"]["services"][0]["tls"]["mutualTls"] = {
        "allowedCallers": [{"name": "client"}, {"namespace": "shop", "name": "orders"}]
    }
    children = render_children(make_inputs(spec, endpoints=[]))
    (ingress,) = _doc(children)["ingress"]
    assert ingress["tls"]["clientCaFile"] == f"/var/run/serviceconnect/ca/{NAMESPACE}/ca.crt"
    assert ingress["tls"]["allowedCallers"] == [
        f"spiffe://{NAMESPACE}/ns/default/connectservice/client",
        f"spiffe://{NAMESPACE}/ns/shop/connectservice/orders",
    ]
    volumes = children.deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "sc-ca", "configMap": {"name": f"sc-ca-{NAMESPACE}"}} in volumes
    # Any caller of the namespace: the CA bundle, no list.
    spec["serviceConnectConfiguration"]["services"][0]["tls"]["mutualTls"] = {}
    (ingress,) = _doc(render_children(make_inputs(spec, endpoints=[])))["ingress"]
    assert "allowedCallers" not in ingress["tls"]
    assert ingress["tls"]["clientCaFile"].endswith("/ca.crt")
