"""Local sandbox: tenant handlers in separate, warm processes forked from a zygote."""

from treadle.adapters.sandbox.sandbox import InvocationOutcome, LocalSandbox, SandboxFunction

__all__ = ["InvocationOutcome", "LocalSandbox", "SandboxFunction"]
