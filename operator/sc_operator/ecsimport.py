"""Convert ECS JSON into our objects (pure): services, task definitions, clusters, Cloud Map namespaces.

Accepted documents, input and output forms alike (what ``aws ecs``/``aws servicediscovery`` print):

- a service: the ``create-service`` input, or the ``create-service``/``update-service`` output
  (``{"service": {...}}``) or ``describe-services`` output (``{"services": [...]}``). In the output forms
  ECS reports the Service Connect configuration under ``deployments[]``, not at the top: it is taken from
  the PRIMARY deployment (the configuration the running tasks have);
- a task definition: the ``register-task-definition`` input, or ``{"taskDefinition": {...}}`` output;
- a cluster: the ``create-cluster`` input, or its output / ``describe-clusters`` output. Its
  ``serviceConnectDefaults.namespace`` becomes a ConnectNamespace and the Kubernetes Namespace label
  that makes it the default for services that name none (the cluster's default namespace in ECS);
- a Cloud Map namespace (``aws servicediscovery get-namespace`` output): a ConnectNamespace, and the
  ARN -> name mapping for the other documents.

The field names are the same on both sides, so the conversion keeps every field our models know and
reports the rest (``cluster``, ``launchType``, ``networkConfiguration``, …: they have no Kubernetes meaning
here) as dropped, with their paths. What changes behaviour when dropped, or carries over without effect,
is a warning.

ECS names a namespace by name or by ARN (``arn:aws:servicediscovery:<region>:<account>:namespace/ns-…``),
and its output forms print the ARN. The ARN carries the namespace's id, not its name, so it is mapped with
(in this order) a Cloud Map ``get-namespace`` document given alongside, or ``namespace_name``; without
either, a service's namespace is left unset (it joins its Kubernetes namespace's default
ConnectNamespace) and a cluster's default cannot be imported. Each mapping is reported as a warning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from sc_operator import API_VERSION
from sc_operator.api.introspect import fields_by_alias, nested_model
from sc_operator.api.service import ConnectServiceSpec
from sc_operator.api.taskdef import TaskDefinition
from sc_operator.reconcile.context import DEFAULT_NAMESPACE_LABEL
from sc_operator.validation.violation import IMPORTED_SC_ANNOTATION

_SERVICE_FIELDS = (
    "desiredCount",
    "deploymentController",
    "deploymentConfiguration",
    "serviceConnectConfiguration",
)
NAMESPACE_ARN = re.compile(r"^arn:aws[a-z-]*:servicediscovery:[^:]*:[^:]*:namespace/(?P<id>ns-[A-Za-z0-9]+)$")

#: Dropped service fields that change what the service does; everything else dropped is a note.
_BEHAVIOUR = {
    "loadBalancers": "no load balancer is attached; expose the pods with a Service or Ingress yourself",
    "serviceRegistries": "no Cloud Map registration besides Service Connect's own endpoints",
    "capacityProviderStrategy": "pods are scheduled by Kubernetes, not ECS capacity providers",
    "placementConstraints": "express placement with nodeSelector/affinity yourself",
    "placementStrategy": "express placement with nodeSelector/affinity yourself",
}


class EcsImportError(ValueError):
    """The ECS input cannot be converted; the message says what is missing."""


@dataclass
class Imported:
    """Our objects, in the order to apply them, and what did not carry over."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    """Paths of ECS fields with no meaning here."""
    warnings: list[str] = field(default_factory=list)
    """What changes behaviour: mapped ARNs, the TLS CA, dropped fields that did something in ECS."""


def keep_known(model: type[BaseModel], data: Any, path: str, dropped: list[str]) -> Any:
    """``data`` with only the fields ``model`` knows (by alias), recursively; dropped paths are appended."""
    if isinstance(data, list):
        return [keep_known(model, item, f"{path}[{i}]", dropped) for i, item in enumerate(data)]
    if not isinstance(data, Mapping):
        return data
    by_alias = fields_by_alias(model)
    kept: dict[str, Any] = {}
    for key, value in data.items():
        info = by_alias.get(key)
        if info is None:
            dropped.append(f"{path}.{key}")
            continue
        sub = nested_model(info.annotation)
        if sub is not None:
            kept[key] = keep_known(sub, value, f"{path}.{key}", dropped)
        else:
            kept[key] = value
    return kept


def k8s_name(name: str) -> str:
    """A DNS-1123 name from an ECS service name (letters, digits, '-' and '_' up to 255)."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    if not cleaned:
        raise EcsImportError(f"cannot make a Kubernetes name from {name!r}; give --name")
    return cleaned


