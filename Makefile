# `make demo` and `make test` each create or refresh .venv on their own.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench bench-peers bench-fairness soak faults lint typecheck cfn-lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# The conformance package declares Python >= 3.14 but runs on 3.11; its own
	# dependencies (boto3, pyyaml, packaging) are in the dev extra above.
	$(PY) -m pip install -q --no-deps --ignore-requires-python aws-durable-execution-conformance-tests==1.0.0
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m compileall -q -j 0 functions
	$(PY) -m tools.demo

# The slowest tests are listed at the end: the suite has a 10-minute budget in CI.
# The platform's modules are compiled first: the tests start `treadle dev` and its
# sandbox hundreds of times, and where PYTHONDONTWRITEBYTECODE is set (as on CI's
# machines) each start would compile them again (0.2 s of CPU each; an editable
# install ships no .pyc, unlike a wheel).
test: $(STAMP)
	$(PY) -m compileall -q -j 0 functions
	$(PY) -m pytest -n 2 --dist loadgroup --durations=25

# Benchmarks against a real `treadle dev` (see benchmarks/README.md); BENCH_ARGS passes
# options through, e.g. make bench BENCH_ARGS="--only W1,C1 --runs 5".
bench: $(STAMP)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# Treadle beside DBOS (SQLite, PostgreSQL) and Restate in one run (not part of CI; ~12 min with the peers installed):
# the peers harness in ../shared/peers (or TREADLE_PEERS_DIR); PEERS_ARGS passes options.
bench-peers: $(STAMP)
	$(PY) -m benchmarks.peers $(PEERS_ARGS)

# Tenant B's first start with 0 and with 100,000 of tenant A's queued starts (not CI;
# ~20 s; benchmarks/fairness.py). FAIRNESS_ARGS passes options, e.g. "--starts 500".
bench-fairness: $(STAMP)
	$(PY) -m benchmarks.fairness $(FAIRNESS_ARGS)

# A steady mixed workload with the platform's vitals each minute (benchmarks/soak.py).
MINUTES ?= 30
soak: $(STAMP)
	$(PY) -m benchmarks.soak --minutes $(MINUTES)

# The crash-at-every-boundary test on the AWS backend over moto, and the AWS fault
# matrix (docs/operating.md); nightly-style, not in CI: about 25 minutes on 2 cores.
faults: $(STAMP)
	TREADLE_FAULTS_AWS=1 $(PY) -m pytest -n 2 --dist loadgroup -p no:cacheprovider -q \
		--timeout 0 tests/integration/test_commit_boundaries.py tests/integration/test_aws_faults.py -k aws

lint: $(STAMP)
	$(VENV)/bin/ruff check functions tests examples benchmarks infra tools
	$(VENV)/bin/ruff format --check functions tests examples benchmarks infra tools

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The CDK stack synthesised in-process (no CDK CLI, no Docker) and its template checked
# by cfn-lint: a few seconds (infra/cfn_lint.py).
cfn-lint: $(STAMP)
	$(PY) -m infra.cfn_lint

clean:
	rm -rf $(VENV) .data output build
