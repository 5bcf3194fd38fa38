"""The official conformance requirements, run by the package's own validator (see
`harness.py`): every suite, against embedded servers by default.

Options (environment): TREADLE_CONFORMANCE_SUITES (comma-separated; default all),
TREADLE_CONFORMANCE_BACKEND (`embedded` or `aws`: `treadle dev --backend aws` on a moto
server), TREADLE_CONFORMANCE_WAIT_SCALE, TREADLE_CONFORMANCE_HANDLERS.
`test_conformance_aws.py` runs the step, wait and callback suites on the AWS backend in
every run of the suite.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from harness import ALL_SUITES, TEST_TIMEOUT_S, ConformanceRun, conformance_run, requirements

SUITES = os.environ.get("TREADLE_CONFORMANCE_SUITES", ALL_SUITES).split(",")
BACKEND = os.environ.get("TREADLE_CONFORMANCE_BACKEND", "embedded")
REQUIREMENTS = requirements(SUITES)


@pytest.fixture(scope="module")
def conformance() -> Iterator[ConformanceRun]:
    with conformance_run(SUITES, BACKEND) as run:
        yield run


# Each test waits on requirements that all run concurrently from the first test on, so
# its time includes others' (and the fixture's): the default per-test limit is too tight.
@pytest.mark.timeout(TEST_TIMEOUT_S)
@pytest.mark.xdist_group("conformance")
@pytest.mark.parametrize(
    ("suite", "rid"), [(s, r) for s, r, _ in REQUIREMENTS], ids=[r for _, r, _ in REQUIREMENTS]
)
def test_requirement(conformance: ConformanceRun, suite: str, rid: str) -> None:
    conformance.check(rid)
