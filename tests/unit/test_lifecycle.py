"""The lifecycles in statemachine/*.json are well-formed and are what the engine enforces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from treadle.domain.errors import InvalidParameter
from treadle.domain.lifecycle import (
    execution_lifecycle,
    next_execution_status,
    next_operation_status,
    operation_lifecycles,
)
from treadle.domain.models import ExecutionStatus, OperationStatus, OperationType

ROOT = Path(__file__).resolve().parents[2] / "statemachine"


def test_every_state_is_a_wire_status() -> None:
    assert execution_lifecycle().states <= {s.value for s in ExecutionStatus}
    lifecycles = operation_lifecycles()
    assert set(lifecycles) == {t.value for t in OperationType}
    for lc in lifecycles.values():
        assert lc.states <= {s.value for s in OperationStatus}


def test_every_listed_transition_is_allowed_and_nothing_else() -> None:
    data = json.loads((ROOT / "operation.json").read_text())
    triggers = {t["trigger"] for spec in data["types"].values() for t in spec["transitions"]}
    for op_type, spec in data["types"].items():
        allowed = {(t["from"], t["trigger"]): t["to"] for t in spec["transitions"]}
        for current in [None, *spec["states"]]:
            for trigger in triggers:
                if (current, trigger) in allowed:
                    assert (
                        next_operation_status(op_type, current, trigger)
                        == allowed[(current, trigger)]
                    )
                else:
                    with pytest.raises(InvalidParameter):
                        next_operation_status(op_type, current, trigger)


def test_terminal_execution_states_have_no_way_out() -> None:
    data = json.loads((ROOT / "execution.json").read_text())
    for terminal in data["terminal"]:
        for trigger in {t["trigger"] for t in data["transitions"]}:
            with pytest.raises(InvalidParameter):
                next_execution_status(terminal, trigger)
    assert next_execution_status("RUNNING", "pause") == "PAUSED"


def test_lifecycle_document_is_current() -> None:
    from treadle.lifecycle_docs import DOC, render

    assert DOC.read_text() == render(), "run: python -m treadle.lifecycle_docs"
