"""The durable execution engine: pure logic over ports.

Callers need only what is exported here: `Engine` and its `EngineConfig`, the
`CheckpointResult` a checkpoint answers with, the `TokenCodec` it is built with, and
`strip_execution_data` for history read without execution data.
"""

from treadle.domain.engine.checkpoint import CheckpointResult
from treadle.domain.engine.config import EngineConfig
from treadle.domain.engine.engine import Engine
from treadle.domain.engine.history import strip_execution_data
from treadle.domain.engine.tokens import TokenCodec

__all__ = ["CheckpointResult", "Engine", "EngineConfig", "TokenCodec", "strip_execution_data"]
