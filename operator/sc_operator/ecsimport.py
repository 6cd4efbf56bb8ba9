"""Convert ECS JSON (create-service input + register-task-definition input) into a ConnectService (pure).

The field names are the same on both sides, so the conversion keeps every field our models know and
reports the rest (``cluster``, ``launchType``, ``networkConfiguration``, …: they have no Kubernetes
meaning here) as dropped, with their paths.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from sc_operator import API_VERSION
from sc_operator.api.introspect import fields_by_alias, nested_model
from sc_operator.api.service import ConnectServiceSpec
from sc_operator.api.taskdef import TaskDefinition

_SERVICE_FIELDS = (
    "desiredCount",
    "deploymentController",
    "deploymentConfiguration",
    "serviceConnectConfiguration",
)


class EcsImportError(ValueError):
    """The ECS input cannot be converted; the message says what is missing."""


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


def import_ecs(
    service: Mapping[str, Any],
    task_definition: Mapping[str, Any] | None,
    *,
    name: str | None = None,
    namespace: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """A ConnectService object and the paths of the ECS fields that were dropped."""
    if "service" in service and isinstance(service["service"], Mapping):
        service = service["service"]  # create-service / describe output
    if task_definition is not None and isinstance(task_definition.get("taskDefinition"), Mapping):
        task_definition = task_definition["taskDefinition"]  # describe-task-definition output
    if task_definition is None:
        inline = service.get("taskDefinition")
        if not isinstance(inline, Mapping):
            raise EcsImportError(
                f"the service refers to task definition {inline!r}; pass its JSON with --task-definition"
            )
        task_definition = inline
    dropped: list[str] = []
    spec: dict[str, Any] = {}
    for key in _SERVICE_FIELDS:
        if key in service:
            info = ConnectServiceSpec.model_fields[_field_name(key)]
            sub = nested_model(info.annotation)
            spec[key] = keep_known(sub, service[key], key, dropped) if sub else service[key]
    spec["taskDefinition"] = keep_known(TaskDefinition, task_definition, "taskDefinition", dropped)
    dropped.extend(
        key for key in service if key not in _SERVICE_FIELDS and key not in ("taskDefinition", "serviceName")
    )
    service_name = name or service.get("serviceName")
    if not service_name:
        raise EcsImportError("the service JSON has no serviceName; give --name")
    metadata: dict[str, Any] = {"name": k8s_name(str(service_name))}
    if namespace:
        metadata["namespace"] = namespace
    obj = {"apiVersion": API_VERSION, "kind": "ConnectService", "metadata": metadata, "spec": spec}
    return obj, dropped


def _field_name(alias: str) -> str:
    for field_name, info in ConnectServiceSpec.model_fields.items():
        if info.alias == alias:
            return field_name
    raise KeyError(alias)  # pragma: no cover - _SERVICE_FIELDS are aliases of the model
