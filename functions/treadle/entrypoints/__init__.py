"""The platform Lambdas' handlers (infra/names.py names them): thin adapters from Lambda
events to the AWS composition root, with Powertools' Logger, Metrics and Tracer.

- `api.handler`: API Gateway proxy events (HTTP API payload 2.0; REST 1.0 too) into the
  one HTTP application `treadle dev` serves;
- `orchestrator.handler`: SQS batches of timers, partial batch failures;
- `sweep.handler`: the scheduled timer sweep.

The platform is built on the first event a container receives, not at import: a cold
start that fails then reports through the invocation's error, and tests can point the
environment at moto before anything reads it.
"""
