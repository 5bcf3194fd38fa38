"""W4: many executions parked on a durable wait at once: memory, then the mass wake-up.

Every execution waits until one shared due instant (epoch seconds in its input, so all
wake together), then runs one step. The lead time before the due instant is what a
platform meeting the W2 target needs to start and park them all; memory is read from
/proc just before the due instant. The figure that matters is how long after the due
instant the last execution closed (the server's EndTimestamp). A platform that cannot
start them within the lead is not given more: the share parked by the due instant says
how far it got.

Afterwards (outside the timed part) the histories of a sample say when each execution
parked and when its wait was scheduled to end: the latest to finish plus a random draw,
read in random order so that a read cut short by the budget is still a fair sample.
"""

from __future__ import annotations

import random
import time
from typing import Any

from benchmarks import handlers, procfs
from benchmarks.common import (
    MemorySampler,
    closed_summary,
    epoch,
    fan_out,
    start_many,
    wait_all_closed,
    wait_quiet,
)
from benchmarks.server import deploy
from benchmarks.spec import Env, Metric, Workload

FUNCTION = "w4-wait-until"
HISTORY_SAMPLE = 1_000
HISTORY_LATEST = 100


def lead_seconds(count: int, override: float | None) -> float:
    """Seconds from the first start to the due instant: enough to start and park them
    all at 500/s (half the W2 target), plus 10 s. A slower platform parks fewer of them
    before the due instant (reported), or is given more lead with --w4-lead."""
    if override is not None:
        return override
    return 10.0 + count / 500


def setup(env: Env) -> None:
    deploy(env.lam, FUNCTION, handlers.FILES, handlers.handler("wait_until_then_step"))


def _wait_facts(lam: Any, arn: str) -> tuple[float | None, float | None]:
    """(when the first invocation returned, when the wait was scheduled to end)."""
    parked = scheduled = None
    kwargs: dict[str, Any] = {"DurableExecutionArn": arn, "MaxItems": 100}
    for event in lam.get_durable_execution_history(**kwargs)["Events"]:
        if event["EventType"] == "InvocationCompleted" and parked is None:
            parked = epoch(event["EventTimestamp"])
        elif event["EventType"] == "WaitStarted":
            scheduled = epoch(event["WaitStartedDetails"]["ScheduledEndTimestamp"])
    return parked, scheduled


def _checked(done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rng = random.Random(0)
    if len(done) <= HISTORY_SAMPLE:
        picked = list(done)
    else:
        by_end = sorted(done, key=lambda e: epoch(e["EndTimestamp"]))
        latest, rest = by_end[-HISTORY_LATEST:], by_end[:-HISTORY_LATEST]
        picked = latest + rng.sample(rest, HISTORY_SAMPLE - HISTORY_LATEST)
    rng.shuffle(picked)
    return picked


def _random_part(checked: list[dict[str, Any]], done: list[dict[str, Any]]) -> set[str]:
    """Arns of the random draw: shares are computed on it alone, not on the latest
    finishers that _checked adds (they would bias a share towards the slow ones)."""
    if len(done) <= HISTORY_SAMPLE:
        return {e["DurableExecutionArn"] for e in checked}
    by_end = sorted(done, key=lambda e: epoch(e["EndTimestamp"]))
    latest = {e["DurableExecutionArn"] for e in by_end[-HISTORY_LATEST:]}
    return {e["DurableExecutionArn"] for e in checked} - latest


def run(env: Env) -> dict[str, float]:
    n = env.options.w4_count
    first = time.time()
    due = first + lead_seconds(n, env.options.w4_lead_s)
    with MemorySampler(env) as sampler:
        started = start_many(env, FUNCTION, [{"due": due}] * n)
        wait_quiet(env, limit_s=max(0.0, due - 2 - time.time()))
        env.deadline.sleep(due - 1 - time.time(), "waiting for the due instant")
        if time.time() > due:
            env.note("starting took longer than the lead: not all were parked at the due instant")
        parked_memory = procfs.tree_memory(env.srv.pid)
        env.partial.update(parked_rss_mib=parked_memory.rss_mib)
        env.partial.update(parked_pss_mib=parked_memory.pss_mib)
        done = wait_all_closed(env, FUNCTION, started, poll_s=0.5)
    last_end, not_succeeded = closed_summary(done)
    disk = env.srv.disk_mib()
    checked = _checked(done)
    read = fan_out(env, [e["DurableExecutionArn"] for e in checked], _wait_facts)
    facts = [(e, f) for e, f in zip(checked, read, strict=True) if f is not None]
    if len(facts) < len(checked):
        env.note(f"histories read for {len(facts):,} of {len(checked):,} checked executions")
    parked_at = [parked for _, (parked, _) in facts if parked is not None]
    drawn = _random_part(checked, done)
    drawn_parked = [p for e, (p, _) in facts if p is not None and e["DurableExecutionArn"] in drawn]
    late = [epoch(e["EndTimestamp"]) - end for e, (_, end) in facts if end is not None]
    peak = sampler.peak or parked_memory
    return {
        "parked_rss_mib": parked_memory.rss_mib,
        "done_after_due_s": last_end - due,
        "parked_pss_mib": parked_memory.pss_mib,
        "peak_rss_mib": peak.rss_mib,
        "peak_pss_mib": peak.pss_mib,
        "parked_processes": float(parked_memory.processes),
        "park_s": max(parked_at) - first if parked_at else float("nan"),
        "parked_by_due_pct": 100.0
        * sum(1 for p in drawn_parked if p <= due)
        / max(1, len(drawn_parked)),
        "max_late_s": max(late) if late else float("nan"),
        "started_per_s": started.per_s,
        "disk_mib": disk,
        "errors": float(started.errors + not_succeeded + (n - len(done))),
    }


WORKLOAD = Workload(
    id="W4",
    title="{w4_count} executions parked on one durable wait at once, then woken together",
    metrics=(
        Metric(
            "parked_rss_mib",
            "platform RSS at the due instant (sum over the tree)",
            "MiB",
            target=1024,
            strict=True,
        ),
        Metric("done_after_due_s", "due instant -> all completed", "s", target=60),
        Metric("parked_pss_mib", "platform PSS at the due instant (sum over the tree)", "MiB"),
        Metric("peak_rss_mib", "peak RSS during the run (sampled every 0.5 s)", "MiB"),
        Metric("peak_pss_mib", "PSS at that peak (shared pages counted once)", "MiB"),
        Metric("parked_processes", "processes in the server tree at the due instant", ""),
        Metric("park_s", "first start -> all parked (sampled histories)", "s"),
        Metric("parked_by_due_pct", "parked before the due instant (sampled histories)", "%"),
        Metric("max_late_s", "max (end - scheduled end of the wait) (sampled)", "s"),
        Metric("started_per_s", "starts issued", "/s"),
        Metric("disk_mib", "data directory on disk", "MiB"),
        Metric("errors", "failed starts + executions not SUCCEEDED", ""),
    ),
    run=run,
    setup=setup,
    runs=lambda o: o.w4_runs,
    # The lead, the 60 s the target allows after the due instant, and reading histories.
    budget_s=lambda o: (lead_seconds(o.w4_count, o.w4_lead_s) + 120) * o.w4_runs,
)
