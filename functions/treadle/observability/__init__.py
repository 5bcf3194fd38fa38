"""What the platform tells its operator: log lines, metrics and traces.

Fed by the engine's committed status-change events (`StatusEvent`, after commit) and by
every invocation (`traced_runtime.ObservedRuntime`); see docs/observability.md.
"""
