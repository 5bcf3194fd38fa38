"""The lifecycles in statemachine/*.json are well-formed and are what the engine enforces."""

from __future__ import annotations

import json
from importlib.resources import files
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


def test_packaged_lifecycles_are_the_top_level_ones() -> None:
    # statemachine/ is the source of truth; the package ships a copy (package data) so
    # an installed wheel or a Lambda bundle needs no checkout.
    packaged = files("treadle.domain") / "statemachine"
    shipped = sorted(p.name for p in packaged.iterdir() if p.name.endswith(".json"))
    assert shipped == sorted(p.name for p in ROOT.glob("*.json"))
    for name in shipped:
        assert (packaged / name).read_bytes() == (ROOT / name).read_bytes(), (
            f"copy statemachine/{name} to functions/treadle/domain/statemachine/"
        )


def test_the_environment_variable_still_points_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = json.loads((ROOT / "execution.json").read_text())
    data["states"] = [*data["states"], "EXTRA"]
    (tmp_path / "execution.json").write_text(json.dumps(data))
    monkeypatch.setenv("TREADLE_STATEMACHINE_DIR", str(tmp_path))
    assert "EXTRA" in _default_dir_lifecycle()
    monkeypatch.delenv("TREADLE_STATEMACHINE_DIR")
    assert "EXTRA" not in _default_dir_lifecycle()


def _default_dir_lifecycle() -> frozenset[str]:
    # Uncached: the public functions cache the lifecycle of the default directory.
    return execution_lifecycle.__wrapped__().states


def test_lifecycle_document_is_current() -> None:
    from tools.lifecycle_docs import DOC, render

    assert DOC.read_text() == render(), "run: python -m tools.lifecycle_docs"
