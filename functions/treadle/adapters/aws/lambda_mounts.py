"""What a tenant Lambda mounts: its tenant's facets access point on EFS, from the VPC the
file system is reachable in (Lambda mounts EFS only from a VPC), and where.

Part of the function's configuration: compared with what Lambda holds, and hashed into
the alias naming a (code, configuration) pair (`lambda_runtime`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TenantMount:
    access_point_arn: str
    mount_path: str  # /mnt/<name>, Lambda's rule
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    env_name: str  # the variable telling tenant code the mount path

    def configuration(self) -> dict[str, Any]:
        """The CreateFunction / UpdateFunctionConfiguration arguments."""
        return {
            "FileSystemConfigs": [
                {"Arn": self.access_point_arn, "LocalMountPath": self.mount_path}
            ],
            "VpcConfig": {
                "SubnetIds": list(self.subnet_ids),
                "SecurityGroupIds": list(self.security_group_ids),
            },
        }

    def identity(self) -> dict[str, Any]:
        return {"mount": self.configuration()}

    def differs(self, config: Mapping[str, Any]) -> bool:
        """Whether the deployed configuration mounts something else (or nothing)."""
        mounted = [
            (c.get("Arn"), c.get("LocalMountPath")) for c in config.get("FileSystemConfigs", [])
        ]
        vpc = config.get("VpcConfig") or {}
        return (
            mounted != [(self.access_point_arn, self.mount_path)]
            or sorted(vpc.get("SubnetIds", [])) != sorted(self.subnet_ids)
            or sorted(vpc.get("SecurityGroupIds", [])) != sorted(self.security_group_ids)
        )


# The tenant's mount, None where tenant Lambdas mount nothing.
MountOf = Callable[[str], TenantMount | None]


def no_mount(_tenant: str) -> TenantMount | None:
    return None
