"""The platform's own files, out of reach of the uids its sandbox runs tenant code as.

Workers normally see none of the data directory (`rootfs`). Modes are the second
layer, the one that holds where mount namespaces are not available: everything the
platform keeps (databases and their WAL files, secrets/, credentials, git/, the lock)
is its user's alone, and the directories that lead workers to their own files
(code/, sandbox/) can be passed through without being listed.
"""

from __future__ import annotations

import os
from pathlib import Path

# Entries whose owners (the code store, the sandbox) protect what is inside them; also
# `sandbox-<n>`, the sandboxes of the other processes of `treadle dev --processes`.
TRAVERSABLE = frozenset({"code", "sandbox"})


def protect_data_dir(data_dir: Path) -> None:
    """Make the data directory the platform's alone; call once at start, first thing.

    Also sets this process's umask to 077: files the platform creates later (a new
    database, its -wal and -shm, packs, keys) are then private from their first byte,
    whichever module creates them. Workers set their own umask back to Lambda's 022.
    """
    os.umask(0o077)
    data_dir.mkdir(parents=True, exist_ok=True)
    # 0711, not 0700: a worker without a mount namespace must reach code/ and sandbox/.
    data_dir.chmod(0o711)
    with os.scandir(data_dir) as entries:
        for entry in entries:
            if entry.is_symlink():
                continue  # e.g. credentials linked to ~/.aws/credentials: not ours to change
            if entry.is_dir():
                traversable = entry.name in TRAVERSABLE or entry.name.startswith("sandbox-")
                os.chmod(entry.path, 0o711 if traversable else 0o700)
            else:
                os.chmod(entry.path, 0o600)
