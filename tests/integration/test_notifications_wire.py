"""Status-change notifications on the wire: the stream (`GET /v1/executions/events`,
HTTP Basic as curl) and webhooks delivered to a real local receiver that verifies the
Standard Webhooks signature, fails the first attempt and takes the retry; executions
are started with boto3. Another tenant sees none of it (404, an empty stream)."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from support.server import ServerProcess, client, deploy, new_tenant, v1
from support.workflows import WORKFLOW


@pytest.fixture(scope="module")
def lam(server: ServerProcess) -> Any:
    lam = client(server)
    deploy(lam, "notified", {"handler.py": WORKFLOW})
    return lam


def run(lam: Any, n: int) -> str:
    resp = lam.invoke(FunctionName="notified", Payload=json.dumps({"n": n}))
    assert json.loads(resp["Payload"].read()) == {"first": n * 2}
    return str(resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"])


def read_all(server: ServerProcess, credentials: tuple[str, str] | None = None) -> Any:
    events: list[dict[str, Any]] = []
    cursor = ""
    while True:
        query = "?limit=50" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        status, page = v1(server, "GET", "/v1/executions/events" + query, credentials=credentials)
        assert status == 200, page
        events += page["events"]
        if not page["events"]:
            return events, page["nextCursor"]
        cursor = page["nextCursor"]


class Receiver:
    """Fails the first attempt of every event (500) and takes the next one (204)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                msg_id = self.headers["webhook-id"]
                self.send_response(204 if msg_id in receiver.seen else 500)
                receiver.seen.add(msg_id)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/treadle"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver()
    yield box
    box.close()


def test_the_stream_shows_each_status_change_of_a_run_in_order(
    server: ServerProcess, lam: Any
) -> None:
    arn = run(lam, 1)
    events, cursor = read_all(server)
    mine = [e for e in events if e["detail"]["durableExecutionArn"] == arn]
    assert [e["detail"]["status"] for e in mine] == ["RUNNING", "SUCCEEDED"]
    closed = mine[1]
    assert closed["detail-type"] == "Durable Execution Status Change"
    assert closed["source"] == "treadle" and closed["account"] == "123456789012"
    assert closed["detail"]["functionArn"].endswith(":function:notified:$LATEST")
    assert closed["detail"]["previousStatus"] == "RUNNING"
    assert "endTimestamp" in closed["detail"] and "endTimestamp" not in mine[0]["detail"]
    # The cursor is stable: reading on from it finds nothing new, then the next run.
    assert read_all(server)[1] == cursor
    status, page = v1(server, "GET", f"/v1/executions/events?cursor={cursor}")
    assert (status, page["events"], page["nextCursor"]) == (200, [], cursor)
    later = run(lam, 2)
    status, page = v1(server, "GET", f"/v1/executions/events?cursor={cursor}")
    assert [e["detail"]["durableExecutionArn"] for e in page["events"]] == [later, later]


def test_start_latest_skips_what_is_kept_and_reads_on_from_now(
    server: ServerProcess, lam: Any
) -> None:
    run(lam, 4)
    status, page = v1(server, "GET", "/v1/executions/events?start=latest")
    assert status == 200 and page["events"] == [], page
    later = run(lam, 5)
    cursor = urllib.parse.quote(page["nextCursor"])
    status, page = v1(server, "GET", f"/v1/executions/events?cursor={cursor}")
    assert [e["detail"]["durableExecutionArn"] for e in page["events"]] == [later, later]


def test_a_long_poll_answers_with_the_status_change_it_waited_for(
    server: ServerProcess, lam: Any
) -> None:
    _, cursor = read_all(server)
    started: list[str] = []
    threading.Timer(0.5, lambda: started.append(run(lam, 3))).start()
    status, page = v1(server, "GET", f"/v1/executions/events?cursor={cursor}&waitSeconds=20")
    assert status == 200 and page["events"], page
    assert page["events"][0]["detail"]["status"] == "RUNNING"
    deadline = time.monotonic() + 30
    while not started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert page["events"][0]["detail"]["durableExecutionArn"] == started[0]


