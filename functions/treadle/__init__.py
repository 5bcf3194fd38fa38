"""Treadle: dynamic, durable workflows on AWS primitives."""

__version__ = "0.1.0"
