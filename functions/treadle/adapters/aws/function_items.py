"""The function items of the single table: names of their attributes and keys.

| item | pk | sk | attributes |
|---|---|---|---|
| $LATEST | `F#<tenant>#<name>` | `V#$LATEST` | `body`, `revision_id`, `counter`, ... |
| a published version | `F#<tenant>#<name>` | `V#<version:012d>` | `body` (immutable) |
| an alias | `F#<tenant>#<name>` | `A#<alias>` | see `dynamodb_aliases` |
| the tenant's listing | `FL#<tenant>` | `<name>` | |

$LATEST also holds `published_revision`, `published_version`, `deleting` and
`alias_seq` (see `dynamodb_functions` and `dynamodb_aliases`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from treadle.adapters.aws import tables as t
from treadle.adapters.aws.optimistic import DELETING
from treadle.domain.errors import NotFound
from treadle.domain.ports import FunctionVersion

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, AttributeValueTypeDef]

LATEST: Final = "$LATEST"
BODY: Final = "body"
REVISION: Final = "revision_id"
COUNTER: Final = "counter"
PUBLISHED_REVISION: Final = "published_revision"
PUBLISHED_VERSION: Final = "published_version"

NAMES: Final = {
    "#body": BODY,
    "#rev": REVISION,
    "#counter": COUNTER,
    "#prev": PUBLISHED_REVISION,
    "#pver": PUBLISHED_VERSION,
    "#deleting": DELETING,
}


VERSIONS_END: Final = "V$"  # just after every `V#...`


def function_pk(tenant: str, name: str) -> str:
    return f"{t.FUNCTION_PREFIX}{tenant}#{name}"


def listing_pk(tenant: str) -> str:
    return f"{t.FUNCTION_LIST_PREFIX}{tenant}"


def version_sk(number: int) -> str:
    return f"{t.FUNCTION_VERSION_SK_PREFIX}{number:012d}"


def number_of(version: str) -> int | None:
    """The number of a published version as written ("7"), None for anything else."""
    return int(version) if version.isdigit() and version == str(int(version)) else None


def body_of(item: Item) -> FunctionVersion:
    return FunctionVersion.model_validate_json(item[BODY]["S"])


def not_found(name: str, version: str = LATEST) -> NotFound:
    suffix = "" if version == LATEST else f":{version}"
    return NotFound(f"Function not found: {name}{suffix}")