def test_a_webhook_gets_signed_deliveries_retried_after_a_failure(
    server: ServerProcess, lam: Any, receiver: Receiver
) -> None:
    body = {"url": receiver.url, "statuses": ["SUCCEEDED"], "functions": ["notified"]}
    status, made = v1(server, "POST", "/v1/webhooks", body)
    assert status == 201, made
    hook_id, secret = made["id"], made["secret"]
    assert secret.startswith("whsec_")
    status, shown = v1(server, "GET", f"/v1/webhooks/{hook_id}")
    assert status == 200 and "secret" not in shown and shown["statuses"] == ["SUCCEEDED"]
    arn = run(lam, 4)
    deadline = time.monotonic() + 60  # the retry comes 5 s after the failed attempt
    history: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        _, listed = v1(server, "GET", f"/v1/webhooks/{hook_id}/deliveries")
        # Only this run's: a change committed just before the webhook was made and
        # relayed after it goes to it too.
        history = [d for d in listed["deliveries"] if d["executionArn"] == arn]
        if history and history[0]["state"] == "DELIVERED":
            break
        time.sleep(0.2)
    assert [(d["executionArn"], d["status"], d["state"]) for d in history] == [
        (arn, "SUCCEEDED", "DELIVERED")
    ]
    assert [a.get("statusCode") for a in history[0]["attempts"]] == [500, 204]
    verified = [Verifier(secret).verify(raw, headers) for headers, raw in receiver.requests]
    ours = [e for e in verified if e["detail"]["durableExecutionArn"] == arn]
    assert [e["id"] for e in ours] == [history[0]["eventId"]] * 2  # the same event, twice
    status, _ = v1(server, "DELETE", f"/v1/webhooks/{hook_id}")
    assert status == 204
    assert v1(server, "GET", f"/v1/webhooks/{hook_id}")[0] == 404


def test_another_tenant_sees_no_event_and_no_webhook_of_this_one(
    server: ServerProcess, lam: Any, receiver: Receiver
) -> None:
    _, made = v1(server, "POST", "/v1/webhooks", {"url": receiver.url})
    hook_id = made["id"]
    arn = run(lam, 5)
    _, attacker = new_tenant(server, "attacker")
    events, _ = read_all(server, attacker)
    assert all(e["detail"]["durableExecutionArn"] != arn for e in events)
    assert events == []
    for method, path in [
        ("GET", f"/v1/webhooks/{hook_id}"),
        ("DELETE", f"/v1/webhooks/{hook_id}"),
        ("GET", f"/v1/webhooks/{hook_id}/deliveries"),
    ]:
        status, body = v1(server, method, path, credentials=attacker)
        assert status == 404, (method, path, body)
        assert body["error"]["code"] == "ResourceNotFoundException"
    assert v1(server, "GET", "/v1/webhooks", credentials=attacker)[1] == {"webhooks": []}
    assert v1(server, "GET", f"/v1/webhooks/{hook_id}")[0] == 200  # still there
    v1(server, "DELETE", f"/v1/webhooks/{hook_id}")


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("POST", "/v1/webhooks", {"url": "ftp://example.com/"}, "must be http:// or https://"),
        ("POST", "/v1/webhooks", {"url": "http://169.254.169.254/"}, "metadata"),
        ("POST", "/v1/webhooks", {"url": "https://x.test", "statuses": ["DONE"]}, "DONE"),
        ("POST", "/v1/webhooks", {"nope": 1}, "url"),
        ("GET", "/v1/executions/events?limit=0", None, "limit"),
        ("GET", "/v1/executions/events?waitSeconds=21", None, "waitSeconds"),
        ("GET", "/v1/executions/events?cursor=garbage", None, "Invalid cursor"),
        ("GET", "/v1/executions/events?start=newest", None, "start"),
        ("GET", "/v1/executions/events?start=latest&cursor=x", None, "not both"),
    ],
)
def test_bad_input_gets_a_precise_message(
    server: ServerProcess, method: str, path: str, body: Any, message: str
) -> None:
    status, out = v1(server, method, path, body)
    assert status == 400, out
    assert out["error"]["code"] == "InvalidParameterValueException"
    assert message in out["error"]["message"]
