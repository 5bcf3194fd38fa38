"""Local sandbox: tenant handlers in separate, warm processes forked from a zygote.

`function_runtime.SandboxRuntime` is the FunctionRuntime port over it.
"""

from treadle.adapters.sandbox.sandbox import LocalSandbox
from treadle.adapters.sandbox.spec import InvocationOutcome, SandboxFunction

__all__ = ["InvocationOutcome", "LocalSandbox", "SandboxFunction"]
