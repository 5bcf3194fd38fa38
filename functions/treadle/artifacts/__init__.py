"""Git-native artifact repositories per tenant.

Objects live as packs in an `ObjectStore` (a directory embedded, S3 on AWS), refs in a
`RefStore` updated by compare-and-swap (SQLite embedded, DynamoDB on AWS). Dulwich is
the Git engine: `git clone`/`fetch`/`push` over smart HTTP (`treadle.api.git_http`), and
the REST use cases (`ArtifactService`) commit and read through the same repositories.
"""

from treadle.artifacts.ports import (
    ObjectNotFound,
    ObjectStore,
    RefConflict,
    RefStore,
    RefUpdate,
    RepoAlreadyExists,
    RepoNotFound,
    RepoPage,
)
from treadle.artifacts.repository import ArtifactRepo, Repositories
from treadle.artifacts.service import ArtifactService, CommitInfo, TreeEntry

__all__ = [
    "ArtifactRepo",
    "ArtifactService",
    "CommitInfo",
    "ObjectNotFound",
    "ObjectStore",
    "RefConflict",
    "RefStore",
    "RefUpdate",
    "RepoAlreadyExists",
    "RepoNotFound",
    "RepoPage",
    "Repositories",
    "TreeEntry",
]
