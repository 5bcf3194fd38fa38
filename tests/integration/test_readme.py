"""The README's commands work: each `bash` and `python` block runs, in order, against a
fresh `treadle dev` (blocks marked `console` start long-running things or need a moto
server, and are left to the demo and the other tests; `python tenant` blocks run inside a
tenant's function, where their own tests run them).

Run as the README's reader would, from an empty directory beside `examples/`, with the
AWS CLI and boto3 of the venv; the README's address (127.0.0.1:9000) and data directory
(.data) are replaced by the test server's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.server import ServerProcess

CHECKOUT = Path(__file__).resolve().parent.parent.parent
README = CHECKOUT / "README.md"
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.MULTILINE | re.DOTALL)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="the README creates a second tenant: a host that cannot isolate tenants refuses it",
)


def _blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(README.read_text())]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("readme") / "data")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_the_readme_has_runnable_blocks() -> None:
    kinds = [kind for kind, _ in _blocks()]
    assert kinds.count("bash") >= 3 and "python" in kinds


def test_every_readme_block_runs(server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(CHECKOUT / "examples")
    address = server.url.removeprefix("http://")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "TREADLE_")) and k not in ("PYTHONPATH",)
    }
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"),
        AWS_PROFILE="treadle",
        AWS_ENDPOINT_URL=server.url,
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        GIT_AUTHOR_NAME="reader",
        GIT_AUTHOR_EMAIL="reader@example.com",
        GIT_COMMITTER_NAME="reader",
        GIT_COMMITTER_EMAIL="reader@example.com",
        HOME=str(tmp_path),
    )
    for n, (kind, text) in enumerate(_blocks()):
        text = text.replace("127.0.0.1:9000", address)
        text = text.replace(".data/credentials", str(server.data_dir / "credentials"))
        if kind == "bash":
            cmd = ["bash", "-euo", "pipefail", "-c", text]
        else:
            cmd = [sys.executable, "-c", text]
        done = subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"block {n} ({kind}):\n{text}\n{done.stdout}\n{done.stderr}"
        if "out.json" in text:
            assert (tmp_path / "out.json").read_text() == '"Hello, world!"'
