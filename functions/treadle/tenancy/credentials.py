"""The AWS shared-credentials file that `treadle dev` writes (profile `treadle`).

Format as `aws configure` writes it:

    [treadle]
    aws_access_key_id = AKIA...
    aws_secret_access_key = ...
    region = us-east-1

botocore folds the credentials file into its profiles, so boto3 and the AWS CLI also
take `region` from there (other SDKs read region only from the config file).

Writes are read-modify-replace under an exclusive lock: other profiles survive, a
reader never sees half a file, and two writers do not lose each other's profile. The
file holds a secret, so it is created 0600 and stays 0600. configparser does not keep
comments of an existing file; profiles and their keys are kept.
"""

from __future__ import annotations

import configparser
import fcntl
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from treadle.files import write_atomically

# A section name nobody uses: configparser otherwise treats "[DEFAULT]" as defaults
# inherited by every profile, which the AWS format does not.
_NO_DEFAULT_SECTION = "\x00treadle-no-default"


def _parser() -> configparser.RawConfigParser:
    # Raw: secrets may contain '%', which interpolation would choke on.
    parser = configparser.RawConfigParser(default_section=_NO_DEFAULT_SECTION)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    return parser


def _load(path: Path) -> configparser.RawConfigParser:
    parser = _parser()
    if path.exists():
        # A malformed file raises here rather than being replaced by ours.
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    return parser


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Lock the directory rather than a side file: nothing is left behind next to the
    # user's credentials, and the file itself is replaced (a lock on it would be lost).
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_profile(path: Path, profile: str) -> dict[str, str] | None:
    """The profile's keys and values, or None if the file or the profile is absent."""
    parser = _load(Path(os.path.realpath(path)))
    return dict(parser[profile]) if parser.has_section(profile) else None


def write_shared_credentials(
    path: Path, profile: str, key_id: str, secret: str, region: str | None = None
) -> None:
    """Set `profile` in the credentials file at `path`, keeping every other profile."""
    # Write through a symlink (e.g. a linked ~/.aws/credentials), not over it.
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target):
        parser = _load(target)
        if parser.has_section(profile):
            parser.remove_section(profile)  # drop stale keys (e.g. an old session token)
        parser.add_section(profile)
        parser.set(profile, "aws_access_key_id", key_id)
        parser.set(profile, "aws_secret_access_key", secret)
        if region:
            parser.set(profile, "region", region)
        buffer = io.StringIO()
        parser.write(buffer)
        # 0600 from the first byte: the secret is never readable by others.
        write_atomically(target, buffer.getvalue().encode())
