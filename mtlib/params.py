"""params.yaml → plain dicts and typed configs. The schema of each section lives with the code
that uses it (a dataclass there); this module only loads and checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: params file not found")
    with open(path) as f:
        return yaml.safe_load(f) or {}


def section(params: dict[str, Any], dotted: str) -> dict[str, Any]:
    """params["a"]["b"] for "a.b", with an error naming the missing key."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"params.yaml: missing section '{dotted}'")
        node = node[part]
    return node


def config_from(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Build dataclass `cls` from a params section; unknown keys are an error naming them."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise KeyError(f"params.yaml: unknown key(s) in '{where}': {', '.join(unknown)}")
    return cls(**values)
