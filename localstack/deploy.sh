#!/usr/bin/env bash
# Deploy Treadle's CDK stack to LocalStack and prepare the e2e tests (localstack/README.md).
#
#   LOCALSTACK_AUTH_TOKEN=... localstack/deploy.sh        # from the repo root or anywhere
#
# Steps: start LocalStack with localstack/docker-compose.yml unless something already
# answers, wait for it (and its init hook), build the dependency layer, `cdklocal
# bootstrap`, `cdklocal deploy -c stage=$TREADLE_STAGE`, then fit the platform functions
# to LocalStack and wait for the API (localstack/setup_local.py configure). Every step
# is idempotent: run it again after changing code.
#
# Environment:
#   TREADLE_STAGE           stage to deploy (default: local)
#   TREADLE_LOCALSTACK_URL  LocalStack's endpoint (default: http://localhost:4566)
#   AWS_REGION              region (default: us-east-1)
#   SKIP_LAYER_BUILD=1      reuse build/lambda-layer as it is
#   NO_COMPOSE=1            never start LocalStack here, only use one that answers
#   CDK_VERSION / CDKLOCAL_VERSION   npm versions of aws-cdk (2) and aws-cdk-local (3)
#   TREADLE_ADMIN_ACCESS_KEY_ID / TREADLE_ADMIN_SECRET_ACCESS_KEY
#                           the platform admin's key to set (default: the previous run's,
#                           else a new one)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
STAGE="${TREADLE_STAGE:-local}"
export TREADLE_LOCALSTACK_URL="${TREADLE_LOCALSTACK_URL:-http://localhost:4566}"
TREADLE_LOCALSTACK_URL="${TREADLE_LOCALSTACK_URL%/}"
COMPOSE_FILE=localstack/docker-compose.yml

step() { printf '\n==> %s\n' "$*"; }

if [ ! -x "$PY" ]; then
    echo "deploy.sh: $PY not found: run 'make venv' first" >&2
    exit 1
fi

step "LocalStack at $TREADLE_LOCALSTACK_URL"
if ! curl -fsS --max-time 2 "$TREADLE_LOCALSTACK_URL/_localstack/health" >/dev/null 2>&1; then
    if [ "${NO_COMPOSE:-0}" = 1 ]; then
        echo "deploy.sh: nothing answers at $TREADLE_LOCALSTACK_URL (NO_COMPOSE=1)" >&2
        exit 1
    fi
    if [ -z "${LOCALSTACK_AUTH_TOKEN:-}" ]; then
        echo "deploy.sh: set LOCALSTACK_AUTH_TOKEN (a licence covering API Gateway V2:" \
            "see localstack/README.md)" >&2
        exit 1
    fi
    docker compose -f "$COMPOSE_FILE" up -d
fi
"$PY" localstack/setup_local.py wait --timeout 300

step "dependency layer (build/lambda-layer)"
if [ "${SKIP_LAYER_BUILD:-0}" = 1 ] && [ -d build/lambda-layer ]; then
    echo "reusing build/lambda-layer (SKIP_LAYER_BUILD=1)"
else
    "$PY" infra/layer/build.py
fi

# cdklocal (aws-cdk-local 3.x) strips AWS_* configuration from the environment (so that a
# profile cannot send the deploy to real AWS) except the allow-listed names, uses the
# "test" credentials (account 000000000000), and wants the S3 endpoint given separately
# with an ".s3." label when AWS_ENDPOINT_URL is given.
read -r LS_SCHEME LS_HOST LS_PORT < <("$PY" -c '
import sys; from urllib.parse import urlsplit
u = urlsplit(sys.argv[1]); print(u.scheme or "http", u.hostname, u.port or 4566)' \
    "$TREADLE_LOCALSTACK_URL")
export AWS_ENDPOINT_URL="$TREADLE_LOCALSTACK_URL"
if [ -z "${AWS_ENDPOINT_URL_S3:-}" ]; then
    case "$LS_HOST" in
        localhost | 127.0.0.1 | localhost.localstack.cloud)
            export AWS_ENDPOINT_URL_S3="$LS_SCHEME://s3.localhost.localstack.cloud:$LS_PORT" ;;
        *)
            echo "deploy.sh: LocalStack is not local: set AWS_ENDPOINT_URL_S3" \
                "(its S3 endpoint, with an '.s3.' label)" >&2
            exit 1 ;;
    esac
fi
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_DEFAULT_REGION="${AWS_REGION:-us-east-1}"
export AWS_ENVAR_ALLOWLIST="AWS_REGION,AWS_DEFAULT_REGION"
export CDK_DISABLE_CLI_TELEMETRY=true
CDKLOCAL=(npx --yes -p "aws-cdk@${CDK_VERSION:-2}" -p "aws-cdk-local@${CDKLOCAL_VERSION:-3}" cdklocal)

step "cdklocal bootstrap"
"${CDKLOCAL[@]}" bootstrap --no-notices -c "stage=$STAGE"

step "cdklocal deploy Treadle-$STAGE"
"${CDKLOCAL[@]}" deploy --no-notices -c "stage=$STAGE" --require-approval never "Treadle-$STAGE"

step "fit the platform functions to LocalStack, wait for the API"
TREADLE_STAGE="$STAGE" "$PY" localstack/setup_local.py configure --stage "$STAGE"

step "done"
cat <<MSG
Run the e2e tests (they read the admin key from localstack/.state/$STAGE.env):
  TREADLE_LOCALSTACK_URL=$TREADLE_LOCALSTACK_URL TREADLE_STAGE=$STAGE \\
    .venv/bin/python -m pytest tests/localstack -m localstack
MSG
