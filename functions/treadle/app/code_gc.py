"""Code packages nothing needs (no version names them, no execution runs them): stamped
free, then removed once they have stayed free for the grace period
(`domain/code_refs.py` says why a grace).

Packages are shared between tenants (content-addressed), so this is the platform's
collection, not a tenant's: the periodic run makes it after the tenants' own, and the
platform admin can run it or ask what it would remove (`POST /v1/admin/gc`).

The count's row is released (a conditional write: still unreferenced, still free since
before the cutoff) before the package is removed: a crash between the two leaves a
package that nothing counts any more, which is kept for ever (nothing lost), never a
count whose package is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from treadle.domain.code_refs import CodeRefs
from treadle.domain.gc import GcKind, Removal
from treadle.domain.ports import CodeStore

log = logging.getLogger(__name__)

_PAGE = 500


def collect_code(
    refs: CodeRefs,
    code: CodeStore,
    *,
    now_ms: int,
    grace_ms: int,
    dry_run: bool,
    limit: int,
    removed: list[Removal],
    skipped: list[tuple[Removal, str]],
    audit: Callable[[Removal], None],
) -> bool:
    """Append what went (a dry run: what would go) to `removed`, at most `limit` in all;
    True if more was due than that (the next run goes on)."""
    cutoff = now_ms - grace_ms
    reason = f"no version names it and no execution runs it, for {grace_ms // 1000} s"
    after: str | None = None
    while True:
        page = refs.unreferenced_code(after, _PAGE)
        for ref in page:
            free_since = ref.free_since_ms
            if free_since is None:  # first seen free: the grace starts now
                if not dry_run:
                    refs.mark_code_free(ref.key, now_ms)
                free_since = now_ms
            if free_since > cutoff:
                continue
            if len(removed) >= limit:
                return True
            removal = Removal(GcKind.CODE_PACKAGE, ref.key, ref.size_bytes, reason)
            if dry_run:
                removed.append(removal)
            elif refs.release_code(ref.key, cutoff):
                code.delete(ref.key)
                removed.append(removal)
                audit(removal)
            else:
                skipped.append((removal, "a version references it again"))
        if len(page) < _PAGE:
            return False
        after = page[-1].key
