"""Every platform function traces actively (X-Ray) and its role may write the traces."""

from __future__ import annotations

from typing import Any

import pytest
from cfn_helpers import actions, function_by_name, role_of, statements_of_role
from qa_stack import API, ORCHESTRATOR, SWEEP

pytestmark = pytest.mark.xdist_group("infra")


@pytest.mark.parametrize("name", [API, ORCHESTRATOR, SWEEP])
def test_platform_function_has_active_tracing_and_the_xray_grant(
    template: dict[str, Any], name: str
) -> None:
    _, function = function_by_name(template, name)
    assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}
    granted = actions(statements_of_role(template, role_of(function)))
    assert {"xray:PutTraceSegments", "xray:PutTelemetryRecords"} <= granted
