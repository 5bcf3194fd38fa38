"""Each function version environment's /tmp: a private directory, a sized tmpfs as root.

As on Lambda, an environment's /tmp outlives a runtime crash (the runtime is
re-initialised in the same environment), so a worker that replaces a crashed one sees
what its predecessor wrote; workers of one version belong to one tenant's function, so
sharing it between that version's warm workers crosses no isolation boundary. It goes
when the version is evicted, when its last worker is reclaimed as least recently used
(as Lambda reclaims an idle environment; a tmpfs holds its files in memory),
or when the sandbox closes.

Root: a tmpfs mounted in the platform's own mount namespace, once per environment,
`size=<EphemeralStorage>m,mode=0700,uid=gid=<tenant's>`, so writes past the
function's EphemeralStorage fail with ENOSPC and unmounting frees it all at once.
Confined workers see it at /tmp (`rootfs`). Elsewhere: a plain directory, unlimited
(said once).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import threading
from pathlib import Path

from treadle.adapters.sandbox.mounts import MS_NODEV, MS_NOSUID, mount, under, unmount

log = logging.getLogger(__name__)


class EnvTmps:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._mounted: set[Path] = set()
        # Mounting needs root with CAP_SYS_ADMIN; turned off at the first refusal.
        self._can_mount = os.geteuid() == 0
        self._warned = False

    def path(self, key: str) -> Path:
        return self.root / hashlib.sha256(key.encode()).hexdigest()[:24]

    def ensure(self, key: str, size_mb: int, uid: int | None) -> Path:
        """The environment's /tmp, created (and mounted) on first use."""
        path = self.path(key)
        with self._lock:
            if path in self._mounted:
                return path
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self._can_mount:
                owner = 0 if uid is None else uid
                options = f"size={size_mb}m,mode=0700,uid={owner},gid={owner}"
                try:
                    # Exec allowed, as Lambda's /tmp; nothing setuid, no devices.
                    mount("tmpfs", str(path), "tmpfs", MS_NOSUID | MS_NODEV, options)
                    self._mounted.add(path)
                    return path
                except OSError as exc:
                    self._can_mount = False
                    self._warn(f"cannot mount tmpfs ({exc})")
            else:
                self._warn("not running as root")
        return path

    def _warn(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "sandbox: %s: each environment's /tmp is a plain directory under %s, "
                "not limited to the function's EphemeralStorage",
                why,
                self.root,
            )

    def remove(self, key: str) -> None:
        """The environment is gone (its version changed, or its last worker was reclaimed):
        its /tmp goes now. A tmpfs is unmounted at once (its memory is freed when no worker
        holds it); a plain directory is moved aside and deleted in the background, off the
        caller's lock (the sandbox's, on reclaim)."""
        path = self.path(key)
        with self._lock:
            mounted = path in self._mounted
            if mounted:
                self._mounted.discard(path)
                _unmount(path)
            trash = path.with_name(f".retired-{path.name}-{secrets.token_hex(4)}")
            try:
                path.rename(trash)  # a new worker of the version makes a fresh one
            except OSError:  # never made, or still a mount point: nothing to reclaim
                return
        if mounted:
            with contextlib.suppress(OSError):
                trash.rmdir()  # the empty mount point
                return
        threading.Thread(
            target=shutil.rmtree,
            args=(trash,),
            kwargs={"ignore_errors": True},
            name="sandbox-tmp-remove",
            daemon=True,
        ).start()

    def clear(self) -> None:
        """Unmount and remove every environment's /tmp, this run's or a crashed one's."""
        with self._lock:
            self._mounted.clear()
            for target in sorted(_mounts_under(self.root), key=len, reverse=True):
                _unmount(Path(target))
        shutil.rmtree(self.root, ignore_errors=True)


def _unmount(path: Path) -> None:
    try:
        # Workers still running there keep their view (their namespaces hold it).
        unmount(str(path))
    except OSError as exc:
        log.warning("could not unmount %s: %s", path, exc)


def _mounts_under(root: Path) -> list[str]:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    base = os.path.realpath(root)
    # Field 5 is the mount point, with spaces and the like octal-escaped.
    points = (line.split()[4].encode().decode("unicode_escape") for line in lines)
    return [p for p in points if under(p, base) and p != base]
