"""FacetStore on Amazon EFS: the embedded store's SQLite files on a shared file system,
and one EFS access point per tenant through which that tenant's Lambdas see them.

Why EFS, and what it costs: docs/aws.md, "Facets on AWS". Layout on the file system:

    /facets/<tenant>/<facet>/db.sqlite    (+ db.sqlite-journal while a write is open)

- The platform's API function mounts `/facets` (its own access point, uid 0) at the
  settings' mount path; this store works on that directory with `SqliteFacetStore`,
  so list, size, export, delete and the atomic create-by-rename are the embedded ones.
- Each tenant gets an access point rooted at `/facets/<tenant>` whose POSIX user is the
  tenant's uid: a tenant Lambda mounts that access point, so the root of what it sees
  is its own directory, and every file operation it makes is as its uid whatever the
  process's uid is (`access_point`, given to the Lambda runtime as FileSystemConfigs).
- Facets are made in DELETE (rollback-journal) mode, not WAL: WAL's index is shared
  memory, which processes on different hosts (Lambda instances) cannot share; SQLite's
  POSIX byte-range locks travel over NFSv4.1 and serialize writers instead.

The access point is looked up by its tag and otherwise created with a ClientToken, so
concurrent API containers making the same tenant's first facet get one access point.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from treadle.adapters.aws.errors import translate
from treadle.adapters.sqlite.facets import SqliteFacetStore
from treadle.domain.errors import Unavailable
from treadle.facets.models import FacetInfo, check_name

log = logging.getLogger(__name__)
# A hidden directory older than this on the shared mount was left by a killed process.
SHARED_SWEEP_AGE_S = 3600.0

TENANT_TAG = "treadle:facets-tenant"
# Where facets live on the file system; the stack roots the platform's access point here.
FS_ROOT = "/facets"
# Tenant uids on EFS: a range no Lambda runtime user and no system account has.
UID_BASE = 0x7000_0000
UID_SPAN = 0x0FFE_0000


def tenant_uid(tenant: str) -> int:
    """The POSIX uid (= gid) a tenant's facets belong to on EFS, derived, so every
    platform container agrees without a table. Two tenants may share one (a 28-bit
    hash): isolation rests on each access point's root directory, which is the
    tenant's own; the uid only keeps the tenant from creating facets itself."""
    digest = hashlib.sha256(f"treadle-facets/{tenant}".encode()).digest()
    return UID_BASE + int.from_bytes(digest[:4], "big") % UID_SPAN


class EfsFacetStore:
    def __init__(
        self,
        client: Any,  # boto3 EFS client (no type stubs installed for EFS)
        *,
        file_system_id: str,
        mount_dir: Path,
        stage: str,
        fs_root: str = FS_ROOT,
        uid_of: Callable[[str], int] = tenant_uid,
    ) -> None:
        """`mount_dir`: where `fs_root` of the file system is mounted in this process."""
        self._efs = client
        self._fs = file_system_id
        self._stage = stage
        self._fs_root = fs_root.rstrip("/")
        self._uid_of = uid_of
        self._mount_dir = mount_dir
        self._files_store: SqliteFacetStore | None = None
        self._files_guard = threading.Lock()
        self._arns: dict[str, str] = {}
        self._guard = threading.Lock()

    @property
    def _files(self) -> SqliteFacetStore:
        """The mounted directory, opened (and swept) on first use: a process that only
        deploys tenant functions (the orchestrator, kept out of the VPC) needs their
        access points, not the files, and has no mount at all."""
        with self._files_guard:
            if self._files_store is None:
                self._files_store = SqliteFacetStore(
                    self._mount_dir,
                    self._uid_of,
                    journal_mode="DELETE",
                    # Every API container shares the directory: one's cold start must
                    # not take a facet another is making right now.
                    sweep_older_than_s=SHARED_SWEEP_AGE_S,
                )
            return self._files_store

    # -- the tenant's view: its access point -------------------------------------------

    def access_point(self, tenant: str) -> str:
        """The ARN of the tenant's access point, made if missing."""
        known = self._arns.get(tenant)
        if known is not None:
            return known
        with self._guard:
            known = self._arns.get(tenant) or self._find(tenant) or self._create_ap(tenant)
            self._arns[tenant] = known
            return known

    def _call(self, action: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except ClientError as exc:
            raise translate(exc, action) from exc
        except BotoCoreError as exc:
            raise Unavailable(f"{action}: EFS unreachable ({exc}).") from exc

    def _find(self, tenant: str) -> str | None:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"FileSystemId": self._fs}
            if token:
                kwargs["NextToken"] = token
            page = self._call(
                f"list access points of {self._fs}",
                lambda kw=kwargs: self._efs.describe_access_points(**kw),  # type: ignore[misc]
            )
            for ap in page.get("AccessPoints", []):
                tags = {t["Key"]: t["Value"] for t in ap.get("Tags", [])}
                if tags.get(TENANT_TAG) == tenant and ap.get("LifeCycleState") != "deleting":
                    return str(ap["AccessPointArn"])
            token = page.get("NextToken")
            if not token:
                return None

    def _create_ap(self, tenant: str) -> str:
        uid = self._uid_of(tenant)
        made = self._call(
            f"create the facets access point of {tenant}",
            lambda: self._efs.create_access_point(
                # Same token, same request: EFS answers with the access point it made.
                ClientToken=f"treadle-{self._stage}-{tenant}"[:64],
                FileSystemId=self._fs,
                Tags=[
                    {"Key": "Name", "Value": f"treadle-{self._stage}-{tenant}-facets"},
                    {"Key": TENANT_TAG, "Value": tenant},
                ],
                PosixUser={"Uid": uid, "Gid": uid},
                # Root's, the tenant's group, 0750: its Lambdas read and walk it but make
                # no facet in it (the platform does, within the quota).
                RootDirectory={
                    "Path": f"{self._fs_root}/{tenant}",
                    "CreationInfo": {"OwnerUid": 0, "OwnerGid": uid, "Permissions": "750"},
                },
            ),
        )
        log.info("facets access point %s made for %s", made["AccessPointId"], tenant)
        return str(made["AccessPointArn"])

    def tenant_dir(self, tenant: str) -> Path:
        return self._files.tenant_dir(tenant)

    # -- FacetStore ---------------------------------------------------------------------

    def create(self, tenant: str, name: str) -> bool:
        # The access point first: a facet its tenant's Lambdas cannot mount is no use.
        check_name(name)
        self.access_point(tenant)
        return self._files.create(tenant, name)

    def exists(self, tenant: str, name: str) -> bool:
        return self._files.exists(tenant, name)

    def count(self, tenant: str) -> int:
        return self._files.count(tenant)

    def list(self, tenant: str) -> list[FacetInfo]:
        return self._files.list(tenant)

    def size(self, tenant: str, name: str) -> int:
        return self._files.size(tenant, name)

    def export(self, tenant: str, name: str) -> bytes:
        return self._files.export(tenant, name)

    def delete(self, tenant: str, name: str) -> bool:
        return self._files.delete(tenant, name)
