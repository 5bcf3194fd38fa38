"""One contract for every LogStore adapter: SQLite (embedded) and CloudWatch Logs (AWS).

The CloudWatch adapter runs against moto (`mock_aws`, a fresh account per test) with
patterns evaluated locally, as in emulated mode (moto matches only plain terms). Adding
an adapter is one entry in BACKENDS: a factory taking a fresh temporary directory and
returning the store and its cleanup.

Timestamps are recent: CloudWatch refuses events older than 14 days. Events of different
streams never share a millisecond: the order of such ties is the service's.

Tests at the end of the file exercise what only the CloudWatch adapter has: the group
names Lambda uses, filtering in the service, batching and error translation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from treadle.adapters.aws.cloudwatch_logs import CloudWatchLogStore, _batches
from treadle.adapters.aws.lambda_calls import physical_name
from treadle.adapters.sqlite.logs import SqliteLogStore
from treadle.domain.errors import InvalidParameter, Throttled, TreadleError
from treadle.domain.logfilter import LogFilterPatternError
from treadle.domain.logs import FilterResult, LogStore

T = "123456789012"
OTHER_TENANT = "210987654321"
STAGE = "test"
REGION = "us-east-1"
GROUP = "/aws/lambda/fn"
BASE = int(time.time() * 1000) - 3_600_000  # an hour ago: accepted by CloudWatch


def _sqlite(tmp: Path) -> tuple[LogStore, Callable[[], None]]:
    return SqliteLogStore(tmp / "logs.db"), lambda: None


def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never reach a real account or an endpoint configured in the environment.
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LOGS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def _cloudwatch(tmp: Path) -> tuple[LogStore, Callable[[], None]]:
    mock: AbstractContextManager[Any] = mock_aws()
    mock.__enter__()
    client = boto3.client("logs", region_name=REGION)
    store = CloudWatchLogStore(client, stage=STAGE, filter_locally=True)
    return store, lambda: mock.__exit__(None, None, None)


BACKENDS: dict[str, Callable[[Path], tuple[LogStore, Callable[[], None]]]] = {
    "sqlite": _sqlite,
    "cloudwatch": _cloudwatch,
}


@pytest.fixture(params=sorted(BACKENDS))
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LogStore]:
    _aws_env(monkeypatch)
    instance, cleanup = BACKENDS[request.param](tmp_path)
    yield instance
    cleanup()


def _filter(store: LogStore, group: str = GROUP, tenant: str = T, **kwargs: Any) -> FilterResult:
    options: dict[str, Any] = {
        "start_ms": None,
        "end_ms": None,
        "pattern": None,
        "stream_names": None,
        "stream_prefix": None,
        "limit": 10_000,
        "next_token": None,
    }
    options.update(kwargs)
    return store.filter(tenant, group, **options)


def _messages(result: FilterResult) -> list[str]:
    return [str(e["message"]) for e in result.events]


def _all_pages(store: LogStore, **kwargs: Any) -> list[list[str]]:
    pages, token = [], None
    while True:
        result = _filter(store, next_token=token, **kwargs)
        pages.append(_messages(result))
        token = result.next_token
        if token is None:
            return pages
        assert len(pages) < 20, "paging does not end"


@pytest.fixture
def logged(store: LogStore) -> LogStore:
    """Two invocations' streams, interleaved in time, plus JSON lines."""
    store.append(T, GROUP, "2025/01/01/[1]aaa", [(BASE + 0, "start a"), (BASE + 2, "ERROR a")])
    store.append(
        T,
        GROUP,
        "2025/01/01/[2]bbb",
        [(BASE + 1, "start b"), (BASE + 3, '{"level": "warn", "n": 7}'), (BASE + 4, "end b")],
    )
    store.append(T, GROUP, "2025/01/02/[2]ccc", [(BASE + 5, '{"level": "info", "n": 2}')])
    return store


# -- append, read back -----------------------------------------------------------------


def test_appended_events_come_back_in_time_order_with_their_fields(logged: LogStore) -> None:
    result = _filter(logged)
    assert result.next_token is None
    assert _messages(result) == [
        "start a",
        "start b",
        "ERROR a",
        '{"level": "warn", "n": 7}',
        "end b",
        '{"level": "info", "n": 2}',
    ]
    first = result.events[0]
    assert (first["logStreamName"], first["timestamp"]) == ("2025/01/01/[1]aaa", BASE)
    assert set(first) == {"logStreamName", "timestamp", "message", "ingestionTime", "eventId"}
    assert isinstance(first["eventId"], str) and first["ingestionTime"] >= BASE
    assert len({e["eventId"] for e in result.events}) == 6


