"""CDK entry point, run from the repo root.

- With the CDK CLI (see cdk.json):
  `CDK_DISABLE_CLI_TELEMETRY=true npx --yes aws-cdk@2 synth --no-notices [-c stage=prod]`
- Without it (no node package needed beyond what aws-cdk-lib embeds):
  `.venv/bin/python -m infra.app` writes the same cloud assembly to ./cdk.out, with the
  context of cdk.json.

Context:
- `stage` (default "dev"): `cdk synth -c stage=prod`;
- `layerDir` (default "build/lambda-layer"): the dependency layer built by
  `infra/layer/build.py`; synth only warns when it is missing.
- `tenantLayerDir` (default "build/tenant-layer"): the tenant layer built by
  `infra/layer/build.py --target tenant`; missing, the layer has the wrapper only
  (a warning again).
- `treadle:facets` (default false): `-c treadle:facets=true` adds the VPC (one NAT
  gateway, ~$33 a month), the EFS file system and the mounts of facets on AWS
  (infra/facets.py, docs/aws.md "Facets on AWS").
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from aws_cdk import App

from infra import names
from infra.functions import REPO_ROOT
from infra.stack import TreadleStack


def build_app(app: App | None = None) -> App:
    app = app or App()
    stage = str(app.node.try_get_context(names.CONTEXT_STAGE) or names.DEFAULT_STAGE)
    TreadleStack(
        app,
        names.stack_name(stage),
        stage=stage,
        dependency_layer_dir=_context_dir(app, names.CONTEXT_LAYER_DIR, names.DEFAULT_LAYER_DIR),
        tenant_layer_dir=_context_dir(
            app, names.CONTEXT_TENANT_LAYER_DIR, names.DEFAULT_TENANT_LAYER_DIR
        ),
        facets=names.context_flag(
            names.CONTEXT_FACETS, app.node.try_get_context(names.CONTEXT_FACETS)
        ),
        description=f"Treadle durable workflows platform ({stage})",
    )
    return app


def _context_dir(app: App, key: str, default: str) -> Path:
    path = Path(str(app.node.try_get_context(key) or default))
    return path if path.is_absolute() else REPO_ROOT / path


def _standalone_app() -> App:
    """Without the CDK CLI: read cdk.json's context and write the assembly to ./cdk.out."""
    config = json.loads((REPO_ROOT / "cdk.json").read_text())
    return App(context=config.get("context", {}), outdir=str(REPO_ROOT / "cdk.out"))


def main() -> None:
    # The CLI passes its context and output directory through CDK_* variables.
    app = App() if "CDK_OUTDIR" in os.environ else _standalone_app()
    build_app(app).synth()


if __name__ == "__main__":
    main()
