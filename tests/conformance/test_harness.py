"""The harness's own rules: which requirements poll promptly, and that the copy it
runs says only that more than the package's YAML."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from aws_durable_execution_conformance_tests.config import TESTS_DIR
from aws_durable_execution_conformance_tests.history import load_yaml_file
from aws_durable_execution_conformance_tests.validate import AsyncValidationConfig
from harness import PROMPT_POLL_S, ConformanceRun, _description_to_run


def test_a_callback_answered_inside_a_wait_is_polled_promptly(tmp_path: Path) -> None:
    original = Path(TESTS_DIR) / "callback" / "4-9.yaml"
    copy = _description_to_run(original, tmp_path)
    assert copy != original
    ran = load_yaml_file(str(copy))
    config = AsyncValidationConfig.from_dict(ran.pop("AsyncConfig"))
    assert config.poll_interval_seconds == PROMPT_POLL_S
    assert ran == load_yaml_file(str(original))


def test_other_requirements_run_from_the_packages_own_yaml(tmp_path: Path) -> None:
    for suite, rid in (("callback", "4-1"), ("wait", "2-1"), ("step", "1-1")):
        original = Path(TESTS_DIR) / suite / f"{rid}.yaml"
        assert _description_to_run(original, tmp_path) == original
    assert not (tmp_path / "descriptions").exists()


def test_a_failure_shows_what_the_servers_logged_about_its_functions(tmp_path: Path) -> None:
    fast, real = tmp_path / "fast-server.log", tmp_path / "real-server.log"
    fast.write_text(
        "execution e1 of conf-callback-4-16 RUNNING\nexecution e2 of conf-callback-4-1 X\n"
    )
    real.write_text("invocation r9 of conf-callback-4-16 failed: Sandbox.Timedout\n")
    run = ConformanceRun.__new__(ConformanceRun)
    run.fast = SimpleNamespace(server=SimpleNamespace(log_path=fast))  # type: ignore[assignment]
    run.real = SimpleNamespace(server=SimpleNamespace(log_path=real))  # type: ignore[assignment]
    lines = run._server_lines("4-16")
    assert lines[-2:] == [
        "execution e1 of conf-callback-4-16 RUNNING",
        "invocation r9 of conf-callback-4-16 failed: Sandbox.Timedout",
    ]
    assert not any("4-1 X" in line for line in lines)
    assert run._server_lines("4-1")[-1:] == ["execution e2 of conf-callback-4-1 X"]  # not 4-16
    assert len(run._server_lines("4-1")) == 3  # a blank line, the heading, the one line
    assert run._server_lines("5-3") == []
