"""Local sandbox: tenant handlers in separate processes that honour the Lambda contract.

Processes: the (multi-threaded) server never forks. `start()` launches one zygote
(`zygote.py`) with a scrubbed environment; it pre-imports boto3 and the durable SDK and
forks a worker per function version on demand, so a cold start costs a fork and the
handler's own imports. Workers of one `key` stay warm and serve one invocation at a
time; idle ones are evicted least recently used first (and the environment's /tmp with
the last of them, `envtmp`): `pool` keeps that account.

Memory: the server samples each busy worker's peak RSS (VmHWM) and kills it past the
function's memory size, which is what Lambda's cgroup does; RLIMIT_DATA in the worker
stops allocations too fast for the sampling (see `runtime.DATA_SLACK_MB`).

Tenants: a worker of a tenant's function runs as that tenant's uid and sees none of
the platform's files nor other tenants' code (`identity`, `confine`), in its tenant's
network namespace (`netns`).

Processes: each worker has a cgroup limited to `max_processes`; when an invocation ends,
any process it left behind is killed before the invoke returns (`cgroups`). Workers are
forked and moved into their cgroup ahead of need (`spares`): a migration can cost ms.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from treadle.adapters.sandbox import cgroups, confine, egress, protocol
from treadle.adapters.sandbox.envtmp import EnvTmps
from treadle.adapters.sandbox.handle import (
    EXIT_WAIT_S,
    CallHandler,
    WorkerHandle,
    as_error,
    failed,
    out_of_memory,
)
from treadle.adapters.sandbox.identity import Confinement
from treadle.adapters.sandbox.netns import PolicyOf, Serve
from treadle.adapters.sandbox.pool import WorkerPool
from treadle.adapters.sandbox.spares import SparePool, Started, TenantSpares, start_worker
from treadle.adapters.sandbox.spawner import Zygote, ZygoteGone
from treadle.adapters.sandbox.spec import InvocationOutcome, SandboxFunction, worker_spec

log = logging.getLogger(__name__)

# Lambda's Init phase has its own 10 s; beyond that, init eats into the timeout.
INIT_TIMEOUT_S = 10.0
# How long `prepare` (inside the request that published the code) waits for the Init
# phase it started; a longer one goes on alone and the first invoke waits for the rest.
PREPARE_WAIT_S = 0.5
WATCHDOG_INTERVAL_S = 0.05


class LocalSandbox:
    def __init__(
        self,
        *,
        work_dir: Path,
        max_warm_per_function: int = 4,
        max_workers: int = 256,
        private_root: Path | None = None,
        privileged: bool | None = None,
        network: bool | None = None,
        max_processes: int | None = cgroups.MAX_PROCESSES,
        subnet: IPv4Network = egress.DEFAULT_SUBNET,
        ids_path: Path | None = None,
        idle_s: float | None = None,
    ) -> None:
        # private_root: what tenant code must not see (default: the work dir's parent,
        # the data dir). privileged: tenants as own uids (default: if root; else Landlock).
        # network: a network namespace per tenant (default: when privileged).
        # max_processes: per worker (None: no cgroups, no limit; for measurements).
        # subnet: where tenants' links to the host are numbered (`egress`).
        # ids_path: the tenants' uids, shared by the sandboxes of one data directory.
        # idle_s: how long a version's idle workers beyond its last used one stay.
        self._work_dir = Path(work_dir)
        self._tmps = EnvTmps(self._work_dir / "tmp")
        root = self._work_dir.parent if private_root is None else Path(private_root)
        self._confinement = Confinement(
            self._work_dir, root, privileged, network, subnet, ids_path=ids_path
        )
        self._pool = WorkerPool(
            max_warm=max_warm_per_function,
            max_workers=max_workers,
            environment_gone=self._tmps.remove,  # its /tmp (`envtmp`)
            idle_s=idle_s,
        )
        self._zygote_lock = threading.Lock()
        self._zygote: Zygote | None = None
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._max_processes = max_processes
        self._groups: cgroups.ResourceGroups | None = None
        self._spares = SparePool(None, self._tmps.root)
        self._tenant_spares: TenantSpares | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        with self._zygote_lock:
            self._pool.open()
            if self._groups is None and self._max_processes is not None:
                groups = cgroups.ResourceGroups(self._max_processes)
                cgroups.report(groups, self._confinement.privileged)
                self._groups = groups if groups.available else None
                self._spares = SparePool(self._groups, self._tmps.root, lambda: self._zygote)
            caps = self._running_zygote_locked(stale=None).caps
            privileged = self._confinement.privileged and confine.spare_supported(caps)
            if self._tenant_spares is None and self._groups is not None and privileged:
                # Like the spares above, only where workers have cgroups of their own.
                self._tenant_spares = TenantSpares(
                    self._groups, self._tmps.root, self._confinement.tenant_plan
                )

    def _live_zygote(self, stale: Zygote | None) -> Zygote:
        with self._zygote_lock:
            if self._pool.closed:
                raise RuntimeError("sandbox is closed")
            return self._running_zygote_locked(stale)

    def _running_zygote_locked(self, stale: Zygote | None) -> Zygote:
        zygote = self._zygote
        if zygote is not None and zygote.alive and zygote is not stale:
            return zygote
        if zygote is None:
            self._tmps.clear()  # leftovers of a server that died without close()
            self._confinement.clean()
        else:
            log.warning("sandbox zygote %d is gone; starting a new one", zygote.pid)
            zygote.stop()
        self._tmps.root.mkdir(parents=True, exist_ok=True)
        self._confinement.protect(self._tmps.root)
        zygote = Zygote(home=self._work_dir / "zygote-home")
        zygote.start()
        self._confinement.report(zygote.caps)
        self._zygote = zygote
        if self._watchdog is None or not self._watchdog.is_alive():
            self._stop.clear()
            self._watchdog = threading.Thread(
                target=self._watch, name="sandbox-watchdog", daemon=True
            )
            self._watchdog.start()
        return zygote

    def close(self) -> None:
        with self._zygote_lock:
            idle, busy = self._pool.close()
            for handle in idle:
                handle.discard()
            for handle in busy:
                handle.kill()  # its invocation reports the exit and discards it
            self._stop.set()
            if self._watchdog is not None:
                self._watchdog.join(timeout=5)
                self._watchdog = None
            self._spares.close()
            if self._tenant_spares is not None:
                self._tenant_spares.close()
                self._tenant_spares = None
            if self._zygote is not None:
                self._zygote.stop()
                self._zygote = None
            if self._groups is not None:
                self._groups.close()
                self._groups = None
            self._tmps.clear()
            shutil.rmtree(self._work_dir / "zygote-home", ignore_errors=True)
            self._confinement.close()

    def isolation_shortcomings(self) -> list[str]:
        """Why tenants are not isolated from each other here (empty: they are)."""
        return self._confinement.shortcomings(self._live_zygote(None).caps)

    def serve_facets(self, tenant_dir: Callable[[str], Path]) -> None:
        """Give each tenant's workers its facets directory (`tenant_dir(tenant)`)."""
        self._confinement.facets = tenant_dir

    def tenant_group(self, tenant: str) -> int | None:
        """The gid the tenant's code runs with (None: not changed); for its files."""
        return self._confinement.group(tenant)

    def tenant_endpoint(self, tenant: str) -> str | None:
        """The platform endpoint in the tenant's network namespace (made now, once);
        None: its code shares the host's network and reaches the platform there."""
        return self._confinement.endpoint(tenant)

    def serve_endpoints(self, serve: Serve) -> None:
        """Who serves each tenant's endpoint socket (`netns.TenantNetworks.serve_with`)."""
        self._confinement.serve_endpoints(serve)

    def egress_policies(self, policy_of: PolicyOf) -> None:
        """Where each tenant's egress policy is read when its namespace is made."""
        self._confinement.egress_from(policy_of)

    def egress_refusal(self, policy: egress.Policy) -> str | None:
        """Why this host cannot enforce `policy` on tenant code (None: it can)."""
        return self._confinement.egress_refusal(policy)

    def apply_egress(self, tenant: str, policy: egress.Policy) -> None:
        """A tenant's changed policy, on its namespace now (EgressError: not applied, the
        tenant's code left without network)."""
        self._confinement.set_egress(tenant, policy)

    def evict(self, key: str) -> None:
        for handle in self._pool.evict(key):
            handle.discard()
        self._tmps.remove(key)  # /tmp of the environment (`envtmp`)

    def prepare(self, fn: SandboxFunction) -> bool:
        """Start a new version's first worker ahead of its first invoke, from the spare its
        tenant has confined ahead: the Init phase (the handler's import) runs now, as
        Lambda may initialise an environment before it is invoked, and the first invoke
        finds the worker warm. Waits up to `PREPARE_WAIT_S` for it; a longer Init goes on
        and the first invoke waits for its end, as in a cold start. Only for a tenant
        with a spare, only where the version has no worker yet and one fits without
        evicting another (`WorkerPool.prepare`); False if none was kept. The Init's log
        lines go to the first invocation; a failed Init is dropped, and the first
        invoke's cold start meets (and reports) it again.
        """
        spares = self._tenant_spares
        if spares is None or fn.tenant is None:
            return False
        zygote = self._live_zygote(None)
        if not spares.has(fn.tenant, zygote):
            return False

        def ready(handle: WorkerHandle) -> bool:
            got = handle.await_ready(time.monotonic() + PREPARE_WAIT_S)
            return got is None or got == "timeout"  # ready, or still initialising

        try:
            return self._pool.prepare(
                fn.key, lambda generation: self._spawn_from(zygote, fn, generation), ready
            )
        except ZygoteGone:
            return False  # the first invoke starts a new zygote and its worker

    def _spawn(self, fn: SandboxFunction, generation: int) -> WorkerHandle:
        stale: Zygote | None = None
        for attempt in range(2):
            zygote = self._live_zygote(stale)
            try:
                return self._spawn_from(zygote, fn, generation)
            except ZygoteGone:
                if attempt:
                    raise
                stale = zygote
        raise AssertionError("unreachable")

    def _spawn_from(self, zygote: Zygote, fn: SandboxFunction, generation: int) -> WorkerHandle:
        uid = self._confinement.uid(fn.tenant)
        tmp_dir = self._tmps.ensure(fn.key, fn.ephemeral_storage_mb, uid)
        if fn.tenant is not None:
            # Real paths: a confined worker's mounts are made at them (`rootfs`).
            tmp_dir = Path(os.path.realpath(tmp_dir))
            fn = dataclasses.replace(fn, code_dir=Path(os.path.realpath(fn.code_dir)))
        plan = self._confinement.plan(fn.tenant, tmp_dir)
        spec = worker_spec(fn, self._confinement.tmp_inside(plan, tmp_dir), plan)
        groups = self._groups
        if (
            groups is None
            and self._max_processes is not None
            and (spec["confine"] or {}).get("uid")
        ):
            spec["resources"] = {"nproc": self._max_processes}  # no cgroups: per tenant uid
        spare: Started | None = None
        mount_fds: list[int] = []
        spares = self._tenant_spares
        uid = (spec["confine"] or {}).get("uid")
        if spares is not None and fn.tenant is not None and uid is not None:
            spare, mount_fds = spares.take_with_mounts(fn.tenant, zygote, tmp_dir, fn.code_dir)
        started = spare or self._spares.take(zygote) or start_worker(zygote, tmp_dir, groups)
        proc, ours, group = started.proc, started.chan, started.group
        try:
            ours.settimeout(INIT_TIMEOUT_S)
            protocol.send_frame(ours, spec)
            if mount_fds:
                socket.send_fds(ours, [b"m"], mount_fds)
        except (OSError, protocol.ProtocolError):
            pass  # it died (or will, on a bad first frame): the first wait reports how
        finally:
            ours.settimeout(None)
            for fd in mount_fds:
                os.close(fd)
        return WorkerHandle(
            key=fn.key,
            generation=generation,
            proc=proc,
            chan=ours,
            log_fd=started.log_fd,
            memory_mb=fn.memory_mb,
            group=group,
            on_discard=None if groups is None else lambda: groups.release(group),
        )

    def tenant_spares(self) -> tuple[list[str], int]:
        """The tenants with a spare confined ahead, and how many cold starts took one."""
        spares = self._tenant_spares
        return ([], 0) if spares is None else (spares.ready(), spares.served)

    def _watch(self) -> None:
        while not self._stop.wait(WATCHDOG_INTERVAL_S):
            busy = self._pool.watch()
            if self._groups is not None:
                self._groups.collect()  # cgroups whose tasks were still exiting
            for handle in busy:
                if not handle.oom and handle.over_memory():
                    handle.oom = True
                    handle.kill()

    # -- invocations ----------------------------------------------------------------

    def invoke(
        self,
        fn: SandboxFunction,
        payload: bytes,
        request_id: str,
        on_call: CallHandler | None = None,
        trace_header: str | None = None,
    ) -> InvocationOutcome:
        started = time.time()
        handle = self._pool.acquire(fn.key, lambda generation: self._spawn(fn, generation))
        healthy = False
        try:
            error, body, healthy, peak_kb = self._run(
                handle, fn, payload, request_id, on_call, trace_header
            )
            memory_kb = handle.peak_rss_kb() if peak_kb is None else peak_kb
            init_ms, handle.init_ms = handle.init_ms, None
            # Before the logs: what a leftover process wrote belongs to this invocation.
            healthy = handle.sweep() and healthy
            logs = handle.end_logs()
        finally:
            self._pool.release(handle, healthy)
        return InvocationOutcome(
            request_id=request_id,
            payload=None if error is not None else body,
            error=error,
            logs=logs,
            started_at=started,
            ended_at=time.time(),
            max_memory_kb=memory_kb,
            init_ms=init_ms,
        )

    def _run(
        self,
        handle: WorkerHandle,
        fn: SandboxFunction,
        payload: bytes,
        request_id: str,
        on_call: CallHandler | None = None,
        trace_header: str | None = None,
    ) -> tuple[dict[str, Any] | None, bytes, bool, int | None]:
        """(error, result body, whether the worker may serve again, its peak RSS in KiB if
        read after the result)."""
        handle.begin()
        budget = fn.timeout_s
        if not handle.ready:
            init = handle.await_ready(handle.spawned_at + INIT_TIMEOUT_S + fn.timeout_s)
            if isinstance(init, str):
                return failed(handle, fn.timeout_s, request_id, init), b"", False, None
            if init is not None and init.get("oom"):
                return out_of_memory(handle, request_id), b"", False, None
            if init is not None:
                handle.wait_exit(EXIT_WAIT_S)  # it exits after an init error, like Lambda's
                return as_error(init["error"]), b"", False, None
            budget -= max(0.0, (handle.init_ms or 0.0) / 1000 - INIT_TIMEOUT_S)
        deadline = time.monotonic() + budget
        request = {
            "t": "invoke",
            "id": request_id,
            "deadline_ms": int((time.time() + budget) * 1000),
            "arn": fn.invoked_function_arn,
            "trace": trace_header,
        }
        failure = handle.send(request, payload, deadline)
        got = failure or handle.wait_frame("result", deadline, on_call)
        if isinstance(got, str):
            return failed(handle, fn.timeout_s, request_id, got), b"", False, None
        header, body = got
        peak_kb = handle.peak_rss_kb()
        if header.get("oom") or handle.oom or handle.over_memory(peak_kb):
            return out_of_memory(handle, request_id), b"", False, None
        error = header.get("error")
        return (None if error is None else as_error(error)), body, True, peak_kb
