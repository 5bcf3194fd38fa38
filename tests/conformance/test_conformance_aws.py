"""The step, wait and callback conformance suites on the AWS backend: `treadle dev
--backend aws` over a moto server (DynamoDB store, S3 code and Git packs, timers through
SQS and the sweep, tenant code in the local sandbox behind Lambda's control plane).

TREADLE_CONFORMANCE_AWS_SUITES changes the suites (comma-separated).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from harness import TEST_TIMEOUT_S, ConformanceRun, conformance_run, requirements

SUITES = os.environ.get("TREADLE_CONFORMANCE_AWS_SUITES", "step,wait,callback").split(",")
REQUIREMENTS = requirements(SUITES)


@pytest.fixture(scope="module")
def conformance_aws() -> Iterator[ConformanceRun]:
    with conformance_run(SUITES, "aws") as run:
        yield run


# Its own group: it runs beside the embedded conformance run, on another worker.
@pytest.mark.timeout(TEST_TIMEOUT_S)
@pytest.mark.xdist_group("conformance-aws")
@pytest.mark.parametrize(
    ("suite", "rid"), [(s, r) for s, r, _ in REQUIREMENTS], ids=[r for _, r, _ in REQUIREMENTS]
)
def test_requirement_on_aws(conformance_aws: ConformanceRun, suite: str, rid: str) -> None:
    conformance_aws.check(rid)
