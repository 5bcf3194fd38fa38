"""The CDK app lives in the repo root's `infra` package: make it importable."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# jsii runs the CDK in node; its banner about node 20 being end-of-life (CI should move
# to node 22 or 24) would otherwise be repeated in the output of every failing test.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
