#!/bin/bash
# Treadle's LocalStack init hook (READY stage): a preflight, run once LocalStack serves
# requests. It creates nothing the stack creates (`cdklocal deploy` owns every Treadle
# resource) and nothing at all, so running it again changes nothing. It checks what
# a deploy of infra/ needs and would otherwise fail on much later, with less clear errors:
#   - every service the stack and the CDK bootstrap stack use is available (the HTTP API,
#     apigatewayv2, needs a licence that covers it);
#   - the Docker socket is mounted and answers (Lambda runs each function in a container);
#   - arm64 images can run (the platform functions are arm64) -- a warning only;
# then says whether the CDK bootstrap stack is there yet.
# Its state (SUCCESSFUL / ERROR) shows at http://localhost:4566/_localstack/init/ready,
# which localstack/deploy.sh reads; its output is in `docker compose logs localstack`.
set -uo pipefail

ENDPOINT="http://localhost:4566"
REQUIRED="cloudformation ssm sts iam s3 ecr lambda dynamodb sqs apigatewayv2 events logs secretsmanager"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

log() { echo "treadle-preflight: $*"; }
failed=0

health="$(curl -fsS "$ENDPOINT/_localstack/health")" || {
    log "ERROR: $ENDPOINT/_localstack/health does not answer"
    exit 1
}
# shellcheck disable=SC2086  # REQUIRED is a list of words
if ! python3 - "$health" $REQUIRED <<'PY'
import json
import sys

health = json.loads(sys.argv[1])
services = health.get("services", {})
print(
    f"treadle-preflight: LocalStack {health.get('version', '?')} "
    f"({health.get('edition', '?')} edition)"
)
missing = [s for s in sys.argv[2:] if services.get(s) not in ("available", "running")]
if missing:
    shown = ", ".join(f"{s}={services.get(s, 'absent')}" for s in missing)
    print(f"treadle-preflight: ERROR: services the stack needs are not available: {shown}")
    if "apigatewayv2" in missing:
        print(
            "treadle-preflight: the HTTP API (apigatewayv2) needs a LocalStack licence "
            "that covers it: set LOCALSTACK_AUTH_TOKEN to such a token"
        )
    sys.exit(1)
PY
then
    failed=1
fi

if [ ! -S /var/run/docker.sock ]; then
    log "ERROR: /var/run/docker.sock is not mounted: Lambda cannot start function containers"
    failed=1
elif [ "$(curl -fsS --max-time 5 --unix-socket /var/run/docker.sock http://localhost/_ping 2>/dev/null)" != "OK" ]; then
    log "ERROR: the Docker engine behind /var/run/docker.sock does not answer (permissions?)"
    failed=1
else
    log "Docker engine reachable: Lambda functions run in containers"
fi

if [ "$(uname -m)" != "aarch64" ] && [ -d /proc/sys/fs/binfmt_misc ] \
    && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    log "WARNING: $(uname -m) host without a qemu-aarch64 binfmt handler in view: the arm64" \
        "platform functions may not start (see localstack/README.md, 'x86_64 hosts')"
fi

if awslocal cloudformation describe-stacks --stack-name CDKToolkit >/dev/null 2>&1; then
    log "CDK bootstrap stack (CDKToolkit) present"
else
    log "no CDK bootstrap stack yet: localstack/deploy.sh runs 'cdklocal bootstrap' first"
fi

if [ "$failed" -ne 0 ]; then
    log "NOT READY for Treadle (see the errors above)"
    exit 1
fi
log "ready for Treadle: run localstack/deploy.sh"
