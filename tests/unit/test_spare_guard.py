"""A tenant's spare (confined ahead for one tenant) refuses a spec of any other."""

from __future__ import annotations

import socket

import pytest

from treadle.adapters.sandbox import runtime


def test_a_spare_refuses_a_spec_for_another_tenants_uid() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        spare = {"t": "spare", "confine": {"uid": 1001, "hide": []}, "code_home": "/c/111"}
        spec = {"t": "spec", "code_dir": "/c/111/k", "confine": {"uid": 1002}}
        with pytest.raises(PermissionError, match="another tenant"):
            runtime._finish_spare(theirs, spare, spec, {})
        spec_without_plan = {"t": "spec", "code_dir": "/c/111/k", "confine": None}
        with pytest.raises(PermissionError, match="another tenant"):
            runtime._finish_spare(theirs, spare, spec_without_plan, {})


def test_a_spares_code_must_be_in_its_tenants_code_home() -> None:
    from treadle.adapters.sandbox import rootfs

    with pytest.raises(PermissionError, match="not code of this spare's tenant"):
        rootfs.attach_function(-1, -1, "/c/222/k", "/c/111")