def test_events_of_one_append_are_stored_in_time_order(store: LogStore) -> None:
    store.append(T, GROUP, "s", [(BASE + 2, "second"), (BASE + 1, "first"), (BASE + 3, "third")])
    assert _messages(_filter(store)) == ["first", "second", "third"]


def test_a_group_exists_once_its_function_logged(store: LogStore) -> None:
    assert not store.log_group_exists(T, GROUP)
    store.append(T, GROUP, "s", [])  # nothing to store: still no group
    assert not store.log_group_exists(T, GROUP)
    store.append(T, GROUP, "s", [(BASE, "hello")])
    assert store.log_group_exists(T, GROUP)
    assert not store.log_group_exists(T, "/aws/lambda/other")
    assert not store.log_group_exists(OTHER_TENANT, GROUP)


def test_a_tenant_reads_only_its_own_functions_logs(store: LogStore) -> None:
    store.append(T, GROUP, "s", [(BASE, "mine")])
    store.append(OTHER_TENANT, GROUP, "s", [(BASE + 1, "theirs")])
    assert _messages(_filter(store)) == ["mine"]
    assert _messages(_filter(store, tenant=OTHER_TENANT)) == ["theirs"]
    store.append(T, "/aws/lambda/fn2", "s", [(BASE + 2, "other function")])
    assert _messages(_filter(store)) == ["mine"]
    assert _messages(_filter(store, group="/aws/lambda/fn2")) == ["other function"]
    # Names that are no function's group hold nothing, whoever asks.
    for group in ("/aws/lambda/", "/aws/lambda/fn/../fn2", f"/aws/lambda/treadle-{STAGE}-{T}-fn"):
        assert _filter(store, group=group, tenant=OTHER_TENANT).events == []


# -- filters -----------------------------------------------------------------------------


def test_filter_by_time_range_with_inclusive_bounds(logged: LogStore) -> None:
    assert _messages(_filter(logged, start_ms=BASE + 2, end_ms=BASE + 4)) == [
        "ERROR a",
        '{"level": "warn", "n": 7}',
        "end b",
    ]
    assert _messages(_filter(logged, start_ms=BASE + 5)) == ['{"level": "info", "n": 2}']
    assert _messages(_filter(logged, end_ms=BASE)) == ["start a"]


def test_filter_by_stream_names_and_prefix(logged: LogStore) -> None:
    assert _messages(_filter(logged, stream_names=["2025/01/01/[1]aaa"])) == ["start a", "ERROR a"]
    assert _messages(_filter(logged, stream_prefix="2025/01/02")) == ['{"level": "info", "n": 2}']
    both = _filter(
        logged,
        stream_names=["2025/01/01/[1]aaa", "2025/01/02/[2]ccc"],
        stream_prefix="2025/01/02",
    )
    assert _messages(both) == ['{"level": "info", "n": 2}']
    assert _filter(logged, stream_names=["nope"]).events == []
    assert _filter(logged, stream_names=["2025/01/01/[1]aaa"], stream_prefix="x").events == []


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("ERROR", ["ERROR a"]),
        ("start", ["start a", "start b"]),
        ('"end b"', ["end b"]),
        ("?ERROR ?end", ["ERROR a", "end b"]),
        ("start -b", ["start a"]),
        ('{ $.level = "warn" }', ['{"level": "warn", "n": 7}']),
        ("{ $.n > 1 }", ['{"level": "warn", "n": 7}', '{"level": "info", "n": 2}']),
        ("", None),
    ],
)
def test_filter_patterns(logged: LogStore, pattern: str, expected: list[str] | None) -> None:
    everything = _messages(_filter(logged))
    assert _messages(_filter(logged, pattern=pattern)) == (expected or everything)


def test_pages_cut_at_the_limit_and_resume_where_they_stopped(logged: LogStore) -> None:
    # A last empty page may follow a full one: adapters need not look ahead.
    assert [p for p in _all_pages(logged, limit=2) if p] == [
        ["start a", "start b"],
        ["ERROR a", '{"level": "warn", "n": 7}'],
        ["end b", '{"level": "info", "n": 2}'],
    ]
    # With a filter, pages count matches only, however the events are spread.
    pages = [p for p in _all_pages(logged, limit=1, pattern="?start ?end") if p]
    assert pages == [["start a"], ["start b"], ["end b"]]
    pages = [p for p in _all_pages(logged, limit=2, stream_prefix="2025/01/01") if p]
    assert pages == [["start a", "start b"], ["ERROR a", '{"level": "warn", "n": 7}'], ["end b"]]


