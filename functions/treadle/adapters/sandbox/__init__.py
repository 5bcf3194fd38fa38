"""Local sandbox: tenant handlers in separate, warm, forked processes."""

from treadle.adapters.sandbox.sandbox import InvocationOutcome, LocalSandbox, SandboxFunction

__all__ = ["InvocationOutcome", "LocalSandbox", "SandboxFunction"]
