"""The port behind facets: where their databases live and how they are copied out."""

from __future__ import annotations

from typing import Protocol

from treadle.facets.models import FacetInfo


class FacetStore(Protocol):
    """A tenant's facets. Names are checked by the caller (`models.check_name`).

    Every method is per tenant: nothing here reaches another tenant's facets.
    """

    def create(self, tenant: str, name: str) -> bool:
        """Make the facet if it does not exist, atomically; True when it was made."""

    def exists(self, tenant: str, name: str) -> bool: ...

    def count(self, tenant: str) -> int: ...

    def list(self, tenant: str) -> list[FacetInfo]:
        """The tenant's facets, by name."""

    def size(self, tenant: str, name: str) -> int:
        """Bytes on disk (database and log); NotFound when there is no such facet."""

    def export(self, tenant: str, name: str) -> bytes:
        """A consistent copy as one SQLite file, even while it is being written;
        NotFound when there is no such facet."""

    def delete(self, tenant: str, name: str) -> bool:
        """Remove it at once (as one rename); False when there was none."""
