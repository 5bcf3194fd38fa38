"""Events by type and batch starts at the engine, on both stores (SQLite, DynamoDB).

Events are sent before, during and after a wait.

Each test's 'handler' checkpoints the way `treadle_workflows.wait_for_event` makes the
SDK do it: a CALLBACK START with SubType `Event` and Name `event:<type>`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.engine_harness import Harness, harness_on
from treadle.domain.engine import events
from treadle.domain.errors import (
    EventBufferFull,
    ExecutionAlreadyStarted,
    ExecutionClosed,
    InvalidParameter,
    PayloadTooLarge,
)


@pytest.fixture(params=["sqlite", "dynamodb"])
def h(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    with harness_on(request.param, tmp_path, monkeypatch, "events-test") as harness:
        yield harness


def wait_update(op_id: str, event_type: str, timeout_s: int = 0) -> dict[str, Any]:
    update: dict[str, Any] = {
        "Id": op_id,
        "Type": "CALLBACK",
        "SubType": events.EVENT_SUBTYPE,
        "Name": events.EVENT_NAME_PREFIX + event_type,
        "Action": "START",
    }
    if timeout_s:
        update["CallbackOptions"] = {"TimeoutSeconds": timeout_s}
    return update


def ops_of(env: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["Id"]: op for op in env["InitialExecutionState"]["Operations"]}


def test_an_event_sent_before_the_wait_completes_it_in_the_same_checkpoint(h: Harness) -> None:
    seen: dict[str, Any] = {}

    def waits(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        res = hh.checkpoint(env, [wait_update("w1", "approval")])
        (op,) = [o for o in res.Operations if o.Id == "w1"]
        seen["status"], seen["result"] = op.Status.value, op.CallbackDetails.Result
        return {"Status": "SUCCEEDED", "Result": op.CallbackDetails.Result}

    ex, _ = h.engine.start(h.fn, "early", None)
    assert h.engine.send_event(ex.arn, "approval", '{"ok": true}') == "buffered"
    assert [e.type for e in h.store.get(ex.arn).event_buffer] == ["approval"]
    h.runtime.scripts.append(waits)
    h.pump()
    assert seen == {"status": "SUCCEEDED", "result": '{"ok": true}'}
    final = h.store.get(ex.arn)
    assert final.status.value == "SUCCEEDED" and final.event_buffer == []
    assert h.history(ex.arn)[1:3] == ["CallbackStarted", "CallbackSucceeded"]


def test_an_event_sent_while_the_wait_is_open_completes_it_at_once(h: Harness) -> None:
    def waits(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        res = hh.checkpoint(env, [wait_update("w1", "approval")])
        assert [o.Status.value for o in res.Operations if o.Id == "w1"] == ["STARTED"]
        return {"Status": "PENDING"}

    def resumed(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        op = ops_of(env)["w1"]
        assert op["Status"] == "SUCCEEDED"
        return {"Status": "SUCCEEDED", "Result": op["CallbackDetails"]["Result"]}

    h.runtime.scripts += [waits, resumed]
    ex, _ = h.engine.start(h.fn, "during", None)
    h.pump()
    assert h.engine.send_event(ex.arn, "approval", '"yes"') == "delivered"
    h.pump()
    final = h.store.get(ex.arn)
    assert final.status.value == "SUCCEEDED" and final.result == '"yes"'
    assert final.event_buffer == []


def test_an_event_for_a_closed_execution_is_refused(h: Harness) -> None:
    h.runtime.scripts.append(lambda env, hh: {"Status": "SUCCEEDED", "Result": "1"})
    ex, _ = h.engine.start(h.fn, "done", None)
    h.pump()
    with pytest.raises(ExecutionClosed):
        h.engine.send_event(ex.arn, "approval", "1")


def test_events_of_a_type_are_taken_in_order_and_other_types_wait(h: Harness) -> None:
    results: list[str | None] = []

    def waits(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        res = hh.checkpoint(env, [wait_update("w1", "a"), wait_update("w2", "a")])
        results.extend(o.CallbackDetails.Result for o in res.Operations if o.CallbackDetails)
        return {"Status": "SUCCEEDED", "Result": "null"}

    ex, _ = h.engine.start(h.fn, "fifo", None)
    for event_type, payload in [("a", "1"), ("b", "2"), ("a", "3"), ("a", "4")]:
        h.engine.send_event(ex.arn, event_type, payload)
    h.runtime.scripts.append(waits)
    # Only the first invocation: the execution closes, the rest of the buffer with it.
    h.pump()
    assert results == ["1", "3"]


def test_two_open_waits_of_one_type_are_completed_oldest_first(h: Harness) -> None:
    def waits(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        hh.checkpoint(env, [wait_update("w1", "a"), wait_update("w2", "a")])
        return {"Status": "PENDING"}

    h.runtime.scripts.append(waits)
    ex, _ = h.engine.start(h.fn, "two", None)
    h.pump()
    h.runtime.scripts.append(lambda env, hh: {"Status": "PENDING"})
    h.engine.send_event(ex.arn, "a", '"first"')
    h.pump()
    ops = h.store.load(ex.arn).operations
    assert ops["w1"].op.CallbackDetails.Result == '"first"'  # type: ignore[union-attr]
    assert ops["w2"].op.Status.value == "STARTED"


def test_a_plain_callback_named_like_an_event_is_not_an_event_wait(h: Harness) -> None:
    def waits(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        update = {**wait_update("w1", "a"), "SubType": "Callback"}
        res = hh.checkpoint(env, [update])
        assert [o.Status.value for o in res.Operations if o.Id == "w1"] == ["STARTED"]
        return {"Status": "PENDING"}

    ex, _ = h.engine.start(h.fn, "plain", None)
    h.engine.send_event(ex.arn, "a", "1")
    h.runtime.scripts.append(waits)
    h.pump()
    assert len(h.store.get(ex.arn).event_buffer) == 1


def test_buffered_events_expire_after_their_ttl(h: Harness) -> None:
    def waits(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        res = hh.checkpoint(env, [wait_update("w1", "a")])
        assert [o.Status.value for o in res.Operations if o.Id == "w1"] == ["STARTED"]
        return {"Status": "PENDING"}

    ex, _ = h.engine.start(h.fn, "ttl", None)
    h.engine.send_event(ex.arn, "a", '"stale"', ttl_s=60)
    h.clock.advance(61_000)
    h.runtime.scripts.append(waits)
    h.pump()
    assert h.store.get(ex.arn).event_buffer == []


def test_the_buffer_is_capped_per_type_and_bad_events_are_refused(h: Harness) -> None:
    ex, _ = h.engine.start(h.fn, "caps", None)
    for i in range(events.MAX_BUFFERED_PER_TYPE):
        h.engine.send_event(ex.arn, "a", str(i))
    with pytest.raises(EventBufferFull):
        h.engine.send_event(ex.arn, "a", "x")
    assert h.engine.send_event(ex.arn, "b", "1") == "buffered"
    with pytest.raises(InvalidParameter):
        h.engine.send_event(ex.arn, "no spaces", "1")
    with pytest.raises(PayloadTooLarge):
        h.engine.send_event(ex.arn, "c", '"' + "x" * events.MAX_EVENT_PAYLOAD_BYTES + '"')
    with pytest.raises(InvalidParameter):
        h.engine.send_event(ex.arn, "c", "1", ttl_s=0)
    assert len(h.store.get(ex.arn).event_buffer) == events.MAX_BUFFERED_PER_TYPE + 1


def test_a_batch_starts_each_entry_and_is_idempotent_per_name(h: Harness) -> None:
    before, _ = h.engine.start(h.fn, "existing", '"x"')
    entries: list[tuple[str | None, str | None]] = [
        ("a", "1"),
        (None, "2"),
        ("existing", '"x"'),  # same name and input: the same execution
        ("existing", '"other"'),  # same name, another input: this entry's error
        ("a", "1"),  # twice in one batch: one execution
    ]
    results = h.engine.start_batch(h.fn, entries)
    assert isinstance(results[3], ExecutionAlreadyStarted)
    started = [r for r in results if isinstance(r, tuple)]
    assert [created for _, created in started] == [True, True, False, False]
    assert started[2][0].arn == before.arn and started[3][0].arn == started[0][0].arn
    again = h.engine.start_batch(h.fn, [("a", "1")])
    assert again == [(started[0][0], False)] or (
        isinstance(again[0], tuple) and again[0][0].arn == started[0][0].arn and not again[0][1]
    )
    # The new ones run: their INVOKE timers were written with them.
    h.runtime.scripts += [lambda env, hh: {"Status": "SUCCEEDED", "Result": "1"}] * 3
    h.pump()
    for ex, _ in started[:2]:
        assert h.store.get(ex.arn).status.value == "SUCCEEDED"


def test_a_thousand_starts_in_ten_batches(tmp_path: Path) -> None:
    # SQLite only: moto takes minutes for a thousand transactions.
    h = Harness(tmp_path)
    arns = set()
    for b in range(10):
        results = h.engine.start_batch(h.fn, [(f"n{b}-{i}", None) for i in range(100)])
        arns.update(r[0].arn for r in results if isinstance(r, tuple) and r[1])
    assert len(arns) == 1000
    assert h.store.count_running(h.fn.tenant) == 1000
