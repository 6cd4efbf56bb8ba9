"""``sc-operator``: run the operator, i.e. ``kopf run -m sc_operator.handlers`` with the user's options.

Every option of ``kopf run`` works unchanged (``--all-namespaces``/``-A``, ``--namespace``/``-n``,
``--standalone``, ``--verbose``, ``--debug``, ``--quiet``, ``--liveness``, ``--peering``, ``--priority``,
``--dev``); kopf finds the cluster through KUBECONFIG or the in-cluster service account.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

HANDLERS = "sc_operator.handlers"


def kopf_args(argv: Sequence[str]) -> list[str]:
    """The ``kopf`` command line for our arguments (a leading ``run`` is tolerated)."""
    args = list(argv)
    if args[:1] == ["run"]:
        args = args[1:]
    return ["run", "-m", HANDLERS, *args]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sc-operator`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["version"]):
        from sc_operator import __version__

        print(f"sc-operator {__version__}")
        return 0
    # Imported here so `sc-operator --version` works without a cluster library import cost.
    import kopf.cli

    try:
        kopf.cli.main(args=kopf_args(args), prog_name="sc-operator", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
