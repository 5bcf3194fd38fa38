"""How the client commands reach a Treadle endpoint: the AWS CLI's own settings.

The same credentials file, profile and endpoint variables as `aws` (AWS_SHARED_CREDENTIALS_FILE,
AWS_PROFILE, AWS_ENDPOINT_URL), so what `treadle dev` prints for the AWS CLI works here too.
Lambda-shaped calls go through boto3; `/v1` calls through HTTP Basic with the same key pair
(the platform accepts both, see README "Run the platform yourself").
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
)

from treadle.settings import ENV_AWS_ENDPOINT_URL

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_logs import CloudWatchLogsClient

DEFAULT_REGION = "us-east-1"
_HINT = (
    "set AWS_SHARED_CREDENTIALS_FILE and AWS_PROFILE as `treadle dev` prints at start "
    "(or pass --profile)"
)


class CliError(Exception):
    """A failure to tell the user in one line, with the exit status to leave with."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Remote:
    session: boto3.Session
    endpoint: str

    @classmethod
    def open(cls, profile: str | None, endpoint: str | None, region: str | None) -> Remote:
        url = (
            endpoint
            or os.environ.get("AWS_ENDPOINT_URL_LAMBDA")
            or os.environ.get(ENV_AWS_ENDPOINT_URL)
        )
        if not url:
            raise CliError(
                f"no endpoint: set {ENV_AWS_ENDPOINT_URL} (the URL `treadle dev` prints) "
                "or pass --endpoint-url",
                2,
            )
        try:
            session = boto3.Session(profile_name=profile, region_name=region)
        except ProfileNotFound as exc:
            raise CliError(f"{exc}: {_HINT}", 2) from None
        if session.region_name is None:
            session = boto3.Session(profile_name=profile, region_name=DEFAULT_REGION)
        return cls(session, url.rstrip("/"))

    def _config(self) -> Config:
        # A durable invoke or a long poll may take a while; a retry must not start twice.
        return Config(read_timeout=70, retries={"max_attempts": 2, "mode": "standard"})

    def lambda_(self) -> LambdaClient:
        lam = self.session.client("lambda", endpoint_url=self.endpoint, config=self._config())
        lam.meta.events.register("after-call.lambda.GetDurableExecution", _keep_treadle_fields)
        return lam

    def logs(self) -> CloudWatchLogsClient:
        return self.session.client("logs", endpoint_url=self.endpoint, config=self._config())

    def v1(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        """One `/v1` call; the decoded JSON answer (None for 204), or CliError."""
        creds = self.session.get_credentials()
        if creds is None:
            raise CliError(f"no credentials: {_HINT}", 2)
        frozen = creds.get_frozen_credentials()
        basic = base64.b64encode(f"{frozen.access_key}:{frozen.secret_key}".encode()).decode()
        url = self.endpoint + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Basic {basic}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=70) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise CliError(_v1_message(exc.code, exc.read())) from None
        except (urllib.error.URLError, OSError) as exc:
            raise CliError(
                f"cannot reach {self.endpoint}: {exc}; is `treadle dev` running?"
            ) from None
        return json.loads(raw) if raw else None


# Treadle's additions to GetDurableExecution (docs/redrive.md): botocore's parser drops
# members its model does not know, so they are taken from the raw answer.
_TREADLE_FIELDS = ("RedrivenFrom", "RedrivenTo")


def _keep_treadle_fields(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
    try:
        raw = json.loads(http_response.content)
    except (ValueError, TypeError):
        return
    if isinstance(raw, dict):
        parsed.update({k: raw[k] for k in _TREADLE_FIELDS if k in raw})


def _v1_message(status: int, raw: bytes) -> str:
    try:
        error = json.loads(raw)["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}: {raw[:200].decode(errors='replace')}"


@contextmanager
def aws_errors(endpoint: str) -> Iterator[None]:
    """What boto3 raises, as one line each: the service's code and message, or what to fix."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CliError(f"{error.get('Code', 'Error')}: {error.get('Message', exc)}") from None
    except NoCredentialsError:
        raise CliError(f"no credentials: {_HINT}", 2) from None
    except EndpointConnectionError:
        raise CliError(f"cannot reach {endpoint}: is `treadle dev` running?") from None
    except BotoCoreError as exc:
        raise CliError(str(exc)) from None


def paginate(call: Callable[..., Any], key: str, limit: int | None, **kwargs: Any) -> list[Any]:
    """Marker-paged Lambda lists (`Marker` in, `NextMarker` out), up to `limit` items."""
    items: list[Any] = []
    marker: str | None = None
    while limit is None or len(items) < limit:
        page = call(**kwargs, **({"Marker": marker} if marker else {}))
        items += page.get(key, [])
        marker = page.get("NextMarker")
        if not marker:
            break
    return items if limit is None else items[:limit]
