"""W3s and W3e: thousands of executions parked at once on a durable wait or a callback.

W3s: every execution waits 2 s then runs a step; the figure is the time from the first
start until the last execution closed (the server's EndTimestamp).

W3e: every execution parks on a callback. "Parked" means the invocation that created
the callback has returned (the newest history event is InvocationCompleted); the time
to park uses the server's event timestamps, and the history sweep that reads them (and
the callback ids) begins only once the server has gone quiet, so that reading does not
slow what is measured. Then all callbacks are answered and the time until the last
execution closed is measured from the first answer.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import handlers, procfs
from benchmarks.common import (
    closed_summary,
    epoch,
    fan_out,
    start_many,
    wait_all_closed,
    wait_quiet,
)
from benchmarks.lean import LeanInvoker
from benchmarks.server import deploy
from benchmarks.spec import Env, Metric, Workload

WAIT_S = 2
# A sweep that finds no newly parked execution for this long stops waiting: the run
# goes on with those that parked, and the stuck ones are reported.
STALL_S = 10.0
SLEEPER = "w3s-wait"
PARKER = "w3e-callback"


def setup_sleeper(env: Env) -> None:
    deploy(env.lam, SLEEPER, handlers.FILES, handlers.handler("wait_then_step"))


def run_sleeper(env: Env) -> dict[str, float]:
    n = env.options.w3_count
    cpu0, pid0 = procfs.tree_cpu(env.srv.pid), procfs.last_pid()
    started = start_many(env, SLEEPER, [{"wait": WAIT_S}] * n)
    done = wait_all_closed(env, SLEEPER, started)
    cpu, pid1 = procfs.tree_cpu(env.srv.pid) - cpu0, procfs.last_pid()
    last_end, not_succeeded = closed_summary(done)
    # Upper bound on how late a wake-up was: it also counts the first invocation.
    late = max(epoch(e["EndTimestamp"]) - epoch(e["StartTimestamp"]) - WAIT_S for e in done)
    return {
        "all_done_s": last_end - started.first_s,
        "start_phase_s": started.last_s - started.first_s,
        "started_per_s": started.per_s,
        "max_late_s": late,
        "cpu_ms_per_execution": cpu.total_s * 1000 / max(1, len(done)),
        "pids_allocated": float(procfs.pids_between(pid0, pid1)),
        "errors": float(started.errors + not_succeeded + (n - len(done))),
    }


def _park_state(lam: Any, arn: str) -> tuple[str | None, float | None]:
    """(callback id, when the execution parked) from its history; None while running."""
    events = lam.get_durable_execution_history(DurableExecutionArn=arn, MaxItems=100)["Events"]
    callback = next((e for e in events if e["EventType"] == "CallbackStarted"), None)
    if callback is None:
        return None, None
    cid = str(callback["CallbackStartedDetails"]["CallbackId"])
    last = events[-1]
    if last["EventType"] == "InvocationCompleted" and last["EventId"] > callback["EventId"]:
        return cid, epoch(last["EventTimestamp"])
    return cid, None


def _sweep(env: Env, arns: list[str]) -> dict[str, tuple[str, float]]:
    """Callback id and park time of every execution that parks; gives up on the rest
    after STALL_S without progress."""
    parked: dict[str, tuple[str, float]] = {}
    todo = list(arns)
    progress_at = time.monotonic()
    while todo:
        states = fan_out(env, todo, _park_state)
        for arn, state in zip(todo, states, strict=True):
            if state is not None and state[0] is not None and state[1] is not None:
                parked[arn] = state
                progress_at = time.monotonic()
        todo = [a for a in todo if a not in parked]
        env.deadline.check(f"sweeping: {len(parked):,} of {len(arns):,} parked")
        if todo and time.monotonic() - progress_at > STALL_S:
            env.note(f"{len(todo)} execution(s) never parked (no progress for {STALL_S:.0f} s)")
            break
        if todo:
            time.sleep(0.2)
    return parked


def _answer(lam: Any, callback_id: str) -> bool:
    lam.send_durable_execution_callback_success(CallbackId=callback_id, Result=b'"ok"')
    return True  # fan_out leaves None where the call raised


def _answer_lean(lean: LeanInvoker, callback_id: str) -> bool:
    lean.succeed_callback(callback_id, b'"ok"')
    return True


def setup_parker(env: Env) -> None:
    deploy(env.lam, PARKER, handlers.FILES, handlers.handler("callback"))


def run_parker(env: Env) -> dict[str, float]:
    n = env.options.w3_count
    started = start_many(env, PARKER, [{}] * n)
    wait_quiet(env, limit_s=env.deadline.remaining() / 2)
    parked = _sweep(env, started.arns)
    memory = procfs.tree_memory(env.srv.pid)
    env.partial.update(parked_rss_mib=memory.rss_mib, parked_pss_mib=memory.pss_mib)
    park_done = max((at for _, at in parked.values()), default=float("nan"))
    stuck = len(started.arns) - len(parked)
    answered_from = time.time()
    ids = [cid for cid, _ in parked.values()]
    if env.options.client == "lean":
        answers = fan_out(env, ids, _answer_lean, clients=env.lean(env.options.client_threads))
    else:
        answers = fan_out(env, ids, _answer)
    answered_to = time.time()
    answered = sum(a is not None for a in answers)
    env.deadline.check(f"answering: {answered:,} of {len(parked):,} answered")
    # Wait only for those that parked: the stuck ones would never close.
    done = wait_all_closed(env, PARKER, started, expect=len(parked))
    last_end, not_succeeded = closed_summary(done)
    return {
        "park_s": float("nan") if stuck else park_done - started.first_s,
        "stuck": float(stuck),
        "complete_s": last_end - answered_from,
        "parked_rss_mib": memory.rss_mib,
        "parked_pss_mib": memory.pss_mib,
        "parked_processes": float(memory.processes),
        "answer_phase_s": answered_to - answered_from,
        "answer_errors": float(sum(a is None for a in answers)),
        "start_phase_s": started.last_s - started.first_s,
        "started_per_s": started.per_s,
        "errors": float(started.errors + not_succeeded + (len(parked) - len(done))),
    }


W3S = Workload(
    id="W3s",
    title="{w3_count} executions each durably waiting 2 s, then one step",
    metrics=(
        Metric("all_done_s", "first start -> all completed", "s", target=6),
        Metric("start_phase_s", "time to issue all starts", "s"),
        Metric("started_per_s", "starts issued", "/s"),
        Metric("max_late_s", "max (end - start - 2 s), upper bound of wake-up lateness", "s"),
        Metric("cpu_ms_per_execution", "CPU per execution, server + children", "ms"),
        Metric("pids_allocated", "pids allocated per run (processes + threads)", ""),
        Metric("errors", "failed starts + executions not SUCCEEDED", ""),
    ),
    run=run_sleeper,
    setup=setup_sleeper,
    budget_s=lambda o: 60.0,
)

W3E = Workload(
    id="W3e",
    title="{w3_count} executions each waiting for a callback, then all callbacks answered",
    metrics=(
        Metric("park_s", "first start -> all parked", "s", target=3),
        Metric("complete_s", "first answer -> all completed", "s", target=3),
        Metric("parked_rss_mib", "server RSS while parked (sum over the tree)", "MiB"),
        Metric("parked_pss_mib", "server PSS while parked (sum over the tree)", "MiB"),
        Metric("stuck", "executions that never parked", ""),
        Metric("parked_processes", "processes in the server tree while parked", ""),
        Metric("answer_phase_s", "time to send all callback answers", "s"),
        Metric("answer_errors", "callback answers refused", ""),
        Metric("start_phase_s", "time to issue all starts", "s"),
        Metric("started_per_s", "starts issued", "/s"),
        Metric("errors", "failed starts + answered executions not SUCCEEDED", ""),
    ),
    run=run_parker,
    setup=setup_parker,
    budget_s=lambda o: 70.0,
)
