"""A new version's Init phase run ahead of its first invoke (`LocalSandbox.prepare`).

For a tenant with a spare confined ahead, the version's first worker starts from it
and imports the handler as the code is published; the first invoke finds it warm. What
must not change: the Init's log lines still reach the first invocation, an Init that
fails is still reported by the first invoke, one that outlasts the wait is not run
twice, and nothing is started for a tenant without a spare or a version that has
workers already.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.server import deploy, zip_files
from treadle.adapters.local.code import LocalCodeStore
from treadle.adapters.sandbox import LocalSandbox, SandboxFunction
from treadle.adapters.sandbox.confine import probe
from treadle.adapters.sandbox.sandbox import PREPARE_WAIT_S
from treadle.adapters.sandbox.spec import InvocationOutcome

ROOT = os.geteuid() == 0
pytestmark = [
    pytest.mark.skipif(not ROOT, reason="spares confined ahead need the platform to be root"),
    pytest.mark.skipif(
        ROOT and not probe()["mount_ns"], reason="no mount namespaces here (CAP_SYS_ADMIN?)"
    ),
]

TENANT = "111111111111"

QUICK = """
import os, time
IMPORTED = time.time()
print("init says hello", flush=True)
with open("/tmp/inits", "a") as f:
    f.write("x")

def handler(event, context):
    return {"imported": IMPORTED, "pid": os.getpid(), "inits": open("/tmp/inits").read()}
"""

SLOW = QUICK.replace("IMPORTED = time.time()", "time.sleep({sleep})\nIMPORTED = time.time()")

BROKEN = """
raise RuntimeError("init refuses")

def handler(event, context):
    return {}
"""


class Env:
    def __init__(self, sandbox: LocalSandbox, code: LocalCodeStore) -> None:
        self.sandbox = sandbox
        self.code = code

    def function(self, source: str, tenant: str = TENANT) -> SandboxFunction:
        key = self.code.put(zip_files({"handler.py": source}))
        return SandboxFunction(
            key=f"{tenant}/fn/1/{uuid.uuid4().hex}",
            code_dir=self.code.unpacked(key, tenant, group=self.sandbox.tenant_group(tenant)),
            handler="handler.handler",
            function_name="fn",
            function_version="1",
            invoked_function_arn=f"arn:aws:lambda:us-east-1:{tenant}:function:fn:1",
            memory_mb=256,
            timeout_s=30.0,
            environment={},
            log_group="/aws/lambda/fn",
            tenant=tenant,
        )

    def invoke(self, fn: SandboxFunction) -> InvocationOutcome:
        return self.sandbox.invoke(fn, b"{}", str(uuid.uuid4()))

    def result(self, fn: SandboxFunction) -> tuple[dict[str, Any], InvocationOutcome]:
        outcome = self.invoke(fn)
        assert outcome.error is None and outcome.payload is not None, outcome
        return json.loads(outcome.payload), outcome

    def warm_tenant(self, tenant: str = TENANT) -> None:
        """The tenant runs code once, so that a spare is confined for it ahead."""
        self.result(self.function(QUICK, tenant))
        deadline = time.monotonic() + 30
        while tenant not in self.sandbox.tenant_spares()[0]:
            assert time.monotonic() < deadline, "no spare was confined for the tenant"
            time.sleep(0.02)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data: Path = tmp_path_factory.mktemp("init-ahead") / "data"
    data.mkdir()
    sandbox = LocalSandbox(work_dir=data / "sandbox")
    sandbox.start()
    try:
        yield Env(sandbox, LocalCodeStore(data / "code"))
    finally:
        sandbox.close()


def test_a_prepared_versions_first_invoke_finds_its_init_done(env: Env) -> None:
    env.warm_tenant()
    fn = env.function(QUICK)
    served = env.sandbox.tenant_spares()[1]
    assert env.sandbox.prepare(fn)
    assert env.sandbox.tenant_spares()[1] == served + 1  # from the tenant's spare
    before_invoke = time.time()
    got, outcome = env.result(fn)
    assert got["imported"] < before_invoke  # imported at prepare, not at the invoke
    assert got["inits"] == "x"
    # As after a cold start: the Init's lines and its duration go to the first invocation.
    assert "init says hello" in outcome.logs
    assert outcome.init_ms is not None and outcome.init_ms > 0
    again, second = env.result(fn)
    assert again["pid"] == got["pid"] and second.init_ms is None
    assert "init says hello" not in second.logs


def test_an_init_that_fails_ahead_is_reported_by_the_first_invoke(env: Env) -> None:
    env.warm_tenant()
    unprepared = env.invoke(env.function(BROKEN))
    assert unprepared.error is not None
    env.warm_tenant()
    fn = env.function(BROKEN)
    assert not env.sandbox.prepare(fn)
    outcome = env.invoke(fn)
    assert outcome.error == unprepared.error
    assert any("init refuses" in line for line in outcome.logs)


def test_an_init_longer_than_the_wait_runs_once_and_the_first_invoke_waits_for_it(
    env: Env,
) -> None:
    env.warm_tenant()
    sleep = PREPARE_WAIT_S + 0.7
    fn = env.function(SLOW.replace("{sleep}", str(sleep)))
    t0 = time.monotonic()
    assert env.sandbox.prepare(fn)  # started, still initialising when it returns
    assert time.monotonic() - t0 < sleep
    got, outcome = env.result(fn)
    assert got["inits"] == "x"  # the invoke took the worker that was initialising
    assert outcome.init_ms is not None and outcome.init_ms >= sleep * 1000
    assert "init says hello" in outcome.logs


def test_nothing_is_prepared_for_a_tenant_without_a_spare(env: Env) -> None:
    fn = env.function(QUICK, tenant="333333333333")  # has never run code here
    assert not env.sandbox.prepare(fn)
    before_invoke = time.time()
    got, _ = env.result(fn)
    assert got["imported"] >= before_invoke  # a cold start, at the invoke


def test_a_version_with_workers_is_not_prepared_again(env: Env) -> None:
    env.warm_tenant()
    fn = env.function(QUICK)
    first, _ = env.result(fn)
    env.warm_tenant()
    assert not env.sandbox.prepare(fn)
    again, _ = env.result(fn)
    assert again["pid"] == first["pid"] and again["inits"] == "x"


def _imported_before_invoke(lam: Any, name: str, **qualifier: str) -> bool:
    before_invoke = time.time()
    resp = lam.invoke(FunctionName=name, Payload=b"{}", **qualifier)
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, body
    return bool(body["imported"] < before_invoke)


def test_created_and_published_versions_are_initialised_ahead_through_the_api(lam: Any) -> None:
    deploy(lam, "warm-up", {"handler.py": QUICK}, durable=False)
    assert not _imported_before_invoke(lam, "warm-up")  # the tenant's first code: cold

    # The tenant's spare is confined in the background, after each take: a busy machine
    # may need a few tries before a create or a publish finds one.
    def created(attempt: int) -> bool:
        deploy(lam, f"ahead-{attempt}", {"handler.py": QUICK}, durable=False)
        return _imported_before_invoke(lam, f"ahead-{attempt}")

    def published(attempt: int) -> bool:
        deploy(lam, f"published-{attempt}", {"handler.py": QUICK}, durable=False)
        time.sleep(0.3)
        version = lam.publish_version(FunctionName=f"published-{attempt}")["Version"]
        return _imported_before_invoke(lam, f"published-{attempt}", Qualifier=version)

    for ahead in (created, published):
        for attempt in range(10):
            time.sleep(0.3)
            if ahead(attempt):
                break
        else:
            pytest.fail(f"no version was initialised ahead ({ahead.__name__})")
