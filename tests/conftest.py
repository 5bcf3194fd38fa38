"""Root fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

# Tests import helpers as `support.*`, and the checkout's own packages (`tools`, `infra`)
# even when pytest is not started from the repository root.
sys.path.insert(0, str(Path(__file__).parent))
if str(Path(__file__).parent.parent) not in sys.path:
    sys.path.append(str(Path(__file__).parent.parent))

from support import moto_serial

# moto's DynamoDB with DynamoDB's own write isolation (support/moto_serial.py).
moto_serial.install()
