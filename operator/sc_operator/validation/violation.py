"""A refusal: which rule, which field, and a message that names the ECS rule."""

from __future__ import annotations

from dataclasses import dataclass

#: The message the webhook gives a pod that asks for Service Connect but belongs to no ConnectService.
STANDALONE_TASK_MESSAGE = (
    "Service Connect supports only tasks created by a service; standalone tasks are not supported"
)
#: ``scctl import-ecs`` sets this annotation on a ConnectService whose ECS service had Service Connect
#: enabled, so that an edit (or a lossy tool) that drops the configuration is refused, not run without it.
IMPORTED_SC_ANNOTATION = "serviceconnect.dev/ecs-service-connect"
DEPLOYMENT_CONTROLLER_MESSAGE = (
    "Service Connect supports only the ECS deployment controller; "
    "CODE_DEPLOY (blue/green) and EXTERNAL are not supported"
)

#: Rule id -> the rule in one line, as ECS states it. `scctl validate --rules` prints this table.
RULES: dict[str, str] = {
    "schema": "the object must match the ConnectService schema (field names and types of the ECS API)",
    "required": "a required ECS field is missing",
    "deployment-controller": DEPLOYMENT_CONTROLLER_MESSAGE,
    "standalone-task": STANDALONE_TASK_MESSAGE,
    "windows": "Service Connect does not support Windows containers",
    "task-memory-required": "Service Connect requires task-level memory in the task definition",
    "task-size": "task cpu and memory are ECS sizes: CPU units or vCPU, MiB or GB",
    "container-memory": "container memory limits are allowed only below the task memory (their sum)",
    "container-cpu": "the CPU reserved for all containers must not exceed the task cpu",
    "container-memory-reservation": "the memory reserved for all containers must not exceed the task memory",
    "bridge-hostname": "hostname is not supported for Service Connect tasks in bridge network mode",
    "links": "task definition links are not supported with Service Connect",
    "bridge-tls": "Service Connect TLS is not supported in bridge network mode",
    "tls-aws-pca": "awsPcaAuthorityArn is ECS only: name the CA with {}, secretName or issuerRef",
    "tls-issuer": "issuerCertificateAuthority names at most one CA (secretName or issuerRef; {} = the "
    "operator's)",
    "tls-one-issuer": "all TLS endpoints of a service use the same issuerCertificateAuthority",
    "tls-kms-key": "kmsKey is ECS only and refused: Secrets are encrypted by the API server's configuration",
    "tls-role-arn": "roleArn is ECS only and refused: no IAM role is involved",
    "network-mode": "Service Connect supports the awsvpc and bridge network modes, not host",
    "external-instances": "Service Connect does not support ECS Anywhere External instances "
    "(requiresCompatibilities EXTERNAL) or ECS Managed Instances",
    "awsvpc-host-port": "in awsvpc mode hostPort must be left out or equal the containerPort",
    "peer-duplicate": "a ConnectNamespace lists the same linked cluster twice in spec.peers",
    "peer-own-name": "a linked cluster named like this cluster (the operator's SC_CLUSTER_NAME)",
    "peer-gateway": "spec.peers[].gateway: required (an IP address and port) with network gateway, refused "
    "with flat",
    "imported-service-connect": "a service imported with Service Connect enabled must keep its "
    "serviceConnectConfiguration",
    "tcp-per-request-timeout": "perRequestTimeoutSeconds applies only to appProtocol http, http2 or grpc",
    "port-name": "portName and portMappings[].name: up to 64 characters of [a-z0-9_-], not starting with '-'",
    "port-name-unknown": "portName must match the name of a portMapping in the task definition",
    "port-name-duplicate": "a portName is served once per service; a portMapping name is used once per task",
    "discovery-name": "discoveryName: up to 64 characters of [a-z0-9_-], not starting with '-'",
    "dns-name": "dnsName: up to 127 characters of [a-z0-9_.-], not starting with '-', a valid DNS name",
    "namespace-name": "namespace names a ConnectNamespace: a Kubernetes object name, not a Cloud Map ARN",
    "port-range": "ports must be 1-65535 (the ECS agent refuses 0)",
    "timeout-range": "timeouts must be 0-2147483647 seconds (0 disables the timeout)",
    "client-alias": "each Service Connect service needs exactly one clientAlias, with a port",
    "task-quota": "a Service Connect service may run at most 1000 tasks (Cloud Map instances per service)",
    "access-log": "accessLogConfiguration requires logConfiguration",
    "discovery-name-duplicate": "discovery names must be unique within a namespace",
    "client-alias-duplicate": "each (dnsName, port) of a client alias must be unique within a namespace",
    "client-name-collision": "a discoveryName may not be another endpoint's dnsName (clients resolve both)",
    "one-namespace": "a service belongs to at most one namespace",
}


@dataclass(frozen=True)
class Violation:
    """One broken rule. ``str()`` gives ``field: [rule] message``, the form users see."""

    rule: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: [{self.rule}] {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "field": self.field, "message": self.message}
