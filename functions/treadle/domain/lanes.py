"""Where invocations run when the dispatcher runs them in this process (embedded): the
port a start, or a change that resumes an execution, uses to hand the invocation straight
over (`engine/handover.py`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class InvocationSlot(Protocol):
    """A place reserved in the invocation lane (`InvocationLanes.reserve`).

    `queued`: the lane is full and the invocation waits, in memory, behind the others
    (its lease says so: `Execution.lease_queued`)."""

    queued: bool

    def run(self, work: Callable[[], None]) -> None:
        """Run `work` in the lane (its thread, later); the slot is freed after it."""

    def release(self) -> None:
        """Give the slot back unused."""


class InvocationLanes(Protocol):
    """Where invocations run, when the dispatcher runs them in this process (embedded).

    A start that gets a slot takes its first invocation's lease in its own commit and
    hands the invocation straight to the lane: one commit, one scheduler pass and one
    thread switch fewer than leaving it to the INVOKE timer. The lease's timer is set as
    for any invocation, so a crash before or during it is recovered the same way (a
    queued one's is given back without a crash counted: `Execution.lease_queued`).
    """

    def reserve(self, arn: str) -> InvocationSlot | None:
        """A slot for `arn`'s invocation, kept from the timer loop: free now, or queued
        behind others while the backlog has room; None if not."""
