"""Read and update a stage of .chalice/config.json: its bucket and its functions' layers."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def load(path: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(path.read_text())
    return config


def save(path: Path, config: Mapping[str, Any]) -> None:
    """Written as the file is kept: two-space indents, a final newline."""
    path.write_text(json.dumps(config, indent=2) + "\n")


def stage_environment(config: Mapping[str, Any], stage: str) -> dict[str, str]:
    """The stage's environment variables, as Chalice merges them (the stage's win)."""
    stages = config.get("stages", {})
    if stage not in stages:
        raise KeyError(f"no stage {stage!r} in .chalice/config.json (stages: {sorted(stages)})")
    return {
        **config.get("environment_variables", {}),
        **stages[stage].get("environment_variables", {}),
    }


def with_layers(
    config: Mapping[str, Any],
    stage: str,
    arns: Mapping[str, str],
    default_layers: Sequence[str],
    function_layers: Mapping[str, Sequence[str]],
) -> dict[str, Any]:
    """`config` with the stage's layers set: `default_layers` for the stage, which every
    function without its own setting gets, and `function_layers` per function (Chalice's
    ``layers`` setting, looked up function first, then stage)."""
    updated = copy.deepcopy(dict(config))
    settings = updated["stages"][stage]
    settings["layers"] = [arns[kind] for kind in default_layers]
    functions = settings.setdefault("lambda_functions", {})
    for function, kinds in function_layers.items():
        functions.setdefault(function, {})["layers"] = [arns[kind] for kind in kinds]
    return updated


def without_layers(config: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """`config` with the stage's layer settings removed (after the layers are deleted)."""
    updated = copy.deepcopy(dict(config))
    settings = updated["stages"][stage]
    settings.pop("layers", None)
    functions = settings.get("lambda_functions", {})
    for name in list(functions):
        functions[name].pop("layers", None)
        if not functions[name]:
            del functions[name]
    if not functions:
        settings.pop("lambda_functions", None)
    return updated
