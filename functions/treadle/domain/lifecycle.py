"""Execution and operation lifecycles, loaded from `statemachine/*.json`.

The JSON files are the single source of truth: the engine asks them for the target
state of every change and refuses transitions they do not list.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from treadle.domain.errors import InvalidParameter

# The package carries its own copy of the top-level `statemachine/` (package data, kept
# identical by a test), so an installed wheel or a Lambda bundle finds it without the
# checkout; TREADLE_STATEMACHINE_DIR still points elsewhere when set.
_ENV_DIR = "TREADLE_STATEMACHINE_DIR"


def _default_dir() -> Traversable:
    override = os.environ.get(_ENV_DIR)
    if override:
        return Path(override)
    return files("treadle.domain") / "statemachine"


@dataclass(frozen=True)
class Lifecycle:
    states: frozenset[str]
    transitions: dict[tuple[str | None, str], str]

    def target(self, current: str | None, trigger: str) -> str | None:
        return self.transitions.get((current, trigger))


def _parse(spec: dict[str, object]) -> Lifecycle:
    states = frozenset(str(s) for s in spec["states"])  # type: ignore[attr-defined]
    table: dict[tuple[str | None, str], str] = {}
    for t in spec["transitions"]:  # type: ignore[attr-defined]
        key = (t["from"], t["trigger"])
        if key in table:
            raise ValueError(f"ambiguous transition {key} in lifecycle")
        if t["to"] not in states or (t["from"] is not None and t["from"] not in states):
            raise ValueError(f"transition {t} names an unknown state")
        table[key] = t["to"]
    return Lifecycle(states=states, transitions=table)


@cache
def execution_lifecycle(directory: Path | None = None) -> Lifecycle:
    path = (directory or _default_dir()) / "execution.json"
    return _parse(json.loads(path.read_text(encoding="utf-8")))


@cache
def operation_lifecycles(directory: Path | None = None) -> dict[str, Lifecycle]:
    path = (directory or _default_dir()) / "operation.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    return {name: _parse(spec) for name, spec in data["types"].items()}


def next_operation_status(op_type: str, current: str | None, trigger: str) -> str:
    """Target status of an operation change, or InvalidParameter if not allowed."""
    target = operation_lifecycles()[op_type].target(current, trigger)
    if target is None:
        state = current or "new"
        raise InvalidParameter(
            f"Invalid transition for {op_type} operation: {trigger} from {state}."
        )
    return target


def next_execution_status(current: str | None, trigger: str) -> str:
    target = execution_lifecycle().target(current, trigger)
    if target is None:
        raise InvalidParameter(f"Invalid execution transition: {trigger} from {current}.")
    return target
