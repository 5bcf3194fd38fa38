"""Local sandbox: tenant handlers in separate, warm processes forked from a zygote."""

from treadle.adapters.sandbox.sandbox import LocalSandbox
from treadle.adapters.sandbox.spec import InvocationOutcome, SandboxFunction

__all__ = ["InvocationOutcome", "LocalSandbox", "SandboxFunction"]