# -- what a document is -------------------------------------------------------------------------------


def kind_of(doc: Any) -> str | None:
    """``service``, ``task-definition``, ``cluster``, ``cloud-map-namespace`` or None (not ECS JSON)."""
    if not isinstance(doc, Mapping):
        return None
    if "service" in doc or "services" in doc or "serviceName" in doc:
        return "service"
    if "containerDefinitions" in doc or isinstance(doc.get("taskDefinition"), Mapping):
        return "task-definition"
    if "cluster" in doc or "clusters" in doc or "clusterName" in doc:
        return "cluster"
    if isinstance(doc.get("Namespace"), Mapping):
        return "cloud-map-namespace"
    return None


def _one(doc: Mapping[str, Any], single: str, plural: str, what: str) -> Mapping[str, Any]:
    if isinstance(doc.get(single), Mapping):
        return doc[single]  # type: ignore[no-any-return]
    items = doc.get(plural)
    if isinstance(items, list):
        found = [item for item in items if isinstance(item, Mapping)]
        if len(found) != 1:
            raise EcsImportError(f"the {what} output holds {len(found)} {plural}; import them one at a time")
        return found[0]
    return doc


def namespace_arns(docs: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """ARN -> name from Cloud Map ``get-namespace`` outputs."""
    out: dict[str, str] = {}
    for doc in docs:
        ns = doc.get("Namespace")
        if isinstance(ns, Mapping) and ns.get("Arn") and ns.get("Name"):
            out[str(ns["Arn"])] = str(ns["Name"])
    return out


def map_namespace(
    value: str, where: str, *, namespace_name: str | None, arns: Mapping[str, str], warnings: list[str]
) -> str | None:
    """A namespace name from ECS's name-or-ARN; None when an ARN cannot be named."""
    match = NAMESPACE_ARN.match(value)
    if match is None:
        return value
    if value in arns:
        warnings.append(f"{where}: namespace ARN {value} mapped to {arns[value]!r} (get-namespace output)")
        return arns[value]
    if namespace_name:
        warnings.append(f"{where}: namespace ARN {value} mapped to {namespace_name!r} (--namespace-name)")
        return namespace_name
    warnings.append(
        f"{where}: {value} is a namespace ARN, which carries the id {match['id']}, not the name; left "
        f"unset, so the service joins its Kubernetes namespace's default ConnectNamespace (label "
        f"{DEFAULT_NAMESPACE_LABEL}); give --namespace-name NAME or the get-namespace output to name it"
    )
    return None


# -- services -----------------------------------------------------------------------------------------


def _service_connect(service: Mapping[str, Any], result: Imported) -> Any:
    """The Service Connect configuration: the top-level one (input form), else the PRIMARY deployment's."""
    if "serviceConnectConfiguration" in service:
        return service["serviceConnectConfiguration"]
    deployments = [d for d in service.get("deployments") or [] if isinstance(d, Mapping)]
    with_sc = [(i, d) for i, d in enumerate(deployments) if "serviceConnectConfiguration" in d]
    if not with_sc:
        return None
    i, chosen = next(((i, d) for i, d in with_sc if d.get("status") == "PRIMARY"), with_sc[0])
    result.dropped.append(f"deployments (the Service Connect configuration of deployments[{i}] was kept)")
    return chosen["serviceConnectConfiguration"]


def _import_service(
    service: Mapping[str, Any],
    task_definition: Mapping[str, Any] | None,
    *,
    name: str | None,
    namespace: str | None,
    namespace_name: str | None,
    arns: Mapping[str, str],
    result: Imported,
) -> dict[str, Any]:
    service = _one(service, "service", "services", "describe-services")
    if task_definition is not None:
        task_definition = _one(task_definition, "taskDefinition", "taskDefinitions", "task definition")
    else:
        inline = service.get("taskDefinition")
        if not isinstance(inline, Mapping):
            raise EcsImportError(
                f"the service refers to task definition {inline!r}; pass its JSON with --task-definition"
            )
        task_definition = inline
    raw = dict(service)
    scc = _service_connect(service, result)
    if scc is not None:
        raw["serviceConnectConfiguration"] = scc
    spec: dict[str, Any] = {}
    for key in _SERVICE_FIELDS:
        if key in raw:
            info = ConnectServiceSpec.model_fields[_field_name(key)]
            sub = nested_model(info.annotation)
            spec[key] = keep_known(sub, raw[key], key, result.dropped) if sub else raw[key]
    spec["taskDefinition"] = keep_known(TaskDefinition, task_definition, "taskDefinition", result.dropped)
    for key, value in service.items():
        if key in _SERVICE_FIELDS or key in ("taskDefinition", "serviceName", "deployments"):
            continue
        if key in _BEHAVIOUR and value:
            result.warnings.append(f"dropped {key}: {_BEHAVIOUR[key]}")
        else:
            result.dropped.append(key)
    metadata: dict[str, Any] = {"name": k8s_name(str(name or service.get("serviceName") or ""))}
    if namespace:
        metadata["namespace"] = namespace
    config = spec.get("serviceConnectConfiguration")
    if isinstance(config, dict):
        _carry_service_connect(config, namespace_name=namespace_name, arns=arns, result=result)
        if config.get("enabled") is True:
            metadata["annotations"] = {IMPORTED_SC_ANNOTATION: "enabled"}
    return {"apiVersion": API_VERSION, "kind": "ConnectService", "metadata": metadata, "spec": spec}


def _carry_service_connect(
    config: dict[str, Any], *, namespace_name: str | None, arns: Mapping[str, str], result: Imported
) -> None:
    """Map the namespace ARN, and warn about what carries over without effect."""
    where = "serviceConnectConfiguration"
    ns = config.get("namespace")
    if isinstance(ns, str):
        mapped = map_namespace(
            ns, f"{where}.namespace", namespace_name=namespace_name, arns=arns, warnings=result.warnings
        )
        if mapped is None:
            del config["namespace"]
        else:
            config["namespace"] = mapped
    for i, svc in enumerate(config.get("services") or []):
        if isinstance(svc, dict) and isinstance(svc.get("tls"), dict):
            _map_tls(svc["tls"], f"{where}.services[{i}].tls", result.warnings)


def _map_tls(tls: dict[str, Any], where: str, warnings: list[str]) -> None:
    """ECS's TLS block, made one the operator enforces: the AWS Private CA becomes the operator's own CA
    for the ConnectNamespace (``{}``); ``kmsKey`` and ``roleArn`` are dropped (refused by validation)."""
    ca = tls.get("issuerCertificateAuthority")
    if isinstance(ca, dict) and "awsPcaAuthorityArn" in ca:
        arn = ca.pop("awsPcaAuthorityArn")
        warnings.append(
            f"{where}.issuerCertificateAuthority.awsPcaAuthorityArn: {arn} mapped to {{}}: TLS is enforced "
            "with a CA the operator creates for the ConnectNamespace (set secretName or issuerRef to use "
            "your own CA); clients trust it, not the AWS Private CA"
        )
    for key, why in (
        (
            "kmsKey",
            "private keys live in Kubernetes Secrets (encrypt them with the API server's KMS provider)",
        ),
        ("roleArn", "no IAM role is involved"),
    ):
        if key in tls:
            del tls[key]
            warnings.append(f"{where}.{key}: dropped: {why}")


# -- clusters and Cloud Map namespaces ---------------------------------------------------------------


def _import_cluster(
    doc: Mapping[str, Any],
    *,
    namespace: str | None,
    namespace_name: str | None,
    arns: Mapping[str, str],
    result: Imported,
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(ConnectNamespace or None, Kubernetes Namespace) for an ECS cluster."""
    cluster = _one(doc, "cluster", "clusters", "describe-clusters")
    cluster_name = str(cluster.get("clusterName") or "")
    ns_meta: dict[str, Any] = {"name": namespace or k8s_name(cluster_name or "default")}
    k8s_ns: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace", "metadata": ns_meta}
    result.dropped.extend(
        f"cluster.{key}" for key in cluster if key not in ("clusterName", "serviceConnectDefaults")
    )
    defaults = cluster.get("serviceConnectDefaults")
    value = defaults.get("namespace") if isinstance(defaults, Mapping) else None
    if not value:
        result.warnings.append(
            f"cluster {cluster_name!r} has no serviceConnectDefaults: its services must name their namespace"
        )
        return None, k8s_ns
    name = map_namespace(
        str(value),
        "cluster.serviceConnectDefaults.namespace",
        namespace_name=namespace_name,
        arns=arns,
        warnings=result.warnings,
    )
    if name is None:
        raise EcsImportError(
            f"cluster.serviceConnectDefaults.namespace is the ARN {value}, which does not carry the "
            "namespace's name; give --namespace-name NAME or the Cloud Map get-namespace output"
        )
    ns_meta["labels"] = {DEFAULT_NAMESPACE_LABEL: name}
    return connect_namespace(name, f"Service Connect defaults of ECS cluster {cluster_name}"), k8s_ns


def connect_namespace(name: str, description: str | None = None) -> dict[str, Any]:
    spec = {"description": description} if description else {}
    return {"apiVersion": API_VERSION, "kind": "ConnectNamespace", "metadata": {"name": name}, "spec": spec}


def _import_cloud_map(doc: Mapping[str, Any], result: Imported) -> dict[str, Any]:
    ns = doc["Namespace"]
    name = ns.get("Name")
    if not name:
        raise EcsImportError("the get-namespace output has no Namespace.Name")
    result.dropped.extend(f"Namespace.{key}" for key in ns if key not in ("Name", "Description"))
    return connect_namespace(str(name), ns.get("Description") or f"Cloud Map namespace {ns.get('Id', '')}")


# -- entry points -------------------------------------------------------------------------------------


def import_documents(
    *,
    service: Mapping[str, Any] | None = None,
    task_definition: Mapping[str, Any] | None = None,
    cluster: Mapping[str, Any] | None = None,
    cloud_map_namespaces: Sequence[Mapping[str, Any]] = (),
    name: str | None = None,
    namespace: str | None = None,
    namespace_name: str | None = None,
) -> Imported:
    """Every object the documents describe, in apply order (Namespace, ConnectNamespaces, ConnectService).

    With a cluster, the service goes into the cluster's Kubernetes namespace unless ``namespace`` is given.
    """
    result = Imported()
    arns = namespace_arns(cloud_map_namespaces)
    seen: set[str] = set()

    def add_connect_namespace(obj: dict[str, Any]) -> None:
        if obj["metadata"]["name"] not in seen:
            seen.add(obj["metadata"]["name"])
            result.objects.append(obj)

    service_namespace = namespace
    if cluster is not None:
        cns, k8s_ns = _import_cluster(
            cluster, namespace=namespace, namespace_name=namespace_name, arns=arns, result=result
        )
        result.objects.append(k8s_ns)
        service_namespace = k8s_ns["metadata"]["name"]
        if cns is not None:
            add_connect_namespace(cns)
    for doc in cloud_map_namespaces:
        add_connect_namespace(_import_cloud_map(doc, result))
    if service is not None:
        result.objects.append(
            _import_service(
                service,
                task_definition,
                name=name,
                namespace=service_namespace,
                namespace_name=namespace_name,
                arns=arns,
                result=result,
            )
        )
    elif task_definition is not None:
        raise EcsImportError("a task definition alone is not a service; give the service JSON too")
    if not result.objects:
        raise EcsImportError("nothing to import: give a service, a cluster or a Cloud Map namespace")
    return result


def _field_name(alias: str) -> str:
    for field_name, info in ConnectServiceSpec.model_fields.items():
        if info.alias == alias:
            return field_name
    raise KeyError(alias)  # pragma: no cover - _SERVICE_FIELDS are aliases of the model