def test_bad_requests_are_invalid_parameters(logged: LogStore) -> None:
    for limit in (0, 10_001):
        with pytest.raises(InvalidParameter):
            _filter(logged, limit=limit)
    with pytest.raises(InvalidParameter):
        _filter(logged, next_token="not-a-token")
    with pytest.raises(LogFilterPatternError):
        _filter(logged, pattern="{ $.level = ")


# -- describe groups and streams ----------------------------------------------------------


def _groups(store: LogStore, tenant: str = T, **kwargs: Any) -> list[str]:
    options: dict[str, Any] = {"prefix": None, "limit": 50, "next_token": None, **kwargs}
    return [g["logGroupName"] for g in store.describe_groups(tenant, **options).items]


def _streams(store: LogStore, **kwargs: Any) -> list[str]:
    options: dict[str, Any] = {
        "prefix": None,
        "by_last_event": False,
        "descending": False,
        "limit": 50,
        "next_token": None,
        **kwargs,
    }
    return [s["logStreamName"] for s in store.describe_streams(T, GROUP, **options).items]


def test_a_tenant_describes_its_own_groups_only_by_name_and_prefix(store: LogStore) -> None:
    store.append(T, "/aws/lambda/b-fn", "s", [(BASE, "b")])
    store.append(T, GROUP, "s", [(BASE, "a")])
    store.append(OTHER_TENANT, "/aws/lambda/theirs", "s", [(BASE, "x")])
    assert _groups(store) == ["/aws/lambda/b-fn", GROUP]  # in name order
    assert _groups(store, prefix="/aws/lambda/b") == ["/aws/lambda/b-fn"]
    assert _groups(store, prefix="/aws") == sorted([GROUP, "/aws/lambda/b-fn"])
    assert _groups(store, prefix="/other") == []
    assert _groups(store, tenant=OTHER_TENANT) == ["/aws/lambda/theirs"]
    first = store.describe_groups(T, prefix=None, limit=50, next_token=None).items[0]
    assert {"logGroupName", "creationTime", "storedBytes"} <= set(first)


def test_group_pages_resume_where_they_stopped(store: LogStore) -> None:
    names = [f"/aws/lambda/fn-{i}" for i in range(5)]
    for name in names:
        store.append(T, name, "s", [(BASE, "x")])
    seen, token = [], None
    while True:
        page = store.describe_groups(T, prefix=None, limit=2, next_token=token)
        seen += [g["logGroupName"] for g in page.items]
        token = page.next_token
        if token is None:
            break
        assert len(seen) < 10, "paging does not end"
    assert seen == sorted(names)


def test_streams_are_described_by_name_or_last_event(logged: LogStore) -> None:
    assert _streams(logged) == ["2025/01/01/[1]aaa", "2025/01/01/[2]bbb", "2025/01/02/[2]ccc"]
    assert _streams(logged, prefix="2025/01/01") == ["2025/01/01/[1]aaa", "2025/01/01/[2]bbb"]
    newest_first = _streams(logged, by_last_event=True, descending=True)
    assert newest_first == ["2025/01/02/[2]ccc", "2025/01/01/[2]bbb", "2025/01/01/[1]aaa"]
    page = logged.describe_streams(
        T, GROUP, prefix=None, by_last_event=False, descending=False, limit=2, next_token=None
    )
    assert len(page.items) == 2 and page.next_token is not None
    rest = logged.describe_streams(
        T,
        GROUP,
        prefix=None,
        by_last_event=False,
        descending=False,
        limit=2,
        next_token=page.next_token,
    )
    assert [s["logStreamName"] for s in rest.items] == ["2025/01/02/[2]ccc"]
    bbb = next(s for s in page.items if s["logStreamName"] == "2025/01/01/[2]bbb")
    assert (bbb["firstEventTimestamp"], bbb["lastEventTimestamp"]) == (BASE + 1, BASE + 4)


def test_describe_limits_are_checked(logged: LogStore) -> None:
    with pytest.raises(InvalidParameter):
        logged.describe_groups(T, prefix=None, limit=51, next_token=None)
    with pytest.raises(InvalidParameter):
        logged.describe_streams(
            T,
            GROUP,
            prefix=None,
            by_last_event=False,
            descending=False,
            limit=0,
            next_token=None,
        )


# -- CloudWatch only -------------------------------------------------------------------------


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    _aws_env(monkeypatch)
    with mock_aws():
        yield boto3.client("logs", region_name=REGION)


