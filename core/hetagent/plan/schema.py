"""JSON Schema validation of problems, fleets and plans, with errors that name the file and the field.

The schemas (`hetagent/plan/schemas/*.schema.json`) are the machine-readable half of `spec/plan-format.md`.
`jsonschema` is imported on first use: `import hetagent` stays light.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from hetagent.errors import HetagentError

SCHEMAS = ("problem", "fleet", "plan")


@cache
def schema(name: str) -> dict[str, Any]:
    return json.loads(resources.files("hetagent.plan").joinpath(f"schemas/{name}.schema.json").read_text())


@cache
def _validator(name: str):
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    # problem.schema.json refers to fleet.schema.json by relative $ref: resolve it from the package, not the web
    registry = Registry().with_resources(
        (schema(other)["$id"], Resource.from_contents(schema(other))) for other in SCHEMAS
    )
    return Draft202012Validator(schema(name), registry=registry)


def validate(data: Any, name: str, origin: str) -> None:
    """Raise `HetagentError` listing every place `data` breaks schema `name`, each as a dotted field path."""
    errors = sorted(_validator(name).iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return
    lines = [f"{_path(e)}: {_message(e)}" for e in errors[:8]]
    more = f" (and {len(errors) - 8} more)" if len(errors) > 8 else ""
    raise HetagentError(f"{origin}: not a valid {name} (spec/plan-format.md): " + "; ".join(lines) + more)


def _path(error) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _message(error) -> str:
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return f"{error.message}; valid fields: {', '.join(allowed)}" if allowed else error.message
    if error.validator == "dependentRequired":  # message: "'x' is a dependency of 'y'"
        return (f"{error.message}: a plan written by `hetagent plan` has `format` and every figure "
                f"({', '.join(error.schema['dependentRequired']['format'])}); a hand-written one has only "
                "`placements` and `default`")
    if error.validator == "oneOf" and error.schema is schema("problem"):
        return "give either `agent` (an IR file) or `tasks` (the profiled formulation), not both"
    return error.message
