"""Which code packages nothing needs any more, and since when.

Code packages (zips) are content-addressed and shared: every version whose code is the
same bytes, of any tenant, names the same key. Each function store keeps, for each key,
how many of its items ($LATEST and published versions) name it, moved in the very
transaction that writes or deletes such an item, so the count follows the versions
that exist (where it can be wrong at all, it errs high: a package kept, never lost).
An execution needs the package it started on until it is deleted (it may run or be
redriven on it after every version moved on): a package an execution runs is never
reported unreferenced nor released.

A package whose count reached zero is not removed at once: the collector first stamps
it free (`mark_code_free`), and removes it only once it has stayed free for the grace
period (`release_code`, conditioned on that in the store's own write). The count going back above
zero clears the stamp. Why a grace period rather than a lock: the code store and the
function store are different stores, so a create that uploads the same bytes just as
the package is removed cannot be excluded by one transaction; the grace keeps any
package a create could be reusing, and the create checks its package is still there
once its version is written (`FunctionService`), putting it back if not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CodeRef:
    key: str  # hex SHA-256 of the zip
    size_bytes: int
    free_since_ms: int | None  # stamped by the collector; None: not yet seen free


class CodeRefs(Protocol):
    """Kept by the function stores (the transactions that write versions move it)."""

    def unreferenced_code(self, after: str | None, limit: int) -> list[CodeRef]:
        """Keys no version names and no execution runs, in key order after `after`, at
        most `limit`."""

    def mark_code_free(self, key: str, now_ms: int) -> None:
        """Stamp `key` free since `now_ms`, if nothing references it and it is not yet."""

    def release_code(self, key: str, cutoff_ms: int) -> bool:
        """Forget `key` if still unreferenced and free since `cutoff_ms` or earlier; True
        if forgotten (the caller then removes the package itself)."""
