"""Use cases: what the API and entrypoints call."""
