"""`treadle dev`: the embedded platform in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from treadle.settings import (
    ENV_BACKEND,
    ENV_DATA_DIR,
    ENV_HOST,
    ENV_INSECURE_MULTI_TENANT,
    ENV_LOG_FORMAT,
    ENV_LOG_LEVEL,
    ENV_OTEL_EXPORTER,
    ENV_PORT,
    ENV_PROCESSES,
    ENV_WAIT_TIME_SCALE,
    Settings,
)

log = logging.getLogger("treadle")
GRACEFUL_STOP_S = 5
# How long the first of `--processes N` waits for the others before it says "ready".
READY_WAIT_S = 60


def _bind(host: str, port: int, *, shared: bool = False) -> socket.socket:
    """`shared`: one of the sockets of `--processes N` on one port. The kernel spreads
    new connections over them by address hash; one socket shared by all would hand most
    to the process whose event loop happens to wake first (measured: 30 of 30)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Responses go out as two writes (head, body): without TCP_NODELAY, Nagle holds the
    # second until the client ACKs the first, which delayed ACK postpones by ~40 ms.
    # Linux passes the option on to accepted connections.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def dev(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(
            host=args.host,
            port=args.port,
            data_dir=Path(args.data_dir) if args.data_dir else None,
            wait_time_scale=args.wait_time_scale,
            backend=args.backend,
            insecure_multi_tenant=args.insecure_multi_tenant,
            log_level=args.log_level,
            log_format=args.log_format,
            otel_exporter=args.otel_exporter,
            processes=args.processes,
        )
    except ValidationError as exc:
        print(f"treadle: invalid settings: {Settings.describe_error(exc)}", file=sys.stderr)
        return 2
    # Imported here, not at the top: the CLI's client commands share this module's parser
    # and need none of the platform (half a second of imports for each of their runs).
    import uvicorn

    from treadle import affinity
    from treadle.api.asgi import AsgiAdapter
    from treadle.cli.processes import Supervisor, role_from_env
    from treadle.domain.partition import Partition
    from treadle.observability import server_log, tracing
    from treadle.platform import ADMIN_PROFILE, TENANT_PROFILE, StartupError, open_platform

    role = role_from_env()  # one of the others of `--processes N`, started by the first
    if settings.pin_cores:
        # First, so that every thread started from here on inherits it.
        affinity.pin(0 if role is None else role.index)
    server_log.configure(settings.log_level, settings.log_format)
    provider = tracing.configure(settings.otel_exporter)
    listen_port = settings.port if role is None else role.port
    try:
        sock = _bind(settings.host, listen_port, shared=settings.processes > 1)
    except OSError as exc:
        print(
            f"treadle: cannot listen on {settings.host}:{listen_port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    port = sock.getsockname()[1]
    try:
        platform = open_platform(
            settings,
            endpoint=f"http://{settings.host}:{port}",
            partition=Partition(0 if role is None else role.index, settings.processes),
            lock_fd=None if role is None else role.lock_fd,
        )
    except StartupError as exc:
        print(f"treadle: {exc.message}", file=sys.stderr)
        return 2
    platform.start()
    supervisor = None
    if role is None and settings.processes > 1:
        supervisor = Supervisor(args.argv, settings.processes, port, platform.lock_fd)
        supervisor.start()
    adapter = AsgiAdapter(platform.app)
    config = uvicorn.Config(
        adapter,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=75,
        # Past this, requests still running at a stop are cut (a plain function's handler
        # may run for 15 minutes); held requests have been ended already (below).
        timeout_graceful_shutdown=GRACEFUL_STOP_S,
    )
    server = uvicorn.Server(config)
    url = f"http://{settings.host}:{port}"

    def _ready() -> None:
        if role is not None:
            log.info("server process %d of %d is ready", role.index, settings.processes)
            role.ready()
            return
        creds = platform.credentials_path
        where = f"data in {settings.data_dir}"
        if settings.backend == "aws":
            where += f"; DynamoDB table {settings.table_name}, S3 bucket {settings.bucket_name}"
            if settings.aws_endpoint_url:
                where += f" at {settings.aws_endpoint_url}"
        print(
            f"Treadle is ready at {url} ({where})\n"
            f"  Tenant {settings.default_account}: its keys are profile '{TENANT_PROFILE}' in "
            f"{creds} (the admin's: '{ADMIN_PROFILE}'). Use them with:\n"
            f"    export AWS_SHARED_CREDENTIALS_FILE={creds} AWS_PROFILE={TENANT_PROFILE} "
            f"AWS_ENDPOINT_URL={url}\n"
            f"    aws lambda list-functions",
            flush=True,
        )
        if platform.isolation_shortcomings:
            reason = "; ".join(platform.isolation_shortcomings)
            mode = (
                "INSECURE multi-tenant mode (--insecure-multi-tenant): tenants' code is "
                "not isolated from each other"
                if settings.insecure_multi_tenant
                else "Single-tenant mode: a second tenant is refused"
            )
            print(f"  {mode}, because {reason}.", flush=True)

    original_startup = server.startup

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await original_startup(sockets=sockets)
        # "Ready" once every process serves (this one serves meanwhile).
        if supervisor is not None and not await asyncio.to_thread(
            supervisor.wait_ready, READY_WAIT_S
        ):
            log.warning("not every server process is ready yet; serving with those that are")
        _ready()

    server.startup = startup  # type: ignore[method-assign]
    original_shutdown = server.shutdown

    async def shutdown(sockets: list[socket.socket] | None = None) -> None:
        # Synchronous durable invokes and long polls answer now (the executions go on
        # after a restart), instead of holding the stop up for up to 50 s each.
        if supervisor is not None:
            supervisor.signal_stop()  # the others stop alongside, in the same way
        platform.end_held_requests()
        await original_shutdown(sockets=sockets)

    server.shutdown = shutdown  # type: ignore[method-assign]

    def _stop(signum: int, _frame: FrameType | None) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # Ctrl-C: asyncio cancels the server and re-raises the interrupt once it has
        # stopped; what is left to do is the same orderly close as after SIGTERM.
        log.info("interrupted: stopping")
    finally:
        if supervisor is not None:
            supervisor.wait(GRACEFUL_STOP_S + 2)
        adapter.close()
        platform.close()
        if provider is not None:
            provider.shutdown()  # the spans still batched go out
    # Everything is closed and the log lines flushed: the interpreter's own teardown
    # (0.2 s of freeing every module and object) has nothing left to do that matters,
    # and a supervisor or test restarting the server waits for it. The platform
    # survives kill -9 at any instant, so skipping it cannot lose anything either.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p_dev = sub.add_parser("dev", help="run the embedded platform in the foreground")
    # Unset options fall back to the environment, then to the settings' defaults.
    defaults = Settings()
    p_dev.add_argument(
        "--host",
        default=None,
        help=f"address to listen on (default: ${ENV_HOST} or {defaults.host})",
    )
    p_dev.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port to listen on, 0 for any free one (default: ${ENV_PORT} or {defaults.port})",
    )
    p_dev.add_argument(
        "--data-dir",
        default=None,
        help=f"where the platform keeps its data (default: ${ENV_DATA_DIR} or {defaults.data_dir})",
    )
    p_dev.add_argument(
        "--backend",
        choices=("embedded", "aws"),
        default=None,
        help="embedded: SQLite and local files; aws: DynamoDB, S3, SQS and Lambda through "
        f"boto3, at AWS_ENDPOINT_URL if set (default: ${ENV_BACKEND} or {defaults.backend})",
    )
    p_dev.add_argument(
        "--insecure-multi-tenant",
        action="store_true",
        default=None,
        help="serve several tenants even where this host cannot isolate their code "
        f"(default: ${ENV_INSECURE_MULTI_TENANT} or false)",
    )
    p_dev.add_argument(
        "--wait-time-scale",
        type=float,
        default=None,
        help="test clock: fire waits and retries after this fraction of their duration "
        f"(default: ${ENV_WAIT_TIME_SCALE} or {defaults.wait_time_scale:g})",
    )
    p_dev.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        type=str.upper,
        default=None,
        help="the server's own lines: INFO shows every execution status change, WARNING "
        f"only invocation errors (default: ${ENV_LOG_LEVEL} or {defaults.log_level})",
    )
    p_dev.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="text for a terminal, json for one object a line "
        f"(default: ${ENV_LOG_FORMAT} or {defaults.log_format})",
    )
    p_dev.add_argument(
        "--otel-exporter",
        choices=("none", "console", "otlp"),
        default=None,
        help="where OpenTelemetry spans go; otlp reads the OTEL_EXPORTER_OTLP_* variables "
        f"(default: ${ENV_OTEL_EXPORTER} or {defaults.otel_exporter})",
    )
    p_dev.add_argument(
        "--processes",
        type=int,
        default=None,
        help="server processes sharing the data directory and the port, each driving its "
        f"share of the executions (default: ${ENV_PROCESSES} or {defaults.processes})",
    )
    p_dev.set_defaults(run=dev)
