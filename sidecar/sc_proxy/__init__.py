"""Service Connect for Kubernetes: the data plane (the injected sidecar proxy)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("serviceconnect-k8s")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
