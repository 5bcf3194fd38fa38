"""ASGI adapter of the HTTP application, served by uvicorn in embedded mode.

The application is synchronous (SQLite, blocking sandbox calls), so each request runs
on a worker thread; synchronous invokes may hold one for minutes, hence the pool size.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from treadle.api.app import Application
from treadle.api.http import Request


class AsgiAdapter:
    def __init__(self, app: Application, *, threads: int = 256) -> None:
        self._app = app
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw_path = scope.get("raw_path") or scope["path"].encode()
        request = Request.build(
            scope["method"],
            raw_path.decode("latin-1"),
            scope.get("query_string", b"").decode("latin-1"),
            {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            b"".join(chunks),
        )
        client = scope.get("client")
        if client:
            request.source_address = str(client[0])
        loop = asyncio.get_running_loop()
        response = await loop.run_in_executor(self._pool, self._app.handle, request)
        headers = [(k.encode(), v.encode()) for k, v in response.headers.items()]
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
