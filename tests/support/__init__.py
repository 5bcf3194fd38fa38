"""Shared test helpers: a real embedded server in a subprocess, deployment helpers."""