def test_logs_go_to_the_group_lambda_writes_for_the_tenant_function(logs: Any) -> None:
    store = CloudWatchLogStore(logs, stage=STAGE)
    long_name = "f" * 64
    store.append(T, GROUP, "s", [(BASE, "short")])
    store.append(T, f"/aws/lambda/{long_name}", "s", [(BASE, "long")])
    groups = sorted(g["logGroupName"] for g in logs.describe_log_groups()["logGroups"])
    assert groups == sorted(
        [
            f"/aws/lambda/treadle-{STAGE}-{T}-fn",
            f"/aws/lambda/{physical_name(STAGE, T, long_name)}",
        ]
    )
    assert len(physical_name(STAGE, T, long_name)) == 64
    # A group Lambda made (the function ran on AWS) is read the same way.
    logs.create_log_group(logGroupName=f"/aws/lambda/treadle-{STAGE}-{OTHER_TENANT}-fn")
    logs.create_log_stream(
        logGroupName=f"/aws/lambda/treadle-{STAGE}-{OTHER_TENANT}-fn", logStreamName="x"
    )
    logs.put_log_events(
        logGroupName=f"/aws/lambda/treadle-{STAGE}-{OTHER_TENANT}-fn",
        logStreamName="x",
        logEvents=[{"timestamp": BASE, "message": "from lambda"}],
    )
    assert store.log_group_exists(OTHER_TENANT, GROUP)
    assert _messages(_filter(store, tenant=OTHER_TENANT)) == ["from lambda"]
    with pytest.raises(InvalidParameter):
        store.append(T, "/not/a/function", "s", [(BASE, "x")])
    with pytest.raises(ValueError):
        CloudWatchLogStore(logs, stage="Bad-Stage")


def test_patterns_are_the_services_unless_filtered_locally(logs: Any) -> None:
    store = CloudWatchLogStore(logs, stage=STAGE)
    store.append(T, GROUP, "s", [(BASE, "ERROR one"), (BASE + 1, "fine"), (BASE + 2, "ERROR 2")])
    assert _messages(_filter(store, pattern="ERROR")) == ["ERROR one", "ERROR 2"]
    pages = [p for p in _all_pages(store, pattern="ERROR", limit=1) if p]
    assert pages == [["ERROR one"], ["ERROR 2"]]
    # moto returns everything for a pattern it cannot evaluate: why emulated mode filters here.
    assert len(_filter(store, pattern="{ $.n > 1 }").events) == 3
    local = CloudWatchLogStore(logs, stage=STAGE, filter_locally=True)
    assert _filter(local, pattern="{ $.n > 1 }").events == []


def test_appends_are_batched_within_put_log_events_limits() -> None:
    many = [(BASE + i % 7, f"line {i}") for i in range(10_001)]
    batches = list(_batches(many))
    assert [len(b) for b in batches] == [10_000, 1]
    stamps = [e["timestamp"] for b in batches for e in b]
    assert stamps == sorted(stamps)
    big = list(_batches([(BASE, "x" * 300_000)] * 5 + [(BASE, "")]))
    assert all(sum(len(e["message"]) + 26 for e in b) <= 1_048_576 for b in big)
    assert sum(len(b) for b in big) == 5  # the empty message is dropped
    assert all(len(e["message"]) == 256 * 1024 - 26 for b in big for e in b)
    day = list(_batches([(BASE, "a"), (BASE + 24 * 3600 * 1000, "b")]))
    assert [len(b) for b in day] == [1, 1]


def test_service_errors_become_domain_errors(logs: Any) -> None:
    store = CloudWatchLogStore(logs, stage=STAGE)
    with Stubber(logs) as stubber:
        stubber.add_client_error("filter_log_events", "ThrottlingException", "slow down", 400)
        stubber.add_client_error("describe_log_streams", "AccessDeniedException", "no", 400)
        stubber.add_client_error("put_log_events", "ServiceUnavailableException", "down", 503)
        stubber.add_client_error(
            "filter_log_events", "InvalidParameterException", "bad pattern", 400
        )
        with pytest.raises(Throttled) as throttled:
            _filter(store)
        with pytest.raises(TreadleError) as denied:
            store.log_group_exists(T, GROUP)
        with pytest.raises(TreadleError) as down:
            store.append(T, GROUP, "s", [(BASE, "x")])
        with pytest.raises(InvalidParameter, match="bad pattern"):
            _filter(store, pattern="whatever")
    assert throttled.value.retryable and down.value.retryable
    assert not denied.value.retryable
