"""Turn pydantic validation errors into Violations with ECS rule ids and Kubernetes-style field paths."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from sc_operator.api.introspect import fields_by_alias, nested_model
from sc_operator.validation.violation import RULES, Violation

# The last path element decides the rule: the same names mean the same ECS rule wherever they appear.
_RULE_BY_FIELD = {
    "discoveryName": "discovery-name",
    "dnsName": "dns-name",
    "portName": "port-name",
    "port": "port-range",
    "containerPort": "port-range",
    "hostPort": "port-range",
    "ingressPortOverride": "port-range",
    "idleTimeoutSeconds": "timeout-range",
    "perRequestTimeoutSeconds": "timeout-range",
}


def field_path(prefix: str, loc: Sequence[int | str]) -> str:
    """``("services", 0, "portName")`` under ``spec.serviceConnectConfiguration`` ->
    ``spec.serviceConnectConfiguration.services[0].portName``."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path


def _rule_for(loc: Sequence[int | str], error_type: str) -> str:
    names = [p for p in loc if isinstance(p, str)]
    last = names[-1] if names else ""
    if names[-2:] == ["deploymentController", "type"]:
        return "deployment-controller"
    if names[-2:] == ["serviceConnectConfiguration", "namespace"] and error_type != "missing":
        return "namespace-name"
    if names[-2:] in (["taskDefinition", "cpu"], ["taskDefinition", "memory"]):
        return "task-size"
    if "clientAliases" in names and last == "port" and error_type == "missing":
        return "client-alias"
    if error_type == "missing":
        return "required"
    if last == "name" and "portMappings" in names:
        return "port-name"
    return _RULE_BY_FIELD.get(last, "schema")


def _message(rule: str, error: ErrorDetails) -> str:
    got = error.get("input")
    detail = error["msg"]
    if error["type"] == "missing":
        return f"{detail} ({RULES[rule]})" if rule != "required" else detail
    if error["type"] == "extra_forbidden":
        return "unknown field (not an ECS field of this object; check the spelling and nesting)"
    shown = f"; got {got!r}" if isinstance(got, str | int | float) and not isinstance(got, bool) else ""
    if rule == "schema":
        return f"{detail}{shown}"
    if rule == "task-size":
        # pydantic's detail names one branch of `int | str`, which misleads more than it helps.
        return f'{RULES[rule]}, e.g. 512, "512", "0.25 vCPU" or "1 GB"{shown}'
    return f"{RULES[rule]} ({detail}){shown}"


def violations_from(exc: ValidationError, prefix: str) -> list[Violation]:
    """Every error of ``exc`` as a Violation, in the order pydantic found them."""
    found: list[Violation] = []
    for error in exc.errors(include_url=False):
        loc = [p for p in error["loc"] if not _is_union_tag(p)]
        rule = _rule_for(loc, error["type"])
        violation = Violation(rule, field_path(prefix, loc), _message(rule, error))
        # `int | str` fields fail once per branch; one report per field and rule is enough.
        if all((v.rule, v.field) != (violation.rule, violation.field) for v in found):
            found.append(violation)
    return found


def _is_union_tag(part: int | str) -> bool:
    # `int | str` fields report errors under the branch names ("int", "str"); the user never wrote those.
    return part in ("int", "str", "function-after[...]")


def null_violations(model: type[BaseModel], data: Any, prefix: str) -> list[Violation]:
    """Explicit nulls: the models read them as "unset", but the CRD schema (which has no ``nullable``)
    makes kube-apiserver refuse them. Reported so that ``scctl validate`` agrees with ``kubectl apply``.
    """
    if isinstance(data, list):
        return [v for i, item in enumerate(data) for v in null_violations(model, item, f"{prefix}[{i}]")]
    if not isinstance(data, Mapping):
        return []
    by_alias = fields_by_alias(model)
    found: list[Violation] = []
    for key, value in data.items():
        info = by_alias.get(key)
        if info is None:
            continue
        path = field_path(prefix, [key])
        sub = nested_model(info.annotation)
        if value is None:
            found.append(
                Violation("schema", path, "null is not allowed; leave the field out to leave it unset")
            )
        elif sub is not None:
            found.extend(null_violations(sub, value, path))
    return found
