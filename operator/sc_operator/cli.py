"""``scctl``: the command-line tool of Service Connect for Kubernetes.

- ``scctl version``
- ``scctl crds``: every CRD as one multi-document YAML stream (``scctl crds | kubectl apply -f -``)
- ``scctl validate -f FILE``: the operator's validation rules on ConnectService YAML/JSON, offline;
  exit 1 when anything is refused (``-f -`` reads stdin; ``--rules`` lists the rules)
- ``scctl import-ecs --service create-service.json --task-definition task-def.json [--cluster c.json]``:
  ECS JSON in (input or output forms), ConnectService (and Namespace, ConnectNamespace) YAML out
- ``scctl redeploy NAMESPACE/SERVICE``: a new deployment pinning the namespace's current endpoints
  (ECS ``update-service --force-new-deployment``; see :mod:`sc_operator.cli_redeploy`)
- ``scctl link NS --peer-name a --peer-kubeconfig FILE --cluster-name b`` / ``scctl unlink``: share a
  ConnectNamespace with another cluster (:mod:`sc_operator.cli_link`)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from sc_operator import API_VERSION, __version__, cli_link, cli_redeploy
from sc_operator.api.common import ServiceRef
from sc_operator.api.service import ConnectServiceSpec
from sc_operator.crdgen import multi_document_yaml
from sc_operator.ecsimport import EcsImportError, import_documents
from sc_operator.validation import (
    RULES,
    Violation,
    imported_service_connect,
    parse_and_validate,
    validate_namespace,
    validate_service,
    validate_together,
)

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


class InputError(Exception):
    """A file cannot be read or parsed; the message names the file."""


def _read(path: str, stdin: TextIO) -> str:
    if path == "-":
        return stdin.read()
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _documents(path: str, stdin: TextIO) -> Iterator[Any]:
    text = _read(path, stdin)
    try:
        # JSON is YAML, so one loader reads both; a JSON list of objects counts as several documents.
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, list):
                yield from doc
            elif isinstance(doc, dict) and doc.get("kind") == "List":
                yield from doc.get("items") or []
            elif doc is not None:
                yield doc
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not YAML or JSON: {exc}") from exc


def _expand(paths: Sequence[str]) -> list[str]:
    """Files as given; a directory stands for its *.yaml, *.yml and *.json files (like kubectl -f DIR)."""
    expanded: list[str] = []
    for path in paths:
        if path != "-" and Path(path).is_dir():
            expanded.extend(
                str(p) for p in sorted(Path(path).iterdir()) if p.suffix in (".yaml", ".yml", ".json")
            )
        else:
            expanded.append(path)
    return expanded


def _name(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    name = meta.get("name", "<unnamed>")
    return f"{meta['namespace']}/{name}" if meta.get("namespace") else str(name)


@dataclass
class Checked:
    """One of our objects from the input, and what is wrong with it."""

    label: str
    violations: list[Violation]
    registration: tuple[ServiceRef, str, ConnectServiceSpec] | None = None
    """(owner, ConnectNamespace, spec) of a service whose own rules passed and that names its namespace."""


def validate_document(doc: Any) -> Checked | None:
    """The checked object; None for documents of other kinds (Namespaces, ConfigMaps, …)."""
    if not isinstance(doc, dict):
        return Checked("document", [Violation("schema", "(document)", "expected a mapping (an object)")])
    kind = doc.get("kind")
    if kind not in ("ConnectService", "ConnectNamespace"):
        return None
    checked = Checked(f"{kind} {_name(doc)}", [])
    if doc.get("apiVersion") != API_VERSION:
        checked.violations.append(
            Violation("schema", "apiVersion", f"must be {API_VERSION}; got {doc.get('apiVersion')!r}")
        )
    if kind == "ConnectNamespace":
        checked.violations.extend(validate_namespace(doc))
        return checked
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        checked.violations.extend(validate_service(doc))
        return checked
    model, violations = parse_and_validate(spec)
    checked.violations.extend(imported_service_connect(doc))
    checked.violations.extend(violations)
    config = model.service_connect_configuration if model else None
    if model is not None and not violations and config is not None and config.namespace:
        meta = doc.get("metadata") or {}
        owner = ServiceRef(namespace=str(meta.get("namespace") or "default"), name=str(meta.get("name")))
        checked.registration = (owner, config.namespace, model)
    return checked


def check_documents(docs: Sequence[tuple[str, Any]]) -> list[tuple[str, Checked]]:
    """(file, checked object) for every object of ours, the cross-object rules applied across files.

    Services that leave ``namespace`` to the Kubernetes namespace's label are checked alone: which
    ConnectNamespace they join is only known in the cluster.
    """
    results = [(path, checked) for path, doc in docs if (checked := validate_document(doc)) is not None]
    together = validate_together([c.registration for _, c in results if c.registration is not None])
    for _, checked in results:
        if checked.registration is not None:
            checked.violations.extend(together.get(checked.registration[0], []))
    return results


def cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    if args.rules:
        width = max(len(rule) for rule in RULES)
        for rule, text in RULES.items():
            out.write(f"{rule:<{width}}  {text}\n")
        return EXIT_OK
    if not args.filename:
        err.write("scctl validate: give at least one -f FILE (or -f - for stdin)\n")
        return EXIT_USAGE
    docs: list[tuple[str, Any]] = []
    for path in _expand(args.filename):
        try:
            docs.extend((path, doc) for doc in _documents(path, stdin))
        except InputError as exc:
            err.write(f"scctl validate: {exc}\n")
            return EXIT_USAGE
    results = check_documents(docs)
    if not results:
        err.write("scctl validate: no ConnectService or ConnectNamespace found\n")
        return EXIT_USAGE
    if args.output == "json":
        report = [
            {"file": path, "object": c.label, "violations": [v.as_dict() for v in c.violations]}
            for path, c in results
        ]
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        for path, c in results:
            out.write(f"{path}: {c.label}: {'refused' if c.violations else 'ok'}\n")
            out.writelines(f"  {violation}\n" for violation in c.violations)
    return EXIT_REFUSED if any(c.violations for _, c in results) else EXIT_OK


def _json(path: str | None, stdin: TextIO) -> Any:
    if path is None:
        return None
    try:
        return json.loads(_read(path, stdin))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON: {exc}") from exc


def cmd_import_ecs(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    if not (args.service or args.cluster or args.cloud_map_namespace):
        err.write("scctl import-ecs: give --service, --cluster or --cloud-map-namespace\n")
        return EXIT_USAGE
    try:
        result = import_documents(
            service=_json(args.service, stdin),
            task_definition=_json(args.task_definition, stdin),
            cluster=_json(args.cluster, stdin),
            cloud_map_namespaces=[_json(path, stdin) for path in args.cloud_map_namespace],
            name=args.name,
            namespace=args.namespace,
            namespace_name=args.namespace_name,
        )
    except (InputError, EcsImportError) as exc:
        err.write(f"scctl import-ecs: {exc}\n")
        return EXIT_USAGE
    if len(result.objects) == 1:
        out.write(yaml.safe_dump(result.objects[0], sort_keys=False, width=110))
    else:
        out.write(yaml.safe_dump_all(result.objects, sort_keys=False, width=110))
    for path in result.dropped:
        err.write(f"note: dropped {path} (no meaning on Kubernetes)\n")
    for warning in result.warnings:
        err.write(f"warning: {warning}\n")
    # The conversion is faithful; what ECS would refuse, the operator refuses too, so say it now.
    for obj in result.objects:
        checked = validate_document(obj)
        for violation in checked.violations if checked else []:
            err.write(f"warning: {violation}\n")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scctl", description="Service Connect for Kubernetes")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("version", help="print the version")
    sub.add_parser("crds", help="print the CRDs as multi-document YAML (pipe into kubectl apply -f -)")
    validate = sub.add_parser("validate", help="check ConnectService objects against the operator's rules")
    validate.add_argument(
        "-f",
        "--filename",
        action="append",
        default=[],
        help="YAML or JSON file, directory, or '-' for stdin (repeatable)",
    )
    validate.add_argument("-o", "--output", choices=("text", "json"), default="text")
    validate.add_argument("--rules", action="store_true", help="list the rules and exit")
    imp = sub.add_parser(
        "import-ecs",
        help="convert ECS JSON (service, task definition, cluster, Cloud Map namespace) to YAML",
        description="Convert ECS JSON, input or output forms, to our objects (multi-document YAML when "
        "there are several). Dropped fields are noted on stderr; what changes behaviour is a warning.",
    )
    imp.add_argument(
        "--service",
        help="create-service input, or create-service/describe-services output, JSON ('-' for stdin); "
        "in the output forms Service Connect is read from the PRIMARY deployment",
    )
    imp.add_argument(
        "--task-definition",
        help="register-task-definition input JSON (or its describe-task-definition output)",
    )
    imp.add_argument(
        "--cluster",
        help="create-cluster input or output, or describe-clusters output: serviceConnectDefaults becomes "
        "a ConnectNamespace and the Namespace label that makes it the default",
    )
    imp.add_argument(
        "--cloud-map-namespace",
        action="append",
        default=[],
        metavar="FILE",
        help="aws servicediscovery get-namespace output: a ConnectNamespace, and the name for its ARN "
        "(repeatable)",
    )
    imp.add_argument(
        "--namespace-name",
        help="the Cloud Map namespace name for a namespace ARN (an ARN carries the id, not the name)",
    )
    imp.add_argument("--name", help="metadata.name (default: serviceName)")
    imp.add_argument(
        "--namespace",
        help="metadata.namespace (default: the cluster's name with --cluster, else none)",
    )
    cli_redeploy.add_parser(sub)
    cli_link.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, stdin: TextIO | None = None) -> int:
    """Entry point of the ``scctl`` console script."""
    args = build_parser().parse_args(argv)
    out, err, inp = sys.stdout, sys.stderr, stdin or sys.stdin
    if args.command == "version":
        out.write(f"scctl {__version__} ({API_VERSION})\n")
        return EXIT_OK
    if args.command == "crds":
        out.write(multi_document_yaml())
        return EXIT_OK
    if args.command == "validate":
        return cmd_validate(args, out, err, inp)
    if args.command == "redeploy":
        return cli_redeploy.run(args, out, err)
    if args.command in ("link", "unlink"):
        return cli_link.run(args, out, err)
    return cmd_import_ecs(args, out, err, inp)


if __name__ == "__main__":
    raise SystemExit(main())
