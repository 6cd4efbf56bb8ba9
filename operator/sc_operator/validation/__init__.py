"""Validation as pure functions: what ECS refuses, we refuse, naming the rule, the field and the ECS text.

- :func:`validate_service` / :func:`parse_and_validate`: one ConnectService object or spec, every
  violation (schema limits and the Service Connect rules);
- :func:`validate_spec`: the same on an already parsed spec;
- :func:`validate_namespace`: one ConnectNamespace object;
- :func:`validate_registration`: cross-object rules against the ConnectNamespaces' registries;
  :func:`validate_together`: the same rules over a set of services (offline, e.g. a directory);
- :func:`effective_endpoints`: what a service registers, defaults applied;
- :data:`STANDALONE_TASK_MESSAGE`: for the pod webhook; :data:`RULES`: rule id -> one-line rule.
"""

from sc_operator.validation.endpoints import LocatedEndpoint, effective_endpoints, located_endpoints
from sc_operator.validation.namespace import validate_namespace
from sc_operator.validation.registry import (
    RegistryView,
    StaticRegistry,
    validate_registration,
    validate_together,
)
from sc_operator.validation.service import (
    imported_service_connect,
    parse_and_validate,
    validate_service,
    validate_spec,
)
from sc_operator.validation.violation import (
    DEPLOYMENT_CONTROLLER_MESSAGE,
    IMPORTED_SC_ANNOTATION,
    RULES,
    STANDALONE_TASK_MESSAGE,
    Violation,
)

__all__ = [
    "DEPLOYMENT_CONTROLLER_MESSAGE",
    "IMPORTED_SC_ANNOTATION",
    "RULES",
    "STANDALONE_TASK_MESSAGE",
    "LocatedEndpoint",
    "RegistryView",
    "StaticRegistry",
    "Violation",
    "effective_endpoints",
    "imported_service_connect",
    "located_endpoints",
    "parse_and_validate",
    "validate_namespace",
    "validate_registration",
    "validate_service",
    "validate_spec",
    "validate_together",
]
