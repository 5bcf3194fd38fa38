"""Every setting's environment variable is documented in the README's table."""

from __future__ import annotations

import re
from pathlib import Path

from treadle import settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_environment_variable_is_in_the_readme() -> None:
    names = {
        value
        for key, value in vars(settings).items()
        if key.startswith("ENV_") and key != "ENV_PREFIX" and isinstance(value, str)
    }
    table = README.read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    assert names - documented == set()
    assert documented - names == set()  # nothing documented that no longer exists
