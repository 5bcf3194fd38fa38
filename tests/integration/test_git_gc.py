"""Reclaiming unreachable Git objects (`artifacts/gc.py`) with the real `git` CLI: a
branch pushed then deleted leaves objects no ref reaches; a repack after the grace
period removes them, keeps everything reachable (a fresh clone still works, fsck
clean), moves the repository-bytes counter, and never touches a young pack."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import test_git_artifacts as base
from dulwich.objects import ObjectID
from test_git_artifacts import GitServer, Stack, clone, commit_file, git

from treadle.artifacts.gc import collect_objects
from treadle.artifacts.ports import repo_prefix

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")

stack, server, git_env = base.stack, base.server, base.git_env  # the same fixtures

TENANT = "123456789012"
LATER = 10**15  # far after every pack was written: the grace period has passed


def _has(stack: Stack, sha: str) -> bool:
    with stack.repos.open(TENANT, "app") as r:
        return ObjectID(sha.encode()) in r.object_store


def _stored_bytes(stack: Stack) -> int:
    return sum(i.size for i in stack.repos.objects.list_info(repo_prefix(TENANT, "app")))


def _push_and_delete_a_branch(
    stack: Stack, server: GitServer, env: dict[str, str], tmp_path: Path
) -> tuple[str, str, str]:
    """main with one commit; `topic`'s commit pushed, then the branch deleted."""
    stack.service.create_repo(TENANT, "app")
    work = clone(env, server.url("app"), tmp_path / "work")
    kept = commit_file(env, work, "handler.py", "def handler(e, c):\n    return e\n")
    git(env, work, "push", "-q", "origin", "HEAD:refs/heads/main")
    git(env, work, "checkout", "-q", "-b", "topic")
    gone = commit_file(env, work, "secret.txt", "a blob only the topic branch has\n")
    blob = git(env, work, "rev-parse", "HEAD:secret.txt").strip()
    git(env, work, "push", "-q", "origin", "HEAD:refs/heads/topic")
    git(env, work, "push", "-q", "origin", ":refs/heads/topic")
    return kept, gone, blob


def test_objects_no_ref_reaches_are_reclaimed_and_a_clone_still_works(
    stack: Stack, server: GitServer, git_env: dict[str, str], tmp_path: Path
) -> None:
    kept, gone, blob = _push_and_delete_a_branch(stack, server, git_env, tmp_path)
    assert _has(stack, gone) and _has(stack, blob)
    counted = stack.repos.refs.repo_bytes(TENANT)
    assert counted == _stored_bytes(stack) > 0  # every pushed pack was counted

    dry = collect_objects(stack.repos, TENANT, "app", LATER, dry_run=True)
    assert dry is not None and dry.unreachable == 3  # the commit, its tree and the blob
    assert _has(stack, gone)  # a dry run removes nothing

    report = collect_objects(stack.repos, TENANT, "app", LATER)
    # Only the topic's pack held garbage (all of it): main's pack stays as it was.
    assert report is not None and report.unreachable == 3 and report.packs_removed == 1
    assert not _has(stack, gone) and not _has(stack, blob)
    assert _has(stack, kept)
    assert stack.repos.refs.repo_bytes(TENANT) == _stored_bytes(stack)
    assert collect_objects(stack.repos, TENANT, "app", LATER) is None  # nothing left

    again = clone(git_env, server.url("app"), tmp_path / "again")
    assert git(git_env, again, "rev-parse", "HEAD").strip() == kept
    assert (again / "handler.py").read_text().startswith("def handler")
    git(git_env, again, "fsck", "--full", "--strict")
    commit_file(git_env, again, "more.py", "x = 1\n")  # and pushing on top still works
    git(git_env, again, "push", "-q", "origin", "HEAD:refs/heads/main")


def test_packs_within_the_grace_period_are_never_touched(
    stack: Stack, server: GitServer, git_env: dict[str, str], tmp_path: Path
) -> None:
    _kept, gone, _blob = _push_and_delete_a_branch(stack, server, git_env, tmp_path)
    now_ms = int(time.time() * 1000)
    # A push in flight stores its pack before its refs move: young packs stay.
    assert collect_objects(stack.repos, TENANT, "app", now_ms) is None
    assert _has(stack, gone)


def test_packs_a_fork_holds_are_kept(
    stack: Stack, server: GitServer, git_env: dict[str, str], tmp_path: Path
) -> None:
    _kept, gone, _blob = _push_and_delete_a_branch(stack, server, git_env, tmp_path)
    stack.service.create_repo(TENANT, "fork", fork_of="app")
    assert collect_objects(stack.repos, TENANT, "app", LATER) is None
    assert _has(stack, gone)
    fork = clone(git_env, server.url("fork"), tmp_path / "fork")
    git(git_env, fork, "fsck", "--full")


def test_a_pack_of_reachable_and_unreachable_objects_is_rewritten_without_the_latter(
    stack: Stack, server: GitServer, git_env: dict[str, str], tmp_path: Path
) -> None:
    stack.service.create_repo(TENANT, "app")
    work = clone(git_env, server.url("app"), tmp_path / "work")
    commit_file(git_env, work, "a.txt", "a\n")
    git(git_env, work, "push", "-q", "origin", "HEAD:refs/heads/main")
    git(git_env, work, "checkout", "-q", "-b", "topic")
    merged = commit_file(git_env, work, "b.txt", "b\n")
    dropped = commit_file(git_env, work, "c.txt", "c\n")
    git(git_env, work, "push", "-q", "origin", "HEAD:refs/heads/topic")  # one pack: both
    git(git_env, work, "push", "-q", "origin", f"{merged}:refs/heads/main")  # no new pack
    git(git_env, work, "push", "-q", "origin", ":refs/heads/topic")

    report = collect_objects(stack.repos, TENANT, "app", LATER)
    assert report is not None and (report.unreachable, report.packs_removed) == (3, 1)
    assert _has(stack, merged) and not _has(stack, dropped)
    assert stack.repos.refs.repo_bytes(TENANT) == _stored_bytes(stack)
    again = clone(git_env, server.url("app"), tmp_path / "again")
    assert git(git_env, again, "rev-parse", "HEAD").strip() == merged
    assert (again / "b.txt").read_text() == "b\n" and not (again / "c.txt").exists()
    git(git_env, again, "fsck", "--full", "--strict")
