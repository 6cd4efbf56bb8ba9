"""Read the shape of the models: which wire name is which field, which fields nest a model.

Used where raw dicts are walked beside the models (ECS import keeps known fields; validation finds
explicit nulls).
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo


def fields_by_alias(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """camelCase wire name -> field."""
    return {(info.alias or name): info for name, info in model.model_fields.items()}


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``X``, ``X | None``, ``list[X]`` or ``Annotated[X, ...]``, if any.

    Free-form maps (``dict[str, str]``) never count: their keys are data, not fields.
    """
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = nested_model(arg)
            if found is not None:
                return found
    return None
