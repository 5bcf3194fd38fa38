"""Draw the lifecycles of `statemachine/*.json` as Mermaid diagrams (`docs/lifecycles.md`).

`python -m tools.lifecycle_docs` rewrites the document; a test fails when it is stale,
so the pictures always show the transitions the engine enforces.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# The checkout: statemachine/ (the source of truth) and docs/.
ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "lifecycles.md"


def _diagram(spec: dict[str, Any]) -> list[str]:
    lines = ["```mermaid", "stateDiagram-v2"]
    for t in spec["transitions"]:
        source = "[*]" if t["from"] is None else t["from"]
        lines.append(f"    {source} --> {t['to']}: {t['trigger']}")
    for terminal in spec.get("terminal", []):
        lines.append(f"    {terminal} --> [*]")
    lines.append("```")
    return lines


def render(statemachine: Path = ROOT / "statemachine") -> str:
    execution = json.loads((statemachine / "execution.json").read_text())
    operation = json.loads((statemachine / "operation.json").read_text())
    out = [
        "# Lifecycles",
        "",
        "Generated from `statemachine/*.json` by `python -m tools.lifecycle_docs`; the engine",
        "refuses every transition not drawn here. Triggers in capitals are checkpoint actions",
        "sent by the handler; lower-case triggers are platform events.",
        "",
        "## Execution",
        "",
        *_diagram(execution),
    ]
    for name, spec in operation["types"].items():
        out += ["", f"## Operation: {name}", "", *_diagram(spec)]
    return "\n".join(out) + "\n"


def main() -> int:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render())
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
