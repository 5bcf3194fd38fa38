"""An agent session: it keeps its memory in a facet and commits its output to a Git
repository of its own, one facet and one repository per session.

Tenant code as a SaaS customer writes it: the official durable SDK, `treadle_facets`
for storage, and the platform's endpoint (`AWS_ENDPOINT_URL_LAMBDA`, signed with the
function's own credentials, the sandbox key) to create the session's repository and
mint a token for it; Git itself is dulwich's client. Each step is replayed from the
record, never run again, once it is checkpointed; the facet write is exactly once even
if the process dies mid-step (`once`, keyed by the step's identity).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import urllib.error
import urllib.request
from typing import Any

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from dulwich import porcelain

from treadle_facets import connect, once, step_key


def _platform(method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    """A `/v1` call at the function's endpoint, signed with its own credentials."""
    key = f"{os.environ['AWS_ACCESS_KEY_ID']}:{os.environ['AWS_SECRET_ACCESS_KEY']}"
    request = urllib.request.Request(
        os.environ["AWS_ENDPOINT_URL_LAMBDA"] + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={
            "authorization": "Basic " + base64.b64encode(key.encode()).decode(),
            "content-type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def remember(step_ctx: StepContext, session: str, task: str) -> list[str]:
    """Add the task to the session's memory (exactly once); all it remembers so far."""
    db = connect(f"agent-{session}")
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS memory(id INTEGER PRIMARY KEY, note TEXT)")

    def effect(db: Any) -> str:
        db.execute("INSERT INTO memory(note) VALUES (?)", (task,))
        return "remembered"

    once(db, step_key(step_ctx), effect)
    notes = [row[0] for row in db.execute("SELECT note FROM memory ORDER BY id")]
    db.close()
    return notes


def publish(step_ctx: StepContext, session: str, notes: list[str]) -> dict[str, str]:
    """Commit the session's report to its own repository; the commit's id."""
    repo = f"session-{session}"
    status, body = _platform("POST", "/v1/repos", {"name": repo})
    if status not in (201, 409):  # 409: made by an earlier attempt of this step
        raise RuntimeError(f"cannot create {repo}: {status} {body}")
    status, token = _platform("POST", f"/v1/repos/{repo}/tokens", {"access": "write"})
    if status != 201:
        raise RuntimeError(f"cannot get a token for {repo}: {status} {token}")
    # Git at the same endpoint: `/git/<account>/<repo>.git`, as the clone URL names it.
    endpoint = os.environ["AWS_ENDPOINT_URL_LAMBDA"].removeprefix("http://")
    path = token["cloneUrl"].split("/git/", 1)[1]
    url = f"http://x-token:{token['token']}@{endpoint}/git/{path}"
    work = os.path.join(os.environ.get("TMPDIR", "/tmp"), repo)
    shutil.rmtree(work, ignore_errors=True)
    os.environ.setdefault("USER", "agent")  # the tenant's uid has no passwd entry
    porcelain.init(work)
    with open(os.path.join(work, "REPORT.md"), "w") as report:
        report.write(f"# Session {session}\n\n" + "".join(f"- {n}\n" for n in notes))
    porcelain.add(work, [os.path.join(work, "REPORT.md")])
    commit = porcelain.commit(
        work,
        message=f"report of session {session}".encode(),
        author=b"Agent <agent@example.com>",
        committer=b"Agent <agent@example.com>",
    )
    porcelain.push(work, url, "HEAD:refs/heads/main", errstream=io.BytesIO(), force=True)
    shutil.rmtree(work, ignore_errors=True)
    return {"repository": repo, "commit": commit.decode()}


@durable_execution
def handler(event: dict[str, Any], context: DurableContext) -> dict[str, Any]:
    session, tasks = event["session"], event["tasks"]
    notes: list[str] = []
    for n, task in enumerate(tasks):
        notes = context.step(
            lambda step_ctx, task=task: remember(step_ctx, session, task), name=f"remember-{n}"
        )
    published = context.step(lambda step_ctx: publish(step_ctx, session, notes), name="publish")
    return {"session": session, "memory": notes, **published}
