"""Read and update a stage of .chalice/config.json: its bucket, its functions' layers, and
what alerting `make deploy` makes for it."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class AlertSettings:
    """A stage's ``mlops_alerts`` (Chalice ignores keys it does not know)."""

    verdict_alarm: bool = True  # the example alarm on every model's verdict
    email: str = ""  # where every decision goes, through an SNS topic; empty: nowhere


def alert_settings(config: Mapping[str, Any], stage: str) -> AlertSettings:
    """The stage's alerting settings; KeyError naming the setting that is not as documented."""
    stage_environment(config, stage)  # KeyError for a stage that does not exist
    given = config["stages"][stage].get("mlops_alerts", {})
    if not isinstance(given, dict):
        given = {"not an object": given}
    wrong = [
        name
        for name, kind in (("verdict_alarm", bool), ("email", str))
        if name in given and not isinstance(given[name], kind)
    ]
    unknown = sorted(set(given) - {"verdict_alarm", "email"})
    if wrong or unknown or (given.get("email") and "@" not in given["email"]):
        raise KeyError(
            f"stage {stage!r}: mlops_alerts is {given!r}; it takes verdict_alarm (true or "
            'false) and email (an address, or "")'
        )
    return AlertSettings(**given)


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
