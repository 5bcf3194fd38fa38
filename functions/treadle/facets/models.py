"""What a facet is to the platform: a name within a tenant, a size, when it was last used."""

from __future__ import annotations

import re
from dataclasses import dataclass

from treadle.domain.errors import InvalidParameter

# A name may carry an agent or session id; no separators, no "..", nothing hidden
# (a leading dot is how the store names its own temporary directories).
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_NAME = re.compile(NAME_PATTERN)


def check_name(name: str) -> str:
    """The name, or InvalidParameter: it becomes a directory name on the host."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise InvalidParameter(
            f"Facet name {name!r} must match {NAME_PATTERN} and must not contain '..'."
        )
    return name


@dataclass(frozen=True)
class FacetInfo:
    name: str
    size_bytes: int  # the database and its write-ahead log
    last_used_ms: int  # the last write the filesystem saw (reads do not count)


@dataclass(frozen=True)
class FacetGrant:
    """What a worker is told when it may open a facet."""

    name: str
    max_bytes: int
