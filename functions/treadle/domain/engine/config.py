"""The engine's tunables: one frozen value every lifecycle module may read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineConfig:
    max_invocation_attempts: int = 3
    invocation_retry_base_s: float = 1.0
    lease_margin_s: int = 30
    # A lease taken for an invocation queued behind a full lane (`handover.py`) runs out
    # this much later: its wait in the backlog is not the invocation's, and its row must
    # not fall due (and fill the timer loop's reads) while it waits. A restart gives
    # such leases back at once (`Engine.recover`), so nothing waits on this.
    queued_lease_allowance_s: int = 3600
    default_execution_timeout_s: int = 86_400
    default_retention_days: int = 14
    # Test clock: WAIT and step-retry timers fire after this fraction of their
    # duration. Recorded durations and scheduled timestamps stay those asked for.
    wait_time_scale: float = 1.0
    envelope_max_operations: int = 1000
    envelope_max_bytes: int = 5 * 1024 * 1024

    @property
    def compressed(self) -> bool:
        """Whether waits and retries run on the test clock (shorter than asked)."""
        return self.wait_time_scale < 1.0
