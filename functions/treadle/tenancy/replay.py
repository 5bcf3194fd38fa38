"""Per-process memory of accepted SigV4 signatures, to refuse the same request twice.

An accepted (access key, signature) is kept until the request could no longer pass the
freshness check (signed date + skew, or + X-Amz-Expires for a presigned URL); after that
the date refuses it anyway. The memory is per process: behind several processes a
replay can land once on each, and the skew window still bounds it in time.
"""

from __future__ import annotations

import heapq
import threading
from dataclasses import dataclass, field

from treadle.tenancy.errors import RateExceeded, ReplayedRequest


@dataclass
class _Window:
    expiry: dict[str, int] = field(default_factory=dict)
    heap: list[tuple[int, str]] = field(default_factory=list)

    def purge(self, now_ms: int) -> None:
        while self.heap and self.heap[0][0] < now_ms:
            exp, key = heapq.heappop(self.heap)
            if self.expiry.get(key) == exp:
                del self.expiry[key]


class ReplayGuard:
    """Accepted signatures of this process, each kept until it could no longer pass.

    Bounded per tenant: a tenant that fills its window is throttled (429) rather than
    having entries evicted, which would reopen the replay; other tenants are unaffected.
    The default, 100k entries of ~270 bytes (~27 MB), allows a sustained 333 signed
    requests per second per tenant and process with the default 300 s skew.
    """

    def __init__(self, max_per_tenant: int = 100_000) -> None:
        self.max_per_tenant = max_per_tenant
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self._last_sweep_ms = 0

    def check_and_record(
        self, tenant: str, access_key_id: str, signature: str, valid_until_ms: int, now_ms: int
    ) -> None:
        key = f"{access_key_id}/{signature}"
        with self._lock:
            if now_ms - self._last_sweep_ms > 60_000:
                self._sweep(now_ms)
            window = self._windows.setdefault(tenant, _Window())
            window.purge(now_ms)
            if key in window.expiry:
                raise ReplayedRequest(
                    "The request signature has already been used; sign every request anew."
                )
            if len(window.expiry) >= self.max_per_tenant:
                wait_s = max(0.0, (window.heap[0][0] - now_ms) / 1000)
                raise RateExceeded(
                    "Rate exceeded", reason="CallerRateLimitExceeded", retry_after_s=wait_s
                )
            window.expiry[key] = valid_until_ms
            heapq.heappush(window.heap, (valid_until_ms, key))
            if len(window.heap) > 2 * self.max_per_tenant:
                # Released entries leave stale heap items behind; keep the heap bounded too.
                window.heap = [(exp, k) for k, exp in window.expiry.items()]
                heapq.heapify(window.heap)

    def release(self, tenant: str, access_key_id: str, signature: str) -> None:
        """Forget an accepted request whose response was retryable (429, 5xx).

        botocore retries with the same signature when the retry falls in the same
        second; the request did not take effect, so that retry is not a replay.
        """
        with self._lock:
            window = self._windows.get(tenant)
            if window is not None:
                # Its heap item stays; purge skips it (the expiry no longer matches).
                window.expiry.pop(f"{access_key_id}/{signature}", None)

    def _sweep(self, now_ms: int) -> None:
        # Idle tenants' windows would otherwise keep their last entries forever.
        self._last_sweep_ms = now_ms
        for tenant in list(self._windows):
            window = self._windows[tenant]
            window.purge(now_ms)
            if not window.expiry:
                del self._windows[tenant]

    def __len__(self) -> int:
        with self._lock:
            return sum(len(w.expiry) for w in self._windows.values())
