"""Service Connect for Kubernetes: the control plane (kopf operator)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("serviceconnect-k8s")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"

GROUP = "serviceconnect.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
