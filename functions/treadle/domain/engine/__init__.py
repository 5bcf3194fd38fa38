"""The durable execution engine: pure logic over ports."""
