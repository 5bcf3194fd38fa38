"""How a tenant Lambda signs its checkpoints: with its tenant's sandbox key, not its role.

Inside a real Lambda, boto3 signs with the execution role's STS credentials, which
Treadle's API cannot verify (it checks SigV4 against keys it knows). Lambda reserves
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` (CreateFunction
refuses them in `Environment`), so the tenant's derived sandbox key (`SandboxKeys`) travels
under Treadle's own names, and a wrapper script from the platform's tenant layer
(`AWS_LAMBDA_EXEC_WRAPPER`, honoured by every managed runtime, Python included: Lambda
execs it with the interpreter's path and arguments) moves it into the standard variables
and drops the session token before the runtime starts. boto3 takes credentials from the
environment first, so the durable SDK then signs with the sandbox key, which reaches only
its own tenant's checkpoint API (`api/auth.py`).

The wrapper is `infra/layer/tenant/bin/treadle-sandbox-credentials`; it reads the names
below (a test runs it and checks them).
"""

from __future__ import annotations

from typing import Final

SANDBOX_KEY_ID_ENV: Final = "TREADLE_SANDBOX_ACCESS_KEY_ID"
SANDBOX_SECRET_ENV: Final = "TREADLE_SANDBOX_SECRET_ACCESS_KEY"
EXEC_WRAPPER_ENV: Final = "AWS_LAMBDA_EXEC_WRAPPER"
# Layers are unpacked under /opt: the tenant layer holds the script at bin/.
WRAPPER_PATH: Final = "/opt/bin/treadle-sandbox-credentials"

# Variables a tenant may not set on its own function: the platform owns them.
PLATFORM_OWNED_ENV: Final = frozenset({SANDBOX_KEY_ID_ENV, SANDBOX_SECRET_ENV, EXEC_WRAPPER_ENV})


def credential_environment(key_id: str, secret: str, *, wrapper: bool) -> dict[str, str]:
    """The variables that make a tenant Lambda sign with (`key_id`, `secret`).

    Without the wrapper (no tenant layer configured) the key is passed all the same, so
    that adding the layer later changes only the wrapper variable.
    """
    env = {SANDBOX_KEY_ID_ENV: key_id, SANDBOX_SECRET_ENV: secret}
    if wrapper:
        env[EXEC_WRAPPER_ENV] = WRAPPER_PATH
    return env
