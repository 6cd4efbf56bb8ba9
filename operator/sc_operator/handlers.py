"""The kopf handlers of the operator (loaded by ``sc-operator`` as ``kopf run -m sc_operator.handlers``).

For now only the operator-wide settings; the reconcile handlers are registered here as they are built.
"""

from __future__ import annotations

from typing import Any

import kopf

from sc_operator import GROUP


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Keep kopf's bookkeeping under our own domain and out of ``.status``.

    The CRDs' structural schemas prune unknown status fields, so kopf's default ``status.kopf`` progress
    would be dropped by the API server; annotations survive.
    """
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
