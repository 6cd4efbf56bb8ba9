"""Service Connect for Kubernetes: the data plane (the injected sidecar proxy)."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # ``__version__`` on demand: importlib.metadata and the email package it loads cost 30-90 ms of every
    # proxy's start-up, and the proxy itself never asks.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("serviceconnect-k8s")
        except PackageNotFoundError:  # running from a source tree without an install
            return "0.0.0+source"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
