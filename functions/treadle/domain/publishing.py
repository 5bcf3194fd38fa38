"""PublishVersion's rule, shared by every FunctionStore adapter (they only store it)."""

from __future__ import annotations

from treadle.domain.ports import FunctionVersion


def version_to_publish(
    latest: FunctionVersion,
    previous: FunctionVersion | None,
    number: int,
    description: str | None,
) -> tuple[FunctionVersion, bool]:
    """(the version PublishVersion returns, whether the store must write it).

    `previous` is the version published last (None if none is known). Lambda:
    publishing unchanged code returns the version that has it, instead of a new one.
    Otherwise $LATEST is frozen as `number`, with its description unless one is given.
    """
    if previous is not None and previous.revision_id == latest.revision_id:
        return previous, False
    version = latest.model_copy(
        update={
            "version": str(number),
            "description": description if description is not None else latest.description,
        }
    )
    return version, True
